//! Samplers, each a short function that mirrors its equation (docs/methods.md §2.3–2.5, §2.8).
//!
//! All walk the same explicit [`Grid`]: evaluation i is at `grid.points[i]` and steps to
//! `grid.next(i)`. Stochastic samplers draw from each sample's own noise stream, so sample i
//! sees the same starting noise under every sampler and step count.

use super::{Evaluator, Grid, Time};
use crate::data::NoiseBank;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// DDPM's reverse-step variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Variance {
    /// The posterior variance β̃ = (1 − ᾱ')/(1 − ᾱ_t)·β (DDPM with it equals DDIM with η = 1).
    FixedSmall,
    /// β itself.
    FixedLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sampler {
    /// Ancestral DDPM on any respaced grid (Ho et al. 2020, Eq. 7; respacing as in iDDPM).
    Ddpm { variance: Variance },
    /// DDIM (Song et al. 2021, Eq. 12); η = 0 is the deterministic first-order ODE solver.
    Ddim { eta: f64 },
    /// DDIM step for step as diffusers' `DDIMScheduler.step`, for users who must match a
    /// diffusers pipeline sample for sample: every step lands on ᾱ at t − T//n (the previous
    /// point of "leading" spacing) whatever the grid, and the next step reads the sample as if it
    /// were at the next grid point. The two differ for `linspace` spacing, and for `trailing`
    /// when n does not divide T (huggingface/diffusers issues #11347, #12633).
    DdimDiffusers { eta: f64 },
    /// DPM-Solver++(2M), data-prediction multistep (Lu et al. 2022, Alg. 2).
    #[serde(rename = "dpmpp_2m")]
    DpmSolverPp2m {
        /// First order on the last step when fewer than 15 steps (diffusers' switch).
        lower_order_final: bool,
    },
    /// Euler on the probability-flow ODE in σ̃ = σ/α (Karras et al. 2022, Alg. 1 without the
    /// correction).
    Euler,
    /// Heun (Karras et al. 2022, Alg. 1): 2 evaluations per step but the last.
    Heun,
    /// NEGATIVE CONTROL: DDIM that lands on ᾱ of the step after next (an off-by-one index).
    DdimOffByOne,
    /// NEGATIVE CONTROL: DPM-Solver++(2M) without its second-order term (that is, DDIM).
    #[serde(rename = "dpmpp_2m_first_order")]
    DpmSolverPp2mFirstOrder,
}

impl Sampler {
    pub fn name(&self) -> &'static str {
        match self {
            Sampler::Ddpm { .. } => "ddpm",
            Sampler::Ddim { .. } => "ddim",
            Sampler::DdimDiffusers { .. } => "ddim_diffusers",
            Sampler::DpmSolverPp2m { .. } => "dpmpp_2m",
            Sampler::Euler => "euler",
            Sampler::Heun => "heun",
            Sampler::DdimOffByOne => "ddim_off_by_one",
            Sampler::DpmSolverPp2mFirstOrder => "dpmpp_2m_first_order",
        }
    }
}

fn axpby(a: f64, x: &[f64], b: f64, y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(x, y)| a * x + b * y).collect()
}

/// DDPM posterior step from t to t' (docs/methods.md §2.3): with ᾱ' the next point's, the
/// effective β = 1 − ᾱ_t/ᾱ' makes the step exact on respaced grids.
fn ddpm_step(
    x: &[f64],
    x0: &[f64],
    t: Time,
    t1: Time,
    variance: Variance,
    last: bool,
    noise: &mut NoiseBank,
) -> Vec<f64> {
    let (ab, ab1) = (t.alpha * t.alpha, t1.alpha * t1.alpha);
    let a_step = ab / ab1;
    let beta = 1.0 - a_step;
    let c0 = ab1.sqrt() * beta / (1.0 - ab);
    let ct = a_step.sqrt() * (1.0 - ab1) / (1.0 - ab);
    let mut out = axpby(c0, x0, ct, x);
    if !last {
        let var = match variance {
            Variance::FixedSmall => (1.0 - ab1) / (1.0 - ab) * beta,
            Variance::FixedLarge => beta,
        };
        noise.add_step_noise(&mut out, var.max(0.0).sqrt());
    }
    out
}

