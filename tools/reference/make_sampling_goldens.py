#!/usr/bin/python3
"""Writes tests/goldens/sampling_filter.safetensors: LlamaGen's own sampling filter on random rows.

Run with Debian's interpreter (torch 1.13 CPU) and a LlamaGen checkout (github FoundationVision/
LlamaGen; only autoregressive/models/generate.py is used):
  /usr/bin/python3 tools/reference/make_sampling_goldens.py --llamagen /path/to/LlamaGen

The script loads upstream's generate.py itself and calls its `sample(logits, temperature, top_k,
top_p, sample_logits=False)`: the temperature step (logits / max(temperature, 1e-5)),
top_k_top_p_filtering and the softmax are upstream's code, nothing here re-implements them. The
filtered logits are the softmax's input, recorded by handing the module a torch.nn.functional whose
softmax notes its argument. (generate.py imports torch._dynamo.config and torch._inductor.config,
which torch 1.13 lacks; empty stand-ins are registered for them when they are missing, as the file
only imports them.)

Rows: float32 logits N(0, 2.5^2) (peaked like a model's), vocab sizes 7, 100, 1000 and 16384, drawn
from a generator seeded by crc32 of the vocab size. A row is redrawn until it is unambiguous for
every setting, so that an implementation computing in another precision must reach the same kept
set: no two logits equal, and after scaling the k-th and (k+1)-th largest differ by more than 1e-5
(relative), and the cumulative probability (float64, sorted) is more than 1e-5 from top_p at the
crossing (for the token before and the token at the crossing).

Keys (case = "v<vocab>.r<row>.<setting>"; settings below):
  v<vocab>.logits    F32 [rows, vocab]  the raw logits
  <case>.kept        U8  [vocab]        1 where upstream keeps the token (filtered logit > -inf)
  <case>.filtered    F32 [n_kept]       upstream's filtered (scaled) logits of the kept tokens, in
                                        token-id order
  <case>.probs       F32 [n_kept]       upstream's probabilities of the kept tokens (0 elsewhere)
__metadata__[<case>] = JSON {"vocab", "row", "temperature", "top_k", "top_p"}.
"""

import argparse
import importlib.util
import json
import os
import sys
import types
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

# (name, temperature, top_k, top_p); top_k larger than the vocabulary is clamped by upstream.
SETTINGS_SMALL = [
    ("plain", 1.0, 0, 1.0),
    ("t0.7_k3", 0.7, 3, 1.0),
    ("p0.9", 1.0, 0, 0.9),
    ("t1.3_k5_p0.5", 1.3, 5, 0.5),
    ("k100000", 1.0, 100000, 1.0),
    ("t0_k4", 0.0, 4, 1.0),  # max(0, 1e-5): near one-hot
    ("p0.05", 1.0, 0, 0.05),  # only the first token survives
]
SETTINGS_LARGE = [
    ("t0.9_k5000", 0.9, 5000, 1.0),  # MENTOR demo
    ("p0.9", 1.0, 0, 0.9),
    ("k1000_p0.8", 1.0, 1000, 0.8),
]
VOCABS = [(7, 4, SETTINGS_SMALL), (100, 3, SETTINGS_SMALL), (1000, 2, SETTINGS_SMALL),
          (16384, 1, SETTINGS_LARGE)]
MARGIN = 1e-5


def load_upstream(llamagen):
    for name in ("torch._dynamo", "torch._dynamo.config", "torch._inductor",
                 "torch._inductor.config"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    path = os.path.join(llamagen, "autoregressive", "models", "generate.py")
    spec = importlib.util.spec_from_file_location("llamagen_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingFunctional:
    """torch.nn.functional, except that softmax records its input (upstream's filtered logits)."""

    def __init__(self):
        self.last_softmax_input = None

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def softmax(self, x, *args, **kwargs):
        self.last_softmax_input = x.clone()
        return torch.nn.functional.softmax(x, *args, **kwargs)


def unambiguous(row, settings):
    if torch.unique(row).numel() != row.numel():
        return False
    for _, temperature, top_k, top_p in settings:
        scaled = (row / max(temperature, 1e-5)).double()
        ordered = torch.sort(scaled, descending=True).values
        k = min(top_k, row.numel())
        if 0 < k < row.numel():
            a, b = ordered[k - 1].item(), ordered[k].item()
            if abs(a - b) <= MARGIN * max(abs(a), abs(b)):
                return False
            ordered = ordered[:k]
        if top_p < 1.0:
            cumulative = torch.cumsum(torch.softmax(ordered, 0), 0)
            over = (cumulative > top_p).nonzero()
            if over.numel() == 0:
                continue
            j = over[0].item()
            if cumulative[j].item() - top_p <= MARGIN:
                return False
            if j > 0 and top_p - cumulative[j - 1].item() <= MARGIN:
                return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llamagen", required=True, help="LlamaGen checkout (its root folder)")
    parser.add_argument("--out", default=os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "goldens",
        "sampling_filter.safetensors")))
    args = parser.parse_args()

    upstream = load_upstream(args.llamagen)
    functional = RecordingFunctional()
    upstream.F = functional

    tensors, metadata = {}, {}
    for vocab, rows, settings in VOCABS:
        gen = torch.Generator().manual_seed(zlib.crc32(str(vocab).encode()))
        logits = []
        while len(logits) < rows:
            row = torch.randn(vocab, generator=gen) * 2.5
            if unambiguous(row, settings):
                logits.append(row)
        tensors[f"v{vocab}.logits"] = torch.stack(logits)
        for r, row in enumerate(logits):
            for name, temperature, top_k, top_p in settings:
                case = f"v{vocab}.r{r}.{name}"
                # upstream's sample() takes [batch, seq, vocab] and uses the last position
                _, probs = upstream.sample(row.clone()[None, None, :], temperature=temperature,
                                           top_k=top_k, top_p=top_p, sample_logits=False)
                filtered = functional.last_softmax_input[0]
                probs = probs[0]
                kept = filtered > -float("inf")
                assert torch.all(probs[~kept] == 0), case
                tensors[f"{case}.kept"] = kept.to(torch.uint8)
                tensors[f"{case}.filtered"] = filtered[kept].contiguous()
                tensors[f"{case}.probs"] = probs[kept].contiguous()
                metadata[case] = json.dumps({"vocab": vocab, "row": r, "temperature": temperature,
                                             "top_k": top_k, "top_p": top_p})
    st.save_file(tensors, args.out, metadata)
    print(f"{args.out}: {len(metadata)} cases, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
