#!/usr/bin/python3
"""Writes the golden files of tests/data/test_image.cpp into tests/goldens/image_*.

Reference implementations used (independent of mentor):
  * Pillow's Image.resize (BOX, BILINEAR, BICUBIC, LANCZOS) on mode RGB and mode F images;
  * HF CLIPImageProcessor's steps, written out with numpy (transformers is not installed here):
    convert("RGB"); resize shortest edge to `size` with PIL BICUBIC, the long edge to
    int(size * long / short); center crop with offsets (h - size) // 2; rescale in float64 then cast
    to float32; (x - mean) / std in float32;
  * guided-diffusion's center_crop_arr (copied algorithm) + torchvision's ToTensor/Normalize(0.5, 0.5)
    arithmetic in float32;
  * Pillow's JPEG decoder (libjpeg) and PNG writer; Python's gzip module.

Run with Debian's python (Pillow 9.4, numpy):  /usr/bin/python3 tools/reference/make_image_goldens.py
Outputs are small (< 100 KB together) and deterministic.
"""
import gzip
import io
import json
import os
import struct

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "goldens")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
FILTERS = {
    "box": Image.BOX,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
}


def path(name):
    return os.path.join(OUT, name)


def save_png(image, name):
    image.save(path(name), format="PNG", optimize=True)
    return name


def save_f32(array, name):
    np.ascontiguousarray(array, dtype="<f4").tofile(path(name))
    return name


