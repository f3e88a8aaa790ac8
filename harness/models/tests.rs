//! Every trainable model: its parameters and forward MACs equal the analytic count of the
//! config that built it, and every parameter's gradient matches central finite differences (in
//! f64), which catches any op whose gradient candle drops or gets wrong (docs/methods.md §7.1).

use super::*;
use crate::compute::dit::{DitBlock, DitConfig, Experts, LayerScaling};
use crate::compute::{MlpConfig, UnetConfig};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

fn mlp(classes: Option<u64>) -> ModelConfig {
    ModelConfig::Mlp(MlpConfig { data_dim: 4, width: 16, depth: 2, time_features: 8, classes, cond_dim: None })
}

/// A super-resolution MLP: rows [x_t | y] with a 2-value condition.
fn conditioned_mlp() -> ModelConfig {
    ModelConfig::Mlp(MlpConfig {
        data_dim: 4,
        width: 16,
        depth: 2,
        time_features: 8,
        classes: Some(3),
        cond_dim: Some(2),
    })
}

fn dit(block: DitBlock, learn_sigma: bool) -> ModelConfig {
    ModelConfig::Dit(DitConfig {
        depth: 2,
        hidden: 16,
        heads: 2,
        patch: 2,
        input_size: 4,
        in_channels: 3,
        learn_sigma,
        num_classes: 3,
        block,
        mlp_ratio: 2.0,
        mixer_depth: 0,
        mixer_hidden: 0,
        mask_ratio: 0.0,
        layerwise: None,
        experts: None,
    })
}

/// MicroDiT's backbone: widths scaled from the first block to the last, and expert-choice MoE in
/// the middle one of three blocks (with masking, the experts' k follows the kept tokens).
fn microdit(mask_ratio: f64) -> ModelConfig {
    let ModelConfig::Dit(c) = masked(1, mask_ratio) else { unreachable!() };
    ModelConfig::Dit(DitConfig {
        depth: 3,
        heads: 4,
        layerwise: Some(LayerScaling { qkv: [0.5, 1.0], mlp: [0.5, 2.0] }),
        experts: Some(Experts { num: 3, capacity: 2.0, every: 2 }),
        ..c
    })
}

/// A MicroDiT-style DiT: a mixer of width 8 (deferred masking) or none (naive), 8 patches.
fn masked(mixer_depth: u64, mask_ratio: f64) -> ModelConfig {
    let ModelConfig::Dit(c) = dit(DitBlock::AdalnZero, false) else { unreachable!() };
    ModelConfig::Dit(DitConfig { input_size: 8, mixer_depth, mixer_hidden: 8, mask_ratio, ..c })
}

fn unet(channels: u64, attention: bool) -> ModelConfig {
    ModelConfig::Unet(UnetConfig {
        channels,
        channel_mult: vec![1, 2],
        layers_per_block: 1,
        transformer_depth: vec![0, u64::from(attention)],
        mid_transformer_depth: None,
        cross_attention_dim: None,
        context_tokens: 0,
        heads: 2,
        addition_embed_dim: None,
        num_classes: Some(4),
        sample_size: 4,
        in_channels: 3,
        out_channels: 3,
        norm_groups: 4,
    })
}

fn all_configs() -> Vec<ModelConfig> {
    let mut v = vec![mlp(None), mlp(Some(3)), conditioned_mlp()];
    for b in [DitBlock::AdalnZero, DitBlock::Adaln, DitBlock::CrossAttention, DitBlock::InContext] {
        v.push(dit(b, false));
    }
    v.push(dit(DitBlock::AdalnZero, true));
    v.push(microdit(0.0));
    v.extend([unet(8, false), unet(8, true)]);
    v
}

fn labels(net: &dyn Network, n: usize) -> Option<Vec<usize>> {
    net.classes().map(|k| (0..n).map(|i| i % (k + 1)).collect())
}

#[test]
fn parameters_and_macs_equal_the_analytic_count() {
    for cfg in all_configs() {
        let net = build(&cfg, PredictionType::Epsilon, &Device::Cpu, DType::F32, 1).unwrap();
        let analytic = cfg.count().total();
        assert_eq!(net.params().count() as u64, analytic.params, "{cfg:?}");
        let rows = 5;
        let x = Tensor::zeros((rows, cfg.data_dim() + cfg.cond_dim()), DType::F32, &Device::Cpu).unwrap();
        let out = net.forward(&x, &[1.0; 5], labels(net.as_ref(), rows).as_deref()).unwrap();
        assert_eq!(out.dims(), &[rows, cfg.data_dim()]);
        let per_sample = net.macs().take() / rows as f64;
        assert_eq!(per_sample, analytic.macs.values().sum::<f64>(), "{cfg:?}");
    }
}

