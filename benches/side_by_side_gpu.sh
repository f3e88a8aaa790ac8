#!/usr/bin/env bash
# candle (tests/cuda.rs `gpu_throughput`, the runner's own training engine) against PyTorch eager
# (benches/torch_reference.py --set gpu) on one GPU, f32 and bf16 mixed precision, in one run on
# the GPU machine. Writes results/perf/gpu.md: the machine, then one table of training and
# forward samples/s and peak memory per model and batch, with candle / PyTorch ratios.
#
# Build the candle side elsewhere with `scripts/build-cuda.sh --tests` and carry
# target-cuda/cuda-tests.gz; the GPU machine needs python3 with a CUDA build of torch.
#   benches/side_by_side_gpu.sh [CUDA_TESTS_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS=${1:-target-cuda/cuda-tests}
[ -x "$TESTS" ] || { [ -f "$TESTS.gz" ] && gunzip -kf "$TESTS.gz" && chmod +x "$TESTS"; }
PYTHON=${PYTHON:-python3}
if lib=$("$PYTHON" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))' 2>/dev/null); then
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
tmp=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$tmp/gpu.txt"
for p in f32 bf16; do
  "$PYTHON" benches/torch_reference.py --device cuda --set gpu --precision "$p" --steps 10 >"$tmp/torch_$p.txt"
  # candle frees as it goes and has no peak counter: sample the device's used memory meanwhile.
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$tmp/mem_$p.txt" &
  smi=$!
  DIFFSCALE_PRECISION=$p DIFFSCALE_STEPS=10 "$TESTS" --ignored --nocapture --exact gpu_throughput \
    >"$tmp/candle_$p.txt" 2>&1 || true
  kill "$smi" 2>/dev/null || true
done
"$PYTHON" benches/perf_table_gpu.py "$tmp" results/perf/gpu.md
cat results/perf/gpu.md
