//! Gaussian mixtures and their exact denoiser (docs/methods.md §2.7).
//!
//! x0 ~ Σ_k π_k N(μ_k, diag(s_k²)). Under VP noise x_t = α x0 + σ ε each component stays
//! Gaussian, N(α μ_k, C_k) with C_k = α² s_k² + σ², so
//!
//! * responsibilities r_k(x_t) ∝ π_k N(x_t; α μ_k, C_k) (log-sum-exp),
//! * per-component posterior mean μ_k + α s_k²/C_k · (x_t − α μ_k) (a Wiener filter),
//! * D*(x_t) = E[x0 | x_t] = Σ_k r_k · (that mean).
//!
//! A class label restricts the sums to that class's components. Cost: O(K·d) per sample.

use crate::diffusion::{Model, PredictionType, Time};
use crate::seed::{substream, Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A mixture drawn once from its own seed: means on a sphere, equal weights and widths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GmmSpec {
    pub dim: usize,
    pub components: usize,
    /// Components are assigned to classes round-robin (component k has class k mod classes).
    pub classes: usize,
    /// Distance of every mean from the origin.
    pub radius: f64,
    /// Standard deviation of every component, per coordinate.
    pub std: f64,
    /// The means are drawn from this seed, so the distribution is fixed by the suite.
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gmm {
    pub dim: usize,
    /// K × d means.
    pub means: Vec<f64>,
    /// K × d standard deviations.
    pub stds: Vec<f64>,
    pub weights: Vec<f64>,
    pub class_of: Vec<usize>,
    pub classes: usize,
}

impl GmmSpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        let mut req = |ok: bool, f: &str, m: &str| crate::compute::require(&mut e, ok, f, m);
        req((1..=4096).contains(&self.dim), "dim", "must be between 1 and 4096");
        req((1..=100_000).contains(&self.components), "components", "must be between 1 and 100,000");
        req(
            self.classes >= 1 && self.classes <= self.components,
            "classes",
            "must be between 1 and the number of components",
        );
        req(self.radius >= 0.0 && self.radius.is_finite(), "radius", "must be a non-negative number");
        req(self.std > 0.0 && self.std.is_finite(), "std", "must be positive");
        e
    }

    /// The mixture, its means drawn from its seed (uniform directions on the sphere).
    pub fn build(&self) -> Gmm {
        let mut rng = Rng::new(self.seed);
        let mut means = Vec::with_capacity(self.components * self.dim);
        for _ in 0..self.components {
            let v: Vec<f64> = (0..self.dim).map(|_| rng.normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            means.extend(v.iter().map(|x| x * self.radius / norm));
        }
        Gmm {
            dim: self.dim,
            means,
            stds: vec![self.std; self.components * self.dim],
            weights: vec![1.0 / self.components as f64; self.components],
            class_of: (0..self.components).map(|k| k % self.classes).collect(),
            classes: self.classes,
        }
    }
}

impl Gmm {
    pub fn components(&self) -> usize {
        self.weights.len()
    }

    fn mean(&self, k: usize) -> &[f64] {
        &self.means[k * self.dim..(k + 1) * self.dim]
    }

    fn std(&self, k: usize) -> &[f64] {
        &self.stds[k * self.dim..(k + 1) * self.dim]
    }

    /// The mixture restricted to its first `keep` components (weights renormalised): a model
    /// that has lost the other modes.
    pub fn first_components(&self, keep: usize) -> Gmm {
        let keep = keep.clamp(1, self.components());
        let total: f64 = self.weights[..keep].iter().sum();
        Gmm {
            dim: self.dim,
            means: self.means[..keep * self.dim].to_vec(),
            stds: self.stds[..keep * self.dim].to_vec(),
            weights: self.weights[..keep].iter().map(|w| w / total).collect(),
            class_of: self.class_of[..keep].to_vec(),
            classes: self.classes,
        }
    }

    /// The same mixture with every component's standard deviation scaled (a "blur" when > 1).
    pub fn scaled_stds(&self, factor: f64) -> Gmm {
        Gmm { stds: self.stds.iter().map(|s| s * factor).collect(), ..self.clone() }
    }

    /// n samples and their components; sample i draws only from `substream(seed, first + i)`.
    pub fn sample_components(&self, seed: u64, first: usize, n: usize) -> (Vec<f64>, Vec<usize>) {
        let (x, _, comps) = self.draw(seed, first, n, None);
        (x, comps)
    }

    /// n samples (and their classes); sample i draws only from `substream(seed, first + i)`.
    pub fn sample(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>) {
        let (x, classes, _) = self.draw(seed, first, n, class);
        (x, classes)
    }

    fn draw(&self, seed: u64, first: usize, n: usize, class: Option<&[usize]>) -> (Vec<f64>, Vec<usize>, Vec<usize>) {
        let mut ks = Vec::with_capacity(n);
        let mut xs = Vec::with_capacity(n * self.dim);
        let mut cs = Vec::with_capacity(n);
        for i in 0..n {
            let mut rng = Rng::new(substream(seed, (first + i) as u64));
            let allowed = |k: usize| class.is_none_or(|c| self.class_of[k] == c[i]);
            let total: f64 = (0..self.components()).filter(|k| allowed(*k)).map(|k| self.weights[k]).sum();
            let mut u = rng.uniform() * total;
            let mut k = (0..self.components()).rev().find(|k| allowed(*k)).expect("class has components");
            for j in (0..self.components()).filter(|j| allowed(*j)) {
                if u < self.weights[j] {
                    k = j;
                    break;
                }
                u -= self.weights[j];
            }
            xs.extend(self.mean(k).iter().zip(self.std(k)).map(|(m, s)| m + s * rng.normal()));
            cs.push(self.class_of[k]);
            ks.push(k);
        }
        (xs, cs, ks)
    }

    /// Log responsibilities (unnormalised) of every component for one noisy row.
    fn log_resp(&self, x: &[f64], alpha: f64, sigma: f64, allowed: impl Fn(usize) -> bool, out: &mut Vec<f64>) {
        out.clear();
        for k in 0..self.components() {
            if !allowed(k) {
                out.push(f64::NEG_INFINITY);
                continue;
            }
            let mut lp = self.weights[k].ln();
            for ((xj, mj), sj) in x.iter().zip(self.mean(k)).zip(self.std(k)) {
                let c = alpha * alpha * sj * sj + sigma * sigma;
                let r = xj - alpha * mj;
                lp -= 0.5 * (r * r / c + c.ln());
            }
            out.push(lp);
        }
        let m = out.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = out.iter().map(|l| (l - m).exp()).sum::<f64>().ln() + m;
        out.iter_mut().for_each(|l| *l -= z);
    }

    /// D*(x_t) = E[x0 | x_t] for every row, optionally conditioned on each row's class.
    pub fn denoise(&self, x: &[f64], alpha: f64, sigma: f64, class: Option<&[usize]>) -> Vec<f64> {
        let d = self.dim;
        let mut out = vec![0.0; x.len()];
        let mut lr = Vec::with_capacity(self.components());
        for (i, (row, o)) in x.chunks(d).zip(out.chunks_mut(d)).enumerate() {
            let allowed = |k: usize| class.is_none_or(|c| self.class_of[k] == c[i]);
            self.log_resp(row, alpha, sigma, allowed, &mut lr);
            for (k, l) in lr.iter().enumerate() {
                let r = l.exp();
                if r < 1e-300 {
                    continue;
                }
                for (j, oj) in o.iter_mut().enumerate() {
                    let (m, s) = (self.mean(k)[j], self.std(k)[j]);
                    let c = alpha * alpha * s * s + sigma * sigma;
                    *oj += r * (m + alpha * s * s / c * (row[j] - alpha * m));
                }
            }
        }
        out
    }

    /// p(class | x) at noise level (α, σ), per row (n × classes). At (1, 0) this is the exact
    /// Bayes posterior of clean data.
    pub fn class_posterior(&self, x: &[f64], alpha: f64, sigma: f64) -> Vec<f64> {
        let mut out = vec![0.0; x.len() / self.dim * self.classes];
        let mut lr = Vec::with_capacity(self.components());
        for (row, o) in x.chunks(self.dim).zip(out.chunks_mut(self.classes)) {
            self.log_resp(row, alpha, sigma, |_| true, &mut lr);
            for (k, l) in lr.iter().enumerate() {
                o[self.class_of[k]] += l.exp();
            }
        }
        out
    }

    /// Exact mean and covariance (d × d) of the mixture.
    pub fn moments(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.dim;
        let mut mu = vec![0.0; d];
        for k in 0..self.components() {
            mu.iter_mut().zip(self.mean(k)).for_each(|(m, v)| *m += self.weights[k] * v);
        }
        let mut cov = vec![0.0; d * d];
        for k in 0..self.components() {
            let (m, s, w) = (self.mean(k), self.std(k), self.weights[k]);
            for a in 0..d {
                cov[a * d + a] += w * s[a] * s[a];
                for b in 0..d {
                    cov[a * d + b] += w * (m[a] - mu[a]) * (m[b] - mu[b]);
                }
            }
        }
        (mu, cov)
    }
}

/// The exact denoiser as a model that predicts x0.
pub struct Oracle<'a>(pub &'a Gmm);

