#!/usr/bin/env python3
"""Turn the raw outputs of benches/side_by_side_gpu.sh into results/perf/gpu.md: training and
forward samples/s of candle and PyTorch per model, batch and precision, and their ratios.
Usage: perf_table_gpu.py TMPDIR OUT."""
import pathlib, re, sys

tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
LINE = re.compile(
    r"^([\w-]+)\s+batch\s+(\d+)\s+params\s+[\d,]+\s+(?:train\s+([\d.]+) samples/s\s+forward\s+([\d.]+) samples/s"
    r"(?:\s+peak\s+([\d.na]+) GiB)?|(out of memory))"
)


def read(path):
    rows = {}
    for line in path.read_text().splitlines():
        m = LINE.match(line.strip())
        if m:
            name, batch, train, fwd, peak, oom = m.groups()
            rows[(name, int(batch))] = None if oom else (float(train), float(fwd), peak)
    return rows


def mem_peak(path):
    vals = [int(v) for v in path.read_text().split() if v.isdigit()] if path.exists() else []
    return f"{max(vals) / 1024:.0f} GiB (whole run)" if vals else "–"


gpu = (tmp / "gpu.txt").read_text().strip()
lines = [
    "# candle against PyTorch eager on one GPU",
    "",
    f"GPU: {gpu}. candle: tests/cuda.rs `gpu_throughput` (the runner's `train::train`: host batches,",
    "AdamW, clipping, EMA); PyTorch: benches/torch_reference.py --set gpu (the same architectures,",
    "parameter counts checked). bf16 = bf16 activations over f32 weights on both sides (PyTorch:",
    "torch.autocast). 10 timed steps after warm-up. Written by benches/side_by_side_gpu.sh.",
    "",
    "| model | batch | precision | PyTorch train | candle train | ratio | PyTorch forward | candle forward | ratio | PyTorch peak |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for p in ("f32", "bf16"):
    t, c = read(tmp / f"torch_{p}.txt"), read(tmp / f"candle_{p}.txt")
    for key in t:
        tv, cv = t[key], c.get(key)
        if tv is None:
            continue
        if cv is None:
            lines.append(f"| {key[0]} | {key[1]} | {p} | {tv[0]:,.0f} | {'out of memory' if key in c else '–'} | – | {tv[1]:,.0f} | – | – | {tv[2]} GiB |")
            continue
        lines.append(
            f"| {key[0]} | {key[1]} | {p} | {tv[0]:,.0f} | {cv[0]:,.0f} | {cv[0] / tv[0]:.2f}× | {tv[1]:,.0f} | {cv[1]:,.0f} | {cv[1] / tv[1]:.2f}× | {tv[2]} GiB |"
        )
    lines.append("")
lines += [f"candle's device memory, sampled every 200 ms: f32 {mem_peak(tmp / 'mem_f32.txt')}, bf16 {mem_peak(tmp / 'mem_bf16.txt')}.", ""]
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("\n".join(lines))
