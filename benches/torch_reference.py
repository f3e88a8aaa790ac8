#!/usr/bin/env python3
"""The models of `benches/models/mod.rs` in PyTorch, trained the same way, for a side-by-side
samples/s comparison with candle on the same machine (CPU, or a GPU with --device cuda, where
--precision bf16 is torch.autocast(bfloat16) over f32 weights, the counterpart of diffscale's
--precision bf16).

    python3 benches/torch_reference.py --threads 1      # and --threads 2
    RAYON_NUM_THREADS=1 cargo bench --bench train_step  # candle, same models and batches
    python3 benches/torch_reference.py --device cuda --set gpu --precision bf16   # the GPU table

Each model is written from diffscale's own configs (harness/models/{dit,unet,mlp}.rs), and the
script checks that its parameter count equals diffscale's analytic count before timing, so the
two frameworks are known to train the same architecture. Data are random tensors of the same
shapes (throughput does not depend on the values). Needs only `torch` (CPU build).
"""

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Parameter counts from `diffscale flops` / harness/models/tests.rs for these exact configs.
EXPECTED_PARAMS = {
    "dit": 1_273_868,
    "unet": 935_843,
    "mlp": 93_064,
    # DiT-S/2 and DiT-B/2 at 32×32×3 (6 classes, no learned sigma), as tests/cuda.rs builds them.
    "dit-s2": 32_474_124,
    "dit-b2": 129_533_964,
}


def timestep_features(t, n):
    half = n // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


# --- DiT (adaLN-Zero), as harness/models/dit.rs --------------------------------------------


def layer_norm(x, eps):
    return F.layer_norm(x, x.shape[-1:], eps=eps)


class DitBlock(nn.Module):
    def __init__(self, d, heads, mlp_ratio):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, int(d * mlp_ratio))
        self.fc2 = nn.Linear(int(d * mlp_ratio), d)
        self.ada = nn.Linear(d, 6 * d)

    def attn(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        split = lambda t: t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        a = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.proj(a.transpose(1, 2).reshape(b, n, d))

    def forward(self, x, c):
        m = self.ada(F.silu(c)).chunk(6, dim=-1)
        mod = lambda h, shift, scale: h * (1 + scale[:, None]) + shift[:, None]
        x = x + m[2][:, None] * self.attn(mod(layer_norm(x, 1e-6), m[0], m[1]))
        h = self.fc2(F.gelu(self.fc1(mod(layer_norm(x, 1e-6), m[3], m[4])), approximate="tanh"))
        return x + m[5][:, None] * h


class Dit(nn.Module):
    def __init__(self, depth=4, d=128, heads=4, patch=2, size=16, cin=3, classes=6, mlp_ratio=4.0):
        super().__init__()
        self.p, self.size, self.cin = patch, size, cin
        self.patch = nn.Linear(patch * patch * cin, d)
        side = size // patch
        self.register_buffer("pos", torch.zeros(side * side, d))  # fixed, not trained
        self.t1, self.t2 = nn.Linear(256, d), nn.Linear(d, d)
        self.blocks = nn.ModuleList([DitBlock(d, heads, mlp_ratio) for _ in range(depth)])
        self.final_ada = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, patch * patch * cin)
        self.label = nn.Embedding(classes + 1, d)

    def forward(self, x, t, y):
        b, p, s, c = x.shape[0], self.p, self.size, self.cin
        side = s // p
        x = x.reshape(b, side, p, side, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, side * side, p * p * c)
        h = self.patch(x) + self.pos
        cond = self.t2(F.silu(self.t1(timestep_features(t, 256)))) + self.label(y)
        for blk in self.blocks:
            h = blk(h, cond)
        shift, scale = self.final_ada(F.silu(cond)).chunk(2, dim=-1)
        h = layer_norm(h, 1e-6) * (1 + scale[:, None]) + shift[:, None]
        out = self.out(h).reshape(b, side, side, p, p, c).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(b, s * s * c)


