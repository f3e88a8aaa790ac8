//! SD-style UNet (diffusers `UNet2DConditionModel`) configs and their analytic counts.
//!
//! Reproduces the published parameter counts exactly: SD1.5 859,520,964; SD2 865,910,724;
//! SDXL 2,567,463,684 (docs/papers.md §5). The structure per level: `layers_per_block` ResNet blocks
//! (GroupNorm, 3×3 conv, time projection, GroupNorm, 3×3 conv, 1×1 shortcut when widths
//! differ), each followed by a `Transformer2DModel` when the level's transformer depth is
//! non-zero (GroupNorm, proj_in, depth × [LN, self-attn, LN, cross-attn, LN, GEGLU FF],
//! proj_out), then a stride-2 downsample except at the last level. Mid block: ResNet,
//! transformer, ResNet. Up path mirrors it with `layers_per_block + 1` ResNets over the skip
//! concatenations and a 3×3 conv after nearest upsampling.

use super::{require, Category, Tally};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnetConfig {
    /// Base channel count c (Mei et al.'s "filters"); level widths are c × `channel_mult`.
    pub channels: u64,
    pub channel_mult: Vec<u64>,
    /// ResNet blocks per level on the way down (one more on the way up).
    #[serde(default = "default_layers")]
    pub layers_per_block: u64,
    /// Transformer blocks after each ResNet, per level; 0 means no attention at that level.
    pub transformer_depth: Vec<u64>,
    /// Transformer depth of the mid block; defaults to the last non-zero level depth, as
    /// diffusers' `transformer_layers_per_block[-1]` gives for SD1.5, SD2 and SDXL.
    #[serde(default)]
    pub mid_transformer_depth: Option<u64>,
    /// Width of the text context; `null` for a model without cross-attention.
    #[serde(default)]
    pub cross_attention_dim: Option<u64>,
    /// Number of context tokens (77 for CLIP).
    #[serde(default = "default_tokens")]
    pub context_tokens: u64,
    /// Heads per attention layer (does not change the counts).
    #[serde(default = "default_heads")]
    pub heads: u64,
    /// SDXL's `add_embedding` input width (1280 pooled text + 6 × 256 size features = 2816).
    #[serde(default)]
    pub addition_embed_dim: Option<u64>,
    /// Class-label embedding (for class-conditional small models).
    #[serde(default)]
    pub num_classes: Option<u64>,
    /// Latent side length (64 for 512² images, 32 for 256²).
    #[serde(default = "default_sample")]
    pub sample_size: u64,
    #[serde(default = "default_in")]
    pub in_channels: u64,
    #[serde(default = "default_in")]
    pub out_channels: u64,
    #[serde(default = "default_groups")]
    pub norm_groups: u64,
}

fn default_layers() -> u64 {
    2
}
fn default_tokens() -> u64 {
    77
}
fn default_heads() -> u64 {
    8
}
fn default_sample() -> u64 {
    64
}
fn default_in() -> u64 {
    4
}
fn default_groups() -> u64 {
    32
}

/// GEGLU feed-forward expansion of diffusers' `BasicTransformerBlock`.
const FF_MULT: u64 = 4;

impl UnetConfig {
    /// SD1.5 (`CompVis v1-inference.yaml`): c = 320, [1,2,4,4], attention at the first three
    /// levels, 768-d CLIP context.
    pub fn sd15() -> Self {
        UnetConfig {
            channels: 320,
            channel_mult: vec![1, 2, 4, 4],
            layers_per_block: 2,
            transformer_depth: vec![1, 1, 1, 0],
            mid_transformer_depth: None,
            cross_attention_dim: Some(768),
            context_tokens: 77,
            heads: 8,
            addition_embed_dim: None,
            num_classes: None,
            sample_size: 64,
            in_channels: 4,
            out_channels: 4,
            norm_groups: 32,
        }
    }

    /// SD2: the SD1.5 topology with a 1024-d OpenCLIP-H context.
    pub fn sd2() -> Self {
        UnetConfig { cross_attention_dim: Some(1024), ..Self::sd15() }
    }

    /// SDXL base: three levels, transformer depth [0, 2, 10], 2048-d context, add embedding.
    pub fn sdxl() -> Self {
        UnetConfig {
            channel_mult: vec![1, 2, 4],
            transformer_depth: vec![0, 2, 10],
            cross_attention_dim: Some(2048),
            addition_embed_dim: Some(2816),
            sample_size: 128,
            ..Self::sd15()
        }
    }

    pub fn widths(&self) -> Vec<u64> {
        self.channel_mult.iter().map(|m| m * self.channels).collect()
    }

    pub fn mid_depth(&self) -> u64 {
        self.mid_transformer_depth
            .unwrap_or_else(|| self.transformer_depth.iter().rev().copied().find(|d| *d > 0).unwrap_or(0))
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        let levels = self.channel_mult.len();
        require(&mut e, self.channels >= 1, "channels", "must be at least 1");
        require(&mut e, levels >= 1, "channel_mult", "needs at least one level");
        require(&mut e, self.channel_mult.iter().all(|m| *m >= 1), "channel_mult", "entries must be at least 1");
        require(
            &mut e,
            self.transformer_depth.len() == levels,
            "transformer_depth",
            "needs one entry per level of channel_mult",
        );
        require(&mut e, self.layers_per_block >= 1, "layers_per_block", "must be at least 1");
        require(&mut e, self.norm_groups >= 1, "norm_groups", "must be at least 1");
        if self.norm_groups >= 1 {
            require(
                &mut e,
                self.widths().iter().all(|w| w % self.norm_groups == 0),
                "channels",
                "every level width must be divisible by norm_groups",
            );
        }
        if levels >= 1 {
            let down = 1u64 << (levels - 1).min(62);
            require(
                &mut e,
                self.sample_size >= down && self.sample_size.is_multiple_of(down),
                "sample_size",
                "must be divisible by 2^(levels-1)",
            );
        }
        require(&mut e, self.heads >= 1, "heads", "must be at least 1");
        e
    }

