//! Cases of the training experiments: train one model (one budget, one seed) and score it.

use super::case::CaseCtx;
use super::sampling;
use crate::compute::{MlpConfig, ModelConfig};
use crate::data::{Captioned, Data, Draw, NoiseBank, Observed, Task};
use crate::diffusion::{sample, Evaluator, FinalPoint, Grid, Sampler, Spacing};
use crate::metrics::frechet_from_samples;
use crate::models::{build, with_values, Network};
use crate::seed::{derive_seed, substream};
use crate::suite::{FineTune, SampleFd, SamplerSweepExp, SizedModel, TrainSweepExp};
use candle_core::Tensor;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

type Values = BTreeMap<String, f64>;

/// Train the model of `row` with this replicate's seed, and score its EMA weights: the
/// held-out excess denoising error, and optionally FD of its DDIM samples.
pub fn train_case(e: &TrainSweepExp, row: &str, ctx: &CaseCtx) -> Result<Values, String> {
    let (sized, budget) = e.row_model(row).ok_or("row vanished")?;
    let data = e.data.load()?;
    let spec = sized.training(&e.training, budget);
    // A finite or captioned training set, drawn afresh per replicate and shared by its rows.
    let finite = match (&sized.train_set, data.exact()) {
        (Some(s), Some(g)) => Some(s.build(g, ctx.seed_for("train-set"))?),
        _ => None,
    };
    let captioned = sized.captions.as_ref().zip(data.exact()).map(|(c, g)| Captioned { gmm: g, dense: c.dense });
    let draws: &dyn Draw = match (&finite, &captioned) {
        (Some(f), _) => f,
        (_, Some(c)) => c,
        _ => data.draws(),
    };
    // Common random numbers: the init derives from what the model is (so it is shared across
    // budgets, and two rows of one config are the same run), and every row of a replicate sees
    // the same batches. Rows then differ only in what the claim varies.
    let what = serde_json::to_string(&sized.model).map_err(|e| e.to_string())?;
    let init = ctx.seed_for(&format!("init/{what}"));
    let model = build(&sized.model, spec.prediction, &ctx.backend.device, ctx.backend.precision.dtypes(), init)?;
    if let Some(dir) = ctx.checkpoint.as_ref().and_then(|p| p.parent()) {
        std::fs::create_dir_all(dir).map_err(|err| err.to_string())?;
    }
    let (report, ema) =
        crate::train::train(model.as_ref(), draws, &spec, ctx.seed_for("train"), ctx.checkpoint.as_deref())?;
    let trained = with_values(model.as_ref(), &ema)?;
    ctx.record_curve(&sized.label, &report.curve);
    let bank = ctx.shared_bank();
    let mut out = Values::from([
        ("params".into(), model.params().count() as f64),
        ("forward_gflops".into(), model.forward_macs() / 1e9),
        ("budget".into(), budget.unwrap_or(report.train_flops)),
        ("train_flops".into(), report.train_flops),
        ("steps".into(), report.steps as f64),
        ("final_loss".into(), report.final_loss),
    ]);
    match &data {
        Data::Exact(g) => {
            let levels = crate::train::excess_error_levels(
                trained.as_ref(),
                g,
                &spec.schedule,
                e.eval_samples,
                bank.seed_for("eval"),
            )?;
            out.insert("excess_error".into(), crate::train::headline(&levels));
            for (name, v) in crate::train::level_bands(&levels) {
                out.insert(name.into(), v);
            }
        }
        Data::Images(im) => {
            // Every held-out image, at the excess error's noise levels.
            let (x0, labels) = im.heldout(im.heldout_count(), None);
            let loss =
                crate::train::heldout_loss(trained.as_ref(), &x0, &labels, &spec.schedule, bank.seed_for("eval"))?;
            out.insert("heldout_loss".into(), loss);
        }
    }
    if let Some(f) = &e.sample_fd {
        let (fd, align) = sample_fd(&trained, &data, &spec.schedule, f, &bank)?;
        out.insert("fd".into(), fd);
        if let Some(a) = align {
            out.insert("align".into(), a);
        }
    }
    Ok(out)
}

