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
//!
//! The ops take the projections packed as the linear layers make them, [q | k | v] (self-
//! attention) or q and [k | v] (cross-attention), and return their gradient packed the same way:
//! splitting them with `chunk` would cost, per piece, a copy forward and, backward, candle's
//! zero-padded `cat` plus an accumulation into a fresh zero tensor.

use super::cpu_op::{dispatch, wide, zeros_with_room};
use super::gelu::FastExp;
use super::gemm::{gemm_into, View};
use super::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Self-attention of qkv [B, N, 3d] = [q | k | v], `heads` heads of d/heads channels: [B, N, d].
pub fn self_attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let (_, n, d3) = qkv.dims3()?;
    let op = Attention::new(heads, n, n, d3 / 3, true)?;
    qkv.contiguous()?.apply_op1(op)
}

/// q [B, Nq, d] over kv [B, Nk, 2d] = [k | v], `heads` heads of d/heads channels: [B, Nq, d].
pub fn cross_attention(q: &Tensor, kv: &Tensor, heads: usize) -> Result<Tensor> {
    let (_, nq, d) = q.dims3()?;
    let op = Attention::new(heads, nq, kv.dim(1)?, d, false)?;
    q.contiguous()?.apply_op2(&kv.contiguous()?, op)
}

#[derive(Clone, Copy)]
struct Attention {
    heads: usize,
    nq: usize,
    nk: usize,
    d: usize,
    /// q, k and v in one tensor, [q | k | v] rows; otherwise q alone and [k | v] rows.
    packed: bool,
}

/// (qkv, dO) → dqkv.
struct SelfAttentionGrad(Attention);
/// (q, kv, dO) → [dq | dkv], flat.
struct CrossAttentionGrad(Attention);

impl Attention {
    fn new(heads: usize, nq: usize, nk: usize, d: usize, packed: bool) -> Result<Self> {
        if heads == 0 || !d.is_multiple_of(heads) {
            candle_core::bail!("attention: width {d} does not split into {heads} heads")
        }
        Ok(Attention { heads, nq, nk, d, packed })
    }

    fn dh(&self) -> usize {
        self.d / self.heads
    }

    /// Row lengths of q and of kv, and where k starts in a kv row (v follows at + d).
    fn rows(&self) -> (usize, usize, usize) {
        if self.packed {
            (3 * self.d, 3 * self.d, self.d)
        } else {
            (self.d, 2 * self.d, 0)
        }
    }

    /// Head h's [n, d_h] slice of a sample's [n, row] rows, read in place.
    fn head(&self, n: usize, row: usize) -> View {
        View { rows: n, cols: self.dh(), rs: row, cs: 1 }
    }

    /// P = softmax(Q·Kᵀ/√d_h) of head h, into p [Nq, Nk], from one sample's q and kv rows.
    fn probs<T: FastExp>(&self, q: &[T], kv: &[T], h: usize, p: &mut [T]) {
        let (nq, nk, o) = (self.nq, self.nk, h * self.dh());
        let (q_row, kv_row, k_at) = self.rows();
        let (qv, kt) = (self.head(nq, q_row), self.head(nk, kv_row).t());
        gemm_into(p, View::row_major(nq, nk), &q[o..], qv, &kv[k_at + o..], kt, false);
        let scale = T::from_f64(1.0 / (self.dh() as f64).sqrt());
        wide!(|| {
            for row in p.chunks_mut(nk) {
                let m = row.iter().fold(row[0], |a, v| if *v > a { *v } else { a });
                row.iter_mut().for_each(|v| *v = ((*v - m) * scale).fast_exp());
                let inv = T::one() / row.iter().fold(T::zero(), |a, v| a + *v);
                row.iter_mut().for_each(|v| *v *= inv);
            }
        });
    }

