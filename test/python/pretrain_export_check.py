#!/usr/bin/env python3
"""Loads a pretraining export with transformers and compares its outputs with ours.

    pretrain_export_check.py EXPORT_DIR INPUTS.safetensors OURS.safetensors [--text TEXT]

EXPORT_DIR holds discriminator/ (AutoModel + rtd_head.safetensors) and generator/ (AutoModelForMaskedLM).
INPUTS: input_ids, attention_mask (int64 [B, L]). OURS: disc_hidden [B, L, H], rtd_logits [B, L],
gen_logits [B, L, V] computed by camemberta. Prints one JSON object: loading info of both models,
the tokenizer classes and ids of TEXT, and the largest difference (absolute, and relative to the
largest reference value) of each output at non-pad positions, the RTD head applied on top of
AutoModel's last_hidden_state.
"""
import argparse
import json
import os

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def diff(ours, reference, mask):
    keep = mask.bool()
    a, b = ours[keep].double(), reference[keep].double()
    absolute = (a - b).abs().max().item()
    return {"max_abs": absolute, "relative": absolute / max(b.abs().max().item(), 1e-30)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir")
    parser.add_argument("inputs")
    parser.add_argument("ours")
    parser.add_argument("--text", default="La bibliothèque ouvre le dimanche matin.")
    args = parser.parse_args()
    inputs, ours = load_file(args.inputs), load_file(args.ours)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    report = {"transformers": transformers.__version__}

    disc_dir = os.path.join(args.export_dir, "discriminator")
    disc, info = AutoModel.from_pretrained(disc_dir, output_loading_info=True)
    disc.eval()
    report["discriminator"] = {"class": type(disc).__name__, "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"])}
    head = load_file(os.path.join(disc_dir, "rtd_head.safetensors"))
    report["rtd_head_keys"] = sorted(head)
    act = transformers.activations.ACT2FN[disc.config.hidden_act]
    with torch.no_grad():
        hidden = disc(input_ids=ids, attention_mask=mask).last_hidden_state
        dense = torch.nn.functional.linear(hidden, head["discriminator_predictions.dense.weight"], head["discriminator_predictions.dense.bias"])
        rtd = torch.nn.functional.linear(act(dense), head["discriminator_predictions.dense_prediction.weight"],
                                         head["discriminator_predictions.dense_prediction.bias"]).squeeze(-1)
    report["disc_hidden"] = diff(ours["disc_hidden"], hidden, mask)
    report["rtd_logits"] = diff(ours["rtd_logits"], rtd, mask)

    gen_dir = os.path.join(args.export_dir, "generator")
    gen, info = AutoModelForMaskedLM.from_pretrained(gen_dir, output_loading_info=True)
    gen.eval()
    report["generator"] = {"class": type(gen).__name__, "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"])}
    with torch.no_grad():
        logits = gen(input_ids=ids, attention_mask=mask).logits
    report["gen_logits"] = diff(ours["gen_logits"], logits, mask)

    for name, directory in (("discriminator", disc_dir), ("generator", gen_dir)):
        tokenizer = AutoTokenizer.from_pretrained(directory)
        report[f"{name}_tokenizer"] = {"class": type(tokenizer).__name__, "ids": tokenizer(args.text)["input_ids"]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
