#!/usr/bin/env python3
"""Reference data from HuggingFace transformers for the TypeScript DeBERTa / RoBERTa tests.

Generate (one directory per config, all in one process so torch is imported once):
    hf_reference.py OUT_DIR CONFIG [CONFIG ...] [--seed N]      CONFIG may be 'all'
    hf_reference.py --list
writes OUT_DIR/CONFIG/
    model/config.json, model/model.safetensors   HF save_pretrained (tied keys omitted)
    model-bin/config.json, model-bin/pytorch_model.bin
                                                 torch.save of the full state_dict (tied keys
                                                 included, as older save_pretrained wrote it)
    inputs.safetensors    input_ids, attention_mask, labels: int64 [B, L]; rows padded to
                          different lengths; labels -100 except at masked positions
    outputs.safetensors   last_hidden_state f32 [B, L, H], logits f32 [B, L, V], loss f32 []
    grads.safetensors     d loss / d parameter for every parameter, named by HF key
                          (named_parameters: a tied weight appears once, under its first name)
    reference.json        config name, seed, versions, loss, shapes, parameter names
All tensors are float32 on CPU, computed in eval mode (dropout off). Every .safetensors file
carries torch / transformers versions in its metadata.

Check a model directory written by camemberta:
    hf_reference.py --check MODEL_DIR [--inputs INPUTS.safetensors --output OUT.safetensors]
                    [--class AutoModel|AutoModelForMaskedLM]
prints one JSON object (class, missing / unexpected / mismatched keys, versions) and, given
inputs (input_ids, attention_mask), writes last_hidden_state and, for a masked-LM head, logits.
The class defaults to AutoModelForMaskedLM when config.json's architectures name a *ForMaskedLM.
"""
import argparse
import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (AutoModel, AutoModelForMaskedLM, DebertaV2Config, DebertaV2ForMaskedLM,
                          RobertaConfig, RobertaForMaskedLM)

transformers.utils.logging.disable_progress_bar()
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__}

# DeBERTa-V3 settings as CamemBERTa writes them (SPEC section 1), at test sizes.
V3 = dict(
    relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=256, max_relative_positions=-1,
    share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
    hidden_act="gelu", layer_norm_eps=1e-7, max_position_embeddings=512, pad_token_id=0, legacy=True,
)
SMALL = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)

