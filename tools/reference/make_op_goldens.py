#!/usr/bin/python3
"""Writes tests/goldens/ops.safetensors: per-op inputs, outputs and gradients (PyTorch, float64).

Run with Debian's interpreter (torch 1.13 CPU):  /usr/bin/python3 tools/reference/make_op_goldens.py
Key naming (documented case by case in tools/reference/README.md):
  <case>.in.<name>      inputs (float64, int64 ids/indices, uint8 masks)
  <case>.out            the output, or <case>.out.<name> when a case has several outputs
  <case>.cot            random cotangent, same shape as the output (<case>.cot.<name> per floating
                        output when there are several; none for integer outputs)
  <case>.grad.<name>    d(sum_k sum(out_k * cot_k)) / d(in.<name>) for every differentiable input
  __metadata__[<case>]  JSON string with the case's parameters (every case has an entry, maybe {})
Scalars (losses, full reductions) are stored with shape [1], like the upstream fixtures.
Every case draws from its own generator seeded by crc32(case name): adding a case changes no other.
"""

import argparse
import json
import math
import os
import sys
import zlib

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.set_default_dtype(torch.float64)
DOUBLE = torch.float64


class Case:
    """One golden case: its generator, inputs, which inputs get gradients, and parameters."""

    def __init__(self, name, params=None):
        self.name = name
        self.params = params or {}
        self.gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        self.inputs = {}
        self.no_grad = set()
        self.gradcheck = True  # off where finite differences cannot resolve the function

    # --- input constructors ---------------------------------------------------------------------
    def randn(self, name, *shape, scale=1.0, grad=True):
        return self._add(name, torch.randn(*shape, generator=self.gen, dtype=DOUBLE) * scale, grad)

    def uniform(self, name, low, high, *shape, grad=True):
        u = torch.rand(*shape, generator=self.gen, dtype=DOUBLE)
        return self._add(name, low + (high - low) * u, grad)

    def away_from_zero(self, name, low, high, *shape, grad=True):
        """Magnitudes in [low, high] with random signs (for relu, division, |x| kinks)."""
        mag = low + (high - low) * torch.rand(*shape, generator=self.gen, dtype=DOUBLE)
        sign = torch.randint(0, 2, shape, generator=self.gen).to(DOUBLE) * 2 - 1
        return self._add(name, mag * sign, grad)

    def tensor(self, name, value, grad=False):
        return self._add(name, value, grad)

    def _add(self, name, value, grad):
        self.inputs[name] = value
        if not grad or not value.is_floating_point():
            self.no_grad.add(name)
        return value


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def as_stored(t):
    """Rank-0 tensors are stored as shape [1] (the upstream fixtures' convention)."""
    t = t.detach()
    return t.reshape(1) if t.dim() == 0 else t.contiguous()


def run_case(builder, tensors, metadata, check):
    c, forward = builder()
    assert c.name not in metadata, f"duplicate case {c.name}"
    leaves = {}
    for name, value in c.inputs.items():
        leaf = value.clone()
        if name not in c.no_grad:
            leaf.requires_grad_(True)
        leaves[name] = leaf
    outs = forward(**leaves)
    single = not isinstance(outs, dict)
    if single:
        outs = {"": outs}

    objective = 0.0
    for out_name, out in outs.items():
        suffix = "" if single else "." + out_name
        tensors[f"{c.name}.out{suffix}"] = as_stored(out)
        if out.is_floating_point() and out.requires_grad:
            cot = torch.randn(out.shape, generator=c.gen, dtype=DOUBLE)
            tensors[f"{c.name}.cot{suffix}"] = as_stored(cot)
            objective = objective + (out * cot).sum()
    for name, value in c.inputs.items():
        tensors[f"{c.name}.in.{name}"] = as_stored(value)
    grad_names = [n for n in c.inputs if n not in c.no_grad]
    if grad_names:
        grads = torch.autograd.grad(objective, [leaves[n] for n in grad_names], allow_unused=True)
        for name, g in zip(grad_names, grads):
            tensors[f"{c.name}.grad.{name}"] = as_stored(
                g if g is not None else torch.zeros_like(leaves[name])
            )
        if check and c.gradcheck:
            # Independent check of autograd against central finite differences.
            def fn_of_grad_inputs(*xs):
                args = dict(leaves)
                args.update(zip(grad_names, xs))
                o = forward(**args)
                o = [o] if not isinstance(o, dict) else list(o.values())
                return tuple(t for t in o if t.is_floating_point())

            ok = torch.autograd.gradcheck(
                fn_of_grad_inputs,
                tuple(leaves[n].detach().clone().requires_grad_(True) for n in grad_names),
                eps=1e-6,
                atol=1e-6,
                rtol=1e-5,
            )
            assert ok, c.name
    metadata[c.name] = json.dumps(c.params, sort_keys=True)