/// FD between DDIM samples of `model` (sample i prompted with class i mod C when conditional)
/// and as many draws of the data with the same classes, and, for a conditional model, the
/// samples' exact alignment accuracy (the data's Bayes classifier agrees with the prompt). Noise
/// and reference are shared by every row of the replicate, so rows are compared on common
/// random numbers.
// `Box<dyn Network>` (not `dyn Network`) is what implements the samplers' `Model`.
#[allow(clippy::borrowed_box)]
fn sample_fd(
    model: &Box<dyn Network>,
    data: &Data,
    schedule: &crate::diffusion::Schedule,
    f: &SampleFd,
    ctx: &CaseCtx,
) -> Result<(f64, Option<f64>), String> {
    let (n, steps) = (f.samples, f.steps);
    let dim = data.draws().dim();
    let classes: Vec<usize> = (0..n).map(|i| i % data.draws().classes()).collect();
    let cond = model.classes().map(|_| &classes[..]);
    // The user's images: held-out ones, cycled when fewer than n.
    let (reference, _) = match data {
        Data::Exact(g) => g.sample(ctx.seed_for("reference"), 0, n, cond),
        Data::Images(im) => im.heldout(n, cond),
    };
    let grid = Grid::new(schedule, Spacing::Trailing, steps, FinalPoint::Zero);
    let mut ev = Evaluator::new(model);
    ev.class = cond;
    ev.clip_x0 = f.clip_x0;
    let mut bank = NoiseBank::new(ctx.seed_for("noise-bank"), 0, n, dim);
    let x = sample(Sampler::Ddim { eta: 0.0 }, &mut ev, &grid, &mut bank);
    if x.iter().any(|v| !v.is_finite()) {
        return Err(format!("the trained model produced non-finite samples at {steps} DDIM steps"));
    }
    // Exact alignment needs the data's Bayes classifier.
    let align = cond.zip(data.exact()).map(|(c, g)| crate::metrics::alignment_accuracy(g, &x, c));
    let (gen, k) = f.features.apply(&x, dim)?;
    let (reference, _) = f.features.apply(&reference, dim)?;
    Ok((frechet_from_samples(&gen, &reference, k), align))
}