/// d loss / d θ_i by central differences at three entries of every parameter, against backward.
fn check_gradients(cfg: &ModelConfig) {
    let dev = Device::Cpu;
    let net = build(cfg, PredictionType::Epsilon, &dev, DType::F64, 7).unwrap();
    // Zero-initialised layers (adaLN-Zero, output layers) would hide gradients through them.
    let mut r = Rng::new(5);
    let mut noise = |n: usize, s: f64| (0..n).map(|_| s * r.normal()).collect::<Vec<f64>>();
    for (_, v) in &net.params().vars {
        v.set(&Tensor::from_vec(noise(v.elem_count(), 0.3), v.shape(), &dev).unwrap()).unwrap();
    }
    let (rows, d, c) = (3, cfg.data_dim(), cfg.cond_dim());
    let x = Tensor::from_vec(noise(rows * (d + c), 1.0), (rows, d + c), &dev).unwrap();
    let y = Tensor::from_vec(noise(rows * d, 1.0), (rows, d), &dev).unwrap();
    let lab = labels(net.as_ref(), rows);
    let loss = |net: &dyn Network| {
        let out = net.forward(&x, &[10.0, 500.0, 990.0], lab.as_deref()).unwrap();
        out.sub(&y).unwrap().sqr().unwrap().sum_all().unwrap()
    };
    let grads = loss(net.as_ref()).backward().unwrap();
    for (name, v) in &net.params().vars {
        let g = grads.get(v).unwrap_or_else(|| panic!("{cfg:?}: no gradient reached `{name}`"));
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = v.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in [0, base.len() / 2, base.len() - 1] {
            let at = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                v.set(&Tensor::from_vec(p, v.shape(), &dev).unwrap()).unwrap();
                loss(net.as_ref()).to_scalar::<f64>().unwrap()
            };
            let h = 1e-6;
            let fd = (at(h) - at(-h)) / (2.0 * h);
            v.set(&Tensor::from_vec(base.clone(), v.shape(), &dev).unwrap()).unwrap();
            assert!(
                (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                "{name}[{i}]: finite difference {fd}, backward {} ({cfg:?})",
                g[i]
            );
        }
    }
}

#[test]
fn mlp_gradients_match_finite_differences() {
    check_gradients(&mlp(Some(2)));
    check_gradients(&conditioned_mlp());
}

#[test]
fn a_conditioned_mlp_starts_as_its_pretrained_self() {
    // Fine-tuning for super-resolution adds the condition's input layer at zero: with every
    // other weight copied, the new model ignores y until it trains.
    let dev = Device::Cpu;
    let base = build(&mlp(Some(3)), PredictionType::Epsilon, &dev, DType::F32, 3).unwrap();
    let tuned = build(&conditioned_mlp(), PredictionType::Epsilon, &dev, DType::F32, 4).unwrap();
    let mut r = Rng::new(2);
    for (name, v) in &tuned.params().vars {
        if let Some((_, b)) = base.params().vars.iter().find(|(n, _)| n == name) {
            v.set(b.as_tensor()).unwrap();
        } else {
            assert!(name.starts_with("cond."), "only the condition's layer is new: {name}");
        }
    }
    let x: Vec<f32> = (0..3 * 4).map(|_| r.normal() as f32).collect();
    let y: Vec<f32> = (0..3 * 2).map(|_| r.normal() as f32).collect();
    let joined: Vec<f32> = x.chunks(4).zip(y.chunks(2)).flat_map(|(a, b)| [a, b].concat()).collect();
    let t = [5.0, 300.0, 900.0];
    let a = base.forward(&Tensor::from_vec(x, (3, 4), &dev).unwrap(), &t, Some(&[0, 1, 2])).unwrap();
    let b = tuned.forward(&Tensor::from_vec(joined, (3, 6), &dev).unwrap(), &t, Some(&[0, 1, 2])).unwrap();
    assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
}