# =============================================================================================
# Unary element-wise ops on [3,5,7]
# =============================================================================================
UNARY_SHAPE = (3, 5, 7)


def unary_case(name, forward, domain, params=None):
    def build():
        c = Case(name, params)
        kind, low, high = domain
        if kind == "uniform":
            c.uniform("x", low, high, *UNARY_SHAPE)
        elif kind == "away":
            c.away_from_zero("x", low, high, *UNARY_SHAPE)
        else:
            c.randn("x", *UNARY_SHAPE, scale=high)
        return c, lambda x: forward(x)

    CASES.append(build)


unary_case("exp", torch.exp, ("randn", 0, 1.0))
unary_case("log", torch.log, ("uniform", 0.2, 3.0))
unary_case("sqrt", torch.sqrt, ("uniform", 0.2, 3.0))
unary_case("rsqrt", torch.rsqrt, ("uniform", 0.2, 3.0))
unary_case("tanh", torch.tanh, ("randn", 0, 1.5))
unary_case("sigmoid", torch.sigmoid, ("randn", 0, 2.0))
unary_case("silu", F.silu, ("randn", 0, 2.0))
unary_case("relu", F.relu, ("away", 0.05, 2.0))
unary_case("gelu_exact", lambda x: F.gelu(x), ("randn", 0, 2.0), {"approximate": "none"})
unary_case(
    "gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), ("randn", 0, 2.0), {"approximate": "tanh"}
)
unary_case(
    "quick_gelu", lambda x: x * torch.sigmoid(1.702 * x), ("randn", 0, 2.0), {"alpha": 1.702}
)
unary_case("pow_2_5", lambda x: torch.pow(x, 2.5), ("uniform", 0.2, 2.0), {"exponent": 2.5})
unary_case("pow_3", lambda x: torch.pow(x, 3.0), ("randn", 0, 1.0), {"exponent": 3.0})
unary_case(
    "leaky_relu_0_2", lambda x: F.leaky_relu(x, 0.2), ("away", 0.05, 2.0), {"negative_slope": 0.2}
)


# =============================================================================================
# Binary broadcasting ops
# =============================================================================================
BINARY_OPS = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
}
BINARY_SHAPES = {"2x3x4_3x1": ((2, 3, 4), (3, 1)), "2x1x5_1x4x1": ((2, 1, 5), (1, 4, 1))}


def binary_case(op_name, shape_tag):
    def build():
        a_shape, b_shape = BINARY_SHAPES[shape_tag]
        c = Case(f"{op_name}_{shape_tag}", {"a_shape": list(a_shape), "b_shape": list(b_shape)})
        c.randn("a", *a_shape)
        if op_name == "div":
            c.away_from_zero("b", 0.5, 2.0, *b_shape)
        else:
            c.randn("b", *b_shape)
        return c, lambda a, b: BINARY_OPS[op_name](a, b)

    CASES.append(build)


for _op in BINARY_OPS:
    for _tag in BINARY_SHAPES:
        binary_case(_op, _tag)


