#!/usr/bin/env python3
"""PyTorch reference of the pretraining objectives, for test/electra-parity.test.ts and
test/mlm-parity.test.ts: transformers' own DeBERTa / RoBERTa classes plus the few lines of
ELECTRA, embedding sharing and GDES (SPEC section 4), fed the weights, masking and generator
samples the TypeScript side wrote, so that only the objective is under test.

    electra_reference.py DIR CASE [CASE ...]

Each DIR/CASE/ holds (written by the test, all float32 / int64 safetensors):
    case.json              {"kind": "electra", "sharing": "gdes"|"es"|"none", "disc_weight": 50}
                           or {"kind": "mlm", "model_type": "deberta-v2"|"roberta"}
    generator.json, discriminator.json (electra) or config.json (mlm): HF config.json content
    parameters.safetensors every parameter by its TypeScript name: electra: generator.<HF key of
                           DebertaV2ForMaskedLM>, discriminator.deberta.<HF key of DebertaV2Model>,
                           discriminator.discriminator_predictions.{dense,dense_prediction}.*,
                           embedding_delta (gdes only); mlm: the HF keys of the *ForMaskedLM
    inputs.safetensors     input_ids, attention_mask [B, L] and the masking: masked_input_ids
                           [B, L], positions, original_ids, weights [B, N]; electra also
                           sampled_ids [B, N] (the generator's samples, fed, not drawn)
and gets:
    outputs.safetensors    electra: loss, gen_loss, disc_loss (0-dim), gen_logits [B, N, V],
                           disc_input_ids, replaced (int64 0/1), disc_logits [B, L];
                           mlm: loss (HF's own labels loss), logits [B, N, V] (gathered at positions)
    grads.safetensors      d loss / d parameter under the names of parameters.safetensors
Prints one JSON line per run: case -> losses.

Names are resolved strictly: a parameter the reference model has but the file lacks, a name the
file has that the model does not, or a discriminator word-embedding table under a sharing mode
(where the discriminator must read the generator's) is an error naming the key.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2Model, RobertaConfig, RobertaForMaskedLM

transformers.utils.logging.disable_progress_bar()
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__}
SHARING_MODES = ("gdes", "es", "none")
DISC_WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
# ELECTRA's generator-loss denominator (SPEC 4: sum of weights + 1e-6).
WEIGHT_EPSILON = 1e-6


class CaseError(Exception):
    pass


def fail(case_dir, message):
    raise CaseError(f"{case_dir}: {message}")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise CaseError(f"{path}: {error}") from error


class RtdHead(torch.nn.Module):
    """ELECTRA's discriminator_predictions: dense H -> H, hidden_act, dense_prediction H -> 1."""

    def __init__(self, config):
        super().__init__()
        self.dense = torch.nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_prediction = torch.nn.Linear(config.hidden_size, 1)
        self.act = transformers.activations.ACT2FN[config.hidden_act]

    def forward(self, hidden):
        return self.dense_prediction(self.act(self.dense(hidden))).squeeze(-1)


def load_named(case_dir, tensors, resolve, expected):
    """Copies each file tensor into the parameter resolve(name) returns; `expected` lists
    (description, parameter) pairs that must all have been written."""
    written = set()
    with torch.no_grad():
        for name, value in tensors.items():
            parameter = resolve(name)
            if parameter is None:
                fail(case_dir, f"parameters.safetensors: {name} names no parameter of the reference model")
            if tuple(parameter.shape) != tuple(value.shape):
                fail(case_dir, f"parameters.safetensors: {name} has shape {list(value.shape)}, the reference {list(parameter.shape)}")
            parameter.copy_(value)
            written.add(id(parameter))
    missing = [description for description, parameter in expected if id(parameter) not in written]
    if missing:
        fail(case_dir, f"parameters.safetensors lacks {', '.join(missing)}")


def get_parameter(module, name):
    try:
        return module.get_parameter(name)
    except AttributeError:
        return None


