// camemberta_sentencepiece.node: SentencePiece behind a few N-API functions, for
// src/tokenizer/sentencepiece.ts. A separate addon from camemberta.node so that tokenizer worker
// threads load it without libtorch. Context-aware (NODE_API_MODULE, no global state): every worker
// thread loads its own processor.
//
//   load(modelBytes: Uint8Array, maxCacheEntries = 0, unigram?: { pieceTypes: Uint8Array, byteFallback: boolean })
//       -> handle                       modelBytes: a serialized ModelProto (spm.model)
//   encodeBatch(handle, texts: string[], byWord = false) -> { ids: Int32Array, lengths: Int32Array }
//   decode(handle, ids: Int32Array | number[]) -> string
//   pieceSize(handle) -> number
//   stats(handle) -> { words, viterbiWords, cacheEntries }   (byWord encoding since load)
//   version: the libsentencepiece version this addon was compiled against
//
// Which Viterbi. The library is Debian's libsentencepiece 0.1.97. Its unigram Viterbi and Python's
// sentencepiece 0.2.2 break exact ties differently: "III" is II|I for the former, I|II for the latter
// (two segmentations of the same pieces in another order score the same). With `unigram` (the piece
// types, one per id, read from the model by sentencepiece.ts) we give the ids of Python's 0.2.2:
// libsentencepiece only normalizes (the pieces of its Encode, end to end, are the normalized text),
// and Unigram::Viterbi below is SentencePiece 0.2.x's Model::EncodeOptimized (unigram_model.cc),
// followed by PopulateSentencePieceText's byte fallback or merging of consecutive unknown pieces
// (sentencepiece_processor.cc). Path scores are float32, each candidate rounded before it is compared,
// and among equal candidates the first wins (at each end position, the one whose last piece starts
// earliest): that reproduces the Python wheel on every fr-roman19 line and on 20,000 tie-heavy lines
// (see Unigram::Advance). Not reproduced: ties involving a user-defined symbol (the wheel breaks 517 of
// 20,000 tie-heavy lines otherwise for a model with some; tokenizer.js train makes none). HuggingFace
// tokenizers breaks some ties otherwise too (it scores in doubles).
// Without `unigram` (BPE and other models), libsentencepiece's own Encode.
//
// The word cache (byWord) and exactness. For a whitespace-splitting unigram model no piece spans the
// '▁' that starts a word, so the best path of a line is the best paths of its words end to end. What
// couples the words is rounding: the path score accumulates left to right in float32, so whether two
// segmentations of a word tie, or which of two nearly equal ones wins, can depend on the score P of
// the line before the word. So each cached word keeps, besides its ids, the score term of each piece
// of its path and limitAbsP: the |P| below which its best path is the same from any starting score
// (from a Viterbi run on the word from 0 that measures the smallest gap between the best and the
// second-best candidate at any position; see Unigram::Limit). Encoding a line keeps P exactly as the
// whole-line Viterbi does (the same float operations along the path); a word with |P| >= limitAbsP
// (an exact tie such as "III" has a limit below 0: always) is re-run through the Viterbi from P over
// its normalized text. The result is the ids of encoding the whole line, at the cache's speed.
#include <napi.h>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

// From pkg-config at configure time (CMakeLists.txt); the header itself carries no version.
#ifndef CAMEMBERTA_SENTENCEPIECE_VERSION
#define CAMEMBERTA_SENTENCEPIECE_VERSION "unknown"
#endif

