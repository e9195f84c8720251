"""Minimal safetensors reader/writer (no dependency on the `safetensors` package).

Format (https://github.com/huggingface/safetensors):
  [8 bytes]  N = header length, unsigned 64-bit little-endian
  [N bytes]  JSON header: {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
             plus an optional "__metadata__": {str: str}. Padded with spaces so that 8 + N is a
             multiple of 8 (keeps the data block aligned).
  [rest]     raw little-endian tensor bytes, offsets relative to the start of this block.

Tensors are written in sorted key order, contiguously. Values may be torch tensors or numpy arrays.
"""

import json
import struct
import sys

import numpy as np

# safetensors dtype name -> numpy dtype (little-endian). BF16 has no numpy dtype: it is carried as
# raw uint16 bits and converted through torch when torch is available.
_NUMPY_OF_DTYPE = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "U16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}

_DTYPE_OF_NUMPY = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("uint16"): "U16",
    np.dtype("uint32"): "U32",
    np.dtype("uint64"): "U64",
    np.dtype("bool"): "BOOL",
}


class SafetensorsError(ValueError):
    pass


def _normalize(name, value):
    """Returns (safetensors dtype name, shape list, contiguous little-endian numpy array)."""
    if "torch" in sys.modules:
        import torch

        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            if tensor.dtype == torch.bfloat16:
                bits = tensor.view(torch.int16).numpy().view(np.uint16)
                return "BF16", list(tensor.shape), bits.astype("<u2", copy=False)
            try:
                value = tensor.numpy()
            except TypeError as err:
                raise SafetensorsError(
                    f"tensor '{name}': unsupported torch dtype {tensor.dtype}"
                ) from err
    if not isinstance(value, np.ndarray):
        raise SafetensorsError(
            f"tensor '{name}': expected a torch.Tensor or numpy.ndarray, got {type(value).__name__}"
        )
    dtype = _DTYPE_OF_NUMPY.get(value.dtype.newbyteorder("="))
    if dtype is None:
        raise SafetensorsError(f"tensor '{name}': unsupported numpy dtype {value.dtype}")
    little = np.ascontiguousarray(value).astype(_NUMPY_OF_DTYPE[dtype], copy=False)
    return dtype, list(value.shape), little


def save_file(tensors, path, metadata=None):
    """Writes {name: tensor} to `path`. `metadata`, if given, must map str -> str.

    Tensors are converted and written one at a time, so a large checkpoint needs no second copy
    of all its data in memory.
    """
    names = sorted(tensors)
    header = {}
    offset = 0
    for name in names:
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(f"invalid tensor name {name!r}")
        dtype, shape, array = _normalize(name, tensors[name])
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    if metadata:
        for key, val in metadata.items():
            if not isinstance(key, str) or not isinstance(val, str):
                raise SafetensorsError(
                    f"__metadata__ must map str -> str; got {key!r}: {type(val).__name__}"
                )
        header = {"__metadata__": dict(metadata), **header}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * ((8 - (8 + len(header_bytes)) % 8) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(header_bytes)))
        out.write(header_bytes)
        for name in names:
            array = _normalize(name, tensors[name])[2]
            out.write(array.reshape(-1).view(np.uint8).data)


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, byte offset of the data block)."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise SafetensorsError(f"{path}: file shorter than the 8-byte header length")
        (header_len,) = struct.unpack("<Q", prefix)
        raw = f.read(header_len)
        if len(raw) != header_len:
            raise SafetensorsError(f"{path}: header length {header_len} exceeds the file size")
    header = json.loads(raw.decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    return header, metadata, 8 + header_len


def load_file(path, as_torch=True):
    """Returns ({name: tensor}, metadata). Tensors are torch tensors (default) or numpy arrays."""
    header, metadata, data_start = read_header(path)
    with open(path, "rb") as f:
        f.seek(data_start)
        data = f.read()
    tensors = {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _NUMPY_OF_DTYPE:
            raise SafetensorsError(f"{path}: tensor '{name}' has unsupported dtype {dtype}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        np_dtype = _NUMPY_OF_DTYPE[dtype]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if end - begin != count * np_dtype.itemsize or end > len(data):
            raise SafetensorsError(
                f"{path}: tensor '{name}' offsets [{begin}, {end}) do not fit dtype {dtype} "
                f"shape {list(shape)} (data block is {len(data)} bytes)"
            )
        array = np.frombuffer(data, dtype=np_dtype, count=count, offset=begin).reshape(shape)
        if as_torch:
            import torch

            if dtype == "BF16":
                tensors[name] = torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
            else:
                tensors[name] = torch.from_numpy(array.copy())
        else:
            tensors[name] = array.copy()
    return tensors, metadata