/// A trained sampler sweep's case: train the model of `row` with this replicate's seed, then
/// score every (sampler, steps, w) cell, and optionally its distilled student.
pub fn sampler_sweep_case(e: &SamplerSweepExp, row: &str, ctx: &CaseCtx) -> Result<Values, String> {
    let sized = e.models.iter().find(|m| m.label == row).ok_or("row vanished")?;
    let spec = e.training.as_ref().ok_or("a trained sweep needs `training`")?;
    let data = e.data.build();
    let pretrained = pooled(&e.data, sized, spec, ctx)?;
    // A downstream task scores the fine-tuned model; its pretraining still counts as training.
    let (pooled, config) = match &e.finetune {
        Some(ft) => (finetuned(&e.data, sized, spec, ft, &pretrained, ctx)?, ft_config(&sized.model, ft, data.dim)),
        None => (pretrained.clone(), sized.model.clone()),
    };
    let model = build(&config, spec.prediction, &ctx.backend.device, ctx.backend.precision.dtypes(), 0)?;
    let (report, err) = (&pretrained.report, pretrained.excess_error);
    ctx.record_curve(&sized.label, &report.curve);
    if e.finetune.is_some() {
        ctx.record_curve(&format!("{} (fine-tuning)", sized.label), &pooled.report.curve);
    }
    let ema: Vec<Tensor> = model
        .params()
        .vars
        .iter()
        .zip(&pooled.ema)
        .map(|((_, v), x)| Tensor::from_vec(x.clone(), v.shape(), &ctx.backend.device))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let trained = with_values(model.as_ref(), &ema)?;
    // Sampling cost per network evaluation, relative to the largest model (Mei et al. relate
    // theirs to the 866M model).
    let macs = |m: &crate::compute::ModelConfig| m.count().total().macs.values().sum::<f64>();
    let largest = e.models.iter().map(|m| macs(&m.model)).fold(0.0, f64::max);
    let rel = model.forward_macs() / largest;
    let prompted = trained.classes().is_some() || !e.guidance_sweep.is_empty() || e.guidance != 1.0;
    let cells = e.sub_rows();
    // Pooled models are shared by claims; so is the bank they are scored on.
    let bank = ctx.shared_bank();
    let mut out = match e.finetune.as_ref().map(|f| &f.task) {
        Some(Task::SuperResolution { factor, noise }) => {
            let obs = Observed { gmm: &data, factor: *factor, noise: *noise };
            sampling::score_conditioned(e, &trained, &obs, &cells, prompted, &bank)?
        }
        Some(task @ Task::NewConcept { .. }) => {
            let concept = task.concept(&data).ok_or("a new concept")?;
            let mut v = sampling::score_cells(e, &trained, &concept, &cells, true, &bank)?;
            // A one-class concept aligns trivially: no column for it.
            v.retain(|k, _| !k.contains("align_"));
            v
        }
        None => sampling::score_cells(e, &trained, &data, &cells, prompted, &bank)?,
    };
    let first = e.samplers.keys().next().ok_or("no samplers")?;
    for (steps, _, label) in &cells {
        let nfe = out[&format!("{label}|nfe_{first}")];
        let per_row = [
            ("params", model.params().count() as f64),
            ("forward_macs", model.forward_macs()),
            ("excess_error", err),
            ("train_flops", report.train_flops),
            ("cost", rel * nfe),
            ("cost_uncounted", rel * *steps as f64),
        ];
        for (k, v) in per_row {
            out.insert(format!("{label}|{k}"), v);
        }
        if e.finetune.is_some() {
            out.insert(format!("{label}|finetune_flops"), pooled.report.train_flops);
        }
    }
    let students = [
        e.distill.as_ref().map(|d| ("pd", d.steps, d.flops(model.forward_macs()))),
        e.consistency.as_ref().map(|c| ("cd", c.steps, c.flops(model.forward_macs()))),
    ];
    for (name, steps, flops) in students.into_iter().flatten() {
        let student = with_values(model.as_ref(), &ema)?;
        let seed = ctx.seed_for(&format!("{name}/{row}"));
        match (&e.distill, &e.consistency) {
            (Some(d), _) if name == "pd" => {
                crate::train::distill::progressive(student.as_ref(), &data, &spec.schedule, d, seed)?;
            }
            (_, Some(c)) => {
                crate::train::consistency::distil(student.as_ref(), &data, &spec.schedule, c, seed)?;
            }
            _ => unreachable!("listed above"),
        }
        let (_, _, label) = cells.iter().find(|c| c.0 == steps && c.1 == 1.0).ok_or("validated")?.clone();
        let ddim = SamplerSweepExp {
            samplers: [(name.to_string(), Sampler::Ddim { eta: 0.0 })].into(),
            guidance_sweep: vec![],
            guidance: 1.0,
            ..e.clone()
        };
        let cell = [(steps, 1.0, label.clone())];
        let scored = sampling::score_cells(&ddim, &student, &data, &cell, trained.classes().is_some(), &bank)?;
        out.insert(format!("{label}|{name}"), scored[&format!("{label}|{name}")]);
        out.insert(format!("{label}|{name}_flops"), flops);
        out.insert(format!("{label}|{name}_fraction"), flops / report.train_flops);
    }
    Ok(out)
}

/// A model trained once per run and shared by every claim of the suite that trains the same
/// (data, model, training) at the same replicate: Mei et al. analyse one set of trained models
/// in many ways, and so do these claims. Its seeds derive from (suite, the pool, what is
/// trained, replicate), never from the claim or from which claim asked first.
struct Pooled {
    ema: Vec<Vec<f32>>,
    report: crate::train::Trained,
    excess_error: f64,
}

type Pool = Mutex<HashMap<String, Arc<OnceLock<Result<Arc<Pooled>, String>>>>>;

/// The pooled model `what` at `replicate`, trained by `init` the first time it is asked for.
fn pool_get(
    what: &str,
    replicate: u32,
    init: impl FnOnce() -> Result<Arc<Pooled>, String>,
) -> Result<Arc<Pooled>, String> {
    static POOL: OnceLock<Pool> = OnceLock::new();
    let id = format!("{}/{}", blake3::hash(what.as_bytes()).to_hex(), replicate);
    let cell =
        POOL.get_or_init(Default::default).lock().map_err(|_| "model pool poisoned")?.entry(id).or_default().clone();
    cell.get_or_init(init).clone()
}