# =============================================================================================
# Reductions on [3,5,7]
# =============================================================================================
@case
def sum_dim1_keepdim():
    c = Case("sum_dim1_keepdim", {"dim": 1, "keepdim": True})
    c.randn("x", 3, 5, 7)
    return c, lambda x: x.sum(dim=1, keepdim=True)


@case
def mean_last():
    c = Case("mean_last", {"dim": -1, "keepdim": False})
    c.randn("x", 3, 5, 7)
    return c, lambda x: x.mean(dim=-1)


@case
def sum_all():
    c = Case("sum_all", {})
    c.randn("x", 3, 5, 7)
    return c, lambda x: x.sum()


@case
def max_last():
    c = Case("max_last", {"dim": -1, "keepdim": False})
    c.randn("x", 3, 5, 7)

    def forward(x):
        values, indices = x.max(dim=-1)
        return {"values": values, "indices": indices}

    return c, forward


@case
def argmin_last():
    c = Case("argmin_last", {"dim": -1, "keepdim": False})
    c.randn("x", 3, 5, 7, grad=False)
    return c, lambda x: x.argmin(dim=-1)


@case
def topk_last():
    c = Case("topk_last", {"k": 3, "dim": -1, "largest": True, "sorted": True})
    c.randn("x", 3, 5, 7)

    def forward(x):
        values, indices = torch.topk(x, k=3, dim=-1, largest=True, sorted=True)
        return {"values": values, "indices": indices}

    return c, forward


# =============================================================================================
# Softmax family and norms
# =============================================================================================
@case
def softmax_last():
    c = Case("softmax_last", {"dim": -1})
    c.randn("x", 3, 5, 7, scale=2.0)
    return c, lambda x: torch.softmax(x, dim=-1)


@case
def log_softmax_last():
    c = Case("log_softmax_last", {"dim": -1})
    c.randn("x", 3, 5, 7, scale=2.0)
    return c, lambda x: torch.log_softmax(x, dim=-1)


