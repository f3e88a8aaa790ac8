//! DiT (Peebles & Xie 2023), readable in one file, built from the `compute::DitConfig` that
//! counts it. Mirrors `facebookresearch/DiT` `models.py` on channel-last images [B, H, W, C]:
//! patchify (the k = stride = p conv as a linear map on patches) + fixed 2-D sin-cos position
//! embedding; c = t_emb + y_emb; N blocks of one of the four designs of §3.2 / Fig. 3; final
//! layer; unpatchify. When `learn_sigma`, the Σ channels are produced (and counted) but only
//! the first `in_channels` are the prediction.
//!
//! MicroDiT's deferred masking (Sehwag et al. 2024, §3.2, micro_diffusion `dit.py`) is the same
//! model with a patch-mixer: adaLN-Zero blocks on every patch before a random fraction of the
//! patches is dropped in training; the backbone then sees only the kept ones, and the loss is
//! taken on their pixels alone (no reconstruction loss). Without a mixer the same dropping is
//! naive masking. Sampling always runs on every patch.

use super::{timestep_features, Init, MacCounter, Network, Params, Result};
use crate::compute::dit::{DitBlock, DitConfig};
use crate::compute::ModelConfig;
use crate::diffusion::PredictionType;
use crate::ops::{
    broadcast, cross_attention, gelu, layer_norm, linear, modulated_norm, param, self_attention, softmax,
};
use crate::seed::Rng;
use candle_core::{DType, Device, Tensor, Var, D};

/// Width of the sinusoidal timestep features (DiT's `frequency_embedding_size`).
const FREQ: usize = 256;
const EPS: f64 = 1e-6;

type Lin = (Var, Var);

/// The feed-forward half of a block: one GELU MLP, or a router and one bias-free MLP per expert.
enum Ffn {
    Dense(Lin, Lin),
    Experts { router: Var, experts: Vec<(Var, Var)> },
}

struct Block {
    qkv: Lin,
    proj: Lin,
    heads: usize,
    ffn: Ffn,
    /// adaLN(-Zero): the modulation regressed from c (4d or 6d outputs).
    ada: Option<Lin>,
    /// Cross-attention: q from the tokens, k and v from [t_emb; y_emb], output projection.
    cross: Option<(Lin, Lin, Lin)>,
}

pub struct Dit {
    pub cfg: DitConfig,
    pub prediction: PredictionType,
    pub params: Params,
    pub macs: MacCounter,
    patch: Lin,
    pos: Tensor,
    t1: Lin,
    t2: Lin,
    label: Var,
    blocks: Vec<Block>,
    final_ada: Option<Lin>,
    out: Lin,
    mixer: Vec<Block>,
    /// Mixer width → backbone width.
    mixer_out: Option<Lin>,
}

/// Fixed 2-D sin-cos position embedding [tokens, d]: half the width encodes the row, half the
/// column, each as [sin(pos·ω_k), cos(pos·ω_k)] with ω_k = 10000^(−k/(d/4)).
fn pos_embed(side: usize, d: usize, device: &Device) -> Result<Tensor> {
    let quarter = d / 4;
    let mut v = Vec::with_capacity(side * side * d);
    for row in 0..side {
        for col in 0..side {
            for pos in [row, col] {
                let omega = |k: usize| (10000f64).powf(-(k as f64) / quarter.max(1) as f64);
                v.extend((0..quarter).map(|k| (pos as f64 * omega(k)).sin() as f32));
                v.extend((0..quarter).map(|k| (pos as f64 * omega(k)).cos() as f32));
            }
            v.extend(std::iter::repeat_n(0.0, d - 4 * quarter));
        }
    }
    Tensor::from_vec(v, (side * side, d), device)
}

