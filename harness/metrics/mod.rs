//! Sample-quality metrics that need no pretrained network (docs/methods.md §1.2–1.5).
//!
//! Batches are rows of `dim` f64 values. Statistics accumulate in f64.

pub mod classifier;
pub mod frechet;

pub use frechet::{fd_infinity, fd_infinity_to, frechet_distance, frechet_from_samples, moments};

use crate::data::Gmm;
use crate::seed::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The space a Fréchet distance is measured in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Features {
    /// The raw coordinates.
    Raw,
    /// Fixed random ReLU features φ(x) = max(0, Wx + b), W ~ N(0, 1/d), b ~ U(−1, 1), drawn
    /// from `seed`: sees beyond second moments (a moment-matched Gaussian is detected).
    RandomRelu { dim: usize, seed: u64 },
    /// The hidden layer of a classifier trained on true procedural images and frozen (our FID
    /// analogue; its weight hash is recorded with every result).
    Classifier(Box<classifier::ClassifierSpec>),
}

impl Features {
    pub fn apply(&self, x: &[f64], d: usize) -> (Vec<f64>, usize) {
        match self {
            Features::Raw => (x.to_vec(), d),
            &Features::RandomRelu { dim, seed } => {
                let mut rng = Rng::new(seed);
                let w: Vec<f64> = (0..dim * d).map(|_| rng.normal() / (d as f64).sqrt()).collect();
                let b: Vec<f64> = (0..dim).map(|_| 2.0 * rng.uniform() - 1.0).collect();
                let out = x
                    .chunks(d)
                    .flat_map(|row| {
                        (0..dim)
                            .map(|k| {
                                (w[k * d..(k + 1) * d].iter().zip(row).map(|(a, b)| a * b).sum::<f64>() + b[k]).max(0.0)
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect();
                (out, dim)
            }
            Features::Classifier(spec) => {
                let c = classifier::trained(spec);
                (c.features(x), c.hidden())
            }
        }
    }

    /// What identifies the feature space beyond its spec (the trained weights' hash).
    pub fn fingerprint(&self) -> Option<String> {
        match self {
            Features::Classifier(spec) => Some(classifier::trained(spec).hash()),
            _ => None,
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Sliced 2-Wasserstein distance over `projections` random directions: the 1-D W2 between
/// the sorted projections, averaged in square, then rooted. Needs equal sample counts.
pub fn sliced_wasserstein(a: &[f64], b: &[f64], d: usize, projections: usize, seed: u64) -> f64 {
    let n = (a.len() / d).min(b.len() / d);
    let mut rng = Rng::new(seed);
    let mut total = 0.0;
    for _ in 0..projections {
        let mut dir: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let norm = dot(&dir, &dir).sqrt();
        dir.iter_mut().for_each(|v| *v /= norm);
        let mut pa: Vec<f64> = a.chunks(d).take(n).map(|r| dot(r, &dir)).collect();
        let mut pb: Vec<f64> = b.chunks(d).take(n).map(|r| dot(r, &dir)).collect();
        pa.sort_by(f64::total_cmp);
        pb.sort_by(f64::total_cmp);
        total += pa.iter().zip(&pb).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / n as f64;
    }
    (total / projections as f64).sqrt()
}

/// Kernel inception distance: the unbiased MMD² with the cubic polynomial kernel
/// k(x, y) = (x·y/d + 1)³ (Bińkowski et al. 2018).
pub fn kid(a: &[f64], b: &[f64], d: usize) -> f64 {
    let k = |x: &[f64], y: &[f64]| (dot(x, y) / d as f64 + 1.0).powi(3);
    let (xs, ys): (Vec<&[f64]>, Vec<&[f64]>) = (a.chunks(d).collect(), b.chunks(d).collect());
    let (m, n) = (xs.len() as f64, ys.len() as f64);
    let within = |v: &[&[f64]]| {
        let mut s = 0.0;
        for i in 0..v.len() {
            for j in 0..v.len() {
                if i != j {
                    s += k(v[i], v[j]);
                }
            }
        }
        s
    };
    let cross: f64 = xs.iter().map(|x| ys.iter().map(|y| k(x, y)).sum::<f64>()).sum();
    within(&xs) / (m * (m - 1.0)) + within(&ys) / (n * (n - 1.0)) - 2.0 * cross / (m * n)
}

/// k-NN precision and recall (Kynkäänniemi et al. 2019): a sample is "covered" by a set when
/// it lies inside the ball of some member whose radius is that member's distance to its k-th
/// nearest neighbour in the set. Precision: generated samples covered by the real set;
/// recall: real samples covered by the generated set.
pub fn precision_recall(real: &[f64], generated: &[f64], d: usize, k: usize) -> (f64, f64) {
    let radii = |set: &[&[f64]]| -> Vec<f64> {
        set.iter()
            .map(|x| {
                let mut ds: Vec<f64> = set.iter().map(|y| sq_dist(x, y)).collect();
                ds.sort_by(f64::total_cmp);
                ds[k.min(ds.len() - 1)] // ds[0] is the point itself
            })
            .collect()
    };
    let covered = |probe: &[&[f64]], set: &[&[f64]], r: &[f64]| {
        probe.iter().filter(|p| set.iter().zip(r).any(|(s, r)| sq_dist(p, s) <= *r)).count() as f64 / probe.len() as f64
    };
    let (re, ge): (Vec<&[f64]>, Vec<&[f64]>) = (real.chunks(d).collect(), generated.chunks(d).collect());
    let (rr, rg) = (radii(&re), radii(&ge));
    (covered(&ge, &re, &rr), covered(&re, &ge, &rg))
}

/// Exact alignment accuracy: the fraction of generated samples whose Bayes-optimal class under
/// the true mixture is the class they were generated for (our CLIP-score / TIFA stand-in).
pub fn alignment_accuracy(gmm: &Gmm, x: &[f64], classes: &[usize]) -> f64 {
    let post = gmm.class_posterior(x, 1.0, 0.0);
    let right = post
        .chunks(gmm.classes)
        .zip(classes)
        .filter(|(p, c)| p.iter().enumerate().all(|(j, v)| j == **c || *v < p[**c]))
        .count();
    right as f64 / classes.len() as f64
}

/// Excess denoising error E‖D_θ − D*‖² per sample: the part of a model's loss above the
/// irreducible Bayes error, since E‖D_θ − x0‖² = E‖D_θ − D*‖² + E‖D* − x0‖².
pub fn excess_denoising_error(model_x0: &[f64], oracle_x0: &[f64], d: usize) -> f64 {
    sq_dist(model_x0, oracle_x0) / (model_x0.len() / d) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::GmmSpec;

    fn gaussian(seed: u64, n: usize, d: usize, scale: f64, shift: f64) -> Vec<f64> {
        let mut r = Rng::new(seed);
        (0..n * d).map(|_| shift + scale * r.normal()).collect()
    }

    #[test]
    fn sliced_wasserstein_of_a_shift_is_the_shift_length() {
        // Shifting every coordinate by c moves each unit projection by c·Σu_j; its mean square
        // over random directions is c² (E[(Σu_j)²] = 1 for unit u).
        let a = gaussian(1, 4000, 4, 1.0, 0.0);
        let b: Vec<f64> = a.iter().map(|v| v + 0.5).collect();
        let sw = sliced_wasserstein(&a, &b, 4, 2000, 3);
        assert!((sw - 0.5).abs() < 0.03, "{sw}");
        assert!(sliced_wasserstein(&a, &a, 4, 50, 3) < 1e-12);
    }

    #[test]
    fn kid_is_unbiased_at_the_null_and_positive_under_a_shift() {
        let a = gaussian(1, 600, 3, 1.0, 0.0);
        let b = gaussian(2, 600, 3, 1.0, 0.0);
        let c = gaussian(3, 600, 3, 1.0, 0.7);
        assert!(kid(&a, &b, 3).abs() < 0.02, "{}", kid(&a, &b, 3));
        assert!(kid(&a, &c, 3) > 0.1);
    }

    #[test]
    fn precision_and_recall_see_dropped_modes_and_identical_sets() {
        let g = GmmSpec { dim: 2, components: 4, classes: 4, radius: 5.0, std: 0.3, seed: 1 }.build();
        let (real, _) = g.sample(1, 0, 800, None);
        let (p, r) = precision_recall(&real, &real, 2, 5);
        assert_eq!((p, r), (1.0, 1.0));
        // Generated from two of the four modes: precision stays high, recall falls to about half.
        let (half, _) = g.sample(2, 0, 800, Some(&[0usize, 1].repeat(400)));
        let (p, r) = precision_recall(&real, &half, 2, 5);
        assert!(p > 0.9 && (0.4..0.6).contains(&r), "{p} {r}");
    }

    #[test]
    fn alignment_is_exact_for_separated_classes() {
        let g = GmmSpec { dim: 8, components: 8, classes: 4, radius: 4.0, std: 0.2, seed: 2 }.build();
        let cls: Vec<usize> = (0..400).map(|i| i % 4).collect();
        let (x, _) = g.sample(3, 0, 400, Some(&cls));
        assert_eq!(alignment_accuracy(&g, &x, &cls), 1.0);
        let wrong: Vec<usize> = cls.iter().map(|c| (c + 1) % 4).collect();
        assert_eq!(alignment_accuracy(&g, &x, &wrong), 0.0);
    }

    #[test]
    fn random_relu_features_are_fixed_by_their_seed() {
        let x = gaussian(1, 10, 3, 1.0, 0.0);
        let f = Features::RandomRelu { dim: 16, seed: 9 };
        assert_eq!(f.apply(&x, 3), f.apply(&x, 3));
        assert_eq!(f.apply(&x, 3).0.len(), 160);
        assert!(f.apply(&x, 3).0.iter().all(|v| *v >= 0.0));
    }

    #[test]
    fn excess_error_is_zero_for_the_oracle() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(excess_denoising_error(&a, &a, 2), 0.0);
        assert_eq!(excess_denoising_error(&[0.0, 0.0, 0.0, 0.0], &a, 2), 15.0);
    }
}
