#!/usr/bin/env bash
# One prepared check for a lent CUDA machine (the device tool), within ~8 minutes: installs nothing beyond the
# project (packages carried in .whl/site.tar.xz by benchmarks/gpu_wheels.sh), runs the CUDA tests and the GPU benchmarks,
# and prints one table (benchmarks/gpu_check.py). Usage there:  bash benchmarks/gpu_check.sh   (OUT=dir for logs)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if [ -f .whl/site.tar.xz ]; then  # the packages the image lacks (benchmarks/gpu_wheels.sh)
    mkdir -p /tmp/site && tar -xJf .whl/site.tar.xz -C /tmp/site || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 600 python3 benchmarks/gpu_check.py --out "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
