"""The values of diffusers_ddim.py, from diffusers' own DDIMScheduler (needs torch and diffusers).

Runs the scheduler-test loop of diffusers' tests (model eps = x * t / (t + 1), deterministic
sample 0 ... 767 over 768, linear betas 1e-4 to 0.02, clip_sample, set_alpha_to_one, eta 0) with
the spacings the harness tests, and prints the summed magnitudes: harness/diffusion/samplers/tests.rs
holds these values for `ddim_diffusers` with `schedule: {float32: true}`.

    python3 tests/reference/diffusers_ddim_real.py
"""

import diffusers
import torch
from diffusers import DDIMScheduler


def full_loop(spacing, n):
    s = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing=spacing,
    )
    s.set_timesteps(n)
    x = torch.arange(768, dtype=torch.float32) / 768
    for t in s.timesteps:
        eps = x * t / (t + 1)
        x = s.step(eps, t, x, eta=0.0).prev_sample
    return float(x.abs().double().sum())


print(f"diffusers {diffusers.__version__}, torch {torch.__version__}")
print(f"leading  n=10 sum |x| = {full_loop('leading', 10):.6f}")
for spacing, n in [("linspace", 10), ("trailing", 3)]:
    print(f"{spacing:8} n={n:2} sum |x| = {full_loop(spacing, n):.6f}")
