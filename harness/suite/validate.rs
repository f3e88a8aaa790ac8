//! Semantic validation: everything the types cannot say. Each problem comes back with the path
//! of the offending value, which the loader turns into `file:line:col`.

use super::types::*;
use super::yaml::Step;
use crate::compute::ModelConfig;
use std::collections::{BTreeMap, BTreeSet};

pub type Problems = Vec<(Vec<Step>, String)>;

fn positive(v: f64) -> bool {
    v > 0.0
}

fn k(s: &str) -> Step {
    Step::Key(s.to_string())
}

/// Integers beyond this in a model config are typos, not models.
const ABSURD: i64 = 10_000_000;

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub fn suite(doc: &SuiteDoc) -> Problems {
    let mut p = vec![];
    if !valid_name(&doc.suite) {
        p.push((vec![k("suite")], "suite names use lowercase letters, digits, `-` and `_`".to_string()));
    }
    if doc.version == 0 {
        p.push((vec![k("version")], "version starts at 1".to_string()));
    }
    if doc.claims.is_empty() {
        p.push((vec![k("claims")], "a suite needs at least one claim".to_string()));
    }
    if !(doc.bootstrap.level > 0.5 && doc.bootstrap.level < 1.0) {
        p.push((vec![k("bootstrap"), k("level")], "the confidence level must be in (0.5, 1)".to_string()));
    }
    if !(100..=1_000_000).contains(&doc.bootstrap.resamples) {
        p.push((vec![k("bootstrap"), k("resamples")], "resamples must be between 100 and 1,000,000".to_string()));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in doc.claims.iter().enumerate() {
        let at = |f: &str| vec![k("claims"), Step::Index(i), k(f)];
        match c.id.split_once('/') {
            Some((s, name)) if s == doc.suite && valid_name(name) => {}
            _ => p.push((at("id"), format!("claim ids are `{}/<name>` with a lowercase name", doc.suite))),
        }
        if !seen.insert(c.id.clone()) {
            p.push((at("id"), format!("duplicate claim id `{}`", c.id)));
        }
        if c.claim.trim().is_empty() {
            p.push((at("claim"), "say the claim in words".to_string()));
        }
        if c.source.trim().is_empty() {
            p.push((at("source"), "cite the table, figure or section".to_string()));
        }
        if c.expect.is_empty() {
            p.push((at("expect"), "a claim needs at least one check".to_string()));
        }
    }
    p
}

fn model(m: &ModelConfig, at: Vec<Step>, p: &mut Problems) {
    fn walk(v: &serde_json::Value, at: Vec<Step>, p: &mut Problems) {
        match v {
            serde_json::Value::Object(o) => o.iter().for_each(|(key, v)| {
                walk(v, at.iter().cloned().chain([k(key)]).collect(), p);
            }),
            serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| {
                walk(v, at.iter().cloned().chain([Step::Index(i)]).collect(), p);
            }),
            serde_json::Value::Number(n) if n.as_i64().is_some_and(|i| i > ABSURD) => {
                p.push((at, format!("absurd value {n} (model sizes above {ABSURD} are rejected)")));
            }
            _ => {}
        }
    }
    walk(&serde_json::to_value(m).unwrap_or_default(), at.clone(), p);
    for (field, msg) in m.validate() {
        p.push((at.iter().cloned().chain([k(&field)]).collect(), format!("{field} {msg}")));
    }
}

fn measure(m: &Measure, at: Vec<Step>, p: &mut Problems) {
    let sub = |f: &str| at.iter().cloned().chain([k(f)]).collect::<Vec<_>>();
    if !positive(m.unit) {
        p.push((sub("unit"), "unit must be positive".into()));
    }
    if m.per.is_some_and(|d| d == 0.0) {
        p.push((sub("per"), "cannot divide by zero".into()));
    }
    let positive = |v: Option<f64>| v.is_none_or(|x| x > 0.0);
    if !positive(m.batch) {
        p.push((sub("batch"), "batch must be positive".into()));
    }
    if !positive(m.steps) {
        p.push((sub("steps"), "steps must be positive".into()));
    }
    match m.quantity {
        Quantity::Training if m.batch.is_none() || m.steps.is_none() => {
            p.push((at, "a training quantity needs `batch` and `steps`".into()))
        }
        Quantity::Sampling if m.steps.is_none() => p.push((at, "a sampling quantity needs `steps`".into())),
        _ => {}
    }
}

fn unique_labels<'a>(labels: impl Iterator<Item = &'a str>, at: impl Fn(usize) -> Vec<Step>, p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for (i, l) in labels.enumerate() {
        if l.trim().is_empty() {
            p.push((at(i), "labels cannot be empty".into()));
        } else if !seen.insert(l.to_string()) {
            p.push((at(i), format!("duplicate label `{l}`")));
        }
    }
}

