//! The ops layer: every operation the models use, each one entry point that owns its device
//! dispatch. On the CPU (f32 and f64) an op runs diffscale's own kernel with its own backward
//! (the files below, each with finite-difference tests of every gradient); on any other device or
//! dtype it runs the composition of candle primitives kept here, which is also the reference the
//! CPU kernels are tested against. A CUDA kernel would be a third branch of the same entry point.
//!
//! Why our own kernels at all: candle 0.11's fused layer-norm, rms-norm and last-dim softmax record
//! no backward and silently stop gradients, and `upsample_nearest2d` overwrites gradients when its
//! input is reused; the compositions avoid those ops, and the kernels are faster on the CPU.
//!
//! Mixed precision: an op casts the parameters it is given to its input's dtype (a no-op when
//! they agree), so a model with f32 parameters and bf16 activations computes in bf16 while the
//! gradients reach its f32 parameters through the cast's backward.
//!
//! | op | CPU kernel | composition |
//! |---|---|---|
//! | `linear` | `linear.rs` (GEMM + bias, one node) | matmul + broadcast add |
//! | `matmul_add` | matmul + `broadcast::add` | the same |
//! | `layer_norm_affine`, `modulated_norm` | `layer_norm.rs` | `layer_norm` · γ + β, `modulate` |
//! | `group_norm_silu` | `norm.rs` (GroupNorm and SiLU in one node) | `group_norm`, then `silu` |
//! | `self_attention`, `cross_attention` | `attention.rs` (fused softmax) | `attention_composed` |
//! | `gelu`, `gelu_erf`, `geglu` | `gelu.rs` | candle's `gelu`, `gelu_erf` |
//! | `conv2d` | `conv.rs` (im2col GEMM) | candle's `conv2d` + bias |
//! | `broadcast::{add, mul, broadcast_to}` | `broadcast.rs` | candle's broadcasts |
//! | `upsample2x` | broadcast + reshape | the same |

mod attention;
pub mod broadcast;
pub mod conv;
pub(crate) mod cpu_op;
pub(crate) use cpu_op::wide;
pub mod gelu;
mod gemm;
pub mod layer_norm;
pub mod linear;
pub mod norm;

pub use conv::conv2d;
pub use gelu::{geglu, gelu, gelu_erf};

use candle_core::{DType, Tensor, Var, D};
use std::sync::atomic::{AtomicU64, Ordering};

pub type Result<T> = candle_core::Result<T>;

