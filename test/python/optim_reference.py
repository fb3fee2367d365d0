"""Reference optimizer math for test/optim-*.test.ts, in plain PyTorch.

    python optim_reference.py lamb      < spec.json   -> {"params": {name: [flat values]}}
    python optim_reference.py schedule  < spec.json   -> {"lrs": [[lr for steps 0..n-1] per config]}
    python optim_reference.py clip      < spec.json   -> {"total_norm": x, "clipped": [grads clipped at each max_norm]}

These transcribe the code CamemBERTa's recipe follows, so that our TypeScript is checked against
the algorithm as written there rather than against itself:

- LAMB: tensorflow_addons/optimizers/lamb.py (tensorflow/addons at 00beec06), `LAMB._prepare_local`
  lines 107-126 (local_step = iterations + 1, float32 beta powers) and `LAMB._resource_apply_dense`
  lines 128-163 (moments, bias correction, update, weight decay, trust ratio with its two 0-norm
  fallbacks to 1.0, `var - ratio * lr_t * update`). NVIDIA DeepLearningExamples
  TensorFlow2/LanguageModeling/ELECTRA/optimization.py (at 1d4211fe) instantiates it in
  `create_optimizer`, lines 93-108: epsilon=1e-6, exclude_from_weight_decay=["layer_norm", "bias",
  "LayerNorm"], and exclude_from_layer_adaptation = that same list when skip_adaptive (CamemBERTa's
  setting; otherwise ["None"], i.e. every variable adapted). Keras skips variables whose gradient
  is None but advances `iterations` once per apply_gradients, so the bias correction follows the
  optimizer's global step, not a per-variable one.
- Schedule: the same optimization.py, `WarmUp.__call__` lines 41-54 (warm-up lr = init_lr *
  (step / warmup_steps) ** power, power left at 1.0 by create_optimizer) around Keras
  `PolynomialDecay(init_lr, decay_steps=num_train_steps - num_warmup_steps, end_learning_rate=end_lr,
  power=power)` built at lines 71-77, cycle=False (step clamped to decay_steps). Keras evaluates the
  schedule at `optimizer.iterations` before it is incremented, so the first update uses step 0.
- Clipping: TF's tf.clip_by_global_norm, written as scale = max_norm / max(global_norm, max_norm).
"""
import json
import sys


def lamb(spec):
    import torch  # here, not at the top: the schedule needs only the standard library and starts faster

    beta_1, beta_2 = spec["betas"]
    eps = spec["eps"]
    weight_decay_rate = spec["weight_decay"]
    excluded = set(spec["excluded"])
    params = {name: torch.tensor(values, dtype=torch.float32).reshape(spec["shapes"][name])
              for name, values in spec["params"].items()}
    m = {name: torch.zeros_like(p) for name, p in params.items()}
    v = {name: torch.zeros_like(p) for name, p in params.items()}
    iterations = 0
    for step, (lr, grads) in enumerate(zip(spec["lrs"], spec["grads"])):
        # _prepare_local: float32 beta powers at local_step = iterations + 1.
        local_step = torch.tensor(iterations + 1, dtype=torch.float32)
        beta_1_t = torch.tensor(beta_1, dtype=torch.float32)
        beta_2_t = torch.tensor(beta_2, dtype=torch.float32)
        beta_1_power = torch.pow(beta_1_t, local_step)
        beta_2_power = torch.pow(beta_2_t, local_step)
        lr_t = torch.tensor(lr, dtype=torch.float32)
        for name, var in params.items():
            if grads.get(name) is None:
                continue  # Keras drops (None, var) pairs before applying
            grad = torch.tensor(grads[name], dtype=torch.float32).reshape(var.shape)
            # _resource_apply_dense
            m[name] = m[name] * beta_1_t + grad * (1 - beta_1_t)
            v[name] = v[name] * beta_2_t + (grad * grad) * (1 - beta_2_t)
            m_t_hat = m[name] / (1.0 - beta_1_power)
            v_t_hat = v[name] / (1.0 - beta_2_power)
            update = m_t_hat / (torch.sqrt(v_t_hat) + eps)
            if name not in excluded:
                update = update + weight_decay_rate * var
            ratio = torch.tensor(1.0)
            if name not in excluded:
                w_norm = torch.linalg.vector_norm(var, 2)
                g_norm = torch.linalg.vector_norm(update, 2)
                ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, 1.0), 1.0)
            params[name] = var - ratio * lr_t * update
        iterations += 1
    return {"params": {name: p.flatten().tolist() for name, p in params.items()}}


def keras_polynomial_decay(initial_learning_rate, decay_steps, end_learning_rate, power, step):
    step = min(float(step), float(decay_steps))
    p = step / float(decay_steps)
    return (initial_learning_rate - end_learning_rate) * (1 - p) ** power + end_learning_rate


def learning_rate(spec, step):
    peak, warmup, total = spec["peakLr"], spec["warmupSteps"], spec["totalSteps"]
    end_lr = spec.get("endLr", 0.0)
    decay = spec["decay"]
    if warmup and step < warmup:
        return peak * (step / warmup)  # WarmUp with power 1.0
    if decay == "constant":
        return peak
    power = 1.0 if decay == "linear" else spec.get("power", 1.0)
    return keras_polynomial_decay(peak, total - warmup, end_lr, power, step - warmup)


def schedule(spec):
    return {"lrs": [[learning_rate(config, step) for step in range(spec["steps"])] for config in spec["configs"]]}


def clip(spec):
    import torch

    grads = [torch.tensor(g, dtype=torch.float32) for g in spec["grads"]]
    norms = torch.stack([torch.linalg.vector_norm(g, 2) for g in grads])
    total = torch.linalg.vector_norm(norms, 2)
    clipped = []
    for max_norm in spec["max_norms"]:
        scale = max_norm / torch.maximum(total, torch.tensor(max_norm))
        clipped.append([(g * scale).tolist() for g in grads])
    return {"total_norm": total.item(), "clipped": clipped}


if __name__ == "__main__":
    mode = sys.argv[1]
    spec = json.load(sys.stdin)
    result = {"lamb": lamb, "schedule": schedule, "clip": clip}[mode](spec)
    print(json.dumps(result))
