//! A small SD-style UNet (diffusers `UNet2DConditionModel` topology), built from the
//! `compute::UnetConfig` that counts it, so Mei et al.'s width family (one channel parameter c)
//! can be trained at reduced scale. Class-conditional through diffusers' `class_embedding`
//! (added to the timestep embedding); the table's last row is the null class for guidance.
//! Without `cross_attention_dim` the transformer blocks are self-attention + GEGLU only.
//!
//! Layout: [B, C, H, W] inside (candle's conv2d); rows of channel-last images outside. As in
//! ADM (Dhariwal & Nichol 2021), the last conv of every residual branch and the output conv start
//! at zero, so the untrained network is close to the identity on its skips.

use super::{timestep_features, Init, MacCounter, Network, Params, Result};
use crate::compute::{ModelConfig, UnetConfig};
use crate::diffusion::PredictionType;
use crate::ops::{
    broadcast, conv2d, geglu, group_norm_silu, layer_norm_affine, linear, param, self_attention, upsample2x,
};
use crate::seed::Rng;
use candle_core::{Device, Tensor, Var};

const GN_EPS: f64 = 1e-5;
const LN_EPS: f64 = 1e-5;

type Lin = (Var, Option<Var>);
type Norm = (Var, Var);

struct Conv {
    w: Var,
    b: Var,
    stride: usize,
}

struct ResBlock {
    norm1: Norm,
    conv1: Conv,
    temb: Lin,
    norm2: Norm,
    conv2: Conv,
    shortcut: Option<Conv>,
}

struct TransformerLayer {
    norm1: Norm,
    qkv: Lin,
    out: Lin,
    norm3: Norm,
    ff1: Lin,
    ff2: Lin,
}

struct Transformer {
    norm: Norm,
    proj_in: Lin,
    layers: Vec<TransformerLayer>,
    proj_out: Lin,
}

/// A ResNet block with the transformers that follow it.
struct Stage {
    res: ResBlock,
    attn: Vec<Transformer>,
}

pub struct Unet {
    pub cfg: UnetConfig,
    pub prediction: PredictionType,
    pub params: Params,
    pub macs: MacCounter,
    t1: Lin,
    t2: Lin,
    label: Option<Var>,
    conv_in: Conv,
    down: Vec<(Vec<Stage>, Option<Conv>)>,
    mid: (ResBlock, Option<Transformer>, ResBlock),
    up: Vec<(Vec<Stage>, Option<Conv>)>,
    norm_out: Norm,
    conv_out: Conv,
}

/// Creates the parameters in a fixed order (the checkpoint order).
struct Builder<'a> {
    p: &'a mut Params,
    rng: Rng,
}

impl Builder<'_> {
    fn lin(&mut self, name: &str, i: usize, o: usize, bias: bool, zero: bool) -> Result<Lin> {
        let init = if zero { Init::Zeros } else { Init::Xavier };
        let w = self.p.add(&format!("{name}.w"), &[i, o], init, &mut self.rng)?;
        let b = if bias { Some(self.p.add(&format!("{name}.b"), &[o], Init::Zeros, &mut self.rng)?) } else { None };
        Ok((w, b))
    }
    fn conv(&mut self, name: &str, cin: usize, cout: usize, k: usize, stride: usize, zero: bool) -> Result<Conv> {
        // He-normal on the fan-in cin·k², the scale that keeps SiLU activations O(1).
        let init = if zero { Init::Zeros } else { Init::Normal((2.0 / (cin * k * k) as f64).sqrt()) };
        Ok(Conv {
            w: self.p.add(&format!("{name}.w"), &[cout, cin, k, k], init, &mut self.rng)?,
            b: self.p.add(&format!("{name}.b"), &[cout], Init::Zeros, &mut self.rng)?,
            stride,
        })
    }
    fn norm(&mut self, name: &str, c: usize) -> Result<Norm> {
        let one = self.p.add(&format!("{name}.g"), &[c], Init::Zeros, &mut self.rng)?;
        one.set(&(one.as_tensor() + 1.0)?)?;
        Ok((one, self.p.add(&format!("{name}.b"), &[c], Init::Zeros, &mut self.rng)?))
    }
    fn res(&mut self, name: &str, cin: usize, cout: usize, temb: usize) -> Result<ResBlock> {
        Ok(ResBlock {
            norm1: self.norm(&format!("{name}.n1"), cin)?,
            conv1: self.conv(&format!("{name}.c1"), cin, cout, 3, 1, false)?,
            temb: self.lin(&format!("{name}.t"), temb, cout, true, false)?,
            norm2: self.norm(&format!("{name}.n2"), cout)?,
            conv2: self.conv(&format!("{name}.c2"), cout, cout, 3, 1, true)?,
            shortcut: if cin != cout { Some(self.conv(&format!("{name}.sc"), cin, cout, 1, 1, false)?) } else { None },
        })
    }
    fn transformer(&mut self, name: &str, ch: usize, depth: u64) -> Result<Transformer> {
        let norm = self.norm(&format!("{name}.gn"), ch)?;
        let proj_in = self.lin(&format!("{name}.in"), ch, ch, true, false)?;
        let mut layers = vec![];
        for i in 0..depth {
            let n = format!("{name}.{i}");
            layers.push(TransformerLayer {
                norm1: self.norm(&format!("{n}.ln1"), ch)?,
                qkv: self.lin(&format!("{n}.qkv"), ch, 3 * ch, false, false)?,
                out: self.lin(&format!("{n}.o"), ch, ch, true, false)?,
                norm3: self.norm(&format!("{n}.ln3"), ch)?,
                ff1: self.lin(&format!("{n}.ff1"), ch, 8 * ch, true, false)?,
                ff2: self.lin(&format!("{n}.ff2"), 4 * ch, ch, true, false)?,
            });
        }
        let proj_out = self.lin(&format!("{name}.out"), ch, ch, true, true)?;
        Ok(Transformer { norm, proj_in, layers, proj_out })
    }
}