#[test]
fn dit_gradients_match_finite_differences_for_every_block_design() {
    for b in [DitBlock::AdalnZero, DitBlock::Adaln, DitBlock::CrossAttention, DitBlock::InContext] {
        check_gradients(&dit(b, true));
    }
}

#[test]
fn unet_gradients_match_finite_differences() {
    check_gradients(&unet(4, true));
}

#[test]
fn composed_layers_match_their_definitions() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[1.0f64, 2.0, 4.0], [0.0, 0.0, 3.0]], &dev).unwrap();
    let s = crate::ops::softmax(&x).unwrap().to_vec2::<f64>().unwrap();
    let e: f64 = [1.0f64, 2.0, 4.0].iter().map(|v| v.exp()).sum();
    assert!((s[0][2] - 4f64.exp() / e).abs() < 1e-12);
    let n = crate::ops::layer_norm(&x, 0.0).unwrap().to_vec2::<f64>().unwrap();
    let (m, v) =
        (7.0 / 3.0, ((1.0f64 - 7.0 / 3.0).powi(2) + (2.0f64 - 7.0 / 3.0).powi(2) + (4.0f64 - 7.0 / 3.0).powi(2)) / 3.0);
    assert!((n[0][0] - (1.0 - m) / v.sqrt()).abs() < 1e-12);
    // Nearest upsampling copies each pixel into a 2×2 block.
    let img = Tensor::new(&[1.0f64, 2.0, 3.0, 4.0], &dev).unwrap().reshape((1, 1, 2, 2)).unwrap();
    let up = crate::ops::upsample2x(&img).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(up, vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0]);
}

#[test]
fn masked_training_counts_the_kept_patches_and_scores_only_their_pixels() {
    for cfg in [masked(1, 0.75), masked(0, 0.75), masked(1, 0.5), microdit(0.5)] {
        let ModelConfig::Dit(c) = &cfg else { unreachable!() };
        let ratio = c.mask_ratio;
        let net = build(&cfg, PredictionType::Epsilon, &Device::Cpu, DType::F32, 1).unwrap();
        assert_eq!(net.params().count() as u64, cfg.count().total().params, "{cfg:?}");
        let rows = 3;
        let x = Tensor::zeros((rows, cfg.data_dim() + cfg.cond_dim()), DType::F32, &Device::Cpu).unwrap();
        let (pred, seen) = net.forward_train(&x, &[1.0; 3], labels(net.as_ref(), rows).as_deref(), 9).unwrap();
        // The analytic count is of the masked training pass.
        let per_sample = net.macs().take() / rows as f64;
        assert_eq!(per_sample, cfg.count().total().macs.values().sum::<f64>(), "{cfg:?}");
        // 16 patches of 2×2×3: a kept fraction (1 − m) of every sample's 192 values, all distinct.
        let idx = seen.unwrap().to_vec1::<u32>().unwrap();
        assert_eq!(pred.dims(), &[idx.len()]);
        assert_eq!(idx.len(), rows * ((1.0 - ratio) * 192.0) as usize);
        let mut unique = idx.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), idx.len());
        assert!(idx.iter().all(|i| (*i as usize) < rows * 192));
    }
}

#[test]
fn masked_dit_gradients_match_finite_differences() {
    // The mixer and its projection through the full forward pass …
    check_gradients(&masked(1, 0.75));
    // … and through the masked training pass (the gather of kept patches).
    let cfg = masked(1, 0.5);
    let dev = Device::Cpu;
    let net = build(&cfg, PredictionType::Epsilon, &dev, DType::F64, 7).unwrap();
    let mut r = Rng::new(5);
    for (_, v) in &net.params().vars {
        let vals: Vec<f64> = (0..v.elem_count()).map(|_| 0.3 * r.normal()).collect();
        v.set(&Tensor::from_vec(vals, v.shape(), &dev).unwrap()).unwrap();
    }
    let x = Tensor::from_vec((0..2 * 192).map(|_| r.normal()).collect::<Vec<f64>>(), (2, 192), &dev).unwrap();
    let loss = |net: &dyn Network| {
        let (pred, _) = net.forward_train(&x, &[10.0, 700.0], Some(&[0, 1]), 3).unwrap();
        pred.sqr().unwrap().sum_all().unwrap()
    };
    let grads = loss(net.as_ref()).backward().unwrap();
    for (name, v) in net.params().vars.iter().filter(|(n, _)| n.starts_with("mixer") || n.starts_with("patch")) {
        let g = grads.get(v).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = v.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let i = base.len() / 2;
        let at = |delta: f64| {
            let mut p = base.clone();
            p[i] += delta;
            v.set(&Tensor::from_vec(p, v.shape(), &dev).unwrap()).unwrap();
            loss(net.as_ref()).to_scalar::<f64>().unwrap()
        };
        let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
        v.set(&Tensor::from_vec(base.clone(), v.shape(), &dev).unwrap()).unwrap();
        assert!((fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()), "{name}: {fd} vs {}", g[i]);
    }
}

