"""Reference values for `ddim_diffusers` and `schedule.float32` (harness/diffusion/samplers/tests.rs).

A float32 NumPy transcription of what diffusers' DDIMScheduler does in `set_timesteps` (the
"linspace" and "trailing" spacings) and `step` (eta = 0, clip_sample, set_alpha_to_one):
every step lands on alphas_cumprod[t - T // n], whatever the spacing, and the next step reads
the sample at the next grid timestep. It runs diffusers' scheduler-test model (eps = x * t / (t + 1))
from its deterministic sample (0 ... 767, divided by 768), and prints the summed magnitudes.
With "leading" spacing it gives diffusers' own golden value (172.0067), which checks it.
The transcription follows diffusers' scheduling_ddim.py line by line, in float32 like its
tensors; diffusers_ddim_real.py runs diffusers' own scheduler on the same loops (diffusers 0.42.1:
191.253970 and 105.149170 against 191.253821 and 105.149282 here, agreeing to about 1e-6).

    python3 tests/reference/diffusers_ddim.py
"""

import numpy as np

T = 1000
f32 = np.float32


def alphas_cumprod():
    betas = np.linspace(1e-4, 0.02, T).astype(f32)  # linear betas, held in float32
    return np.cumprod(f32(1.0) - betas, dtype=f32)


def timesteps(spacing, n):
    if spacing == "leading":  # steps_offset 0
        return (np.arange(0, n) * (T // n)).round()[::-1].copy().astype(np.int64)
    if spacing == "linspace":
        return np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
    if spacing == "trailing":
        return np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    raise ValueError(spacing)


def full_loop(spacing, n, landing):
    ac = alphas_cumprod()
    ts = timesteps(spacing, n)
    x = (np.arange(768) / 768).astype(f32)
    for i, t in enumerate(ts):
        eps = x * f32(t) / f32(t + 1)
        if landing == "diffusers":
            prev = t - T // n
        else:  # the next grid point
            prev = ts[i + 1] if i + 1 < len(ts) else -1
        a_t = ac[t]
        a_prev = ac[prev] if prev >= 0 else f32(1.0)
        x0 = (x - np.sqrt(f32(1) - a_t) * eps) / np.sqrt(a_t)
        x0 = np.clip(x0, -1, 1)
        x = np.sqrt(a_prev) * x0 + np.sqrt(f32(1) - a_prev) * eps
    return float(np.abs(x).astype(np.float64).sum())


# The check on the transcription: diffusers' own test_full_loop_no_noise asserts 172.0067 here.
print(f"leading  n=10 diffusers sum |x| = {full_loop('leading', 10, 'diffusers'):.6f}")
for spacing, n in [("linspace", 10), ("trailing", 3)]:
    for landing in ["diffusers", "grid"]:
        print(f"{spacing:8} n={n:2} {landing:9} sum |x| = {full_loop(spacing, n, landing):.6f}")
