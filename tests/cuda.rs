//! The GPU path, in a `--features cuda` build on a machine with an NVIDIA GPU (ignored otherwise):
//!
//! ```text
//! cargo test --release --features cuda --test cuda -- --ignored --nocapture
//! ```
//!
//! Off the CPU the models run candle's own kernels and the compositions that the CPU ops
//! replace (`harness/ops/mod.rs`). Each of the benchmark's three models is built from one seed on
//! the CPU and on the GPU; the forward values and every parameter gradient of Σ up·f(x) on one
//! batch must agree to 1e-3 of their scale, and a short training run on the GPU prints its
//! samples/s. A gradient that a composition dropped would show here as a mismatch.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use diffscale::compute::dit::{DitBlock, Experts, LayerScaling};
use diffscale::compute::ModelConfig;
use diffscale::diffusion::PredictionType;
use diffscale::models::{build, Network, Precision};
use diffscale::train::train;
use models::{cases, spec};
use std::path::Path;

#[path = "../benches/models/mod.rs"]
mod models;

/// max |a − b| / max(|b|, 1e-12), over all elements.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) as f64 / scale as f64
}

/// The forward output and the gradients (in parameter order) of Σ up·f(x).
fn run(net: &dyn Network, x: &[f32], dim: usize, t: &[f64], up: &[f32]) -> (Tensor, Vec<Tensor>) {
    let dev = net.params().device().clone();
    let xs = Tensor::from_slice(x, (t.len(), dim), &dev).unwrap();
    let labels: Option<Vec<usize>> = net.classes().map(|k| (0..t.len()).map(|i| i % k).collect());
    let y = net.forward(&xs, t, labels.as_deref()).unwrap();
    let ups = Tensor::from_slice(up, y.dims(), &dev).unwrap();
    let grads = (&y * &ups).unwrap().sum_all().unwrap().backward().unwrap();
    let g =
        net.params().vars.iter().map(|(_, v)| grads.get(v).expect("every parameter has a gradient").clone()).collect();
    (y, g)
}

#[test]
#[ignore]
fn the_gpu_agrees_with_the_cpu_and_trains() {
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    for (name, cfg, batch, data) in cases() {
        let cpu_net = build(&cfg, PredictionType::Epsilon, &Device::Cpu, DType::F32, 1).unwrap();
        let gpu_net = build(&cfg, PredictionType::Epsilon, &gpu, DType::F32, 1).unwrap();
        // Zero-initialised output layers would make the output 0 and every inner gradient 0:
        // move every parameter off its initial value, the same way on both devices.
        for (i, ((_, c), (_, g))) in cpu_net.params().vars.iter().zip(&gpu_net.params().vars).enumerate() {
            let n = c.elem_count();
            let noise: Vec<f32> = (0..n).map(|j| (((i * 31 + j) * 7919 % 2000) as f32 / 1000.0 - 1.0) * 0.1).collect();
            let v = (c.as_tensor() + Tensor::from_vec(noise, c.dims(), &Device::Cpu).unwrap()).unwrap();
            c.set(&v).unwrap();
            g.set(&v.to_device(&gpu).unwrap()).unwrap();
        }
        let dim = cfg.data_dim();
        let x: Vec<f32> = (0..batch * dim).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let t: Vec<f64> = (0..batch).map(|i| (i * 997 % 1000) as f64).collect();
        let up: Vec<f32> = (0..batch * dim).map(|i| ((i * 104729 % 997) as f32 / 498.5) - 1.0).collect();
        let (yc, gc) = run(cpu_net.as_ref(), &x, dim, &t, &up);
        let (yg, gg) = run(gpu_net.as_ref(), &x, dim, &t, &up);
        let fwd = rel_diff(&yg, &yc);
        let worst = gg.iter().zip(&gc).map(|(g, c)| rel_diff(g, c)).fold(0f64, f64::max);
        let zero_grads =
            gc.iter().filter(|g| g.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() == 0.0).count();
        println!("{name}: forward rel. diff {fwd:.2e}, worst parameter gradient rel. diff {worst:.2e} ({} tensors, {zero_grads} all zero)", gc.len());
        assert!(
            yc.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0,
            "{name}: the output is all zero"
        );
        assert!(zero_grads * 10 < gc.len(), "{name}: too many zero gradients to compare");
        assert!(fwd < 1e-3 && worst < 1e-3, "{name}: the GPU disagrees with the CPU");
        // The control: the same comparison against another batch fails.
        let shifted: Vec<f32> = x.iter().map(|v| v + 0.5).collect();
        let (other, _) = run(cpu_net.as_ref(), &shifted, dim, &t, &up);
        assert!(rel_diff(&yg, &other) > 1e-3, "{name}: the comparison cannot tell batches apart");
        let steps = 20u64;
        train(gpu_net.as_ref(), &data, &spec(2, batch), 1, None).unwrap();
        let start = std::time::Instant::now();
        train(gpu_net.as_ref(), &data, &spec(steps, batch), 1, None).unwrap();
        let s = start.elapsed().as_secs_f64();
        println!(
            "{name}: train {:.0} samples/s on the GPU ({steps} steps of {batch})",
            (steps as usize * batch) as f64 / s
        );
    }
}

