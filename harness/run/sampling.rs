//! Cases of the sampler and metric experiments.

use super::case::CaseCtx;
use crate::data::gmm::Oracle;
use crate::data::{Draw, Gmm, NoiseBank, Observed};
use crate::diffusion::{sample, Conditioned, Evaluator, FinalPoint, Grid, Model, Spacing, Time};
use crate::metrics::{self, fd_infinity, frechet_from_samples};
use crate::suite::{
    ClipX0, Degradation, Denoiser, MetricNullExp, SampleMetric, SamplerConvergenceExp, SamplerSweepExp,
};
use std::collections::BTreeMap;

type Values = BTreeMap<String, f64>;

/// |relative error| of each sampler's output scale on N(0, s²): the probability-flow ODE keeps
/// x/√(α²s² + σ²) fixed, so the exact map from the first grid point to the last is a known
/// scale, and a deterministic sampler is linear in its input.
pub fn convergence(e: &SamplerConvergenceExp, steps: usize) -> Values {
    let s = e.data_std;
    let g = Gmm { dim: 1, means: vec![0.0], stds: vec![s], weights: vec![1.0], class_of: vec![0], classes: 1 };
    let spacing = Spacing::UniformLambda { lambda_min: e.lambda_min, lambda_max: e.lambda_max };
    let grid = Grid::new(&e.schedule, spacing, steps, FinalPoint::AlphaBar0);
    let scale = |t: Time| (t.alpha * t.alpha * s * s + t.sigma * t.sigma).sqrt();
    let exact = scale(grid.end) / scale(grid.points[0]);
    let oracle = Oracle(&g);
    let mut out: Values = e
        .samplers
        .iter()
        .map(|(name, sampler)| {
            let mut ev = Evaluator::new(&oracle);
            let x = sample(*sampler, &mut ev, &grid, &mut NoiseBank::fixed(vec![1.0], 1));
            (name.clone(), (x[0] / exact - 1.0).abs())
        })
        .collect();
    out.insert("steps".into(), steps as f64);
    out
}

fn score(metric: SampleMetric, gen: &[f64], reference: &[f64], d: usize, seed: u64) -> f64 {
    match metric {
        SampleMetric::Fd => frechet_from_samples(gen, reference, d),
        SampleMetric::FdInfinity => fd_infinity(gen, reference, d),
        SampleMetric::SlicedWasserstein => {
            let n = gen.len() / d;
            metrics::sliced_wasserstein(gen, &reference[..(n * d).min(reference.len())], d, 256, seed)
        }
    }
}

/// One (steps, w) cell of a sweep, and the row-label suffix its values go under.
pub type Cell = (usize, f64, String);

/// Every sampler at every cell, each from the same noise bank, scored against one reference
/// set. `prompted` gives sample i the class i mod C (and the reference the same classes), and
/// adds each sampler's exact alignment accuracy as `align_<sampler>`. A cell with an empty
/// label writes plain column names; otherwise `label|column`, which `assemble` turns into the
/// row `<case row> · <label>`.
pub fn score_cells(
    e: &SamplerSweepExp,
    model: &dyn Model,
    gmm: &Gmm,
    cells: &[Cell],
    prompted: bool,
    ctx: &CaseCtx,
) -> Result<Values, String> {
    let classes: Vec<usize> = (0..e.samples.max(e.reference_samples)).map(|i| i % gmm.classes).collect();
    let ref_classes = prompted.then(|| &classes[..e.reference_samples]);
    let (reference, _) = gmm.sample(ctx.seed_for("reference"), 0, e.reference_samples, ref_classes);
    let scored = Scored { reference: e.features.apply(&reference, gmm.dim), join: &|x| x.to_vec(), width: gmm.dim };
    let prompts = prompted.then(|| &classes[..e.samples]);
    sample_and_score(e, model, gmm.dim, cells, prompts, &scored, prompted.then_some(gmm), ctx)
}

