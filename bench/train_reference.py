#!/usr/bin/env python3
"""The PyTorch + transformers reference of our ELECTRA + GDES training step, for bench/train.ts.

    train_reference.py serve            long-lived worker: one JSON command per stdin line, one JSON reply per line
    train_reference.py check DIR...     cases of test/bench-train.test.ts: DIR/spec.json, parameters.safetensors,
                                        inputs.safetensors -> one JSON line {DIR: per-step losses} on stdout

The step is what a PyTorch expert would write for this model: transformers' DebertaV2ForMaskedLM
generator (eager attention, MLM head on the masked slots only), a DebertaV2Model discriminator with
ELECTRA's replaced-token-detection head (transformers has no class for it: the head of
src/models/deberta/rtd.ts), gradient-disentangled embedding sharing (the discriminator reads
E_G.detach()[ids] + E_delta[ids]), NVIDIA's dynamic masking and sampling from softmax(logits / T)
(by inverse CDF, as ours: see sample_tokens) as vectorised torch, loss = gen + disc_weight * disc,
backward, clip_grad_norm_(foreach=True), then either
torch.optim.AdamW(fused=True) or LAMB as NVIDIA's TF2 ELECTRA runs it (tensorflow_addons; see
test/python/optim_reference.py), written with torch's fused Adam kernel for the moments and
foreach ops for the rest. Autocast bfloat16 (CPU or CUDA) or float16 with a GradScaler (CUDA).

Commands of `serve` (spec: see bench/train-common.ts, WorkerSpec):
    {"cmd": "init", "spec": {...}}     -> {"ok": true, "info": {...settings, versions, parameters}}
    {"cmd": "run", "steps": K}         -> {"ok": true, "ms": [per-step wall ms], "tokens": real tokens per step}
    {"cmd": "phases", "steps": K}      -> {"ok": true, "phases": {name: mean ms}} (device-synchronised per phase)
    {"cmd": "profile", "steps": K}     -> {"ok": true, "table": torch.profiler's top operators}
    {"cmd": "memory"}                  -> {"ok": true, "peak_mb": maxrss (CPU) or max_memory_allocated (CUDA)}
    {"cmd": "quit"}
Errors reply {"ok": false, "error": "..."} and the worker goes on reading.
"""
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2Model

# The RTD head as the parity tests' reference defines it (ELECTRA's discriminator_predictions).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "python"))
from electra_reference import RtdHead  # noqa: E402

transformers.utils.logging.set_verbosity_error()




def is_bias_or_layer_norm(name):
    """src/optim/adamw.ts isBiasOrLayerNorm: no decay (and, for LAMB, no trust ratio) on these."""
    lowered = name.lower()
    return name.endswith(".bias") or "layernorm" in lowered or "layer_norm" in lowered


