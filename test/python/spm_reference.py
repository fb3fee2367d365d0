"""Reference answers from Python sentencepiece and transformers for the tokenizer tests.

  spm_reference.py dump MODEL          pieces (piece, score, kind) and trainer ids, as JSON
  spm_reference.py encode MODEL FILE   one line of ids per line of FILE (the line as is)
  spm_reference.py hf DIR FILE         DebertaV2Tokenizer and AutoTokenizer loaded from DIR: classes,
                                       special ids, and the ids of each line of FILE (no [CLS]/[SEP])
"""
import json
import sys

import sentencepiece as spm


def lines_of(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")


def dump(model):
    sp = spm.SentencePieceProcessor(model_file=model)
    pieces = []
    for i in range(sp.get_piece_size()):
        if sp.is_unknown(i):
            kind = "unknown"
        elif sp.is_control(i):
            kind = "control"
        elif sp.is_unused(i):
            kind = "unused"
        elif sp.is_byte(i):
            kind = "byte"
        else:
            kind = "normal"
        pieces.append([sp.id_to_piece(i), sp.get_score(i), kind])
    print(json.dumps({"pieces": pieces, "unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id(), "pad": sp.pad_id()}))


def encode(model, path):
    sp = spm.SentencePieceProcessor(model_file=model)
    out = [" ".join(map(str, sp.encode(line))) for line in lines_of(path)]
    sys.stdout.write("\n".join(out) + "\n")


def hf(directory, path):
    from transformers import AutoTokenizer, DebertaV2Tokenizer

    deberta = DebertaV2Tokenizer.from_pretrained(directory)
    auto = AutoTokenizer.from_pretrained(directory)
    lines = lines_of(path)
    print(json.dumps({
        "deberta_class": type(deberta).__name__,
        "auto_class": type(auto).__name__,
        "length": len(deberta),
        "ids": {name: getattr(deberta, name + "_token_id") for name in ["pad", "cls", "sep", "unk", "mask"]},
        "pair": deberta("Bonjour", "Au revoir")["input_ids"],
        "deberta": [deberta.encode(line, add_special_tokens=False) for line in lines],
        "auto": [auto.encode(line, add_special_tokens=False) for line in lines],
    }))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "dump":
        dump(sys.argv[2])
    elif command == "encode":
        encode(sys.argv[2], sys.argv[3])
    elif command == "hf":
        hf(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {command}")
