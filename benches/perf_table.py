#!/usr/bin/env python3
"""Turn the raw outputs of benches/side_by_side.sh (criterion for candle, torch_reference.py for
PyTorch, at 1 and 2 threads) into results/perf/side_by_side.md. Usage: perf_table.py TMPDIR OUT."""
import pathlib, platform, re, subprocess, sys
tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

GFLOP, SECONDS = {}, {}


def candle(t):
    """samples/s (criterion's middle throughput estimate) per (model, kind)."""
    res, name = {}, None
    for line in (tmp / f"candle_{t}.txt").read_text().splitlines():
        m = re.match(r"^(dit|unet|mlp|matmul)/(train_5_steps|forward|512x512x512)/.*?([\d.]+) GFLOP", line.strip())
        if m:
            name = (m.group(1), {"train_5_steps": "train", "forward": "forward"}.get(m.group(2), "512³"))
            GFLOP[(t, name)] = float(m.group(3))
        m = re.search(r"time:\s+\[\s*\S+\s+\S+\s+(\S+)\s+(\S+)", line)
        if m and name:
            SECONDS[(t, name)] = float(m.group(1)) * {"s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6}[m.group(2)]
        m = re.search(r"thrpt:\s+\[\s*\S+\s+\S+\s+(\S+)\s+(\S+)", line)
        if m and name:
            v, unit = float(m.group(1)), m.group(2)
            res[name] = v * {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6}[unit]
            name = None
    return res

def torch(t):
    res = {}
    for line in (tmp / f"torch_{t}.txt").read_text().splitlines():
        m = re.match(r"^([\w-]+)\s+(?:batch\s+\d+\s+)?params\s+\S+\s+train\s+([\d.]+) samples/s\s+forward\s+([\d.]+)", line)
        if m:
            res[(m.group(1), "train")], res[(m.group(1), "forward")] = float(m.group(2)), float(m.group(3))
    return res

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
lines = [
    "# candle against PyTorch on the CPU: the project's own models",
    "",
    f"Machine: {cpu}, {platform.machine()}, Linux {platform.release()}. {rustc}. "
    + re.sub(r", \d+ thread\(s\)", "", (tmp / "torch_1.txt").read_text().splitlines()[0]) + ".",
    "",
    "Command: `benches/side_by_side.sh`. Models (identical parameter counts, checked by the script):",
    "DiT 4 blocks × 128 wide, 16×16×3 input, patch 2, adaLN-Zero, batch 64; small UNet (c = 32,",
    "two levels, attention at 8×8), batch 64; MLP (width 128, 2 blocks) on 8-d data, batch 128.",
    "Training = forward, backward, clipping, AdamW (and, in candle, the EMA). f32. GFLOP/s counts",
    "2 × MACs of the analytic count, a training step as 3 × forward.",
    "",
    "| model | step | threads | PyTorch samples/s | candle samples/s | candle / PyTorch | candle GFLOP/s |",
    "|---|---|---|---|---|---|---|",
]
for model in ["dit", "unet", "mlp"]:
    for kind in ["train", "forward"]:
        for t in [1, 2]:
            p, c = torch(t).get((model, kind)), candle(t).get((model, kind))
            ratio = f"{c / p:.2f}" if p and c else "—"
            fmt = lambda v: f"{v:,.0f}" if v else "—"
            key = (t, (model, kind))
            gf = f"{GFLOP[key] / SECONDS[key]:.1f}" if key in GFLOP and key in SECONDS else "—"
            lines.append(f"| {model} | {kind} | {t} | {fmt(p)} | {fmt(c)} | {ratio} | {gf} |")
lines += ["", "Achieved GFLOP/s as a share of candle's own 512³ f32 matmul at the same thread count:", ""]
lines += ["| threads | matmul GFLOP/s | DiT train | UNet train |", "|---|---|---|---|"]
for t in [1, 2]:
    mm = (t, ("matmul", "512³"))
    if mm not in GFLOP or mm not in SECONDS:
        continue
    peak = GFLOP[mm] / SECONDS[mm]
    share = lambda m: f"{100 * GFLOP[(t, (m, 'train'))] / SECONDS[(t, (m, 'train'))] / peak:.0f}%" if (t, (m, "train")) in SECONDS else "—"
    lines.append(f"| {t} | {peak:.0f} | {share('dit')} | {share('unet')} |")
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
