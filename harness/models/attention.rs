//! Multi-head scaled dot-product attention (Vaswani et al. 2017, Eq. 1) as one CPU op with its
//! own backward. Per sample b and head h, with Q, K, V the head's [N, d_h] slices:
//!
//!   S = Q·Kᵀ/√d_h,  P = softmax_rows(S),  O = P·V;
//!   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = dS·K/√d_h,  dK = dSᵀ·Q/√d_h.
//!
//! Why: composed from candle primitives, attention splits and transposes the heads into fresh
//! copies, runs the B·H small products one after another on one thread, and differentiates the
//! softmax through five elementwise passes. Here samples run in parallel (rayon) and the head
//! slices are read in place through strided GEMM views; P is recomputed in the backward rather
//! than stored. Every sample's sums run in a fixed order: bitwise reproducible.

use super::cpu_op::{cpu_fwd3, wide};
use super::gelu::FastExp;
use super::gemm::{gemm_into, View};
use super::Result;
use candle_core::{CustomOp3, Shape, Tensor};
use rayon::prelude::*;

/// q [B, Nq, d] over k, v [B, Nk, d], `heads` heads of d/heads channels: [B, Nq, d].
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    let (_, nq, d) = q.dims3()?;
    let nk = k.dim(1)?;
    if d % heads != 0 {
        candle_core::bail!("attention: width {d} does not split into {heads} heads")
    }
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, Attention { heads, nq, nk, d })
}

#[derive(Clone, Copy)]
struct Attention {
    heads: usize,
    nq: usize,
    nk: usize,
    d: usize,
}

/// (q, [k | v] along the last dimension, dO) → [dq | dk | dv], flat.
struct AttentionGrad(Attention);

impl Attention {
    fn dh(&self) -> usize {
        self.d / self.heads
    }

    /// Head h's [n, d_h] slice of a sample's [n, row] rows, read in place.
    fn head(&self, n: usize, row: usize) -> View {
        View { rows: n, cols: self.dh(), rs: row, cs: 1 }
    }

    /// P = softmax(Q·Kᵀ/√d_h) of head h, into p [Nq, Nk]. q and k are the sample's rows, k with
    /// row length `k_row` (k and v may share rows).
    fn probs<T: FastExp>(&self, q: &[T], k: &[T], k_row: usize, h: usize, p: &mut [T]) {
        let (nq, nk, o) = (self.nq, self.nk, h * self.dh());
        gemm_into(p, View::row_major(nq, nk), &q[o..], self.head(nq, self.d), &k[o..], self.head(nk, k_row).t(), false);
        let scale = T::from_f64(1.0 / (self.dh() as f64).sqrt());
        wide(|| {
            for row in p.chunks_mut(nk) {
                let m = row.iter().fold(row[0], |a, v| if *v > a { *v } else { a });
                row.iter_mut().for_each(|v| *v = ((*v - m) * scale).fast_exp());
                let inv = T::one() / row.iter().fold(T::zero(), |a, v| a + *v);
                row.iter_mut().for_each(|v| *v *= inv);
            }
        });
    }

    fn forward<T: FastExp>(&self, q: &[T], k: &[T], v: &[T]) -> Vec<T> {
        let (nq, nk, d) = (self.nq, self.nk, self.d);
        let mut out = vec![T::zero(); q.len()];
        out.par_chunks_mut(nq * d).enumerate().for_each(|(b, ob)| {
            let (qb, kb, vb) = (&q[b * nq * d..(b + 1) * nq * d], &k[b * nk * d..], &v[b * nk * d..]);
            let mut p = vec![T::zero(); nq * nk];
            for h in 0..self.heads {
                let o = h * self.dh();
                self.probs(qb, kb, d, h, &mut p);
                gemm_into(
                    &mut ob[o..],
                    self.head(nq, d),
                    &p,
                    View::row_major(nq, nk),
                    &vb[o..],
                    self.head(nk, d),
                    false,
                );
            }
        });
        out
    }