namespace {

using Processor = sentencepiece::SentencePieceProcessor;

void ThrowIfFailed(Napi::Env env, const sentencepiece::util::Status &status, const char *what) {
  if (!status.ok()) throw Napi::Error::New(env, std::string("SentencePiece ") + what + ": " + status.ToString());
}

// ModelProto.SentencePiece.Type
enum PieceType : uint8_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Bytes of the UTF-8 character that starts with byte c: SentencePiece's string_util::OneCharLen.
inline int OneCharLen(char c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[(static_cast<unsigned char>(c)) >> 4]; }

// The pieces SentencePiece 0.2.x puts in its trie (NORMAL, USER_DEFINED, UNUSED), as a byte trie: the
// transitions in one open-addressing table keyed by (node, byte), so that a step is one probe, nearly
// always, as in the library's double array.
class PieceTrie {
 public:
  void Build(const std::vector<std::pair<std::string, int>> &pieces) {
    std::vector<std::map<uint8_t, int32_t>> children(1);
    value_.assign(1, -1);
    for (const auto &[piece, id] : pieces) {
      int32_t node = 0;
      for (unsigned char byte : piece) {
        auto it = children[node].find(byte);
        if (it == children[node].end()) {
          it = children[node].emplace(byte, static_cast<int32_t>(children.size())).first;
          children.emplace_back();
          value_.push_back(-1);
        }
        node = it->second;
      }
      value_[node] = id;
    }
    if (children.size() >= (1u << 23)) throw std::invalid_argument("too many trie nodes");
    size_t edges = children.size();  // one edge into every node but the root
    size_t capacity = 1024;
    while (capacity < 2 * edges) capacity *= 2;
    mask_ = capacity - 1;
    table_.assign(capacity, Edge{});
    for (size_t node = 0; node < children.size(); node++) {
      for (const auto &[byte, child] : children[node]) {
        const uint32_t key = (static_cast<uint32_t>(node) << 8 | byte) + 1;
        size_t i = Slot(key);
        while (table_[i].key != 0) i = (i + 1) & mask_;
        table_[i] = {key, child};
      }
    }
  }

  // The child of node by byte, or -1.
  int32_t Child(int32_t node, unsigned char byte) const {
    const uint32_t key = (static_cast<uint32_t>(node) << 8 | byte) + 1;
    for (size_t i = Slot(key);; i = (i + 1) & mask_) {
      const Edge &edge = table_[i];
      if (edge.key == key) return edge.child;
      if (edge.key == 0) return -1;
    }
  }
  // The piece id that ends at node, or -1.
  int32_t Value(int32_t node) const { return value_[node]; }

 private:
  struct Edge {
    uint32_t key = 0;  // 1 + (node << 8 | byte), 0 when empty
    int32_t child = -1;
  };
  size_t Slot(uint32_t key) const { return (static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull >> 32) & mask_; }

  std::vector<int32_t> value_;
  std::vector<Edge> table_;
  size_t mask_ = 0;
};

// A piece of a best path: bytes [begin, end) of the normalized text.
struct PathPiece {
  int32_t id;
  uint32_t begin, end;
};

// SentencePiece 0.2.x's unigram encoder (Model::EncodeOptimized and the unknown/byte handling of
// SentencePieceProcessor::PopulateSentencePieceText), over text libsentencepiece normalized.
class Unigram {
 public:
  bool enabled() const { return enabled_; }

  void Init(const Processor &processor, const uint8_t *types, size_t count, bool byteFallback) {
    const int size = processor.GetPieceSize();
    if (count != static_cast<size_t>(size)) throw std::invalid_argument("pieceTypes has " + std::to_string(count) + " entries for " + std::to_string(size) + " pieces");
    types_.assign(types, types + count);
    scores_.resize(size);
    byteOfId_.assign(size, -1);
    byteId_.fill(-1);
    byteFallback_ = byteFallback;
    unkId_ = processor.unk_id();
    // Model::Model: min and max over NORMAL pieces, from FLT_MAX and FLT_MIN (sic: the smallest
    // positive float, so max_score_ >= FLT_MIN > 0 even when every score is negative).
    float minScore = FLT_MAX, maxScore = FLT_MIN;
    std::vector<std::pair<std::string, int>> pieces;
    for (int id = 0; id < size; id++) {
      scores_[id] = processor.GetScore(id);
      const std::string &piece = processor.IdToPiece(id);
      if (types_[id] == kNormal) {
        minScore = std::min(minScore, scores_[id]);
        maxScore = std::max(maxScore, scores_[id]);
      }
      if (types_[id] == kNormal || types_[id] == kUserDefined || types_[id] == kUnused) pieces.emplace_back(piece, id);
      if (types_[id] == kByte && piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>') {
        const int byte = std::stoi(piece.substr(3, 2), nullptr, 16);
        byteOfId_[id] = byte;
        byteId_[byte] = id;
      }
    }
    if (byteFallback_ && std::find(byteId_.begin(), byteId_.end(), -1) != byteId_.end()) throw std::invalid_argument("byte_fallback without 256 byte pieces");
    maxScore_ = maxScore;
    unkScore_ = minScore - kUnkPenalty;  // float - float
    trie_.Build(pieces);
    enabled_ = true;
  }