impl Unet {
    pub fn new(
        cfg: &UnetConfig,
        prediction: PredictionType,
        device: &Device,
        dtype: impl Into<super::Dtypes>,
        seed: u64,
    ) -> Result<Self> {
        let dtype = dtype.into();
        if cfg.cross_attention_dim.is_some() || cfg.addition_embed_dim.is_some() {
            candle_core::bail!(
                "the trainable UNet is class-conditional: set cross_attention_dim and addition_embed_dim to null"
            )
        }
        let mut p = Params::new(device, dtype);
        let mut b = Builder { p: &mut p, rng: Rng::new(seed) };
        let w: Vec<usize> = cfg.widths().iter().map(|v| *v as usize).collect();
        let (c0, levels, lpb) = (w[0], w.len(), cfg.layers_per_block as usize);
        let temb = 4 * c0;
        let t1 = b.lin("t1", c0, temb, true, false)?;
        let t2 = b.lin("t2", temb, temb, true, false)?;
        let label = match cfg.num_classes {
            Some(k) => Some(b.p.add("label", &[k as usize, temb], Init::Normal(0.02), &mut b.rng)?),
            None => None,
        };
        let conv_in = b.conv("in", cfg.in_channels as usize, c0, 3, 1, false)?;
        let attn = |b: &mut Builder, name: &str, l: usize, ch: usize| -> Result<Vec<Transformer>> {
            let depth = cfg.transformer_depth[l];
            if depth > 0 {
                Ok(vec![b.transformer(name, ch, depth)?])
            } else {
                Ok(vec![])
            }
        };
        let mut down = vec![];
        let mut cin = c0;
        for (l, &cout) in w.iter().enumerate() {
            let mut stages = vec![];
            for j in 0..lpb {
                let res = b.res(&format!("d{l}.{j}"), if j == 0 { cin } else { cout }, cout, temb)?;
                stages.push(Stage { res, attn: attn(&mut b, &format!("d{l}.{j}.a"), l, cout)? });
            }
            let ds = if l + 1 < levels { Some(b.conv(&format!("d{l}.down"), cout, cout, 3, 2, false)?) } else { None };
            down.push((stages, ds));
            cin = cout;
        }
        let last = w[levels - 1];
        let mid = (
            b.res("m.0", last, last, temb)?,
            if cfg.mid_depth() > 0 { Some(b.transformer("m.a", last, cfg.mid_depth())?) } else { None },
            b.res("m.1", last, last, temb)?,
        );
        let mut up = vec![];
        let mut prev = last;
        for l in (0..levels).rev() {
            let cout = w[l];
            let skip_in = w[l.saturating_sub(1)];
            let mut stages = vec![];
            for j in 0..=lpb {
                let res_in = if j == 0 { prev } else { cout };
                let skip = if j == lpb { skip_in } else { cout };
                let res = b.res(&format!("u{l}.{j}"), res_in + skip, cout, temb)?;
                stages.push(Stage { res, attn: attn(&mut b, &format!("u{l}.{j}.a"), l, cout)? });
            }
            let us = if l > 0 { Some(b.conv(&format!("u{l}.up"), cout, cout, 3, 1, false)?) } else { None };
            up.push((stages, us));
            prev = cout;
        }
        let norm_out = b.norm("out.n", c0)?;
        let conv_out = b.conv("out.c", c0, cfg.out_channels as usize, 3, 1, true)?;
        Ok(Unet {
            cfg: cfg.clone(),
            prediction,
            params: p,
            macs: MacCounter::default(),
            t1,
            t2,
            label,
            conv_in,
            down,
            mid,
            up,
            norm_out,
            conv_out,
        })
    }

    fn lin(&self, x: &Tensor, l: &Lin) -> Result<Tensor> {
        linear(x, &l.0, l.1.as_ref(), &self.macs)
    }

    /// A k×k convolution with "same" padding (k odd), counting Hout·Wout·cin·cout·k² MACs.
    fn conv(&self, x: &Tensor, c: &Conv) -> Result<Tensor> {
        let (cout, cin, k, _) = c.w.dims4()?;
        let y = conv2d(x, &param(&c.w, x)?, Some(&param(&c.b, x)?), k / 2, c.stride)?;
        let (bsz, _, h, w) = y.dims4()?;
        self.macs.add((bsz * h * w * cin * cout * k * k) as f64);
        Ok(y)
    }

