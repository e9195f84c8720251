#!/usr/bin/python3
"""Converts a PyTorch checkpoint (.pt / .bin) into a safetensors file that mentor can load.

  /usr/bin/python3 tools/convert_checkpoint.py vq_ds16_t2i.pt vq_ds16_t2i.safetensors
  /usr/bin/python3 tools/convert_checkpoint.py stage2.pt mentor_stage2.safetensors --trust-pickle \
      --dtype bfloat16 --list

What it does, in order:
  1. torch.load(map_location="cpu", weights_only=True). Training checkpoints that also pickle an
     argparse.Namespace ("args") or other objects fail that safe load; pass --trust-pickle (only for
     files you trust: a full unpickle can run code) to load them anyway.
  2. Unwraps the state dict: while the object is a dict holding a dict under "model", "state_dict"
     or "module" (in that order of preference), descend into it; `--unwrap KEY` forces one key.
     An nn.Module pickled whole is replaced by its state_dict().
  3. Drops `freqs_cis` (a RoPE table some old LlamaGen checkpoints carry; mentor recomputes it) and
     every key matching a --drop regex (e.g. 'kv_cache' buffers).
  4. Strips --prefix-strip PREFIX from the start of every key that has it (repeatable, e.g.
     'module.' left by DistributedDataParallel, '_orig_mod.' left by torch.compile), or rewrites
     it with --prefix-replace OLD=NEW
     (e.g. 'model.mm_projector.=multimodal_encoder.language_projection.').
     Each key is renamed by the first rule that matches; two keys may not end up with one name.
  5. Casts floating tensors per --dtype: keep (default), float32 or bfloat16. Integer buffers such
     as quantize.codebook_used are never cast.
  6. Writes safetensors (tools/reference/st.py) with __metadata__ {"format": "pt", "source": <file
     name>, "converted_by": ..., plus "steps" when the checkpoint records it}, and prints a summary.
Any non-tensor value left in the state dict is an error that names the key and its type.
"""

import argparse
import collections
import inspect
import os
import re
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import st  # noqa: E402

