#!/usr/bin/env bash
# GPU checks in steps that each fit one device call (10 minutes), run from the repository root on the
# device machine, with the carried wheels in .whl/ (see the device tool's README; prepare them with
# `bash benchmarks/gpu_run.sh wheels` here):
#   bash benchmarks/gpu_run.sh tests    # the gpu-marked tests: kernels compiled by Triton and Mosaic GPU
#   bash benchmarks/gpu_run.sh kernel   # benchmarks/mlstm_kernel.py: Pallas (Mosaic GPU, Triton), XLA, TFLA,
#                                       # jax-linear-attention, cuDNN attention; and kernel_precision.py
#   bash benchmarks/gpu_run.sh train    # benchmarks/train_throughput.py GPU cases
# Results go to $OUT (the device tool's return folder) or benchmarks/results.
set -euo pipefail
step=${1:?usage: gpu_run.sh wheels|tests|kernel|train}
if [ "$step" = wheels ]; then
  mkdir -p .whl
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo /.whl/ >> .git/info/exclude; }
  for p in mlstm_kernels==2.0.6 jax-linear-attention==0.1.0 ml_collections tensorboardX grain array-record dm-tree portpicker; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
  done
  exit 0
fi
out=${OUT:-benchmarks/results}
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/nvidia_smi.txt"
case "$step" in
  tests) python3 -m pytest -m gpu -p no:cacheprovider -q tests/pallas_kernels 2>&1 | tee "$out/gpu_tests.log" ;;
  kernel) python3 benchmarks/mlstm_kernel.py --config.timeout=240 --config.seq_lens=4096,8192,16384 2>&1 | tee "$out/mlstm_kernel.log"
          python3 benchmarks/kernel_precision.py --config.seq_len=8192 2>&1 | tee "$out/kernel_precision.log"
          cp benchmarks/results/mlstm_kernel_*.json benchmarks/results/kernel_precision_*.json "$out/" ;;
  train) python3 benchmarks/train_throughput.py 2>&1 | tee "$out/train_throughput.log"; cp benchmarks/results/train_throughput_*.json "$out/" ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
