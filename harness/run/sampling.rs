//! Cases of the sampler and metric experiments.

use super::experiment::CaseCtx;
use crate::data::gmm::Oracle;
use crate::data::{Gmm, NoiseBank};
use crate::diffusion::{sample, Evaluator, FinalPoint, Grid, Spacing, Time};
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

/// Every sampler at `steps`, each from the same noise bank, scored against one reference set.
pub fn sweep(e: &SamplerSweepExp, steps: usize, ctx: &CaseCtx) -> Result<Values, String> {
    if e.denoiser != Denoiser::Oracle {
        return Err("trained denoisers need the training engine, which this build lacks".into());
    }
    let gmm = e.data.build();
    let oracle = Oracle(&gmm);
    let guided = e.guidance != 1.0;
    // With guidance every sample has a prompt (class i mod C), and so does the reference.
    let classes: Vec<usize> = (0..e.samples.max(e.reference_samples)).map(|i| i % gmm.classes).collect();
    let ref_classes = guided.then(|| &classes[..e.reference_samples]);
    let (reference, _) = gmm.sample(ctx.seed_for("reference"), 0, e.reference_samples, ref_classes);
    let (reference, d) = e.features.apply(&reference, gmm.dim);
    let grid = Grid::new(&e.schedule, e.spacing, steps, e.final_point);
    let mut out = Values::new();
    for (name, sampler) in &e.samplers {
        let mut ev = Evaluator::new(&oracle);
        ev.clip_x0 = match e.clip_x0 {
            ClipX0::Off => None,
            ClipX0::Symmetric(c) => Some(c),
        };
        if guided {
            ev.class = Some(&classes[..e.samples]);
            ev.guidance = e.guidance;
        }
        let mut bank = NoiseBank::new(ctx.seed_for("noise-bank"), 0, e.samples, gmm.dim);
        let x = sample(*sampler, &mut ev, &grid, &mut bank);
        if x.iter().any(|v| !v.is_finite()) {
            return Err(format!("sampler `{name}` produced non-finite samples at {steps} steps"));
        }
        let (feats, _) = e.features.apply(&x, gmm.dim);
        out.insert(name.clone(), score(e.metric, &feats, &reference, d, ctx.seed_for("projections")));
        out.insert(format!("nfe_{name}"), ev.nfe as f64);
    }
    out.insert("steps".into(), steps as f64);
    Ok(out)
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
        CaseCtx { suite: "t", claim: "t/c", replicate: 0, seed: 1, checkpoint: None }
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
