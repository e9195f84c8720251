#!/usr/bin/env bash
# Installs what mentor needs from Debian 12's packages, only what is missing; quiet when all is there.
# Idempotent. Run as root (or with sudo available).
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libeigen3-dev                          # CPU backend (Eigen: tensors, the portable GEMM)
  libopenblas-openmp-dev                 # CPU GEMM kernel, one per mentor thread (gemm.hpp)
  libopenblas-dev                        # OpenBLAS threaded: bench_matmul's yardstick
  catch2 libbenchmark-dev                # tests and microbenchmarks
  nlohmann-json3-dev libcli11-dev        # JSON configs, command lines
  libstb-dev                             # PNG writing (stb_image_write)
  libpng-dev libjpeg62-turbo-dev zlib1g-dev  # hardened PNG/JPEG decoders, gzip'd IDX data
  clang libomp-dev                       # libFuzzer harnesses (tools/fuzz.sh)
  libsentencepiece-dev sentencepiece     # T5's tokenizer family
  gnuplot-nox                            # loss curves to PNG
  dataset-fashion-mnist                  # real images for the examples and the tokenizer
  fonts-noto-color-emoji unicode-data    # real emoji pictures (CBDT font) and their CLDR names
  python3-skimage                        # scikit-image's photographs: crops for reconstruction
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "mentor setup: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
