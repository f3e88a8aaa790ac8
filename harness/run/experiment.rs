//! How each experiment kind expands into cases, runs one case, and assembles its cases back
//! into the claim's table of values.

pub use super::case::CaseCtx;
use super::sampling;
pub use crate::check::ClaimData;
use crate::compute::{budget, Category, Count, ModelConfig};
use crate::seed::Rng;
use crate::suite::{Denoiser, Experiment, Measure, Quantity};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One unit of work: one row of a claim, one replicate.
#[derive(Clone, Debug)]
pub struct CaseSpec {
    pub row: String,
    pub replicate: u32,
    /// Everything the case depends on (hashed into its id).
    pub payload: Value,
}

/// Cases per (row, replicate) over a row variable.
/// Cases of every row at every replicate. The payload holds the whole experiment (less its
/// seed count, so that adding seeds reuses the ones done): a case's content hash then changes
/// with anything that changes its result, a training setting or the user's images (their
/// fingerprint), and an edited suite never reuses a stale case.
fn replicated<T: Copy + serde::Serialize>(
    e: &Experiment,
    rows: &[T],
    label: impl Fn(T) -> String,
    reps: u32,
) -> Vec<CaseSpec> {
    // Internally tagged: the kind's fields sit at the top.
    let mut exp = serde_json::to_value(e).expect("serializable");
    if let Some(m) = exp.as_object_mut() {
        m.remove("replicates");
    }
    rows.iter()
        .flat_map(|r| (0..reps).map(move |rep| (r, rep)))
        .map(|(r, replicate)| CaseSpec { row: label(*r), replicate, payload: json!({ "row": r, "experiment": exp }) })
        .collect()
}

pub fn expand(e: &Experiment, seeds: Option<u32>) -> Vec<CaseSpec> {
    let one = |row: String, payload: Value| CaseSpec { row, replicate: 0, payload };
    match e {
        Experiment::Table(t) => {
            t.rows.iter().map(|r| one(r.label.clone(), json!({"model": r.model, "measures": t.measures}))).collect()
        }
        Experiment::PowerLaws(p) => p
            .laws
            .iter()
            .flat_map(|l| {
                l.at.iter()
                    .map(move |pt| one(format!("{} @ {}", l.name, pt.label), json!({"law": [l.a, l.b], "point": pt})))
            })
            .collect(),
        Experiment::TrainingBudget(b) => {
            b.stages.iter().map(|s| one(s.label.clone(), json!({"stage": s, "convention": b.convention}))).collect()
        }
        Experiment::IntervalCoverage(c) => {
            c.rows().into_iter().map(|r| one(r.label.clone(), json!({"row": r, "experiment": c}))).collect()
        }
        Experiment::SyntheticPowerLaw(s) => {
            let reps = seeds.unwrap_or(s.replicates).max(1);
            s.x.iter()
                .flat_map(|x| {
                    (0..reps).map(move |r| CaseSpec {
                        row: format!("x={x}"),
                        replicate: r,
                        payload: json!({"x": x, "series": s.series, "noise": s.noise}),
                    })
                })
                .collect()
        }
        Experiment::SamplerConvergence(c) => replicated(e, &c.steps, |n| format!("steps={n}"), 1),
        Experiment::SamplerSweep(w) => {
            let rows = w.case_rows();
            let labels: Vec<&str> = rows.iter().map(|r| r.as_str()).collect();
            replicated(e, &labels, |s| s.to_string(), seeds.unwrap_or(w.replicates).max(1))
        }
        Experiment::MetricNull(m) => replicated(e, &["null"], |s| s.to_string(), seeds.unwrap_or(m.replicates).max(1)),
        Experiment::TrainSweep(t) => {
            let rows = t.rows();
            let labels: Vec<&str> = rows.iter().map(|r| r.as_str()).collect();
            replicated(e, &labels, |s| s.to_string(), seeds.unwrap_or(t.replicates).max(1))
        }
    }
}

/// The count a measure looks at: the whole model or one named part.
fn counted(model: &ModelConfig, part: Option<&str>) -> Result<Count, String> {
    let tally = model.count();
    match part {
        None => Ok(tally.total()),
        Some(p) => tally.breakdown().into_iter().find(|(n, _)| n == p).map(|(_, c)| c).ok_or_else(|| {
            let names: Vec<String> = tally.breakdown().into_iter().map(|(n, _)| n).collect();
            format!("model has no part `{p}` (parts: {})", names.join(", "))
        }),
    }
}