    fn resnet(&self, c: &mut Tally, r: u64, cin: u64, cout: u64) {
        let temb = 4 * self.channels * self.channel_mult[0];
        c.norm(cin, true);
        c.conv(r, r, cin, cout, 3, true);
        c.linear(Category::OtherLinear, 1.0, temb, cout, true);
        c.norm(cout, true);
        c.conv(r, r, cout, cout, 3, true);
        if cin != cout {
            c.conv(r, r, cin, cout, 1, true);
        }
    }

    fn transformer(&self, c: &mut Tally, r: u64, ch: u64, depth: u64) {
        use Category::*;
        let n = (r * r) as f64;
        c.norm(ch, true);
        c.linear(TokenLinear, n, ch, ch, true); // proj_in (1×1 conv or linear: same count)
        for _ in 0..depth {
            c.norm(ch, true);
            c.linear(TokenLinear, n, ch, 3 * ch, false);
            c.attention(SelfAttention, n, n, ch);
            c.linear(TokenLinear, n, ch, ch, true);
            if let Some(x) = self.cross_attention_dim {
                let l = self.context_tokens as f64;
                c.norm(ch, true);
                c.linear(TokenLinear, n, ch, ch, false);
                c.linear(OtherLinear, l, x, 2 * ch, false);
                c.attention(CrossAttention, n, l, ch);
                c.linear(TokenLinear, n, ch, ch, true);
            }
            c.norm(ch, true);
            c.linear(TokenLinear, n, ch, 2 * FF_MULT * ch, true); // GEGLU: value and gate
            c.linear(TokenLinear, n, FF_MULT * ch, ch, true);
        }
        c.linear(TokenLinear, n, ch, ch, true); // proj_out
    }

    pub fn count(&self) -> Tally {
        let w = self.widths();
        let levels = w.len();
        let s = self.sample_size;
        let c0 = w[0];
        let temb = 4 * c0;
        let mut c = Tally::new();

        c.part("embed");
        c.linear(Category::OtherLinear, 1.0, c0, temb, true);
        c.linear(Category::OtherLinear, 1.0, temb, temb, true);
        if let Some(a) = self.addition_embed_dim {
            c.linear(Category::OtherLinear, 1.0, a, temb, true);
            c.linear(Category::OtherLinear, 1.0, temb, temb, true);
        }
        if let Some(k) = self.num_classes {
            c.params(k * temb);
        }
        c.conv(s, s, self.in_channels, c0, 3, true);

        c.part("down");
        let mut cin = c0;
        for (l, &cout) in w.iter().enumerate() {
            let r = s >> l;
            for j in 0..self.layers_per_block {
                self.resnet(&mut c, r, if j == 0 { cin } else { cout }, cout);
                if self.transformer_depth[l] > 0 {
                    self.transformer(&mut c, r, cout, self.transformer_depth[l]);
                }
            }
            if l + 1 < levels {
                c.conv(r / 2, r / 2, cout, cout, 3, true);
            }
            cin = cout;
        }

        c.part("mid");
        let (last, r_last) = (w[levels - 1], s >> (levels - 1));
        self.resnet(&mut c, r_last, last, last);
        if self.mid_depth() > 0 {
            self.transformer(&mut c, r_last, last, self.mid_depth());
        }
        self.resnet(&mut c, r_last, last, last);

        c.part("up");
        let mut prev = last;
        for l in (0..levels).rev() {
            let (r, cout) = (s >> l, w[l]);
            let skip_in = w[l.saturating_sub(1)];
            let n = self.layers_per_block + 1;
            for j in 0..n {
                let res_in = if j == 0 { prev } else { cout };
                let skip = if j == n - 1 { skip_in } else { cout };
                self.resnet(&mut c, r, res_in + skip, cout);
                if self.transformer_depth[l] > 0 {
                    self.transformer(&mut c, r, cout, self.transformer_depth[l]);
                }
            }
            if l > 0 {
                c.conv(2 * r, 2 * r, cout, cout, 3, true);
            }
            prev = cout;
        }

        c.part("out");
        c.norm(c0, true);
        c.conv(s, s, c0, self.out_channels, 3, true);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::Convention;

    #[test]
    fn published_parameter_counts_are_exact() {
        assert_eq!(UnetConfig::sd15().count().total().params, 859_520_964);
        assert_eq!(UnetConfig::sd2().count().total().params, 865_910_724);
        assert_eq!(UnetConfig::sdxl().count().total().params, 2_567_463_684);
    }

    #[test]
    fn sd15_forward_macs_match_recount() {
        // docs/papers.md §5.1: 401.6 GMACs at 64×64 with attention matmuls.
        let g = Convention::Macs.forward(&UnetConfig::sd15().count().total(), None) / 1e9;
        assert!((g - 401.6).abs() < 0.1, "{g}");
    }
}