/// Paths here are relative to the experiment node.
pub fn experiment(e: &Experiment) -> Problems {
    let mut p = vec![];
    match e {
        Experiment::Table(t) => {
            if t.rows.is_empty() {
                p.push((vec![k("rows")], "the table has no rows".into()));
            }
            unique_labels(
                t.rows.iter().map(|r| r.label.as_str()),
                |i| vec![k("rows"), Step::Index(i), k("label")],
                &mut p,
            );
            for (i, r) in t.rows.iter().enumerate() {
                if let Some(m) = &r.model {
                    model(m, vec![k("rows"), Step::Index(i), k("model")], &mut p);
                }
            }
            for (name, m) in &t.measures {
                measure(m, vec![k("measures"), k(name)], &mut p);
                if let Some(rel) = &m.relative_to {
                    if !t.rows.iter().any(|r| &r.label == rel) {
                        p.push((vec![k("measures"), k(name), k("relative_to")], format!("no row labelled `{rel}`")));
                    }
                }
                if !t.rows.iter().any(|r| r.model.is_some()) {
                    p.push((vec![k("measures"), k(name)], "measures need rows with a `model`".into()));
                }
            }
            for (i, r) in t.rows.iter().enumerate() {
                if let Some(m) = &r.per_model {
                    model(m, vec![k("rows"), Step::Index(i), k("per_model")], &mut p);
                }
            }
            let cols = columns(e);
            for (name, f) in &t.derived {
                if f.num.is_empty() && f.den.is_empty() {
                    p.push((
                        vec![k("derived"), k(name)],
                        "give the columns to multiply (`num`) or divide by (`den`)".into(),
                    ));
                }
                for (field, c) in f.num.iter().map(|c| ("num", c)).chain(f.den.iter().map(|c| ("den", c))) {
                    let known = match c.strip_prefix("printed.") {
                        Some(pc) => cols.printed.contains(pc),
                        None => t.measures.contains_key(c),
                    };
                    if !known {
                        p.push((
                            vec![k("derived"), k(name), k(field)],
                            format!("no column `{c}` (measures, or printed.NAME)"),
                        ));
                    }
                }
                if !f.times.is_finite() {
                    p.push((vec![k("derived"), k(name), k("times")], "times must be a finite number".into()));
                }
            }
        }
        Experiment::PowerLaws(pl) => {
            if pl.laws.is_empty() {
                p.push((vec![k("laws")], "no laws to evaluate".into()));
            }
            for (i, law) in pl.laws.iter().enumerate() {
                let at = |f: &str| vec![k("laws"), Step::Index(i), k(f)];
                if law.at.is_empty() {
                    p.push((at("at"), "no points to evaluate the law at".into()));
                }
                unique_labels(
                    law.at.iter().map(|x| x.label.as_str()),
                    |j| vec![k("laws"), Step::Index(i), k("at"), Step::Index(j)],
                    &mut p,
                );
                for (j, pt) in law.at.iter().enumerate() {
                    let here = vec![k("laws"), Step::Index(i), k("at"), Step::Index(j)];
                    match (&pt.x, &pt.model, &pt.measure) {
                        (Some(x), None, None) if *x > 0.0 => {}
                        (Some(_), None, None) => p.push((here, "x must be positive".into())),
                        (None, Some(m), Some(ms)) => {
                            model(m, here.iter().cloned().chain([k("model")]).collect(), &mut p);
                            measure(ms, here.iter().cloned().chain([k("measure")]).collect(), &mut p);
                        }
                        _ => p.push((here, "give either `x`, or both `model` and `measure`".into())),
                    }
                }
            }
        }
        Experiment::TrainingBudget(b) => {
            if b.stages.is_empty() {
                p.push((vec![k("stages")], "no training stages".into()));
            }
            unique_labels(
                b.stages.iter().map(|s| s.label.as_str()),
                |i| vec![k("stages"), Step::Index(i), k("label")],
                &mut p,
            );
            for (i, s) in b.stages.iter().enumerate() {
                let at = |f: &str| vec![k("stages"), Step::Index(i), k(f)];
                model(&s.model, at("model"), &mut p);
                if !positive(s.batch) {
                    p.push((at("batch"), "batch must be positive".into()));
                }
                if !positive(s.steps) {
                    p.push((at("steps"), "steps must be positive".into()));
                }
            }
            let h = &b.hardware;
            for (f, v) in [("gpus", h.gpus), ("peak_flops", h.peak_flops), ("days", h.days)] {
                if !positive(v) {
                    p.push((vec![k("hardware"), k(f)], format!("{f} must be positive")));
                }
            }
        }
        Experiment::IntervalCoverage(e) => {
            for (i, kind) in e.checks.iter().enumerate() {
                if !super::COVERAGE_KINDS.contains(&kind.as_str()) {
                    let known = super::COVERAGE_KINDS.join(", ");
                    p.push((
                        vec![k("checks"), Step::Index(i)],
                        format!("no coverage scenario for `{kind}` (known: {known})"),
                    ));
                }
            }
            if let Some(i) = e.replicates.iter().position(|n| !(2..=64).contains(n)) {
                p.push((vec![k("replicates"), Step::Index(i)], "replicates must be between 2 and 64".into()));
            }
            if !(100..=100_000).contains(&e.trials) {
                p.push((vec![k("trials")], "trials must be between 100 and 100,000".into()));
            }
            for (f, v) in [("cv", e.cv), ("skew_sigma", e.skew_sigma)] {
                if !(v > 0.0 && v < 2.0) {
                    p.push((vec![k(f)], format!("{f} must be in (0, 2)")));
                }
            }
            if let Some(i) = e.record_cvs.iter().position(|v| !(*v >= 0.0 && *v < 2.0)) {
                p.push((vec![k("record_cvs"), Step::Index(i)], "a CV must be in [0, 2)".into()));
            }
        }
        Experiment::SyntheticPowerLaw(s) => {
            if s.series.is_empty() {
                p.push((vec![k("series")], "no series".into()));
            }
            unique_labels(
                s.series.iter().map(|x| x.name.as_str()),
                |i| vec![k("series"), Step::Index(i), k("name")],
                &mut p,
            );
            if s.x.len() < 3 {
                p.push((vec![k("x")], "a fit needs at least 3 x values".into()));
            }
            if let Some(i) = s.x.iter().position(|x| !positive(*x)) {
                p.push((vec![k("x"), Step::Index(i)], "x values must be positive".into()));
            }
            if !(s.noise >= 0.0 && s.noise < 10.0) {
                p.push((vec![k("noise")], "noise must be in [0, 10)".into()));
            }
            if !(1..=10_000).contains(&s.replicates) {
                p.push((vec![k("replicates")], "replicates must be between 1 and 10,000".into()));
            }
        }
        Experiment::SamplerConvergence(c) => {
            schedule(&c.schedule, &mut p);
            samplers(&c.samplers, &mut p);
            steps(&c.steps, &mut p);
            if !positive(c.data_std) {
                p.push((vec![k("data_std")], "data_std must be positive".into()));
            }
            let lambdas_ok = c.lambda_min < c.lambda_max && c.lambda_min.abs() <= 30.0 && c.lambda_max.abs() <= 30.0;
            if !lambdas_ok {
                p.push((vec![k("lambda_min")], "need -30 ≤ lambda_min < lambda_max ≤ 30".into()));
            }
        }
        Experiment::SamplerSweep(w) => {
            trained_sweep(w, &mut p);
            exact_data(&w.data, &mut p);
            schedule(&w.schedule, &mut p);
            samplers(&w.samplers, &mut p);
            steps(&w.steps, &mut p);
            features(&w.features, &mut p);
            sample_count(w.samples, "samples", &mut p);
            sample_count(w.reference_samples, "reference_samples", &mut p);
            replicates(w.replicates, &mut p);
            if !(0.0..=100.0).contains(&w.guidance) {
                p.push((vec![k("guidance")], "guidance must be in [0, 100] (1 means none)".into()));
            }
            for (i, g) in w.guidance_sweep.iter().enumerate() {
                if !(0.0..=100.0).contains(g) || w.guidance_sweep[..i].contains(g) {
                    let m = "guidance weights must be distinct and in [0, 100] (1 means none)";
                    p.push((vec![k("guidance_sweep"), Step::Index(i)], m.into()));
                }
            }
            if let crate::suite::ClipX0::Symmetric(c) = w.clip_x0 {
                if !positive(c) {
                    p.push((vec![k("clip_x0")], "the clip bound must be positive".into()));
                }
            }
            if w.samples < 8 && w.metric == crate::suite::SampleMetric::FdInfinity {
                p.push((vec![k("samples")], "FD∞ needs at least 8 samples".into()));
            }
        }
        Experiment::TrainSweep(t) => {
            data(&t.data, &mut p);
            let dim = t.data.build_dim();
            if t.models.is_empty() {
                p.push((vec![k("models")], "no models".into()));
            }
            unique_labels(
                t.models.iter().map(|m| m.label.as_str()),
                |i| vec![k("models"), Step::Index(i), k("label")],
                &mut p,
            );
            for (i, m) in t.models.iter().enumerate() {
                let at = vec![k("models"), Step::Index(i), k("model")];
                model(&m.model, at.clone(), &mut p);
                if !matches!(m.model, ModelConfig::Mlp(_) | ModelConfig::Dit(_) | ModelConfig::Unet(_)) {
                    p.push((at, format!("the `{}` family cannot be trained: use mlp, dit or unet", m.model.family())));
                } else if dim.is_some_and(|d| d != m.model.data_dim()) {
                    let what = "the model's input (data_dim, or input_size² × in_channels) must match the data";
                    p.push((at, format!("{what}: the data has {} values per sample", dim.unwrap_or(0))));
                }
                if m.unmasked_fraction.is_some_and(|f| !(0.0..1.0).contains(&f)) {
                    let at = vec![k("models"), Step::Index(i), k("unmasked_fraction")];
                    p.push((at, "unmasked_fraction must be in [0, 1)".into()));
                }
                row_data(m, i, t, &mut p);
            }
            // With budgets, each case gets its budget as `flop_budget`.
            let mut training = t.training.clone();
            if training.steps.is_none() && training.flop_budget.is_none() {
                training.flop_budget = t.budgets.first().copied();
            }
            for (f, msg) in training.validate() {
                p.push((vec![k("training"), k(&f)], format!("{f}: {msg}")));
            }
            if !t.budgets.is_empty() {
                if t.training.steps.is_some() || t.training.flop_budget.is_some() {
                    p.push((vec![k("budgets")], "with `budgets`, give neither training.steps nor flop_budget".into()));
                }
                if !t.budgets.iter().all(|b| positive(*b)) {
                    p.push((vec![k("budgets")], "budgets must be positive FLOP counts".into()));
                }
            }
            if let Some(f) = &t.sample_fd {
                sample_count(f.samples, "sample_fd.samples", &mut p);
                if let crate::suite::FdFeatures::RandomRelu { dim, .. } = f.features {
                    if !(1..=crate::data::MAX_FD_FEATURES).contains(&dim) {
                        let m = format!("random_relu.dim must be between 1 and {}", crate::data::MAX_FD_FEATURES);
                        p.push((vec![k("sample_fd"), k("features")], m));
                    }
                }
                if !(1..=1000).contains(&f.steps) {
                    p.push((vec![k("sample_fd"), k("steps")], "steps must be between 1 and 1000".into()));
                }
                if f.clip_x0.is_some_and(|c| !positive(c)) {
                    p.push((vec![k("sample_fd"), k("clip_x0")], "the clip bound must be positive".into()));
                }
            }
            sample_count(t.eval_samples, "eval_samples", &mut p);
            replicates(t.replicates, &mut p);
        }
        Experiment::MetricNull(m) => {
            exact_data(&m.data, &mut p);
            features(&m.features, &mut p);
            sample_count(m.samples, "samples", &mut p);
            replicates(m.replicates, &mut p);
            let ok = match m.degrade {
                crate::suite::Degradation::Blur(b) => b > 0.0 && b < 10.0,
                crate::suite::Degradation::DropModes(f) => f > 0.0 && f < 1.0,
            };
            if !ok {
                p.push((vec![k("degrade")], "blur must be in (0, 10); drop_modes in (0, 1)".into()));
            }
        }
    }
    p
}

