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
