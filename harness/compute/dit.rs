//! DiT (Peebles & Xie 2023, arXiv 2212.09748) configs and their analytic counts.
//!
//! Mirrors `facebookresearch/DiT` `models.py`: patch embedding (conv k = stride = p), fixed
//! sin-cos position embedding (frozen), timestep MLP (256 → d → d), label embedding with a null
//! class, N blocks, final layer. The block designs are those of §3.2 / Fig. 3:
//! adaLN-Zero and adaLN regress (shift, scale[, gate]) per block from c = t_emb + y_emb;
//! cross-attention appends a multi-head cross-attention to the 2-token sequence [t_emb; y_emb];
//! in-context appends those two tokens to the image tokens.

use super::{linspace, require, round_up, Category, Tally};
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
    /// MicroDiT's layer-wise scaling: the backbone's attention and FFN widths grow linearly
    /// from the first block to the last. Absent: every block has width `hidden` and FFN
    /// `mlp_ratio`·`hidden`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layerwise: Option<LayerScaling>,
    /// MicroDiT's expert-choice mixture-of-experts FFN in alternate backbone blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<Experts>,
}

/// Width multipliers of the first and last backbone block, linearly spaced between (numpy's
/// `linspace`, as micro_diffusion's `qkv_multipliers` / `ffn_multipliers`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerScaling {
    /// Attention width ÷ `hidden`: rounded up to a multiple of two heads, the head width fixed
    /// at `hidden / heads`, so a narrower block has fewer heads.
    pub qkv: [f64; 2],
    /// FFN hidden width ÷ `hidden` (floored).
    pub mlp: [f64; 2],
}

/// Expert-choice routing (Zhou et al. 2022; micro_diffusion `FeedForwardECMoe`): a router
/// scores every token for every expert (softmax over experts); each expert takes its
/// k = ⌊capacity·T/E⌋ highest-scoring tokens of the sample, runs its own GELU FFN (no biases)
/// on them, and adds the result weighted by the score back to those tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experts {
    /// Experts per MoE block E.
    pub num: u64,
    /// Tokens processed per token of the sample, over all experts.
    #[serde(default = "default_capacity")]
    pub capacity: f64,
    /// Block i (0-based) is MoE when (i + 1) is a multiple of this, except the last block.
    #[serde(default = "default_every")]
    pub every: u64,
}

impl Experts {
    /// Tokens each expert takes from a sample of `tokens` tokens: ⌊capacity·T/E⌋.
    pub fn per_expert(&self, tokens: u64) -> u64 {
        (self.capacity * tokens as f64 / self.num as f64).floor() as u64
    }
}

fn default_capacity() -> f64 {
    2.0
}
fn default_every() -> u64 {
    2
}

