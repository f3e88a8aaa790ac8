use super::*;
use crate::compute::MlpConfig;
use crate::data::GmmSpec;
use crate::diffusion::BetaSchedule;
use crate::models::Mlp;
use candle_core::Device;

fn cfg(classes: Option<u64>) -> MlpConfig {
    MlpConfig { data_dim: 4, width: 16, depth: 2, time_features: 8, classes, cond_dim: None }
}

fn data() -> Gmm {
    GmmSpec { dim: 4, components: 4, classes: 2, radius: 1.0, std: 0.2, seed: 3 }.build()
}

fn spec(steps: u64) -> TrainSpec {
    TrainSpec {
        steps: Some(steps),
        flop_budget: None,
        batch: 32,
        learning_rate: 3e-3,
        weight_decay: 0.0,
        warmup_fraction: 0.1,
        final_lr_fraction: 0.1,
        ema_fraction: 0.2,
        clip: 1.0,
        label_dropout: 0.1,
        unmasked_fraction: 0.0,
        prediction: PredictionType::Epsilon,
        schedule: Schedule { betas: BetaSchedule::Cosine, train_steps: 1000, zero_terminal_snr: false, float32: false },
        checkpoint_every: 5,
    }
}

fn bits(ts: &[Tensor]) -> Vec<u32> {
    ts.iter().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).map(f32::to_bits).collect()
}

#[test]
fn training_is_bitwise_deterministic_and_learns() {
    let run = || {
        let m = Mlp::new(&cfg(Some(2)), PredictionType::Epsilon, &Device::Cpu, 1).unwrap();
        let (t, ema) = train(&m, &data(), &spec(300), 9, None).unwrap();
        let err =
            excess_error(crate::models::with_values(&m, &ema).unwrap().as_ref(), &data(), &spec(1).schedule, 512, 4)
                .unwrap();
        (t, bits(&ema), err)
    };
    let (a, b) = (run(), run());
    assert_eq!(a.1, b.1);
    assert_eq!(a.0.steps, 300);
    // An untrained (zero-output) model's excess error is the oracle's whole signal; training
    // must remove a good part of it.
    let untrained = Mlp::new(&cfg(Some(2)), PredictionType::Epsilon, &Device::Cpu, 1).unwrap();
    let before = excess_error(&untrained, &data(), &spec(1).schedule, 512, 4).unwrap();
    assert!(a.2 < 0.7 * before, "trained {} vs untrained {before}", a.2);
}

#[test]
fn a_killed_run_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let fresh = || Mlp::new(&cfg(Some(2)), PredictionType::V, &Device::Cpu, 2).unwrap();
    let mut s = spec(12);
    s.prediction = PredictionType::V;
    let (_, whole) = train(&fresh(), &data(), &s, 4, None).unwrap();
    // Killed after step 7: the checkpoint of step 5 is on disk.
    assert!(train_until(&fresh(), &data(), &s, 4, Some(&ck), Some(7)).is_err());
    assert!(ck.is_file());
    let (t, resumed) = train(&fresh(), &data(), &s, 4, Some(&ck)).unwrap();
    assert_eq!(t.resumed_at, 5);
    assert_eq!(bits(&whole), bits(&resumed));
    assert!(!ck.exists(), "a finished run removes its checkpoint");
}

#[test]
fn a_diverging_run_fails_with_a_reason() {
    let mut s = spec(50);
    s.learning_rate = 0.9;
    s.clip = 1e9;
    let m = Mlp::new(&cfg(None), PredictionType::Epsilon, &Device::Cpu, 1).unwrap();
    // Push the weights far out first so the first steps overflow.
    for (_, v) in &m.params.vars {
        v.set(&(v.as_tensor().ones_like().unwrap() * 1e19).unwrap()).unwrap();
    }
    let e = train(&m, &data(), &s, 1, None).unwrap_err();
    assert!(e.contains("loss became"), "{e}");
}

#[test]
fn learning_rate_schedule_is_tied_to_the_run_length() {
    let s = spec(100);
    assert!(s.learning_rate_at(0, 100) < s.learning_rate_at(9, 100));
    assert!((s.learning_rate_at(9, 100) - 3e-3).abs() < 1e-12);
    assert!((s.learning_rate_at(99, 100) - 3e-4).abs() < 1e-5);
    // Tied to the run's length: the same fraction of any run gets the same rate.
    assert!((s.learning_rate_at(500, 1000) - s.learning_rate_at(50, 100)).abs() < 1e-5);
}

#[test]
fn an_unmasked_fine_tune_counts_its_steps_at_the_unmasked_cost() {
    use crate::compute::dit::{DitBlock, DitConfig};
    use crate::compute::ModelConfig;
    let dit = DitConfig {
        depth: 1,
        hidden: 16,
        heads: 2,
        patch: 2,
        input_size: 4,
        in_channels: 4,
        learn_sigma: false,
        num_classes: 2,
        block: DitBlock::AdalnZero,
        mlp_ratio: 2.0,
        mixer_depth: 1,
        mixer_hidden: 8,
        mask_ratio: 0.75,
        layerwise: None,
        experts: None,
    };
    let cfg = ModelConfig::Dit(dit);
    let images = GmmSpec { dim: 64, components: 2, classes: 2, radius: 1.0, std: 0.2, seed: 1 }.build();
    let mut s = spec(10);
    s.unmasked_fraction = 0.3;
    let model = crate::models::build(&cfg, PredictionType::Epsilon, &Device::Cpu, candle_core::DType::F32, 1).unwrap();
    let (report, _) = train(model.as_ref(), &images, &s, 2, None).unwrap();
    let macs = |c: &ModelConfig| c.count().total().macs.values().sum::<f64>();
    // 7 masked steps, then 3 on every patch.
    let want = 6.0 * 32.0 * (7.0 * macs(&cfg) + 3.0 * macs(&cfg.unmasked()));
    assert!((report.train_flops - want).abs() < 1e-6 * want, "{} vs {want}", report.train_flops);
    assert!(macs(&cfg.unmasked()) > macs(&cfg));
}

