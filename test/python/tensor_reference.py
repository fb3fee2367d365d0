"""Reference values for test/tensor-values.test.ts, computed by Python torch.

Inputs are deterministic formulas (no RNG), rebuilt identically on the TypeScript side; every
result is written with torch.save to the path given as argv[1] and read back by our loader.
"""
import collections
import sys

import torch
import torch.nn.functional as F


def inputs():
    x = torch.linspace(-2.0, 2.0, 24, dtype=torch.float32).reshape(2, 3, 4)
    y = torch.cos(torch.arange(24, dtype=torch.float32)).reshape(2, 4, 3)
    w = torch.sin(torch.arange(20, dtype=torch.float32) * 0.7).reshape(5, 4)
    b = torch.linspace(-0.5, 0.5, 5)
    ids = torch.tensor([[0, 4, 2], [1, 1, 3]], dtype=torch.int64)
    target = torch.tensor([1, -100, 3, 0, 4, 2], dtype=torch.int64)
    return x, y, w, b, ids, target


def main(out):
    x, y, w, b, ids, target = inputs()
    r = {}
    r["softmax"] = x.softmax(-1)
    r["log_softmax"] = x.log_softmax(1)
    r["layer_norm"] = F.layer_norm(x, (4,), w[0], w[1], 1e-7)
    r["gelu"] = F.gelu(x)
    r["gelu_tanh"] = F.gelu(x, approximate="tanh")
    r["tanh"] = x.tanh()
    r["sigmoid"] = x.sigmoid()
    r["exp"] = x.exp()
    r["log"] = (x.abs() + 1).log()
    r["log1p"] = x.abs().log1p()
    r["sqrt"] = x.abs().sqrt()
    r["rsqrt"] = (x.abs() + 1).rsqrt()
    r["pow3"] = x.pow(3)
    r["matmul"] = x @ y
    r["bmm"] = torch.bmm(x, y)
    r["einsum"] = torch.einsum("bij,bjk->bik", x, y)
    r["linear"] = F.linear(x, w, b)
    r["embedding"] = F.embedding(ids, w)
    r["conv1d"] = F.conv1d(x, torch.sin(torch.arange(36, dtype=torch.float32)).reshape(3, 3, 4)[:, :, :3].contiguous(), b[:3], padding=1)
    r["gather"] = x.gather(2, torch.tensor([[[3, 0], [1, 1], [2, 3]], [[0, 0], [3, 2], [1, 0]]]))
    r["scatter"] = torch.zeros(2, 3, 4).scatter(2, torch.tensor([[[3], [1], [2]], [[0], [3], [1]]]), 7.0)
    r["index_select"] = x.index_select(1, torch.tensor([2, 0]))
    r["masked_fill"] = x.masked_fill(x > 0.5, -1.0)
    r["where"] = torch.where(x > 0, x, y.transpose(1, 2))
    r["clamp"] = x.clamp(-0.5, 0.75)
    r["cat"] = torch.cat([x, x * 2], 1)
    r["stack"] = torch.stack([x, -x], 0)
    r["cumsum"] = x.cumsum(2)
    r["sum_dims"] = x.sum((0, 2), keepdim=True)
    r["mean_dim"] = x.mean(1)
    r["max_values"] = x.max(2).values
    r["argmax"] = y.argmax(1)
    r["norm"] = x.norm()
    r["norm_dim"] = torch.linalg.vector_norm(x, 1, dim=2)
    r["logsumexp"] = x.logsumexp(2)
    logits = x.reshape(6, 4) @ w.t()
    r["cross_entropy_mean"] = F.cross_entropy(logits, target, ignore_index=-100)
    r["cross_entropy_sum"] = F.cross_entropy(logits, target, reduction="sum")
    r["cross_entropy_none"] = F.cross_entropy(logits, target, reduction="none")
    labels = (y > 0).float()
    r["bce_with_logits"] = F.binary_cross_entropy_with_logits(y, labels)
    mask = torch.zeros(2, 1, 3, 3)
    mask[1, :, :, 2] = torch.finfo(torch.float32).min
    q = x[:, :, :2].unsqueeze(1).contiguous()
    r["sdpa"] = F.scaled_dot_product_attention(q, q * 0.5, q + 1, attn_mask=mask)
    r["one_hot"] = F.one_hot(ids, 5)
    r["topk_values"] = x.topk(2, dim=2).values
    r["topk_indices"] = x.topk(2, dim=2).indices
    r["permute"] = x.permute(2, 0, 1).contiguous()
    r["split1"] = x.split(2, 2)[1].contiguous()
    r["div_floor"] = torch.div(x * 3, 2, rounding_mode="floor")
    r["bf16_roundtrip"] = x.to(torch.bfloat16)
    # An OrderedDict, as torch.save(model.state_dict()) writes (libtorch's C++ unpickler cannot read it).
    torch.save(collections.OrderedDict(r), out)


if __name__ == "__main__":
    main(sys.argv[1])
