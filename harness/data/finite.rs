//! Training data made from an exact distribution for Li et al.'s data experiments: a finite
//! training set (two of them combined, or one with damaged labels and samples), and captions of
//! two densities. The truth stays the mixture, so the excess error and the alignment of a model
//! trained on either are still measured exactly.

use super::{Draw, Gmm, Images};
use crate::seed::{substream, Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A finite training set: `size` draws from each of the independent sets `sets` (set k is the
/// same draws in every row of a replicate, so "A", "B" and "A ∪ B" share their samples), with
/// damage. Training then samples it uniformly with replacement, as an epoch-free loader would.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainSet {
    /// Samples drawn for each set.
    pub size: usize,
    /// Which independent sets are combined (default: the first alone).
    #[serde(default = "first_set")]
    pub sets: Vec<u32>,
    /// Fraction of samples whose label is replaced by a class drawn uniformly (Li et al.'s
    /// mismatched captions); the sample itself is kept.
    #[serde(default)]
    pub label_noise: f64,
    /// Fraction of samples replaced by noise with the data's mean and per-coordinate spread
    /// (Li et al.'s low-quality images): they carry no mode and keep their label.
    #[serde(default)]
    pub corrupt: f64,
}

fn first_set() -> Vec<u32> {
    vec![0]
}

/// Most samples a finite set may hold (every set together), so a suite cannot ask for memory
/// it does not bound.
pub const MAX_SET_SAMPLES: usize = 1_000_000;

impl TrainSet {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        let mut req = |ok: bool, f: &str, m: &str| crate::compute::require(&mut e, ok, f, m);
        req(self.size >= 1, "size", "must be at least 1");
        req(!self.sets.is_empty() && self.sets.len() <= 16, "sets", "must name 1 to 16 sets");
        let mut s = self.sets.clone();
        s.sort_unstable();
        s.dedup();
        req(s.len() == self.sets.len(), "sets", "must not repeat a set");
        req(
            self.size.saturating_mul(self.sets.len()) <= MAX_SET_SAMPLES,
            "size",
            "size × sets must be at most 1,000,000 samples",
        );
        req((0.0..=1.0).contains(&self.label_noise), "label_noise", "must be in [0, 1]");
        req((0.0..=1.0).contains(&self.corrupt), "corrupt", "must be in [0, 1]");
        e
    }

    /// The set, its draws from `seed` (set k from `substream(seed, k)`); every damaged sample is
    /// chosen from its own stream, so set k is damaged alike wherever it appears.
    pub fn build(&self, g: &Gmm, seed: u64) -> Result<Images, String> {
        let d = g.dim;
        // The data's overall mean and spread, for the corrupted samples.
        let (mean, cov) = g.moments();
        let spread: Vec<f64> = (0..d).map(|j| cov[j * d + j].sqrt()).collect();
        let (mut xs, mut ls) = (vec![], vec![]);
        for k in &self.sets {
            let s = substream(seed, *k as u64);
            let (x, labels) = g.sample(substream(s, 0), 0, self.size, None);
            for (i, (row, label)) in x.chunks(d).zip(labels).enumerate() {
                let mut rng = Rng::new(substream(substream(s, 1), i as u64));
                let (noisy_label, corrupt) = (rng.uniform() < self.label_noise, rng.uniform() < self.corrupt);
                ls.push(if noisy_label { rng.below(g.classes) } else { label });
                if corrupt {
                    xs.extend((0..d).map(|j| mean[j] + spread[j] * rng.normal()));
                } else {
                    xs.extend_from_slice(row);
                }
            }
        }
        Images::from_rows(d, &xs, &ls, 0)
    }
}

/// Captions of two densities (Li et al. §4.3): the sparse caption names the class; the dense one
/// names the sample's mixture component (its class and which of the class's modes), standing
/// for a synthetic caption that describes more of the image. Tokens 0 … C−1 are the classes,
/// C … C+K−1 the components; a model needs C + K classes for either, so the two arms have the
/// same parameters and compute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Captions {
    /// Share of training samples captioned densely (drawn per sample and step, as Li et al. mix
    /// 50% synthetic captions into the originals).
    pub dense: f64,
}