WRAPPER_KEYS = ("model", "state_dict", "module")
DTYPES = {"keep": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


class ConversionError(RuntimeError):
    pass


def load_checkpoint(path, trust_pickle):
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: no such file")
    supports_weights_only = "weights_only" in inspect.signature(torch.load).parameters
    if trust_pickle or not supports_weights_only:
        return torch.load(path, map_location="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError / RuntimeError depending on version
        raise ConversionError(
            f"{path}: the safe load (weights_only=True) refused this file: {err}\n"
            "Training checkpoints often pickle extra objects (e.g. argparse 'args'). If you trust "
            "the file, rerun with --trust-pickle."
        ) from err


def unwrap(obj, forced_key, path):
    """Returns (state dict, list of keys descended through)."""
    trail = []
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if forced_key is not None:
        if not isinstance(obj, dict) or forced_key not in obj:
            keys = list(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
            raise ConversionError(f"{path}: --unwrap {forced_key!r} not found; top level: {keys}")
        obj = obj[forced_key]
        trail.append(forced_key)
    else:
        while isinstance(obj, dict):
            key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if key is None:
                break
            obj = obj[key]
            trail.append(key)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ConversionError(
            f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}"
        )
    return obj, trail


def convert(args):
    loaded = load_checkpoint(args.input, args.trust_pickle)
    state, trail = unwrap(loaded, args.unwrap, args.input)
    target_dtype = DTYPES[args.dtype]
    drops = [re.compile(r) for r in args.drop]
    renames = [(p, "") for p in args.prefix_strip]
    for spec in args.prefix_replace:
        if "=" not in spec:
            raise ConversionError(f"--prefix-replace expects OLD=NEW, got {spec!r}")
        renames.append(tuple(spec.split("=", 1)))

    out = {}
    dropped = []
    bad = []
    for key, value in state.items():
        if not isinstance(key, str):
            bad.append(f"{key!r} (non-string key of type {type(key).__name__})")
            continue
        if key == "freqs_cis" or key.endswith(".freqs_cis") or any(r.search(key) for r in drops):
            dropped.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            bad.append(f"'{key}' (a {type(value).__name__}, not a tensor)")
            continue
        name = key
        for old, new in renames:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        if name in out:
            raise ConversionError(
                f"{args.input}: two keys map to '{name}' after renaming (second: '{key}')"
            )
        tensor = value.detach()
        if target_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(target_dtype)
        out[name] = tensor
    if bad:
        where = ".".join(trail) if trail else "top level"
        raise ConversionError(
            f"{args.input}: the state dict ({where}) holds values that are not tensors: "
            + ", ".join(bad[:20])
            + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
            + ". Use --unwrap KEY to pick the dict that holds the weights, or --drop REGEX."
        )
    if not out:
        raise ConversionError(f"{args.input}: no tensors left to write")

    metadata = {
        "format": "pt",
        "source": os.path.basename(args.input),
        "converted_by": "mentor tools/convert_checkpoint.py",
    }
    if trail and isinstance(loaded, dict) and isinstance(loaded.get("steps"), int):
        metadata["steps"] = str(loaded["steps"])
    st.save_file(out, args.output, metadata)
    summarize(args, out, trail, dropped, loaded)


def summarize(args, tensors, trail, dropped, loaded):
    total = sum(t.numel() for t in tensors.values())
    by_dtype = collections.Counter()
    params_by_dtype = collections.Counter()
    by_prefix = collections.Counter()
    for name, t in tensors.items():
        by_dtype[str(t.dtype).replace("torch.", "")] += 1
        params_by_dtype[str(t.dtype).replace("torch.", "")] += t.numel()
        by_prefix[name.split(".")[0]] += t.numel()
    print(f"{args.input} -> {args.output} ({os.path.getsize(args.output) / 2**20:.1f} MiB)")
    if isinstance(loaded, dict) and trail:
        others = [k for k in loaded if k != trail[0]]
        print(f"  unwrapped: {' -> '.join(trail)}" + (f" (also at top level: {others})" if others
                                                    else ""))
    print(f"  tensors: {len(tensors)}, parameters: {total:,} ({total / 1e6:.2f}M)")
    print("  dtypes: " + ", ".join(
        f"{d} x{n} ({params_by_dtype[d]:,} elems)" for d, n in sorted(by_dtype.items())))
    print("  by top-level prefix: " + ", ".join(
        f"{p}: {n:,}" for p, n in sorted(by_prefix.items(), key=lambda kv: -kv[1])))
    if dropped:
        print(f"  dropped {len(dropped)}: {dropped[:10]}" + (" ..." if len(dropped) > 10 else ""))
    if args.list:
        width = max(len(n) for n in tensors)
        for name in sorted(tensors):
            t = tensors[name]
            print(f"    {name:<{width}}  {str(t.dtype).replace('torch.', ''):<8} {list(t.shape)}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a PyTorch .pt/.bin checkpoint to safetensors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    parser.add_argument("input", help="checkpoint file (.pt, .pth, .bin)")
    parser.add_argument("output", help="safetensors file to write")
    parser.add_argument("--prefix-strip", action="append", default=[], metavar="PREFIX",
                        help="remove PREFIX from keys that start with it (repeatable; first "
                             "matching prefix wins)")
    parser.add_argument("--prefix-replace", action="append", default=[], metavar="OLD=NEW",
                        help="replace the key prefix OLD by NEW (repeatable; tried after the "
                             "--prefix-strip prefixes, first match wins)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="keep",
                        help="cast floating tensors (default: keep)")
    parser.add_argument("--unwrap", metavar="KEY", default=None,
                        help="take the state dict from this top-level key instead of "
                             "auto-unwrapping model/state_dict/module")
    parser.add_argument("--drop", action="append", default=[], metavar="REGEX",
                        help="drop keys matching this regex (repeatable); freqs_cis is always "
                             "dropped")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load with a full unpickle (weights_only=False); only for trusted "
                             "files")
    parser.add_argument("--list", action="store_true", help="print every key, dtype and shape")
    args = parser.parse_args(argv)
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        parser.error("output must differ from input")
    try:
        convert(args)
    except (ConversionError, st.SafetensorsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
