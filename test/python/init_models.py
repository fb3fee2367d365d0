#!/usr/bin/env python3
"""Tiny HF model directories made by transformers, for the continued-pretraining tests.

    init_models.py make KIND:OUT_DIR[:FORMAT[:SEED]] [...] --tokenizer TOK_DIR    (FORMAT safetensors|bin|sharded)
    init_models.py compare REFERENCE_DIR EXPORTED_DIR --class AutoModel|AutoModelForMaskedLM [--rtd]
    init_models.py tokenizer DIR --text TEXT [--text TEXT ...]

KIND: discriminator (DebertaV2Model, CamemBERTa-like: relative attention, conv layer, with an
rtd_head.safetensors beside it), generator (DebertaV2ForMaskedLM at a third of the width, the
discriminator's embedding_size kept, same vocabulary), v3-mlm (a microsoft/deberta-v3-base-like
DebertaV2ForMaskedLM: no conv, non-legacy head), roberta (RobertaModel). Every weight is drawn at
random (LayerNorms included) so that a copy that drops or swaps a tensor shows. TOK_DIR's tokenizer
files are copied in, as a HF model repository holds them.

compare prints JSON: the largest absolute difference of the outputs (last_hidden_state or logits,
and with --rtd the RTD head applied on top) between the two directories on random ids, plus the
state-dict keys each has and the other lacks. tokenizer prints, for each text, the ids of Python
sentencepiece and of AutoTokenizer (and its class and length).
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from transformers import (AutoModel, AutoModelForMaskedLM, AutoTokenizer, DebertaV2Config, DebertaV2ForMaskedLM,
                          DebertaV2Model, RobertaConfig, RobertaModel)

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TOKENIZER_FILES = ["spm.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"]


def ids_of(tok_dir):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tok_dir, "spm.model"))
    pieces = sp.get_piece_size()
    config = json.load(open(os.path.join(tok_dir, "tokenizer_config.json")))
    added = [int(i) for i in config.get("added_tokens_decoder", {})]
    return max([pieces] + [i + 1 for i in added])


def deberta_common(vocab):
    return dict(vocab_size=(vocab + 7) // 8 * 8, max_position_embeddings=64, type_vocab_size=0, relative_attention=True,
                position_buckets=16, max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
                pos_att_type=["p2c", "c2p"], position_biased_input=False, layer_norm_eps=1e-7, pad_token_id=0,
                hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, initializer_range=0.02)


def randomise(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05 + (1.0 if p.dim() == 1 and p.shape[0] > 1 and "LayerNorm.weight" in _ else 0.0))


def save(model, out, fmt):
    os.makedirs(out, exist_ok=True)
    if fmt == "bin":
        model.config.save_pretrained(out)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save(state, os.path.join(out, "pytorch_model.bin"))
    elif fmt == "sharded":
        model.save_pretrained(out, max_shard_size="20KB")
    else:
        model.save_pretrained(out)


def make_all(args):
    for spec in args.specs:
        kind, out, *rest = spec.split(":")
        make(argparse.Namespace(kind=kind, out_dir=out, tokenizer=args.tokenizer,
                                format=rest[0] if rest else "safetensors", seed=int(rest[1]) if len(rest) > 1 else 0))


def make(args):
    vocab = ids_of(args.tokenizer)
    torch.manual_seed(args.seed)
    if args.kind == "discriminator":
        config = DebertaV2Config(**deberta_common(vocab), hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                 intermediate_size=96, embedding_size=48, conv_kernel_size=3, conv_act="gelu")
        config.architectures = ["DebertaV2Model"]
        model = DebertaV2Model(config)
    elif args.kind == "generator":
        config = DebertaV2Config(**deberta_common(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=1,
                                 intermediate_size=64, embedding_size=48, conv_kernel_size=3, conv_act="gelu")
        config.architectures = ["DebertaV2ForMaskedLM"]
        model = DebertaV2ForMaskedLM(config)
    elif args.kind == "v3-mlm":
        config = DebertaV2Config(**deberta_common(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, legacy=False)
        config.architectures = ["DebertaV2ForMaskedLM"]
        model = DebertaV2ForMaskedLM(config)
    elif args.kind == "roberta":
        config = RobertaConfig(vocab_size=(vocab + 7) // 8 * 8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=80, pad_token_id=0)
        config.architectures = ["RobertaModel"]
        model = RobertaModel(config)
    else:
        raise SystemExit(f"unknown kind {args.kind}")
    randomise(model, args.seed)
    model.eval()
    save(model, args.out_dir, args.format)
    if args.kind == "discriminator":
        from safetensors.torch import save_file
        generator = torch.Generator().manual_seed(args.seed + 1)
        h = config.hidden_size
        head = {"discriminator_predictions.dense.weight": torch.randn(h, h, generator=generator) * 0.1,
                "discriminator_predictions.dense.bias": torch.randn(h, generator=generator) * 0.1,
                "discriminator_predictions.dense_prediction.weight": torch.randn(1, h, generator=generator) * 0.1,
                "discriminator_predictions.dense_prediction.bias": torch.randn(1, generator=generator) * 0.1}
        save_file(head, os.path.join(args.out_dir, "rtd_head.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        source = os.path.join(args.tokenizer, name)
        if os.path.exists(source):
            shutil.copy(source, os.path.join(args.out_dir, name))
    print(json.dumps({"dir": args.out_dir, "vocab_size": config.vocab_size, "files": sorted(os.listdir(args.out_dir))}))


def rtd_logits(directory, hidden, act):
    from safetensors.torch import load_file
    head = load_file(os.path.join(directory, "rtd_head.safetensors"))
    dense = torch.nn.functional.linear(hidden, head["discriminator_predictions.dense.weight"], head["discriminator_predictions.dense.bias"])
    return torch.nn.functional.linear(act(dense), head["discriminator_predictions.dense_prediction.weight"],
                                      head["discriminator_predictions.dense_prediction.bias"]).squeeze(-1)


def compare(args):
    cls = {"AutoModel": AutoModel, "AutoModelForMaskedLM": AutoModelForMaskedLM}[args.cls]
    reference = cls.from_pretrained(args.reference).eval()
    exported, info = cls.from_pretrained(args.exported, output_loading_info=True)
    exported.eval()
    vocab = min(reference.config.vocab_size, exported.config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, args.max_id or vocab, (3, 24), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 18:] = 0
    report = {"class": type(exported).__name__, "vocab_size": [reference.config.vocab_size, exported.config.vocab_size],
              "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"])}
    ref_keys, exp_keys = set(reference.state_dict()), set(exported.state_dict())
    report["only_reference"] = sorted(ref_keys - exp_keys)
    report["only_exported"] = sorted(exp_keys - ref_keys)
    with torch.no_grad():
        a = reference(input_ids=ids, attention_mask=mask)
        b = exported(input_ids=ids, attention_mask=mask)
        keep = mask.bool()
        if args.cls == "AutoModel":
            x, y = a.last_hidden_state, b.last_hidden_state
        else:
            # Rows past --max-id may be padding in one and new tokens in the other.
            x, y = a.logits[..., :args.max_id or vocab], b.logits[..., :args.max_id or vocab]
        report["max_abs"] = (x[keep] - y[keep]).abs().max().item()
        report["reference_max"] = x[keep].abs().max().item()
        if args.rtd:
            act = transformers.activations.ACT2FN[reference.config.hidden_act]
            report["rtd_max_abs"] = (rtd_logits(args.reference, x, act)[keep] - rtd_logits(args.exported, y, act)[keep]).abs().max().item()
    print(json.dumps(report))


def tokenizer(args):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.dir, "spm.model"))
    auto = AutoTokenizer.from_pretrained(args.dir)
    out = {"class": type(auto).__name__, "len": len(auto), "pieces": sp.get_piece_size(), "texts": []}
    for text in args.text:
        out["texts"].append({"text": text, "sentencepiece": sp.encode(text), "auto": auto(text, add_special_tokens=False)["input_ids"],
                             "auto_tokens": auto.convert_ids_to_tokens(auto(text, add_special_tokens=False)["input_ids"])})
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("specs", nargs="+")
    m.add_argument("--tokenizer", required=True)
    c = sub.add_parser("compare")
    c.add_argument("reference")
    c.add_argument("exported")
    c.add_argument("--class", dest="cls", default="AutoModel")
    c.add_argument("--rtd", action="store_true")
    c.add_argument("--max-id", type=int, default=0)
    t = sub.add_parser("tokenizer")
    t.add_argument("dir")
    t.add_argument("--text", action="append", default=[])
    args = parser.parse_args()
    {"make": make_all, "compare": compare, "tokenizer": tokenizer}[args.command](args)


if __name__ == "__main__":
    main()
