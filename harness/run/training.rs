//! Cases of the training experiments: train one model (one budget, one seed) and score it.

use super::experiment::CaseCtx;
use crate::data::NoiseBank;
use crate::diffusion::{sample, Evaluator, FinalPoint, Grid, Sampler, Spacing};
use crate::metrics::frechet_from_samples;
use crate::models::{build, with_values, Network};
use crate::suite::{SampleFd, TrainSweepExp};
use candle_core::{DType, Device};
use std::collections::BTreeMap;

type Values = BTreeMap<String, f64>;

/// Train the model of `row` with this replicate's seed, and score its EMA weights: the
/// held-out excess denoising error, and optionally FD of its DDIM samples.
pub fn train_case(e: &TrainSweepExp, row: &str, ctx: &CaseCtx) -> Result<Values, String> {
    let (sized, budget) = e
        .models
        .iter()
        .find_map(|m| {
            if e.budgets.is_empty() {
                (m.label == row).then_some((m, None))
            } else {
                e.budgets.iter().find(|b| TrainSweepExp::row(&m.label, **b) == row).map(|b| (m, Some(*b)))
            }
        })
        .ok_or("row vanished")?;
    let data = e.data.build();
    let mut spec = e.training.clone();
    if budget.is_some() {
        spec.flop_budget = budget;
    }
    // One init per (model, replicate), shared across budgets: an isoFLOP row differs from its
    // neighbours only in how long it trains.
    let init = ctx.seed_for(&format!("init/{}", sized.label));
    let model = build(&sized.model, spec.prediction, &Device::Cpu, DType::F32, init)?;
    if let Some(dir) = ctx.checkpoint.as_ref().and_then(|p| p.parent()) {
        std::fs::create_dir_all(dir).map_err(|err| err.to_string())?;
    }
    let (report, ema) = crate::train::train(model.as_ref(), &data, &spec, ctx.seed, ctx.checkpoint.as_deref())?;
    let trained = with_values(model.as_ref(), &ema)?;
    let err =
        crate::train::excess_error(trained.as_ref(), &data, &spec.schedule, e.eval_samples, ctx.seed_for("eval"))?;
    let mut out = Values::from([
        ("params".into(), model.params().count() as f64),
        ("forward_gflops".into(), model.forward_macs() / 1e9),
        ("budget".into(), budget.unwrap_or(report.train_flops)),
        ("train_flops".into(), report.train_flops),
        ("steps".into(), report.steps as f64),
        ("final_loss".into(), report.final_loss),
        ("excess_error".into(), err),
    ]);
    if let Some(f) = &e.sample_fd {
        out.insert("fd".into(), sample_fd(&trained, &data, &spec.schedule, f, ctx)?);
    }
    Ok(out)
}

/// FD between DDIM samples of `model` (sample i prompted with class i mod C when conditional)
/// and as many draws of the data with the same classes. Noise and reference are shared by every
/// row of the replicate, so rows are compared on common random numbers.
// `Box<dyn Network>` (not `dyn Network`) is what implements the samplers' `Model`.
#[allow(clippy::borrowed_box)]
fn sample_fd(
    model: &Box<dyn Network>,
    data: &crate::data::Gmm,
    schedule: &crate::diffusion::Schedule,
    f: &SampleFd,
    ctx: &CaseCtx,
) -> Result<f64, String> {
    let (n, steps) = (f.samples, f.steps);
    let classes: Vec<usize> = (0..n).map(|i| i % data.classes).collect();
    let cond = model.classes().map(|_| &classes[..]);
    let (reference, _) = data.sample(ctx.seed_for("reference"), 0, n, cond);
    let grid = Grid::new(schedule, Spacing::Trailing, steps, FinalPoint::Zero);
    let mut ev = Evaluator::new(model);
    ev.class = cond;
    ev.clip_x0 = f.clip_x0;
    let mut bank = NoiseBank::new(ctx.seed_for("noise-bank"), 0, n, data.dim);
    let x = sample(Sampler::Ddim { eta: 0.0 }, &mut ev, &grid, &mut bank);
    if x.iter().any(|v| !v.is_finite()) {
        return Err(format!("the trained model produced non-finite samples at {steps} DDIM steps"));
    }
    Ok(frechet_from_samples(&x, &reference, data.dim))
}
