//! Noise schedules and sampling grids (docs/methods.md §2.1, §2.8).
//!
//! Notation (variance preserving): x_t = α_t x0 + σ_t ε with α_t² + σ_t² = 1, ᾱ_t = α_t²,
//! λ_t = log(α_t/σ_t). A sampler walks an explicit grid of (α, σ) points; every switch that
//! shapes the grid (spacing, final point) is a named option with no hidden default.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The discrete training schedule (T steps, index t = 0 … T−1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BetaSchedule {
    /// β_t = linspace(start, end, T) (DDPM: 1e-4 … 0.02).
    Linear { start: f64, end: f64 },
    /// β_t = linspace(√start, √end, T)² (SD/LDM: 0.00085 … 0.012).
    ScaledLinear { start: f64, end: f64 },
    /// Nichol & Dhariwal: ᾱ(u) = f(u)/f(0), f(u) = cos²((u + 0.008)/1.008 · π/2), β capped at 0.999.
    Cosine,
}

/// A schedule: betas, and optionally Lin et al.'s zero-terminal-SNR rescaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// `cosine`, `{linear: {start, end}}` or `{scaled_linear: {start, end}}`.
    pub betas: BetaSchedule,
    #[serde(default = "default_t")]
    pub train_steps: usize,
    /// Rescale √ᾱ so that the last step has zero SNR (Lin et al. 2024, Alg. 1).
    #[serde(default)]
    pub zero_terminal_snr: bool,
    /// Hold β and ᾱ in float32 as diffusers' schedulers do (β rounded to f32, 1 − β and the
    /// cumulative product taken in f32), for matching a diffusers pipeline sample for sample.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub float32: bool,
}

fn default_t() -> usize {
    1000
}

/// diffusers' `linspace` (numpy semantics: the last point is exactly `end`).
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    crate::compute::linspace(start, end, n)
}

impl Schedule {
    pub fn linear() -> Self {
        Schedule {
            betas: BetaSchedule::Linear { start: 1e-4, end: 0.02 },
            train_steps: 1000,
            zero_terminal_snr: false,
            float32: false,
        }
    }

    pub fn betas(&self) -> Vec<f64> {
        let n = self.train_steps;
        let mut b = match self.betas {
            BetaSchedule::Linear { start, end } => linspace(start, end, n),
            BetaSchedule::ScaledLinear { start, end } => {
                linspace(start.sqrt(), end.sqrt(), n).into_iter().map(|x| x * x).collect()
            }
            BetaSchedule::Cosine => {
                // diffusers' betas_for_alpha_bar with float division (candle-transformers 0.11
                // divides integers here and gets every beta 0 but the last).
                let f = |u: f64| ((u + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n).map(|i| (1.0 - f((i + 1) as f64 / n as f64) / f(i as f64 / n as f64)).min(0.999)).collect()
            }
        };
        if self.zero_terminal_snr {
            b = rescale_zero_terminal_snr(&b);
        }
        b
    }

    /// ᾱ_t = Π_{s≤t} (1 − β_s).
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        if self.float32 {
            let mut acc = 1.0f32;
            return self
                .betas()
                .into_iter()
                .map(|b| {
                    acc *= 1.0f32 - b as f32;
                    f64::from(acc)
                })
                .collect();
        }
        let mut acc = 1.0;
        self.betas()
            .into_iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect()
    }
}

/// Lin et al. 2024 (Alg. 1): shift √ᾱ so the last is 0, scale so the first is unchanged, then
/// recover betas. diffusers then floors the last ᾱ at 2⁻²⁴ so that ε-prediction stays finite;
/// we do the same.
fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    let sqrt_ab: Vec<f64> = betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc.sqrt()
        })
        .collect();
    let (first, last) = (sqrt_ab[0], sqrt_ab[sqrt_ab.len() - 1]);
    let scaled: Vec<f64> = sqrt_ab.iter().map(|a| (a - last) * first / (first - last)).collect();
    let ab: Vec<f64> = scaled.iter().map(|a| (a * a).max(2f64.powi(-24))).collect();
    let mut out = vec![1.0 - ab[0]];
    for w in ab.windows(2) {
        out.push(1.0 - w[1] / w[0]);
    }
    out
}

/// One point of a sampling grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Time {
    /// What the model is given as its time input (the training index).
    pub t: f64,
    pub alpha: f64,
    pub sigma: f64,
}