fn schedule(s: &crate::diffusion::Schedule, p: &mut Problems) {
    if !(2..=100_000).contains(&s.train_steps) {
        p.push((vec![k("schedule"), k("train_steps")], "train_steps must be between 2 and 100,000".into()));
    }
    use crate::diffusion::BetaSchedule::{Linear, ScaledLinear};
    if let Linear { start, end } | ScaledLinear { start, end } = s.betas {
        if !(start > 0.0 && start < end && end < 1.0) {
            p.push((vec![k("schedule"), k("betas")], "betas need 0 < start < end < 1".into()));
        }
    }
}

fn samplers(m: &std::collections::BTreeMap<String, crate::diffusion::Sampler>, p: &mut Problems) {
    if m.is_empty() {
        p.push((vec![k("samplers")], "no samplers".into()));
    }
    for (name, s) in m {
        if !valid_name(name) || name == "steps" || name.starts_with("nfe_") {
            let msg = format!("`{name}` cannot name a column (lowercase, not `steps` or `nfe_…`)");
            p.push((vec![k("samplers"), k(name)], msg));
        }
        if let crate::diffusion::Sampler::Ddim { eta } | crate::diffusion::Sampler::DdimDiffusers { eta } = s {
            if !(0.0..=1.0).contains(eta) {
                p.push((vec![k("samplers"), k(name)], "DDIM's eta must be in [0, 1]".into()));
            }
        }
    }
}