/// Every DiT block design, MicroDiT's backbone (layer-wise widths, expert-choice MoE) and
/// masked training, beside the benchmark's three models: each built on the CPU and the GPU from
/// one seed must agree (forward and every gradient) to 1e-3; in bf16 mixed precision on the GPU,
/// within bf16's rounding of the CPU's f32 (5%, relative norm; MoE routing excepted).
#[test]
#[ignore]
fn every_family_and_design_agrees_with_the_cpu_in_f32_and_bf16() {
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let (_, base, _, _) = cases().into_iter().find(|c| c.0 == "dit").expect("the benchmark DiT");
    let ModelConfig::Dit(dit) = base.clone() else { unreachable!() };
    let mut configs: Vec<(String, ModelConfig)> = cases().into_iter().map(|(n, c, _, _)| (n.to_string(), c)).collect();
    for block in [DitBlock::Adaln, DitBlock::CrossAttention, DitBlock::InContext] {
        configs.push((
            format!("dit {block:?}"),
            ModelConfig::Dit(diffscale::compute::dit::DitConfig { block, ..dit.clone() }),
        ));
    }
    let micro = diffscale::compute::dit::DitConfig {
        mixer_depth: 1,
        mixer_hidden: 64,
        mask_ratio: 0.75,
        layerwise: Some(LayerScaling { qkv: [0.5, 1.0], mlp: [0.5, 4.0] }),
        experts: Some(Experts { num: 4, capacity: 2.0, every: 2 }),
        ..dit.clone()
    };
    configs.push(("microdit (masked, MoE)".into(), ModelConfig::Dit(micro)));
    let batch = 16;
    for (name, cfg) in configs {
        let routed = matches!(&cfg, ModelConfig::Dit(c) if c.experts.is_some());
        let dim = cfg.data_dim();
        let x: Vec<f32> = (0..batch * dim).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let t: Vec<f64> = (0..batch).map(|i| (i * 997 % 1000) as f64).collect();
        let mut outs = vec![];
        for (dev, precision) in [(&Device::Cpu, Precision::F32), (&gpu, Precision::F32), (&gpu, Precision::Bf16)] {
            let net = build(&cfg, PredictionType::Epsilon, dev, precision.dtypes(), 1).unwrap();
            for (i, (_, v)) in net.params().vars.iter().enumerate() {
                let n = v.elem_count();
                let noise: Vec<f32> =
                    (0..n).map(|j| (((i * 31 + j) * 7919 % 2000) as f32 / 1000.0 - 1.0) * 0.1).collect();
                v.set(&(v.as_tensor() + Tensor::from_vec(noise, v.dims(), dev).unwrap()).unwrap()).unwrap();
            }
            let xs = Tensor::from_slice(&x, (batch, dim), dev).unwrap();
            let labels: Option<Vec<usize>> = net.classes().map(|k| (0..batch).map(|i| i % k).collect());
            // Masked models through their training pass (the masks come from the seed, on the host).
            let (y, _) = net.forward_train(&xs, &t, labels.as_deref(), 5).unwrap();
            let y = y.to_dtype(DType::F32).unwrap();
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let g: Vec<Tensor> = net
                .params()
                .vars
                .iter()
                .map(|(n, v)| grads.get(v).unwrap_or_else(|| panic!("{name}: no gradient for {n}")).clone())
                .collect();
            assert!(g.iter().all(|g| g.dtype() == DType::F32), "{name}: gradients not in f32");
            outs.push((y, g));
        }
        let fwd32 = rel_diff(&outs[1].0, &outs[0].0);
        let grad32 = outs[1].1.iter().zip(&outs[0].1).map(|(a, b)| rel_diff(a, b)).fold(0f64, f64::max);
        let fwd16 = rel_diff(&outs[2].0, &outs[0].0);
        println!("{name}: f32 forward {fwd32:.2e}, worst gradient {grad32:.2e}; bf16 forward {fwd16:.2e}");
        if !routed {
            assert!(fwd32 < 1e-3 && grad32 < 1e-3, "{name}: the GPU disagrees with the CPU in f32");
        }
        assert!(routed || fwd16 < 5e-2, "{name}: bf16 mixed precision is off by {fwd16:.2e}");
    }
}

