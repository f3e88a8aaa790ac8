//! Data whose distribution is known exactly, and the shared noise bank.

pub mod gmm;
pub mod templates;
pub mod user;

pub use gmm::{Gmm, GmmSpec};
pub use templates::TemplateSpec;

use crate::seed::{substream, Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an experiment's data comes from: a distribution known in closed form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// A Gaussian mixture with means on a sphere.
    Gmm(GmmSpec),
    /// Template-mixture images (exactly a mixture in pixel space).
    Templates(TemplateSpec),
}

impl DataSpec {
    pub fn build(&self) -> Gmm {
        match self {
            DataSpec::Gmm(g) => g.build(),
            DataSpec::Templates(t) => t.gmm(),
        }
    }

    /// Values per sample, when the spec is valid.
    pub fn build_dim(&self) -> Option<usize> {
        if !self.validate().is_empty() {
            return None;
        }
        Some(match self {
            DataSpec::Gmm(g) => g.dim,
            DataSpec::Templates(t) => t.size * t.size * 3,
        })
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            DataSpec::Gmm(g) => g.validate().into_iter().map(|(f, m)| (format!("gmm.{f}"), m)).collect(),
            DataSpec::Templates(t) => t.validate().into_iter().map(|(f, m)| (format!("templates.{f}"), m)).collect(),
        }
    }
}

/// Per-sample noise streams: sample i's starting noise, and any per-step noise a stochastic
/// sampler draws after it, come from `substream(seed, i)` alone. Every model, sampler and step
/// count therefore starts sample i from the same point (common random numbers), which makes
/// their comparison paired.
pub struct NoiseBank {
    dim: usize,
    start: Vec<f64>,
    rngs: Vec<Rng>,
}

impl NoiseBank {
    /// Samples `first .. first + n` of the bank seeded by `seed`.
    pub fn new(seed: u64, first: usize, n: usize, dim: usize) -> Self {
        let mut rngs: Vec<Rng> = (first..first + n).map(|i| Rng::new(substream(seed, i as u64))).collect();
        let start = rngs.iter_mut().flat_map(|r| (0..dim).map(|_| r.normal()).collect::<Vec<_>>()).collect();
        NoiseBank { dim, start, rngs }
    }

    /// A bank with a given starting batch and no stochastic steps (golden tests).
    pub fn fixed(start: Vec<f64>, dim: usize) -> Self {
        NoiseBank { dim, start, rngs: vec![] }
    }

    pub fn start(&self) -> Vec<f64> {
        self.start.clone()
    }

    /// x += scale · z with z from each sample's own stream.
    pub fn add_step_noise(&mut self, x: &mut [f64], scale: f64) {
        assert!(!self.rngs.is_empty(), "a fixed noise bank cannot drive a stochastic sampler");
        for (row, rng) in x.chunks_mut(self.dim).zip(&mut self.rngs) {
            row.iter_mut().for_each(|v| *v += scale * rng.normal());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_noise_does_not_depend_on_batching() {
        let all = NoiseBank::new(42, 0, 10, 3).start();
        let tail = NoiseBank::new(42, 4, 6, 3).start();
        assert_eq!(&all[12..], &tail[..]);
    }
}
