//! Training: AdamW, learning-rate and EMA schedules tied to each run's own length, gradient
//! clipping, label dropout, FLOP budgets, checkpoints that a killed run resumes from.
//!
//! Every random draw of step s (data, timesteps, noise, dropout) comes from
//! `substream(seed, s)`, so a resumed run needs no RNG state beyond the step: resuming at step
//! s replays exactly the draws the uninterrupted run would have made.

use crate::data::{Draw, Gmm};
use crate::diffusion::{target, x0_eps, PredictionType, Schedule, Time};
use crate::models::{rows_tensor, tensor_rows, Network};
use crate::seed::{substream, Rng};
use candle_core::{Tensor, Var};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a model is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Stop after this many steps …
    #[serde(default)]
    pub steps: Option<u64>,
    /// … or when the training compute (3 × forward FLOPs × batch × steps, FLOPs = 2 × MACs)
    /// reaches this budget.
    #[serde(default)]
    pub flop_budget: Option<f64>,
    pub batch: usize,
    /// Peak learning rate of AdamW.
    pub learning_rate: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Linear warm-up over this fraction of the run, then cosine decay to `final_lr_fraction`.
    pub warmup_fraction: f64,
    pub final_lr_fraction: f64,
    /// EMA horizon as a fraction of the run (decay 1 − 1/(fraction × steps)): an EMA of 0.9999
    /// on a 5k-step run would average mostly the initialisation.
    pub ema_fraction: f64,
    /// Clip the global gradient norm to this.
    pub clip: f64,
    /// A masked model's last fraction of steps without masking (MicroDiT's unmasked fine-tune,
    /// about 10% of its steps); its FLOPs count at the unmasked cost.
    #[serde(default)]
    pub unmasked_fraction: f64,
    /// Probability of replacing a label by the null class (for guidance).
    #[serde(default)]
    pub label_dropout: f64,
    pub prediction: PredictionType,
    pub schedule: Schedule,
    /// Save a checkpoint every this many steps (and resume from it).
    #[serde(default = "default_every")]
    pub checkpoint_every: u64,
}

fn default_every() -> u64 {
    500
}

/// What a finished training run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Trained {
    pub steps: u64,
    pub train_flops: f64,
    pub final_loss: f64,
    /// Steps that were replayed from a checkpoint rather than run.
    pub resumed_at: u64,
    /// The training loss: (last step of a window, mean loss over the window), in up to
    /// [`CURVE_POINTS`] windows of equal length, from `resumed_at` on (a checkpoint keeps no curve).
    pub curve: Vec<[f64; 2]>,
}

/// Points of a loss curve, however long the training.
pub const CURVE_POINTS: u64 = 64;

impl TrainSpec {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut e = vec![];
        let mut req = |ok: bool, f: &str, m: &str| crate::compute::require(&mut e, ok, f, m);
        req(
            self.steps.is_some() != self.flop_budget.is_some(),
            "steps",
            "give exactly one of `steps` and `flop_budget`",
        );
        req(self.steps.is_none_or(|s| (1..=10_000_000).contains(&s)), "steps", "must be between 1 and 10,000,000");
        req(self.flop_budget.is_none_or(|b| b > 0.0 && b.is_finite()), "flop_budget", "must be positive");
        req((1..=65_536).contains(&self.batch), "batch", "must be between 1 and 65,536");
        req(self.learning_rate > 0.0 && self.learning_rate < 1.0, "learning_rate", "must be in (0, 1)");
        req((0.0..1.0).contains(&self.weight_decay), "weight_decay", "must be in [0, 1)");
        req((0.0..1.0).contains(&self.warmup_fraction), "warmup_fraction", "must be in [0, 1)");
        req((0.0..=1.0).contains(&self.final_lr_fraction), "final_lr_fraction", "must be in [0, 1]");
        req(self.ema_fraction > 0.0 && self.ema_fraction <= 1.0, "ema_fraction", "must be in (0, 1]");
        req(self.clip > 0.0, "clip", "must be positive");
        req((0.0..1.0).contains(&self.label_dropout), "label_dropout", "must be in [0, 1)");
        req((0.0..1.0).contains(&self.unmasked_fraction), "unmasked_fraction", "must be in [0, 1)");
        req(self.checkpoint_every >= 1, "checkpoint_every", "must be at least 1");
        e
    }

    /// Steps for a model whose forward pass costs `forward_macs` per sample.
    pub fn steps_for(&self, forward_macs: f64) -> u64 {
        match (self.steps, self.flop_budget) {
            (Some(s), _) => s,
            (None, Some(b)) => (b / (3.0 * 2.0 * forward_macs * self.batch as f64)).floor().max(1.0) as u64,
            _ => 1,
        }
    }

    /// Warm-up then cosine decay, both over this run's own length.
    pub fn learning_rate_at(&self, step: u64, total: u64) -> f64 {
        let warm = (self.warmup_fraction * total as f64).max(1.0);
        let s = step as f64;
        if s < warm {
            return self.learning_rate * (s + 1.0) / warm;
        }
        let p = ((s - warm) / (total as f64 - warm).max(1.0)).min(1.0);
        let f =
            self.final_lr_fraction + (1.0 - self.final_lr_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        self.learning_rate * f
    }
}

