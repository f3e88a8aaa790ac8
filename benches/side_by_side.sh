#!/usr/bin/env bash
# candle (criterion, `benches/train_step.rs`) and PyTorch (`benches/torch_reference.py`) on the
# same three models, batches and precision, at 1 and 2 threads, in one run. Writes
# results/perf/side_by_side.md (machine facts, then one table). Needs `python3` with `torch`;
# set PYTHON to use another interpreter, e.g. PYTHON=/path/to/venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
out=results/perf/side_by_side.md
tmp=$(mktemp -d)
cargo bench --bench train_step --no-run >/dev/null 2>&1
for t in 1 2; do
  RAYON_NUM_THREADS=$t cargo bench --bench train_step -- --noplot >"$tmp/candle_$t.txt" 2>&1
  "$PYTHON" benches/torch_reference.py --threads "$t" >"$tmp/torch_$t.txt"
done
"$PYTHON" benches/perf_table.py "$tmp" "$out"