@case
def rms_norm():
    eps = 1e-5
    c = Case("rms_norm", {"eps": eps, "dim": -1})
    c.randn("x", 2, 3, 16)
    c.uniform("weight", 0.5, 1.5, 16)

    # LlamaGen RMSNorm: x * rsqrt(mean(x^2, -1, keepdim) + eps) * weight.
    def forward(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    return c, forward


@case
def layer_norm():
    eps = 1e-5
    c = Case("layer_norm", {"eps": eps, "normalized_shape": [12]})
    c.randn("x", 2, 5, 12, scale=1.5)
    c.uniform("weight", 0.5, 1.5, 12)
    c.randn("bias", 12, scale=0.5)
    return c, lambda x, weight, bias: F.layer_norm(x, (12,), weight, bias, eps)


@case
def group_norm():
    eps = 1e-6
    c = Case("group_norm", {"eps": eps, "num_groups": 4})
    c.randn("x", 2, 8, 5, 6, scale=1.5)
    c.uniform("weight", 0.5, 1.5, 8)
    c.randn("bias", 8, scale=0.5)
    return c, lambda x, weight, bias: F.group_norm(x, 4, weight, bias, eps)


@case
def batch_norm_train():
    eps = 1e-5
    c = Case("batch_norm_train", {"eps": eps, "training": True})
    c.randn("x", 4, 3, 5, 6, scale=1.5)
    c.uniform("weight", 0.5, 1.5, 3)
    c.randn("bias", 3, scale=0.5)
    return c, lambda x, weight, bias: F.batch_norm(x, None, None, weight, bias, True, 0.1, eps)


@case
def batch_norm_eval():
    eps = 1e-5
    c = Case("batch_norm_eval", {"eps": eps, "training": False})
    c.randn("x", 4, 3, 5, 6, scale=1.5)
    c.uniform("weight", 0.5, 1.5, 3)
    c.randn("bias", 3, scale=0.5)
    c.tensor("running_mean", torch.randn(3, generator=c.gen, dtype=DOUBLE) * 0.5)
    c.tensor("running_var", 0.5 + 1.5 * torch.rand(3, generator=c.gen, dtype=DOUBLE))
    return c, lambda x, weight, bias, running_mean, running_var: F.batch_norm(
        x, running_mean, running_var, weight, bias, False, 0.1, eps
    )


@case
def embedding():
    c = Case("embedding", {})
    c.randn("table", 10, 6)
    c.tensor("ids", torch.tensor([[3, 7, 3, 0, 9], [1, 3, 5, 7, 2]], dtype=torch.int64))
    return c, lambda table, ids: F.embedding(ids, table)


# =============================================================================================
# LlamaGen 2D RoPE
# =============================================================================================
def precompute_freqs_cis_2d(grid, head_dim, base, cls_token_num, prefix):
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2, dtype=DOUBLE)[: half // 2] / half))
    t = torch.arange(grid, dtype=DOUBLE)
    f = torch.outer(t, freqs)  # [g, half/2]
    freqs_grid = torch.cat(
        [f[:, None, :].expand(grid, grid, -1), f[None, :, :].expand(grid, grid, -1)], dim=-1
    )  # [g, g, half]: first half row angles, second half column angles
    cache = torch.stack([torch.cos(freqs_grid), torch.sin(freqs_grid)], dim=-1).reshape(
        grid * grid, half, 2
    )
    if prefix == "zero":  # original LlamaGen: condition q/k multiplied by zero
        head = torch.zeros(cls_token_num, half, 2, dtype=DOUBLE)
    else:  # MENTOR's fix: identity rotation for condition tokens
        head = torch.stack(
            [torch.ones(cls_token_num, half, dtype=DOUBLE), torch.zeros(cls_token_num, half)], -1
        )
    return torch.cat([head, cache], dim=0)  # [n + g*g, half, 2]


def apply_rotary_emb(x, freqs_cis):
    # x: [B, S, H, D]; freqs_cis: [S, D/2, 2]; interleaved adjacent pairs (x[2j], x[2j+1]).
    xs = x.reshape(*x.shape[:-1], -1, 2)
    fc = freqs_cis.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack(
        [
            xs[..., 0] * fc[..., 0] - xs[..., 1] * fc[..., 1],
            xs[..., 1] * fc[..., 0] + xs[..., 0] * fc[..., 1],
        ],
        dim=-1,
    )
    return out.flatten(3)


def rope_case(prefix):
    def build():
        grid, head_dim, base, n = 4, 16, 10000.0, 3
        c = Case(
            f"rope_2d_{prefix}",
            {"grid": grid, "head_dim": head_dim, "base": base, "cls_token_num": n,
             "prefix": prefix},
        )
        c.randn("x", 2, n + grid * grid, 2, head_dim)
        c.tensor("freqs_cis", precompute_freqs_cis_2d(grid, head_dim, base, n, prefix))
        return c, lambda x, freqs_cis: apply_rotary_emb(x, freqs_cis)

    CASES.append(build)


rope_case("zero")
rope_case("identity")


# =============================================================================================
# Attention: softmax(q k^T * scale, masked -> -inf) v with q,k,v [B=2,H=3,S=5,D=4]
# =============================================================================================
def attention(q, k, v, mask):
    scale = 1.0 / math.sqrt(q.size(-1))
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def llamagen_prefix_mask(batch, seq, padded_per_batch):
    """Lower-triangular; columns of left-padded prefix slots off for every row; diagonal on."""
    mask = torch.tril(torch.ones(seq, seq, dtype=torch.bool)).unsqueeze(0).repeat(batch, 1, 1)
    for b, n_pad in enumerate(padded_per_batch):
        mask[b, :, :n_pad] = False
    mask = mask | torch.eye(seq, dtype=torch.bool).unsqueeze(0)
    return mask.unsqueeze(1)  # [B, 1, S, S]


def attention_case(kind):
    def build():
        B, H, S, D = 2, 3, 5, 4
        params = {"scale": 1.0 / math.sqrt(D), "mask": kind}
        if kind == "explicit":
            params["padded_prefix_slots"] = [1, 2]
        c = Case({"causal": "attn_causal", "explicit": "attn_mask", "none": "attn_none"}[kind],
                 params)
        c.randn("q", B, H, S, D)
        c.randn("k", B, H, S, D)
        c.randn("v", B, H, S, D)
        if kind == "explicit":
            c.tensor("mask", llamagen_prefix_mask(B, S, [1, 2]).to(torch.uint8))
            return c, lambda q, k, v, mask: attention(q, k, v, mask.bool())
        if kind == "causal":
            causal = torch.tril(torch.ones(S, S, dtype=torch.bool))
            return c, lambda q, k, v: attention(q, k, v, causal)
        return c, lambda q, k, v: attention(q, k, v, None)

    CASES.append(build)


for _kind in ("causal", "explicit", "none"):
    attention_case(_kind)


# =============================================================================================
# Convolutions and resampling
# =============================================================================================
@case
def conv3x3():
    c = Case("conv3x3", {"stride": 1, "padding": 1})
    c.randn("x", 2, 3, 7, 6)
    c.randn("weight", 4, 3, 3, 3, scale=0.3)
    c.randn("bias", 4, scale=0.5)
    return c, lambda x, weight, bias: F.conv2d(x, weight, bias, stride=1, padding=1)


@case
def conv1x1():
    c = Case("conv1x1", {"stride": 1, "padding": 0})
    c.randn("x", 2, 3, 7, 6)
    c.randn("weight", 4, 3, 1, 1, scale=0.5)
    c.randn("bias", 4, scale=0.5)
    return c, lambda x, weight, bias: F.conv2d(x, weight, bias)


@case
def conv_down():
    c = Case("conv_down", {"pad_lrtb": [0, 1, 0, 1], "stride": 2, "padding": 0})
    c.randn("x", 2, 3, 8, 8)
    c.randn("weight", 4, 3, 3, 3, scale=0.3)
    c.randn("bias", 4, scale=0.5)
    return c, lambda x, weight, bias: F.conv2d(
        F.pad(x, (0, 1, 0, 1)), weight, bias, stride=2, padding=0
    )


@case
def upsample_nearest2x():
    c = Case("upsample_nearest2x", {"scale_factor": 2, "mode": "nearest"})
    c.randn("x", 2, 3, 4, 5)
    return c, lambda x: F.interpolate(x, scale_factor=2.0, mode="nearest")


# =============================================================================================
# Shape / indexing ops
# =============================================================================================
@case
def concat_dim1():
    c = Case("concat_dim1", {"dim": 1})
    c.randn("a", 2, 3, 4)
    c.randn("b", 2, 2, 4)
    return c, lambda a, b: torch.cat([a, b], dim=1)


@case
def chunk_last():
    c = Case("chunk_last", {"chunks": 3, "dim": -1})
    c.randn("x", 2, 6)
    return c, lambda x: {str(i): piece for i, piece in enumerate(torch.chunk(x, 3, dim=-1))}


@case
def index_select_dim0():
    c = Case("index_select_dim0", {"dim": 0})
    c.randn("x", 5, 3)
    c.tensor("ids", torch.tensor([4, 0, 4], dtype=torch.int64))
    return c, lambda x, ids: torch.index_select(x, 0, ids)


@case
def gather_last():
    c = Case("gather_last", {"dim": -1})
    c.randn("x", 3, 5)
    c.tensor("ids", torch.tensor([[4, 0], [2, 2], [1, 3]], dtype=torch.int64))
    return c, lambda x, ids: torch.gather(x, -1, ids)


@case
def masked_fill():
    c = Case("masked_fill", {"value": -7.5})
    c.randn("x", 4, 5)
    c.tensor("mask", torch.tensor([[1, 0, 0, 1, 0]], dtype=torch.uint8))
    return c, lambda x, mask: x.masked_fill(mask.bool(), -7.5)


@case
def where():
    c = Case("where", {})
    c.tensor("cond", torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.uint8))
    c.randn("a", 3, 4)
    c.randn("b", 3, 4)
    return c, lambda cond, a, b: torch.where(cond.bool(), a, b)


