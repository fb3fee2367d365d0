// camemberta_sentencepiece.node: the reference SentencePiece C++ library (libsentencepiece) behind a
// few N-API functions, for src/tokenizer/sentencepiece.ts. A separate addon from camemberta.node so
// that tokenizer worker threads load it without libtorch. Context-aware (NODE_API_MODULE, no global
// state): every worker thread loads its own processor.
//
//   load(modelBytes: Uint8Array, maxCacheEntries = 0) -> handle   a serialized ModelProto (spm.model)
//   encodeBatch(handle, texts: string[], byWord = false) -> { ids: Int32Array, lengths: Int32Array }
//   decode(handle, ids: Int32Array | number[]) -> string
//   pieceSize(handle) -> number
//   version: the libsentencepiece version this addon was compiled against
#include <napi.h>
#include <sentencepiece_processor.h>

#include <cstring>
#include <memory>
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

// word -> ids, open addressing in flat arrays: a lookup touches one slot (hash and entry index
// side by side), then the entry's key and ids, where std::unordered_map chases more pointers (its
// cache misses were a quarter of the encoding time on running text).
class WordCache {
 public:
  void Clear() {
    slots_.assign(1024, Slot{});
    entries_.clear();
    keys_.clear();
    ids_.clear();
  }
  size_t size() const { return entries_.size(); }

  // The ids of word and their count, or nullptr when it is not cached.
  std::pair<const int32_t *, size_t> Find(std::string_view word, uint64_t hash) const {
    for (size_t i = hash & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot &slot = slots_[i];
      if (slot.entry == 0) return {nullptr, 0};
      if (slot.hash != static_cast<uint32_t>(hash >> 32)) continue;
      const Entry &entry = entries_[slot.entry - 1];
      if (std::string_view(keys_.data() + entry.keyOffset, entry.keyLength) == word) return {ids_.data() + entry.idsOffset, entry.idsLength};
    }
  }

  void Insert(std::string_view word, uint64_t hash, const std::vector<int> &ids) {
    if (2 * (entries_.size() + 1) > slots_.size()) Grow();
    entries_.push_back({static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(word.size()),
                        static_cast<uint32_t>(ids_.size()), static_cast<uint32_t>(ids.size())});
    keys_.append(word);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
    Place(static_cast<uint32_t>(entries_.size()), hash);
  }

  static uint64_t Hash(std::string_view word) { return std::hash<std::string_view>{}(word); }

 private:
  struct Slot {
    uint32_t hash = 0;   // high half of the word's hash
    uint32_t entry = 0;  // 1 + index into entries_, 0 when empty
  };
  struct Entry {
    uint32_t keyOffset, keyLength, idsOffset, idsLength;
  };

  void Place(uint32_t entry, uint64_t hash) {
    size_t i = hash & (slots_.size() - 1);
    while (slots_[i].entry != 0) i = (i + 1) & (slots_.size() - 1);
    slots_[i] = {static_cast<uint32_t>(hash >> 32), entry};
  }

  void Grow() {
    slots_.assign(slots_.size() * 2, Slot{});
    for (uint32_t e = 0; e < entries_.size(); e++) {
      Place(e + 1, Hash(std::string_view(keys_.data() + entries_[e].keyOffset, entries_[e].keyLength)));
    }
  }

  std::vector<Slot> slots_ = std::vector<Slot>(1024);
  std::vector<Entry> entries_;
  std::string keys_;
  std::vector<int32_t> ids_;
};

// A processor and its word cache. A handle belongs to the thread that loaded it (an External cannot
// leave its JS context), so neither needs a lock.
struct Encoder {
  Processor processor;
  size_t maxCacheEntries = 0;
  WordCache cache;
  std::vector<int> scratch;

  void EncodeText(Napi::Env env, std::string_view text, std::vector<int32_t> &out) {
    scratch.clear();
    ThrowIfFailed(env, processor.Encode(text, &scratch), "encode failed");
    out.insert(out.end(), scratch.begin(), scratch.end());
  }

  // Each space-separated word encoded alone, through the cache: the same ids as encoding the text
  // for a whitespace-splitting unigram model (the caller checks the model; see sentencepiece.ts),
  // and about 4x faster on running text, where nearly every word is a hit. Split on U+0020 only, as
  // the sentencepiece-js path splits: byte 0x20 never occurs inside a multi-byte UTF-8 sequence.
  void EncodeByWord(Napi::Env env, std::string_view text, std::vector<int32_t> &out) {
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find(' ', start);
      if (end == std::string_view::npos) end = text.size();
      std::string_view word = text.substr(start, end - start);
      start = end + 1;
      if (word.empty()) continue;
      const uint64_t hash = WordCache::Hash(word);
      auto [ids, count] = cache.Find(word, hash);
      if (ids == nullptr) {
        if (cache.size() >= maxCacheEntries) cache.Clear();
        scratch.clear();
        ThrowIfFailed(env, processor.Encode(word, &scratch), "encode failed");
        cache.Insert(word, hash, scratch);
        out.insert(out.end(), scratch.begin(), scratch.end());
        continue;
      }
      out.insert(out.end(), ids, ids + count);
    }
  }
};

Encoder &Unwrap(const Napi::Value &value) {
  if (!value.IsExternal()) throw Napi::TypeError::New(value.Env(), "expected a SentencePiece handle from load()");
  return *value.As<Napi::External<Encoder>>().Data();
}

Napi::Value Load(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "load(modelBytes: Uint8Array)");
  auto bytes = info[0].As<Napi::Uint8Array>();
  auto encoder = std::make_unique<Encoder>();
  ThrowIfFailed(env, encoder->processor.LoadFromSerializedProto(
      std::string_view(reinterpret_cast<const char *>(bytes.Data()), bytes.ByteLength())), "cannot load the model");
  if (info.Length() >= 2 && info[1].IsNumber()) encoder->maxCacheEntries = info[1].As<Napi::Number>().Int64Value();
  return Napi::External<Encoder>::New(env, encoder.release(), [](Napi::Env, Encoder *e) { delete e; });
}

// One call for a whole batch: the per-call cost of N-API is paid once, not per text. Each text is
// encoded with Encode (the ids of Python's sp.encode(text)), whole or word by word through the cache.
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
  exports.Set("version", Napi::String::New(env, CAMEMBERTA_SENTENCEPIECE_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(camemberta_sentencepiece, Init)
