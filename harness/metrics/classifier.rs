//! A small classifier the harness trains on true procedural images and then freezes: its hidden
//! layer is the feature space of our FID analogue (docs/methods.md §1.3).
//!
//! One hidden ReLU layer, softmax over the mixture's components (every attribute at once:
//! shape, colour, position, size), Adam, Gaussian noise augmentation so features do not hinge on
//! imperceptible details. Plain Rust with hand-written gradients (checked against finite
//! differences), so training is exact and deterministic for a seed. The trained weights are
//! hashed; every result computed in these features records the hash.

use crate::data::TemplateSpec;
use crate::seed::{substream, Rng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// How the feature classifier is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSpec {
    /// The procedural images it learns to recognise.
    pub templates: TemplateSpec,
    /// Width of the hidden (feature) layer.
    pub hidden: usize,
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// Augmentation: extra pixel noise with a standard deviation drawn uniformly in [0, this].
    pub augment_noise: f64,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Classifier {
    dim: usize,
    hidden: usize,
    classes: usize,
    /// hidden × dim, hidden, classes × hidden, classes.
    params: Vec<f64>,
}

impl Classifier {
    fn new(dim: usize, hidden: usize, classes: usize, rng: &mut Rng) -> Self {
        let mut params = Vec::with_capacity(hidden * dim + hidden + classes * hidden + classes);
        let (a1, a2) = ((6.0 / (dim + hidden) as f64).sqrt(), (6.0 / (hidden + classes) as f64).sqrt());
        params.extend((0..hidden * dim).map(|_| a1 * (2.0 * rng.uniform() - 1.0)));
        params.extend(std::iter::repeat_n(0.0, hidden));
        params.extend((0..classes * hidden).map(|_| a2 * (2.0 * rng.uniform() - 1.0)));
        params.extend(std::iter::repeat_n(0.0, classes));
        Classifier { dim, hidden, classes, params }
    }

    fn split(&self) -> (&[f64], &[f64], &[f64], &[f64]) {
        let (w1, rest) = self.params.split_at(self.hidden * self.dim);
        let (b1, rest) = rest.split_at(self.hidden);
        let (w2, b2) = rest.split_at(self.classes * self.hidden);
        (w1, b1, w2, b2)
    }

    /// Hidden activations relu(W1 x + b1) for one row.
    fn hidden_of(&self, x: &[f64]) -> Vec<f64> {
        let (w1, b1, _, _) = self.split();
        (0..self.hidden)
            .map(|j| (w1[j * self.dim..][..self.dim].iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + b1[j]).max(0.0))
            .collect()
    }

    /// Mean cross-entropy over the rows and its gradient with respect to every parameter.
    pub fn loss_and_grad(&self, x: &[f64], labels: &[usize]) -> (f64, Vec<f64>) {
        let (_, _, w2, b2) = self.split();
        let (d, h, c) = (self.dim, self.hidden, self.classes);
        let mut grad = vec![0.0; self.params.len()];
        let (g1, rest) = grad.split_at_mut(h * d);
        let (gb1, rest) = rest.split_at_mut(h);
        let (g2, gb2) = rest.split_at_mut(c * h);
        let n = labels.len() as f64;
        let mut loss = 0.0;
        for (row, &y) in x.chunks(d).zip(labels) {
            let hid = self.hidden_of(row);
            let logits: Vec<f64> =
                (0..c).map(|k| w2[k * h..][..h].iter().zip(&hid).map(|(w, v)| w * v).sum::<f64>() + b2[k]).collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
            loss += (z.ln() + m - logits[y]) / n;
            // dL/dlogit = softmax − onehot.
            let dl: Vec<f64> = (0..c).map(|k| ((logits[k] - m).exp() / z - f64::from(k == y)) / n).collect();
            let mut dh = vec![0.0; h];
            for k in 0..c {
                gb2[k] += dl[k];
                for j in 0..h {
                    g2[k * h + j] += dl[k] * hid[j];
                    dh[j] += dl[k] * w2[k * h + j];
                }
            }
            for j in (0..h).filter(|j| hid[*j] > 0.0) {
                gb1[j] += dh[j];
                g1[j * d..][..d].iter_mut().zip(row).for_each(|(g, v)| *g += dh[j] * v);
            }
        }
        (loss, grad)
    }

    /// Train on fresh samples of `spec`'s mixture every step (procedural data is unlimited).
    pub fn train(spec: &ClassifierSpec) -> Classifier {
        let gmm = spec.templates.gmm();
        let mut rng = Rng::new(spec.seed);
        let mut c = Classifier::new(gmm.dim, spec.hidden, gmm.components(), &mut rng);
        let (mut m, mut v) = (vec![0.0; c.params.len()], vec![0.0; c.params.len()]);
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        for step in 0..spec.steps {
            let seed = substream(spec.seed, step as u64);
            let (mut x, comps) = gmm.sample_components(seed, 0, spec.batch);
            let mut aug = Rng::new(substream(seed, u64::MAX));
            for row in x.chunks_mut(gmm.dim) {
                let s = spec.augment_noise * aug.uniform();
                row.iter_mut().for_each(|p| *p += s * aug.normal());
            }
            let (_, g) = c.loss_and_grad(&x, &comps);
            let t = (step + 1) as i32;
            for i in 0..g.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                c.params[i] -= spec.learning_rate * mh / (vh.sqrt() + eps);
            }
        }
        c
    }

    /// The frozen features (rows × hidden).
    pub fn features(&self, x: &[f64]) -> Vec<f64> {
        x.chunks(self.dim).flat_map(|r| self.hidden_of(r)).collect()
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Fraction of rows whose most likely component is `labels`' (a check that it learned).
    pub fn accuracy(&self, x: &[f64], labels: &[usize]) -> f64 {
        let (_, _, w2, b2) = self.split();
        let h = self.hidden;
        let right = x
            .chunks(self.dim)
            .zip(labels)
            .filter(|(row, y)| {
                let hid = self.hidden_of(row);
                let logit = |k: usize| w2[k * h..][..h].iter().zip(&hid).map(|(w, v)| w * v).sum::<f64>() + b2[k];
                (0..self.classes).all(|k| k == **y || logit(k) < logit(**y))
            })
            .count();
        right as f64 / labels.len() as f64
    }

    /// BLAKE3 of the weights' bits: recorded with every result in these features.
    pub fn hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        self.params.iter().for_each(|p| {
            h.update(&p.to_bits().to_le_bytes());
        });
        h.finalize().to_hex()[..16].to_string()
    }
}