/// `score_cells` for a super-resolution model: sample i is generated given the low-resolution
/// copy y_i of a true sample, and the pairs [x̂_i | y_i] are scored against as many true pairs
/// [x | y] from another draw, so the metric sees how well x̂ fits its y as well as the data.
pub fn score_conditioned(
    e: &SamplerSweepExp,
    model: &dyn Model,
    obs: &Observed,
    cells: &[Cell],
    prompted: bool,
    ctx: &CaseCtx,
) -> Result<Values, String> {
    let (gmm, d, c) = (obs.gmm, obs.gmm.dim, obs.cond_dim());
    let classes: Vec<usize> = (0..e.samples.max(e.reference_samples)).map(|i| i % gmm.classes).collect();
    let prompts = |n: usize| prompted.then(|| &classes[..n]);
    let (reference, _) = obs.draw(ctx.seed_for("reference"), 0, e.reference_samples, prompts(e.reference_samples));
    let (given, _) = obs.draw(ctx.seed_for("conditions"), 0, e.samples, prompts(e.samples));
    let y: Vec<f64> = given.chunks(d + c).flat_map(|r| r[d..].to_vec()).collect();
    let pair = |x: &[f64]| -> Vec<f64> {
        x.chunks(d).zip(y.chunks(c)).flat_map(|(a, b)| a.iter().chain(b).copied().collect::<Vec<_>>()).collect()
    };
    let scored = Scored { reference: e.features.apply(&reference, d + c), join: &pair, width: d + c };
    let conditioned = Conditioned { model, cond: &y, width: c };
    sample_and_score(e, &conditioned, d, cells, prompts(e.samples), &scored, None, ctx)
}

/// What samples are scored against: the reference in feature space (and its width), and how a
/// batch of samples becomes rows like the reference's (`width` values each).
struct Scored<'a> {
    reference: (Vec<f64>, usize),
    join: &'a dyn Fn(&[f64]) -> Vec<f64>,
    width: usize,
}

/// Each sampler at each cell from the sweep's noise bank, scored; with `align`, also the
/// samples' exact alignment accuracy to their prompts.
#[allow(clippy::too_many_arguments)]
fn sample_and_score(
    e: &SamplerSweepExp,
    model: &dyn Model,
    dim: usize,
    cells: &[Cell],
    prompts: Option<&[usize]>,
    scored: &Scored,
    align: Option<&Gmm>,
    ctx: &CaseCtx,
) -> Result<Values, String> {
    let (reference, fd_dim) = (&scored.reference.0, scored.reference.1);
    let mut out = Values::new();
    for (steps, w, label) in cells {
        let key = |col: &str| if label.is_empty() { col.to_string() } else { format!("{label}|{col}") };
        let grid = Grid::new(&e.schedule, e.spacing, *steps, e.final_point);
        for (name, sampler) in &e.samplers {
            let mut ev = Evaluator::new(model);
            ev.clip_x0 = match e.clip_x0 {
                ClipX0::Off => None,
                ClipX0::Symmetric(c) => Some(c),
            };
            if prompts.is_some() {
                ev.class = prompts;
                ev.guidance = *w;
            }
            let mut bank = NoiseBank::new(ctx.seed_for("noise-bank"), 0, e.samples, dim);
            let x = sample(*sampler, &mut ev, &grid, &mut bank);
            if x.iter().any(|v| !v.is_finite()) {
                return Err(format!("sampler `{name}` produced non-finite samples at {steps} steps, w = {w}"));
            }
            let (feats, _) = e.features.apply(&(scored.join)(&x), scored.width);
            out.insert(key(name), score(e.metric, &feats, reference, fd_dim, ctx.seed_for("projections")));
            out.insert(key(&format!("nfe_{name}")), ev.nfe as f64);
            if let (Some(g), Some(p)) = (align, prompts) {
                out.insert(key(&format!("align_{name}")), metrics::alignment_accuracy(g, &x, p));
            }
        }
        out.insert(key("steps"), *steps as f64);
        if !e.guidance_sweep.is_empty() {
            out.insert(key("guidance"), *w);
        }
    }
    Ok(out)
}