    /// kv: [B, Nk, 2d] rows of [k | v]; dout [B, Nq, d].
    fn backward<T: FastExp>(&self, q: &[T], kv: &[T], dout: &[T]) -> Vec<T> {
        let (nq, nk, d) = (self.nq, self.nk, self.d);
        let scale = T::from_f64(1.0 / (self.dh() as f64).sqrt());
        let mut dq = vec![T::zero(); q.len()];
        let mut dkv = vec![T::zero(); kv.len()];
        dq.par_chunks_mut(nq * d).zip(dkv.par_chunks_mut(nk * 2 * d)).enumerate().for_each(|(b, (dqb, dkvb))| {
            let qb = &q[b * nq * d..(b + 1) * nq * d];
            let kvb = &kv[b * nk * 2 * d..(b + 1) * nk * 2 * d];
            let dob = &dout[b * nq * d..(b + 1) * nq * d];
            let (mut p, mut ds) = (vec![T::zero(); nq * nk], vec![T::zero(); nq * nk]);
            let pv = View::row_major(nq, nk);
            for h in 0..self.heads {
                let o = h * self.dh();
                self.probs(qb, kvb, 2 * d, h, &mut p);
                // dV = Pᵀ·dO, dP = dO·Vᵀ.
                gemm_into(&mut dkvb[d + o..], self.head(nk, 2 * d), &p, pv.t(), &dob[o..], self.head(nq, d), false);
                gemm_into(&mut ds, pv, &dob[o..], self.head(nq, d), &kvb[d + o..], self.head(nk, 2 * d).t(), false);
                wide(|| {
                    for (dsr, pr) in ds.chunks_mut(nk).zip(p.chunks(nk)) {
                        let dot = dsr.iter().zip(pr).fold(T::zero(), |a, (g, p)| a + *g * *p);
                        dsr.iter_mut().zip(pr).for_each(|(g, p)| *g = *p * (*g - dot) * scale);
                    }
                });
                // dQ = dS·K, dK = dSᵀ·Q (the 1/√d_h is in dS).
                gemm_into(&mut dqb[o..], self.head(nq, d), &ds, pv, &kvb[o..], self.head(nk, 2 * d), false);
                gemm_into(&mut dkvb[o..], self.head(nk, 2 * d), &ds, pv.t(), &qb[o..], self.head(nq, d), false);
            }
        });
        dq.extend(dkv);
        dq
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }

    cpu_fwd3!("attention", self, [l1, _l2, _l3], |q, k, v| self.forward(q, k, v), l1.shape().clone());

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // k and v travel as one tensor: a custom op takes at most three inputs.
        let kv = Tensor::cat(&[k, v], 2)?;
        let packed = q.apply_op3_no_bwd(&kv, &grad.contiguous()?, &AttentionGrad(*self))?;
        let nq = q.elem_count();
        let dkv = packed.narrow(0, nq, kv.elem_count())?.reshape(kv.shape())?;
        let d = self.d;
        Ok((Some(packed.narrow(0, 0, nq)?.reshape(q.shape())?), Some(dkv.narrow(2, 0, d)?), Some(dkv.narrow(2, d, d)?)))
    }
}

impl CustomOp3 for AttentionGrad {
    fn name(&self) -> &'static str {
        "attention-grad"
    }

    cpu_fwd3!(
        "attention backward",
        self,
        [l1, l2, _l3],
        |q, kv, g| self.0.backward(q, kv, g),
        Shape::from(l1.shape().elem_count() + l2.shape().elem_count())
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::cpu_op::testing::{check_gradients, grad_diffs, max_diff, randn};
    use crate::models::{layers, MacCounter};
    use crate::run::seed::Rng;
    use candle_core::Var;

    /// Values and gradients equal the composition of candle primitives, self- and
    /// cross-attention (Nk ≠ Nq).
    #[test]
    fn matches_the_composed_attention() {
        let mut r = Rng::new(31);
        for (nq, nk, heads) in [(5, 5, 2), (4, 7, 3), (3, 2, 1)] {
            let d = 6;
            let q = Var::from_tensor(&randn(&[2, nq, d], &mut r)).unwrap();
            let k = Var::from_tensor(&randn(&[2, nk, d], &mut r)).unwrap();
            let v = Var::from_tensor(&randn(&[2, nk, d], &mut r)).unwrap();
            let up = randn(&[2, nq, d], &mut r);
            let ours = attention(&q, &k, &v, heads).unwrap();
            let theirs = layers::attention_composed(&q, &k, &v, heads, &MacCounter::default()).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12, "{nq} {nk} {heads}");
            for diff in grad_diffs(&ours, &theirs, &up, &[&q, &k, &v]) {
                assert!(diff < 1e-12, "{nq} {nk} {heads}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut r = Rng::new(32);
        let ts = [randn(&[2, 3, 4], &mut r), randn(&[2, 5, 4], &mut r), randn(&[2, 5, 4], &mut r)];
        let up = randn(&[2, 3, 4], &mut r);
        let loss = |t: &[Tensor]| (attention(&t[0], &t[1], &t[2], 2).unwrap() * &up).unwrap().sum_all().unwrap();
        check_gradients(&ts, loss, |n| vec![0, n / 2, n - 1]);
    }
}