    /// O [B, Nq, d]; for self-attention `q` and `kv` are the same qkv slice.
    fn forward<T: FastExp>(&self, q: &[T], kv: &[T]) -> Vec<T> {
        let (nq, nk, d) = (self.nq, self.nk, self.d);
        let (q_row, kv_row, k_at) = self.rows();
        let mut out = vec![T::zero(); q.len() / q_row * d];
        out.par_chunks_mut(nq * d).enumerate().for_each(|(b, ob)| {
            let (qb, kvb) = (&q[b * nq * q_row..], &kv[b * nk * kv_row..]);
            let mut p = vec![T::zero(); nq * nk];
            for h in 0..self.heads {
                let o = h * self.dh();
                self.probs(qb, kvb, h, &mut p);
                let (pv, vv) = (View::row_major(nq, nk), self.head(nk, kv_row));
                gemm_into(&mut ob[o..], self.head(nq, d), &p, pv, &kvb[k_at + d + o..], vv, false);
            }
        });
        out
    }

    /// One sample's gradients: dq [Nq, d] into `dq`, dk and dv into `dkv`, laid out as kv.
    fn sample_grads<T: FastExp>(&self, qb: &[T], kvb: &[T], dob: &[T], dq: &mut [T], dkv: &mut [T]) {
        let (nq, nk, d) = (self.nq, self.nk, self.d);
        let (q_row, kv_row, k_at) = self.rows();
        let scale = T::from_f64(1.0 / (self.dh() as f64).sqrt());
        let (mut p, mut ds) = (vec![T::zero(); nq * nk], vec![T::zero(); nq * nk]);
        let (pv, kvv, dov) = (View::row_major(nq, nk), self.head(nk, kv_row), self.head(nq, d));
        for h in 0..self.heads {
            let o = h * self.dh();
            self.probs(qb, kvb, h, &mut p);
            // dV = Pᵀ·dO, dP = dO·Vᵀ.
            gemm_into(&mut dkv[k_at + d + o..], kvv, &p, pv.t(), &dob[o..], dov, false);
            gemm_into(&mut ds, pv, &dob[o..], dov, &kvb[k_at + d + o..], kvv.t(), false);
            wide!(|| {
                for (dsr, pr) in ds.chunks_mut(nk).zip(p.chunks(nk)) {
                    let dot = dsr.iter().zip(pr).fold(T::zero(), |a, (g, p)| a + *g * *p);
                    dsr.iter_mut().zip(pr).for_each(|(g, p)| *g = *p * (*g - dot) * scale);
                }
            });
            // dQ = dS·K, dK = dSᵀ·Q (the 1/√d_h is in dS).
            gemm_into(&mut dq[o..], self.head(nq, d), &ds, pv, &kvb[k_at + o..], kvv, false);
            gemm_into(&mut dkv[k_at + o..], kvv, &ds, pv.t(), &qb[o..], self.head(nq, q_row), false);
        }
    }

    /// dqkv [B, N, 3d] for self-attention.
    fn backward_packed<T: FastExp>(&self, qkv: &[T], dout: &[T]) -> Vec<T> {
        let (n, d) = (self.nq, self.d);
        let mut dqkv = vec![T::zero(); qkv.len()];
        dqkv.par_chunks_mut(n * 3 * d).enumerate().for_each(|(b, db)| {
            let qb = &qkv[b * n * 3 * d..(b + 1) * n * 3 * d];
            // dq goes through a scratch buffer: its columns interleave with dk's and dv's rows.
            let mut dq = vec![T::zero(); n * d];
            self.sample_grads(qb, qb, &dout[b * n * d..(b + 1) * n * d], &mut dq, db);
            db.chunks_mut(3 * d).zip(dq.chunks(d)).for_each(|(row, g)| row[..d].copy_from_slice(g));
        });
        dqkv
    }

    /// [dq | dkv] for cross-attention.
    fn backward_split<T: FastExp>(&self, q: &[T], kv: &[T], dout: &[T]) -> Vec<T> {
        let (nq, nk, d) = (self.nq, self.nk, self.d);
        let mut dq = zeros_with_room(q.len(), kv.len());
        let mut dkv = vec![T::zero(); kv.len()];
        dq.par_chunks_mut(nq * d).zip(dkv.par_chunks_mut(nk * 2 * d)).enumerate().for_each(|(b, (dqb, dkvb))| {
            let (qb, kvb) = (&q[b * nq * d..(b + 1) * nq * d], &kv[b * nk * 2 * d..(b + 1) * nk * 2 * d]);
            self.sample_grads(qb, kvb, &dout[b * nq * d..(b + 1) * nq * d], dqb, dkvb);
        });
        dq.extend(dkv);
        dq
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "self-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = dispatch!("self-attention", |qkv| self.forward(qkv, qkv), (s, l));
        Ok((out, Shape::from((l.dims()[0], self.nq, self.d))))
    }