# --- the small UNet, as harness/models/unet.rs -----------------------------------------------


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2, self.c2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.sc = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x))) + self.t(F.silu(temb))[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return (self.sc(x) if self.sc is not None else x) + h


class Transformer(nn.Module):
    """GroupNorm, proj_in, [LN, self-attention, LN, GEGLU], proj_out (no cross-attention)."""

    def __init__(self, ch, heads, groups):
        super().__init__()
        self.heads = heads
        self.gn, self.proj_in = nn.GroupNorm(groups, ch), nn.Linear(ch, ch)
        self.ln1, self.qkv, self.o = nn.LayerNorm(ch), nn.Linear(ch, 3 * ch, bias=False), nn.Linear(ch, ch)
        self.ln3, self.ff1, self.ff2 = nn.LayerNorm(ch), nn.Linear(ch, 8 * ch), nn.Linear(4 * ch, ch)
        self.proj_out = nn.Linear(ch, ch)

    def forward(self, x):
        b, c, hh, ww = x.shape
        t = self.proj_in(self.gn(x).permute(0, 2, 3, 1).reshape(b, hh * ww, c))
        q, k, v = self.qkv(self.ln1(t)).chunk(3, dim=-1)
        split = lambda z: z.reshape(b, hh * ww, self.heads, c // self.heads).transpose(1, 2)
        a = F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(b, hh * ww, c)
        t = t + self.o(a)
        val, gate = self.ff1(self.ln3(t)).chunk(2, dim=-1)
        t = t + self.ff2(val * F.gelu(gate))
        return x + self.proj_out(t).reshape(b, hh, ww, c).permute(0, 3, 1, 2)


class Unet(nn.Module):
    """channels 32, channel_mult [1, 2], layers_per_block 1, attention at the second level."""

    def __init__(self, c=32, size=16, cin=3, classes=7, heads=4, groups=8):
        super().__init__()
        temb = 4 * c
        self.c, self.size, self.cin = c, size, cin
        self.t1, self.t2 = nn.Linear(c, temb), nn.Linear(temb, temb)
        self.label = nn.Embedding(classes, temb)
        self.conv_in = nn.Conv2d(cin, c, 3, padding=1)
        self.d0 = ResBlock(c, c, temb, groups)
        self.down0 = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.d1, self.d1a = ResBlock(c, 2 * c, temb, groups), Transformer(2 * c, heads, groups)
        self.m0, self.ma, self.m1 = (
            ResBlock(2 * c, 2 * c, temb, groups),
            Transformer(2 * c, heads, groups),
            ResBlock(2 * c, 2 * c, temb, groups),
        )
        # Up, level 1: two ResBlocks over the skips (2c, then c from the downsample), attention after each.
        self.u10, self.u10a = ResBlock(4 * c, 2 * c, temb, groups), Transformer(2 * c, heads, groups)
        self.u11, self.u11a = ResBlock(3 * c, 2 * c, temb, groups), Transformer(2 * c, heads, groups)
        self.up1 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.u00 = ResBlock(3 * c, c, temb, groups)
        self.u01 = ResBlock(2 * c, c, temb, groups)
        self.norm_out, self.conv_out = nn.GroupNorm(groups, c), nn.Conv2d(c, cin, 3, padding=1)

    def forward(self, x, t, y):
        b, s, c = x.shape[0], self.size, self.cin
        temb = self.t2(F.silu(self.t1(timestep_features(t, self.c)))) + self.label(y)
        h = self.conv_in(x.reshape(b, s, s, c).permute(0, 3, 1, 2))
        skips = [h]
        h = self.d0(h, temb)
        skips.append(h)
        h = self.down0(h)
        skips.append(h)
        h = self.d1a(self.d1(h, temb))
        skips.append(h)
        h = self.m1(self.ma(self.m0(h, temb)), temb)
        h = self.u10a(self.u10(torch.cat([h, skips.pop()], 1), temb))
        h = self.u11a(self.u11(torch.cat([h, skips.pop()], 1), temb))
        h = self.up1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.u00(torch.cat([h, skips.pop()], 1), temb)
        h = self.u01(torch.cat([h, skips.pop()], 1), temb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out.permute(0, 2, 3, 1).reshape(b, s * s * c)


# --- the MLP denoiser, as harness/models/mlp.rs -------------------------------------------


class Mlp(nn.Module):
    def __init__(self, d=8, w=128, depth=2, tf=64):
        super().__init__()
        self.tf = tf
        self.t1, self.t2 = nn.Linear(tf, w), nn.Linear(w, w)
        self.inp = nn.Linear(d, w)
        self.blocks = nn.ModuleList([nn.ModuleList([nn.Linear(w, w), nn.Linear(w, w)]) for _ in range(depth)])
        self.out = nn.Linear(w, d)

    def forward(self, x, t, y):
        c = self.t2(F.silu(self.t1(timestep_features(t, self.tf))))
        h = self.inp(x)
        for l1, l2 in self.blocks:
            h = h + l2(F.silu(l1(F.silu(h + c))))
        return self.out(F.silu(h))


def bench(name, model, dim, classes, batch, steps, warmup, device="cpu", bf16=False):
    params = sum(p.numel() for p in model.parameters())
    if params != EXPECTED_PARAMS[name]:
        raise SystemExit(f"{name}: {params} parameters, diffscale counts {EXPECTED_PARAMS[name]}: not the same model")
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    batches = [
        tuple(
            v.to(device)
            for v in (
                torch.randn(batch, dim, generator=gen),
                torch.randint(0, 1000, (batch,), generator=gen),
                torch.randint(0, max(classes, 1), (batch,), generator=gen),
                torch.randn(batch, dim, generator=gen),
            )
        )
        for _ in range(4)
    ]
    cast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else torch.autocast(device, enabled=False)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(i):
        x, t, y, eps = batches[i % len(batches)]
        with cast:
            out = model(x, t, y)
        loss = F.mse_loss(out.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    with torch.no_grad(), cast:
        x, t, y, _ = batches[0]
        model(x, t, y)
        sync()
        t1 = time.perf_counter()
        for _ in range(steps):
            model(x, t, y)
        sync()
        fwd = time.perf_counter() - t1
    print(
        f"{name:6s} batch {batch:4d} params {params:>11,d}  train {batch * steps / dt:9.1f} samples/s"
        f"  forward {batch * steps / fwd:9.1f} samples/s  peak {peak:.1f} GiB"
    )
    return params


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--set", default="cpu", choices=["cpu", "gpu"], help="cpu: the benchmark's three models; gpu: issue 17's table")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bf16 = a.precision == "bf16"
    print(f"torch {torch.__version__}, {a.device}, {a.threads} thread(s), {a.precision}")
    run = lambda *args: bench(*args, a.steps, a.warmup, a.device, bf16)
    if a.set == "cpu":
        run("dit", Dit(), 16 * 16 * 3, 6, 64)
        run("unet", Unet(), 16 * 16 * 3, 7, 64)
        run("mlp", Mlp(), 8, 0, 128)
        return
    image = 32 * 32 * 3
    for batch in (64, 256):
        run("dit-s2", Dit(depth=12, d=384, heads=6, size=32), image, 6, batch)
        run("dit-b2", Dit(depth=12, d=768, heads=12, size=32), image, 6, batch)
    run("dit", Dit(), 16 * 16 * 3, 6, 256)
    run("unet", Unet(), 16 * 16 * 3, 7, 256)
    run("mlp", Mlp(), 8, 0, 256)


if __name__ == "__main__":
    main()
