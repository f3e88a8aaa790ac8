//! PixArt-α-style DiT configs (Li et al. 2024, Table 2) and their analytic counts.
//!
//! Block: LN (no affine), self-attention (qkv and proj with bias), cross-attention to the
//! caption tokens (q, kv, proj with bias), LN, MLP 4×, and a learned 6×d scale-shift table
//! (adaLN-single: one shared `t_block` Linear(d, 6d) feeds every block). The caption MLP
//! (`y_proj`) is dropped when the caption width already equals d ("Cap. Emb = N", §3.4).

use super::{require, Category, Tally};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PixArtConfig {
    pub depth: u64,
    pub hidden: u64,
    pub heads: u64,
    #[serde(default = "default_patch")]
    pub patch: u64,
    /// Latent side length (32 for 256² images).
    #[serde(default = "default_input")]
    pub input_size: u64,
    #[serde(default = "default_in")]
    pub in_channels: u64,
    #[serde(default = "default_true")]
    pub learn_sigma: bool,
    /// Width of the text encoder's token features (1024 for OpenCLIP-H, 4096 for T5-XXL).
    pub caption_channels: u64,
    /// Caption tokens (77 for CLIP, 120 for PixArt-α's T5).
    pub caption_tokens: u64,
    /// Whether the caption MLP `y_proj` exists.
    #[serde(default = "default_true")]
    pub caption_embedding: bool,
    #[serde(default = "default_mlp")]
    pub mlp_ratio: f64,
}

fn default_patch() -> u64 {
    2
}
fn default_input() -> u64 {
    32
}
fn default_in() -> u64 {
    4
}
fn default_true() -> bool {
    true
}
fn default_mlp() -> f64 {
    4.0
}

impl PixArtConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        require(&mut e, self.depth >= 1, "depth", "must be at least 1");
        require(&mut e, self.hidden >= 1, "hidden", "must be at least 1");
        require(&mut e, self.heads >= 1, "heads", "must be at least 1");
        require(&mut e, self.patch >= 1, "patch", "must be at least 1");
        if self.patch >= 1 {
            require(&mut e, self.input_size.is_multiple_of(self.patch), "input_size", "must be divisible by patch");
        }
        require(&mut e, self.mlp_ratio > 0.0 && self.mlp_ratio <= 64.0, "mlp_ratio", "must be in (0, 64]");
        e
    }

    pub fn count(&self) -> Tally {
        use Category::*;
        let d = self.hidden;
        let p = self.patch;
        let side = self.input_size / p;
        let t = (side * side) as f64;
        let l = self.caption_tokens as f64;
        let out = if self.learn_sigma { 2 * self.in_channels } else { self.in_channels };
        let mlp = (d as f64 * self.mlp_ratio) as u64;
        let mut c = Tally::new();

        c.part("embed");
        c.conv(side, side, self.in_channels, d, p, true);
        c.linear(OtherLinear, 1.0, 256, d, true);
        c.linear(OtherLinear, 1.0, d, d, true);
        c.linear(OtherLinear, 1.0, d, 6 * d, true); // t_block (adaLN-single)
        if self.caption_embedding {
            c.linear(OtherLinear, l, self.caption_channels, d, true);
            c.linear(OtherLinear, l, d, d, true);
        }

        c.part("blocks");
        for _ in 0..self.depth {
            c.linear(TokenLinear, t, d, 3 * d, true);
            c.attention(SelfAttention, t, t, d);
            c.linear(TokenLinear, t, d, d, true);
            c.linear(TokenLinear, t, d, d, true);
            c.linear(OtherLinear, l, d, 2 * d, true);
            c.attention(CrossAttention, t, l, d);
            c.linear(TokenLinear, t, d, d, true);
            c.linear(TokenLinear, t, d, mlp, true);
            c.linear(TokenLinear, t, mlp, d, true);
            c.params(6 * d); // scale_shift_table
        }

        c.part("final");
        c.params(2 * d);
        c.linear(TokenLinear, t, d, p * p * out, true);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_pixart_alpha_xl2_is_0_61b() {
        let c = PixArtConfig {
            depth: 28,
            hidden: 1152,
            heads: 16,
            patch: 2,
            input_size: 32,
            in_channels: 4,
            learn_sigma: true,
            caption_channels: 4096,
            caption_tokens: 120,
            caption_embedding: true,
            mlp_ratio: 4.0,
        };
        let p = c.count().total().params as f64 / 1e9;
        assert!((p - 0.611).abs() < 0.001, "{p}");
    }
}