/// The oracle's case: every sampler (and swept w) at `steps`.
pub fn sweep(e: &SamplerSweepExp, steps: usize, ctx: &CaseCtx) -> Result<Values, String> {
    if e.denoiser != Denoiser::Oracle {
        return Err("a trained sweep runs one case per model".into());
    }
    let gmm = e.data.build();
    let swept = !e.guidance_sweep.is_empty();
    let cells: Vec<Cell> =
        e.weights().into_iter().map(|w| (steps, w, if swept { format!("w={w}") } else { String::new() })).collect();
    score_cells(e, &Oracle(&gmm), &gmm, &cells, swept || e.guidance != 1.0, ctx)
}

/// True against true at N and 2N (a metric at its bias floor halves), and a degraded copy of
/// the first set (same draws: wider components, or missing modes) against the second.
pub fn metric_null(e: &MetricNullExp, ctx: &CaseCtx) -> Values {
    let gmm = e.data.build();
    let n = e.samples;
    let (sa, sb) = (ctx.seed_for("set-a"), ctx.seed_for("set-b"));
    let f = |x: &[f64]| e.features.apply(x, gmm.dim);
    let (a2, d) = f(&gmm.sample(sa, 0, 2 * n, None).0);
    let (b2, _) = f(&gmm.sample(sb, 0, 2 * n, None).0);
    let degraded = match e.degrade {
        Degradation::Blur(b) => gmm.scaled_stds(1.0 + b),
        Degradation::DropModes(frac) => gmm.first_components(((1.0 - frac) * gmm.components() as f64).round() as usize),
    };
    let (blurred, _) = f(&degraded.sample(sa, 0, n, None).0);
    let (a, b) = (&a2[..n * d], &b2[..n * d]);
    let fd_null = frechet_from_samples(a, b, d);
    let fd_null_double = frechet_from_samples(&a2, &b2, d);
    let fd_degraded = frechet_from_samples(&blurred, b, d);
    Values::from([
        ("fd_null".into(), fd_null),
        ("fd_null_double".into(), fd_null_double),
        ("bias_ratio".into(), fd_null / fd_null_double),
        ("fd_degraded".into(), fd_degraded),
        ("degraded_excess".into(), fd_degraded - fd_null),
        ("fd_infinity_null".into(), fd_infinity(&a2, &b2, d)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::GmmSpec;
    use crate::metrics::Features;
    use crate::suite::MetricNullExp;

    fn ctx() -> CaseCtx<'static> {
        CaseCtx {
            suite: "t",
            claim: "t/c",
            replicate: 0,
            seed: 1,
            checkpoint: None,
            backend: super::super::backend::Backend::cpu(),
            curves: Default::default(),
        }
    }

    #[test]
    fn metric_null_is_at_its_bias_floor_and_a_wrong_reference_is_not() {
        let spec = GmmSpec { dim: 8, components: 4, classes: 4, radius: 1.0, std: 0.25, seed: 1 };
        let e = MetricNullExp {
            data: crate::data::DataSpec::Gmm(spec.clone()),
            samples: 1000,
            degrade: crate::suite::Degradation::Blur(0.05),
            features: Features::Raw,
            replicates: 1,
        };
        let v = metric_null(&e, &ctx());
        assert!((1.5..2.6).contains(&v["bias_ratio"]), "{v:?}");
        // Negative control: a reference from another mixture has a true distance, so doubling the
        // samples no longer halves the FD and the ratio falls towards 1.
        let other = GmmSpec { seed: 2, ..spec }.build();
        let a = |n| e.data.build().sample(7, 0, n, None).0;
        let b = |n| other.sample(8, 0, n, None).0;
        let ratio = frechet_from_samples(&a(1000), &b(1000), 8) / frechet_from_samples(&a(2000), &b(2000), 8);
        assert!(ratio < 1.3, "{ratio}");
    }
}