@case
def l2_normalize():
    eps = 1e-12
    # Finite differences cannot resolve the clamped tiny row (its norm is below eps).
    c = Case("l2_normalize", {"p": 2, "dim": -1, "eps": eps})
    c.gradcheck = False
    x = torch.randn(4, 6, generator=c.gen)
    x[2] *= 1e-14  # norm ~1e-14 < eps: denominator clamps to eps
    c.tensor("x", x, grad=True)
    return c, lambda x: F.normalize(x, p=2.0, dim=-1, eps=eps)


# =============================================================================================
# Losses
# =============================================================================================
@case
def cross_entropy_mean():
    c = Case("cross_entropy_mean", {"reduction": "mean"})
    c.randn("logits", 6, 11, scale=2.0)
    c.tensor("targets", torch.randint(0, 11, (6,), generator=c.gen))
    return c, lambda logits, targets: F.cross_entropy(logits, targets, reduction="mean")


@case
def cross_entropy_valid():
    c = Case("cross_entropy_valid", {"reduction": "valid_weighted"})
    c.randn("logits", 3, 4, 11, scale=2.0)
    c.tensor("targets", torch.randint(0, 11, (3, 4), generator=c.gen))
    c.tensor("valid", torch.tensor([1.0, 0.0, 1.0], dtype=DOUBLE), grad=False)

    def forward(logits, targets, valid):
        L = targets.shape[1]
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                             reduction="none").view_as(targets)
        return (ce * valid[:, None]).sum() / max(valid.sum().item() * L, 1.0)

    return c, forward