#[test]
fn microdit_backbone_gradients_match_finite_differences() {
    // Layer-wise widths and the experts' FFNs, router and gates through the full forward pass.
    check_gradients(&microdit(0.0));
}

#[test]
fn one_expert_taking_every_token_is_a_dense_ffn() {
    // E = 1, capacity 1: the expert takes all T tokens with weight softmax(·) = 1, so the block
    // is the dense FFN with the expert's weights and zero biases.
    let ModelConfig::Dit(c) = dit(DitBlock::AdalnZero, false) else { unreachable!() };
    let moe_cfg =
        ModelConfig::Dit(DitConfig { experts: Some(Experts { num: 1, capacity: 1.0, every: 1 }), ..c.clone() });
    let dev = Device::Cpu;
    let moe = build(&moe_cfg, PredictionType::Epsilon, &dev, DType::F64, 3).unwrap();
    let dense = build(&ModelConfig::Dit(c), PredictionType::Epsilon, &dev, DType::F64, 4).unwrap();
    let mut r = Rng::new(8);
    let mut values: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, v) in &moe.params().vars {
        let vals: Vec<f64> = (0..v.elem_count()).map(|_| 0.3 * r.normal()).collect();
        let t = Tensor::from_vec(vals, v.shape(), &dev).unwrap();
        v.set(&t).unwrap();
        values.insert(name.replace(".expert0.fc1", ".fc1.w").replace(".expert0.fc2", ".fc2.w"), t);
    }
    for (name, v) in &dense.params().vars {
        match values.get(name) {
            Some(t) => v.set(t).unwrap(),
            None => {
                assert!(name.starts_with("b0.fc") && name.ends_with(".b"), "{name} has no counterpart");
                v.set(&v.as_tensor().zeros_like().unwrap()).unwrap();
            }
        }
    }
    let x = Tensor::from_vec((0..2 * 48).map(|_| r.normal()).collect::<Vec<f64>>(), (2, 48), &dev).unwrap();
    let a = moe.forward(&x, &[30.0, 600.0], Some(&[0, 2])).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = dense.forward(&x, &[30.0, 600.0], Some(&[0, 2])).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let worst = a.iter().zip(&b).map(|(u, v)| (u - v).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-12, "MoE with one all-taking expert differs from the dense FFN by {worst}");
}

/// The fused CPU ops split work over samples and sum in an order fixed by the shapes, so the
/// loss and every gradient are the same bits on one thread and on two (a batch large enough
/// that every op's parallel path runs on more than one chunk).
#[test]
fn gradients_are_the_same_bits_on_one_and_two_threads() {
    let run = |threads: usize, cfg: &ModelConfig| -> Vec<Vec<u32>> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let dev = Device::Cpu;
            let net = build(cfg, PredictionType::Epsilon, &dev, DType::F32, 3).unwrap();
            let mut r = Rng::new(8);
            for (_, v) in &net.params().vars {
                let w: Vec<f32> = (0..v.elem_count()).map(|_| 0.3 * r.normal() as f32).collect();
                v.set(&Tensor::from_vec(w, v.shape(), &dev).unwrap()).unwrap();
            }
            let (rows, d) = (37, cfg.data_dim());
            let x: Vec<f32> = (0..rows * d).map(|_| r.normal() as f32).collect();
            let x = Tensor::from_vec(x, (rows, d), &dev).unwrap();
            let t: Vec<f64> = (0..rows).map(|i| (i * 27 % 1000) as f64).collect();
            let loss =
                net.forward(&x, &t, labels(net.as_ref(), rows).as_deref()).unwrap().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let mut bits = vec![vec![loss.to_scalar::<f32>().unwrap().to_bits()]];
            for (_, v) in &net.params().vars {
                let g = grads.get(v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                bits.push(g.iter().map(|v| v.to_bits()).collect());
            }
            bits
        })
    };
    for cfg in [unet(8, true), dit(DitBlock::AdalnZero, false)] {
        assert!(run(1, &cfg) == run(2, &cfg), "{cfg:?}");
    }
}

