//! Data whose distribution is known exactly, and the shared noise bank.

pub mod finite;
pub mod folder;
pub mod gmm;
pub mod tasks;
pub mod templates;
pub mod user;

pub use finite::{Captioned, Captions, TrainSet};
pub use folder::{ArraySpec, FolderSpec, Images, ProjectionSpec, MAX_FD_FEATURES};
pub use gmm::{Gmm, GmmSpec};
pub use tasks::{Observed, Task};
pub use templates::TemplateSpec;

use crate::seed::{substream, Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an experiment's data comes from: a distribution known in closed form, or (for the
/// training sweeps) the user's own images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// A Gaussian mixture with means on a sphere.
    Gmm(GmmSpec),
    /// Template-mixture images (exactly a mixture in pixel space).
    Templates(TemplateSpec),
    /// A folder of PNGs, or of one subfolder of PNGs per class: no exact denoiser.
    Folder(FolderSpec),
    /// Samples (images or latents) in a `.npy`, `.npz` or `.safetensors` file: no exact denoiser.
    Array(ArraySpec),
}

/// Data ready to draw from.
pub enum Data {
    Exact(Gmm),
    Images(Images),
}

impl DataSpec {
    /// The closed-form distribution. Validation admits a folder only where the experiment
    /// reads its data through [`DataSpec::load`].
    pub fn build(&self) -> Gmm {
        match self {
            DataSpec::Gmm(g) => g.build(),
            DataSpec::Templates(t) => t.gmm(),
            DataSpec::Folder(_) | DataSpec::Array(_) => {
                unreachable!("validation admits the user's data only for training sweeps")
            }
        }
    }

    /// The data, read from disk for a folder.
    pub fn load(&self) -> Result<Data, String> {
        Ok(match self {
            DataSpec::Folder(f) => Data::Images(f.load()?),
            DataSpec::Array(a) => Data::Images(a.load()?),
            other => Data::Exact(other.build()),
        })
    }

    /// Resolve the user's folder or file against `base` (the suite's folder) and hash it;
    /// `seen` keeps what each path resolved to, so a path named by several profiles is read once.
    pub fn resolve(
        &mut self,
        base: &std::path::Path,
        seen: &mut std::collections::BTreeMap<String, (String, std::path::PathBuf)>,
    ) -> Result<(), String> {
        let (path, fingerprint, resolved) = match self {
            DataSpec::Folder(f) => (f.path.clone(), &mut f.fingerprint, &mut f.resolved),
            DataSpec::Array(a) => (a.path.clone(), &mut a.fingerprint, &mut a.resolved),
            _ => return Ok(()),
        };
        if let Some((fp, res)) = seen.get(&path) {
            (*fingerprint, *resolved) = (fp.clone(), res.clone());
            return Ok(());
        }
        let done = match self {
            DataSpec::Folder(f) => f.resolve(base).map(|_| (f.fingerprint.clone(), f.resolved.clone())),
            DataSpec::Array(a) => a.resolve(base).map(|_| (a.fingerprint.clone(), a.resolved.clone())),
            _ => return Ok(()),
        }?;
        seen.insert(path, done);
        Ok(())
    }

    pub fn is_exact(&self) -> bool {
        !matches!(self, DataSpec::Folder(_) | DataSpec::Array(_))
    }

    /// Values per sample, when the spec is valid and known without reading files.
    pub fn build_dim(&self) -> Option<usize> {
        if !self.validate().is_empty() {
            return None;
        }
        match self {
            DataSpec::Gmm(g) => Some(g.dim),
            DataSpec::Templates(t) => Some(t.size * t.size * 3),
            DataSpec::Folder(_) | DataSpec::Array(_) => None,
        }
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let under = |p: &str, v: Vec<(String, String)>| v.into_iter().map(|(f, m)| (format!("{p}.{f}"), m)).collect();
        match self {
            DataSpec::Gmm(g) => under("gmm", g.validate()),
            DataSpec::Templates(t) => under("templates", t.validate()),
            DataSpec::Folder(f) => under("folder", f.validate()),
            DataSpec::Array(a) => under("array", a.validate()),
        }
    }
}

/// What training draws from: a closed-form distribution or the user's images.
pub trait Draw: Sync {
    fn dim(&self) -> usize;
    fn classes(&self) -> usize;
    /// The last `cond_dim` of a sample's `dim` values condition the model (a super-resolution
    /// model's low-resolution input): given, never noised or predicted.
    fn cond_dim(&self) -> usize {
        0
    }
    /// Samples `first .. first + n` of the stream `seed` (of the given classes), with classes.
    fn draw(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>);
}

impl Draw for Gmm {
    fn dim(&self) -> usize {
        self.dim
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn draw(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>) {
        self.sample(seed, first, n, class)
    }
}

impl Draw for Images {
    fn dim(&self) -> usize {
        self.dim
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn draw(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>) {
        self.sample(seed, first, n, class)
    }
}

impl Data {
    pub fn draws(&self) -> &dyn Draw {
        match self {
            Data::Exact(g) => g,
            Data::Images(i) => i,
        }
    }

    /// The exact distribution, where there is one.
    pub fn exact(&self) -> Option<&Gmm> {
        match self {
            Data::Exact(g) => Some(g),
            Data::Images(_) => None,
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