impl Dit {
    pub fn new(
        cfg: &DitConfig,
        prediction: PredictionType,
        device: &Device,
        dtype: impl Into<super::Dtypes>,
        seed: u64,
    ) -> Result<Self> {
        let dtype = dtype.into();
        let mut rng = Rng::new(seed);
        let mut p = Params::new(device, dtype);
        let d = cfg.hidden as usize;
        let (pp, cin) = (cfg.patch as usize, cfg.in_channels as usize);
        let lin = |p: &mut Params, rng: &mut Rng, name: &str, i: usize, o: usize, init: Init| -> Result<Lin> {
            Ok((p.add(&format!("{name}.w"), &[i, o], init, rng)?, p.add(&format!("{name}.b"), &[o], Init::Zeros, rng)?))
        };
        let de = cfg.embed_width() as usize;
        let patch = lin(&mut p, &mut rng, "patch", pp * pp * cin, de, Init::Xavier)?;
        let t1 = lin(&mut p, &mut rng, "t1", FREQ, d, Init::Normal(0.02))?;
        let t2 = lin(&mut p, &mut rng, "t2", d, d, Init::Normal(0.02))?;
        let mut blocks = vec![];
        for i in 0..cfg.depth {
            let b = format!("b{i}");
            let shape = cfg.block_shape(i, cfg.kept_tokens());
            let (q, h) = (shape.qkv as usize, shape.mlp as usize);
            // Registration order fixes the draws of the seeded init: attention first, then FFN.
            let qkv = lin(&mut p, &mut rng, &format!("{b}.qkv"), d, 3 * q, Init::Xavier)?;
            let proj = lin(&mut p, &mut rng, &format!("{b}.proj"), q, d, Init::Xavier)?;
            let ffn = match (shape.per_expert, &cfg.experts) {
                (Some(_), Some(x)) => Ffn::Experts {
                    router: p.add(&format!("{b}.router"), &[d, x.num as usize], Init::Normal(0.02), &mut rng)?,
                    experts: (0..x.num)
                        .map(|e| {
                            let mut w =
                                |n: &str, i, o| p.add(&format!("{b}.expert{e}.{n}"), &[i, o], Init::Xavier, &mut rng);
                            Ok((w("fc1", d, h)?, w("fc2", h, d)?))
                        })
                        .collect::<Result<_>>()?,
                },
                _ => Ffn::Dense(
                    lin(&mut p, &mut rng, &format!("{b}.fc1"), d, h, Init::Xavier)?,
                    lin(&mut p, &mut rng, &format!("{b}.fc2"), h, d, Init::Xavier)?,
                ),
            };
            blocks.push(Block {
                qkv,
                proj,
                heads: shape.heads as usize,
                ffn,
                ada: match cfg.block {
                    // adaLN-Zero: every block starts as the identity (§3.2).
                    DitBlock::AdalnZero => Some(lin(&mut p, &mut rng, &format!("{b}.ada"), d, 6 * d, Init::Zeros)?),
                    DitBlock::Adaln => Some(lin(&mut p, &mut rng, &format!("{b}.ada"), d, 4 * d, Init::Normal(0.02))?),
                    _ => None,
                },
                cross: match cfg.block {
                    DitBlock::CrossAttention => Some((
                        lin(&mut p, &mut rng, &format!("{b}.xq"), d, d, Init::Xavier)?,
                        lin(&mut p, &mut rng, &format!("{b}.xkv"), d, 2 * d, Init::Xavier)?,
                        lin(&mut p, &mut rng, &format!("{b}.xo"), d, d, Init::Xavier)?,
                    )),
                    _ => None,
                },
            });
        }
        let mut mixer = vec![];
        let hm = (de as f64 * cfg.mlp_ratio) as usize;
        for i in 0..cfg.mixer_depth {
            let b = format!("mixer{i}");
            mixer.push(Block {
                qkv: lin(&mut p, &mut rng, &format!("{b}.qkv"), de, 3 * de, Init::Xavier)?,
                proj: lin(&mut p, &mut rng, &format!("{b}.proj"), de, de, Init::Xavier)?,
                heads: cfg.heads as usize,
                ffn: Ffn::Dense(
                    lin(&mut p, &mut rng, &format!("{b}.fc1"), de, hm, Init::Xavier)?,
                    lin(&mut p, &mut rng, &format!("{b}.fc2"), hm, de, Init::Xavier)?,
                ),
                ada: Some(lin(&mut p, &mut rng, &format!("{b}.ada"), d, 6 * de, Init::Zeros)?),
                cross: None,
            });
        }
        let mixer_out =
            if cfg.mixer_depth > 0 { Some(lin(&mut p, &mut rng, "mixer.out", de, d, Init::Xavier)?) } else { None };
        let adaptive = matches!(cfg.block, DitBlock::AdalnZero | DitBlock::Adaln);
        let final_ada = if adaptive { Some(lin(&mut p, &mut rng, "final.ada", d, 2 * d, Init::Zeros)?) } else { None };
        let out = lin(&mut p, &mut rng, "final.out", d, pp * pp * cfg.out_channels() as usize, Init::Zeros)?;
        let label = p.add("label", &[cfg.num_classes as usize + 1, d], Init::Normal(0.02), &mut rng)?;
        let pos = pos_embed((cfg.input_size / cfg.patch) as usize, de, device)?.to_dtype(dtype.compute)?;
        Ok(Dit {
            cfg: cfg.clone(),
            prediction,
            params: p,
            macs: MacCounter::default(),
            patch,
            pos,
            t1,
            t2,
            label,
            blocks,
            final_ada,
            out,
            mixer,
            mixer_out,
        })
    }

