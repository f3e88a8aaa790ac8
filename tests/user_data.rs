//! A suite trains on the user's own images: a folder of class subfolders of PNGs.

use std::path::Path;
use std::process::Command;

/// An 8×8 RGB PNG: a 4×4 square of `colour` at (x, y) on black.
fn write_png(path: &Path, colour: [u8; 3], x: usize, y: usize) {
    let mut px = vec![0u8; 8 * 8 * 3];
    for row in y..y + 4 {
        for col in x..x + 4 {
            px[(row * 8 + col) * 3..][..3].copy_from_slice(&colour);
        }
    }
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 8, 8);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&px).unwrap();
}

const SUITE: &str = r#"
suite: mine
version: 1
title: My images
claims:
  - id: mine/wider-is-better
    claim: On my images, the wider DiT denoises held-out images better.
    source: a user's own question
    experiment:
      kind: train_sweep
      data: {folder: {path: imgs, holdout: 4}}
      models:
        - {label: narrow, model: {family: dit, depth: 1, heads: 2, hidden: 16, patch: 4, input_size: 8, in_channels: 3, learn_sigma: false, num_classes: 2, block: adaln_zero}}
        - {label: wide, model: {family: dit, depth: 1, heads: 2, hidden: 32, patch: 4, input_size: 8, in_channels: 3, learn_sigma: false, num_classes: 2, block: adaln_zero}}
      training: {steps: 20, batch: 16, learning_rate: 0.002, warmup_fraction: 0.05, final_lr_fraction: 0.1, ema_fraction: 0.1, clip: 1.0, prediction: epsilon, schedule: {betas: cosine, train_steps: 1000}, checkpoint_every: 1000}
      eval_samples: 64
      sample_fd: {samples: 32, steps: 4, clip_x0: 1.0}
      replicates: 3
    expect:
      - monotone: {x: params, y: heldout_loss, direction: decreasing}
      - monotone: {x: params, y: fd, direction: decreasing}
      - monotone: {x: params, y: excess_error, direction: decreasing}
"#;

#[test]
fn a_suite_trains_on_a_folder_of_pngs() {
    let dir = tempfile::tempdir().unwrap();
    for (class, colour) in [("red", [255, 0, 0]), ("blue", [0, 0, 255])] {
        let sub = dir.path().join("imgs").join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..12 {
            write_png(&sub.join(format!("{i:02}.png")), colour, i % 5, (i / 5) % 5);
        }
    }
    let suite = dir.path().join("mine.yaml");
    std::fs::write(&suite, SUITE).unwrap();
    let out = dir.path().join("run");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_diffscale"))
            .args(["run", "--no-fail-exit", "--out"])
            .arg(&out)
            .args(extra)
            .arg(&suite)
            .output()
            .unwrap()
    };
    let first = run(&[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let claim = &summary["claims"][0];
    let checks = claim["checks"].as_array().unwrap();
    // The held-out loss and FD against held-out images are measured (a verdict with an interval) …
    for c in &checks[..2] {
        assert_ne!(c["verdict"], "FAIL", "{c}");
        assert!(c["rows"][0]["measured"]["lo"].is_number(), "{c}");
    }
    // … and the exact-denoiser score says it is unavailable instead of failing.
    assert_eq!(checks[2]["verdict"], "INCONCLUSIVE", "{}", checks[2]);
    assert!(checks[2]["note"].as_str().unwrap().contains("unavailable"), "{}", checks[2]);

    // Every training case keeps its loss curve, and the report draws them on request.
    let record = std::fs::read_dir(out.join("cases")).unwrap().next().unwrap().unwrap().path();
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    let curve = record["curves"].as_object().unwrap().values().next().unwrap().as_array().unwrap().clone();
    assert_eq!(curve.len(), 20, "one point per step when training is shorter than the curve");
    let report =
        Command::new(env!("CARGO_BIN_EXE_diffscale")).args(["report", "--loss-curves"]).arg(&out).output().unwrap();
    assert!(report.status.success() || report.status.code() == Some(1), "{}", String::from_utf8_lossy(&report.stderr));
    let svg = std::fs::read_to_string(out.join("figures/mine__wider-is-better__loss.svg")).unwrap();
    assert!(svg.contains("narrow (3 seeds)") && svg.contains("wide (3 seeds)"), "legend names both models");

    // The images are part of every case's identity: an edited image trains again.
    let reused = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).contains("0 run,");
    assert!(reused(&run(&[])), "an unchanged folder reuses its cases");
    write_png(&dir.path().join("imgs/red/00.png"), [255, 255, 0], 0, 0);
    assert!(!reused(&run(&[])), "an edited image must re-run the claim");

    // A folder that is not there is a load error naming the suite's line.
    std::fs::write(&suite, SUITE.replace("path: imgs", "path: nowhere")).unwrap();
    let bad = run(&[]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("mine.yaml:") && err.contains("nowhere"), "{err}");
}

