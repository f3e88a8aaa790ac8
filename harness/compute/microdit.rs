//! MicroDiT (Sehwag et al. 2024, arXiv 2407.15811) configs and their analytic counts.
//!
//! Mirrors `SonyResearch/micro_diffusion` `models/dit.py` (read at 900d7d4): a caption MLP and
//! one attention block over the caption tokens, a pooled-caption MLP added to the timestep
//! embedding, a patch-mixer of DiT blocks (self-attention, cross-attention, adaLN-Zero
//! modulation), masking after the mixer ("deferred") or before it ("naive"), then the backbone
//! with layer-wise scaled qkv and FFN widths and expert-choice MoE FFNs in alternate blocks.
//! LayerNorms carry a weight and no bias; the QK-norms carry nothing.
//!
//! Expert-choice dispatch is counted as a gather (no MACs): each of the E experts processes
//! k = ⌊capacity·T/E⌋ tokens. The reference code dispatches with one-hot einsums, an
//! implementation cost that is not part of the model.

use super::{linspace, require, round_up, Category, Tally};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where tokens are dropped during masked training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    /// After the patch-mixer: the mixer sees every patch (the paper's method).
    #[default]
    Deferred,
    /// Before the patch-mixer.
    Naive,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MicroDitConfig {
    pub dim: u64,
    pub depth: u64,
    pub head_dim: u64,
    #[serde(default = "default_patch")]
    pub patch: u64,
    #[serde(default = "default_input")]
    pub input_size: u64,
    #[serde(default = "default_in")]
    pub in_channels: u64,
    #[serde(default = "default_multiple")]
    pub multiple_of: u64,
    #[serde(default = "default_caption")]
    pub caption_channels: u64,
    #[serde(default = "default_tokens")]
    pub caption_tokens: u64,
    /// qkv width multipliers of the first and last backbone block (linearly spaced between).
    #[serde(default = "default_qkv")]
    pub qkv_ratio: [f64; 2],
    /// FFN width multipliers of the first and last backbone block.
    #[serde(default = "default_mlp")]
    pub mlp_ratio: [f64; 2],
    pub patch_mixer_depth: u64,
    pub patch_mixer_dim: u64,
    #[serde(default = "default_mixer_mlp")]
    pub patch_mixer_mlp_ratio: f64,
    #[serde(default = "default_experts")]
    pub num_experts: u64,
    #[serde(default = "default_capacity")]
    pub expert_capacity: f64,
    /// MoE FFN every n-th block (never in the last backbone block); 0 disables MoE.
    #[serde(default = "default_every")]
    pub experts_every_n: u64,
    #[serde(default)]
    pub use_bias: bool,
    /// Fraction of patches dropped (training-time cost; 0 at inference).
    #[serde(default)]
    pub mask_ratio: f64,
    #[serde(default)]
    pub masking: Masking,
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
fn default_multiple() -> u64 {
    256
}
fn default_caption() -> u64 {
    1024
}
fn default_tokens() -> u64 {
    77
}
fn default_qkv() -> [f64; 2] {
    [0.5, 1.0]
}
fn default_mlp() -> [f64; 2] {
    [0.5, 4.0]
}
fn default_mixer_mlp() -> f64 {
    4.0
}
fn default_experts() -> u64 {
    8
}
fn default_capacity() -> f64 {
    2.0
}
fn default_every() -> u64 {
    2
}

/// Width of MicroDiT's sinusoidal timestep features.
const FREQ_DIM: u64 = 512;

/// Shapes of one DiT block of the mixer or backbone.
struct Block {
    dim: u64,
    qkv: u64,
    ffn_hidden: u64,
    moe: bool,
}

impl MicroDitConfig {
    /// `MicroDiT_XL_2` of the released code: 1.16B parameters (sparse).
    pub fn xl2() -> Self {
        MicroDitConfig {
            dim: 1024,
            depth: 28,
            head_dim: 64,
            patch: 2,
            input_size: 32,
            in_channels: 4,
            multiple_of: 256,
            caption_channels: 1024,
            caption_tokens: 77,
            qkv_ratio: [0.5, 1.0],
            mlp_ratio: [0.5, 4.0],
            patch_mixer_depth: 6,
            patch_mixer_dim: 768,
            patch_mixer_mlp_ratio: 4.0,
            num_experts: 8,
            expert_capacity: 2.0,
            experts_every_n: 2,
            use_bias: false,
            mask_ratio: 0.0,
            masking: Masking::Deferred,
        }
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        require(&mut e, self.dim >= 1, "dim", "must be at least 1");
        require(&mut e, self.depth >= 1, "depth", "must be at least 1");
        require(&mut e, self.head_dim >= 1, "head_dim", "must be at least 1");
        require(&mut e, self.patch >= 1, "patch", "must be at least 1");
        require(&mut e, self.multiple_of >= 1, "multiple_of", "must be at least 1");
        require(&mut e, self.patch_mixer_dim >= 1, "patch_mixer_dim", "must be at least 1");
        if self.patch >= 1 {
            require(&mut e, self.input_size.is_multiple_of(self.patch), "input_size", "must be divisible by patch");
        }
        if self.head_dim >= 1 {
            require(&mut e, self.dim.is_multiple_of(self.head_dim), "dim", "must be divisible by head_dim");
            require(
                &mut e,
                self.patch_mixer_dim.is_multiple_of(self.head_dim),
                "patch_mixer_dim",
                "must be divisible by head_dim",
            );
        }
        require(&mut e, (0.0..1.0).contains(&self.mask_ratio), "mask_ratio", "must be in [0, 1)");
        let ratios_ok = self.qkv_ratio.iter().chain(&self.mlp_ratio).all(|r| *r > 0.0 && *r <= 64.0);
        require(&mut e, ratios_ok, "qkv_ratio", "qkv and mlp ratios must be in (0, 64]");
        require(&mut e, self.num_experts >= 1, "num_experts", "must be at least 1");
        require(&mut e, self.expert_capacity > 0.0, "expert_capacity", "must be positive");
        e
    }

    fn block_shape(&self, dim: u64, qkv_ratio: f64, mlp_ratio: f64, moe: bool) -> Block {
        let step = 2 * self.head_dim;
        let qkv = if qkv_ratio != 1.0 { round_up((dim as f64 * qkv_ratio) as u64, step) } else { dim };
        let mlp_hidden = (dim as f64 * mlp_ratio) as u64;
        let ffn_hidden =
            if moe { round_up(mlp_hidden, self.multiple_of) } else { round_up(2 * mlp_hidden / 3, self.multiple_of) };
        Block { dim, qkv, ffn_hidden, moe }
    }

    /// One DiT block over `t` image tokens with `l` caption tokens of width `dim`.
    fn block(&self, c: &mut Tally, b: &Block, t: f64) {
        use Category::*;
        let (d, bias) = (b.dim, self.use_bias);
        let l = self.caption_tokens as f64;
        c.norm(d, false);
        c.linear(TokenLinear, t, d, 3 * b.qkv, bias);
        c.attention(SelfAttention, t, t, b.qkv);
        c.linear(TokenLinear, t, b.qkv, d, bias);
        c.norm(d, false);
        c.linear(TokenLinear, t, d, d, bias);
        c.linear(OtherLinear, l, d, 2 * d, bias);
        c.attention(CrossAttention, t, l, d);
        c.linear(TokenLinear, t, d, d, bias);
        c.norm(d, false);
        if b.moe {
            let e = self.num_experts;
            let per_expert = (self.expert_capacity * t / e as f64).floor();
            c.linear(TokenLinear, t, d, e, false);
            for _ in 0..e {
                c.linear(TokenLinear, per_expert, d, b.ffn_hidden, false);
                c.linear(TokenLinear, per_expert, b.ffn_hidden, d, false);
            }
        } else {
            c.linear(TokenLinear, t, d, b.ffn_hidden, bias);
            c.linear(TokenLinear, t, d, b.ffn_hidden, bias);
            c.linear(TokenLinear, t, b.ffn_hidden, d, bias);
        }
        c.linear(OtherLinear, 1.0, self.dim, 6 * d, true); // adaLN from the pooled vector
    }

    pub fn count(&self) -> Tally {
        use Category::*;
        let (d, p, bias) = (self.dim, self.patch, self.use_bias);
        let side = self.input_size / p;
        let t_all = (side * side) as f64;
        let t_kept = ((side * side) as f64 * (1.0 - self.mask_ratio)).floor();
        let l = self.caption_tokens as f64;
        let m = self.patch_mixer_dim;
        let mut c = Tally::new();

        c.part("embed");
        c.conv(side, side, self.in_channels, d, p, true);
        c.linear(OtherLinear, 1.0, FREQ_DIM, d, true);
        c.linear(OtherLinear, 1.0, d, d, true);

        c.part("caption");
        c.linear(OtherLinear, l, self.caption_channels, d, true);
        c.norm(d, false);
        c.linear(OtherLinear, l, d, d, true);
        c.norm(d, false);
        c.linear(OtherLinear, l, d, 3 * d, bias);
        c.attention(SelfAttention, l, l, d);
        c.linear(OtherLinear, l, d, d, bias);
        c.norm(d, false);
        let h = round_up(2 * (d * 4) / 3, self.multiple_of);
        c.linear(OtherLinear, l, d, h, bias);
        c.linear(OtherLinear, l, d, h, bias);
        c.linear(OtherLinear, l, h, d, bias);
        c.linear(OtherLinear, 1.0, d, d, true); // pooled-caption MLP
        c.norm(d, false);
        c.linear(OtherLinear, 1.0, d, d, true);

        c.part("mixer");
        let t_mixer = match self.masking {
            Masking::Deferred => t_all,
            Masking::Naive => t_kept,
        };
        if m != d {
            c.norm(d, false);
            c.linear(TokenLinear, t_mixer, d, m, bias);
            c.norm(m, false);
            c.linear(TokenLinear, t_kept, m, d, bias);
            c.norm(d, false);
            c.linear(OtherLinear, l, d, m, bias);
        }
        for i in 0..self.patch_mixer_depth {
            let moe = self.experts_every_n > 0 && i >= 1 && (i + 1) % self.experts_every_n == 0;
            let b = self.block_shape(m, 1.0, self.patch_mixer_mlp_ratio, moe);
            self.block(&mut c, &b, t_mixer);
        }

        c.part("backbone");
        let qkv = linspace(self.qkv_ratio[0], self.qkv_ratio[1], self.depth as usize);
        let mlp = linspace(self.mlp_ratio[0], self.mlp_ratio[1], self.depth as usize);
        for i in 0..self.depth {
            let moe = self.experts_every_n > 0 && i + 1 < self.depth && (i + 1) % self.experts_every_n == 0;
            let b = self.block_shape(d, qkv[i as usize], mlp[i as usize], moe);
            self.block(&mut c, &b, t_kept);
        }

        c.part("final");
        c.norm(d, false);
        c.linear(OtherLinear, 1.0, d, 2 * d, true);
        c.linear(TokenLinear, t_kept, d, p * p * self.in_channels, true);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xl2_is_1_16b_sparse() {
        // Our reading of the released code gives 1,165,442,320; docs/papers.md §4.2's hand recount
        // says 1,165,443,344 (1,024 more: one LayerNorm weight). Both are the paper's "1.16B".
        assert_eq!(MicroDitConfig::xl2().count().total().params, 1_165_442_320);
    }

    #[test]
    fn masking_keeps_a_quarter_of_backbone_tokens() {
        let mut cfg = MicroDitConfig::xl2();
        let full = cfg.count();
        cfg.mask_ratio = 0.75;
        let masked = cfg.count();
        let part = |t: &Tally, cat| t.breakdown().into_iter().find(|(n, _)| n == "backbone").unwrap().1.macs[&cat];
        let lin = part(&masked, Category::TokenLinear) / part(&full, Category::TokenLinear);
        let att = part(&masked, Category::SelfAttention) / part(&full, Category::SelfAttention);
        assert!((lin - 0.25).abs() < 1e-9, "{lin}");
        assert!((att - 0.0625).abs() < 1e-9, "{att}");
    }
}