/// ‖a − b‖ / ‖b‖ over all elements, in f64.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let v = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let (a, b) = (v(a), v(b));
    let norm = b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt() / norm
}

/// Mixed precision (bf16 activations over f32 parameters) takes the ops' compositions, the path
/// a GPU runs: every model's output (to 5%, relative norm) and every parameter's gradient must
/// stay within bf16's rounding of the f32 run's, and the gradients must arrive in f32 (the master
/// weights' dtype). A model whose ops dropped the cast, or a gradient, fails here.
#[test]
fn mixed_precision_tracks_f32_and_keeps_f32_gradients() {
    let dev = Device::Cpu;
    let mut configs = all_configs();
    configs.push(masked(1, 0.5));
    for cfg in configs {
        // candle's CPU conv2d has no bf16 GEMM ("unsupported dtype BF16 for op matmul"): the
        // UNet's mixed precision is checked on the GPU only (tests/cuda.rs).
        if matches!(cfg, ModelConfig::Unet(_)) {
            continue;
        }
        let full = build(&cfg, PredictionType::Epsilon, &dev, DType::F32, 3).unwrap();
        let mixed = build(&cfg, PredictionType::Epsilon, &dev, Precision::Bf16.dtypes(), 3).unwrap();
        assert_eq!(mixed.params().dtype(), DType::F32);
        let mut r = Rng::new(11);
        for ((_, a), (_, b)) in full.params().vars.iter().zip(&mixed.params().vars) {
            let noise: Vec<f32> = (0..a.elem_count()).map(|_| (0.3 * r.normal()) as f32).collect();
            let t = Tensor::from_vec(noise, a.shape(), &dev).unwrap();
            a.set(&t).unwrap();
            b.set(&t).unwrap();
        }
        let (rows, d) = (4, cfg.data_dim() + cfg.cond_dim());
        // Inputs exactly representable in bf16, so both runs see the same data.
        let x =
            Tensor::from_vec((0..rows * d).map(|_| r.normal() as f32).collect::<Vec<_>>(), (rows, d), &dev).unwrap();
        let x = x.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
        let lab = labels(full.as_ref(), rows);
        let run = |net: &dyn Network| {
            let out = net.forward(&x, &[10.0, 300.0, 600.0, 990.0], lab.as_deref()).unwrap();
            let grads = out.to_dtype(DType::F32).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let g: Vec<Tensor> = net
                .params()
                .vars
                .iter()
                .map(|(n, v)| grads.get(v).unwrap_or_else(|| panic!("{cfg:?}: no gradient reached `{n}`")).clone())
                .collect();
            (out, g)
        };
        let ((y32, g32), (y16, g16)) = (run(full.as_ref()), run(mixed.as_ref()));
        assert_eq!(y16.dtype(), DType::BF16, "{cfg:?}: the activations are not bf16");
        // Expert-choice routing takes the top-k tokens by router probability: bf16 rounding can
        // change which, a discontinuity no tolerance covers, so MoE is held to the dtypes only.
        let routed = matches!(&cfg, ModelConfig::Dit(c) if c.experts.is_some());
        assert!(routed || rel_diff(&y16, &y32) < 0.05, "{cfg:?}: output off by {}", rel_diff(&y16, &y32));
        for (((name, _), a), b) in full.params().vars.iter().zip(&g16).zip(&g32) {
            assert_eq!(a.dtype(), DType::F32, "{name}: gradient not in the master dtype");
            if routed {
                continue;
            }
            let e = rel_diff(a, b);
            // Most gradients agree to ~2%; a sum with much cancellation (DiT's patch embedding,
            // Σ x·∂y over random inputs) to ~14%. A dropped cast or a wrong composition is off by
            // ~100%.
            assert!(e < 0.3, "{cfg:?}: gradient of `{name}` off by {e}");
        }
        // Control: the same bound fails a model whose parameters are off by 20%.
        for (_, v) in &mixed.params().vars {
            v.set(&(v.as_tensor() * 1.2).unwrap()).unwrap();
        }
        assert!(routed || rel_diff(&run(mixed.as_ref()).0, &y32) > 0.05, "{cfg:?}: the comparison is blind");
    }
}