impl Time {
    pub fn from_alpha_bar(t: f64, ab: f64) -> Time {
        Time { t, alpha: ab.sqrt(), sigma: (1.0 - ab).sqrt() }
    }

    /// λ = log(α/σ) (+∞ at σ = 0).
    pub fn lambda(&self) -> f64 {
        self.alpha.ln() - self.sigma.ln()
    }
}

/// How the n evaluation timesteps are picked from 0 … T−1 (docs/methods.md §2.8 table).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Spacing {
    /// (0, T/n, 2T/n, …) reversed, plus an offset (SD uses 1): 900, 800, …, 0.
    Leading { offset: usize },
    /// round(linspace(0, T−1, n)) reversed: 999, 888, …, 0.
    Linspace,
    /// round(T − k·T/n) − 1 for k = 0 … n−1: 999, 899, …, 99.
    Trailing,
    /// DPM-Solver's: round(linspace(0, T−1, n+1)) reversed without t = 0: 999, 899, …, 100.
    LinspaceDropZero,
    /// Uniform in λ between `lambda_min` and `lambda_max` on the continuous VP path of this
    /// schedule's ᾱ (interpolated in t): the grid on which sampler orders are exact.
    UniformLambda { lambda_min: f64, lambda_max: f64 },
}

/// Where the last step lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinalPoint {
    /// α = 1, σ = 0: the clean data (DDIM `set_alpha_to_one`, DPM `final_sigmas_type="zero"`).
    Zero,
    /// ᾱ_0 of the schedule (DDIM `set_alpha_to_one=False`, DPM `final_sigmas_type="sigma_min"`).
    AlphaBar0,
}

/// A sampling grid: n model evaluations and the point the last step lands on.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub points: Vec<Time>,
    pub end: Time,
    /// The schedule's ᾱ, for samplers that land off the grid (`ddim_diffusers`).
    pub alphas_cumprod: Vec<f64>,
}

impl Grid {
    pub fn new(schedule: &Schedule, spacing: Spacing, steps: usize, end: FinalPoint) -> Grid {
        let ab = schedule.alphas_cumprod();
        let tt = ab.len();
        let ts: Vec<f64> = match spacing {
            Spacing::Leading { offset } => (0..steps).rev().map(|k| (k * (tt / steps) + offset) as f64).collect(),
            Spacing::Linspace => linspace(0.0, (tt - 1) as f64, steps).into_iter().rev().map(f64::round).collect(),
            Spacing::Trailing => {
                (0..steps).map(|k| (tt as f64 - k as f64 * tt as f64 / steps as f64).round() - 1.0).collect()
            }
            Spacing::LinspaceDropZero => {
                let v: Vec<f64> = linspace(0.0, (tt - 1) as f64, steps + 1).into_iter().map(f64::round).collect();
                v.into_iter().rev().take(steps).collect()
            }
            Spacing::UniformLambda { lambda_min, lambda_max } => {
                return Grid::uniform_lambda(&ab, lambda_min, lambda_max, steps, end);
            }
        };
        let points = ts.iter().map(|t| Time::from_alpha_bar(*t, ab[(*t as usize).min(tt - 1)])).collect();
        Grid { points, end: final_point(&ab, end), alphas_cumprod: ab }
    }

    /// n points uniform in λ from λ_min to λ_max, plus the end point. Each point's model time
    /// is the (fractional) index with that ᾱ, by linear interpolation of log-SNR.
    fn uniform_lambda(ab: &[f64], lo: f64, hi: f64, steps: usize, end: FinalPoint) -> Grid {
        let lam: Vec<f64> = ab.iter().map(|a| 0.5 * (a / (1.0 - a)).ln()).collect();
        let lambdas = if steps == 1 { vec![lo] } else { linspace(lo, hi, steps + 1)[..steps].to_vec() };
        let points = lambdas
            .iter()
            .map(|&l| {
                // λ falls with t; find the bracket and interpolate.
                let t = match lam.iter().position(|x| *x < l) {
                    Some(0) => 0.0,
                    Some(j) => (j - 1) as f64 + (lam[j - 1] - l) / (lam[j - 1] - lam[j]),
                    None => (lam.len() - 1) as f64,
                };
                let alpha = (1.0 / (1.0 + (-2.0 * l).exp())).sqrt();
                Time { t, alpha, sigma: (1.0 - alpha * alpha).sqrt() }
            })
            .collect();
        let end = match end {
            FinalPoint::Zero => Time { t: 0.0, alpha: 1.0, sigma: 0.0 },
            FinalPoint::AlphaBar0 => {
                let alpha = (1.0 / (1.0 + (-2.0 * hi).exp())).sqrt();
                Time { t: 0.0, alpha, sigma: (1.0 - alpha * alpha).sqrt() }
            }
        };
        Grid { points, end, alphas_cumprod: ab.to_vec() }
    }