@case
def mse_mean():
    c = Case("mse_mean", {"reduction": "mean"})
    c.randn("a", 3, 4)
    c.randn("b", 3, 4)
    return c, lambda a, b: F.mse_loss(a, b, reduction="mean")


@case
def l1_mean():
    c = Case("l1_mean", {"reduction": "mean"})
    c.randn("a", 3, 4)
    c.randn("b", 3, 4)
    return c, lambda a, b: F.l1_loss(a, b, reduction="mean")


# =============================================================================================
# Matmul variants
# =============================================================================================
def matmul_case(name, a_shape, b_shape, forward, params):
    def build():
        c = Case(name, params)
        c.randn("a", *a_shape)
        c.randn("b", *b_shape)
        return c, forward

    CASES.append(build)


matmul_case("matmul", (3, 4), (4, 5), lambda a, b: a @ b, {"expr": "a @ b"})
matmul_case("matmul_batched", (2, 3, 4), (2, 4, 5), lambda a, b: a @ b, {"expr": "a @ b"})
matmul_case("matmul_at_b", (4, 3), (4, 5), lambda a, b: a.t() @ b, {"expr": "a^T @ b"})
matmul_case("matmul_a_bt", (3, 4), (5, 4), lambda a, b: a @ b.t(), {"expr": "a @ b^T"})
matmul_case("matmul_bcast", (2, 3, 4), (4, 5), lambda a, b: a @ b, {"expr": "a @ b"})


def main():
    repo_root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    default_out = os.path.join(repo_root, "tests", "goldens", "ops.safetensors")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.normpath(default_out))
    parser.add_argument("--no-check", action="store_true", help="skip torch.autograd.gradcheck")
    args = parser.parse_args()

    tensors, metadata = {}, {}
    for builder in CASES:
        run_case(builder, tensors, metadata, check=not args.no_check)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    st.save_file(tensors, args.out, metadata)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {len(metadata)} cases, {len(tensors)} tensors, {size} bytes")
    assert size < 1 << 20, "golden file must stay under 1 MB"


if __name__ == "__main__":
    main()
