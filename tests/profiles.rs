//! The profiles of the committed suites: every claim that trains a network says how the `gpu`
//! profile scales it and what the papers' own settings are, and `run --dry-run` sizes a profile
//! for a device without opening it.

use diffscale::suite::{load_all, Denoiser, Experiment, Plan, Profile};
use std::path::PathBuf;
use std::process::Command;

fn trains(e: &Experiment) -> bool {
    match e {
        Experiment::TrainSweep(_) => true,
        Experiment::SamplerSweep(s) => s.denoiser == Denoiser::Trained,
        _ => false,
    }
}

#[test]
fn every_trained_claim_has_a_gpu_scale_and_states_the_papers() {
    let suites = load_all(&[PathBuf::from("suites")]).unwrap();
    let mut n = 0;
    for s in &suites {
        for c in &s.claims {
            let Plan::Run(cpu) = &c.plans[&Profile::Cpu] else { continue };
            if !trains(cpu) {
                continue;
            }
            n += 1;
            let id = &c.doc.id;
            match &c.plans[&Profile::Gpu] {
                Plan::Run(gpu) => assert_ne!(gpu, cpu, "{id}: the gpu profile is the cpu profile"),
                Plan::Skip(r) => panic!("{id}: skipped at gpu ({r})"),
            }
            assert!(c.doc.claim.contains("gpu profile"), "{id}: the claim does not say what the gpu profile changes");
            match &c.plans[&Profile::Paper] {
                Plan::Skip(r) => assert!(r.len() > 20, "{id}: the paper profile's reason is too short: {r}"),
                Plan::Run(_) => panic!("{id}: the paper profile would run the cpu scale"),
            }
        }
    }
    assert!(n >= 14, "{n} trained claims");
}

#[test]
fn dry_run_estimates_a_profile_for_a_device_it_does_not_open() {
    for device in ["cpu", "cuda:0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_diffscale"))
            .args(["run", "--dry-run", "--profile", "gpu", "--device", device, "suites/dit2023.yaml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("dit2023/reduced-compute-efficiency") && text.contains("min on"), "{text}");
    }
}

/// Table columns built from other columns compute what they say: a pair's ratio (`per_model`),
/// a share of the total (`of_total`), a derived ratio of printed numbers (`derived`), and a
/// budget's per-group share; and each check on them can fail (the negative controls).
#[test]
fn pair_share_derived_and_group_columns_compute_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("cols.yaml");
    std::fs::write(
        &suite,
        r#"
suite: cols
version: 1
title: derived columns
templates:
  tiny: {family: dit, depth: 2, hidden: 8, heads: 2, patch: 2, input_size: 8, in_channels: 3, learn_sigma: false, num_classes: 2}
claims:
  - id: cols/exact
    claim: a model against itself is 1; every category is the whole; 6 ÷ 3 × 0.5 is 1
    source: test
    experiment:
      kind: table
      measures:
        ratio: {quantity: forward, convention: macs}
        whole: {quantity: forward, convention: macs, only: [conv, token_linear, other_linear, self_attention, cross_attention], of_total: true}
      derived:
        half: {num: [printed.a], den: [printed.b], times: 0.5}
      rows:
        - {label: pair, model: {use: tiny}, per_model: {use: tiny}, printed: {a: 6, b: 3}}
    expect:
      - band: {of: ratio, min: 0.999999, max: 1.000001}
      - band: {of: whole, min: 0.999999, max: 1.000001}
      - band: {of: half, min: 0.999999, max: 1.000001}
  - id: cols/patch-halved
    claim: halving the patch costs more, so a ratio of at most 1 fails
    source: test (negative control)
    experiment:
      kind: table
      measures:
        ratio: {quantity: forward, convention: macs}
      rows:
        - {label: pair, model: {use: tiny}, per_model: {use: tiny, patch: 4}}
    expect:
      - band: {of: ratio, max: 1.0}
  - id: cols/groups
    claim: two equal stages in one group hold half each and the whole together
    source: test
    experiment:
      kind: training_budget
      stages:
        - {label: a, group: g, model: {use: tiny}, batch: 1, steps: 10}
        - {label: b, group: g, model: {use: tiny}, batch: 1, steps: 10}
      hardware: {gpus: 1, peak_flops: 1.0e+12, days: 1}
    expect:
      - band: {of: share, min: 0.499999, max: 0.500001}
      - band: {of: group_share, min: 0.999999, max: 1.000001}
      # Negative control: a stage is not the whole.
      - band: {of: share, rows: [a], min: 0.9}
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_diffscale"))
        .args(["run", "--profile", "smoke", "--no-fail-exit", "--out"])
        .arg(dir.path().join("run"))
        .arg(&suite)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap();
    let checks = |id: &str| -> Vec<String> {
        let c = s["claims"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap();
        c["checks"].as_array().unwrap().iter().map(|k| k["verdict"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(checks("cols/exact"), ["PASS", "PASS", "PASS"]);
    assert_eq!(checks("cols/patch-halved"), ["FAIL"]);
    assert_eq!(checks("cols/groups"), ["PASS", "PASS", "FAIL"]);
}
