//! CoDi-lite: conditional consistency distillation in the form of Mei et al.'s CoDi (official
//! google-research `CoDi/training_scripts/train_codi_flax.py`; docs/methods.md §3.2), applied to the
//! whole network instead of a ControlNet adapter, without LPIPS (L2 instead).
//!
//! Per sample: t ~ U{0..T−1}, s = max(t − k, 0) with k = T/N_d (the skip), x_t = α_t x0 + σ_t ε.
//!   1. one DDIM step t → s with the EMA ("target") network itself: x̂_s = α_s x̂0⁻ + σ_s ε̂⁻;
//!   2. target  T_s = c_skip(s)·x̂_s + c_out(s)·x̂0⁻(x̂_s, s)              (stop-gradient);
//!   3. online  O_t = c_skip(t)·x_t + c_out(t)·x̂0_θ(x_t, t);
//!   4. loss    ‖O_t − T_s‖² + ‖O_t − x0‖²   (consistency + CoDi's data-regression term).
//!
//! The boundary scalings are LCM's and CoDi's: c_skip(t) = σ_d² / ((10t)² + σ_d²),
//! c_out(t) = 10t / √((10t)² + σ_d²), σ_d = 0.5, t the integer timestep; the EMA θ⁻ follows θ.
//! On the sampling grid (t ≥ 249 at 4 steps) c_skip < 10⁻⁶, so the student samples with plain
//! DDIM on its own x̂0, like every other model here.

use super::{optimise_step, AdamW, Hyper};
use crate::data::Gmm;
use crate::diffusion::{x0_eps, PredictionType, Schedule, Time};
use crate::models::{rows_tensor, tensor_rows, with_values, Network};
use crate::seed::{substream, Rng};
use candle_core::{DType, Tensor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const SIGMA_DATA: f64 = 0.5;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencySpec {
    /// The student's sampling steps (DDIM, trailing grid); its FD is column `cd` in that row.
    pub steps: usize,
    /// Optimiser updates (0 leaves the student untrained: a negative control).
    pub updates: u64,
    pub batch: usize,
    pub learning_rate: f64,
    /// Timesteps between t and s: T/N_d, 20 for CoDi's N_d = 50.
    #[serde(default = "default_skip")]
    pub skip: usize,
    /// EMA decay of the target network (CoDi: 0.999 over its long runs).
    #[serde(default = "default_ema")]
    pub ema: f64,
}

fn default_skip() -> usize {
    20
}
fn default_ema() -> f64 {
    0.95
}

impl ConsistencySpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        let mut req = |ok: bool, f: &str, m: &str| crate::compute::require(&mut e, ok, f, m);
        req((1..=1000).contains(&self.steps), "steps", "must be between 1 and 1000");
        req(self.updates <= 10_000_000, "updates", "must be at most 10,000,000");
        req((1..=65_536).contains(&self.batch), "batch", "must be between 1 and 65,536");
        req(self.learning_rate > 0.0 && self.learning_rate < 1.0, "learning_rate", "must be in (0, 1)");
        req((1..=500).contains(&self.skip), "skip", "must be between 1 and 500");
        req((0.0..1.0).contains(&self.ema), "ema", "must be in [0, 1)");
        e
    }

    /// Training FLOPs: per sample the online forward and backward (3F) and two target forwards
    /// (the ODE step and the target itself), 5F (docs/methods.md §3.3), at 2 FLOPs per MAC.
    pub fn flops(&self, forward_macs: f64) -> f64 {
        self.updates as f64 * self.batch as f64 * 5.0 * 2.0 * forward_macs
    }
}

/// LCM's boundary scalings at integer timestep t (c_skip(0) = 1, c_out(0) = 0).
fn scalings(t: f64) -> (f64, f64) {
    let s = 10.0 * t;
    (SIGMA_DATA * SIGMA_DATA / (s * s + SIGMA_DATA * SIGMA_DATA), s / (s * s + SIGMA_DATA * SIGMA_DATA).sqrt())
}

/// (x̂0, ε̂) of `net` for rows at per-row times.
fn predict(
    net: &dyn Network,
    x: &[f64],
    times: &[Time],
    labels: Option<&[usize]>,
    d: usize,
) -> candle_core::Result<(Vec<f64>, Vec<f64>)> {
    let t: Vec<f64> = times.iter().map(|a| a.t).collect();
    let out = tensor_rows(&net.forward(&rows_tensor(x, d, net.params().device())?, &t, labels)?)?;
    let (mut x0, mut eps) = (vec![], vec![]);
    for ((xr, o), at) in x.chunks(d).zip(out.chunks(d)).zip(times) {
        let (a, b) = x0_eps(net.prediction(), o, xr, *at);
        x0.extend(a);
        eps.extend(b);
    }
    Ok((x0, eps))
}

