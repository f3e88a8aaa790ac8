//! GroupNorm (Wu & He 2018, Eq. 1–3), optionally followed by SiLU, as one CPU op with its own
//! backward. (Layer norm stays composed, `layers.rs`: as this op with one group per token it
//! measured slower, its per-channel loops being one element long.)
//!
//! For x [B, C, S] in G groups, per (b, g) over the group's C/G channels and S positions:
//!   x̂ = (x − μ) / √(σ² + ε),  z = γ_c·x̂ + β_c,  y = z (or SiLU(z) = z·sigmoid(z)).
//! Backward, with n = (C/G)·S and dz = dy (or dy·s(1 + z(1 − s)), s = sigmoid(z)):
//!   dβ_c = Σ dz,  dγ_c = Σ dz·x̂,  dx̂ = γ_c·dz,  dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / √(σ² + ε).
//!
//! Why: composed from candle primitives, GroupNorm + SiLU is ten elementwise passes forward and
//! about twenty backward, each through a fresh buffer (the UNet runs fifteen of them a step).
//! Samples run in parallel (rayon); γ and β gradients are summed over fixed chunks of samples in
//! a fixed order, so results are bitwise reproducible whatever the number of threads.

use super::cpu_op::{cpu_fwd3, dot_by, sum_by, wide, zeros_with_room};
use super::gelu::FastExp;
use super::Result;
use candle_core::{CustomOp3, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// GroupNorm of x [B, C, H, W] (or any [B, C, …]) with per-channel γ, β, then SiLU if `silu`.
pub fn group_norm(x: &Tensor, groups: usize, gamma: &Tensor, beta: &Tensor, eps: f64, silu: bool) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (b, c) = (dims[0], dims[1]);
    let s = x.elem_count() / (b * c).max(1);
    if c % groups != 0 {
        candle_core::bail!("group_norm: {c} channels do not split into {groups} groups")
    }
    let op = Norm { groups, channels: c, positions: s, eps, silu };
    x.contiguous()?.reshape((b, c, s))?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?.reshape(dims)
}

#[derive(Clone, Copy)]
struct Norm {
    groups: usize,
    channels: usize,
    positions: usize,
    eps: f64,
    silu: bool,
}

struct NormGrad(Norm);

/// Samples per chunk of the γ, β gradient sums (fixed: the order of the sums is then too).
const CHUNK: usize = 16;

impl Norm {
    /// Per group of one sample: (mean, 1/√(var + ε)), two-pass.
    #[inline(always)]
    fn stats<T: WithDType>(&self, xs: &[T]) -> Vec<(T, T)> {
        let n = self.channels / self.groups * self.positions;
        xs.chunks(n)
            .map(|g| {
                let mean = sum_by(g, |v| v) / T::from_f64(n as f64);
                let var = sum_by(g, |v| (v - mean) * (v - mean)) / T::from_f64(n as f64);
                (mean, T::from_f64(1.0 / (var.to_f64() + self.eps).sqrt()))
            })
            .collect()
    }

    fn forward<T: FastExp>(&self, x: &[T], gamma: &[T], beta: &[T]) -> Vec<T> {
        let (c, s) = (self.channels, self.positions);
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(c * s).zip(x.par_chunks(c * s)).for_each(|(ys, xs)| {
            wide!(|| {
                let stats = self.stats(xs);
                for (ch, (yc, xc)) in ys.chunks_mut(s).zip(xs.chunks(s)).enumerate() {
                    let (mean, rstd) = stats[ch / (c / self.groups)];
                    let a = rstd * gamma[ch];
                    let d = beta[ch] - mean * a;
                    yc.iter_mut().zip(xc).for_each(|(y, x)| *y = *x * a + d);
                    if self.silu {
                        yc.iter_mut().for_each(|z| *z = *z * sigmoid(*z));
                    }
                }
            })
        });
        y
    }