# name -> (config class, model class, config kwargs, sequence lengths of the batch rows)
CONFIGS = {
    "deberta-v3": (DebertaV2Config, DebertaV2ForMaskedLM, {**V3, **SMALL}, [40, 33, 21]),
    # Rows longer than position_buckets / 2 + 1 = 129 reach the log buckets (SPEC section 2).
    "deberta-v3-long": (DebertaV2Config, DebertaV2ForMaskedLM,
                        {**V3, **SMALL, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 64},
                        [300, 170]),
    "deberta-v3-conv": (DebertaV2Config, DebertaV2ForMaskedLM,
                        {**V3, **SMALL, "conv_kernel_size": 3, "conv_act": "gelu"}, [40, 33, 21]),
    # Generator-like: word embeddings wider than the encoder, projected by embeddings.embed_proj.
    "deberta-generator": (DebertaV2Config, DebertaV2ForMaskedLM,
                          {**V3, **SMALL, "embedding_size": 96}, [40, 33, 21]),
    # V2 style: absolute positions added to the input, no buckets, separate position projections,
    # no LayerNorm on the relative embeddings; max_relative_positions below the row length so the
    # clamp of relative distances is exercised. pos_att_type as the old '|' string HF splits.
    "deberta-v2": (DebertaV2Config, DebertaV2ForMaskedLM,
                   {**SMALL, "relative_attention": True, "position_biased_input": True, "position_buckets": -1,
                    "max_relative_positions": 16, "share_att_key": False, "pos_att_type": "p2c|c2p",
                    "norm_rel_ebd": "none", "type_vocab_size": 0, "max_position_embeddings": 64,
                    "layer_norm_eps": 1e-7, "pad_token_id": 0, "legacy": True}, [40, 33, 21]),
    # RoBERTa positions start at pad_token_id + 1, so max_position_embeddings >= L + 2.
    "roberta": (RobertaConfig, RobertaForMaskedLM,
                {**SMALL, "max_position_embeddings": 64, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                 "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}, [40, 33, 21]),
}


def randomize(model, generator):
    """Replace HF's init (std 0.02, LayerNorm 1/0, zero biases) by larger, non-trivial values so
    that attention is far from uniform and every bias and LayerNorm parameter matters."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "LayerNorm.weight" in name:
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(0.2 * noise)


def make_batch(config, lengths, generator):
    """Rows [CLS] tokens... [SEP] then padding; ~15% of the inner tokens masked for the loss."""
    batch, width = len(lengths), max(lengths)
    if isinstance(config, RobertaConfig):
        cls_id, sep_id, first_free = config.bos_token_id, config.eos_token_id, 4
    else:
        cls_id, sep_id, first_free = 1, 2, 3
    mask_id = config.vocab_size - 1
    input_ids = torch.full((batch, width), config.pad_token_id, dtype=torch.int64)
    attention_mask = torch.zeros((batch, width), dtype=torch.int64)
    labels = torch.full((batch, width), -100, dtype=torch.int64)
    for row, length in enumerate(lengths):
        tokens = torch.randint(first_free, config.vocab_size - 1, (length,), generator=generator)
        tokens[0], tokens[length - 1] = cls_id, sep_id
        input_ids[row, :length] = tokens
        attention_mask[row, :length] = 1
        count = max(1, round(0.15 * (length - 2)))
        picked = 1 + torch.randperm(length - 2, generator=generator)[:count]
        labels[row, picked] = tokens[picked]
        input_ids[row, picked[: max(1, int(0.85 * count))]] = mask_id
    return input_ids, attention_mask, labels


def metadata(**extra):
    return {**VERSIONS, **{k: str(v) for k, v in extra.items()}}


def generate(out_root, name, seed):
    config_class, model_class, kwargs, lengths = CONFIGS[name]
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = config_class(**kwargs)
    # eager attention: the plain softmax(QK^T)V path our implementation mirrors (RoBERTa would
    # otherwise use SDPA; DeBERTa only has eager).
    model = model_class._from_config(config, attn_implementation="eager")
    randomize(model, generator)
    model.eval()

    model.save_pretrained(os.path.join(out, "model"))
    bin_dir = os.path.join(out, "model-bin")
    os.makedirs(bin_dir, exist_ok=True)
    model.config.to_json_file(os.path.join(bin_dir, "config.json"))
    torch.save(model.state_dict(), os.path.join(bin_dir, "pytorch_model.bin"))

    input_ids, attention_mask, labels = make_batch(config, lengths, generator)
    tag = metadata(config=name, seed=seed)
    save_file({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels},
              os.path.join(out, "inputs.safetensors"), metadata=tag)

    result = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, output_hidden_states=True)
    result.loss.backward()
    with torch.no_grad():
        last_hidden_state = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    save_file({"last_hidden_state": last_hidden_state.contiguous(), "logits": result.logits.detach().contiguous(),
               "loss": result.loss.detach().reshape(())}, os.path.join(out, "outputs.safetensors"), metadata=tag)

    grads, unused = {}, []
    for key, param in model.named_parameters():
        if param.grad is None:
            unused.append(key)
            grads[key] = torch.zeros_like(param)
        else:
            grads[key] = param.grad.detach().contiguous()
    save_file(grads, os.path.join(out, "grads.safetensors"), metadata=tag)

    summary = {
        "config": name, "seed": seed, **VERSIONS, "model_class": model_class.__name__,
        "loss": result.loss.item(), "lengths": lengths, "input_shape": list(input_ids.shape),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "parameters": [key for key, _ in model.named_parameters()], "unused_parameters": unused,
        "state_dict_keys": list(model.state_dict().keys()),
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def check(model_dir, class_name, inputs_path, output_path):
    with open(os.path.join(model_dir, "config.json")) as f:
        architectures = json.load(f).get("architectures") or []
    if class_name is None:
        class_name = "AutoModelForMaskedLM" if any(a.endswith("ForMaskedLM") for a in architectures) else "AutoModel"
    auto = {"AutoModel": AutoModel, "AutoModelForMaskedLM": AutoModelForMaskedLM}[class_name]
    model, info = auto.from_pretrained(model_dir, output_loading_info=True, attn_implementation="eager")
    model.eval()
    report = {
        "class": class_name, "model_class": type(model).__name__, **VERSIONS,
        **{key: sorted(str(k) for k in info.get(key, [])) for key in
           ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")},
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    if inputs_path:
        inputs = load_file(inputs_path)
        feed = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in inputs}
        outputs = {}
        with torch.no_grad():
            outputs["last_hidden_state"] = model.base_model(**feed).last_hidden_state.contiguous()
            if class_name == "AutoModelForMaskedLM":
                outputs["logits"] = model(**feed).logits.contiguous()
        save_file(outputs, output_path, metadata=metadata(model_dir=model_dir))
        report["outputs"] = sorted(outputs)
    print(json.dumps(report))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?")
    parser.add_argument("configs", nargs="*")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="print the config names")
    parser.add_argument("--check", metavar="MODEL_DIR")
    parser.add_argument("--class", dest="class_name", choices=["AutoModel", "AutoModelForMaskedLM"])
    parser.add_argument("--inputs")
    parser.add_argument("--output")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.list:
        print("\n".join(CONFIGS))
    elif args.check:
        if bool(args.inputs) != bool(args.output):
            parser.error("--inputs and --output go together")
        check(args.check, args.class_name, args.inputs, args.output)
    else:
        if not args.out_dir or not args.configs:
            parser.error("give OUT_DIR and at least one CONFIG (or --list / --check)")
        names = list(CONFIGS) if args.configs == ["all"] else args.configs
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            parser.error(f"unknown config(s) {unknown}; known: {', '.join(CONFIGS)}")
        summaries = [generate(args.out_dir, name, args.seed) for name in names]
        print(json.dumps([{k: s[k] for k in ("config", "loss", "num_parameters")} for s in summaries]))


if __name__ == "__main__":
    sys.exit(main())