    fn lin(&self, x: &Tensor, l: &Lin) -> Result<Tensor> {
        linear(x, &l.0, Some(&l.1), &self.macs)
    }

    fn self_attention(&self, x: &Tensor, b: &Block) -> Result<Tensor> {
        let a = self_attention(&self.lin(x, &b.qkv)?, b.heads, &self.macs)?;
        self.lin(&a, &b.proj)
    }

    fn mlp(&self, x: &Tensor, b: &Block) -> Result<Tensor> {
        match &b.ffn {
            Ffn::Dense(fc1, fc2) => self.lin(&gelu(&self.lin(x, fc1)?)?, fc2),
            Ffn::Experts { router, experts } => self.experts(x, router, experts),
        }
    }

    /// Expert-choice MoE (micro_diffusion `FeedForwardECMoe`): p = softmax over experts of the
    /// router's logits; expert e takes the k tokens of each sample with the highest p[·, e]
    /// (ties to the earlier token, so the choice is deterministic) and adds p·FFN_e(x) to them.
    /// The choice is not differentiated (as `topk`'s indices are not); the weights p are.
    /// k = ⌊capacity·T/E⌋ follows the tokens present: masked training sees fewer than sampling.
    fn experts(&self, x: &Tensor, router: &Var, experts: &[(Var, Var)]) -> Result<Tensor> {
        let (bsz, t, d) = x.dims3()?;
        let e = experts.len();
        let k = self.cfg.experts.as_ref().expect("an MoE block has experts").per_expert(t as u64) as usize;
        let probs = softmax(&linear(x, router, None, &self.macs)?)?.reshape((bsz * t, e))?;
        let p = probs.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let flat = x.reshape((bsz * t, d))?;
        let mut out = flat.zeros_like()?;
        for (j, (w1, w2)) in experts.iter().enumerate() {
            let mut rows = Vec::with_capacity(bsz * k);
            for b in 0..bsz {
                let mut order: Vec<usize> = (0..t).collect();
                order.sort_by(|u, v| p[b * t + v][j].total_cmp(&p[b * t + u][j]).then(u.cmp(v)));
                rows.extend(order[..k].iter().map(|i| (b * t + i) as u32));
            }
            let gate_at: Vec<u32> = rows.iter().map(|r| r * e as u32 + j as u32).collect();
            let rows = Tensor::from_vec(rows, bsz * k, x.device())?;
            let gate = probs.flatten_all()?.index_select(&Tensor::from_vec(gate_at, bsz * k, x.device())?, 0)?;
            let h = gelu(&linear(&flat.index_select(&rows, 0)?, w1, None, &self.macs)?)?;
            let y = linear(&h, w2, None, &self.macs)?.broadcast_mul(&gate.unsqueeze(1)?)?;
            out = out.index_add(&rows, &y, 0)?;
        }
        out.reshape((bsz, t, d))
    }

