#!/usr/bin/env python3
"""Loads a token-classification directory saved by finetune.js with transformers and compares its
predictions with ours, word by word.

    finetune_token_check.py MODEL_DIR GOLD.conllu PREDICTED.conllu [--column UPOS] [--limit N]

Words are the CoNLL-U lines with an integer ID; each is tokenized by AutoTokenizer with
is_split_into_words=True and labelled at its first sub-word with AutoModelForTokenClassification's
argmax through config.id2label. PREDICTED is predict.js's output on GOLD. Prints one JSON object:
the class and loading info, words compared, how many predictions are equal, the first mismatches,
and transformers' accuracy against GOLD.
"""
import argparse
import json

import torch
import transformers
from transformers import AutoModelForTokenClassification, AutoTokenizer

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def read_conllu(path, column):
    sentences, words, columns = [], [], None
    names = ["ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC"]
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("# global.columns"):
                names = line.split("=", 1)[1].split()
                continue
            if not line:
                if words:
                    sentences.append(words)
                words = []
                continue
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if fields[0].isdigit():
                words.append((fields[names.index("FORM")], fields[names.index(column)]))
    if words:
        sentences.append(words)
    return sentences


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("gold")
    parser.add_argument("predicted")
    parser.add_argument("--column", default="UPOS")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, info = AutoModelForTokenClassification.from_pretrained(args.model_dir, output_loading_info=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    gold = read_conllu(args.gold, args.column)
    ours = read_conllu(args.predicted, args.column)
    if args.limit:
        gold, ours = gold[: args.limit], ours[: args.limit]
    words = equal = correct = 0
    mismatches = []
    with torch.no_grad():
        for s, (sentence, predicted) in enumerate(zip(gold, ours)):
            forms = [form for form, _ in sentence]
            encoded = tokenizer(forms, is_split_into_words=True, return_tensors="pt", truncation=True, max_length=512)
            logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits[0]
            first = {}
            for position, word in enumerate(encoded.word_ids()):
                if word is not None and word not in first:
                    first[word] = position
            for w, (form, label) in enumerate(sentence):
                theirs = model.config.id2label[int(logits[first[w]].argmax())] if w in first else "_"
                words += 1
                correct += theirs == label
                if theirs == predicted[w][1]:
                    equal += 1
                elif len(mismatches) < 10:
                    mismatches.append({"sentence": s, "word": w, "form": form, "transformers": theirs, "ours": predicted[w][1]})
    print(json.dumps({
        "class": type(model).__name__,
        "missing": sorted(info["missing_keys"]),
        "unexpected": sorted(info["unexpected_keys"]),
        "mismatched": [list(map(str, item)) for item in info.get("mismatched_keys", [])],
        "labels": len(model.config.id2label),
        "sentences": len(gold),
        "words": words,
        "equal": equal,
        "mismatches": mismatches,
        "transformers_accuracy": correct / max(words, 1),
    }))


if __name__ == "__main__":
    main()