    /// [dx | dγ | dβ] for the upstream gradient dy.
    fn backward<T: FastExp>(&self, x: &[T], gamma: &[T], beta: &[T], dy: &[T]) -> Vec<T> {
        let (c, s, cg) = (self.channels, self.positions, self.channels / self.groups);
        let n = T::from_f64((cg * s) as f64);
        let mut dx = zeros_with_room(x.len(), 2 * c);
        let partials: Vec<(Vec<T>, Vec<T>)> = dx
            .par_chunks_mut(CHUNK * c * s)
            .zip(x.par_chunks(CHUNK * c * s).zip(dy.par_chunks(CHUNK * c * s)))
            .map(|(dxc, (xc, dyc))| {
                wide!(|| {
                    let (mut dg, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
                    for (dxs, (xs, dys)) in dxc.chunks_mut(c * s).zip(xc.chunks(c * s).zip(dyc.chunks(c * s))) {
                        let stats = self.stats(xs);
                        // dz into dx, then per channel Σ dz and Σ dz·x̂, and per group Σ dx̂ and
                        // Σ dx̂·x̂ (dx̂ = γ_c·dz, so these are γ_c times the channel sums).
                        let mut sums = vec![(T::zero(), T::zero()); self.groups];
                        for ch in 0..c {
                            let (mean, rstd) = stats[ch / cg];
                            let r = ch * s..(ch + 1) * s;
                            let (xr, dyr, dxr) = (&xs[r.clone()], &dys[r.clone()], &mut dxs[r]);
                            if self.silu {
                                let (a, d) = (rstd * gamma[ch], beta[ch] - mean * rstd * gamma[ch]);
                                for ((dz, x), dy) in dxr.iter_mut().zip(xr).zip(dyr) {
                                    let z = *x * a + d;
                                    let sg = sigmoid(z);
                                    *dz = *dy * sg * (T::one() + z * (T::one() - sg));
                                }
                            } else {
                                dxr.copy_from_slice(dyr);
                            }
                            let sdz = sum_by(dxr, |v| v);
                            let sdzx = dot_by(dxr, xr, |x| (x - mean) * rstd);
                            db[ch] += sdz;
                            dg[ch] += sdzx;
                            sums[ch / cg].0 += gamma[ch] * sdz;
                            sums[ch / cg].1 += gamma[ch] * sdzx;
                        }
                        for ch in 0..c {
                            let (mean, rstd) = stats[ch / cg];
                            let (m1, m2) = (sums[ch / cg].0 / n, sums[ch / cg].1 / n);
                            let r = ch * s..(ch + 1) * s;
                            let g = gamma[ch];
                            for (dx, x) in dxs[r.clone()].iter_mut().zip(&xs[r]) {
                                *dx = (g * *dx - m1 - (*x - mean) * rstd * m2) * rstd;
                            }
                        }
                    }
                    (dg, db)
                })
            })
            .collect();
        let (mut dg, mut db) = (vec![T::zero(); c], vec![T::zero(); c]);
        for (pg, pb) in &partials {
            dg.iter_mut().zip(pg).for_each(|(a, v)| *a += *v);
            db.iter_mut().zip(pb).for_each(|(a, v)| *a += *v);
        }
        dx.extend(dg);
        dx.extend(db);
        dx
    }
}

/// The logistic function 1 / (1 + e^−z), SiLU's gate.
#[inline(always)]
fn sigmoid<T: FastExp>(z: T) -> T {
    T::one() / (T::one() + (T::zero() - z).fast_exp())
}

impl CustomOp3 for Norm {
    fn name(&self) -> &'static str {
        "group-norm"
    }

    cpu_fwd3!("group-norm", self, [l1, _l2, _l3], |x, g, b| self.forward(x, g, b), l1.shape().clone());

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // γ and β travel as one tensor: a custom op takes at most three inputs.
        let gb = Tensor::cat(&[gamma, beta], 0)?;
        let packed = x.apply_op3_no_bwd(&gb, &grad.contiguous()?, &NormGrad(*self))?;
        let (nx, c) = (x.elem_count(), self.channels);
        let dx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        Ok((Some(dx), Some(packed.narrow(0, nx, c)?), Some(packed.narrow(0, nx + c, c)?)))
    }
}

impl CustomOp3 for NormGrad {
    fn name(&self) -> &'static str {
        "group-norm-grad"
    }

    cpu_fwd3!(
        "group-norm backward",
        self,
        [l1, _l2, _l3],
        |x, gb, dy| self.0.backward(x, &gb[..self.0.channels], &gb[self.0.channels..], dy),
        Shape::from(l1.shape().elem_count() + 2 * self.0.channels)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops as layers;
    use crate::ops::cpu_op::testing::{check_gradients, grad_diffs, max_diff, randn};
    use crate::seed::Rng;
    use candle_core::Var;

    /// Values and all three gradients equal the composition of candle primitives.
    #[test]
    fn matches_the_composed_group_norm() {
        let mut r = Rng::new(21);
        for (groups, silu) in [(2, false), (2, true), (1, true), (6, false)] {
            let x = Var::from_tensor(&randn(&[3, 6, 4, 5], &mut r)).unwrap();
            let g = Var::from_tensor(&randn(&[6], &mut r)).unwrap();
            let b = Var::from_tensor(&randn(&[6], &mut r)).unwrap();
            let up = randn(&[3, 6, 4, 5], &mut r);
            let ours = group_norm(&x, groups, &g, &b, 1e-5, silu).unwrap();
            let composed = layers::group_norm(&x, groups, &g, &b, 1e-5).unwrap();
            let theirs = if silu { composed.silu().unwrap() } else { composed };
            assert!(max_diff(&ours, &theirs) < 1e-12, "groups {groups} silu {silu}");
            for diff in grad_diffs(&ours, &theirs, &up, &[&x, &g, &b]) {
                assert!(diff < 1e-10, "groups {groups} silu {silu}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut r = Rng::new(22);
        let ts = [randn(&[2, 4, 3, 3], &mut r), randn(&[4], &mut r), randn(&[4], &mut r)];
        let up = randn(&[2, 4, 3, 3], &mut r);
        let loss =
            |t: &[Tensor]| (group_norm(&t[0], 2, &t[1], &t[2], 1e-5, true).unwrap() * &up).unwrap().sum_all().unwrap();
        check_gradients(&ts, loss, |n| vec![0, n / 2, n - 1]);
    }
}