def source_image(width, height, seed):
    """Smooth gradients plus noise: exercises both interpolation and the clipping of overshoot."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [255 * x / (width - 1), 255 * y / (height - 1), 127.5 + 127.5 * np.sin(x / 3.0 + y / 5.0)],
        axis=-1,
    )
    noisy = base + rng.normal(0.0, 40.0, size=base.shape)
    # Hard edges (a black and a white square) so bicubic overshoots and must clip at 0 and 255.
    noisy[2:8, 3:9] = 0
    noisy[10:16, 20:27] = 255
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


def clip_reference(image, size):
    image = image.convert("RGB")
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short != size:
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        image = image.resize((new_w, new_h), resample=Image.BICUBIC)
    array = np.array(image)
    top = (array.shape[0] - size) // 2
    left = (array.shape[1] - size) // 2
    array = array[top : top + size, left : left + size]
    array = (array.astype(np.float64) * (1 / 255)).astype(np.float32)
    array = (array - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return array.transpose(2, 0, 1)  # CHW


def center_crop_arr(pil_image, image_size):
    """guided-diffusion / LlamaGen's ADM crop (same algorithm)."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def adm_reference(image, size):
    arr = center_crop_arr(image.convert("RGB"), size)
    unit = arr.astype(np.float32) / np.float32(255)
    return ((unit - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1)


def idx_bytes(array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def fashion_mnist_stats():
    stats = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = os.path.join(FASHION_MNIST_DIR, f"{prefix}-images-idx3-ubyte.gz")
        labels_path = os.path.join(FASHION_MNIST_DIR, f"{prefix}-labels-idx1-ubyte.gz")
        with gzip.open(labels_path, "rb") as f:
            labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
        with gzip.open(images_path, "rb") as f:
            images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
        stats[split] = {
            "count": int(images.shape[0]),
            "first_labels": [int(v) for v in labels[:10]],
            "label_histogram": [int(v) for v in np.bincount(labels, minlength=10)],
            "first_image_pixel_sum": int(images[0].astype(np.int64).sum()),
            "last_image_pixel_sum": int(images[-1].astype(np.int64).sum()),
            "first_image_row_14": [int(v) for v in images[0, 14]],
        }
    return stats


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {"resize_u8": [], "resize_f32": [], "clip": [], "adm": []}
    src = source_image(45, 31, seed=0)
    manifest["source"] = save_png(src, "image_src.png")
    tall = src.transpose(Image.TRANSPOSE)  # 31 x 45, exercises the width <= height branches
    manifest["source_tall"] = save_png(tall, "image_src_tall.png")

    # 8-bit resizes: downscale (antialiased), upscale, and mixed.
    for filter_name in FILTERS:
        for width, height in ((17, 12), (64, 50), (60, 20)):
            out = src.resize((width, height), resample=FILTERS[filter_name])
            name = save_png(out, f"image_resize_{filter_name}_{width}x{height}.png")
            manifest["resize_u8"].append(
                {"filter": filter_name, "width": width, "height": height, "file": name}
            )
    half = src.resize((src.width // 2, src.height // 2), resample=Image.BOX)
    manifest["box_half"] = save_png(half, "image_box_half.png")

    # Mode "F" (float) resizes of one plane.
    plane = np.array(src)[:, :, 0].astype(np.float32) / 255.0 * 2.0 - 1.0
    save_f32(plane, "image_plane_f32.bin")
    manifest["plane_f32"] = {"file": "image_plane_f32.bin", "width": 45, "height": 31}
    for filter_name in ("bicubic", "lanczos"):
        for width, height in ((17, 12), (64, 50)):
            out = np.array(Image.fromarray(plane, "F").resize((width, height), FILTERS[filter_name]))
            name = save_f32(out, f"image_resize_f32_{filter_name}_{width}x{height}.bin")
            manifest["resize_f32"].append(
                {"filter": filter_name, "width": width, "height": height, "file": name}
            )

    # CLIP preprocessing at small sizes (the algorithm does not depend on 224).
    for source_name, image in (("source", src), ("source_tall", tall)):
        for size in (16, 20, 31):
            name = save_f32(clip_reference(image, size), f"image_clip_{source_name}_{size}.bin")
            manifest["clip"].append({"source": source_name, "size": size, "file": name})

    # ADM center crop: with one BOX halving (8, 13), none (20), and a round-half-to-even case.
    half_case = source_image(14, 4, seed=1)  # 14 * 3/4 = 10.5 -> 10 with Python's round
    manifest["source_half_case"] = save_png(half_case, "image_src_half_case.png")
    for source_name, image, size in (
        ("source", src, 8),
        ("source", src, 13),
        ("source", src, 20),
        ("source_tall", tall, 8),
        ("source_half_case", half_case, 3),
    ):
        name = save_f32(adm_reference(image, size), f"image_adm_{source_name}_{size}.bin")
        manifest["adm"].append({"source": source_name, "size": size, "file": name})

    # Decoding: a JPEG (4:4:4, quality 95) and PIL's decode of it; a grey PNG and its RGB version;
    # an RGBA PNG.
    src.save(path("image_src.jpg"), format="JPEG", quality=95, subsampling=0)
    manifest["jpeg"] = "image_src.jpg"
    manifest["jpeg_decoded_by_pil"] = save_png(Image.open(path("image_src.jpg")).convert("RGB"),
                                               "image_src_jpg_pil.png")
    grey = src.getchannel(1)
    manifest["grey"] = save_png(grey, "image_grey.png")
    manifest["grey_as_rgb"] = save_png(grey.convert("RGB"), "image_grey_rgb.png")
    rgba = src.copy()
    rgba.putalpha(src.getchannel(2))
    manifest["rgba"] = save_png(rgba, "image_rgba.png")

    # gzip with a file name in its header (FNAME), holding a 3 x 4 x 5 IDX array of (7 i) mod 256.
    sample = (np.arange(60) * 7 % 256).reshape(3, 4, 5)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="sample.idx", mode="wb", fileobj=buffer, mtime=0) as f:
        f.write(idx_bytes(sample))
    with open(path("image_idx_sample.idx.gz"), "wb") as f:
        f.write(buffer.getvalue())
    with open(path("image_idx_sample.idx"), "wb") as f:
        f.write(idx_bytes(sample))
    manifest["idx_gz"] = "image_idx_sample.idx.gz"
    manifest["idx_raw"] = "image_idx_sample.idx"

    if os.path.isdir(FASHION_MNIST_DIR):
        manifest["fashion_mnist"] = fashion_mnist_stats()

    with open(path("image_goldens.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