  // The byte an id of a byte piece stands for, or -1.
  int ByteOf(int id) const { return byteOfId_[id]; }

  // The term a piece adds to the path score: its score; a user-defined piece's bonus
  // `length * max_score_ - 0.1` (length in bytes) rounded to float; min_score_ - kUnkPenalty for the
  // unknown piece. Every term is a float.
  float PieceTerm(int id, size_t length) const {
    if (id == unkId_) return unkScore_;
    return types_[id] == kUserDefined ? static_cast<float>(length * maxScore_ - 0.1) : scores_[id];
  }

  // A path's score after one more piece, in float32 as Python's sentencepiece 0.2.2 computes it: every
  // candidate is a float sum, compared as a float. Comparing the exact (double) sum with the stored
  // float instead, as the 0.2.x source reads, breaks float ties otherwise: 4,512 of 20,000 tie-heavy
  // lines differ from the Python wheel that way, none this way.
  static float Advance(float score, float term) { return score + term; }

  // EncodeOptimized over text, the best path ending at byte 0 having score `start` (0 for a line; the
  // score of the line so far for a word): appends the best path to *path and returns its score. With
  // stats, also the smallest gap, over all positions, between the best and the second-best candidate
  // path ending there (infinite where there is one candidate), and the largest |candidate score|.
  template <bool kStats>
  float Viterbi(std::string_view text, float start, std::vector<PathPiece> *path, double *minGap = nullptr, double *maxAbs = nullptr) {
    const int size = static_cast<int>(text.size());
    nodes_.assign(size + 1, Node{});
    nodes_[0].score = start;
    double gap = std::numeric_limits<double>::infinity(), largest = 0;
    int startsAt = 0;
    while (startsAt < size) {
      const float tillHere = nodes_[startsAt].score;
      bool hasSingleNode = false;
      const int mblen = std::min<int>(OneCharLen(text[startsAt]), size - startsAt);
      int32_t trieNode = 0;
      for (int keyPos = startsAt; keyPos < size;) {
        trieNode = trie_.Child(trieNode, static_cast<unsigned char>(text[keyPos]));
        if (trieNode < 0) break;
        keyPos++;
        const int32_t id = trie_.Value(trieNode);
        if (id < 0 || types_[id] == kUnused) continue;
        Node &target = nodes_[keyPos];
        const size_t length = keyPos - startsAt;
        const float candidate = Advance(tillHere, PieceTerm(id, length));
        if constexpr (kStats) Track(target, candidate, largest);
        if (target.startsAt == -1 || candidate > target.score) {
          target.score = candidate;
          target.startsAt = startsAt;
          target.id = id;
        }
        if (!hasSingleNode && static_cast<int>(length) == mblen) hasSingleNode = true;
      }
      if (!hasSingleNode) {
        Node &target = nodes_[startsAt + mblen];
        const float candidate = unkScore_ + tillHere;
        if constexpr (kStats) Track(target, candidate, largest);
        if (target.startsAt == -1 || candidate > target.score) {
          target.score = candidate;
          target.startsAt = startsAt;
          target.id = unkId_;
        }
      }
      startsAt += mblen;
    }
    if constexpr (kStats) {
      for (int i = 1; i <= size; i++) {
        if (nodes_[i].top2 > -std::numeric_limits<float>::infinity()) gap = std::min(gap, static_cast<double>(nodes_[i].top1) - nodes_[i].top2);
      }
      *minGap = gap;
      *maxAbs = largest;
    }
    const size_t first = path->size();
    for (int endsAt = size; endsAt > 0; endsAt = nodes_[endsAt].startsAt) {
      const Node &node = nodes_[endsAt];
      path->push_back({node.id, static_cast<uint32_t>(node.startsAt), static_cast<uint32_t>(endsAt)});
    }
    std::reverse(path->begin() + first, path->end());
    return nodes_[size].score;
  }

