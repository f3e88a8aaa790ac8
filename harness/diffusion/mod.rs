//! Diffusion: schedules, parameterisations, samplers and classifier-free guidance.
//!
//! Everything here works on plain f64 batches (n rows of `dim`), so the samplers can be checked
//! exactly against closed forms and diffusers' golden values, and driven by any denoiser: the
//! exact Gaussian-mixture oracle, or a trained network.

pub mod samplers;
pub mod schedule;

pub use samplers::{sample, Sampler};
pub use schedule::{BetaSchedule, FinalPoint, Grid, Schedule, Spacing, Time};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a model's raw output means (docs/methods.md §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// ε: x̂0 = (x_t − σ ε̂)/α.
    Epsilon,
    /// x0 directly: ε̂ = (x_t − α x̂0)/σ.
    Sample,
    /// v = α ε − σ x0 (Salimans & Ho 2022): x̂0 = α x_t − σ v̂, ε̂ = σ x_t + α v̂.
    V,
}

/// Convert a raw output into (x̂0, ε̂) at time `at`. At σ = 0 an x0- or v-model's ε̂ is 0.
pub fn x0_eps(pred: PredictionType, out: &[f64], x: &[f64], at: Time) -> (Vec<f64>, Vec<f64>) {
    let (a, s) = (at.alpha, at.sigma);
    match pred {
        PredictionType::Epsilon => (x.iter().zip(out).map(|(x, e)| (x - s * e) / a).collect(), out.to_vec()),
        PredictionType::Sample => {
            let eps =
                if s > 0.0 { x.iter().zip(out).map(|(x, d)| (x - a * d) / s).collect() } else { vec![0.0; x.len()] };
            (out.to_vec(), eps)
        }
        PredictionType::V => (
            x.iter().zip(out).map(|(x, v)| a * x - s * v).collect(),
            x.iter().zip(out).map(|(x, v)| s * x + a * v).collect(),
        ),
    }
}

/// The target a model of this type is trained to output for (x0, ε) at time `at`.
pub fn target(pred: PredictionType, x0: &[f64], eps: &[f64], at: Time) -> Vec<f64> {
    match pred {
        PredictionType::Epsilon => eps.to_vec(),
        PredictionType::Sample => x0.to_vec(),
        PredictionType::V => x0.iter().zip(eps).map(|(x, e)| at.alpha * e - at.sigma * x).collect(),
    }
}

/// A denoising network (or oracle) over batches of `dim`-vectors.
pub trait Model {
    fn dim(&self) -> usize;
    fn prediction(&self) -> PredictionType;
    /// Raw outputs for the rows of `x` at time `at`; `class` gives each row's label, `None`
    /// the unconditional (null-label) model.
    fn output(&self, x: &[f64], at: Time, class: Option<&[usize]>) -> Vec<f64>;
}

/// A conditioned model as the samplers see it: row i of x_t is given row i of `cond` (a
/// super-resolution model's low-resolution input) after its own values.
pub struct Conditioned<'a> {
    pub model: &'a dyn Model,
    pub cond: &'a [f64],
    pub width: usize,
}

impl Model for Conditioned<'_> {
    fn dim(&self) -> usize {
        self.model.dim()
    }
    fn prediction(&self) -> PredictionType {
        self.model.prediction()
    }
    fn output(&self, x: &[f64], at: Time, class: Option<&[usize]>) -> Vec<f64> {
        let d = self.dim();
        let rows = x.chunks(d).zip(self.cond.chunks(self.width));
        let joined: Vec<f64> = rows.flat_map(|(a, b)| a.iter().chain(b).copied().collect::<Vec<_>>()).collect();
        self.model.output(&joined, at, class)
    }
}

/// A model as a sampler sees it: guidance applied, x̂0 optionally clipped, evaluations counted.
pub struct Evaluator<'a> {
    pub model: &'a dyn Model,
    pub class: Option<&'a [usize]>,
    /// Classifier-free guidance weight w (diffusers' and DiT's convention: 1 means none).
    pub guidance: f64,
    /// Clamp x̂0 to [−c, c] before it enters an update (diffusers' `clip_sample`); ε̂ stays the
    /// model's, as with diffusers' default `use_clipped_model_output=False`.
    pub clip_x0: Option<f64>,
    /// Network evaluations so far, counting both halves of a guided step.
    pub nfe: usize,
}

impl<'a> Evaluator<'a> {
    pub fn new(model: &'a dyn Model) -> Self {
        Evaluator { model, class: None, guidance: 1.0, clip_x0: None, nfe: 0 }
    }

    /// (x̂0, ε̂) at `at`, with guidance ε̃ = ε_u + w(ε_c − ε_u) applied to the raw output
    /// (equivalent for ε, x0 and v since each is affine in the output at fixed x_t).
    pub fn predict(&mut self, x: &[f64], at: Time) -> (Vec<f64>, Vec<f64>) {
        let out = match (self.class, self.guidance) {
            (Some(c), w) if w != 1.0 => {
                let cond = self.model.output(x, at, Some(c));
                let uncond = self.model.output(x, at, None);
                self.nfe += 2;
                uncond.iter().zip(&cond).map(|(u, c)| u + w * (c - u)).collect()
            }
            (class, _) => {
                self.nfe += 1;
                self.model.output(x, at, class)
            }
        };
        let (mut x0, eps) = x0_eps(self.model.prediction(), &out, x, at);
        if let Some(c) = self.clip_x0 {
            x0.iter_mut().for_each(|v| *v = v.clamp(-c, c));
        }
        (x0, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameterisation_round_trips() {
        // x_t = α x0 + σ ε; each prediction type's target, converted back, gives (x0, ε).
        let (x0, eps) = (vec![0.3, -1.2, 2.0], vec![-0.7, 0.1, 1.5]);
        for (a2, t) in [(0.9, 10.0), (0.5, 500.0), (0.02, 990.0)] {
            let at = Time { t, alpha: f64::sqrt(a2), sigma: f64::sqrt(1.0 - a2) };
            let xt: Vec<f64> = x0.iter().zip(&eps).map(|(x, e)| at.alpha * x + at.sigma * e).collect();
            for pred in [PredictionType::Epsilon, PredictionType::Sample, PredictionType::V] {
                let (x0h, epsh) = x0_eps(pred, &target(pred, &x0, &eps, at), &xt, at);
                for i in 0..3 {
                    assert!((x0h[i] - x0[i]).abs() < 1e-12 && (epsh[i] - eps[i]).abs() < 1e-12, "{pred:?} at ᾱ = {a2}");
                }
            }
            // λ = log(α/σ) = ½ log SNR.
            assert!((at.lambda() - 0.5 * (a2 / (1.0 - a2)).ln()).abs() < 1e-12);
        }
    }
}
