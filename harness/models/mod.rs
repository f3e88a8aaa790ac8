//! Trainable models on candle, built from the same configs `harness/compute` counts.
//!
//! Two candle 0.11 traps shape this module: its initialisers are unseeded, so every parameter is
//! drawn from our own seeded RNG; its fused layer-norm, rms-norm and last-dim softmax record no
//! backward (gradients silently stop there), so the models call the ops layer (`crate::ops`),
//! whose every op is checked against finite differences in the tests.

/// The accessors every network has the same way: parameters, MAC counter, the config it was
/// built from (as its `ModelConfig` variant), and its prediction type.
macro_rules! network_accessors {
    ($variant:ident) => {
        fn params(&self) -> &Params {
            &self.params
        }
        fn macs(&self) -> &MacCounter {
            &self.macs
        }
        fn config(&self) -> ModelConfig {
            ModelConfig::$variant(self.cfg.clone())
        }
        fn prediction(&self) -> PredictionType {
            self.prediction
        }
    };
}

pub mod dit;
pub mod mlp;
pub mod unet;

use crate::compute::ModelConfig;
use crate::diffusion::{Model, PredictionType, Time};
use crate::seed::Rng;
use candle_core::{DType, Device, Tensor, Var};

pub use crate::ops::MacCounter;
pub use dit::Dit;
pub use mlp::Mlp;
pub use unet::Unet;

pub type Result<T> = candle_core::Result<T>;

/// Named parameters in creation order (a stable order: checkpoints and optimisers rely on it).
#[derive(Clone)]
pub struct Params {
    pub vars: Vec<(String, Var)>,
    device: Device,
    dtype: DType,
    /// The dtype activations are computed in: `dtype`, or bf16 over f32 parameters (mixed
    /// precision; the ops cast each parameter to the activations' dtype).
    compute: DType,
}

/// The dtype a model keeps its parameters in and the dtype it computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtypes {
    pub storage: DType,
    pub compute: DType,
}

impl From<DType> for Dtypes {
    fn from(d: DType) -> Self {
        Dtypes { storage: d, compute: d }
    }
}

/// How a run trains and samples: f32 throughout, or bf16 mixed precision (bf16 activations and
/// GEMMs; f32 parameters, gradients, optimizer moments and EMA, as PyTorch's autocast).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    pub fn parse(s: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == s)
    }

    pub fn dtypes(self) -> Dtypes {
        match self {
            Precision::F32 => DType::F32.into(),
            Precision::Bf16 => Dtypes { storage: DType::F32, compute: DType::BF16 },
        }
    }
}

pub enum Init {
    /// Glorot-uniform on a [fan_in, fan_out] matrix.
    Xavier,
    Normal(f64),
    Zeros,
}

impl Params {
    pub fn new(device: &Device, dtypes: impl Into<Dtypes>) -> Self {
        let Dtypes { storage, compute } = dtypes.into();
        Params { vars: vec![], device: device.clone(), dtype: storage, compute }
    }

    /// The parameters' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The activations' dtype.
    pub fn compute(&self) -> DType {
        self.compute
    }

    pub fn dtypes(&self) -> Dtypes {
        Dtypes { storage: self.dtype, compute: self.compute }
    }

    pub fn add(&mut self, name: &str, shape: &[usize], init: Init, rng: &mut Rng) -> Result<Var> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match init {
            Init::Xavier => {
                let (fi, fo) = (shape[0], *shape.last().unwrap_or(&1));
                let a = (6.0 / (fi + fo) as f64).sqrt();
                (0..n).map(|_| (a * (2.0 * rng.uniform() - 1.0)) as f32).collect()
            }
            Init::Normal(s) => (0..n).map(|_| (s * rng.normal()) as f32).collect(),
            Init::Zeros => vec![0.0; n],
        };
        let v = Var::from_tensor(&Tensor::from_vec(data, shape, &self.device)?.to_dtype(self.dtype)?)?;
        self.vars.push((name.to_string(), v.clone()));
        Ok(v)
    }

    pub fn count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// A trainable denoiser: rows of flattened data in, the raw prediction out.