/// One short claim end to end, on the GPU and on the CPU: the same cases, whose values agree
/// within 10% (training from the same initialisation on the same batches, 30 steps; the GPU's
/// sums run in other orders, so not bitwise). Prints the largest difference.
#[test]
#[ignore]
fn a_claim_run_on_the_gpu_matches_the_cpu_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = |device: &str| {
        let out = dir.path().join(device.replace(':', "-"));
        // DIFFSCALE_BIN: the binary on a GPU machine the tests were carried to.
        let bin = std::env::var("DIFFSCALE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_diffscale").into());
        let status = std::process::Command::new(bin)
            .args(["run", "suites/dit2023.yaml", "--claim", "dit2023/reduced-block-design", "--profile", "smoke"])
            .args(["--device", device, "--out"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.code().is_some_and(|c| c <= 1), "{device}: {status}");
        values(&out)
    };
    let (gpu, cpu) = (run("cuda:0"), run("cpu"));
    assert_eq!(gpu.len(), cpu.len(), "the same cases on both devices");
    let mut worst = (0f64, String::new());
    for ((case, g), (_, c)) in gpu.iter().zip(&cpu) {
        for (k, gv) in g {
            let cv = c[k];
            let d = (gv - cv).abs() / cv.abs().max(1e-12);
            if d > worst.0 {
                worst = (d, format!("{case} {k}: gpu {gv}, cpu {cv}"));
            }
        }
    }
    println!("largest GPU–CPU difference: {:.2e} ({})", worst.0, worst.1);
    assert!(worst.0 < 0.1, "{}", worst.1);
}

/// Each case's values by case id.
fn values(dir: &Path) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>> {
    std::fs::read_dir(dir.join("cases"))
        .unwrap()
        .flatten()
        .map(|e| {
            let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            let v = r["values"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect();
            (r["case_id"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// The GPU throughput table of benches/side_by_side_gpu.sh: training and forward samples/s of
/// DiT-S/2 and DiT-B/2 at 32×32 (batch 64 and 256) and of the benchmark's DiT, UNet and MLP at
/// batch 256, in the precision DIFFSCALE_PRECISION names (f32 by default; bf16 is mixed
/// precision), with the same engine the runner uses (`train::train`: host batches, AdamW, clip,
/// EMA). One line per model, in the format of benches/torch_reference.py. A model that does not
/// fit prints `out of memory` and the table goes on.
#[test]
#[ignore]
fn gpu_throughput() {
    use diffscale::compute::dit::DitConfig;
    use diffscale::data::templates::{Shape, TemplateSpec};
    use diffscale::data::DataSpec;
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    let precision = std::env::var("DIFFSCALE_PRECISION").ok().and_then(|p| Precision::parse(&p)).unwrap_or_default();
    let steps: u64 = std::env::var("DIFFSCALE_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let images = |size| {
        DataSpec::Templates(TemplateSpec {
            size,
            shapes: vec![Shape::Square, Shape::Disk],
            colours: vec![[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]],
            grid: 2,
            scales: vec![0.5],
            noise: 0.1,
        })
        .build()
    };
    let (_, base, _, _) = cases().into_iter().find(|c| c.0 == "dit").expect("the benchmark DiT");
    let ModelConfig::Dit(dit) = base else { unreachable!() };
    let big =
        |depth, hidden, heads| ModelConfig::Dit(DitConfig { depth, hidden, heads, input_size: 32, ..dit.clone() });
    let mut table: Vec<(&str, ModelConfig, usize, diffscale::data::Gmm)> = vec![];
    for batch in [64, 256] {
        table.push(("dit-s2", big(12, 384, 6), batch, images(32)));
        table.push(("dit-b2", big(12, 768, 12), batch, images(32)));
    }
    for (name, cfg, _, data) in cases() {
        table.push((name, cfg, 256, data));
    }
    println!("candle {}, cuda:0, {}", diffscale::run::record::CANDLE_VERSION, precision.name());
    for (name, cfg, batch, data) in table {
        let net = build(&cfg, PredictionType::Epsilon, &gpu, precision.dtypes(), 1).unwrap();
        let params = net.params().count();
        let measured = (|| -> Result<(f64, f64), String> {
            train(net.as_ref(), &data, &spec(3, batch), 1, None)?;
            let start = std::time::Instant::now();
            train(net.as_ref(), &data, &spec(steps, batch), 2, None)?;
            let train_rate = (steps as usize * batch) as f64 / start.elapsed().as_secs_f64();
            let dim = cfg.data_dim();
            let x = Tensor::zeros((batch, dim), DType::F32, &gpu).map_err(|e| e.to_string())?;
            let t = vec![500.0; batch];
            let labels: Option<Vec<usize>> = net.classes().map(|k| (0..batch).map(|i| i % k).collect());
            let fwd = || {
                net.forward(&x, &t, labels.as_deref())
                    .and_then(|y| y.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>())
            };
            fwd().map_err(|e| e.to_string())?;
            let start = std::time::Instant::now();
            for _ in 0..steps {
                fwd().map_err(|e| e.to_string())?;
            }
            Ok((train_rate, (steps as usize * batch) as f64 / start.elapsed().as_secs_f64()))
        })();
        match measured {
            Ok((tr, fw)) => println!(
                "{name:6} batch {batch:4} params {params:>11}  train {tr:9.1} samples/s  forward {fw:9.1} samples/s"
            ),
            Err(e) if e.to_lowercase().contains("out of memory") => {
                println!("{name:6} batch {batch:4} params {params:>11}  out of memory")
            }
            Err(e) => panic!("{name} at batch {batch}: {e}"),
        }
    }
}