fn steps(v: &[usize], p: &mut Problems) {
    if v.is_empty() {
        p.push((vec![k("steps")], "no step counts".into()));
    }
    if let Some(i) = v.iter().position(|s| !(1..=10_000).contains(s)) {
        p.push((vec![k("steps"), Step::Index(i)], "step counts must be between 1 and 10,000".into()));
    }
    let mut seen = BTreeSet::new();
    if let Some(i) = v.iter().position(|s| !seen.insert(*s)) {
        p.push((vec![k("steps"), Step::Index(i)], "duplicate step count".into()));
    }
}

/// A data spec of an experiment that needs a closed-form distribution.
fn exact_data(d: &crate::data::DataSpec, p: &mut Problems) {
    if !d.is_exact() {
        let why = "the user's data (a folder or an array file) has no closed-form distribution (exact denoiser, exact samplers): only train_sweep trains on it";
        p.push((vec![k("data")], why.into()));
    }
    data(d, p);
}

fn data(d: &crate::data::DataSpec, p: &mut Problems) {
    for (f, m) in d.validate() {
        let (kind, field) = f.split_once('.').unwrap_or(("", &f));
        p.push((vec![k("data"), k(kind), k(field)], format!("{field} {m}")));
    }
}

fn features(f: &crate::metrics::Features, p: &mut Problems) {
    match f {
        crate::metrics::Features::RandomRelu { dim, .. } if !(1..=4096).contains(dim) => {
            p.push((vec![k("features")], "feature dim must be between 1 and 4096".into()));
        }
        crate::metrics::Features::Classifier(c) => {
            let at = |f: &str| vec![k("features"), k("classifier"), k(f)];
            for (f, m) in c.templates.validate() {
                p.push((at("templates"), format!("{f} {m}")));
            }
            if !(1..=1024).contains(&c.hidden) {
                p.push((at("hidden"), "hidden must be between 1 and 1024".into()));
            }
            if !(1..=1_000_000).contains(&c.steps) || !(1..=4096).contains(&c.batch) {
                p.push((at("steps"), "steps must be in 1..=1,000,000 and batch in 1..=4096".into()));
            }
            let rates_ok = c.learning_rate > 0.0 && c.learning_rate < 1.0 && (0.0..1.0).contains(&c.augment_noise);
            if !rates_ok {
                p.push((at("learning_rate"), "learning_rate must be in (0, 1) and augment_noise in [0, 1)".into()));
            }
        }
        _ => {}
    }
}