/// Distil `student` in place (a copy of the trained model). Returns the last loss.
pub fn distil(
    student: &dyn Network,
    data: &Gmm,
    schedule: &Schedule,
    spec: &ConsistencySpec,
    seed: u64,
) -> Result<f64, String> {
    let err = |e: candle_core::Error| format!("consistency distillation failed: {e}");
    let (d, dev) = (data.dim, student.params().device().clone());
    let ac = schedule.alphas_cumprod();
    let time = |t: usize| Time::from_alpha_bar(t as f64, ac[t]);
    let vars = &student.params().vars;
    let mut ema: Vec<Tensor> = vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<Result<_, _>>().map_err(err)?;
    let target = with_values(student, &ema)?;
    let mut opt = AdamW::new(vars).map_err(err)?;
    let mut last = f64::NAN;
    for u in 0..spec.updates {
        let base = substream(seed, u);
        let (x0, labels) = data.sample(substream(base, 0), 0, spec.batch, None);
        let mut rng = Rng::new(substream(base, 1));
        let ts: Vec<usize> = (0..spec.batch).map(|_| rng.below(ac.len())).collect();
        let (tt, tsk): (Vec<Time>, Vec<Time>) =
            ts.iter().map(|t| (time(*t), time(t.saturating_sub(spec.skip)))).unzip();
        let xt: Vec<f64> = (0..spec.batch * d)
            .map(|k| {
                let at = tt[k / d];
                at.alpha * x0[k] + at.sigma * rng.normal()
            })
            .collect();
        let cls = student.classes().map(|_| labels.as_slice());
        let mut step = || -> candle_core::Result<f64> {
            // 1–2: the target, from the EMA network, without gradients.
            let (x0_t, eps_t) = predict(target.as_ref(), &xt, &tt, cls, d)?;
            let xs: Vec<f64> =
                (0..xt.len()).map(|k| tsk[k / d].alpha * x0_t[k] + tsk[k / d].sigma * eps_t[k]).collect();
            let (x0_s, _) = predict(target.as_ref(), &xs, &tsk, cls, d)?;
            let tgt: Vec<f64> = (0..xs.len())
                .map(|k| {
                    let (cs, co) = scalings(tsk[k / d].t);
                    cs * xs[k] + co * x0_s[k]
                })
                .collect();
            // 3: the online consistency function, with gradients.
            let x = rows_tensor(&xt, d, &dev)?;
            let t_in: Vec<f64> = tt.iter().map(|a| a.t).collect();
            let out = student.forward(&x, &t_in, cls)?.to_dtype(DType::F32)?;
            let col = |f: &dyn Fn(&Time) -> f64| {
                Tensor::from_vec(tt.iter().map(|a| f(a) as f32).collect::<Vec<f32>>(), (tt.len(), 1), &dev)
            };
            let (a, s) = (col(&|t| t.alpha)?, col(&|t| t.sigma)?);
            let x0h = match student.prediction() {
                PredictionType::V => (x.broadcast_mul(&a)? - out.broadcast_mul(&s)?)?,
                PredictionType::Epsilon => (x.clone() - out.broadcast_mul(&s)?)?.broadcast_div(&a)?,
                PredictionType::Sample => out,
            };
            let (cs, co) = (col(&|t| scalings(t.t).0)?, col(&|t| scalings(t.t).1)?);
            let online = (x.broadcast_mul(&cs)? + x0h.broadcast_mul(&co)?)?;
            // 4: consistency plus CoDi's data-regression term.
            let loss = ((&online - rows_tensor(&tgt, d, &dev)?)?.sqr()?.mean_all()?
                + (&online - rows_tensor(&x0, d, &dev)?)?.sqr()?.mean_all()?)?;
            let lr = spec.learning_rate;
            let v =
                optimise_step(student, &loss, &mut opt, &mut ema, Hyper { lr, wd: 0.0, clip: 1.0, beta: spec.ema })?;
            for ((_, tv), e) in target.params().vars.iter().zip(&ema) {
                tv.set(e)?;
            }
            Ok(v)
        };
        last = step().map_err(err)?;
        if !last.is_finite() {
            return Err(format!("the consistency loss became {last} at update {u}"));
        }
    }
    Ok(last)
}
