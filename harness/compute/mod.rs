//! Analytic parameter and compute accounting.
//!
//! Every count is derived from a model config (the same structs the candle models are built
//! from); nothing is typed in. A [`Tally`] accumulates parameters and multiply-accumulates
//! (MACs) split by category, so that each paper's convention is a choice of categories and a
//! multiplier rather than a separate counter:
//!
//! | paper | printed unit | what it is |
//! |---|---|---|
//! | DiT (Peebles & Xie 2023) | "Gflops" | MACs, attention matmuls included (DiT issue #14) |
//! | Mei et al. 2024 | "GFLOPS" | ≈ 2 × MACs, attention matmuls included |
//! | Li et al. 2024 | "GMACs" | MACs of conv and linear layers only |

pub mod budget;
pub mod dit;
pub mod microdit;
pub mod mlp;
pub mod pixart;
pub mod unet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use dit::DitConfig;
pub use microdit::MicroDitConfig;
pub use mlp::MlpConfig;
pub use pixart::PixArtConfig;
pub use unet::UnetConfig;

/// What a multiply-accumulate was spent on. Conventions differ in which of these they count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Convolutions (patch embedding, UNet convs).
    Conv,
    /// Linear layers applied to every image token: they scale with the number of tokens kept.
    TokenLinear,
    /// Linear layers applied once per sample or per context token (embeddings, adaLN, text K/V).
    OtherLinear,
    /// Self-attention matmuls QKᵀ and AV: quadratic in image tokens.
    SelfAttention,
    /// Cross-attention matmuls against context tokens: linear in image tokens.
    CrossAttention,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Conv,
        Category::TokenLinear,
        Category::OtherLinear,
        Category::SelfAttention,
        Category::CrossAttention,
    ];

    pub fn is_attention(self) -> bool {
        matches!(self, Category::SelfAttention | Category::CrossAttention)
    }
}

/// Parameters and MACs of one component of a model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// Trainable parameters.
    pub params: u64,
    /// Parameters stored but not trained (DiT's fixed sin-cos position embedding).
    pub frozen: u64,
    /// Forward-pass MACs for one sample, by category.
    pub macs: BTreeMap<Category, f64>,
}

impl Count {
    pub fn add(&mut self, other: &Count) {
        self.params += other.params;
        self.frozen += other.frozen;
        for (k, v) in &other.macs {
            *self.macs.entry(*k).or_default() += v;
        }
    }

    /// MACs summed over the given categories.
    pub fn macs_in(&self, cats: &[Category]) -> f64 {
        cats.iter().map(|c| self.macs.get(c).copied().unwrap_or(0.0)).sum()
    }
}

/// An accumulating counter with a breakdown by named part ("blocks", "embed", ...).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    parts: Vec<(String, Count)>,
    current: usize,
}

impl Tally {
    pub fn new() -> Self {
        Tally { parts: vec![("model".into(), Count::default())], current: 0 }
    }

    /// Attribute everything counted from now on to `name` (created on first use).
    pub fn part(&mut self, name: &str) -> &mut Self {
        self.current = match self.parts.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.parts.push((name.to_string(), Count::default()));
                self.parts.len() - 1
            }
        };
        self
    }

    fn cur(&mut self) -> &mut Count {
        &mut self.parts[self.current].1
    }

    pub fn params(&mut self, n: u64) {
        self.cur().params += n;
    }

    pub fn frozen(&mut self, n: u64) {
        self.cur().frozen += n;
    }

    pub fn macs(&mut self, cat: Category, n: f64) {
        *self.cur().macs.entry(cat).or_default() += n;
    }

    /// `nn.Linear(fan_in, fan_out)` applied to `tokens` vectors.
    pub fn linear(&mut self, cat: Category, tokens: f64, fan_in: u64, fan_out: u64, bias: bool) {
        self.params(fan_in * fan_out + if bias { fan_out } else { 0 });
        self.macs(cat, tokens * (fan_in * fan_out) as f64);
    }

    /// A k×k convolution producing an `h_out × w_out` map.
    pub fn conv(&mut self, h_out: u64, w_out: u64, cin: u64, cout: u64, k: u64, bias: bool) {
        self.params(cin * cout * k * k + if bias { cout } else { 0 });
        self.macs(Category::Conv, (h_out * w_out * cin * cout * k * k) as f64);
    }

    /// Attention matmuls: QKᵀ (nq·nk·d) plus AV (nq·nk·d).
    pub fn attention(&mut self, cat: Category, nq: f64, nk: f64, dim: u64) {
        self.macs(cat, 2.0 * nq * nk * dim as f64);
    }

    /// Normalisation with an affine weight (and bias when `bias`).
    pub fn norm(&mut self, dim: u64, bias: bool) {
        self.params(if bias { 2 * dim } else { dim });
    }

    pub fn total(&self) -> Count {
        let mut t = Count::default();
        for (_, c) in &self.parts {
            t.add(c);
        }
        t
    }

    /// Per-part counts, dropping empty parts.
    pub fn breakdown(&self) -> Vec<(String, Count)> {
        self.parts.iter().filter(|(_, c)| c.params > 0 || c.frozen > 0 || !c.macs.is_empty()).cloned().collect()
    }
}

