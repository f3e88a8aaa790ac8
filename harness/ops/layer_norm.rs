//! Layer norm followed by a per-group scale and shift, as one CPU op with its own backward:
//!
//!   y_r = x̂_r · a_g + b_g,   x̂_r = (x_r − mean(x_r)) / √(var(x_r) + ε),
//!
//! over the last dimension of x, rows r in G consecutive groups g (G = B: DiT's adaLN
//! `modulate(norm(x), shift, scale)` with a = 1 + scale, b = shift; G = 1: an affine layer norm,
//! a = γ, b = β). The backward (Ba et al. 2016; per row, ĝ = dy·a):
//!
//!   dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / √(var + ε),   da_g = Σ_r∈g dy·x̂,   db_g = Σ_r∈g dy.
//!
//! Why: composed from candle primitives the norm and modulation are ten full-size tensor ops
//! forward and about twenty backward, each allocating, and each gradient accumulated into a fresh
//! zero tensor. Here one pass forward and one backward, rows in parallel; x̂ is recomputed in the
//! backward rather than stored. The a, b gradients are summed over fixed chunks of rows in a
//! fixed order, so the bits do not depend on the number of threads.

use super::cpu_op::{cpu_fwd3, dot_by, sum_by, wide, zeros_with_room};
use super::Result;
use candle_core::{CustomOp3, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// x̂·a + b for x [..., D] and a, b [G, D], G dividing the number of rows.
pub fn layer_norm_scaled(x: &Tensor, a: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let width = *x.dims().last().expect("at least 1-D");
    let rows = x.elem_count() / width.max(1);
    let groups = a.elem_count() / width.max(1);
    if a.dims() != b.dims() || groups * width != a.elem_count() || groups == 0 || !rows.is_multiple_of(groups) {
        candle_core::bail!("layer_norm_scaled: scale {:?} and shift {:?} do not fit {:?}", a.dims(), b.dims(), x.dims())
    }
    let op = LayerNorm { width, rows_per_group: rows / groups, eps };
    x.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, op)
}

#[derive(Clone, Copy)]
struct LayerNorm {
    width: usize,
    rows_per_group: usize,
    eps: f64,
}

/// (x, [a | b], dy) → [dx | da | db], flat.
struct LayerNormGrad(LayerNorm);

/// Rows per chunk of the a, b gradient sums (fixed: the order of the sums is then too).
const CHUNK: usize = 64;

impl LayerNorm {
    /// (mean, 1/√(var + ε)) of one row, two-pass.
    #[inline(always)]
    fn stats<T: WithDType>(&self, row: &[T]) -> (T, T) {
        let n = T::from_f64(self.width as f64);
        let mean = sum_by(row, |v| v) / n;
        let var = sum_by(row, |v| (v - mean) * (v - mean)) / n;
        (mean, T::from_f64(1.0 / (var.to_f64() + self.eps).sqrt()))
    }

    /// Rows per chunk: the largest divisor of the group's rows up to CHUNK, so that no chunk
    /// spans two groups.
    fn chunk_rows(&self) -> usize {
        (1..=self.rows_per_group.min(CHUNK)).rev().find(|c| self.rows_per_group.is_multiple_of(*c)).unwrap_or(1)
    }