pub trait Network: Sync {
    fn params(&self) -> &Params;
    fn macs(&self) -> &MacCounter;
    /// The config it was built from (which also counts it).
    fn config(&self) -> ModelConfig;
    fn prediction(&self) -> PredictionType;
    /// Real classes of the label embedding; the null class (for guidance) is index `classes`.
    fn classes(&self) -> Option<usize>;
    /// Raw output [rows, dim] for `x` [rows, dim] at timesteps `t`; `label` per row, or the null
    /// class when absent.
    fn forward(&self, x: &Tensor, t: &[f64], label: Option<&[usize]>) -> Result<Tensor>;

    /// The training forward pass: the prediction at the values the loss sees, flattened, and
    /// their flat indices into the [rows, dim] target; `None` when it sees every value (all
    /// but MicroDiT-style masked models). `seed` draws which patches each sample keeps.
    fn forward_train(
        &self,
        x: &Tensor,
        t: &[f64],
        label: Option<&[usize]>,
        seed: u64,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let _ = seed;
        Ok((self.forward(x, t, label)?, None))
    }

    /// Analytic forward MACs per sample, from the config.
    fn forward_macs(&self) -> f64 {
        self.config().count().total().macs.values().sum()
    }
}

/// Build the trainable model of a config, its parameters drawn from `seed`.
pub fn build(
    cfg: &ModelConfig,
    prediction: PredictionType,
    device: &Device,
    dtypes: impl Into<Dtypes>,
    seed: u64,
) -> std::result::Result<Box<dyn Network>, String> {
    let dtype = dtypes.into();
    let e = |e: candle_core::Error| e.to_string();
    Ok(match cfg {
        ModelConfig::Mlp(c) => Box::new(Mlp::with_dtype(c, prediction, device, dtype, seed).map_err(e)?),
        ModelConfig::Dit(c) => Box::new(Dit::new(c, prediction, device, dtype, seed).map_err(e)?),
        ModelConfig::Unet(c) => Box::new(Unet::new(c, prediction, device, dtype, seed).map_err(e)?),
        other => return Err(format!("the `{}` family has no trainable model (use mlp, dit or unet)", other.family())),
    })
}

/// The same architecture with parameters taken from `values` (in `params` order), e.g. the EMA.
pub fn with_values(net: &dyn Network, values: &[Tensor]) -> std::result::Result<Box<dyn Network>, String> {
    let p = net.params();
    let m = build(&net.config(), net.prediction(), p.device(), p.dtypes(), 0)?;
    for ((_, v), t) in m.params().vars.iter().zip(values) {
        v.set(t).map_err(|e| e.to_string())?;
    }
    Ok(m)
}

/// Every network is a denoiser the samplers can drive.
impl Model for Box<dyn Network> {
    fn dim(&self) -> usize {
        self.config().data_dim()
    }
    fn prediction(&self) -> PredictionType {
        Network::prediction(self.as_ref())
    }
    fn output(&self, x: &[f64], at: Time, class: Option<&[usize]>) -> Vec<f64> {
        // A conditioned model reads rows [x_t | y] (see `Conditioned`).
        let d = Model::dim(self) + self.config().cond_dim();
        let run = || -> Result<Vec<f64>> {
            let xt = rows_tensor(x, d, self.params().device())?;
            let t = vec![at.t.max(0.0); x.len() / d];
            tensor_rows(&self.forward(&xt, &t, class)?)
        };
        run().unwrap_or_else(|e| panic!("the model's forward pass failed: {e}"))
    }
}

/// Sinusoidal features of timesteps: [cos(t·f_k), sin(t·f_k)], f_k = 10000^(−k/(n/2)).
pub fn timestep_features(t: &[f64], n: usize, device: &Device) -> Result<Tensor> {
    let half = n / 2;
    let mut v = Vec::with_capacity(t.len() * n);
    for &ti in t {
        let f = |k: usize| (-(10000f64).ln() * k as f64 / half as f64).exp();
        v.extend((0..half).map(|k| (ti * f(k)).cos() as f32));
        v.extend((0..half).map(|k| (ti * f(k)).sin() as f32));
    }
    Tensor::from_vec(v, (t.len(), n), device)
}

/// Rows of f64 as an f32 tensor [rows, dim].
pub fn rows_tensor(x: &[f64], dim: usize, device: &Device) -> Result<Tensor> {
    Tensor::from_vec(x.iter().map(|v| *v as f32).collect::<Vec<f32>>(), (x.len() / dim, dim), device)
}

pub fn tensor_rows(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
}

#[cfg(test)]
mod tests;