def gather_rows(hidden, positions):
    """hidden [B, L, H] at positions [B, N] -> [B, N, H]."""
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))


def weighted_cross_entropy(logits, targets, weights):
    per_slot = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return (per_slot.view_as(weights) * weights).sum() / (weights.sum() + WEIGHT_EPSILON)


def discriminator_input(input_ids, positions, weights, sampled_ids):
    """Original tokens with each used slot's sample written at its position; where several slots
    share a position the first (lowest n) wins, so slots are written last to first."""
    out = input_ids.clone()
    batch, slots = positions.shape
    for b in range(batch):
        for n in reversed(range(slots)):
            if weights[b, n] > 0:
                out[b, positions[b, n]] = sampled_ids[b, n]
    return out


def electra_case(case_dir, case):
    sharing = case.get("sharing")
    if sharing not in SHARING_MODES:
        fail(case_dir, f"case.json: sharing must be one of {SHARING_MODES}, got {sharing!r}")
    disc_weight = float(case.get("disc_weight", 50))
    gen_config = DebertaV2Config.from_dict(read_json(os.path.join(case_dir, "generator.json")))
    disc_config = DebertaV2Config.from_dict(read_json(os.path.join(case_dir, "discriminator.json")))
    generator = DebertaV2ForMaskedLM._from_config(gen_config, attn_implementation="eager")
    discriminator = DebertaV2Model._from_config(disc_config, attn_implementation="eager")
    head = RtdHead(disc_config)
    generator_words = generator.deberta.embeddings.word_embeddings.weight
    if generator.cls.predictions.decoder.weight is not generator_words:
        fail(case_dir, "generator.json: the MLM decoder is not tied to the word embeddings (tie_word_embeddings?)")
    delta = None
    if sharing == "gdes":
        delta = torch.nn.Parameter(torch.zeros_like(generator_words))

    def resolve(name):
        if name == "embedding_delta":
            return delta
        if name.startswith("generator."):
            return get_parameter(generator, name[len("generator."):])
        if name.startswith("discriminator.deberta."):
            key = name[len("discriminator.deberta."):]
            if key == DISC_WORD_EMBEDDINGS and sharing != "none":
                fail(case_dir, f"parameters.safetensors: {name} exists under sharing '{sharing}', where the "
                               f"discriminator must read the generator's table")
            return get_parameter(discriminator, key)
        if name.startswith("discriminator.discriminator_predictions."):
            return get_parameter(head, name[len("discriminator.discriminator_predictions."):])
        return None

    expected = [(f"generator.{k}", p) for k, p in generator.named_parameters()]
    expected += [(f"discriminator.deberta.{k}", p) for k, p in discriminator.named_parameters()
                 if sharing == "none" or k != DISC_WORD_EMBEDDINGS]
    expected += [(f"discriminator.discriminator_predictions.{k}", p) for k, p in head.named_parameters()]
    if delta is not None:
        expected.append(("embedding_delta", delta))
    parameters = load_file(os.path.join(case_dir, "parameters.safetensors"))
    load_named(case_dir, parameters, resolve, expected)
    for module in (generator, discriminator, head):
        module.eval()

    inputs = load_file(os.path.join(case_dir, "inputs.safetensors"))
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    positions, original_ids = inputs["positions"], inputs["original_ids"]
    weights, sampled_ids = inputs["weights"], inputs["sampled_ids"]

    hidden = generator.deberta(input_ids=inputs["masked_input_ids"], attention_mask=attention_mask).last_hidden_state
    gen_logits = generator.cls(gather_rows(hidden, positions))
    gen_loss = weighted_cross_entropy(gen_logits, original_ids, weights)

    disc_input_ids = discriminator_input(input_ids, positions, weights, sampled_ids)
    replaced = disc_input_ids != input_ids
    if sharing == "gdes":
        word_embeddings = F.embedding(disc_input_ids, generator_words.detach()) + F.embedding(disc_input_ids, delta)
    elif sharing == "es":
        word_embeddings = F.embedding(disc_input_ids, generator_words)
    else:
        word_embeddings = discriminator.embeddings.word_embeddings(disc_input_ids)
    disc_hidden = discriminator(inputs_embeds=word_embeddings, attention_mask=attention_mask).last_hidden_state
    disc_logits = head(disc_hidden)
    real = attention_mask.to(disc_logits.dtype)
    per_token = F.binary_cross_entropy_with_logits(disc_logits, replaced.to(disc_logits.dtype), reduction="none")
    disc_loss = (per_token * real).sum() / real.sum()

    loss = gen_loss + disc_weight * disc_loss
    loss.backward()
    outputs = {
        "loss": loss.detach().reshape(()), "gen_loss": gen_loss.detach().reshape(()),
        "disc_loss": disc_loss.detach().reshape(()), "gen_logits": gen_logits.detach().contiguous(),
        "disc_input_ids": disc_input_ids, "replaced": replaced.to(torch.int64),
        "disc_logits": disc_logits.detach().contiguous(),
    }
    return outputs, parameters, resolve