  // The ids of a path, as PopulateSentencePieceText makes them: an unknown piece becomes its bytes
  // with byte fallback, else it merges into an unknown piece just before it (out[lineStart..] is the
  // text so far).
  void Emit(std::string_view text, const PathPiece *pieces, size_t count, std::vector<int32_t> &out, size_t lineStart) const {
    for (size_t i = 0; i < count; i++) {
      const PathPiece &piece = pieces[i];
      if (piece.id == unkId_) {
        if (byteFallback_) {
          for (uint32_t b = piece.begin; b < piece.end; b++) out.push_back(byteId_[static_cast<unsigned char>(text[b])]);
          continue;
        }
        if (out.size() > lineStart && out.back() == unkId_) continue;
      }
      out.push_back(piece.id);
    }
  }

  // Whether ids that follow out[lineStart..] lose their first id to the merging of unknown pieces.
  bool MergesFirst(const int32_t *ids, size_t count, const std::vector<int32_t> &out, size_t lineStart) const {
    return !byteFallback_ && count > 0 && ids[0] == unkId_ && out.size() > lineStart && out.back() == unkId_;
  }

  // limitAbsP of a word (see the top): its best path from start score P is the one from 0 when
  //   minGap > (4 L + 4) u (|P| + maxAbs + 1),  u = 2^-24 (half an ulp, relative, of float32),
  // L = its characters (a bound on the pieces of any path). Why: a candidate after n pieces has gone
  // through n + 1 roundings to float, each off by at most u |value|, |value| <= M = |P| + maxAbs + 1;
  // two candidates then compare as their exact scores do when those differ by more than
  // 2 (L + 1) u M, so such a decision is the same from any P. The gap measured from 0 is itself off
  // from the exact one by up to 2 (L + 1) u M: hence 4 L + 4. For |P| ~ 10,000 (a paragraph of ~1,000
  // pieces, where float32 steps by 2^-10 ~ 0.001) and a 10-character word, gaps below ~0.03 count as
  // ties; an exact tie (gap 0) always does.
  static double Limit(double minGap, double maxAbs, size_t characters) {
    if (std::isinf(minGap)) return std::numeric_limits<double>::infinity();
    return minGap / ((4.0 * characters + 4.0) * 0x1p-24) - maxAbs - 1.0;
  }

 private:
  static constexpr float kUnkPenalty = 10.0;

  struct Node {
    int32_t id = -1;
    float score = 0;  // best_path_score
    int32_t startsAt = -1;
    float top1 = -std::numeric_limits<float>::infinity(), top2 = -std::numeric_limits<float>::infinity();
  };

  static void Track(Node &target, float candidate, double &largest) {
    largest = std::max(largest, static_cast<double>(std::fabs(candidate)));
    if (candidate > target.top1) {
      target.top2 = target.top1;
      target.top1 = candidate;
    } else if (candidate > target.top2) {
      target.top2 = candidate;
    }
  }

  bool enabled_ = false;
  bool byteFallback_ = false;
  int unkId_ = 0;
  float maxScore_ = 0, unkScore_ = 0;
  std::vector<uint8_t> types_;
  std::vector<float> scores_;
  std::vector<int> byteOfId_;
  std::array<int, 256> byteId_;
  PieceTrie trie_;
  std::vector<Node> nodes_;
};

// word -> its encoding, open addressing in flat arrays: a lookup touches one slot (hash and entry
// index side by side), then the entry's key and ids, where std::unordered_map chases more pointers
// (its cache misses were a quarter of the encoding time on running text).
struct CachedWord {
  const int32_t *ids;
  size_t idCount;
  const float *terms;  // the score term of each piece of its path (empty without the 0.2.x encoder)
  size_t termCount;
  std::string_view normalized;
  double limitAbsP;
};

class WordCache {
 public:
  void Clear() {
    slots_.assign(1024, Slot{});
    entries_.clear();
    text_.clear();
    ids_.clear();
    terms_.clear();
  }
  size_t size() const { return entries_.size(); }

  bool Find(std::string_view word, uint64_t hash, CachedWord *found) const {
    for (size_t i = hash & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot &slot = slots_[i];
      if (slot.entry == 0) return false;
      if (slot.hash != static_cast<uint32_t>(hash >> 32)) continue;
      const Entry &entry = entries_[slot.entry - 1];
      if (std::string_view(text_.data() + entry.keyOffset, entry.keyLength) == word) {
        *found = View(entry);
        return true;
      }
    }
  }

