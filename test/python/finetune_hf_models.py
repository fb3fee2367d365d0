#!/usr/bin/env python3
"""Tiny encoders saved by transformers itself, for fine-tuning tests, and checks of what we save.

    finetune_hf_models.py make TOKENIZER_DIR OUT_DIR
        writes OUT_DIR/roberta (RobertaModel) and OUT_DIR/deberta (DebertaV2Model, V3 settings),
        random weights (seed 0), vocabulary and special ids of the tokenizer in TOKENIZER_DIR, whose
        tokenizer files are copied beside each.
    finetune_hf_models.py sequence MODEL_DIR PREDICTED.jsonl
        AutoModelForSequenceClassification + AutoTokenizer on each line's text (and text_pair);
        prints the class, loading info, and how many argmax labels equal the line's "prediction".
    finetune_hf_models.py encoder MODEL_DIR
        AutoModel loading info of a parser's encoder directory.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import (AutoModel, AutoModelForSequenceClassification, AutoTokenizer, DebertaV2Config, DebertaV2Model,
                          RobertaConfig, RobertaModel)

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
TOKENIZER_FILES = ["spm.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"]


def make(tokenizer_dir, out_dir):
    source = json.load(open(os.path.join(tokenizer_dir, "config.json")))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    common = dict(vocab_size=source["vocab_size"], hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    models = {
        "roberta": RobertaModel(RobertaConfig(max_position_embeddings=600, type_vocab_size=1, **common), add_pooling_layer=True),
        "deberta": DebertaV2Model(DebertaV2Config(max_position_embeddings=512, relative_attention=True, position_biased_input=False,
                                                  pos_att_type=["p2c", "c2p"], position_buckets=32, norm_rel_ebd="layer_norm",
                                                  share_att_key=True, type_vocab_size=0, **common)),
    }
    for name, model in models.items():
        target = os.path.join(out_dir, name)
        model.save_pretrained(target)
        for file in TOKENIZER_FILES:
            if os.path.exists(os.path.join(tokenizer_dir, file)):
                shutil.copy(os.path.join(tokenizer_dir, file), target)
    print(json.dumps({"made": sorted(models)}))


def sequence(model_dir, predicted):
    model, info = AutoModelForSequenceClassification.from_pretrained(model_dir, output_loading_info=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    total = equal = 0
    mismatches = []
    with torch.no_grad():
        for line in open(predicted, encoding="utf-8"):
            if not line.strip():
                continue
            record = json.loads(line)
            encoded = tokenizer(record["text"], record.get("text_pair"), return_tensors="pt")
            logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits[0]
            theirs = model.config.id2label[int(logits.argmax())]
            total += 1
            if theirs == record["prediction"]:
                equal += 1
            elif len(mismatches) < 5:
                mismatches.append({"text": record["text"], "transformers": theirs, "ours": record["prediction"]})
    print(json.dumps({"class": type(model).__name__, "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
                      "examples": total, "equal": equal, "mismatches": mismatches}))


def encoder(model_dir):
    model, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
    print(json.dumps({"class": type(model).__name__, "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"])}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"make": make, "sequence": sequence, "encoder": encoder}[command](*args)