/// Whether an op on `x` runs diffscale's CPU kernel: on the CPU, in f32 (training) or f64 (the
/// finite-difference tests). Everything else (a GPU, bf16) takes the composition.
pub fn cpu_kernel(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// A parameter as an operand of an op on `like`: cast to its dtype (mixed precision), free when
/// they agree.
pub fn param(v: &Var, like: &Tensor) -> Result<Tensor> {
    v.as_tensor().to_dtype(like.dtype())
}

/// Counts multiply-accumulates as a forward pass runs, to check the analytic counts. Atomic
/// (parts of a training batch run on several threads); counts are whole numbers, so the sum
/// does not depend on the order the threads add them in.
#[derive(Default)]
pub struct MacCounter(AtomicU64);

impl MacCounter {
    pub fn add(&self, n: f64) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn take(&self) -> f64 {
        self.0.swap(0, Ordering::Relaxed) as f64
    }
}

/// x·W + b for x [rows, in], W [in, out], counting rows·in·out MACs, as a matmul and a
/// broadcast add (two nodes; the MLP's layer, whose committed results were made this way).
pub fn matmul_add(x: &Tensor, w: &Var, b: &Var, macs: &MacCounter) -> Result<Tensor> {
    let (rows, fan_in) = x.dims2()?;
    macs.add((rows * fan_in * w.dim(1)?) as f64);
    broadcast::add(&x.matmul(&param(w, x)?)?, &param(b, x)?)
}

/// x·W + b over the last dimension of x (any leading shape), counting rows·in·out MACs. On the
/// CPU one op (`linear.rs`, a zero bias when there is none); elsewhere candle's matmul.
pub fn linear(x: &Tensor, w: &Var, b: Option<&Var>, macs: &MacCounter) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let fan_in = *dims.last().expect("at least 1-D");
    let rows = x.elem_count() / fan_in;
    let out = w.dim(1)?;
    macs.add((rows * fan_in * out) as f64);
    if cpu_kernel(x) {
        return match b {
            Some(b) => linear::linear(x, &param(w, x)?, &param(b, x)?),
            None => linear::linear(x, &param(w, x)?, &Tensor::zeros(out, x.dtype(), x.device())?),
        };
    }
    let y = x.reshape((rows, fan_in))?.matmul(&param(w, x)?)?;
    let y = match b {
        Some(b) => y.broadcast_add(&param(b, x)?)?,
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
    if cpu_kernel(x) {
        let row = |v: &Var| param(v, x)?.reshape((1, v.elem_count()));
        return layer_norm::layer_norm_scaled(x, &row(gamma)?, &row(beta)?, eps);
    }
    broadcast::add(&broadcast::mul(&layer_norm(x, eps)?, &param(gamma, x)?)?, &param(beta, x)?)
}

/// GroupNorm on [B, C, H, W] maps (`groups` groups, per-channel γ, β), then SiLU if `silu`; one
/// op on the CPU (`norm.rs`).
pub fn group_norm_silu(x: &Tensor, groups: usize, gamma: &Var, beta: &Var, eps: f64, silu: bool) -> Result<Tensor> {
    if cpu_kernel(x) {
        return norm::group_norm(x, groups, &param(gamma, x)?, &param(beta, x)?, eps, silu);
    }
    let y = group_norm(x, groups, gamma, beta, eps)?;
    if silu {
        y.silu()
    } else {
        Ok(y)
    }
}

/// The composition of GroupNorm on [B, C, H, W] maps (the layout of candle's conv2d): statistics per (sample,
/// group) over the group's channels and all pixels, then a per-channel affine.
pub fn group_norm(x: &Tensor, groups: usize, gamma: &Var, beta: &Var, eps: f64) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let n = layer_norm(&x.reshape((b, groups, c / groups * h * w))?, eps)?.reshape((b, c, h, w))?;
    let per_channel = |v: &Var| param(v, x)?.reshape((1, c, 1, 1));
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
    if !cpu_kernel(qkv) {
        let s = qkv.chunk(3, D::Minus1)?;
        return attention_composed(&s[0], &s[1], &s[2], heads, macs);
    }
    macs.add((2 * b * n * n * (d3 / 3)) as f64);
    attention::self_attention(qkv, heads)
}

/// Cross-attention of q [B, Nq, d] over kv [B, Nk, 2d] = [k | v]: [B, Nq, d]; counts as above.
pub fn cross_attention(q: &Tensor, kv: &Tensor, heads: usize, macs: &MacCounter) -> Result<Tensor> {
    if !cpu_kernel(q) {
        let s = kv.chunk(2, D::Minus1)?;
        return attention_composed(q, &s[0], &s[1], heads, macs);
    }
    let (b, nq, d) = q.dims3()?;
    macs.add((2 * b * nq * kv.dim(1)? * d) as f64);
    attention::cross_attention(q, kv, heads)
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
    if cpu_kernel(x) {
        return layer_norm::layer_norm_scaled(x, &(scale + 1.0)?, shift, eps);
    }
    modulate(&layer_norm(x, eps)?, shift, scale)
}

/// Nearest-neighbour 2× upsampling of [B, C, H, W] by broadcasting, whose backward (a sum over
/// the copies) is exact even when the input is reused, unlike candle's `upsample_nearest2d`.
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    broadcast::broadcast_to(&x.reshape((b, c, h, 1, w, 1))?, &[b, c, h, 2, w, 2])?.reshape((b, c, 2 * h, 2 * w))
}