class FusedLamb:
    """LAMB as tensorflow_addons computes it (m, v, bias correction at the global step, update
    m_hat / (sqrt(v_hat) + eps) + wd w, trust ratio ||w|| / ||u|| with fallbacks to 1 where a norm
    is 0, w -= lr r u). The moments and m_hat / (sqrt(v_hat) + eps) come from torch's fused Adam
    kernel (one pass per tensor) run with lr = -1 into a zeroed buffer; the rest is foreach ops,
    and nothing is read back to the host."""

    def __init__(self, named, lr, betas, eps, weight_decay):
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        adapted = [p for n, p in named if not is_bias_or_layer_norm(n)]
        plain = [p for n, p in named if is_bias_or_layer_norm(n)]
        self.groups = []
        for params, is_adapted in ((adapted, True), (plain, False)):
            if params:
                self.groups.append({
                    "params": params, "adapted": is_adapted,
                    "exp_avg": [torch.zeros_like(p) for p in params],
                    "exp_avg_sq": [torch.zeros_like(p) for p in params],
                    "steps": [torch.zeros((), device=p.device) for p in params],
                })

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        for group in self.groups:
            present = [i for i, p in enumerate(group["params"]) if p.grad is not None]
            params = [group["params"][i] for i in present]
            grads = [p.grad for p in params]
            exp_avg = [group["exp_avg"][i] for i in present]
            exp_avg_sq = [group["exp_avg_sq"][i] for i in present]
            steps = [group["steps"][i] for i in present]
            torch._foreach_add_(steps, 1)
            if not group["adapted"]:
                torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, lr=self.lr, beta1=beta1, beta2=beta2,
                                   weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
                continue
            update = [torch.zeros_like(p) for p in params]
            torch._fused_adam_(update, grads, exp_avg, exp_avg_sq, [], steps, lr=-1.0, beta1=beta1, beta2=beta2,
                               weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
            if self.weight_decay:
                torch._foreach_add_(update, params, alpha=self.weight_decay)
            norms = torch.stack(torch._foreach_norm(params + update))
            weight_norms, update_norms = norms[: len(params)], norms[len(params):]
            ratios = torch.where((weight_norms > 0) & (update_norms > 0), weight_norms / update_norms, torch.ones_like(weight_norms))
            torch._foreach_addcmul_(params, update, list(ratios.unbind(0)), value=-self.lr)

    def zero_grad(self):
        for group in self.groups:
            for p in group["params"]:
                p.grad = None


def default_max_predictions(mask_prob, seq_length):
    return max(1, math.trunc((mask_prob + 0.005) * seq_length))


def first_slot_of_position(positions):
    """[B, N]: where several slots draw one position, the first slot's value is written there."""
    return (positions.unsqueeze(2) == positions.unsqueeze(1)).to(torch.float32).argmax(-1)


def write_at_positions(ids, positions, values):
    return ids.scatter(1, positions, values.gather(1, first_slot_of_position(positions)))


def electra_mask(input_ids, attention_mask, special, options, generator):
    """NVIDIA pretrain_utils.mask as src/pretrain/electra.ts electraMask (random_token_prob 0)."""
    _, length = input_ids.shape
    slots = options.get("max_predictions") or default_max_predictions(options["mask_prob"], length)
    real = attention_mask != 0
    candidates = real & (input_ids != special["cls"]) & (input_ids != special["sep"]) & (input_ids != special["mask"])
    wanted = (real.sum(1).to(torch.float32) * options["mask_prob"]).round().clamp(1, slots)
    count = torch.minimum(wanted, candidates.sum(1).to(torch.float32))
    weights = (torch.arange(slots, device=input_ids.device, dtype=torch.float32).unsqueeze(0) < count.unsqueeze(1)).to(torch.float32)
    probabilities = candidates.to(torch.float32)
    probabilities[:, 0] += (~candidates.any(1)).to(torch.float32)
    drawn = torch.multinomial(probabilities, slots, replacement=True, generator=generator)
    positions = drawn * weights.to(torch.int64)
    original_ids = input_ids.gather(1, positions)
    choice = torch.rand(positions.shape, generator=generator, device=input_ids.device)
    values = torch.where((weights > 0) & (choice < options["mask_token_prob"]), special["mask"], original_ids)
    return {"input_ids": write_at_positions(input_ids, positions, values), "positions": positions,
            "original_ids": original_ids, "weights": weights}


def sample_tokens(logits, temperature, generator):
    """One token per row from softmax(logits / T) by inverting the cumulative distribution, as
    src/pretrain/electra.ts sampleTokens: the same algorithm on both sides (it replaced the
    Gumbel-max form, whose V uniform draws per slot were the larger cost for both)."""
    with torch.no_grad():
        scores = logits.detach()
        top = scores.amax(-1, keepdim=True)
        # float32 logits are still needed by backward; an autocast copy is new and shifted in place
        cumulative = scores - top if scores.dtype == torch.float32 else scores.float().sub_(top)
        if temperature != 1:
            cumulative.div_(temperature)
        cumulative.exp_().cumsum_(-1)
        total = cumulative[..., -1:]
        u = torch.rand(total.shape, generator=generator, device=scores.device).mul_(total)
        return torch.searchsorted(cumulative, u, right=True).squeeze(-1).clamp_(max=logits.size(-1) - 1)


def gather_rows(hidden, positions):
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))


