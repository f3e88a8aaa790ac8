#!/usr/bin/env bash
# Build diffscale with `--features cuda` on a machine with no GPU and no CUDA installed, for a GPU
# machine whose driver supports CUDA 13.0 (e.g. driver 580). Writes target-cuda/release/diffscale
# and target-cuda/diffscale-cuda.gz (the binary to carry to the GPU machine).
#
# Why each step (candle 0.11 + cudarc 0.19):
# - candle-kernels compiles its .cu files with nvcc at build time; CUDA_COMPUTE_CAP (default 90:
#   H100/H200) picks the target without a GPU present.
# - The driver JIT-compiles the PTX candle embeds, so the PTX must be one the driver accepts: use
#   the 13.0 toolkit and pin nvvm to it (a newer nvvm writes PTX 9.5, which driver 580 rejects).
# - candle links cudarc dynamically: the link wants unversioned libcublas.so, libcudart.so, … (the
#   PyPI wheels ship only versioned names) and libcuda.so (the driver, absent here). A stub
#   libcuda.so with the right soname satisfies the linker; at run time the GPU machine's real
#   libcuda.so.1 is loaded.
# Needs: python3 with venv and pip (PyPI reachable), gcc, cargo. About 13 minutes on 2 cores cold.
#
# `scripts/build-cuda.sh --tests` also builds the GPU test binary (tests/cuda.rs) and writes it,
# stripped and gzipped, to target-cuda/cuda-tests.gz; run it on the GPU machine from the
# repository root with `--ignored --nocapture` (it runs the diffscale binary beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${CUDA_WORK:-$ROOT/target-cuda/toolkit}
CAP=${CUDA_COMPUTE_CAP:-90}
mkdir -p "$WORK"

if [ ! -x "$WORK/venv/bin/python" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-runtime==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-nvrtc==13.0.*" \
    "nvidia-cublas==13.0.*" nvidia-curand
fi
C=$("$WORK/venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
[ -x "$C/bin/nvcc" ] || { echo "no nvcc under $C (pip layout changed?)" >&2; exit 1; }

LINK=$WORK/linklib
mkdir -p "$LINK"
for l in cublas cublasLt cudart nvrtc; do ln -sf "$C/lib/lib$l.so.13" "$LINK/lib$l.so"; done
curand=$(ls "$C"/lib/libcurand.so.* 2>/dev/null | head -1 || true)
[ -n "$curand" ] || curand=$(ls "$WORK"/venv/lib/python3*/site-packages/nvidia/*/lib/libcurand.so.* | head -1)
ln -sf "$curand" "$LINK/libcurand.so"

# One empty function per driver symbol cudarc declares: enough for the linker.
cargo fetch --quiet
sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
grep -o 'fn cu[A-Za-z0-9_]*' "$sys" | sed 's/fn //' | sort -u | awk '{print "void " $1 "(void) {}"}' >"$WORK/cuda_stub.c"
gcc -shared -fPIC -o "$LINK/libcuda.so" -Wl,-soname,libcuda.so.1 "$WORK/cuda_stub.c"

export PATH=$C/bin:$PATH CUDA_ROOT=$C CUDA_PATH=$C CUDA_TOOLKIT_ROOT_DIR=$C CUDA_COMPUTE_CAP=$CAP
export LIBRARY_PATH=$LINK:$C/lib RUSTFLAGS="-L $LINK -L $C/lib"
nvcc --version | tail -2
tests=0
if [ "${1:-}" = "--tests" ]; then tests=1; shift; fi
cargo build --release --features cuda --target-dir "$ROOT/target-cuda" "$@"
if [ "$tests" = 1 ]; then
  bin=$(cargo test --release --features cuda --target-dir "$ROOT/target-cuda" --test cuda --no-run --message-format=json "$@" \
    | "$WORK/venv/bin/python" -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda":
        print(m["executable"])')
  strip -o target-cuda/cuda-tests "$bin"
  gzip -c target-cuda/cuda-tests >target-cuda/cuda-tests.gz
  echo "built the GPU tests: target-cuda/cuda-tests.gz"
fi
# Debug info is half the binary; the copy to carry goes without it.
strip -o target-cuda/diffscale-cuda target-cuda/release/diffscale
gzip -c target-cuda/diffscale-cuda >target-cuda/diffscale-cuda.gz
echo "built target-cuda/release/diffscale ($(du -h target-cuda/diffscale-cuda.gz | cut -f1) gzipped: target-cuda/diffscale-cuda.gz)"
echo "on the GPU machine: gunzip it to target-cuda/release/diffscale (where scripts/gpu-profile.sh looks) and export LD_LIBRARY_PATH=\$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], \"cu13\", \"lib\"))'):\$LD_LIBRARY_PATH"
