//! One training step and one forward pass of each trainable family, on the CPU.
//!
//! Criterion reports time per iteration and throughput in samples/s (elements = samples). The
//! benchmark id carries the analytic FLOPs of the iteration, so achieved GFLOP/s is that number
//! divided by the reported time: a training step costs 3 × forward FLOPs (forward, and a
//! backward of about twice the forward), FLOPs = 2 × MACs.
//!
//! `RAYON_NUM_THREADS` sets candle's threads (1 and 2 are the numbers to compare with
//! `benches/torch_reference.py`, which builds the same three models in PyTorch):
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench train_step
//! python3 benches/torch_reference.py --threads 1
//! ```

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diffscale::diffusion::PredictionType;
use diffscale::models::build;
use diffscale::train::train;
use models::{cases, spec};

mod models;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    diffscale::keep_freed_memory();
    diffscale::serial_candle_elementwise();
    let dev = Device::Cpu;
    // candle's own 512³ f32 matmul: the yardstick for the models' achieved GFLOP/s (issue 6
    // asks the DiT step for at least 35% of it).
    let (a, b) = (
        Tensor::randn(0f32, 1.0, (512, 512), &dev).expect("a"),
        Tensor::randn(0f32, 1.0, (512, 512), &dev).expect("b"),
    );
    let mut g = c.benchmark_group("matmul");
    g.bench_function(BenchmarkId::from_parameter("512x512x512/0.268 GFLOP"), |bench| {
        bench.iter(|| a.matmul(&b).expect("matmul"))
    });
    g.finish();
    for (name, cfg, batch, data) in cases() {
        let net = build(&cfg, PredictionType::Epsilon, &dev, DType::F32, 1).expect("builds");
        let fwd_flops = 2.0 * net.forward_macs();
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        // A run of 5 steps per iteration amortises the optimizer's set-up (moments, EMA copy).
        let steps = 5u64;
        g.throughput(Throughput::Elements(batch as u64 * steps));
        let id = format!(
            "train_5_steps/{} params/{:.3} GFLOP",
            net.params().count(),
            3.0 * fwd_flops * (batch as f64 * steps as f64) / 1e9
        );
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| train(net.as_ref(), &data, &spec(steps, batch), 1, None).expect("trains"))
        });
        let x = Tensor::randn(0f32, 1.0, (batch, cfg.data_dim()), &dev).expect("input");
        let t: Vec<f64> = (0..batch).map(|i| (i * 997 % 1000) as f64).collect();
        let labels: Option<Vec<usize>> = net.classes().map(|k| (0..batch).map(|i| i % k).collect());
        g.throughput(Throughput::Elements(batch as u64));
        let id = format!("forward/{:.3} GFLOP", fwd_flops * batch as f64 / 1e9);
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| net.forward(&x, &t, labels.as_deref()).expect("forward"))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