def slot_cross_entropy(logits, targets, weights):
    per_slot = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return (per_slot.view_as(weights) * weights).sum() / (weights.sum() + 1e-6)


def mapped(name):
    try:
        with open("/proc/self/maps") as f:
            return name in f.read()
    except OSError:
        return False


def tcmalloc_loaded():
    return mapped("libtcmalloc")


def mkl_dispatch():
    """How MKL (inside libtorch_cpu) picks its code path here: 'features' when bench/mkl-preload.ts's
    library (mkl_serv_intel_cpu_true() = 1 on AVX2 + FMA) is preloaded, else MKL's own 'vendor'
    rule; and mkl_serv_cpu_detect(), MKL's chosen path (0 the generic one), or None without MKL."""
    import ctypes
    code_path = None
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        code_path = int(lib.mkl_serv_cpu_detect())
    except (OSError, AttributeError):
        pass
    return {"mode": "features" if mapped("libcamemberta_mkl_features") else "vendor", "code_path": code_path}


class Sync:
    def __init__(self, device):
        self.cuda = device.startswith("cuda")

    def __call__(self):
        if self.cuda:
            torch.cuda.synchronize()


class ReferenceStep:
    def __init__(self, spec):
        self.spec = spec
        self.device = spec["device"]
        torch.set_num_threads(spec["threads"])
        torch.manual_seed(spec.get("seed", 0))
        dtype = spec["dtype"]
        self.autocast_dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        gen_config = DebertaV2Config.from_dict(spec["generator_config"])
        disc_config = DebertaV2Config.from_dict(spec["discriminator_config"])
        self.generator = DebertaV2ForMaskedLM._from_config(gen_config, attn_implementation="eager").to(self.device)
        self.discriminator = DebertaV2Model._from_config(disc_config, attn_implementation="eager").to(self.device)
        self.head = RtdHead(disc_config).to(self.device)
        # GDES: the discriminator reads E_G (detached) + delta; its own table is E_G's storage, not a second copy.
        self.generator_words = self.generator.deberta.embeddings.word_embeddings.weight
        self.discriminator.embeddings.word_embeddings.weight = self.generator_words
        self.delta = torch.nn.Parameter(torch.zeros_like(self.generator_words))
        self.pad = disc_config.pad_token_id
        for module in (self.generator, self.discriminator, self.head):
            module.train()
        self.named = [(f"generator.{k}", p) for k, p in self.generator.named_parameters()]
        self.named += [(f"discriminator.deberta.{k}", p) for k, p in self.discriminator.named_parameters()
                       if k != "embeddings.word_embeddings.weight"]
        self.named += [(f"discriminator.discriminator_predictions.{k}", p) for k, p in self.head.named_parameters()]
        self.named.append(("embedding_delta", self.delta))
        self.parameters = [p for _, p in self.named]
        o = spec["optimizer"]
        if o["name"] == "adamw":
            decay = [p for n, p in self.named if not is_bias_or_layer_norm(n)]
            plain = [p for n, p in self.named if is_bias_or_layer_norm(n)]
            self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]}, {"params": plain, "weight_decay": 0.0}],
                                               lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], fused=True)
            self.optimizer_name = "torch.optim.AdamW(fused=True)"
        else:
            self.optimizer = FusedLamb(self.named, o["lr"], o["betas"], o["eps"], o["weight_decay"])
            self.optimizer_name = "LAMB (torch._fused_adam_ moments + foreach trust ratios)"
        self.scaler = torch.amp.GradScaler(self.device.split(":")[0]) if dtype == "float16" else None
        self.compile = bool(spec.get("compile"))
        self.gen_encoder = self.generator.deberta
        self.disc_encoder = self.discriminator
        if self.compile:
            self.gen_encoder = torch.compile(self.generator.deberta)
            self.disc_encoder = torch.compile(self.discriminator)
        self.masking_generator = torch.Generator(device=self.device).manual_seed(spec.get("seed", 0) * 2 + 1)
        self.sampling_generator = torch.Generator(device=self.device).manual_seed(spec.get("seed", 0) * 2 + 2)
        self.batches = [{key: torch.tensor(batch[key], dtype=torch.int64, device=self.device) for key in ("input_ids", "attention_mask")}
                        for batch in spec.get("batches", [])]
        self.tokens = [int(b["attention_mask"].sum()) for b in self.batches]
        self.sync = Sync(self.device)
        self.step_index = 0

    def info(self):
        return {
            "torch": torch.__version__, "transformers": transformers.__version__,
            "allocator": "tcmalloc (LD_PRELOAD)" if tcmalloc_loaded() else "glibc malloc" if self.device == "cpu" else "torch CUDA caching allocator",
            "optimizer": self.optimizer_name, "clip": "torch.nn.utils.clip_grad_norm_(foreach=True)",
            "compile": "torch.compile (default mode)" if self.compile else "eager", "attention": "eager (transformers DebertaV2)",
            "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in self.parameters),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": mkl_dispatch() if self.device == "cpu" else None,
            **({"gpu": torch.cuda.get_device_name()} if self.device.startswith("cuda") else {}),
        }

    def autocast(self):
        return torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None)

    def forward(self, batch, masking=None, sampled_ids=None, marks=None):
        """The objective; `marks(name)` closes a timing phase (phases mode)."""
        mark = marks or (lambda name: None)
        e = self.spec["electra"]
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        with self.autocast():
            if masking is None:
                masking = electra_mask(input_ids, attention_mask, self.spec["special"], e, self.masking_generator)
            mark("masking")
            hidden = self.gen_encoder(input_ids=masking["input_ids"], attention_mask=attention_mask).last_hidden_state
            gen_logits = self.generator.cls(gather_rows(hidden, masking["positions"]))
            gen_loss = slot_cross_entropy(gen_logits, masking["original_ids"], masking["weights"])
            mark("generator_forward")
            if sampled_ids is None:
                sampled_ids = sample_tokens(gen_logits, e["temperature"], self.sampling_generator)
            mark("sampling")
            used = masking["weights"] > 0
            disc_input_ids = write_at_positions(input_ids, masking["positions"], torch.where(used, sampled_ids, masking["original_ids"]))
            replaced = disc_input_ids != input_ids
            word_embeddings = F.embedding(disc_input_ids, self.generator_words.detach()) + F.embedding(disc_input_ids, self.delta, padding_idx=self.pad)
            disc_hidden = self.disc_encoder(inputs_embeds=word_embeddings, attention_mask=attention_mask).last_hidden_state
            disc_logits = self.head(disc_hidden).float()
            real = attention_mask.to(disc_logits.dtype)
            per_token = F.binary_cross_entropy_with_logits(disc_logits, replaced.to(disc_logits.dtype), reduction="none")
            disc_loss = (per_token * real).sum() / real.sum()
            loss = gen_loss + e["disc_weight"] * disc_loss
            mark("discriminator_forward")
        return loss, gen_loss, disc_loss

    def step(self, batch, masking=None, sampled_ids=None, marks=None):
        mark = marks or (lambda name: None)
        loss, gen_loss, disc_loss = self.forward(batch, masking, sampled_ids, marks)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            mark("backward")
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
            mark("backward")
        clip = self.spec["optimizer"]["clip_norm"]
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, clip, foreach=True) if clip > 0 else None
        mark("clip")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad()
        mark("optimizer")
        return loss, gen_loss, disc_loss, norm

    def next_batch(self):
        index = self.step_index % len(self.batches)
        self.step_index += 1
        return self.batches[index], self.tokens[index]

    def run(self, steps):
        times, tokens = [], 0
        for _ in range(steps):
            batch, count = self.next_batch()
            start = time.perf_counter_ns()
            self.step(batch)
            self.sync()
            times.append((time.perf_counter_ns() - start) / 1e6)
            tokens += count
        return {"ms": times, "tokens": tokens / max(steps, 1)}

    def phases(self, steps):
        totals = {}

        def marks_for():
            last = [time.perf_counter_ns()]

            def mark(name):
                self.sync()
                now = time.perf_counter_ns()
                totals[name] = totals.get(name, 0.0) + (now - last[0]) / 1e6
                last[0] = now
            return mark
        for _ in range(steps):
            batch, _ = self.next_batch()
            self.step(batch, marks=marks_for())
        return {"phases": {name: total / steps for name, total in totals.items()}}

    def profile(self, steps):
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.startswith("cuda"):
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(steps):
                batch, _ = self.next_batch()
                self.step(batch)
            self.sync()
        key = "self_cuda_time_total" if self.device.startswith("cuda") else "self_cpu_time_total"
        return {"table": prof.key_averages().table(sort_by=key, row_limit=25)}

    def peak_mb(self):
        if self.device.startswith("cuda"):
            return torch.cuda.max_memory_allocated() / 2 ** 20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve():
    worker = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            name = command.get("cmd")
            if name == "quit":
                break
            if name == "init":
                worker = ReferenceStep(command["spec"])
                reply = {"info": worker.info()}
            elif worker is None:
                raise RuntimeError(f"'{name}' before 'init'")
            elif name == "run":
                reply = worker.run(int(command["steps"]))
            elif name == "phases":
                reply = worker.phases(int(command["steps"]))
            elif name == "profile":
                reply = worker.profile(int(command["steps"]))
            elif name == "memory":
                reply = {"peak_mb": worker.peak_mb()}
            else:
                raise RuntimeError(f"unknown command {name!r}")
            reply["ok"] = True
        except Exception as error:  # the bench prints it and stops; the worker stays readable
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