/// A DiT on 16×16×3 images whose forward pass, at a batch of 64, is big enough (about 4.8e8
/// MACs) for `train` to split each batch into two parts.
fn split_dit() -> (Box<dyn Network>, Gmm) {
    use crate::compute::dit::DitConfig;
    // DiT-S/2's block at a small width, on 16×16×3 images.
    let named = DitConfig::named("S", 2).expect("a named config");
    let dit = DitConfig {
        depth: 2,
        hidden: 64,
        heads: 4,
        input_size: 16,
        in_channels: 3,
        learn_sigma: false,
        num_classes: 2,
        ..named
    };
    let cfg = crate::compute::ModelConfig::Dit(dit);
    let model = crate::models::build(&cfg, PredictionType::Epsilon, &Device::Cpu, candle_core::DType::F32, 5).unwrap();
    (model, GmmSpec { dim: 768, components: 2, classes: 2, radius: 1.0, std: 0.2, seed: 1 }.build())
}

#[test]
fn a_batch_in_parts_has_the_whole_batch_gradient() {
    let (model, data) = split_dit();
    // Off the zero initialisation of adaLN-Zero, where most gradients vanish.
    let mut r = crate::seed::Rng::new(3);
    for (_, v) in &model.params().vars {
        let noise = crate::ops::cpu_op::testing::randn(v.dims(), &mut r).to_dtype(candle_core::DType::F32).unwrap();
        v.set(&(noise * 0.1).unwrap()).unwrap();
    }
    let (x0, labels) = data.sample(7, 0, 8, None);
    let t: Vec<f64> = (0..8).map(|i| (i * 111) as f64).collect();
    let loss = |rows: std::ops::Range<usize>| {
        let x = rows_tensor(&x0[rows.start * 768..rows.end * 768], 768, &Device::Cpu).unwrap();
        let out = model.forward(&x, &t[rows.clone()], Some(&labels[rows.clone()])).unwrap();
        let (_, g) = gradients(model.as_ref(), &(out - &x).unwrap().sqr().unwrap().mean_all().unwrap()).unwrap();
        g.unwrap()
    };
    let whole = [(1.0, loss(0..8))];
    // Unequal parts, so that the weights (each part's share of the loss terms) matter.
    let split = [(3.0 / 8.0, loss(0..3)), (5.0 / 8.0, loss(3..8))];
    let wrong = [(0.5, split[0].1.clone()), (0.5, split[1].1.clone())];
    let worst = |parts: &[(f64, Vec<Tensor>)]| {
        let mut worst = 0f64;
        for i in 0..whole[0].1.len() {
            let (a, b) = (combined(&whole, i).unwrap(), combined(parts, i).unwrap());
            let scale = a.iter().map(|v| v.abs()).fold(1e-6, f64::max);
            worst = a.iter().zip(&b).map(|(a, b)| (a - b).abs() / scale).fold(worst, f64::max);
        }
        worst
    };
    assert!(worst(&split) < 1e-4, "parts differ from the whole batch by {}", worst(&split));
    // The control: equal weights for unequal parts are visibly wrong.
    assert!(worst(&wrong) > 1e-2, "equal weights differ by only {}", worst(&wrong));
}

#[test]
fn training_in_parts_gives_the_same_bits_on_one_and_two_threads() {
    let mut s = spec(2);
    s.batch = 64;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (model, data) = split_dit();
            assert_eq!(batch_parts(model.as_ref(), s.batch), 2, "the model must be big enough to split");
            bits(&train(model.as_ref(), &data, &s, 3, None).unwrap().1)
        })
    };
    assert!(run(1) == run(2), "the trained weights differ between 1 and 2 threads");
}

#[test]
fn no_noise_level_carries_half_the_headline() {
    let m = Mlp::new(&cfg(Some(2)), PredictionType::Epsilon, &Device::Cpu, 1).unwrap();
    let (_, ema) = train(&m, &data(), &spec(300), 9, None).unwrap();
    let trained = crate::models::with_values(&m, &ema).unwrap();
    let levels = excess_error_levels(trained.as_ref(), &data(), &spec(1).schedule, 1024, 4).unwrap();
    assert_eq!(levels.len(), EVAL_LEVELS);
    let total: f64 = levels.iter().map(LevelError::eps).sum();
    let x0_total: f64 = levels.iter().map(|l| l.x0).sum();
    for l in &levels {
        eprintln!(
            "t {:5} snr {:10.4} x0 {:10.5} eps {:10.5} share eps {:.3} share x0 {:.3}",
            l.t,
            l.snr,
            l.x0,
            l.eps(),
            l.eps() / total,
            l.x0 / x0_total
        );
    }
    let worst = levels.iter().map(|l| l.eps() / total).fold(0.0, f64::max);
    assert!(worst < 0.5, "one level carries {worst:.2} of the headline");
    assert!((headline(&levels) - total / EVAL_LEVELS as f64).abs() < 1e-12);
}