def mlm_case(case_dir, case):
    model_type = case.get("model_type")
    classes = {"deberta-v2": (DebertaV2Config, DebertaV2ForMaskedLM), "roberta": (RobertaConfig, RobertaForMaskedLM)}
    if model_type not in classes:
        fail(case_dir, f"case.json: model_type must be one of {sorted(classes)}, got {model_type!r}")
    config_class, model_class = classes[model_type]
    config = config_class.from_dict(read_json(os.path.join(case_dir, "config.json")))
    model = model_class._from_config(config, attn_implementation="eager")
    parameters = load_file(os.path.join(case_dir, "parameters.safetensors"))

    def resolve(name):
        return get_parameter(model, name)

    load_named(case_dir, parameters, resolve, list(model.named_parameters()))
    model.eval()

    inputs = load_file(os.path.join(case_dir, "inputs.safetensors"))
    positions, original_ids, weights = inputs["positions"], inputs["original_ids"], inputs["weights"]
    labels = torch.full_like(inputs["input_ids"], -100)
    for b in range(positions.size(0)):
        used = [int(p) for p, w in zip(positions[b], weights[b]) if w > 0]
        if len(set(used)) != len(used):
            fail(case_dir, f"inputs.safetensors: row {b} uses a position twice ({used}); HF labels hold one target per position")
        for n in range(positions.size(1)):
            if weights[b, n] > 0:
                labels[b, positions[b, n]] = original_ids[b, n]
    result = model(input_ids=inputs["masked_input_ids"], attention_mask=inputs["attention_mask"], labels=labels)
    result.loss.backward()
    outputs = {"loss": result.loss.detach().reshape(()),
               "logits": gather_rows(result.logits.detach(), positions).contiguous()}
    return outputs, parameters, resolve


def run_case(root, name):
    case_dir = os.path.join(root, name)
    case = read_json(os.path.join(case_dir, "case.json"))
    kinds = {"electra": electra_case, "mlm": mlm_case}
    if case.get("kind") not in kinds:
        fail(case_dir, f"case.json: kind must be one of {sorted(kinds)}, got {case.get('kind')!r}")
    torch.manual_seed(0)
    outputs, parameters, resolve = kinds[case["kind"]](case_dir, case)
    grads = {}
    for key in parameters:
        grad = resolve(key).grad
        grads[key] = torch.zeros_like(parameters[key]) if grad is None else grad.detach().contiguous()
    tag = {**VERSIONS, "case": name}
    save_file(outputs, os.path.join(case_dir, "outputs.safetensors"), metadata=tag)
    save_file(grads, os.path.join(case_dir, "grads.safetensors"), metadata=tag)
    return {key: outputs[key].item() for key in ("loss", "gen_loss", "disc_loss") if key in outputs}


def main():
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) > 1 else 2
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    root, names = sys.argv[1], sys.argv[2:]
    try:
        print(json.dumps({name: run_case(root, name) for name in names}))
    except CaseError as error:
        print(f"electra_reference.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