  CachedWord Insert(std::string_view word, uint64_t hash, std::string_view normalized, const std::vector<int32_t> &ids,
                    const std::vector<float> &terms, double limitAbsP) {
    if (2 * (entries_.size() + 1) > slots_.size()) Grow();
    entries_.push_back({static_cast<uint32_t>(text_.size()), static_cast<uint32_t>(word.size()), static_cast<uint32_t>(normalized.size()),
                        static_cast<uint32_t>(ids_.size()), static_cast<uint32_t>(ids.size()), static_cast<uint32_t>(terms_.size()),
                        static_cast<uint32_t>(terms.size()), limitAbsP});
    text_.append(word);
    text_.append(normalized);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    terms_.insert(terms_.end(), terms.begin(), terms.end());
    Place(static_cast<uint32_t>(entries_.size()), hash);
    return View(entries_.back());
  }

  static uint64_t Hash(std::string_view word) { return std::hash<std::string_view>{}(word); }

 private:
  struct Slot {
    uint32_t hash = 0;   // high half of the word's hash
    uint32_t entry = 0;  // 1 + index into entries_, 0 when empty
  };
  struct Entry {
    uint32_t keyOffset, keyLength, normalizedLength;  // the normalized text follows the key in text_
    uint32_t idsOffset, idsLength, termsOffset, termsLength;
    double limitAbsP;
  };

  CachedWord View(const Entry &entry) const {
    return {ids_.data() + entry.idsOffset, entry.idsLength, terms_.data() + entry.termsOffset, entry.termsLength,
            std::string_view(text_.data() + entry.keyOffset + entry.keyLength, entry.normalizedLength), entry.limitAbsP};
  }

  void Place(uint32_t entry, uint64_t hash) {
    size_t i = hash & (slots_.size() - 1);
    while (slots_[i].entry != 0) i = (i + 1) & (slots_.size() - 1);
    slots_[i] = {static_cast<uint32_t>(hash >> 32), entry};
  }

  void Grow() {
    slots_.assign(slots_.size() * 2, Slot{});
    for (uint32_t e = 0; e < entries_.size(); e++) {
      Place(e + 1, Hash(std::string_view(text_.data() + entries_[e].keyOffset, entries_[e].keyLength)));
    }
  }

  std::vector<Slot> slots_ = std::vector<Slot>(1024);
  std::vector<Entry> entries_;
  std::string text_;
  std::vector<int32_t> ids_;
  std::vector<float> terms_;
};

// A processor, the 0.2.x encoder and the word cache. A handle belongs to the thread that loaded it (an
// External cannot leave its JS context), so none needs a lock.
struct Encoder {
  Processor processor;
  Unigram unigram;
  size_t maxCacheEntries = 0;
  WordCache cache;
  std::vector<int> scratch;
  std::vector<int32_t> wordIds;
  std::vector<float> terms;
  std::vector<PathPiece> path;
  std::string normalized;
  double words = 0, viterbiWords = 0;

  // libsentencepiece's normalization of text: the pieces of its Encode end to end (an unknown piece
  // holds its text, merged runs of them too; with byte fallback, byte pieces stand for their byte).
  void Normalize(Napi::Env env, std::string_view text, std::string &out) {
    sentencepiece::ImmutableSentencePieceText spt;
    ThrowIfFailed(env, processor.Encode(text, spt.mutable_proto()), "encode failed");
    out.clear();
    const size_t count = spt.pieces_size();
    for (size_t i = 0; i < count; i++) {
      const auto piece = spt.pieces(static_cast<int>(i));
      const int byte = unigram.ByteOf(static_cast<int>(piece.id()));
      if (byte >= 0) {
        out.push_back(static_cast<char>(byte));
      } else {
        out.append(piece.piece());
      }
    }
  }

  void EncodeText(Napi::Env env, std::string_view text, std::vector<int32_t> &out) {
    if (!unigram.enabled()) {
      scratch.clear();
      ThrowIfFailed(env, processor.Encode(text, &scratch), "encode failed");
      out.insert(out.end(), scratch.begin(), scratch.end());
      return;
    }
    Normalize(env, text, normalized);
    path.clear();
    unigram.Viterbi<false>(normalized, 0.0f, &path);
    unigram.Emit(normalized, path.data(), path.size(), out, out.size());
  }