    fn block(&self, x: Tensor, b: &Block, c: &Tensor, cond_tokens: &Tensor) -> Result<Tensor> {
        let n = |x: &Tensor| layer_norm(x, EPS);
        // Mixer blocks are adaLN-Zero, and a model with a mixer is (validated) adaLN-Zero too.
        match (self.cfg.block, &b.ada, &b.cross) {
            (DitBlock::AdalnZero, Some(ada), _) => {
                let m = self.lin(&c.silu()?, ada)?.chunk(6, D::Minus1)?;
                let gate = |g: &Tensor, y: Tensor| broadcast::mul(&y, &g.unsqueeze(1)?);
                let x = (&x + gate(&m[2], self.self_attention(&modulated_norm(&x, &m[0], &m[1], EPS)?, b)?)?)?;
                &x + gate(&m[5], self.mlp(&modulated_norm(&x, &m[3], &m[4], EPS)?, b)?)?
            }
            (DitBlock::Adaln, Some(ada), _) => {
                let m = self.lin(&c.silu()?, ada)?.chunk(4, D::Minus1)?;
                let x = (&x + self.self_attention(&modulated_norm(&x, &m[0], &m[1], EPS)?, b)?)?;
                &x + self.mlp(&modulated_norm(&x, &m[2], &m[3], EPS)?, b)?
            }
            (DitBlock::CrossAttention, _, Some((q, kv, o))) => {
                let x = (&x + self.self_attention(&n(&x)?, b)?)?;
                let kv = self.lin(cond_tokens, kv)?;
                let a = cross_attention(&self.lin(&n(&x)?, q)?, &kv, self.cfg.heads as usize, &self.macs)?;
                let x = (&x + self.lin(&a, o)?)?;
                &x + self.mlp(&n(&x)?, b)?
            }
            _ => {
                let x = (&x + self.self_attention(&n(&x)?, b)?)?;
                &x + self.mlp(&n(&x)?, b)?
            }
        }
    }
}

impl Network for Dit {
    network_accessors!(Dit);

    fn classes(&self) -> Option<usize> {
        Some(self.cfg.num_classes as usize)
    }

    fn forward(&self, x: &Tensor, t: &[f64], label: Option<&[usize]>) -> Result<Tensor> {
        self.run(x, t, label, None).map(|o| o.0)
    }

    fn forward_train(
        &self,
        x: &Tensor,
        t: &[f64],
        label: Option<&[usize]>,
        seed: u64,
    ) -> Result<(Tensor, Option<Tensor>)> {
        self.run(x, t, label, (self.cfg.mask_ratio > 0.0).then_some(seed))
    }
}

impl Dit {
    /// Which patches each sample keeps: a seeded random subset of ⌊(1 − m)·T⌋, in patch order.
    fn keep(&self, rows: usize, seed: u64) -> Vec<Vec<usize>> {
        let (tokens, kept) = (self.cfg.tokens() as usize, self.cfg.kept_tokens() as usize);
        (0..rows)
            .map(|r| {
                let mut rng = Rng::new(crate::seed::substream(seed, r as u64));
                let mut order: Vec<usize> = (0..tokens).collect();
                for i in 0..kept {
                    let j = i + rng.below(tokens - i);
                    order.swap(i, j);
                }
                let mut k = order[..kept].to_vec();
                k.sort_unstable();
                k
            })
            .collect()
    }

