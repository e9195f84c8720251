"""Writes tests/goldens/patchgan.safetensors: LlamaGen's PatchGAN discriminator and hinge losses in
PyTorch (float64), for tests/models/test_patchgan.cpp.

The network is written here from its description (mentor-system.md section 3 and LlamaGen's
discriminator_patchgan.py: pix2pix's NLayerDiscriminator with BatchNorm and LeakyReLU 0.2, 4x4
convs, no conv bias before a BatchNorm) with the same nn.Sequential layout, so its state names are
upstream's. Small: in 3, ndf 4, 3 layers, images [2, 3, 32, 32].

Run with Debian's interpreter plus the safetensors package:
    python3 -m venv --system-site-packages venv && venv/bin/pip install safetensors
    venv/bin/python tools/reference/make_patchgan_golden.py
"""
import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)


def discriminator(in_channels, ndf, n_layers):
    layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                   nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    net = nn.Module()
    net.main = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.constant_(m.bias, 0.0)
    return net


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.normpath(
        os.path.join(root, "tests", "goldens", "patchgan.safetensors")))
    args = parser.parse_args()

    torch.manual_seed(0)
    net = discriminator(3, 4, 3)
    out = {}
    for name, t in net.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            out["init." + name] = t.clone()
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = torch.tanh(torch.randn(2, 3, 32, 32))
    fake.requires_grad_(True)
    out["in.real"], out["in.fake"] = real, fake.detach().clone()

    # Training mode: one forward per batch (its own statistics), as LlamaGen's VQLoss.
    logits_real = net.main(real)
    logits_fake = net.main(fake)
    d_loss = 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))
    g_loss = -torch.mean(logits_fake)
    out["train.logits_real"], out["train.logits_fake"] = logits_real.detach(), logits_fake.detach()
    out["train.d_loss"], out["train.g_loss"] = d_loss.detach().reshape(1), g_loss.detach().reshape(1)
    d_loss.backward()
    for name, p in net.named_parameters():
        out["grad." + name] = p.grad.clone()
    out["grad.fake"] = fake.grad.clone()
    for name, t in net.state_dict().items():
        if "running" in name:
            out["after." + name] = t.clone()

    net.eval()
    with torch.no_grad():
        out["eval.logits_real"] = net.main(real)
    save_file({k: v.contiguous() for k, v in out.items()}, args.out,
              {"config": '{"in_channels": 3, "ndf": 4, "n_layers": 3}', "seed": "0"})
    print(f"wrote {args.out}: {len(out)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
