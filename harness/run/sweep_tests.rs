//! Trained sampler sweeps at the smoke scale, with the negative controls their claims must
//! fail: model costs swapped, and a student that was never distilled.

use super::experiment::{assemble, execute, CaseCtx, ClaimData};
use super::{plan, ResolvedClaim};
use crate::check::{evaluate, Ctx, Verdict};
use crate::suite::validate::columns;
use crate::suite::{load_suite, Experiment, Plan, Profile};
use std::path::Path;

fn claim(id: &str) -> ResolvedClaim {
    let suite = load_suite(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/suites/mei2024.yaml"))).unwrap();
    plan(&[suite], Some(id), Profile::Smoke, None).pop().unwrap()
}

/// Run every case of `e` (as `claim` would) and gather its table.
fn run(c: &ResolvedClaim, e: &Experiment) -> ClaimData {
    let specs = super::experiment::expand(e, None);
    let cases: Vec<_> = specs
        .iter()
        .map(|s| {
            let seed = super::seed::derive_seed(&c.suite, &c.id, &s.row, s.replicate);
            let ctx = CaseCtx { suite: &c.suite, claim: &c.id, replicate: s.replicate, seed, checkpoint: None };
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
    s.models.truncate(2);
    let e = Experiment::SamplerSweep(s);
    let d = run(&c, &e);
    // The student is its teacher: the same samples, a ratio of exactly 1.
    let (pd, ddim) = (&d.measured["pd"], &d.measured["ddim"]);
    let row = pd.iter().position(|r| !r.is_empty()).unwrap();
    assert_eq!(pd[row], ddim[row]);
    assert_eq!(verdicts(&c, &e, &d), vec![Verdict::Fail]);
}