/// Any model family diffscale can count (and, for the small configs, build).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelConfig {
    /// DiT (Peebles & Xie 2023), any block design.
    Dit(DitConfig),
    /// SD-style `UNet2DConditionModel` (SD1.5, SD2, SDXL shapes; Mei's width family).
    Unet(UnetConfig),
    /// PixArt-α-style DiT with adaLN-single and cross-attention (Li et al. Table 2).
    Pixart(PixArtConfig),
    /// MicroDiT (Sehwag et al. 2024): patch-mixer, masking, expert-choice MoE, layer-wise scaling.
    Microdit(MicroDitConfig),
    /// The MLP denoiser family for vector data (trained by the harness).
    Mlp(MlpConfig),
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::suite::yaml::{tagged, variant};
        tagged(d, "family", &["dit", "unet", "pixart", "microdit", "mlp"], |name, v| match name {
            "dit" => variant(v).map(ModelConfig::Dit),
            "unet" => variant(v).map(ModelConfig::Unet),
            "pixart" => variant(v).map(ModelConfig::Pixart),
            "microdit" => variant(v).map(ModelConfig::Microdit),
            "mlp" => variant(v).map(ModelConfig::Mlp),
            other => unreachable!("`tagged` admits only the listed families, not {other}"),
        })
    }
}

impl ModelConfig {
    pub fn count(&self) -> Tally {
        match self {
            ModelConfig::Dit(c) => c.count(),
            ModelConfig::Unet(c) => c.count(),
            ModelConfig::Pixart(c) => c.count(),
            ModelConfig::Microdit(c) => c.count(),
            ModelConfig::Mlp(c) => c.count(),
        }
    }

    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::Dit(_) => "dit",
            ModelConfig::Unet(_) => "unet",
            ModelConfig::Pixart(_) => "pixart",
            ModelConfig::Microdit(_) => "microdit",
            ModelConfig::Mlp(_) => "mlp",
        }
    }

    /// The same model as inference sees it: every patch kept (MicroDiT's masking is training-only).
    pub fn unmasked(&self) -> ModelConfig {
        match self {
            ModelConfig::Dit(c) => ModelConfig::Dit(dit::DitConfig { mask_ratio: 0.0, ..c.clone() }),
            other => other.clone(),
        }
    }

    /// Classes of a trainable family's label embedding (the null class not counted).
    pub fn num_classes(&self) -> Option<u64> {
        match self {
            ModelConfig::Mlp(c) => c.classes,
            ModelConfig::Dit(c) => Some(c.num_classes),
            ModelConfig::Unet(c) => c.num_classes,
            _ => None,
        }
    }

    /// Width of the conditioning vector appended to each input row (0: none).
    pub fn cond_dim(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.cond_dim.unwrap_or(0) as usize,
            _ => 0,
        }
    }

    /// Width of one flattened sample (vector or channel-last image) a trainable model sees.
    pub fn data_dim(&self) -> usize {
        match self {
            ModelConfig::Dit(c) => (c.input_size * c.input_size * c.in_channels) as usize,
            ModelConfig::Unet(c) => (c.sample_size * c.sample_size * c.in_channels) as usize,
            ModelConfig::Pixart(c) => (c.input_size * c.input_size * c.in_channels) as usize,
            ModelConfig::Microdit(c) => (c.input_size * c.input_size * c.in_channels) as usize,
            ModelConfig::Mlp(c) => c.data_dim as usize,
        }
    }

    /// Structural problems (zero width, indivisible patch, ...), as (field, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            ModelConfig::Dit(c) => c.validate(),
            ModelConfig::Unet(c) => c.validate(),
            ModelConfig::Pixart(c) => c.validate(),
            ModelConfig::Microdit(c) => c.validate(),
            ModelConfig::Mlp(c) => c.validate(),
        }
    }
}

/// A named way of turning MACs into a printed number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// MACs, attention matmuls included: DiT's "Gflops" (DiT issue #14).
    #[default]
    Macs,
    /// MACs of conv and linear layers only: Li et al.'s "GMACs".
    MacsNoAttention,
    /// 2 × MACs, attention matmuls included: Mei et al.'s "GFLOPS".
    Flops,
    /// 2 × MACs of conv and linear layers only.
    FlopsNoAttention,
}

impl Convention {
    pub const ALL: [Convention; 4] =
        [Convention::Macs, Convention::MacsNoAttention, Convention::Flops, Convention::FlopsNoAttention];

    pub fn multiplier(self) -> f64 {
        match self {
            Convention::Macs | Convention::MacsNoAttention => 1.0,
            Convention::Flops | Convention::FlopsNoAttention => 2.0,
        }
    }

    pub fn includes(self, cat: Category) -> bool {
        match self {
            Convention::Macs | Convention::Flops => true,
            Convention::MacsNoAttention | Convention::FlopsNoAttention => !cat.is_attention(),
        }
    }

    /// The forward cost of `count` in this convention (in units of one op).
    pub fn forward(self, count: &Count, only: Option<&[Category]>) -> f64 {
        let cats: Vec<Category> =
            Category::ALL.into_iter().filter(|c| self.includes(*c) && only.is_none_or(|o| o.contains(c))).collect();
        self.multiplier() * count.macs_in(&cats)
    }

    pub fn label(self) -> &'static str {
        match self {
            Convention::Macs => "MACs incl. attention (DiT \"Gflops\")",
            Convention::MacsNoAttention => "MACs excl. attention matmuls (Li \"GMACs\")",
            Convention::Flops => "2×MACs incl. attention (Mei \"GFLOPS\")",
            Convention::FlopsNoAttention => "2×MACs excl. attention matmuls",
        }
    }
}

/// Round `x` up to a multiple of `m`.
pub(crate) fn round_up(x: u64, m: u64) -> u64 {
    x.div_ceil(m) * m
}

/// numpy's `linspace(start, stop, num)`: `start + i·step`, with the last point exactly `stop`.
pub(crate) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// Checks shared by the families' `validate`.
pub(crate) fn require(errs: &mut Vec<(String, String)>, ok: bool, field: &str, msg: &str) {
    if !ok {
        errs.push((field.to_string(), msg.to_string()));
    }
}
