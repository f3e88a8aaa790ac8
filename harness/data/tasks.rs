//! Downstream tasks a pretrained model is fine-tuned on (Mei et al. §3.2–3.3, Fig. 4–6), made
//! from the pretraining mixture so that the truth stays known: super-resolution (the model is
//! given a degraded low-resolution copy of the sample) and DreamBooth (a handful of samples of a
//! concept the model never saw).

use super::{Draw, Gmm, Images};
use crate::seed::{substream, Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    /// The model is conditioned on y: the mean of each `factor` consecutive values of x (the
    /// low-resolution copy), plus Gaussian noise of standard deviation `noise` (the degradation).
    /// The model gains an input layer for y, starting at zero.
    SuperResolution { factor: usize, noise: f64 },
    /// `images` samples of a concept the model never saw (a Gaussian with the mixture's width,
    /// centred at a point of the mixture's sphere drawn from `seed`), all captioned with class 0's
    /// token: prompted with it, the fine-tuned model should draw the concept. The concept and its
    /// images are fixed by `seed`, as DreamBooth's subjects come with their photos: replicates
    /// vary the training, not the subject.
    NewConcept { images: usize, seed: u64 },
}

/// Most samples a concept's training set may hold.
const MAX_IMAGES: usize = 100_000;

impl Task {
    pub fn validate(&self, data_dim: Option<usize>) -> Vec<(String, String)> {
        let mut e = vec![];
        let mut req = |ok: bool, f: &str, m: &str| crate::compute::require(&mut e, ok, f, m);
        match self {
            Task::SuperResolution { factor, noise } => {
                req(*factor >= 2, "super_resolution.factor", "must be at least 2");
                req(
                    data_dim.is_none_or(|d| *factor >= 1 && d.is_multiple_of(*factor)),
                    "super_resolution.factor",
                    "must divide the data's values per sample",
                );
                req(*noise >= 0.0 && noise.is_finite(), "super_resolution.noise", "must be a non-negative number");
            }
            Task::NewConcept { images, .. } => {
                req((1..=MAX_IMAGES).contains(images), "new_concept.images", "must be between 1 and 100,000");
            }
        }
        e
    }

    /// Width of the condition the fine-tuned model takes (0: none).
    pub fn cond_dim(&self, data_dim: usize) -> usize {
        match self {
            Task::SuperResolution { factor, .. } => data_dim / factor,
            Task::NewConcept { .. } => 0,
        }
    }

    /// The concept of a `NewConcept` task: one component, class 0.
    pub fn concept(&self, g: &Gmm) -> Option<Gmm> {
        let Task::NewConcept { seed, .. } = self else { return None };
        let radius = g.means[..g.dim].iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut rng = Rng::new(*seed);
        let v: Vec<f64> = (0..g.dim).map(|_| rng.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        Some(Gmm {
            dim: g.dim,
            means: v.iter().map(|x| x * radius / norm).collect(),
            stds: g.stds[..g.dim].to_vec(),
            weights: vec![1.0],
            class_of: vec![0],
            classes: 1,
        })
    }

    /// The concept's training images, captioned with class 0.
    pub fn concept_images(&self, g: &Gmm) -> Option<Result<Images, String>> {
        let Task::NewConcept { images, seed } = self else { return None };
        let c = self.concept(g)?;
        let (x, labels) = c.sample(substream(*seed, 1), 0, *images, None);
        Some(Images::from_rows(g.dim, &x, &labels, 0))
    }
}

/// The mixture drawn as super-resolution pairs: each row is [x | y], y the degraded
/// low-resolution copy of x, its noise from a stream beside the sample's.
pub struct Observed<'a> {
    pub gmm: &'a Gmm,
    pub factor: usize,
    pub noise: f64,
}

impl Observed<'_> {
    /// y for each row of x, the noise of row i from `substream(seed, first + i)`.
    pub fn observe(&self, x: &[f64], seed: u64, first: usize) -> Vec<f64> {
        let d = self.gmm.dim;
        x.chunks(d)
            .enumerate()
            .flat_map(|(i, row)| {
                let mut rng = Rng::new(substream(seed, (first + i) as u64));
                row.chunks(self.factor)
                    .map(|g| g.iter().sum::<f64>() / self.factor as f64 + self.noise * rng.normal())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Draw for Observed<'_> {
    fn dim(&self) -> usize {
        self.gmm.dim + self.cond_dim()
    }
    fn classes(&self) -> usize {
        self.gmm.classes
    }
    fn cond_dim(&self) -> usize {
        self.gmm.dim / self.factor
    }
    fn draw(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>) {
        let (x, labels) = self.gmm.sample(seed, first, n, class);
        let y = self.observe(&x, substream(seed, 0x5e), first);
        let (d, c) = (self.gmm.dim, self.cond_dim());
        let rows = x.chunks(d).zip(y.chunks(c)).flat_map(|(a, b)| a.iter().chain(b).copied().collect::<Vec<_>>());
        (rows.collect(), labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::GmmSpec;

    #[test]
    fn observations_are_block_means_plus_noise() {
        let g = GmmSpec { dim: 4, components: 2, classes: 2, radius: 1.0, std: 0.1, seed: 1 }.build();
        let clean = Observed { gmm: &g, factor: 2, noise: 0.0 };
        let (rows, _) = clean.draw(3, 0, 5, None);
        for r in rows.chunks(6) {
            assert!((r[4] - 0.5 * (r[0] + r[1])).abs() < 1e-12 && (r[5] - 0.5 * (r[2] + r[3])).abs() < 1e-12);
        }
        // The samples are the mixture's, whatever the noise.
        let noisy = Observed { gmm: &g, factor: 2, noise: 0.3 };
        let (x, _) = noisy.draw(3, 0, 5, None);
        assert!(x.chunks(6).zip(rows.chunks(6)).all(|(a, b)| a[..4] == b[..4] && a[4..] != b[4..]));
    }

    #[test]
    fn a_concept_is_new_and_its_images_are_class_zero() {
        let g = GmmSpec { dim: 4, components: 4, classes: 2, radius: 1.0, std: 0.1, seed: 1 }.build();
        let t = Task::NewConcept { images: 5, seed: 8 };
        let c = t.concept(&g).unwrap();
        let far = (0..4)
            .all(|k| c.means.iter().zip(&g.means[k * 4..][..4]).map(|(a, b)| (a - b).powi(2)).sum::<f64>() > 0.01);
        assert!(far, "the concept is none of the mixture's modes");
        let im = t.concept_images(&g).unwrap().unwrap();
        let (_, labels) = im.sample(1, 0, 20, None);
        assert!(labels.iter().all(|l| *l == 0));
    }
}