/// One step's optimiser settings: learning rate, weight decay, gradient-norm clip, EMA decay.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hyper {
    pub lr: f64,
    pub wd: f64,
    pub clip: f64,
    pub beta: f64,
}

/// Backpropagate `loss`, clip, take an AdamW step and update the EMA; returns the loss value.
/// A non-finite loss is returned without stepping (the caller reports it).
pub(crate) fn optimise_step(
    model: &dyn Network,
    loss: &Tensor,
    opt: &mut AdamW,
    ema: &mut [Tensor],
    h: Hyper,
) -> candle_core::Result<f64> {
    let (value, grads) = gradients(model, loss)?;
    if let Some(g) = grads {
        update(model, &[(1.0, g)], opt, ema, h)?;
    }
    Ok(value)
}

/// The loss value and, when it is finite, the gradient of every parameter in `params()` order.
fn gradients(model: &dyn Network, loss: &Tensor) -> candle_core::Result<(f64, Option<Vec<Tensor>>)> {
    let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Ok((value, None));
    }
    let grads = loss.backward()?;
    let g = model
        .params()
        .vars
        .iter()
        .map(|(n, v)| {
            grads.get(v).cloned().ok_or_else(|| candle_core::Error::Msg(format!("no gradient reached `{n}`")))
        })
        .collect::<Result<_, _>>()?;
    Ok((value, Some(g)))
}

/// Clip the gradient Σₖ wₖ·gₖ of a batch whose parts' gradients are gₖ, take an AdamW step
/// and update the EMA.
fn update(
    model: &dyn Network,
    parts: &[(f64, Vec<Tensor>)],
    opt: &mut AdamW,
    ema: &mut [Tensor],
    h: Hyper,
) -> candle_core::Result<()> {
    let vars = &model.params().vars;
    if model.params().device().is_cpu() && model.params().dtype() == candle_core::DType::F32 {
        return fused_cpu_update(vars, parts, opt, ema, h);
    }
    let g: Vec<Tensor> = match parts {
        [(_, g)] => g.clone(),
        _ => (0..vars.len())
            .map(|i| parts.iter().map(|(w, g)| &g[i] * *w).reduce(|a, b| a? + b?).expect("at least one part"))
            .collect::<Result<_, _>>()?,
    };
    let sq = |t: &Tensor| t.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>();
    let norm = g.iter().map(sq).collect::<Result<Vec<f64>, _>>()?.iter().sum::<f64>().sqrt();
    let scale = (h.clip / norm.max(1e-12)).min(1.0);
    let g: Vec<Tensor> = g.iter().map(|t| t * scale).collect::<Result<_, _>>()?;
    opt.update(vars, &g, h.lr, h.wd)?;
    for (e, (_, v)) in ema.iter_mut().zip(vars) {
        *e = ((&*e * h.beta)? + (v.as_tensor().detach() * (1.0 - h.beta))?)?;
    }
    Ok(())
}