    /// The forward pass; with `mask_seed`, masked training: the prediction at the kept patches'
    /// pixels (flattened) and those pixels' flat indices into the [rows, dim] target.
    fn run(
        &self,
        x: &Tensor,
        t: &[f64],
        label: Option<&[usize]>,
        mask_seed: Option<u64>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (dev, dt) = (self.params.device(), self.params.compute());
        let cfg = &self.cfg;
        let (bsz, s, p, cin) = (t.len(), cfg.input_size as usize, cfg.patch as usize, cfg.in_channels as usize);
        let side = s / p;
        // [B, H, W, C] → [B, T, p·p·C], tokens in row-major order of the patch grid.
        let patches = x.to_dtype(dt)?.reshape((bsz, side, p, side, p, cin))?.permute((0, 1, 3, 2, 4, 5))?;
        let tokens =
            broadcast::add(&self.lin(&patches.reshape((bsz, side * side, p * p * cin))?, &self.patch)?, &self.pos)?;
        let tf = timestep_features(t, FREQ, dev)?.to_dtype(dt)?;
        let t_emb = self.lin(&self.lin(&tf, &self.t1)?.silu()?, &self.t2)?;
        let null = cfg.num_classes as u32;
        let ids: Vec<u32> = match label {
            Some(l) => l.iter().map(|v| *v as u32).collect(),
            None => vec![null; bsz],
        };
        let y_emb = param(&self.label, &tf)?.index_select(&Tensor::from_vec(ids, bsz, dev)?, 0)?;
        let c = (&t_emb + &y_emb)?;
        let cond_tokens = Tensor::stack(&[&t_emb, &y_emb], 1)?;

        let mut h = tokens;
        for b in &self.mixer {
            h = self.block(h, b, &c, &cond_tokens)?;
        }
        // Deferred masking: drop patches after the mixer (naive: with no mixer, right here).
        let keep = mask_seed.map(|seed| self.keep(bsz, seed));
        if let Some(k) = &keep {
            let flat: Vec<u32> =
                k.iter().enumerate().flat_map(|(b, ks)| ks.iter().map(move |j| (b * side * side + j) as u32)).collect();
            let width = h.dim(D::Minus1)?;
            let rows = Tensor::from_vec(flat, bsz * k[0].len(), dev)?;
            h = h.reshape((bsz * side * side, width))?.index_select(&rows, 0)?.reshape((bsz, k[0].len(), width))?;
        }
        if let Some(l) = &self.mixer_out {
            h = self.lin(&h, l)?;
        }
        let n_tok = h.dim(1)?;

        let in_context = cfg.block == DitBlock::InContext;
        if in_context {
            h = Tensor::cat(&[&cond_tokens, &h], 1)?;
        }
        for b in &self.blocks {
            h = self.block(h, b, &c, &cond_tokens)?;
        }
        if in_context {
            h = h.narrow(1, 2, n_tok)?;
        }
        let h = match &self.final_ada {
            Some(ada) => {
                let m = self.lin(&c.silu()?, ada)?.chunk(2, D::Minus1)?;
                modulated_norm(&h, &m[0], &m[1], EPS)?
            }
            None => layer_norm(&h, EPS)?,
        };
        let cout = cfg.out_channels() as usize;
        let out = self.lin(&h, &self.out)?;
        let Some(k) = keep else {
            let out = out.reshape((bsz, side, side, p, p, cout))?.permute((0, 1, 3, 2, 4, 5))?;
            return Ok((out.reshape((bsz, s, s, cout))?.narrow(3, 0, cin)?.reshape((bsz, s * s * cin))?, None));
        };
        // The kept patches' predictions [B, K, p, p, C], and where each value sits in the image.
        let pred = out.reshape((bsz, n_tok, p, p, cout))?.narrow(4, 0, cin)?.flatten_all()?;
        let mut idx = Vec::with_capacity(bsz * n_tok * p * p * cin);
        for (b, ks) in k.iter().enumerate() {
            for j in ks {
                let (r0, c0) = (j / side * p, j % side * p);
                for (dy, dx, ch) in
                    (0..p).flat_map(|dy| (0..p).flat_map(move |dx| (0..cin).map(move |ch| (dy, dx, ch))))
                {
                    idx.push((b * s * s * cin + ((r0 + dy) * s + c0 + dx) * cin + ch) as u32);
                }
            }
        }
        let n = idx.len();
        Ok((pred, Some(Tensor::from_vec(idx, n, dev)?)))
    }
}