fn sample_count(n: usize, field: &str, p: &mut Problems) {
    if !(2..=1_000_000).contains(&n) {
        p.push((vec![k(field)], format!("{field} must be between 2 and 1,000,000")));
    }
}

fn replicates(r: u32, p: &mut Problems) {
    if !(1..=1000).contains(&r) {
        p.push((vec![k("replicates")], "replicates must be between 1 and 1,000".into()));
    }
}

/// The names a check may refer to in one experiment.
#[derive(Debug, Default)]
pub struct Columns {
    pub measured: BTreeSet<String>,
    pub printed: BTreeSet<String>,
    pub scalars: BTreeSet<String>,
    pub rows: Vec<String>,
    /// Measured columns this experiment cannot fill, and why (the exact-denoiser scores on the
    /// user's images): a check that reads one is INCONCLUSIVE with that reason, never FAIL.
    pub unavailable: BTreeMap<String, String>,
}

pub fn columns(e: &Experiment) -> Columns {
    let mut c = Columns::default();
    match e {
        Experiment::Table(t) => {
            c.measured = t.measures.keys().chain(t.derived.keys()).cloned().collect();
            c.printed = t.rows.iter().flat_map(|r| r.printed.keys().cloned()).collect();
            c.rows = t.rows.iter().map(|r| r.label.clone()).collect();
        }
        Experiment::PowerLaws(pl) => {
            c.measured = ["x", "y"].map(String::from).into();
            c.rows =
                pl.laws.iter().flat_map(|l| l.at.iter().map(move |a| format!("{} @ {}", l.name, a.label))).collect();
        }
        Experiment::TrainingBudget(b) => {
            c.measured = ["forward", "training", "share", "group_share"].map(String::from).into();
            c.scalars = ["total_training", "utilisation", "gpu_hours"].map(String::from).into();
            if b.hardware.dollars.is_some() {
                c.scalars.insert("dollars_per_gpu_hour".into());
            }
            c.rows = b.stages.iter().map(|s| s.label.clone()).collect();
        }
        Experiment::IntervalCoverage(e) => {
            c.measured = ["coverage", "order_coverage", "power"].map(String::from).into();
            c.rows = e.rows().into_iter().map(|r| r.label).collect();
        }
        Experiment::SyntheticPowerLaw(s) => {
            c.measured = s.series.iter().map(|x| x.name.clone()).chain(["x".to_string()]).collect();
            c.rows = s.x.iter().map(|x| format!("x={x}")).collect();
        }
        Experiment::SamplerConvergence(e) => {
            c.measured = e.samplers.keys().cloned().chain(["steps".to_string()]).collect();
            c.rows = e.steps.iter().map(|n| format!("steps={n}")).collect();
        }
        Experiment::SamplerSweep(e) => {
            let trained = e.denoiser == crate::suite::Denoiser::Trained;
            let prompted = trained || !e.guidance_sweep.is_empty() || e.guidance != 1.0;
            // A downstream task's samples are scored against its own reference, without alignment.
            let aligned = prompted && e.finetune.is_none();
            let names = e.samplers.keys().flat_map(|n| {
                let align = aligned.then(|| format!("align_{n}"));
                [n.clone(), format!("nfe_{n}")].into_iter().chain(align)
            });
            c.measured = names.chain(["steps".to_string()]).collect();
            if !e.guidance_sweep.is_empty() {
                c.measured.insert("guidance".into());
            }
            if trained {
                let cols = ["params", "forward_macs", "excess_error", "train_flops", "cost", "cost_uncounted"];
                c.measured.extend(cols.map(String::from));
            }
            if e.distill.is_some() {
                c.measured.extend(["pd", "pd_flops", "pd_fraction"].map(String::from));
            }
            if e.consistency.is_some() {
                c.measured.extend(["cd", "cd_flops", "cd_fraction"].map(String::from));
            }
            if e.finetune.is_some() {
                c.measured.insert("finetune_flops".into());
            }
            c.rows = e.rows();
        }
        Experiment::TrainSweep(t) => {
            let cols = ["params", "forward_gflops", "budget", "train_flops", "steps", "final_loss", "excess_error"];
            c.measured = cols.map(String::from).into();
            c.measured.extend(crate::train::LEVEL_BANDS.map(|(name, _)| name.to_string()));
            if t.sample_fd.is_some() {
                // `align` only where the models are class-conditional (empty cells otherwise).
                c.measured.extend(["fd".to_string(), "align".to_string()]);
            }
            if !t.data.is_exact() {
                c.measured.insert("heldout_loss".into());
                let why = "unavailable on the user's data: it needs the exact denoiser of a known distribution";
                let exact = ["excess_error", "align"].into_iter().chain(crate::train::LEVEL_BANDS.map(|(n, _)| n));
                c.unavailable = exact.map(|n| (n.to_string(), why.to_string())).collect();
            }
            c.printed = t.models.iter().flat_map(|m| m.printed.keys().cloned()).collect();
            c.rows = t.rows();
        }
        Experiment::MetricNull(_) => {
            let cols =
                ["fd_null", "fd_null_double", "bias_ratio", "fd_degraded", "degraded_excess", "fd_infinity_null"];
            c.measured = cols.map(String::from).into();
            c.rows = vec!["null".into()];
        }
    }
    c
}