/// AdamW (Loshchilov & Hutter 2019) with its moments in the open, so they can be saved.
pub(crate) struct AdamW {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
}

impl AdamW {
    pub(crate) fn new(vars: &[(String, Var)]) -> candle_core::Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            m: vars.iter().map(|(_, v)| zeros(v)).collect::<Result<_, _>>()?,
            v: vars.iter().map(|(_, v)| zeros(v)).collect::<Result<_, _>>()?,
            step: 0,
        })
    }

    fn update(&mut self, vars: &[(String, Var)], grads: &[Tensor], lr: f64, wd: f64) -> candle_core::Result<()> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.step += 1;
        let (c1, c2) = (1.0 - b1.powi(self.step as i32), 1.0 - b2.powi(self.step as i32));
        // Everything here is detached: optimizer state must not carry autograd history from
        // step to step (that chain grows without bound and leaks memory).
        for (i, ((_, var), g)) in vars.iter().zip(grads).enumerate() {
            let g = g.detach();
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let step = ((&self.m[i] / c1)? / ((&self.v[i] / c2)?.sqrt()? + eps)?)?;
            let p = var.as_tensor().detach();
            var.set(&((p * (1.0 - lr * wd))? - (step * lr)?)?)?;
        }
        Ok(())
    }
}

/// Clipping, AdamW and the EMA in one pass over each parameter's values, on the CPU. The same
/// arithmetic as the tensor path (`AdamW::update`), without its ~20 small tensor ops per
/// parameter, which dominate a step of the small models the CPU profiles train. The parts'
/// gradients are combined in f64, in part order (one part of weight 1 is its gradient exactly).
fn fused_cpu_update(
    vars: &[(String, Var)],
    parts: &[(f64, Vec<Tensor>)],
    opt: &mut AdamW,
    ema: &mut [Tensor],
    h: Hyper,
) -> candle_core::Result<()> {
    let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
    let g: Vec<Vec<f64>> = (0..vars.len()).map(|i| combined(parts, i)).collect::<Result<_, _>>()?;
    let norm = g.iter().flatten().map(|v| v.powi(2)).sum::<f64>().sqrt();
    let scale = (h.clip / norm.max(1e-12)).min(1.0);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    opt.step += 1;
    let (c1, c2) = (1.0 - b1.powi(opt.step as i32), 1.0 - b2.powi(opt.step as i32));
    let (lr, wd, beta) = (h.lr, h.wd, h.beta);
    for (i, (_, var)) in vars.iter().enumerate() {
        let shape = var.shape().clone();
        let dev = var.device().clone();
        let (mut p, mut m, mut v, mut e) = (flat(var.as_tensor())?, flat(&opt.m[i])?, flat(&opt.v[i])?, flat(&ema[i])?);
        crate::ops::wide!(|| {
            for ((((p, m), v), e), g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(e.iter_mut()).zip(&g[i]) {
                let gk = g * scale;
                let mk = b1 * f64::from(*m) + (1.0 - b1) * gk;
                let vk = b2 * f64::from(*v) + (1.0 - b2) * gk * gk;
                let step = (mk / c1) / ((vk / c2).sqrt() + eps);
                let pk = f64::from(*p) * (1.0 - lr * wd) - lr * step;
                (*m, *v, *p) = (mk as f32, vk as f32, pk as f32);
                *e = (beta * f64::from(*e) + (1.0 - beta) * pk) as f32;
            }
        });
        let back = |x: Vec<f32>| Tensor::from_vec(x, &shape, &dev);
        var.set(&back(p)?)?;
        (opt.m[i], opt.v[i], ema[i]) = (back(m)?, back(v)?, back(e)?);
    }
    Ok(())
}

/// Samples below which a part of a batch is not split off: smaller GEMMs lose more than the
/// parallelism gains.
const MIN_PART_ROWS: usize = 8;
/// A part's forward MACs below which splitting costs more (per-op overhead) than it gains.
const MIN_PART_MACS: f64 = 2e8;
/// At most this many parts: enough for the machines the CPU profiles target.
const MAX_PARTS: usize = 4;

/// How many parts a training batch is split into, to run on several threads at once: a
/// function of the model and the batch only, never of the thread count, so the numbers do not
/// depend on the machine. The parts' gradients are summed in part order (`fused_cpu_update`).
/// candle runs most elementwise ops, and the autograd between them, on one thread; parts of the
/// batch keep every core busy through the whole step. Only on the CPU.
fn batch_parts(model: &dyn Network, batch: usize) -> usize {
    if !model.params().device().is_cpu() {
        return 1;
    }
    let by_macs = (batch as f64 * model.forward_macs() / MIN_PART_MACS).floor() as usize;
    by_macs.min(batch / MIN_PART_ROWS).clamp(1, MAX_PARTS)
}

/// `batch` rows in `n` contiguous ranges whose sizes differ by at most one.
fn parts(batch: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    (0..n).map(|k| k * batch / n..(k + 1) * batch / n).collect()
}

/// Parameter `i`'s gradient Σₖ wₖ·gₖ over the parts of a batch, in f64, in part order.
fn combined(parts: &[(f64, Vec<Tensor>)], i: usize) -> candle_core::Result<Vec<f64>> {
    let mut sum = vec![0f64; parts[0].1[i].elem_count()];
    for (w, grads) in parts {
        let g = grads[i].flatten_all()?.to_vec1::<f32>()?;
        sum.iter_mut().zip(g).for_each(|(s, v)| *s += w * f64::from(v));
    }
    Ok(sum)
}

/// A step's batch on the host: labels, timesteps, noised inputs x_t and regression targets.
struct Prepared {
    labels: Vec<usize>,
    t: Vec<f64>,
    xt: Vec<f64>,
    tgt: Vec<f64>,
}

/// The training batch of step `s`: clean data, labels (some dropped), timesteps and noise.
fn batch(
    data: &dyn Draw,
    spec: &TrainSpec,
    null: usize,
    seed: u64,
    s: u64,
) -> (Vec<f64>, Vec<usize>, Vec<f64>, Vec<f64>) {
    let base = substream(seed, s);
    let (x0, mut labels) = data.draw(substream(base, 0), 0, spec.batch, None);
    let mut rng = Rng::new(substream(base, 1));
    let tmax = spec.schedule.train_steps;
    let t: Vec<f64> = (0..spec.batch).map(|_| rng.below(tmax) as f64).collect();
    // Noise for the sample's own values only, not for a conditioning vector after them.
    let noised = x0.len() / data.dim() * (data.dim() - data.cond_dim());
    let eps: Vec<f64> = (0..noised).map(|_| rng.normal()).collect();
    for l in labels.iter_mut() {
        if rng.uniform() < spec.label_dropout {
            *l = null;
        }
    }
    (x0, labels, t, eps)
}

/// Save parameters, EMA, optimizer moments and the step, with the one atomic writer (a crash
/// leaves the previous checkpoint whole).
fn save(path: &Path, model: &dyn Network, ema: &[Tensor], opt: &AdamW) -> candle_core::Result<()> {
    let mut map: Vec<(String, Tensor)> = vec![];
    for (i, (name, v)) in model.params().vars.iter().enumerate() {
        map.push((format!("param.{name}"), v.as_tensor().clone()));
        map.push((format!("ema.{name}"), ema[i].clone()));
        map.push((format!("adam_m.{name}"), opt.m[i].clone()));
        map.push((format!("adam_v.{name}"), opt.v[i].clone()));
    }
    map.push(("step".into(), Tensor::new(&[opt.step as u32], model.params().device())?));
    let bytes = safetensors::tensor::serialize(map.iter().map(|(k, t)| (k.as_str(), t)), None)
        .map_err(candle_core::Error::wrap)?;
    crate::atomic::write_atomic(path, &bytes).map_err(candle_core::Error::wrap)
}

/// Restore a checkpoint into `model`, returning the EMA, optimizer and step. Every tensor is
/// read and shape-checked before any parameter is set, so a bad checkpoint leaves the model as
/// it was.
fn load(path: &Path, model: &dyn Network) -> candle_core::Result<(Vec<Tensor>, AdamW)> {
    let map = candle_core::safetensors::load(path, model.params().device())?;
    let get = |k: &str, like: &Var| {
        let t = map.get(k).cloned().ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {k}")))?;
        if t.dims() != like.dims() || t.dtype() != like.dtype() {
            candle_core::bail!(
                "{k} is {:?} {:?}, the model's is {:?} {:?}",
                t.dims(),
                t.dtype(),
                like.dims(),
                like.dtype()
            )
        }
        Ok(t)
    };
    let step = map.get("step").ok_or_else(|| candle_core::Error::Msg("checkpoint lacks step".into()))?;
    let mut opt = AdamW { m: vec![], v: vec![], step: step.to_vec1::<u32>()?.first().copied().unwrap_or(0) as u64 };
    let (mut params, mut ema) = (vec![], vec![]);
    for (name, v) in &model.params().vars {
        params.push(get(&format!("param.{name}"), v)?);
        ema.push(get(&format!("ema.{name}"), v)?);
        opt.m.push(get(&format!("adam_m.{name}"), v)?);
        opt.v.push(get(&format!("adam_v.{name}"), v)?);
    }
    for ((_, v), p) in model.params().vars.iter().zip(&params) {
        v.set(p)?;
    }
    Ok((ema, opt))
}

/// Train `model` on `data`; returns the report and the EMA weights. With `checkpoint`, progress
/// is saved there and a run that finds one resumes from it (and removes it when done).
pub fn train(
    model: &dyn Network,
    data: &dyn Draw,
    spec: &TrainSpec,
    seed: u64,
    checkpoint: Option<&Path>,
) -> Result<(Trained, Vec<Tensor>), String> {
    train_until(model, data, spec, seed, checkpoint, None)
}

/// `train`, stopping (as if killed) once `stop_after` steps are done.
pub(crate) fn train_until(
    model: &dyn Network,
    data: &dyn Draw,
    spec: &TrainSpec,
    seed: u64,
    checkpoint: Option<&Path>,
    stop_after: Option<u64>,
) -> Result<(Trained, Vec<Tensor>), String> {
    let err = |e: candle_core::Error| format!("training failed: {e}");
    let d = model.config().data_dim();
    // A conditioned model's rows are [x_t | y]; y is the data's, never noised or predicted.
    let c = model.config().cond_dim();
    if c != data.cond_dim() {
        return Err(format!("the model takes a condition of {c} values but the data gives {}", data.cond_dim()));
    }
    if d + c != data.dim() {
        return Err(format!("the model takes {d} values per sample but the data has {}", data.dim() - c));
    }
    if let Some(k) = model.classes().filter(|k| *k < data.classes()) {
        return Err(format!("the model knows {k} classes but the data has {}", data.classes()));
    }
    let null = model.classes().unwrap_or(data.classes());
    // A step's forward MACs, averaged over the masked steps and the unmasked fine-tune.
    let unmasked_macs = model.config().unmasked().count().total().macs.values().sum::<f64>();
    let f = spec.unmasked_fraction;
    let fwd_macs = (1.0 - f) * model.forward_macs() + f * unmasked_macs;
    let total = spec.steps_for(fwd_macs);
    let fine_tune_from = total - (f * total as f64).round() as u64;
    let vars = &model.params().vars;
    // A checkpoint that does not load (truncated, or from another model) is discarded with a
    // warning and training starts over: it must not fail the case on every rerun.
    let resumed = checkpoint.filter(|p| p.is_file()).and_then(|p| {
        load(p, model)
            .inspect_err(|e| {
                eprintln!(
                    "warning: {}: checkpoint does not load ({e}); discarding it and training from the start",
                    p.display()
                );
                let _ = std::fs::remove_file(p);
            })
            .ok()
    });
    let (mut ema, mut opt) = match resumed {
        Some(state) => state,
        None => (
            vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<Result<_, _>>().map_err(err)?,
            AdamW::new(vars).map_err(err)?,
        ),
    };
    let resumed_at = opt.step;
    let ac = spec.schedule.alphas_cumprod();
    let beta = 1.0 - 1.0 / (spec.ema_fraction * total as f64).max(1.0);
    let mut loss_value = f64::NAN;
    let window = total.div_ceil(CURVE_POINTS).max(1);
    let (mut curve, mut window_sum, mut window_len) = (vec![], 0.0, 0u64);
    // The host draws step s's batch (noised inputs and targets) from the seed alone.
    let prepare = |s: u64| -> Prepared {
        let (x0, labels, t, eps) = batch(data, spec, null, seed, s);
        let times: Vec<Time> = t.iter().map(|ti| Time::from_alpha_bar(*ti, ac[*ti as usize])).collect();
        let xt: Vec<f64> = x0
            .chunks(d + c)
            .zip(eps.chunks(d))
            .zip(&times)
            .flat_map(|((x, e), at)| {
                let noisy = x[..d].iter().zip(e).map(|(x, e)| at.alpha * x + at.sigma * e);
                noisy.chain(x[d..].iter().copied()).collect::<Vec<_>>()
            })
            .collect();
        let tgt: Vec<f64> = x0
            .chunks(d + c)
            .zip(eps.chunks(d))
            .zip(&times)
            .flat_map(|((x, e), at)| target(spec.prediction, &x[..d], e, *at))
            .collect();
        Prepared { labels, t, xt, tgt }
    };
    let dev = model.params().device();
    let mut upcoming = (opt.step < total).then(|| prepare(opt.step));
    for s in opt.step..total {
        let Prepared { labels, t, xt, tgt } = upcoming.take().expect("prepared before the step");

        let mask_seed = substream(substream(seed, s), 2);
        // One part of the batch: its mean loss, its share of the batch's loss terms, its gradients.
        let part =
            |k: usize, rows: &std::ops::Range<usize>| -> candle_core::Result<(f64, usize, Option<Vec<Tensor>>)> {
                // Part 0 keeps the step's mask seed, so an unsplit batch draws the masks it always did.
                let mask_seed = if k == 0 { mask_seed } else { substream(mask_seed, k as u64) };
                let cls = model.classes().map(|_| &labels[rows.clone()]);
                let x = rows_tensor(&xt[rows.start * (d + c)..rows.end * (d + c)], d + c, dev)?;
                let t = &t[rows.clone()];
                let (out, seen) = if s < fine_tune_from {
                    model.forward_train(&x, t, cls, mask_seed)?
                } else {
                    (model.forward(&x, t, cls)?, None)
                };
                // The loss in f32 whatever the activations' dtype (as autocast computes it).
                let out = out.to_dtype(candle_core::DType::F32)?;
                let tgt = rows_tensor(&tgt[rows.start * d..rows.end * d], d, dev)?;
                // Masked models are scored on the pixels of the patches they kept (MicroDiT).
                let tgt = match seen {
                    Some(idx) => tgt.flatten_all()?.index_select(&idx, 0)?,
                    None => tgt,
                };
                let terms = tgt.elem_count();
                let (value, grads) = gradients(model, &(out - tgt)?.sqr()?.mean_all()?)?;
                Ok((value, terms, grads))
            };
        let mut step = || -> candle_core::Result<f64> {
            let ranges = parts(spec.batch, batch_parts(model, spec.batch));
            let done: Vec<_> = ranges.par_iter().enumerate().map(|(k, r)| part(k, r)).collect::<Result<_, _>>()?;
            // The batch's loss is the mean over all its terms: each part's mean weighted by its share.
            let terms = done.iter().map(|(_, n, _)| *n).sum::<usize>() as f64;
            let value = done.iter().map(|(v, n, _)| v * *n as f64 / terms).sum::<f64>();
            let weighted = done.into_iter().map(|(_, n, g)| g.map(|g| (n as f64 / terms, g)));
            let Some(grads) = weighted.collect::<Option<Vec<_>>>() else { return Ok(value) };
            let hyper = Hyper { lr: spec.learning_rate_at(s, total), wd: spec.weight_decay, clip: spec.clip, beta };
            update(model, &grads, &mut opt, &mut ema, hyper)?;
            Ok(value)
        };
        // Off the CPU, the host draws the next batch on another thread while the device runs this
        // step (the same values either way: a batch depends on its step's seed only).
        let (result, ahead) = std::thread::scope(|scope| {
            let ahead = (!dev.is_cpu() && s + 1 < total).then(|| scope.spawn(|| prepare(s + 1)));
            (step(), ahead.map(|h| h.join().expect("the batch thread does not panic")))
        });
        upcoming = ahead.or_else(|| (s + 1 < total).then(|| prepare(s + 1)));
        loss_value = result.map_err(err)?;
        if !loss_value.is_finite() {
            return Err(format!("the loss became {loss_value} at step {s} of {total} (learning rate too high?)"));
        }
        (window_sum, window_len) = (window_sum + loss_value, window_len + 1);
        if (s + 1) % window == 0 || s + 1 == total {
            curve.push([(s + 1) as f64, window_sum / window_len as f64]);
            (window_sum, window_len) = (0.0, 0);
        }
        if let Some(p) = checkpoint {
            if (s + 1) % spec.checkpoint_every == 0 && s + 1 < total {
                save(p, model, &ema, &opt).map_err(err)?;
            }
        }
        if stop_after == Some(s + 1) {
            return Err(format!("stopped after step {}", s + 1));
        }
    }
    if let Some(p) = checkpoint {
        let _ = std::fs::remove_file(p);
    }
    let step_macs = fine_tune_from as f64 * model.forward_macs() + (total - fine_tune_from) as f64 * unmasked_macs;
    let train_flops = 3.0 * 2.0 * step_macs * spec.batch as f64;
    Ok((Trained { steps: total, train_flops, final_loss: loss_value, resumed_at, curve }, ema))
}

/// The excess denoising error at one noise level of the held-out bank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelError {
    /// The training timestep index.
    pub t: f64,
    /// α²/σ² at t.
    pub snr: f64,
    /// E‖x̂0_θ − D*‖² per sample (summed over coordinates).
    pub x0: f64,
}

