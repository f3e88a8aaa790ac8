//! The MLP denoiser (see `compute::MlpConfig` for the architecture and its counts).

use super::{timestep_features, Init, MacCounter, Network, Params, Result};
use crate::compute::{MlpConfig, ModelConfig};
use crate::diffusion::PredictionType;
use crate::ops::{matmul_add as linear, param};
use crate::seed::Rng;
use candle_core::{DType, Device, Tensor, Var};

pub struct Mlp {
    pub cfg: MlpConfig,
    pub prediction: PredictionType,
    pub params: Params,
    pub macs: MacCounter,
    t1: (Var, Var),
    t2: (Var, Var),
    label: Option<Var>,
    input: (Var, Var),
    cond: Option<(Var, Var)>,
    blocks: Vec<[(Var, Var); 2]>,
    out: (Var, Var),
}

impl Mlp {
    /// A freshly initialised model; the output layer starts at zero (so does the residual
    /// branch's second layer), as DiT zero-initialises its output layers.
    pub fn new(cfg: &MlpConfig, prediction: PredictionType, device: &Device, seed: u64) -> Result<Self> {
        Self::with_dtype(cfg, prediction, device, DType::F32, seed)
    }

    /// As `new`, in another precision (f64 for finite-difference gradient checks).
    pub fn with_dtype(
        cfg: &MlpConfig,
        prediction: PredictionType,
        device: &Device,
        dtype: impl Into<super::Dtypes>,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let mut p = Params::new(device, dtype);
        let (d, w, f) = (cfg.data_dim as usize, cfg.width as usize, cfg.time_features as usize);
        let mut lin = |p: &mut Params, name: &str, i: usize, o: usize, init: Init| -> Result<(Var, Var)> {
            Ok((
                p.add(&format!("{name}.w"), &[i, o], init, &mut rng)?,
                p.add(&format!("{name}.b"), &[o], Init::Zeros, &mut rng)?,
            ))
        };
        let t1 = lin(&mut p, "t1", f, w, Init::Normal(0.02))?;
        let t2 = lin(&mut p, "t2", w, w, Init::Normal(0.02))?;
        let input = lin(&mut p, "in", d, w, Init::Xavier)?;
        let cond = match cfg.cond_dim {
            Some(c) => Some(lin(&mut p, "cond", c as usize, w, Init::Zeros)?),
            None => None,
        };
        let mut blocks = vec![];
        for i in 0..cfg.depth {
            blocks.push([
                lin(&mut p, &format!("b{i}.1"), w, w, Init::Xavier)?,
                lin(&mut p, &format!("b{i}.2"), w, w, Init::Zeros)?,
            ]);
        }
        let out = lin(&mut p, "out", w, d, Init::Zeros)?;
        let label = match cfg.classes {
            Some(k) => Some(p.add("label", &[k as usize + 1, w], Init::Normal(0.02), &mut Rng::new(seed ^ 0x1abe1))?),
            None => None,
        };
        Ok(Mlp {
            cfg: cfg.clone(),
            prediction,
            params: p,
            macs: MacCounter::default(),
            t1,
            t2,
            label,
            input,
            cond,
            blocks,
            out,
        })
    }
}

impl Network for Mlp {
    network_accessors!(Mlp);

    fn classes(&self) -> Option<usize> {
        self.cfg.classes.map(|k| k as usize)
    }

    fn forward(&self, x: &Tensor, t: &[f64], label: Option<&[usize]>) -> Result<Tensor> {
        let (dev, dt) = (self.params.device(), self.params.compute());
        let tf = timestep_features(t, self.cfg.time_features as usize, dev)?.to_dtype(dt)?;
        let x = &x.to_dtype(dt)?;
        // A conditioned model's rows are [x_t | y].
        let d = self.cfg.data_dim as usize;
        let (x, y) = match &self.cond {
            Some(_) => (&x.narrow(1, 0, d)?, Some(x.narrow(1, d, x.dim(1)? - d)?)),
            None => (x, None),
        };
        let mut c =
            linear(&linear(&tf, &self.t1.0, &self.t1.1, &self.macs)?.silu()?, &self.t2.0, &self.t2.1, &self.macs)?;
        if let (Some(table), Some(k)) = (&self.label, self.cfg.classes) {
            let null = k as u32;
            let ids: Vec<u32> = match label {
                Some(l) => l.iter().map(|v| *v as u32).collect(),
                None => vec![null; t.len()],
            };
            let ids = Tensor::from_vec(ids, t.len(), dev)?;
            c = (&c + param(table, &c)?.index_select(&ids, 0)?)?;
        }
        let mut h = linear(x, &self.input.0, &self.input.1, &self.macs)?;
        if let (Some((w, b)), Some(y)) = (&self.cond, &y) {
            h = (h + linear(y, w, b, &self.macs)?)?;
        }
        for [(w1, b1), (w2, b2)] in &self.blocks {
            let inner = linear(&(&h + &c)?.silu()?, w1, b1, &self.macs)?.silu()?;
            h = (h + linear(&inner, w2, b2, &self.macs)?)?;
        }
        linear(&h.silu()?, &self.out.0, &self.out.1, &self.macs)
    }
}