def check(case_dir):
    """Weights, masking and samples from the test; every step returns its losses and the
    gradient norm before clipping, so that step 2 shows the clipping and the update agree too."""
    from safetensors.torch import load_file
    with open(os.path.join(case_dir, "spec.json")) as f:
        spec = json.load(f)
    worker = ReferenceStep(spec)
    parameters = load_file(os.path.join(case_dir, "parameters.safetensors"))
    named = dict(worker.named)
    missing = sorted(set(named) - set(parameters))
    unknown = sorted(set(parameters) - set(named))
    if missing or unknown:
        raise SystemExit(f"train_reference.py: {case_dir}: parameters.safetensors lacks {missing}, has unknown {unknown}")
    with torch.no_grad():
        for name, value in parameters.items():
            if tuple(named[name].shape) != tuple(value.shape):
                raise SystemExit(f"train_reference.py: {case_dir}: {name}: shape {list(value.shape)}, the reference {list(named[name].shape)}")
            named[name].copy_(value)
    inputs = load_file(os.path.join(case_dir, "inputs.safetensors"))
    results = []
    for k in range(spec["check_steps"]):
        get = lambda key: inputs[f"step{k}.{key}"].to(worker.device)
        batch = {"input_ids": get("input_ids"), "attention_mask": get("attention_mask")}
        masking = {"input_ids": get("masked_input_ids"), "positions": get("positions"), "original_ids": get("original_ids"), "weights": get("weights")}
        loss, gen_loss, disc_loss, norm = worker.step(batch, masking, get("sampled_ids"))
        results.append({"loss": loss.item(), "gen_loss": gen_loss.item(), "disc_loss": disc_loss.item(),
                        "grad_norm": float("nan") if norm is None else norm.item()})
    return {"steps": results, "info": worker.info()}


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        return serve()
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        print(json.dumps({case_dir: check(case_dir) for case_dir in sys.argv[2:]}))
        return 0
    print(__doc__, file=sys.stderr)
    return 0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