impl LevelError {
    /// The same error in ε-space: ε̂ − ε* = −(α/σ)(x̂0 − D*), so ‖ε̂ − ε*‖² = SNR · ‖x̂0 − D*‖².
    pub fn eps(&self) -> f64 {
        self.snr * self.x0
    }
}

/// Number of noise levels of the held-out bank (an even grid over the schedule's timesteps).
pub const EVAL_LEVELS: usize = 16;

/// The headline quality of a trained model: the held-out excess denoising error in ε-space,
/// averaged uniformly over the bank's noise levels, which is the weighting of the ε-prediction
/// loss the models train on (uniform t, "simple" loss). In x0-space the same errors carry
/// weight σ²/α² relative to that, ×428 at the top level of a cosine schedule against ×46 and
/// ×16 for the next two, so an x0-space average measures little but the noisiest level.
pub fn headline(levels: &[LevelError]) -> f64 {
    levels.iter().map(LevelError::eps).sum::<f64>() / levels.len() as f64
}

/// Held-out excess denoising error per noise level on a fixed bank of (x0, t, ε): the part of
/// the model's error above the Bayes error. A class-conditional model is scored given each
/// sample's class, against the class-conditional oracle.
pub fn excess_error_levels(
    model: &dyn Network,
    data: &Gmm,
    schedule: &Schedule,
    samples: usize,
    seed: u64,
) -> Result<Vec<LevelError>, String> {
    let d = data.dim;
    let ac = schedule.alphas_cumprod();
    let (x0, labels) = data.sample(substream(seed, 0), 0, samples, None);
    let mut rng = Rng::new(substream(seed, 1));
    let mut out = vec![];
    // Chunks of rows sharing one timestep from an even grid over the schedule.
    let per = samples.div_ceil(EVAL_LEVELS);
    for (li, (chunk, cls)) in x0.chunks(d * per).zip(labels.chunks(per)).enumerate() {
        let ti = ((li as f64 + 0.5) / EVAL_LEVELS as f64 * (ac.len() - 1) as f64).round();
        let at = Time::from_alpha_bar(ti, ac[ti as usize]);
        let xt: Vec<f64> = chunk.iter().map(|x| at.alpha * x + at.sigma * rng.normal()).collect();
        let cls = model.classes().map(|_| cls);
        let out_t = model
            .forward(
                &rows_tensor(&xt, d, model.params().device()).map_err(|e| e.to_string())?,
                &vec![ti; chunk.len() / d],
                cls,
            )
            .and_then(|o| tensor_rows(&o))
            .map_err(|e| e.to_string())?;
        let (x0_hat, _) = x0_eps(model.prediction(), &out_t, &xt, at);
        let oracle = data.denoise(&xt, at.alpha, at.sigma, cls);
        let snr = (at.alpha / at.sigma).powi(2);
        out.push(LevelError { t: ti, snr, x0: crate::metrics::excess_denoising_error(&x0_hat, &oracle, d) });
    }
    Ok(out)
}