fn pooled(
    data: &crate::data::DataSpec,
    sized: &SizedModel,
    spec: &crate::train::TrainSpec,
    ctx: &CaseCtx,
) -> Result<Arc<Pooled>, String> {
    let what = serde_json::json!({"data": data, "model": sized.model, "training": spec}).to_string();
    pool_get(&what, ctx.replicate, || {
        let seed = derive_seed(ctx.suite, "trained-models", &what, ctx.replicate);
        let data = data.build();
        let model = build(
            &sized.model,
            spec.prediction,
            &ctx.backend.device,
            ctx.backend.precision.dtypes(),
            substream(seed, 0),
        )?;
        let (report, ema) = crate::train::train(model.as_ref(), &data, spec, substream(seed, 1), None)?;
        let trained = with_values(model.as_ref(), &ema)?;
        let excess_error =
            crate::train::excess_error(trained.as_ref(), &data, &spec.schedule, 4096, substream(seed, 2))?;
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string());
        let ema = ema.iter().map(flat).collect::<Result<_, _>>()?;
        Ok(Arc::new(Pooled { ema, report, excess_error }))
    })
}

/// The fine-tuned model's architecture: the pretrained one, with an input for the task's condition.
fn ft_config(model: &ModelConfig, ft: &FineTune, data_dim: usize) -> ModelConfig {
    match (model, ft.task.cond_dim(data_dim)) {
        (ModelConfig::Mlp(c), k) if k > 0 => ModelConfig::Mlp(MlpConfig { cond_dim: Some(k as u64), ..c.clone() }),
        (other, _) => other.clone(),
    }
}

/// A pooled pretrained model fine-tuned on the task, pooled in turn: every claim that fine-tunes
/// the same model the same way at one replicate shares it. Parameters the task adds keep their
/// (zero) initialisation; every other one starts from the pretrained EMA weights.
fn finetuned(
    data: &crate::data::DataSpec,
    sized: &SizedModel,
    spec: &crate::train::TrainSpec,
    ft: &FineTune,
    pretrained: &Pooled,
    ctx: &CaseCtx,
) -> Result<Arc<Pooled>, String> {
    let what = serde_json::json!({"data": data, "model": sized.model, "training": spec, "finetune": ft}).to_string();
    pool_get(&what, ctx.replicate, || {
        let seed = derive_seed(ctx.suite, "fine-tuned-models", &what, ctx.replicate);
        let gmm = data.build();
        let (dev, dtypes) = (&ctx.backend.device, ctx.backend.precision.dtypes());
        let base = build(&sized.model, spec.prediction, dev, dtypes, 0)?;
        let names: HashMap<&str, &Vec<f32>> =
            base.params().vars.iter().map(|(n, _)| n.as_str()).zip(&pretrained.ema).collect();
        let model = build(&ft_config(&sized.model, ft, gmm.dim), spec.prediction, dev, dtypes, substream(seed, 0))?;
        for (name, var) in &model.params().vars {
            if let Some(v) = names.get(name.as_str()).filter(|v| v.len() == var.elem_count()) {
                let t = Tensor::from_vec((*v).clone(), var.shape(), dev).map_err(|e| e.to_string())?;
                var.set(&t).map_err(|e| e.to_string())?;
            }
        }
        let (report, ema) = match &ft.task {
            Task::SuperResolution { factor, noise } => {
                let obs = Observed { gmm: &gmm, factor: *factor, noise: *noise };
                crate::train::train(model.as_ref(), &obs, &ft.training, substream(seed, 1), None)?
            }
            task @ Task::NewConcept { .. } => {
                let images = task.concept_images(&gmm).ok_or("a new concept")??;
                crate::train::train(model.as_ref(), &images, &ft.training, substream(seed, 1), None)?
            }
        };
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string());
        let ema = ema.iter().map(flat).collect::<Result<_, _>>()?;
        Ok(Arc::new(Pooled { ema, report, excess_error: pretrained.excess_error }))
    })
}
