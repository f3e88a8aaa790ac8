//! DiT (Peebles & Xie 2023, arXiv 2212.09748) configs and their analytic counts.
//!
//! Mirrors `facebookresearch/DiT` `models.py`: patch embedding (conv k = stride = p), fixed
//! sin-cos position embedding (frozen), timestep MLP (256 → d → d), label embedding with a null
//! class, N blocks, final layer. The block designs are those of §3.2 / Fig. 3:
//! adaLN-Zero and adaLN regress (shift, scale[, gate]) per block from c = t_emb + y_emb;
//! cross-attention appends a multi-head cross-attention to the 2-token sequence [t_emb; y_emb];
//! in-context appends those two tokens to the image tokens.

use super::{require, Category, Tally};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the block sees the conditioning (DiT §3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DitBlock {
    /// Adaptive layer norm with zero-initialised residual gates (6d modulation per block).
    #[default]
    AdalnZero,
    /// Adaptive layer norm without gates (4d modulation per block).
    Adaln,
    /// A cross-attention layer over the two conditioning tokens, no modulation.
    CrossAttention,
    /// The two conditioning tokens appended to the sequence, no modulation.
    InContext,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DitConfig {
    /// Number of transformer blocks N.
    pub depth: u64,
    /// Hidden width d.
    pub hidden: u64,
    /// Attention heads (does not change the counts).
    pub heads: u64,
    /// Patch size p.
    pub patch: u64,
    /// Latent side length I (32 for 256² images through the SD VAE).
    #[serde(default = "default_input")]
    pub input_size: u64,
    #[serde(default = "default_in_channels")]
    pub in_channels: u64,
    /// Predict Σ as well as ε (out channels = 2 × in), as DiT does.
    #[serde(default = "default_true")]
    pub learn_sigma: bool,
    /// Classes of the label embedder; one extra null class is added for guidance.
    #[serde(default = "default_classes")]
    pub num_classes: u64,
    #[serde(default)]
    pub block: DitBlock,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// MicroDiT's patch-mixer (Sehwag et al. 2024, §3.2): this many adaLN-Zero blocks of width
    /// `mixer_hidden` on every patch, then a linear map to `hidden`. 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mixer_depth: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mixer_hidden: u64,
    /// Fraction of patches dropped in training: after the mixer (deferred masking), or right
    /// after the patch embedding when there is none (naive masking). Counts are of the masked
    /// training forward pass; sampling always sees every patch.
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub mask_ratio: f64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

fn default_input() -> u64 {
    32
}
fn default_in_channels() -> u64 {
    4
}
fn default_true() -> bool {
    true
}
fn default_classes() -> u64 {
    1000
}
fn default_mlp_ratio() -> f64 {
    4.0
}

/// Width of DiT's sinusoidal timestep features.
const FREQ_DIM: u64 = 256;

impl DitConfig {
    /// The named configs of DiT Table 1 (S, B, L, XL) at patch size `p`.
    pub fn named(size: &str, patch: u64) -> Option<Self> {
        let (depth, hidden, heads) = match size {
            "S" => (12, 384, 6),
            "B" => (12, 768, 12),
            "L" => (24, 1024, 16),
            "XL" => (28, 1152, 16),
            _ => return None,
        };
        Some(DitConfig {
            depth,
            hidden,
            heads,
            patch,
            input_size: 32,
            in_channels: 4,
            learn_sigma: true,
            num_classes: 1000,
            block: DitBlock::AdalnZero,
            mlp_ratio: 4.0,
            mixer_depth: 0,
            mixer_hidden: 0,
            mask_ratio: 0.0,
        })
    }

    pub fn tokens(&self) -> u64 {
        (self.input_size / self.patch).pow(2)
    }

    pub fn out_channels(&self) -> u64 {
        if self.learn_sigma {
            2 * self.in_channels
        } else {
            self.in_channels
        }
    }

    pub fn mlp_hidden(&self) -> u64 {
        (self.hidden as f64 * self.mlp_ratio) as u64
    }

    /// Patches the backbone sees in (masked) training: ⌊(1 − m)·T⌋, at least one.
    pub fn kept_tokens(&self) -> u64 {
        (((1.0 - self.mask_ratio) * self.tokens() as f64).floor() as u64).max(1)
    }

    /// Width of the patch embedding: the mixer's, when there is one.
    pub fn embed_width(&self) -> u64 {
        if self.mixer_depth > 0 {
            self.mixer_hidden
        } else {
            self.hidden
        }
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        require(&mut e, self.depth >= 1, "depth", "must be at least 1");
        require(&mut e, self.hidden >= 1, "hidden", "must be at least 1");
        require(&mut e, self.heads >= 1, "heads", "must be at least 1");
        require(&mut e, self.patch >= 1, "patch", "must be at least 1");
        if self.heads >= 1 {
            require(&mut e, self.hidden.is_multiple_of(self.heads), "hidden", "must be divisible by heads");
        }
        if self.patch >= 1 {
            require(&mut e, self.input_size.is_multiple_of(self.patch), "input_size", "must be divisible by patch");
        }
        require(&mut e, self.mlp_ratio > 0.0 && self.mlp_ratio <= 64.0, "mlp_ratio", "must be in (0, 64]");
        require(&mut e, (0.0..1.0).contains(&self.mask_ratio), "mask_ratio", "must be in [0, 1)");
        if self.mixer_depth > 0 {
            let ok = self.mixer_hidden >= 1 && self.heads >= 1 && self.mixer_hidden.is_multiple_of(self.heads);
            require(&mut e, ok, "mixer_hidden", "must be a positive multiple of heads");
        }
        let plain = self.block == DitBlock::AdalnZero || (self.mixer_depth == 0 && self.mask_ratio == 0.0);
        require(&mut e, plain, "block", "a mixer or masking needs the adaln_zero block");
        e
    }

    pub fn count(&self) -> Tally {
        use Category::*;
        let d = self.hidden;
        let p = self.patch;
        let t = self.tokens() as f64;
        let side = self.input_size / p;
        let mut c = Tally::new();

        let de = self.embed_width();
        c.part("embed");
        c.conv(side, side, self.in_channels, de, p, true);
        c.frozen(self.tokens() * de);
        c.linear(OtherLinear, 1.0, FREQ_DIM, d, true);
        c.linear(OtherLinear, 1.0, d, d, true);
        c.params((self.num_classes + 1) * d);

        // Masked training: the backbone and final layer see the kept patches only.
        let kept = self.kept_tokens() as f64;
        if self.mixer_depth > 0 {
            let (dm, hm) = (self.mixer_hidden, (self.mixer_hidden as f64 * self.mlp_ratio) as u64);
            c.part("mixer");
            for _ in 0..self.mixer_depth {
                c.linear(TokenLinear, t, dm, 3 * dm, true);
                c.attention(SelfAttention, t, t, dm);
                c.linear(TokenLinear, t, dm, dm, true);
                c.linear(TokenLinear, t, dm, hm, true);
                c.linear(TokenLinear, t, hm, dm, true);
                c.linear(OtherLinear, 1.0, d, 6 * dm, true);
            }
            c.linear(TokenLinear, kept, dm, d, true);
        }
        let t = kept;

        // In-context conditioning lengthens the sequence by the two conditioning tokens.
        let seq = if self.block == DitBlock::InContext { t + 2.0 } else { t };
        c.part("blocks");
        for _ in 0..self.depth {
            c.linear(TokenLinear, seq, d, 3 * d, true);
            c.attention(SelfAttention, seq, seq, d);
            c.linear(TokenLinear, seq, d, d, true);
            c.linear(TokenLinear, seq, d, self.mlp_hidden(), true);
            c.linear(TokenLinear, seq, self.mlp_hidden(), d, true);
            match self.block {
                DitBlock::AdalnZero => c.linear(OtherLinear, 1.0, d, 6 * d, true),
                DitBlock::Adaln => c.linear(OtherLinear, 1.0, d, 4 * d, true),
                DitBlock::CrossAttention => {
                    c.linear(TokenLinear, seq, d, d, true);
                    c.linear(OtherLinear, 2.0, d, 2 * d, true);
                    c.attention(CrossAttention, seq, 2.0, d);
                    c.linear(TokenLinear, seq, d, d, true);
                }
                DitBlock::InContext => {}
            }
        }

        c.part("final");
        if matches!(self.block, DitBlock::AdalnZero | DitBlock::Adaln) {
            c.linear(OtherLinear, 1.0, d, 2 * d, true);
        }
        c.linear(TokenLinear, t, d, p * p * self.out_channels(), true);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::Convention;

    fn gmacs(c: &DitConfig) -> f64 {
        Convention::Macs.forward(&c.count().total(), None) / 1e9
    }

    #[test]
    fn xl2_matches_published_parameter_counts() {
        let c = DitConfig::named("XL", 2).unwrap().count().total();
        // Trainable params of DiT-XL/2 and with the frozen pos_embed (papers.md §3.2).
        assert_eq!(c.params, 674_834_720);
        assert_eq!(c.params + c.frozen, 675_129_632);
    }

    #[test]
    fn table4_gflops_within_rounding() {
        let cases = [("S", 8, 0.36), ("B", 4, 5.56), ("L", 2, 80.71), ("XL", 2, 118.64)];
        for (s, p, want) in cases {
            let got = gmacs(&DitConfig::named(s, p).unwrap());
            assert!((got - want).abs() < 0.05, "{s}/{p}: {got} vs {want}");
        }
    }

    #[test]
    fn block_variants_match_section5() {
        let mut c = DitConfig::named("XL", 2).unwrap();
        for (b, gf, params_m) in [
            (DitBlock::InContext, 119.37, 449.0),
            (DitBlock::CrossAttention, 137.62, 598.0),
            (DitBlock::Adaln, 118.56, 600.0),
        ] {
            c.block = b;
            let n = c.count().total();
            assert!((gmacs(&c) - gf).abs() < 0.05, "{b:?}: {}", gmacs(&c));
            assert!((n.params as f64 / 1e6 - params_m).abs() < 1.0, "{b:?}: {}", n.params);
        }
    }
}