  // A word not in the cache: its normalized text, ids, score terms and limitAbsP.
  CachedWord Add(Napi::Env env, std::string_view word, uint64_t hash) {
    if (cache.size() >= maxCacheEntries) cache.Clear();
    wordIds.clear();
    terms.clear();
    if (!unigram.enabled()) {
      scratch.clear();
      ThrowIfFailed(env, processor.Encode(word, &scratch), "encode failed");
      wordIds.assign(scratch.begin(), scratch.end());
      return cache.Insert(word, hash, {}, wordIds, terms, std::numeric_limits<double>::infinity());
    }
    Normalize(env, word, normalized);
    path.clear();
    double minGap = 0, maxAbs = 0;
    unigram.Viterbi<true>(normalized, 0.0f, &path, &minGap, &maxAbs);
    unigram.Emit(normalized, path.data(), path.size(), wordIds, 0);
    for (const PathPiece &piece : path) terms.push_back(unigram.PieceTerm(piece.id, piece.end - piece.begin));
    size_t characters = 0;
    for (unsigned char c : normalized) characters += (c & 0xc0) != 0x80;
    return cache.Insert(word, hash, normalized, wordIds, terms, Unigram::Limit(minGap, maxAbs, characters));
  }

  // Each space-separated word looked up in the cache: about 4x faster than encoding whole texts on
  // running text, where nearly every word is a hit, and the same ids for a whitespace-splitting
  // unigram model (the caller checks the model; see sentencepiece.ts and the top of this file). Split
  // on U+0020 only, as the sentencepiece-js path splits: byte 0x20 never occurs inside a multi-byte
  // UTF-8 sequence; what else the normalizer treats as whitespace ends up inside a cached word.
  void EncodeByWord(Napi::Env env, std::string_view text, std::vector<int32_t> &out) {
    const size_t lineStart = out.size();
    float score = 0;  // best_path_score at the current word start: P
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find(' ', start);
      if (end == std::string_view::npos) end = text.size();
      std::string_view word = text.substr(start, end - start);
      start = end + 1;
      if (word.empty()) continue;
      const uint64_t hash = WordCache::Hash(word);
      CachedWord cached;
      if (!cache.Find(word, hash, &cached)) cached = Add(env, word, hash);
      words += 1;
      if (std::fabs(score) < cached.limitAbsP) {
        const size_t skip = unigram.MergesFirst(cached.ids, cached.idCount, out, lineStart) ? 1 : 0;
        out.insert(out.end(), cached.ids + skip, cached.ids + cached.idCount);
        for (size_t i = 0; i < cached.termCount; i++) score = Unigram::Advance(score, cached.terms[i]);
        continue;
      }
      // A tie, or a near one at this |P|: the Viterbi over the word from P, as on the whole line.
      viterbiWords += 1;
      path.clear();
      score = unigram.Viterbi<false>(cached.normalized, score, &path);
      unigram.Emit(cached.normalized, path.data(), path.size(), out, lineStart);
    }
  }
};

Encoder &Unwrap(const Napi::Value &value) {
  if (!value.IsExternal()) throw Napi::TypeError::New(value.Env(), "expected a SentencePiece handle from load()");
  return *value.As<Napi::External<Encoder>>().Data();
}

Napi::Value Load(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "load(modelBytes: Uint8Array, maxCacheEntries?, unigram?)");
  auto bytes = info[0].As<Napi::Uint8Array>();
  auto encoder = std::make_unique<Encoder>();
  ThrowIfFailed(env, encoder->processor.LoadFromSerializedProto(
      std::string_view(reinterpret_cast<const char *>(bytes.Data()), bytes.ByteLength())), "cannot load the model");
  if (info.Length() >= 2 && info[1].IsNumber()) encoder->maxCacheEntries = info[1].As<Napi::Number>().Int64Value();
  if (info.Length() >= 3 && info[2].IsObject()) {
    auto options = info[2].As<Napi::Object>();
    Napi::Value types = options.Get("pieceTypes");
    if (!types.IsTypedArray() || types.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, "load: unigram.pieceTypes must be a Uint8Array");
    }
    auto typeArray = types.As<Napi::Uint8Array>();
    try {
      encoder->unigram.Init(encoder->processor, typeArray.Data(), typeArray.ElementLength(), options.Get("byteFallback").ToBoolean().Value());
    } catch (const std::exception &error) {
      throw Napi::Error::New(env, std::string("SentencePiece cannot load the model: ") + error.what());
    }
  }
  return Napi::External<Encoder>::New(env, encoder.release(), [](Napi::Env, Encoder *e) { delete e; });
}

