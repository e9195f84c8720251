#!/usr/bin/python3
"""Writes tests/goldens/optim.safetensors: a tiny float32 model trained a few steps by torch.optim.

Run with Debian's interpreter (torch 1.13 CPU):
  /usr/bin/python3 tools/reference/make_optim_goldens.py

Model (all float32):  y = fc2(tanh(fc1(x))) * scale
  fc1: Linear(8 -> 16, bias)   params fc1.weight [16,8], fc1.bias [16]
  fc2: Linear(16 -> 4, no bias) param  fc2.weight [4,16]
  scale: [4], multiplied element-wise on the output features
Loss: mean squared error against targets, mean over all 12*4 elements.

Run 1, AdamW (no key prefix): the MENTOR/LlamaGen recipe in miniature, 10 steps.
  torch.optim.AdamW, betas (0.9, 0.95), eps 1e-8, weight_decay 0.05 on params with ndim >= 2
  (fc1.weight, fc2.weight) and 0 on the rest (fc1.bias, scale); global grad-norm clipping to 1.0
  with torch.nn.utils.clip_grad_norm_; LR warm-up 3 steps then cosine to 0.1*peak over 10 steps.
Run 2, Adam (prefix "adam."): torch.optim.Adam, lr 1e-3 constant, betas (0.9, 0.999), eps 1e-8,
  no weight decay, no clipping, 5 steps, from the same init.* params, inputs and targets.

Keys: init.<param>, inputs [12,8], targets [12,4]; per step s: step<s>.loss [1] (before the
update), step<s>.lr [1], step<s>.grad_norm [1] (total L2 norm of the gradients before clipping),
step<s>.<param> (params after the update); the Adam run has the same step keys under "adam.".
__metadata__ "adamw" and "adam" hold the hyper-parameters as JSON.
"""

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

PARAM_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "scale")

ADAMW = {
    "optimizer": "AdamW",
    "peak_lr": 1e-2,
    "min_lr": 1e-3,  # floor = 0.1 * peak
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "weight_decay": 0.05,
    "weight_decay_params": ["fc1.weight", "fc2.weight"],
    "max_grad_norm": 1.0,
    "warmup_steps": 3,
    "total_steps": 10,
}
ADAM = {
    "optimizer": "Adam",
    "lr": 1e-3,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.0,
    "max_grad_norm": None,
    "total_steps": 5,
}


def lr_at(step, peak, floor, warmup, total):
    """Linear warm-up over `warmup` steps, then half-cosine from peak down toward floor."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / (total - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16, bias=True)
        self.fc2 = torch.nn.Linear(16, 4, bias=False)
        self.scale = torch.nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x))) * self.scale


def make_model(init):
    model = TinyModel()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(init[name])
    return model


def total_grad_norm(params):
    return torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2)


def train(init, inputs, targets, cfg, prefix, tensors):
    model = make_model(init)
    named = dict(model.named_parameters())
    assert set(named) == set(PARAM_NAMES), tuple(named)
    params = {n: named[n] for n in PARAM_NAMES}
    if cfg["optimizer"] == "AdamW":
        decay = [p for n, p in params.items() if p.dim() >= 2]
        no_decay = [p for n, p in params.items() if p.dim() < 2]
        assert [n for n, p in params.items() if p.dim() >= 2] == cfg["weight_decay_params"]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg["peak_lr"],
            betas=tuple(cfg["betas"]),
            eps=cfg["eps"],
        )
    else:
        optimizer = torch.optim.Adam(
            params.values(), lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"],
            weight_decay=0.0,
        )

    for step in range(cfg["total_steps"]):
        if cfg["optimizer"] == "AdamW":
            lr = lr_at(step, cfg["peak_lr"], cfg["min_lr"], cfg["warmup_steps"],
                       cfg["total_steps"])
        else:
            lr = cfg["lr"]
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(inputs), targets, reduction="mean")
        loss.backward()
        if cfg["max_grad_norm"] is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(params.values(), cfg["max_grad_norm"])
        else:
            grad_norm = total_grad_norm(params.values())
        optimizer.step()

        tensors[f"{prefix}step{step}.loss"] = loss.detach().reshape(1)
        tensors[f"{prefix}step{step}.lr"] = torch.tensor([lr], dtype=torch.float32)
        tensors[f"{prefix}step{step}.grad_norm"] = grad_norm.detach().float().reshape(1)
        for name, p in params.items():
            tensors[f"{prefix}step{step}.{name}"] = p.detach().clone()
        print(f"{prefix or 'adamw.'}step{step}: loss {loss.item():.6f} lr {lr:.6g} "
              f"grad_norm {grad_norm.item():.4f}")


def main():
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                               "goldens", "optim.safetensors")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.normpath(default_out))
    args = parser.parse_args()

    torch.manual_seed(20240607)
    reference = TinyModel()  # default nn.Linear init (uniform +-1/sqrt(fan_in))
    init = {n: p.detach().clone() for n, p in reference.named_parameters()}
    with torch.no_grad():
        init["fc1.bias"] = torch.randn(16) * 0.1
        init["scale"] = 0.5 + torch.rand(4)  # not ones, so a test notices when it is ignored
    inputs = torch.randn(12, 8)
    targets = torch.randn(12, 4) * 1.3  # steps 0-2 exceed the clip norm 1.0, steps 3-9 do not

    tensors = {f"init.{n}": t for n, t in init.items()}
    tensors["inputs"] = inputs
    tensors["targets"] = targets
    train(init, inputs, targets, ADAMW, "", tensors)
    train(init, inputs, targets, ADAM, "adam.", tensors)

    for name, t in tensors.items():
        assert t.dtype == torch.float32, name
    metadata = {
        "adamw": json.dumps(ADAMW, sort_keys=True),
        "adam": json.dumps(ADAM, sort_keys=True),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    st.save_file(tensors, args.out, metadata)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {len(tensors)} tensors, {size} bytes")
    assert size < 1 << 20, "golden file must stay under 1 MB"


if __name__ == "__main__":
    main()
