//! The Fréchet distance at Inception's width: two 2048-d Gaussians (means and covariances, as a
//! pytorch-fid statistics file holds them), the work `diffscale fd --ref A.npz --gen B.npz`
//! does after reading the files. The target is under 10 s on one core.
//!
//! ```text
//! cargo bench --bench fd
//! ```

use criterion::{criterion_group, criterion_main, Criterion};
use diffscale::metrics::{frechet_distance, moments};
use diffscale::seed::Rng;
use std::time::Duration;

/// Moments of `n` seeded samples in `d` dimensions, each coordinate scaled by `scale`.
fn stats(seed: u64, n: usize, d: usize, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let mut r = Rng::new(seed);
    let x: Vec<f64> = (0..n * d).map(|_| scale * r.normal()).collect();
    moments(&x, d)
}

fn bench(c: &mut Criterion) {
    let d = 2048;
    // More samples than features, as real statistics files have (50,000 images): full rank.
    let ((m1, s1), (m2, s2)) = (stats(1, 3 * d, d, 1.0), stats(2, 3 * d, d, 1.05));
    let mut g = c.benchmark_group("fd");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.bench_function("2048 features", |b| b.iter(|| frechet_distance(&m1, &s1, &m2, &s2)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