    fn forward<T: WithDType>(&self, x: &[T], a: &[T], b: &[T]) -> Vec<T> {
        let (d, rpg) = (self.width, self.rows_per_group);
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(self.chunk_rows() * d).zip(x.par_chunks(self.chunk_rows() * d)).enumerate().for_each(
            |(c, (yc, xc))| {
                let g = c * self.chunk_rows() / rpg;
                let (ag, bg) = (&a[g * d..(g + 1) * d], &b[g * d..(g + 1) * d]);
                wide!(|| {
                    for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                        let (mean, rstd) = self.stats(xr);
                        for (((y, x), a), b) in yr.iter_mut().zip(xr).zip(ag).zip(bg) {
                            *y = (*x - mean) * rstd * *a + *b;
                        }
                    }
                })
            },
        );
        y
    }

    /// [dx | da | db] for the upstream gradient dy.
    fn backward<T: WithDType>(&self, x: &[T], a: &[T], dy: &[T]) -> Vec<T> {
        let (d, rpg, cr) = (self.width, self.rows_per_group, self.chunk_rows());
        let n = T::from_f64(d as f64);
        let mut dx = zeros_with_room(x.len(), 2 * a.len());
        let partials: Vec<(Vec<T>, Vec<T>)> = dx
            .par_chunks_mut(cr * d)
            .zip(x.par_chunks(cr * d).zip(dy.par_chunks(cr * d)))
            .enumerate()
            .map(|(c, (dxc, (xc, dyc)))| {
                let ag = &a[c * cr / rpg * d..(c * cr / rpg + 1) * d];
                let (mut da, mut db) = (vec![T::zero(); d], vec![T::zero(); d]);
                wide!(|| {
                    for ((dxr, xr), dyr) in dxc.chunks_mut(d).zip(xc.chunks(d)).zip(dyc.chunks(d)) {
                        let (mean, rstd) = self.stats(xr);
                        for ((((da, db), x), dy), dx) in
                            da.iter_mut().zip(db.iter_mut()).zip(xr).zip(dyr).zip(dxr.iter_mut())
                        {
                            *da += *dy * (*x - mean) * rstd;
                            *db += *dy;
                            *dx = *dy;
                        }
                        dxr.iter_mut().zip(ag).for_each(|(g, a)| *g *= *a);
                        let m1 = sum_by(dxr, |v| v) / n;
                        let m2 = dot_by(dxr, xr, |x| (x - mean) * rstd) / n;
                        for (dx, x) in dxr.iter_mut().zip(xr) {
                            *dx = (*dx - m1 - (*x - mean) * rstd * m2) * rstd;
                        }
                    }
                });
                (da, db)
            })
            .collect();
        let groups = x.len() / d / rpg;
        let (mut da, mut db) = (vec![T::zero(); groups * d], vec![T::zero(); groups * d]);
        for (c, (pa, pb)) in partials.iter().enumerate() {
            let g = c * cr / rpg;
            da[g * d..(g + 1) * d].iter_mut().zip(pa).for_each(|(s, v)| *s += *v);
            db[g * d..(g + 1) * d].iter_mut().zip(pb).for_each(|(s, v)| *s += *v);
        }
        dx.extend(da);
        dx.extend(db);
        dx
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm-scaled"
    }

    cpu_fwd3!("layer-norm", self, [l1, _l2, _l3], |x, a, b| self.forward(x, a, b), l1.shape().clone());

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op3_no_bwd(a, &grad.contiguous()?, &LayerNormGrad(*self))?;
        let (nx, na) = (x.elem_count(), a.elem_count());
        let dx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let da = packed.narrow(0, nx, na)?.reshape(a.shape())?;
        Ok((Some(dx), Some(da), Some(packed.narrow(0, nx + na, na)?.reshape(a.shape())?)))
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "layer-norm-scaled-grad"
    }

    cpu_fwd3!(
        "layer-norm backward",
        self,
        [l1, l2, _l3],
        |x, a, dy| self.0.backward(x, a, dy),
        Shape::from(l1.shape().elem_count() + 2 * l2.shape().elem_count())
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops as layers;
    use crate::ops::cpu_op::testing::{check_gradients, grad_diffs, max_diff, randn};
    use crate::seed::Rng;
    use candle_core::Var;

    /// Values and all three gradients equal the composition of candle primitives, per sample
    /// (DiT's modulate, rows in more than one chunk) and shared (an affine layer norm).
    #[test]
    fn matches_the_composed_layer_norm() {
        let mut r = Rng::new(51);
        for (b, t, groups) in [(3, 5, 3), (2, 130, 2), (4, 3, 1), (1, 200, 1)] {
            let d = 6;
            let x = Var::from_tensor(&randn(&[b, t, d], &mut r)).unwrap();
            let a = Var::from_tensor(&randn(&[groups, d], &mut r)).unwrap();
            let c = Var::from_tensor(&randn(&[groups, d], &mut r)).unwrap();
            let up = randn(&[b, t, d], &mut r);
            let ours = layer_norm_scaled(&x, &a, &c, 1e-6).unwrap();
            let n = layers::layer_norm(&x, 1e-6).unwrap();
            let theirs = if groups == 1 {
                n.broadcast_mul(a.as_tensor()).unwrap().broadcast_add(c.as_tensor()).unwrap()
            } else {
                let (a, c) = (a.unsqueeze(1).unwrap(), c.unsqueeze(1).unwrap());
                n.broadcast_mul(&a).unwrap().broadcast_add(&c).unwrap()
            };
            assert!(max_diff(&ours, &theirs) < 1e-12, "{b}×{t}, {groups} groups");
            for diff in grad_diffs(&ours, &theirs, &up, &[&x, &a, &c]) {
                assert!(diff < 1e-10, "{b}×{t}, {groups} groups");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut r = Rng::new(52);
        let ts = [randn(&[2, 3, 5], &mut r), randn(&[2, 5], &mut r), randn(&[2, 5], &mut r)];
        let up = randn(&[2, 3, 5], &mut r);
        let loss =
            |t: &[Tensor]| (layer_norm_scaled(&t[0], &t[1], &t[2], 1e-5).unwrap() * &up).unwrap().sum_all().unwrap();
        check_gradients(&ts, loss, |n| (0..n).collect());
    }

    #[test]
    fn shapes_that_do_not_fit_are_an_error() {
        let mut r = Rng::new(53);
        let x = randn(&[2, 3, 5], &mut r);
        assert!(layer_norm_scaled(&x, &randn(&[4, 5], &mut r), &randn(&[4, 5], &mut r), 1e-5).is_err());
        assert!(layer_norm_scaled(&x, &randn(&[2, 4], &mut r), &randn(&[2, 4], &mut r), 1e-5).is_err());
    }
}