    /// GroupNorm, then SiLU if `silu` (one fused op on the CPU).
    fn gn(&self, x: &Tensor, n: &Norm, silu: bool) -> Result<Tensor> {
        group_norm_silu(x, self.cfg.norm_groups as usize, &n.0, &n.1, GN_EPS, silu)
    }

    fn ln(&self, x: &Tensor, n: &Norm) -> Result<Tensor> {
        layer_norm_affine(x, &n.0, &n.1, LN_EPS)
    }

    fn res(&self, x: &Tensor, r: &ResBlock, temb: &Tensor) -> Result<Tensor> {
        let h = self.conv(&self.gn(x, &r.norm1, true)?, &r.conv1)?;
        let t = self.lin(&temb.silu()?, &r.temb)?;
        let h = broadcast::add(&h, &t.unsqueeze(2)?.unsqueeze(3)?)?;
        let h = self.conv(&self.gn(&h, &r.norm2, true)?, &r.conv2)?;
        let skip = match &r.shortcut {
            Some(c) => self.conv(x, c)?,
            None => x.clone(),
        };
        skip + h
    }

    fn transformer(&self, x: &Tensor, tr: &Transformer) -> Result<Tensor> {
        let (bsz, ch, h, w) = x.dims4()?;
        let tokens = self.gn(x, &tr.norm, false)?.permute((0, 2, 3, 1))?.reshape((bsz, h * w, ch))?;
        let mut t = self.lin(&tokens, &tr.proj_in)?;
        for l in &tr.layers {
            let n = self.ln(&t, &l.norm1)?;
            let a = self_attention(&self.lin(&n, &l.qkv)?, self.cfg.heads as usize, &self.macs)?;
            t = (&t + self.lin(&a, &l.out)?)?;
            // GEGLU (Shazeer 2020): value · GELU(gate), as diffusers' `GEGLU`.
            let n = self.ln(&t, &l.norm3)?;
            t = (&t + self.lin(&geglu(&self.lin(&n, &l.ff1)?)?, &l.ff2)?)?;
        }
        let out = self.lin(&t, &tr.proj_out)?.reshape((bsz, h, w, ch))?.permute((0, 3, 1, 2))?;
        x + out
    }

    fn stage(&self, x: &Tensor, s: &Stage, temb: &Tensor) -> Result<Tensor> {
        let mut h = self.res(x, &s.res, temb)?;
        for a in &s.attn {
            h = self.transformer(&h, a)?;
        }
        Ok(h)
    }
}

impl Network for Unet {
    network_accessors!(Unet);

    fn classes(&self) -> Option<usize> {
        self.cfg.num_classes.map(|k| (k as usize).saturating_sub(1))
    }

    fn forward(&self, x: &Tensor, t: &[f64], label: Option<&[usize]>) -> Result<Tensor> {
        let (dev, dt) = (self.params.device(), self.params.compute());
        let (bsz, s, cin) = (t.len(), self.cfg.sample_size as usize, self.cfg.in_channels as usize);
        let c0 = self.cfg.widths()[0] as usize;
        let tf = timestep_features(t, c0, dev)?.to_dtype(dt)?;
        let mut temb = self.lin(&self.lin(&tf, &self.t1)?.silu()?, &self.t2)?;
        if let (Some(table), Some(k)) = (&self.label, self.classes()) {
            let ids: Vec<u32> = match label {
                Some(l) => l.iter().map(|v| *v as u32).collect(),
                None => vec![k as u32; bsz],
            };
            temb = (&temb + param(table, &temb)?.index_select(&Tensor::from_vec(ids, bsz, dev)?, 0)?)?;
        }
        let x = x.to_dtype(dt)?.reshape((bsz, s, s, cin))?.permute((0, 3, 1, 2))?.contiguous()?;
        let mut h = self.conv(&x, &self.conv_in)?;
        let mut skips = vec![h.clone()];
        for (stages, ds) in &self.down {
            for st in stages {
                h = self.stage(&h, st, &temb)?;
                skips.push(h.clone());
            }
            if let Some(c) = ds {
                h = self.conv(&h, c)?;
                skips.push(h.clone());
            }
        }
        h = self.res(&h, &self.mid.0, &temb)?;
        if let Some(tr) = &self.mid.1 {
            h = self.transformer(&h, tr)?;
        }
        h = self.res(&h, &self.mid.2, &temb)?;
        for (stages, us) in &self.up {
            for st in stages {
                let skip = skips.pop().expect("one skip per up stage");
                h = self.stage(&Tensor::cat(&[&h, &skip], 1)?, st, &temb)?;
            }
            if let Some(c) = us {
                h = self.conv(&upsample2x(&h)?, c)?;
            }
        }
        let out = self.conv(&self.gn(&h, &self.norm_out, true)?, &self.conv_out)?;
        let cout = self.cfg.out_channels as usize;
        out.permute((0, 2, 3, 1))?.narrow(3, 0, cin.min(cout))?.reshape((bsz, s * s * cin.min(cout)))
    }
}