/// Evaluate one measure on one model (before any `relative_to`).
pub fn measure(model: &ModelConfig, m: &Measure) -> Result<f64, String> {
    let c = counted(model, m.part.as_deref())?;
    let only: Option<&[Category]> = m.only.as_deref();
    let fwd = || m.convention.forward(&c, only);
    let v = match m.quantity {
        Quantity::Params => c.params as f64,
        Quantity::ParamsWithFrozen => (c.params + c.frozen) as f64,
        Quantity::Forward => fwd(),
        Quantity::Training => budget::training_compute(fwd(), m.batch.unwrap_or(0.0), m.steps.unwrap_or(0.0)),
        Quantity::Sampling => budget::sampling_cost(fwd(), m.steps.unwrap_or(0.0), m.guided),
    };
    if m.of_total {
        let all = Measure { only: None, of_total: false, unit: 1.0, per: None, ..m.clone() };
        return Ok(v / m.unit / measure(model, &all)?);
    }
    Ok(v / m.unit / m.per.unwrap_or(1.0))
}

/// Run one case. `Err` is a reason the case failed (recorded, never reused).
pub fn execute(e: &Experiment, case: &CaseSpec, ctx: &CaseCtx) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    let steps = || case.payload["row"].as_u64().map(|n| n as usize).ok_or("no step count");
    match e {
        Experiment::Table(t) => {
            let row = t.rows.iter().find(|r| r.label == case.row).ok_or("row vanished")?;
            if let Some(model) = &row.model {
                for (name, m) in &t.measures {
                    let v = measure(model, m)?;
                    let v = match &row.per_model {
                        Some(base) => v / measure(base, m)?,
                        None => v,
                    };
                    out.insert(name.clone(), v);
                }
            }
        }
        Experiment::PowerLaws(p) => {
            let (law, pt) = p
                .laws
                .iter()
                .find_map(|l| l.at.iter().find(|a| format!("{} @ {}", l.name, a.label) == case.row).map(|a| (l, a)))
                .ok_or("law point vanished")?;
            let x = match (&pt.x, &pt.model, &pt.measure) {
                (Some(x), _, _) => *x,
                (None, Some(model), Some(m)) => measure(model, m)?,
                _ => return Err("law point has no x".into()),
            };
            out.insert("x".into(), x);
            out.insert("y".into(), law.a * x.powf(law.b));
        }
        Experiment::TrainingBudget(b) => {
            let s = b.stages.iter().find(|s| s.label == case.row).ok_or("stage vanished")?;
            let fwd = b.convention.forward(&s.model.count().total(), None);
            out.insert("forward".into(), fwd);
            out.insert("training".into(), budget::training_compute(fwd, s.batch, s.steps));
        }
        Experiment::SyntheticPowerLaw(s) => {
            let x = case.payload["x"].as_f64().ok_or("no x")?;
            let mut rng = Rng::new(ctx.seed);
            out.insert("x".into(), x);
            for series in &s.series {
                out.insert(series.name.clone(), series.a * x.powf(series.b) * (s.noise * rng.normal()).exp());
            }
        }
        Experiment::SamplerConvergence(c) => out = sampling::convergence(c, steps()?),
        Experiment::SamplerSweep(w) if w.denoiser == Denoiser::Trained => {
            out = super::training::sampler_sweep_case(w, &case.row, ctx)?
        }
        Experiment::SamplerSweep(w) => {
            let n = case.row.strip_prefix("steps=").and_then(|n| n.parse().ok()).ok_or("no step count")?;
            out = sampling::sweep(w, n, ctx)?
        }
        Experiment::MetricNull(m) => out = sampling::metric_null(m, ctx),
        Experiment::TrainSweep(t) => out = super::training::train_case(t, &case.row, ctx)?,
        Experiment::IntervalCoverage(c) => {
            let row = c.rows().into_iter().find(|r| r.label == case.row).ok_or("row vanished")?;
            use crate::check::coverage;
            let m = coverage::coverage(c, &row.kind, row.shape, row.n, ctx.seed)?;
            let column = if coverage::ORDER_KINDS.contains(&row.kind.as_str()) { "order_coverage" } else { "coverage" };
            if let Some(c) = m.coverage {
                out.insert(column.into(), c);
            }
            out.insert("power".into(), m.power);
        }
    }
    if let Some((k, v)) = out.iter().find(|(_, v)| !v.is_finite()) {
        return Err(format!("`{k}` is not finite ({v})"));
    }
    Ok(out)
}

/// Identifying facts that every case of `e` records beside its values.
pub fn meta(e: &Experiment) -> BTreeMap<String, String> {
    let features = match e {
        Experiment::SamplerSweep(w) => Some(&w.features),
        Experiment::MetricNull(m) => Some(&m.features),
        _ => None,
    };
    features
        .and_then(|f| f.fingerprint())
        .map(|h| BTreeMap::from([("feature_weights".to_string(), h)]))
        .unwrap_or_default()
}