/// The held-out denoising loss, for data without an exact denoiser (the user's images): the
/// model's ε-space MSE on held-out images `x0` (of classes `labels`) at the excess error's
/// evenly spaced noise levels, averaged uniformly over the levels as [`headline`] is. It
/// includes the Bayes error the excess error removes, so it ranks models on the same data but
/// is not comparable across data.
pub fn heldout_loss(
    model: &dyn Network,
    x0: &[f64],
    labels: &[usize],
    schedule: &Schedule,
    seed: u64,
) -> Result<f64, String> {
    let d = model.config().data_dim();
    let ac = schedule.alphas_cumprod();
    let mut rng = Rng::new(substream(seed, 1));
    let per = (x0.len() / d).div_ceil(EVAL_LEVELS);
    let mut levels = vec![];
    for (li, (chunk, cls)) in x0.chunks(d * per).zip(labels.chunks(per)).enumerate() {
        let ti = ((li as f64 + 0.5) / EVAL_LEVELS as f64 * (ac.len() - 1) as f64).round();
        let at = Time::from_alpha_bar(ti, ac[ti as usize]);
        let eps: Vec<f64> = (0..chunk.len()).map(|_| rng.normal()).collect();
        let xt: Vec<f64> = chunk.iter().zip(&eps).map(|(x, e)| at.alpha * x + at.sigma * e).collect();
        let out_t = model
            .forward(
                &rows_tensor(&xt, d, model.params().device()).map_err(|e| e.to_string())?,
                &vec![ti; chunk.len() / d],
                model.classes().map(|_| cls),
            )
            .and_then(|o| tensor_rows(&o))
            .map_err(|e| e.to_string())?;
        let (_, eps_hat) = x0_eps(model.prediction(), &out_t, &xt, at);
        levels.push(eps_hat.iter().zip(&eps).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / chunk.len() as f64);
    }
    Ok(levels.iter().sum::<f64>() / levels.len().max(1) as f64)
}

/// The report's split of the headline by noise: ε-space excess error averaged over the low-,
/// mid- and high-noise thirds of the bank's levels (by timestep).
pub const LEVEL_BANDS: [(&str, std::ops::Range<usize>); 3] =
    [("excess_error_low_noise", 0..5), ("excess_error_mid_noise", 5..11), ("excess_error_high_noise", 11..16)];

/// [`LEVEL_BANDS`] of `levels`.
pub fn level_bands(levels: &[LevelError]) -> Vec<(&'static str, f64)> {
    LEVEL_BANDS
        .iter()
        .map(|(name, r)| {
            let part = &levels[r.start.min(levels.len())..r.end.min(levels.len())];
            (*name, part.iter().map(LevelError::eps).sum::<f64>() / part.len().max(1) as f64)
        })
        .collect()
}

/// [`headline`] of [`excess_error_levels`].
pub fn excess_error(
    model: &dyn Network,
    data: &Gmm,
    schedule: &Schedule,
    samples: usize,
    seed: u64,
) -> Result<f64, String> {
    excess_error_levels(model, data, schedule, samples, seed).map(|l| headline(&l))
}

pub mod consistency;
pub mod distill;

#[cfg(test)]
mod tests;