    /// The point after evaluation i (the next evaluation, or the end).
    pub fn next(&self, i: usize) -> Time {
        self.points.get(i + 1).copied().unwrap_or(self.end)
    }

    /// Where diffusers' DDIM step from point i (at t) lands: ᾱ at t − T//n, or the end once that is below
    /// 0 (its `final_alpha_cumprod`). On a fractional grid (uniform λ), the next point.
    pub fn diffusers_landing(&self, i: usize) -> Time {
        let (tt, n, t) = (self.alphas_cumprod.len(), self.points.len().max(1), self.points[i]);
        if t.t.fract() != 0.0 {
            return self.next(i);
        }
        let prev = t.t as i64 - (tt / n) as i64;
        if prev < 0 {
            self.end
        } else {
            Time::from_alpha_bar(prev as f64, self.alphas_cumprod[prev as usize])
        }
    }
}

fn final_point(ab: &[f64], end: FinalPoint) -> Time {
    match end {
        FinalPoint::Zero => Time { t: -1.0, alpha: 1.0, sigma: 0.0 },
        FinalPoint::AlphaBar0 => Time::from_alpha_bar(0.0, ab[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lam(ab: f64) -> f64 {
        0.5 * (ab / (1.0 - ab)).ln()
    }

    #[test]
    fn schedule_endpoints_match_methods_table() {
        // docs/methods.md §2.1: ᾱ_0, ᾱ_999 and the λ range of each schedule.
        let cases = [
            (BetaSchedule::Linear { start: 1e-4, end: 0.02 }, 0.99990, 4.0e-5, -5.06, 4.61),
            (BetaSchedule::ScaledLinear { start: 0.00085, end: 0.012 }, 0.99915, 4.7e-3, -2.68, 3.53),
            (BetaSchedule::Cosine, 0.99996, 2.4e-9, -9.9, 5.05),
        ];
        for (b, a0, a999, lmin, lmax) in cases {
            let ab =
                Schedule { betas: b, train_steps: 1000, zero_terminal_snr: false, float32: false }.alphas_cumprod();
            assert!((ab[0] - a0).abs() < 1e-5, "{b:?} ᾱ0 {}", ab[0]);
            assert!((ab[999] / a999 - 1.0).abs() < 0.05, "{b:?} ᾱ999 {}", ab[999]);
            assert!((lam(ab[999]) - lmin).abs() < 0.06 && (lam(ab[0]) - lmax).abs() < 0.01, "{b:?}");
        }
    }

    #[test]
    fn zero_terminal_snr_ends_at_the_floor_and_keeps_the_start() {
        let s = Schedule {
            betas: BetaSchedule::ScaledLinear { start: 0.00085, end: 0.012 },
            train_steps: 1000,
            zero_terminal_snr: true,
            float32: false,
        };
        let ab = s.alphas_cumprod();
        let plain = Schedule { zero_terminal_snr: false, ..s.clone() }.alphas_cumprod();
        assert!((ab[999] - 2f64.powi(-24)).abs() < 1e-12);
        assert!((ab[0] - plain[0]).abs() < 1e-12);
    }

    #[test]
    fn spacings_match_the_table() {
        let s = Schedule::linear();
        let ts = |sp| Grid::new(&s, sp, 10, FinalPoint::Zero).points.iter().map(|p| p.t as i64).collect::<Vec<_>>();
        assert_eq!(ts(Spacing::Leading { offset: 1 }), vec![901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
        assert_eq!(ts(Spacing::Linspace), vec![999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
        assert_eq!(ts(Spacing::Trailing), vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
        assert_eq!(ts(Spacing::LinspaceDropZero), vec![999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    }

    #[test]
    fn uniform_lambda_grid_is_uniform() {
        let g = Grid::new(
            &Schedule::linear(),
            Spacing::UniformLambda { lambda_min: -4.0, lambda_max: 4.0 },
            8,
            FinalPoint::AlphaBar0,
        );
        let l: Vec<f64> = g.points.iter().chain([&g.end]).map(|p| p.lambda()).collect();
        for w in l.windows(2) {
            assert!((w[1] - w[0] - 1.0).abs() < 1e-9, "{l:?}");
        }
    }
}