/// Gather case values (row, replicate, values) into the claim's table and derive scalars.
pub fn assemble(e: &Experiment, rows: &[String], cases: &[(String, u32, BTreeMap<String, f64>)]) -> ClaimData {
    let mut d = ClaimData { rows: rows.to_vec(), seeded: !e.is_analytic(), ..Default::default() };
    let mut sorted: Vec<_> = cases.iter().collect();
    sorted.sort_by_key(|(_, rep, _)| *rep);
    for (row, _, values) in sorted {
        for (k, v) in values {
            // `label|column` belongs to the row `<case row> · <label>` (one case, many rows).
            let (row, col) = match k.split_once('|') {
                Some((sub, col)) => (format!("{row} · {sub}"), col),
                None => (row.clone(), k.as_str()),
            };
            let Some(i) = rows.iter().position(|r| *r == row) else {
                continue;
            };
            d.measured.entry(col.to_string()).or_insert_with(|| vec![vec![]; rows.len()])[i].push(*v);
        }
    }
    match e {
        Experiment::Table(t) => {
            for r in &t.rows {
                for k in r.printed.keys() {
                    d.printed.entry(k.clone()).or_insert_with(|| vec![None; rows.len()]);
                }
            }
            for (i, r) in t.rows.iter().enumerate() {
                for (k, v) in &r.printed {
                    d.printed.get_mut(k).expect("created above")[i] = Some(*v);
                }
            }
            for (name, m) in &t.measures {
                let Some(base_row) = &m.relative_to else {
                    continue;
                };
                let Some(col) = d.measured.get_mut(name) else {
                    continue;
                };
                let bi = rows.iter().position(|r| r == base_row).expect("validated");
                let base = col[bi].first().copied().unwrap_or(f64::NAN);
                col.iter_mut().flatten().for_each(|v| *v /= base);
            }
            for (name, f) in &t.derived {
                let value = |i: usize, c: &str| match c.strip_prefix("printed.") {
                    Some(p) => d.printed.get(p).and_then(|col| col[i]),
                    None => d.measured.get(c).and_then(|col| col[i].first().copied()),
                };
                let col: Vec<Vec<f64>> = (0..rows.len())
                    .map(|i| {
                        let num: Option<f64> = f.num.iter().map(|c| value(i, c)).product();
                        let den: Option<f64> = f.den.iter().map(|c| value(i, c)).product();
                        num.zip(den).map(|(n, dd)| vec![f.times * n / dd]).unwrap_or_default()
                    })
                    .collect();
                d.measured.insert(name.clone(), col);
            }
        }
        Experiment::TrainingBudget(b) => {
            let total: f64 = d.measured.get("training").map(|c| c.iter().flatten().sum()).unwrap_or(0.0);
            let h = &b.hardware;
            let gpu_hours = h.gpus * h.days * 24.0;
            // Each stage's share of the total, and its group's (stages of one resolution, say).
            let training: Vec<f64> =
                d.measured.get("training").map(|c| c.iter().map(|v| v.iter().sum()).collect()).unwrap_or_default();
            let group_of = |s: &crate::suite::Stage| s.group.clone().unwrap_or_else(|| s.label.clone());
            let mut share = vec![vec![]; rows.len()];
            let mut group_share = vec![vec![]; rows.len()];
            for (i, s) in b.stages.iter().enumerate().filter(|(i, _)| *i < training.len()) {
                share[i].push(training[i] / total);
                let g: f64 =
                    b.stages.iter().zip(&training).filter(|(o, _)| group_of(o) == group_of(s)).map(|(_, t)| t).sum();
                group_share[i].push(g / total);
            }
            d.measured.insert("share".into(), share);
            d.measured.insert("group_share".into(), group_share);
            d.scalars.insert("total_training".into(), total);
            d.scalars.insert("gpu_hours".into(), gpu_hours);
            d.scalars.insert("utilisation".into(), total / (h.gpus * h.peak_flops * h.days * 86_400.0));
            if let Some(dollars) = h.dollars {
                d.scalars.insert("dollars_per_gpu_hour".into(), dollars / gpu_hours);
            }
        }
        Experiment::TrainSweep(t) => {
            // A model's printed numbers apply to every row (every budget) of that model.
            for m in &t.models {
                for (k, v) in &m.printed {
                    let col = d.printed.entry(k.clone()).or_insert_with(|| vec![None; rows.len()]);
                    for (i, r) in rows.iter().enumerate() {
                        if *r == m.label || r.starts_with(&format!("{} @ ", m.label)) {
                            col[i] = Some(*v);
                        }
                    }
                }
            }
        }
        Experiment::SamplerSweep(_) => {
            // Distillation compute per model, as a fraction of its training compute.
            for name in ["pd_fraction", "cd_fraction"] {
                let Some(col) = d.measured.get(name) else { continue };
                for (row, v) in d.rows.iter().zip(col).filter(|(_, v)| !v.is_empty()) {
                    let model = row.split(" · ").next().unwrap_or(row);
                    d.scalars.insert(format!("{name}[{model}]"), crate::fit::mean(v));
                }
            }
        }
        Experiment::PowerLaws(_)
        | Experiment::SyntheticPowerLaw(_)
        | Experiment::IntervalCoverage(_)
        | Experiment::SamplerConvergence(_)
        | Experiment::MetricNull(_) => {}
    }
    d
}