/// A column reference as written in a check.
#[derive(Debug, Clone, PartialEq)]
pub enum ColRef {
    Measured(String),
    Printed(String),
    Fit(String),
    Scalar(String),
}

pub const FIT_OUTPUTS: [&str; 3] = ["exponent", "prefactor", "r2"];

/// Resolve `name` against the experiment's columns; `Err` says what exists.
pub fn resolve(name: &str, cols: &Columns, has_fit: bool) -> Result<ColRef, String> {
    if let Some(p) = name.strip_prefix("printed.") {
        return if cols.printed.contains(p) {
            Ok(ColRef::Printed(p.into()))
        } else {
            Err(format!("no printed column `{p}` (printed: {})", join(&cols.printed)))
        };
    }
    if let Some(f) = name.strip_prefix("fit.") {
        return if !has_fit {
            Err("the claim has no `fit`".into())
        } else if FIT_OUTPUTS.contains(&f) {
            Ok(ColRef::Fit(f.into()))
        } else {
            Err(format!("fits give `fit.exponent`, `fit.prefactor` and `fit.r2`, not `{name}`"))
        };
    }
    if cols.measured.contains(name) {
        Ok(ColRef::Measured(name.into()))
    } else if cols.scalars.contains(name) {
        Ok(ColRef::Scalar(name.into()))
    } else {
        let all: BTreeSet<String> = cols.measured.iter().chain(&cols.scalars).cloned().collect();
        Err(format!("no column `{name}` (measured: {}; printed ones are `printed.NAME`)", join(&all)))
    }
}

fn join(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A trained sweep's models, training and distillation; an oracle sweep has none of them.
fn trained_sweep(w: &crate::suite::SamplerSweepExp, p: &mut Problems) {
    if w.denoiser == crate::suite::Denoiser::Oracle {
        for (f, given) in [
            ("models", !w.models.is_empty()),
            ("training", w.training.is_some()),
            ("distill", w.distill.is_some()),
            ("consistency", w.consistency.is_some()),
        ] {
            if given {
                p.push((vec![k(f)], format!("`{f}` is for `denoiser: trained`; the oracle needs no training")));
            }
        }
        return;
    }
    if w.models.is_empty() {
        p.push((vec![k("models")], "`denoiser: trained` needs `models` (the networks to train)".into()));
    }
    unique_labels(w.models.iter().map(|m| m.label.as_str()), |i| vec![k("models"), Step::Index(i), k("label")], p);
    let dim = w.data.build_dim();
    for (i, m) in w.models.iter().enumerate() {
        let at = vec![k("models"), Step::Index(i), k("model")];
        model(&m.model, at.clone(), p);
        if !matches!(m.model, ModelConfig::Mlp(_) | ModelConfig::Dit(_) | ModelConfig::Unet(_)) {
            p.push((at, format!("the `{}` family cannot be trained: use mlp, dit or unet", m.model.family())));
        } else if dim.is_some_and(|d| d != m.model.data_dim()) {
            p.push((at, format!("the model's input must match the data's {} values per sample", dim.unwrap_or(0))));
        }
        // Trained models are pooled by (data, model, training) across the suite's claims.
        let own = [
            ("unmasked_fraction", m.unmasked_fraction.is_some()),
            ("steps", m.steps.is_some()),
            ("train_set", m.train_set.is_some()),
            ("captions", m.captions.is_some()),
        ];
        for (field, set) in own {
            if set {
                let what =
                    format!("a sampler sweep trains every model alike: set `training.{field}` or use a train_sweep");
                p.push((vec![k("models"), Step::Index(i), k(field)], what));
            }
        }
    }
    match &w.training {
        None => p.push((vec![k("training")], "`denoiser: trained` needs `training`".into())),
        Some(t) => {
            for (f, msg) in t.validate() {
                p.push((vec![k("training"), k(&f)], format!("{f}: {msg}")));
            }
            let distils = w.distill.is_some() || w.consistency.is_some();
            if distils && t.prediction == crate::diffusion::PredictionType::Epsilon {
                let m =
                    "distillation needs `prediction: v` or `sample`: an ε-model's x̂0 = (x − σε̂)/α blows up as α → 0";
                p.push((vec![k("training"), k("prediction")], m.into()));
            }
        }
    }
    let students = [
        w.distill.as_ref().map(|d| ("distill", d.steps, d.validate())),
        w.consistency.as_ref().map(|c| ("consistency", c.steps, c.validate())),
    ];
    for (field, steps, problems) in students.into_iter().flatten() {
        for (f, msg) in problems {
            p.push((vec![k(field), k(&f)], format!("{f}: {msg}")));
        }
        if !w.steps.contains(&steps) || !w.weights().contains(&1.0) {
            let m = "the distilled student is scored in the row at its step count and w = 1: add both to the sweep";
            p.push((vec![k(field), k("steps")], m.into()));
        }
    }
    if let Some(ft) = &w.finetune {
        finetune(ft, w, p);
    }
}

/// A downstream task: the pretraining's prediction and schedule, and models that can take it.
fn finetune(ft: &crate::suite::FineTune, w: &SamplerSweepExp, p: &mut Problems) {
    let at = |f: &[&str]| std::iter::once(k("finetune")).chain(f.iter().map(|f| k(f))).collect::<Vec<_>>();
    for (f, msg) in ft.training.validate() {
        p.push((at(&["training", &f]), format!("{f}: {msg}")));
    }
    for (f, msg) in ft.task.validate(w.data.build_dim()) {
        p.push((at(&["task"]), format!("{f}: {msg}")));
    }
    if let Some(t) = &w.training {
        if ft.training.prediction != t.prediction || ft.training.schedule != t.schedule {
            let m = "fine-tuning continues the pretrained model: use the pretraining's prediction and schedule";
            p.push((at(&["training"]), m.into()));
        }
    }
    if w.distill.is_some() || w.consistency.is_some() {
        p.push((at(&[]), "a sweep either fine-tunes or distils its models, not both".into()));
    }
    for (i, m) in w.models.iter().enumerate() {
        let here = vec![k("models"), Step::Index(i), k("model")];
        match (&ft.task, &m.model) {
            (crate::data::Task::SuperResolution { .. }, ModelConfig::Mlp(c)) if c.cond_dim.is_none() => {}
            (crate::data::Task::SuperResolution { .. }, _) => {
                p.push((here, "super-resolution fine-tunes MLP models without a cond_dim of their own".into()));
            }
            (crate::data::Task::NewConcept { .. }, m) if m.num_classes().is_none() => {
                p.push((
                    here,
                    "a new concept is bound to class 0's token: the models must be class-conditional".into(),
                ));
            }
            _ => {}
        }
    }
}

/// What a check refers to, for validation.
struct CheckRefs<'a> {
    kind: &'static str,
    refs: Vec<(&'static str, &'a String)>,
    rows: Option<&'a Vec<String>>,
    errata: &'a [Erratum],
    band: Option<(Option<f64>, Option<f64>)>,
}