    fn bwd(&self, qkv: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(qkv.apply_op2_no_bwd(&grad.contiguous()?, &SelfAttentionGrad(*self))?))
    }
}

impl CustomOp2 for SelfAttentionGrad {
    fn name(&self) -> &'static str {
        "self-attention-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = dispatch!("self-attention backward", |qkv, g| self.0.backward_packed(qkv, g), (s1, l1), (s2, l2));
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "cross-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = dispatch!("cross-attention", |q, kv| self.forward(q, kv), (s1, l1), (s2, l2));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, q: &Tensor, kv: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = q.apply_op3_no_bwd(kv, &grad.contiguous()?, &CrossAttentionGrad(*self))?;
        let nq = q.elem_count();
        let dq = packed.narrow(0, 0, nq)?.reshape(q.shape())?;
        Ok((Some(dq), Some(packed.narrow(0, nq, kv.elem_count())?.reshape(kv.shape())?)))
    }
}

impl CustomOp3 for CrossAttentionGrad {
    fn name(&self) -> &'static str {
        "cross-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = dispatch!(
            "cross-attention backward",
            |q, kv, g| self.0.backward_split(q, kv, g),
            (s1, l1),
            (s2, l2),
            (s3, l3)
        );
        Ok((out, Shape::from(l1.shape().elem_count() + l2.shape().elem_count())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu_op::testing::{check_gradients, grad_diffs, max_diff, randn};
    use crate::ops::{self as layers, MacCounter};
    use crate::seed::Rng;
    use candle_core::{Var, D};

    /// Values and gradients equal the composition of candle primitives, self- and
    /// cross-attention (Nk ≠ Nq).
    #[test]
    fn matches_the_composed_attention() {
        let mut r = Rng::new(31);
        let macs = MacCounter::default();
        for (nq, nk, heads) in [(5, 5, 2), (4, 7, 3), (3, 2, 1)] {
            let d = 6;
            let qkv = Var::from_tensor(&randn(&[2, nq, 3 * d], &mut r)).unwrap();
            let up = randn(&[2, nq, d], &mut r);
            let ours = self_attention(&qkv, heads).unwrap();
            let s = qkv.chunk(3, D::Minus1).unwrap();
            let theirs = layers::attention_composed(&s[0], &s[1], &s[2], heads, &macs).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12, "self {nq} {heads}");
            assert!(grad_diffs(&ours, &theirs, &up, &[&qkv])[0] < 1e-12, "self {nq} {heads}");

            let q = Var::from_tensor(&randn(&[2, nq, d], &mut r)).unwrap();
            let kv = Var::from_tensor(&randn(&[2, nk, 2 * d], &mut r)).unwrap();
            let ours = cross_attention(&q, &kv, heads).unwrap();
            let s = kv.chunk(2, D::Minus1).unwrap();
            let theirs = layers::attention_composed(&q, &s[0], &s[1], heads, &macs).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12, "cross {nq} {nk} {heads}");
            for diff in grad_diffs(&ours, &theirs, &up, &[&q, &kv]) {
                assert!(diff < 1e-12, "cross {nq} {nk} {heads}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut r = Rng::new(32);
        let up = randn(&[2, 3, 4], &mut r);
        let qkv = randn(&[2, 3, 12], &mut r);
        let loss = |t: &[Tensor]| (self_attention(&t[0], 2).unwrap() * &up).unwrap().sum_all().unwrap();
        check_gradients(&[qkv], loss, |n| vec![0, 5, n / 2, n - 1]);
        let ts = [randn(&[2, 3, 4], &mut r), randn(&[2, 5, 8], &mut r)];
        let loss = |t: &[Tensor]| (cross_attention(&t[0], &t[1], 2).unwrap() * &up).unwrap().sum_all().unwrap();
        check_gradients(&ts, loss, |n| vec![0, n / 2, n - 1]);
    }
}