/// The widths of one backbone block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockShape {
    /// Width of q, k and v (and the attention output before its projection).
    pub qkv: u64,
    pub heads: u64,
    /// FFN hidden width (of each expert in an MoE block).
    pub mlp: u64,
    /// Tokens each expert takes, when the block is MoE.
    pub per_expert: Option<u64>,
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
            layerwise: None,
            experts: None,
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

    /// Widths of backbone block `i` seeing `tokens` tokens (one place for the model and its count).
    pub fn block_shape(&self, i: u64, tokens: u64) -> BlockShape {
        let d = self.hidden;
        let (qkv, heads, mlp) = match &self.layerwise {
            None => (d, self.heads, self.mlp_hidden()),
            Some(l) => {
                let n = self.depth as usize;
                let (rq, rm) =
                    (linspace(l.qkv[0], l.qkv[1], n)[i as usize], linspace(l.mlp[0], l.mlp[1], n)[i as usize]);
                let head = d / self.heads;
                let qkv = if rq == 1.0 { d } else { round_up((d as f64 * rq) as u64, 2 * head) };
                (qkv, qkv / head, ((d as f64 * rm) as u64).max(1))
            }
        };
        let per_expert = self.experts.as_ref().and_then(|e| {
            let moe = e.every >= 1 && i + 1 < self.depth && (i + 1).is_multiple_of(e.every);
            moe.then(|| e.per_expert(tokens))
        });
        BlockShape { qkv, heads, mlp, per_expert }
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
        if let Some(l) = &self.layerwise {
            let ok = l.qkv.iter().chain(&l.mlp).all(|r| *r > 0.0 && *r <= 64.0);
            require(&mut e, ok, "layerwise", "qkv and mlp multipliers must be in (0, 64]");
        }
        if let Some(x) = &self.experts {
            require(&mut e, x.num >= 1, "experts", "`num` must be at least 1");
            require(&mut e, x.every >= 1, "experts", "`every` must be at least 1");
            let k = if x.num >= 1 { x.per_expert(self.kept_tokens()) } else { 0 };
            let ok = x.capacity > 0.0 && k >= 1 && k <= self.kept_tokens();
            require(&mut e, ok, "experts", "capacity·tokens/num must give each expert between 1 and all tokens");
        }
        let microdit =
            self.mixer_depth > 0 || self.mask_ratio > 0.0 || self.layerwise.is_some() || self.experts.is_some();
        let plain = self.block == DitBlock::AdalnZero || !microdit;
        require(&mut e, plain, "block", "a mixer, masking, layer-wise scaling or experts need the adaln_zero block");
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
        for i in 0..self.depth {
            let b = self.block_shape(i, seq as u64);
            c.linear(TokenLinear, seq, d, 3 * b.qkv, true);
            c.attention(SelfAttention, seq, seq, b.qkv);
            c.linear(TokenLinear, seq, b.qkv, d, true);
            match (b.per_expert, &self.experts) {
                // Dispatch and combine are gathers (no MACs); each expert sees its k tokens.
                (Some(k), Some(x)) => {
                    c.linear(TokenLinear, seq, d, x.num, false);
                    for _ in 0..x.num {
                        c.linear(TokenLinear, k as f64, d, b.mlp, false);
                        c.linear(TokenLinear, k as f64, b.mlp, d, false);
                    }
                }
                _ => {
                    c.linear(TokenLinear, seq, d, b.mlp, true);
                    c.linear(TokenLinear, seq, b.mlp, d, true);
                }
            }
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
        // Trainable params of DiT-XL/2 and with the frozen pos_embed (docs/papers.md §3.2).
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

    #[test]
    fn layerwise_widths_and_moe_blocks_follow_micro_diffusion() {
        // MicroDiT-XL/2's backbone (d = 1024, head 64, 28 blocks, qkv ×[0.5, 1], FFN ×[0.5, 4],
        // 8 experts of capacity 2 every 2nd block but the last) at 256 tokens.
        let mut c = DitConfig::named("XL", 2).unwrap();
        (c.hidden, c.heads) = (1024, 16);
        c.layerwise = Some(LayerScaling { qkv: [0.5, 1.0], mlp: [0.5, 4.0] });
        c.experts = Some(Experts { num: 8, capacity: 2.0, every: 2 });
        let first = c.block_shape(0, 256);
        assert_eq!(first, BlockShape { qkv: 512, heads: 8, mlp: 512, per_expert: None });
        // linspace(0.5, 1, 28)[1] = 0.5185…: 530 rounded up to two heads of 64.
        assert_eq!(c.block_shape(1, 256), BlockShape { qkv: 640, heads: 10, mlp: 644, per_expert: Some(64) });
        let last = c.block_shape(27, 256);
        assert_eq!((last.qkv, last.heads, last.mlp, last.per_expert), (1024, 16, 4096, None));
        let moe: Vec<u64> = (0..28).filter(|i| c.block_shape(*i, 256).per_expert.is_some()).collect();
        assert_eq!(moe, (1..27).step_by(2).collect::<Vec<_>>());
    }
}
