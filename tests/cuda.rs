//! The GPU path, in a `--features cuda` build on a machine with an NVIDIA GPU (ignored otherwise):
//!
//! ```text
//! cargo test --release --features cuda --test cuda -- --ignored --nocapture
//! ```
//!
//! Off the CPU the models run candle's own kernels and the compositions that the CPU ops
//! replace (`models/layers.rs`). Each of the benchmark's three models is built from one seed on
//! the CPU and on the GPU; the forward values and every parameter gradient of Σ up·f(x) on one
//! batch must agree to 1e-3 of their scale, and a short training run on the GPU prints its
//! samples/s. A gradient that a composition dropped would show here as a mismatch.
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Tensor};
use diffscale::diffusion::PredictionType;
use diffscale::models::{build, Network};
use diffscale::train::train;
use models::{cases, spec};

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