fn check_refs(chk: &Check) -> CheckRefs<'_> {
    let plain = |kind, refs| CheckRefs { kind, refs, rows: None, errata: &[], band: None };
    match chk {
        Check::Within(w) => {
            let mut refs = vec![("value", &w.value)];
            refs.extend(w.reference.as_ref().map(|x| ("reference", x)));
            CheckRefs { kind: "within", refs, rows: w.rows.as_ref(), errata: &w.errata, band: None }
        }
        Check::Band(b) => CheckRefs {
            kind: "band",
            refs: vec![("of", &b.of)],
            rows: b.rows.as_ref(),
            errata: &b.errata,
            band: Some((b.min, b.max)),
        },
        Check::Monotone(m) => {
            let mut refs = vec![("x", &m.x), ("y", &m.y)];
            refs.extend(m.at_max.iter().map(|c| ("at_max", c)));
            CheckRefs { rows: m.rows.as_ref(), ..plain("monotone", refs) }
        }
        Check::Correlation(m) => {
            CheckRefs { band: Some((m.min, m.max)), ..plain("correlation", vec![("x", &m.x), ("y", &m.y)]) }
        }
        Check::RanksBetter(m) => plain("ranks_better", vec![("y", &m.y), ("better", &m.better), ("than", &m.than)]),
        Check::Crossover(m) => {
            CheckRefs { band: Some((m.min, m.max)), ..plain("crossover", vec![("x", &m.x), ("a", &m.a), ("b", &m.b)]) }
        }
        Check::Ratio(m) => CheckRefs {
            band: Some((m.min, m.max)),
            rows: m.rows.as_ref(),
            ..plain("ratio", vec![("num", &m.num), ("den", &m.den)])
        },
        Check::Exponent(m) => {
            CheckRefs { band: Some((m.min, m.max)), ..plain("exponent", vec![("x", &m.x), ("y", &m.y)]) }
        }
        Check::Optimum(m) => CheckRefs {
            band: Some((m.min, m.max)),
            ..plain("optimum", vec![("x", &m.x), ("y", &m.y), ("group", &m.group)])
        },
        Check::SamplingFrontier(m) => {
            plain("sampling_frontier", vec![("cost", &m.cost), ("y", &m.y), ("size", &m.size)])
        }
        Check::EqualCost(m) => CheckRefs {
            band: Some((m.min, m.max)),
            ..plain("equal_cost", vec![("target", &m.target), ("y", &m.y), ("cost", &m.cost), ("size", &m.size)])
        },
        Check::GuidanceOptimum(m) => {
            plain("guidance_optimum", vec![("w", &m.w), ("y", &m.y), ("across", &m.across), ("within", &m.within)])
        }
        Check::Gap(m) => plain("gap", vec![("y", &m.y)]),
        Check::Ordered(m) => {
            let mut refs: Vec<(&'static str, &String)> = m.columns.iter().map(|c| ("columns", c)).collect();
            refs.extend(m.x.as_ref().map(|x| ("x", x)));
            CheckRefs { rows: m.rows.as_ref(), ..plain("ordered", refs) }
        }
    }
}

/// The columns a check reads, in the order its fields are written.
pub fn check_columns(chk: &Check) -> Vec<&String> {
    check_refs(chk).refs.into_iter().map(|(_, c)| c).collect()
}

/// The band `[min, max]` a check's headline value must lie in, where it has one.
pub fn check_band(chk: &Check) -> Option<(Option<f64>, Option<f64>)> {
    check_refs(chk).band
}