/// The trained classifier of `spec`, trained once per process (it is a pure function of its
/// spec, so caching cannot change a result).
pub fn trained(spec: &ClassifierSpec) -> Arc<Classifier> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Classifier>>>> = OnceLock::new();
    let key = serde_json::to_string(spec).expect("serializable");
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().expect("not poisoned").get(&key) {
        return c.clone();
    }
    let c = Arc::new(Classifier::train(spec));
    cache.lock().expect("not poisoned").insert(key, c.clone());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::templates::Shape;

    fn spec() -> ClassifierSpec {
        ClassifierSpec {
            templates: TemplateSpec {
                size: 8,
                shapes: vec![Shape::Square, Shape::Cross],
                colours: vec![[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]],
                grid: 2,
                scales: vec![0.45],
                noise: 0.1,
            },
            hidden: 16,
            steps: 150,
            batch: 32,
            learning_rate: 3e-3,
            augment_noise: 0.3,
            seed: 1,
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let s = spec();
        let g = s.templates.gmm();
        let mut c = Classifier::new(g.dim, 6, g.components(), &mut Rng::new(3));
        c.params.iter_mut().skip(g.dim * 6).take(6).for_each(|b| *b = 0.1); // keep ReLUs active
        let (x, y) = g.sample_components(5, 0, 7);
        let (_, grad) = c.loss_and_grad(&x, &y);
        let mut r = Rng::new(9);
        for _ in 0..40 {
            let i = r.below(c.params.len());
            let h = 1e-6;
            let mut p = c.clone();
            p.params[i] += h;
            let up = p.loss_and_grad(&x, &y).0;
            p.params[i] -= 2.0 * h;
            let down = p.loss_and_grad(&x, &y).0;
            let fd = (up - down) / (2.0 * h);
            assert!((fd - grad[i]).abs() < 1e-6 * (1.0 + fd.abs()), "param {i}: fd {fd} vs {}", grad[i]);
        }
    }

    #[test]
    fn it_learns_the_templates_and_is_deterministic() {
        let s = spec();
        let c = Classifier::train(&s);
        let g = s.templates.gmm();
        let (x, y) = g.sample_components(99, 0, 400);
        assert!(c.accuracy(&x, &y) > 0.95, "{}", c.accuracy(&x, &y));
        assert_eq!(c.hash(), Classifier::train(&s).hash());
        assert_eq!(c.features(&x).len(), 400 * 16);
    }
}