impl Model for Oracle<'_> {
    fn dim(&self) -> usize {
        self.0.dim
    }
    fn prediction(&self) -> PredictionType {
        PredictionType::Sample
    }
    fn output(&self, x: &[f64], at: Time, class: Option<&[usize]>) -> Vec<f64> {
        self.0.denoise(x, at.alpha, at.sigma, class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_gaussian(s: f64) -> Gmm {
        Gmm { dim: 1, means: vec![0.5], stds: vec![s], weights: vec![1.0], class_of: vec![0], classes: 1 }
    }

    #[test]
    fn single_gaussian_denoiser_is_the_wiener_filter() {
        let g = one_gaussian(0.3);
        let (a, s) = (0.6_f64, 0.8_f64);
        let x = [1.7];
        let want = 0.5 + a * 0.09 / (a * a * 0.09 + s * s) * (1.7 - a * 0.5);
        assert!((g.denoise(&x, a, s, None)[0] - want).abs() < 1e-12);
    }

    #[test]
    fn denoiser_is_the_posterior_mean_by_monte_carlo() {
        // E[x0 | x_t] estimated by importance weighting of prior samples: should match D*.
        let g = GmmSpec { dim: 2, components: 3, classes: 3, radius: 1.0, std: 0.2, seed: 5 }.build();
        let (a, s) = (0.7_f64, (1.0 - 0.49_f64).sqrt());
        let xt = [0.3, -0.2];
        let (x0, _) = g.sample(9, 0, 200_000, None);
        let (mut num, mut den) = ([0.0; 2], 0.0);
        for r in x0.chunks(2) {
            let w = (-((xt[0] - a * r[0]).powi(2) + (xt[1] - a * r[1]).powi(2)) / (2.0 * s * s)).exp();
            num[0] += w * r[0];
            num[1] += w * r[1];
            den += w;
        }
        let d = g.denoise(&xt, a, s, None);
        assert!((d[0] - num[0] / den).abs() < 0.01 && (d[1] - num[1] / den).abs() < 0.01, "{d:?} vs {num:?}/{den}");
    }

    #[test]
    fn moments_match_samples() {
        let g = GmmSpec { dim: 3, components: 4, classes: 2, radius: 2.0, std: 0.5, seed: 1 }.build();
        let (mu, cov) = g.moments();
        let (x, _) = g.sample(3, 0, 100_000, None);
        let emp_mu: Vec<f64> = (0..3).map(|j| x.chunks(3).map(|r| r[j]).sum::<f64>() / 100_000.0).collect();
        for j in 0..3 {
            assert!((emp_mu[j] - mu[j]).abs() < 0.02);
        }
        let var0 = x.chunks(3).map(|r| (r[0] - mu[0]).powi(2)).sum::<f64>() / 100_000.0;
        assert!((var0 / cov[0] - 1.0).abs() < 0.03, "{var0} {}", cov[0]);
    }

    #[test]
    fn class_conditioning_and_posterior() {
        let g = GmmSpec { dim: 4, components: 4, classes: 2, radius: 3.0, std: 0.1, seed: 2 }.build();
        let (x, c) = g.sample(4, 0, 500, Some(&[1; 500]));
        assert!(c.iter().all(|k| *k == 1));
        let post = g.class_posterior(&x, 1.0, 0.0);
        let acc = post.chunks(2).filter(|p| p[1] > p[0]).count();
        assert_eq!(acc, 500);
    }
}
