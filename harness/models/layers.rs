//! Layers composed from candle primitives whose backward is known to be right (candle.md §1):
//! candle's fused layer-norm, rms-norm and last-dim softmax record no backward and silently stop
//! gradients, and `upsample_nearest2d` overwrites gradients when its input is reused. Each layer
//! here is covered by the finite-difference tests of the models that use it.

use super::{broadcast, MacCounter, Result};
use candle_core::{Tensor, Var, D};

/// x·W + b over the last dimension of x (any leading shape), counting rows·in·out MACs. On the
/// CPU one op (`linear.rs`, a zero bias when there is none); elsewhere candle's matmul.
pub fn linear(x: &Tensor, w: &Var, b: Option<&Var>, macs: &MacCounter) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let fan_in = *dims.last().expect("at least 1-D");
    let rows = x.elem_count() / fan_in;
    let out = w.dim(1)?;
    macs.add((rows * fan_in * out) as f64);
    if x.device().is_cpu() {
        return match b {
            Some(b) => super::linear::linear(x, w, b),
            None => super::linear::linear(x, w, &Tensor::zeros(out, x.dtype(), x.device())?),
        };
    }
    let y = x.reshape((rows, fan_in))?.matmul(w.as_tensor())?;
    let y = match b {
        Some(b) => y.broadcast_add(b.as_tensor())?,
        None => y,
    };
    let mut shape = dims;
    *shape.last_mut().expect("at least 1-D") = out;
    y.reshape(shape)
}

/// Layer norm over the last dimension without an affine transform (DiT's `elementwise_affine =
/// False`): (x − mean) / √(var + ε).
pub fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)
}

/// Affine layer norm (diffusers' transformer blocks): layer_norm(x)·γ + β; one op on the CPU
/// (`layer_norm.rs`).
pub fn layer_norm_affine(x: &Tensor, gamma: &Var, beta: &Var, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() {
        let row = |v: &Var| v.as_tensor().reshape((1, v.elem_count()));
        return super::layer_norm::layer_norm_scaled(x, &row(gamma)?, &row(beta)?, eps);
    }
    broadcast::add(&broadcast::mul(&layer_norm(x, eps)?, gamma.as_tensor())?, beta.as_tensor())
}

/// GroupNorm on [B, C, H, W] maps (the layout of candle's conv2d): statistics per (sample,
/// group) over the group's channels and all pixels, then a per-channel affine.
pub fn group_norm(x: &Tensor, groups: usize, gamma: &Var, beta: &Var, eps: f64) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let n = layer_norm(&x.reshape((b, groups, c / groups * h * w))?, eps)?.reshape((b, c, h, w))?;
    let per_channel = |v: &Var| v.as_tensor().reshape((1, c, 1, 1));
    broadcast::add(&broadcast::mul(&n, &per_channel(gamma)?)?, &per_channel(beta)?)
}

/// Softmax over the last dimension, exp(x − max) / Σ exp(x − max). The max is detached: the
/// softmax does not depend on it, so no gradient should flow through it.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Multi-head scaled dot-product self-attention of qkv [B, N, 3d] = [q | k | v]: [B, N, d];
/// counts the QKᵀ and AV matmuls (2·N²·d MACs per sample), as `Tally::attention` does. On the
/// CPU one fused op (`attention.rs`); elsewhere the composition below.
pub fn self_attention(qkv: &Tensor, heads: usize, macs: &MacCounter) -> Result<Tensor> {
    let (b, n, d3) = qkv.dims3()?;
    if !qkv.device().is_cpu() {
        let s = qkv.chunk(3, D::Minus1)?;
        return attention_composed(&s[0], &s[1], &s[2], heads, macs);
    }
    macs.add((2 * b * n * n * (d3 / 3)) as f64);
    super::attention::self_attention(qkv, heads)
}

/// Cross-attention of q [B, Nq, d] over kv [B, Nk, 2d] = [k | v]: [B, Nq, d]; counts as above.
pub fn cross_attention(q: &Tensor, kv: &Tensor, heads: usize, macs: &MacCounter) -> Result<Tensor> {
    if !q.device().is_cpu() {
        let s = kv.chunk(2, D::Minus1)?;
        return attention_composed(q, &s[0], &s[1], heads, macs);
    }
    let (b, nq, d) = q.dims3()?;
    macs.add((2 * b * nq * kv.dim(1)? * d) as f64);
    super::attention::cross_attention(q, kv, heads)
}

/// Attention from candle primitives: the reference the fused op is tested against.
pub fn attention_composed(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, macs: &MacCounter) -> Result<Tensor> {
    let (b, nq, d) = q.dims3()?;
    let nk = k.dim(1)?;
    let dh = d / heads;
    macs.add((2 * b * nq * nk * d) as f64);
    let split = |t: &Tensor, n: usize| t.reshape((b, n, heads, dh))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(q, nq)?, split(k, nk)?, split(v, nk)?);
    let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?;
    let out = softmax(&scores)?.matmul(&v)?;
    out.transpose(1, 2)?.reshape((b, nq, d))
}

/// x·(1 + scale) + shift, with shift and scale per sample [B, d] broadcast over tokens [B, N, d]
/// (DiT's `modulate`).
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    broadcast::add(&broadcast::mul(x, &(scale.unsqueeze(1)? + 1.0)?)?, &shift.unsqueeze(1)?)
}

/// modulate(layer_norm(x), shift, scale), DiT's adaLN; one op on the CPU (`layer_norm.rs`).
pub fn modulated_norm(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() {
        return super::layer_norm::layer_norm_scaled(x, &(scale + 1.0)?, shift, eps);
    }
    modulate(&layer_norm(x, eps)?, shift, scale)
}

/// Nearest-neighbour 2× upsampling of [B, C, H, W] by broadcasting, whose backward (a sum over
/// the copies) is exact even when the input is reused, unlike candle's `upsample_nearest2d`.
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    broadcast::broadcast_to(&x.reshape((b, c, h, 1, w, 1))?, &[b, c, h, 2, w, 2])?.reshape((b, c, 2 * h, 2 * w))
}