impl Captions {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        crate::compute::require(&mut e, (0.0..=1.0).contains(&self.dense), "dense", "must be in [0, 1]");
        e
    }
}

/// A mixture drawn with captions of the density `Captions::dense`.
pub struct Captioned<'a> {
    pub gmm: &'a Gmm,
    pub dense: f64,
}

impl Draw for Captioned<'_> {
    fn dim(&self) -> usize {
        self.gmm.dim
    }
    fn classes(&self) -> usize {
        self.gmm.classes + self.gmm.components()
    }
    fn draw(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>) {
        assert!(class.is_none(), "captioned data is drawn unprompted");
        let (x, comps) = self.gmm.sample_components(seed, first, n);
        let tokens = comps
            .iter()
            .enumerate()
            .map(|(i, k)| {
                // Its own stream beside the sample's, so the samples are those of the plain mixture.
                let mut rng = Rng::new(substream(substream(seed, (first + i) as u64), 0xca9));
                if rng.uniform() < self.dense {
                    self.gmm.classes + k
                } else {
                    self.gmm.class_of[*k]
                }
            })
            .collect();
        (x, tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::GmmSpec;

    fn gmm() -> Gmm {
        GmmSpec { dim: 4, components: 8, classes: 4, radius: 1.0, std: 0.1, seed: 3 }.build()
    }

    #[test]
    fn sets_are_shared_and_damage_is_at_its_rate() {
        let g = gmm();
        let a = TrainSet { size: 2000, sets: vec![0], label_noise: 0.0, corrupt: 0.0 }.build(&g, 9).unwrap();
        let ab = TrainSet { size: 2000, sets: vec![0, 1], label_noise: 0.0, corrupt: 0.0 }.build(&g, 9).unwrap();
        // The combined set holds set 0's draws and as many more.
        // Enough draws to see every sample of a set (each missed with probability e^-25).
        let all = |im: &Images| im.sample(1, 0, 100_000, None).0;
        let (xa, xab) = (all(&a), all(&ab));
        let distinct = |x: &[f64]| {
            let mut rows: Vec<Vec<u64>> = x.chunks(4).map(|r| r.iter().map(|v| v.to_bits()).collect()).collect();
            rows.sort();
            rows.dedup();
            rows
        };
        let (da, dab) = (distinct(&xa), distinct(&xab));
        assert!(da.len() == 2000 && dab.len() == 4000 && da.iter().all(|r| dab.binary_search(r).is_ok()));
        // Label noise: the labels disagree with the exact Bayes class at about the rate × 3/4.
        let noisy = TrainSet { size: 4000, sets: vec![0], label_noise: 0.4, corrupt: 0.0 }.build(&g, 9).unwrap();
        let (x, l) = noisy.sample(2, 0, 20_000, None);
        let wrong = 1.0 - crate::metrics::alignment_accuracy(&g, &x, &l);
        assert!((wrong - 0.3).abs() < 0.03, "{wrong}");
        // Corruption: corrupted samples sit far from every mode.
        let bad = TrainSet { size: 4000, sets: vec![0], label_noise: 0.0, corrupt: 0.5 }.build(&g, 9).unwrap();
        let (x, _) = bad.sample(2, 0, 4000, None);
        let nearest = |r: &[f64]| {
            (0..g.components())
                .map(|k| r.iter().zip(&g.means[k * 4..][..4]).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt())
                .fold(f64::INFINITY, f64::min)
        };
        let far = x.chunks(4).filter(|r| nearest(r) > 0.5).count() as f64 / 4000.0;
        assert!((0.4..0.55).contains(&far), "{far}");
    }

    #[test]
    fn dense_captions_name_components_at_their_rate() {
        let g = gmm();
        let c = Captioned { gmm: &g, dense: 0.5 };
        let (x, t) = c.draw(4, 0, 4000, None);
        assert_eq!(x, g.sample(4, 0, 4000, None).0, "the samples are the mixture's");
        let dense = t.iter().filter(|t| **t >= 4).count() as f64 / 4000.0;
        assert!((dense - 0.5).abs() < 0.03, "{dense}");
        assert!(t.iter().all(|t| *t < c.classes()));
    }
}