/// DDIM step (docs/methods.md §2.4): x' = √ᾱ'·x̂0 + √(1 − ᾱ' − s²)·ε̂ + s·z,
/// s = η·√((1 − ᾱ')/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ').
fn ddim_step(x0: &[f64], eps: &[f64], t: Time, t1: Time, eta: f64, noise: &mut NoiseBank) -> Vec<f64> {
    let (ab, ab1) = (t.alpha * t.alpha, t1.alpha * t1.alpha);
    let s = if eta > 0.0 { eta * ((1.0 - ab1) / (1.0 - ab)).sqrt() * (1.0 - ab / ab1).max(0.0).sqrt() } else { 0.0 };
    let mut out = axpby(ab1.sqrt(), x0, (1.0 - ab1 - s * s).max(0.0).sqrt(), eps);
    if s > 0.0 {
        noise.add_step_noise(&mut out, s);
    }
    out
}

/// Run `sampler` over `grid` from the bank's starting noise; returns the samples.
pub fn sample(sampler: Sampler, ev: &mut Evaluator, grid: &Grid, noise: &mut NoiseBank) -> Vec<f64> {
    let mut x = noise.start();
    let n = grid.points.len();
    let mut prev_d: Option<Vec<f64>> = None;
    for i in 0..n {
        let (t, t1) = (grid.points[i], grid.next(i));
        let last = i + 1 == n;
        let (x0, eps) = ev.predict(&x, t);
        x = match sampler {
            Sampler::Ddpm { variance } => ddpm_step(&x, &x0, t, t1, variance, last, noise),
            Sampler::Ddim { eta } => ddim_step(&x0, &eps, t, t1, eta, noise),
            Sampler::DdimDiffusers { eta } => ddim_step(&x0, &eps, t, grid.diffusers_landing(i), eta, noise),
            Sampler::DdimOffByOne => ddim_step(&x0, &eps, t, grid.next(i + 1), 0.0, noise),
            Sampler::DpmSolverPp2m { .. } | Sampler::DpmSolverPp2mFirstOrder => {
                let first = match sampler {
                    Sampler::DpmSolverPp2m { lower_order_final } => i == 0 || (lower_order_final && n < 15 && last),
                    _ => true,
                };
                let out = dpmpp_2m_step(&x, &x0, prev_d.as_deref(), grid, i, first);
                prev_d = Some(x0);
                out
            }
            Sampler::Euler | Sampler::Heun => {
                let heun = matches!(sampler, Sampler::Heun);
                karras_step(ev, &x, &x0, t, t1, heun)
            }
        };
    }
    x
}

/// DPM-Solver++(2M) (docs/methods.md §2.5): with h = λ' − λ and r = h_prev/h,
/// D̃ = (1 + 1/(2r))·D_i − 1/(2r)·D_{i−1}, and x' = (σ'/σ)·x + α'·(1 − e^{−h})·D̃.
/// A step onto σ' = 0 (λ' = ∞) returns the data prediction.
fn dpmpp_2m_step(x: &[f64], d: &[f64], d_prev: Option<&[f64]>, grid: &Grid, i: usize, first_order: bool) -> Vec<f64> {
    let (t, t1) = (grid.points[i], grid.next(i));
    if t1.sigma == 0.0 {
        return d.to_vec();
    }
    let h = t1.lambda() - t.lambda();
    let dt: Vec<f64> = match (first_order, d_prev) {
        (false, Some(dp)) => {
            let r = (t.lambda() - grid.points[i - 1].lambda()) / h;
            axpby(1.0 + 0.5 / r, d, -0.5 / r, dp)
        }
        _ => d.to_vec(),
    };
    axpby(t1.sigma / t.sigma, x, -t1.alpha * (-h).exp_m1(), &dt)
}

/// Euler or Heun in the EDM variables x̃ = x/α, σ̃ = σ/α, where the PF-ODE is
/// dx̃/dσ̃ = (x̃ − D)/σ̃.
fn karras_step(ev: &mut Evaluator, x: &[f64], d: &[f64], t: Time, t1: Time, heun: bool) -> Vec<f64> {
    let (s, s1) = (t.sigma / t.alpha, t1.sigma / t1.alpha);
    let xt: Vec<f64> = x.iter().map(|v| v / t.alpha).collect();
    let slope: Vec<f64> = xt.iter().zip(d).map(|(x, d)| (x - d) / s).collect();
    let mut next = axpby(1.0, &xt, s1 - s, &slope);
    if heun && s1 > 0.0 {
        let x1: Vec<f64> = next.iter().map(|v| v * t1.alpha).collect();
        let (d1, _) = ev.predict(&x1, t1);
        let slope1: Vec<f64> = next.iter().zip(&d1).map(|(x, d)| (x - d) / s1).collect();
        let avg: Vec<f64> = slope.iter().zip(&slope1).map(|(a, b)| 0.5 * (a + b)).collect();
        next = axpby(1.0, &xt, s1 - s, &avg);
    }
    next.iter().map(|v| v * t1.alpha).collect()
}

#[cfg(test)]
mod tests;