/// Paths here are relative to the claim node.
pub fn claim_refs(c: &ClaimDoc, e: &Experiment) -> Problems {
    let cols = columns(e);
    let has_fit = c.fit.is_some();
    let mut p = vec![];
    if let Some(f) = &c.fit {
        for (field, v) in [("x", &f.power_law.x), ("y", &f.power_law.y)] {
            if let Err(m) = resolve(v, &cols, false) {
                p.push((vec![k("fit"), k("power_law"), k(field)], m));
            }
        }
    }
    for (i, chk) in c.expect.iter().enumerate() {
        let CheckRefs { kind, refs, rows, errata, band } = check_refs(chk);
        let at = |f: &str| vec![k("expect"), Step::Index(i), k(kind), k(f)];
        for (field, name) in refs {
            if let Err(m) = resolve(name, &cols, has_fit) {
                p.push((at(field), m));
            }
        }
        if let Check::Ordered(o) = chk {
            if o.columns.len() < 2 {
                p.push((
                    vec![k("expect"), Step::Index(i), k("ordered"), k("columns")],
                    "an order needs at least two columns".into(),
                ));
            }
        }
        if let Check::Gap(g) = chk {
            let at = |j: usize| vec![k("expect"), Step::Index(i), k("gap"), k("pairs"), Step::Index(j)];
            if g.pairs.len() < 2 {
                p.push((
                    vec![k("expect"), Step::Index(i), k("gap"), k("pairs")],
                    "a trend needs at least two pairs".into(),
                ));
            }
            for (j, pair) in g.pairs.iter().enumerate() {
                for r in pair.iter().filter(|r| !cols.rows.contains(r)) {
                    p.push((at(j), format!("no row `{r}` (rows: {})", cols.rows.join(", "))));
                }
            }
        }
        if let Check::Within(w) = chk {
            if w.reference.is_none() && !cols.printed.contains(w.value.trim_start_matches("printed.")) {
                p.push((at("value"), format!("no printed column `{}` to compare with; give `reference`", w.value)));
            }
            if w.abs.is_none() && w.rel.is_none() {
                p.push((at("value"), "give a tolerance: `abs`, `rel` or both".into()));
            }
            if w.abs.is_some_and(|a| a.is_nan() || a < 0.0) || w.rel.is_some_and(|r| r.is_nan() || r < 0.0) {
                p.push((at("abs"), "tolerances cannot be negative".into()));
            }
            if w.divide.is_some_and(|d| d == 0.0) {
                p.push((at("divide"), "cannot divide by zero".into()));
            }
        }
        if let Some((lo, hi)) = band {
            match (lo, hi) {
                (None, None) => p.push((at("min"), "a band needs `min`, `max` or both".into())),
                (Some(a), Some(b)) if a > b => p.push((at("min"), format!("inverted band: min {a} > max {b}"))),
                _ => {}
            }
        }
        for (j, r) in rows.into_iter().flatten().enumerate() {
            if !cols.rows.contains(r) {
                p.push((
                    vec![k("expect"), Step::Index(i), k(kind), k("rows"), Step::Index(j)],
                    format!("no row `{r}` (rows: {})", cols.rows.join(", ")),
                ));
            }
        }
        for (j, er) in errata.iter().enumerate() {
            if !cols.rows.contains(&er.row) {
                p.push((
                    vec![k("expect"), Step::Index(i), k(kind), k("errata"), Step::Index(j), k("row")],
                    format!("no row `{}`", er.row),
                ));
            }
        }
    }
    p
}

/// A train_sweep row's own steps and training data.
fn row_data(m: &crate::suite::SizedModel, i: usize, t: &crate::suite::TrainSweepExp, p: &mut Vec<(Vec<Step>, String)>) {
    let at = |f: &str| vec![k("models"), Step::Index(i), k(f)];
    if m.steps.is_some() && !t.budgets.is_empty() {
        p.push((at("steps"), "a row's `steps` and the sweep's `budgets` both set the steps: give one".into()));
    }
    if m.steps == Some(0) {
        p.push((at("steps"), "steps must be at least 1".into()));
    }
    if m.own_data() && !t.data.is_exact() {
        let what = "a finite or captioned training set is drawn from a known distribution (gmm or templates), not the user's data";
        p.push((at(if m.train_set.is_some() { "train_set" } else { "captions" }), what.into()));
    }
    if m.train_set.is_some() && m.captions.is_some() {
        p.push((at("captions"), "give a row `train_set` or `captions`, not both".into()));
    }
    for (f, msg) in m.train_set.iter().flat_map(|s| s.validate()) {
        p.push((vec![k("models"), Step::Index(i), k("train_set"), k(&f)], format!("{f}: {msg}")));
    }
    for (f, msg) in m.captions.iter().flat_map(|c| c.validate()) {
        p.push((vec![k("models"), Step::Index(i), k("captions"), k(&f)], format!("{f}: {msg}")));
    }
    if let (Some(_), crate::compute::ModelConfig::Mlp(c)) = (&m.captions, &m.model) {
        let need = t.data.build().classes + t.data.build().components();
        if c.classes.is_none_or(|k| (k as usize) < need) {
            let what = format!("captions need a label per class and per component: classes of at least {need}");
            p.push((vec![k("models"), Step::Index(i), k("model"), k("classes")], what));
        }
    }
}
