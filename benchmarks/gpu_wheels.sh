#!/usr/bin/env bash
# Run HERE (a machine with PyPI), before lending a GPU: the packages the GPU machine's image lacks, as Python 3.12
# x86-64 wheels, unpacked and packed again as one .whl/site.tar.xz (git-ignored), which `device run --carry .whl`
# takes along and gpu_check.sh unpacks onto PYTHONPATH. xz, because the wheels themselves (PyAV's 36 MB with its
# FFmpeg libraries, imageio-ffmpeg's 27 MB ffmpeg) are over the 64 MiB a call may carry; packed they are ~48 MB.
# The image already holds torch, numpy, scipy, scikit-learn, scikit-image, opencv-python-headless, numba, rich,
# typer, huggingface-hub, transformers and pytest (device/KINDS.md); dlib's 68-point model (100 MB) would not fit
# the 64 MiB a call carries, so the GPU checks use face-alignment (random weights) or a fixed --box.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl/wheels .whl/site
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl/wheels \
    av ffmpeg-python future "imageio-ffmpeg==0.5.1" face-alignment "librosa==0.11.0" audioread soxr soundfile pooch decorator diffusers
# imageio-ffmpeg 0.5.1: its ffmpeg is 26 MB where 0.8 carries 68 MB, over the 64 MiB a call may carry.
for wheel in .whl/wheels/*.whl; do python3 -m zipfile -e "$wheel" .whl/site; done  # a wheel is a zip of site-packages
chmod +x .whl/site/imageio_ffmpeg/binaries/*  # zipfile drops the executable bit
tar -C .whl/site -cf - . | xz -6 -T0 > .whl/site.tar.xz
rm -rf .whl/wheels .whl/site
du -sh .whl