#[test]
fn a_suite_trains_on_an_array_of_samples() {
    let dir = tempfile::tempdir().unwrap();
    // 40 samples of 4 values: two clusters, as latents would be.
    let data: Vec<f64> = (0..40)
        .flat_map(|i| [1.0, -1.0, 0.5, 0.0].map(|v| v * if i % 2 == 0 { 1.0 } else { -1.0 } + 0.01 * i as f64))
        .collect();
    std::fs::write(dir.path().join("latents.npy"), diffscale::data::user::npy_bytes(&[40, 4], &data)).unwrap();
    let suite = dir.path().join("mine.yaml");
    let text = SUITE
        .replace("data: {folder: {path: imgs, holdout: 4}}", "data: {array: {path: latents.npy, holdout: 8}}")
        .replace(
            "{family: dit, depth: 1, heads: 2, hidden: 16, patch: 4, input_size: 8, in_channels: 3, learn_sigma: false, num_classes: 2, block: adaln_zero}",
            "{family: mlp, data_dim: 4, width: 8, depth: 2}",
        )
        .replace(
            "{family: dit, depth: 1, heads: 2, hidden: 32, patch: 4, input_size: 8, in_channels: 3, learn_sigma: false, num_classes: 2, block: adaln_zero}",
            "{family: mlp, data_dim: 4, width: 32, depth: 2}",
        );
    std::fs::write(&suite, text).unwrap();
    let out = dir.path().join("run");
    let run = Command::new(env!("CARGO_BIN_EXE_diffscale"))
        .args(["run", "--no-fail-exit", "--out"])
        .arg(&out)
        .arg(&suite)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let checks = summary["claims"][0]["checks"].as_array().unwrap().clone();
    assert!(checks[0]["rows"][0]["measured"]["lo"].is_number(), "{}", checks[0]);
    assert_eq!(checks[2]["verdict"], "INCONCLUSIVE", "{}", checks[2]);
}

#[test]
fn fd_on_the_users_data_can_be_measured_in_their_own_features() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<f64> = (0..40)
        .flat_map(|i| [1.0, -1.0, 0.5, 0.0].map(|v| v * if i % 2 == 0 { 1.0 } else { -1.0 } + 0.01 * i as f64))
        .collect();
    std::fs::write(dir.path().join("latents.npy"), diffscale::data::user::npy_bytes(&[40, 4], &data)).unwrap();
    // A 4 × 2 projection: the first two coordinates' sum and difference.
    let w = [1.0, 1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0];
    std::fs::write(dir.path().join("proj.npy"), diffscale::data::user::npy_bytes(&[4, 2], &w)).unwrap();
    let mlp = |w: u32| format!("{{family: mlp, data_dim: 4, width: {w}, depth: 2}}");
    let suite_with = |features: &str| {
        SUITE
            .replace("data: {folder: {path: imgs, holdout: 4}}", "data: {array: {path: latents.npy, holdout: 8}}")
            .replace("{family: dit, depth: 1, heads: 2, hidden: 16, patch: 4, input_size: 8, in_channels: 3, learn_sigma: false, num_classes: 2, block: adaln_zero}", &mlp(8))
            .replace("{family: dit, depth: 1, heads: 2, hidden: 32, patch: 4, input_size: 8, in_channels: 3, learn_sigma: false, num_classes: 2, block: adaln_zero}", &mlp(32))
            .replace("sample_fd: {samples: 32, steps: 4, clip_x0: 1.0}", &format!("sample_fd: {{samples: 32, steps: 4, clip_x0: 1.0, features: {features}}}"))
    };
    let fd = |features: &str| {
        let suite = dir.path().join("mine.yaml");
        std::fs::write(&suite, suite_with(features)).unwrap();
        let out = tempfile::tempdir().unwrap();
        let run = Command::new(env!("CARGO_BIN_EXE_diffscale"))
            .args(["run", "--no-fail-exit", "--out"])
            .arg(out.path())
            .arg(&suite)
            .output()
            .unwrap();
        (run.status.code(), String::from_utf8_lossy(&run.stderr).to_string(), out)
    };
    let read_fd = |out: &tempfile::TempDir| -> f64 {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap()).unwrap();
        s["claims"][0]["checks"][1]["rows"][0]["measured"]["value"].as_f64().unwrap()
    };
    let (raw_code, err, raw) = fd("raw");
    assert_eq!(raw_code, Some(0), "{err}");
    let (code, err, projected) = fd("{projection: {path: proj.npy}}");
    assert_eq!(code, Some(0), "{err}");
    let (code, err, relu) = fd("{random_relu: {dim: 16, seed: 3}}");
    assert_eq!(code, Some(0), "{err}");
    // The same samples, measured in three spaces.
    let (a, b, c) = (read_fd(&raw), read_fd(&projected), read_fd(&relu));
    assert!(a.is_finite() && b.is_finite() && c.is_finite() && a != b && a != c, "{a} {b} {c}");
    // A missing feature file is a located error at load.
    let (code, err, _) = fd("{projection: {path: nowhere.npy}}");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("mine.yaml:") && err.contains("nowhere.npy") && err.contains("sample_fd"), "{err}");
}

#[test]
fn raw_fd_on_large_images_is_refused_with_the_way_out() {
    // 64 × 64 RGB images: a 12,288-value covariance per side.
    let d = 64 * 64 * 3;
    let err = diffscale::suite::FdFeatures::Raw.apply(&vec![0.0; 2 * d], d).unwrap_err();
    assert!(err.contains("sample_fd.features") && err.contains("random_relu"), "{err}");
    let ok = diffscale::suite::FdFeatures::RandomRelu { dim: 32, seed: 1 }.apply(&vec![0.5; 2 * d], d).unwrap();
    assert_eq!(ok.1, 32);
}