// Counters of byWord encoding since load: words looked up, words re-run through the Viterbi (ties).
Napi::Value Stats(const Napi::CallbackInfo &info) {
  Encoder &encoder = Unwrap(info[0]);
  auto result = Napi::Object::New(info.Env());
  result.Set("words", encoder.words);
  result.Set("viterbiWords", encoder.viterbiWords);
  result.Set("cacheEntries", static_cast<double>(encoder.cache.size()));
  return result;
}

// One call for a whole batch: the per-call cost of N-API is paid once, not per text. Each text is
// encoded whole or word by word through the cache, the ids of Python's sp.encode(text) either way.
Napi::Value EncodeBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Encoder &encoder = Unwrap(info[0]);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "encodeBatch(handle, texts: string[], byWord?: boolean)");
  const bool byWord = info.Length() >= 3 && info[2].ToBoolean().Value() && encoder.maxCacheEntries > 0;
  auto texts = info[1].As<Napi::Array>();
  const uint32_t count = texts.Length();
  auto lengths = Napi::Int32Array::New(env, count);
  std::vector<int32_t> ids;
  std::string utf8;  // reused: one allocation for the batch, not one per text
  for (uint32_t i = 0; i < count; i++) {
    napi_value text = texts.Get(i);
    size_t length = 0;
    if (napi_get_value_string_utf8(env, text, nullptr, 0, &length) != napi_ok) {
      throw Napi::TypeError::New(env, "encodeBatch: text " + std::to_string(i) + " is not a string");
    }
    utf8.resize(length + 1);
    napi_get_value_string_utf8(env, text, utf8.data(), length + 1, &length);
    const size_t before = ids.size();
    if (byWord) {
      encoder.EncodeByWord(env, std::string_view(utf8.data(), length), ids);
    } else {
      encoder.EncodeText(env, std::string_view(utf8.data(), length), ids);
    }
    lengths[i] = static_cast<int32_t>(ids.size() - before);
  }
  // A copy into a plain (detachable) ArrayBuffer: worker threads transfer the result.
  auto out = Napi::Int32Array::New(env, ids.size());
  if (!ids.empty()) std::memcpy(out.Data(), ids.data(), ids.size() * sizeof(int32_t));
  auto result = Napi::Object::New(env);
  result.Set("ids", out);
  result.Set("lengths", lengths);
  return result;
}

Napi::Value Decode(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Processor &processor = Unwrap(info[0]).processor;
  std::vector<int> ids;
  if (info.Length() >= 2 && info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    auto array = info[1].As<Napi::Int32Array>();
    ids.assign(array.Data(), array.Data() + array.ElementLength());
  } else if (info.Length() >= 2 && info[1].IsArray()) {
    auto array = info[1].As<Napi::Array>();
    ids.resize(array.Length());
    for (uint32_t i = 0; i < array.Length(); i++) ids[i] = array.Get(i).As<Napi::Number>().Int32Value();
  } else {
    throw Napi::TypeError::New(env, "decode(handle, ids: Int32Array | number[])");
  }
  const int pieces = processor.GetPieceSize();
  for (int id : ids) {
    // libsentencepiece checks ids with a fatal CHECK (aborting the process); a JS error instead.
    if (id < 0 || id >= pieces) throw Napi::RangeError::New(env, "decode: id " + std::to_string(id) + " is not a piece id");
  }
  std::string text;
  ThrowIfFailed(env, processor.Decode(ids, &text), "decode failed");
  return Napi::String::New(env, text);
}

Napi::Value PieceSize(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), Unwrap(info[0]).processor.GetPieceSize());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("load", Napi::Function::New(env, Load, "load"));
  exports.Set("encodeBatch", Napi::Function::New(env, EncodeBatch, "encodeBatch"));
  exports.Set("decode", Napi::Function::New(env, Decode, "decode"));
  exports.Set("pieceSize", Napi::Function::New(env, PieceSize, "pieceSize"));
  exports.Set("stats", Napi::Function::New(env, Stats, "stats"));
  exports.Set("version", Napi::String::New(env, CAMEMBERTA_SENTENCEPIECE_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(camemberta_sentencepiece, Init)
