#!/usr/bin/env bash
# The `gpu` profile on one GPU machine (one H200 and 16 CPU cores), in two parts of at most
# ~5 minutes each by `diffscale run --dry-run`'s estimate, so that each fits one 10-minute call:
#
#   scripts/gpu-profile.sh 1       # GPU: half of the DiT, MicroDiT and Li cases; CPU cores: the rest
#   scripts/gpu-profile.sh 2       # GPU: the other half
#   scripts/gpu-profile.sh merge   # join the three folders into results/gpu
#   scripts/gpu-profile.sh all     # 1, 2 and merge in one go
#
# Why two devices: the DiT-family and UNet claims are sized for the GPU (24×24 images, widths to
# 128, up to 1e13 training FLOPs a model); the MLP claims of mei2024 train models of a few thousand
# parameters, whose steps candle runs ~10× faster on one CPU core than on the H200 (launch-bound:
# README, "GPU"), so they run on 12 of the machine's cores beside the GPU's process. The two
# halves record different numerics (device, precision), hence `merge --allow-mixed-machines`.
#
# Environment: DIFFSCALE (the binary; default target-cuda/release/diffscale, built by
# scripts/build-cuda.sh), OUT (working folder; default runs/gpu), RESULTS (default results/gpu),
# PROFILE (default gpu) and GPU_DEVICE (default cuda:0): `PROFILE=smoke GPU_DEVICE=cpu
# DIFFSCALE=target/release/diffscale scripts/gpu-profile.sh all` rehearses the whole flow on a
# CPU machine in about two minutes.
# The CUDA 13 libraries must be on LD_LIBRARY_PATH (the script adds PyTorch's pip copies if found).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${DIFFSCALE:-target-cuda/release/diffscale}
OUT=${OUT:-runs/gpu}
RESULTS=${RESULTS:-results/gpu}
PROFILE=${PROFILE:-gpu}
GPU_DEVICE=${GPU_DEVICE:-cuda:0}
GPU_SUITES=(suites/dit2023.yaml suites/microdit2024.yaml suites/li2024.yaml)
CPU_SUITES=(suites/mei2024.yaml suites/calibration.yaml)
if lib=$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))' 2>/dev/null); then
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# A run exits 1 when a claim FAILs or (sharded) a case failed: that is a result, not an error.
# Exit status 2 (bad input or no GPU) stops the script.
run() {
  "$BIN" run "$@"
  local rc=$?
  [ "$rc" -le 1 ] || { echo "diffscale run $* exited $rc" >&2; exit "$rc"; }
}

part1() {
  run "${GPU_SUITES[@]}" --profile "$PROFILE" --device "$GPU_DEVICE" -j 4 --shard 1/2 --out "$OUT/gpu-1" &
  local gpu=$!
  run "${CPU_SUITES[@]}" --profile "$PROFILE" --device cpu -j 12 --out "$OUT/cpu"
  wait "$gpu" || exit $?
}
part2() { run "${GPU_SUITES[@]}" --profile "$PROFILE" --device "$GPU_DEVICE" -j 4 --shard 2/2 --out "$OUT/gpu-2"; }
merge() {
  "$BIN" merge "$OUT/gpu-1" "$OUT/gpu-2" "$OUT/cpu" --allow-mixed-machines --out "$RESULTS"
  local rc=$?
  [ "$rc" -le 1 ] || exit "$rc"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$RESULTS/gpu.txt" || true
  fi
}

case ${1:-all} in
  1) time part1 ;;
  2) time part2 ;;
  merge) merge ;;
  all) time part1 && time part2 && merge ;;
  *) echo "usage: $0 1|2|merge|all" >&2; exit 2 ;;
esac
