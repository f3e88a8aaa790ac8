//! Trained sweeps at the smoke scale, with the negative controls their claims must fail: model
//! costs swapped, a student that was never distilled, deferred masking without its mixer.

use super::experiment::{assemble, execute, CaseCtx, ClaimData};
use super::{plan, ResolvedClaim};
use crate::check::{evaluate, Ctx, Verdict};
use crate::suite::validate::columns;
use crate::suite::{load_suite, Experiment, Plan, Profile};
use std::path::Path;

fn claim(id: &str) -> ResolvedClaim {
    let file = format!("{}/suites/{}.yaml", env!("CARGO_MANIFEST_DIR"), id.split('/').next().unwrap());
    let suite = load_suite(Path::new(&file)).unwrap();
    plan(&[suite], Some(id), Profile::Smoke, None, super::backend::Backend::cpu().numerics()).pop().unwrap()
}

/// Run every case of `e` (as `claim` would) at the fewest seeds that can decide a check, and
/// gather its table.
fn run(c: &ResolvedClaim, e: &Experiment) -> ClaimData {
    let specs = super::experiment::expand(e, Some(crate::fit::interval::MIN_REPLICATES as u32));
    let cases: Vec<_> = specs
        .iter()
        .map(|s| {
            let seed = crate::seed::derive_seed(&c.suite, &c.id, &s.row, s.replicate);
            let ctx = CaseCtx {
                suite: &c.suite,
                claim: &c.id,
                replicate: s.replicate,
                seed,
                checkpoint: None,
                backend: super::backend::Backend::cpu(),
                curves: Default::default(),
            };
            (s.row.clone(), s.replicate, execute(e, s, &ctx).unwrap())
        })
        .collect();
    assemble(e, &columns(e).rows, &cases)
}

fn verdicts(c: &ResolvedClaim, e: &Experiment, d: &ClaimData) -> Vec<Verdict> {
    let cols = columns(e);
    let ctx = Ctx { data: d, fit: None, cols: &cols, boot: &c.bootstrap, suite: &c.suite, claim: &c.id };
    c.expect.iter().enumerate().map(|(i, chk)| evaluate(&ctx, chk, i).verdict).collect()
}

fn experiment(c: &ResolvedClaim) -> Experiment {
    match &c.plan {
        Plan::Run(e) => e.as_ref().clone(),
        Plan::Skip(why) => panic!("skipped: {why}"),
    }
}

#[test]
fn small_models_win_at_low_cost_and_swapped_costs_fail() {
    let c = claim("mei2024/reduced-sampling-cost-small-wins");
    let e = experiment(&c);
    let mut d = run(&c, &e);
    assert_eq!(verdicts(&c, &e, &d), vec![Verdict::Pass]);
    // Negative control: the largest and the smallest model's sampling costs swapped.
    let model = |r: &str| r.split(" · ").next().unwrap().to_string();
    let first = model(&d.rows[0]);
    let last = model(d.rows.last().unwrap());
    let cost = d.measured.get_mut("cost").unwrap();
    let (small, large): (Vec<usize>, Vec<usize>) = (
        (0..d.rows.len()).filter(|i| model(&d.rows[*i]) == first).collect(),
        (0..d.rows.len()).filter(|i| model(&d.rows[*i]) == last).collect(),
    );
    for (a, b) in small.iter().zip(&large) {
        cost.swap(*a, *b);
    }
    assert_eq!(verdicts(&c, &e, &d), vec![Verdict::Fail]);
}

#[test]
fn an_undistilled_student_fails_the_distillation_claim() {
    let c = claim("mei2024/reduced-distill-improves");
    let Experiment::SamplerSweep(mut s) = experiment(&c) else { panic!("a sampler sweep") };
    s.distill.as_mut().unwrap().updates = 0;
    s.consistency.as_mut().unwrap().updates = 0;
    s.models.truncate(2);
    let e = Experiment::SamplerSweep(s);
    let d = run(&c, &e);
    // The students are their teacher: the same samples, ratios of exactly 1.
    for student in ["pd", "cd"] {
        let (s, ddim) = (&d.measured[student], &d.measured["ddim"]);
        let row = s.iter().position(|r| !r.is_empty()).unwrap();
        assert_eq!(s[row], ddim[row]);
    }
    assert_eq!(verdicts(&c, &e, &d), vec![Verdict::Fail, Verdict::Fail]);
}

#[test]
fn deferred_masking_without_its_mixer_is_naive_masking_and_fails() {
    // The cpu scale's experiment, shrunk to 1e10 training FLOPs.
    let c = claim("microdit2024/reduced-deferred-vs-naive");
    let suite = load_suite(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/suites/microdit2024.yaml"))).unwrap();
    let doc = suite.claims.iter().find(|x| x.doc.id == c.id).unwrap();
    let Some(Plan::Run(e)) = doc.plans.get(&Profile::Cpu) else { panic!("runs at the cpu scale") };
    let Experiment::TrainSweep(mut t) = e.as_ref().clone() else { panic!("a training sweep") };
    t.training.flop_budget = Some(1.0e10);
    t.eval_samples = 256;
    t.sample_fd = None;
    t.models.retain(|m| m.label.contains('%'));
    // Negative control: the deferred arm loses its patch-mixer.
    for m in &mut t.models {
        if let crate::compute::ModelConfig::Dit(cfg) = &mut m.model {
            (cfg.mixer_depth, cfg.mixer_hidden) = (0, 0);
        }
    }
    let e = Experiment::TrainSweep(t);
    let c =
        ResolvedClaim { expect: c.expect.iter().take(1).cloned().collect(), plan: Plan::Run(Box::new(e.clone())), ..c };
    let d = run(&c, &e);
    // The same config on common random numbers: the same run, to the bit.
    assert_eq!(d.measured["excess_error"][0], d.measured["excess_error"][1], "the same model twice");
    assert_eq!(verdicts(&c, &e, &d), vec![Verdict::Fail]);
}
