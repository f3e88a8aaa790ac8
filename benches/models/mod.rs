//! The benchmark's three models, batches, data and training spec, shared by the CPU benchmark
//! (`benches/train_step.rs`) and the GPU check (`tests/cuda.rs`); `benches/torch_reference.py`
//! builds the same models in PyTorch.

use diffscale::compute::dit::{DitBlock, DitConfig};
use diffscale::compute::{MlpConfig, ModelConfig, UnetConfig};
use diffscale::data::{DataSpec, Gmm, GmmSpec, TemplateSpec};
use diffscale::diffusion::{BetaSchedule, PredictionType, Schedule};
use diffscale::train::TrainSpec;

/// The models `torch_reference.py` mirrors, with their batch sizes and data.
pub fn cases() -> Vec<(&'static str, ModelConfig, usize, Gmm)> {
    let images = |size| {
        DataSpec::Templates(TemplateSpec {
            size,
            shapes: vec![diffscale::data::templates::Shape::Square, diffscale::data::templates::Shape::Disk],
            colours: vec![[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]],
            grid: 2,
            scales: vec![0.5],
            noise: 0.1,
        })
        .build()
    };
    let dit = DitConfig {
        depth: 4,
        hidden: 128,
        heads: 4,
        patch: 2,
        input_size: 16,
        in_channels: 3,
        learn_sigma: false,
        num_classes: 6,
        block: DitBlock::AdalnZero,
        mlp_ratio: 4.0,
        mixer_depth: 0,
        mixer_hidden: 0,
        mask_ratio: 0.0,
        layerwise: None,
        experts: None,
    };
    let unet = UnetConfig {
        channels: 32,
        channel_mult: vec![1, 2],
        layers_per_block: 1,
        transformer_depth: vec![0, 1],
        mid_transformer_depth: None,
        cross_attention_dim: None,
        context_tokens: 0,
        heads: 4,
        addition_embed_dim: None,
        num_classes: Some(7),
        sample_size: 16,
        in_channels: 3,
        out_channels: 3,
        norm_groups: 8,
    };
    let mlp = MlpConfig { data_dim: 8, width: 128, depth: 2, time_features: 64, classes: None, cond_dim: None };
    let gmm = GmmSpec { dim: 8, components: 8, classes: 8, radius: 1.0, std: 0.15, seed: 11 }.build();
    vec![
        ("dit", ModelConfig::Dit(dit), 64, images(16)),
        ("unet", ModelConfig::Unet(unet), 64, images(16)),
        ("mlp", ModelConfig::Mlp(mlp), 128, gmm),
    ]
}

pub fn spec(steps: u64, batch: usize) -> TrainSpec {
    TrainSpec {
        steps: Some(steps),
        flop_budget: None,
        batch,
        learning_rate: 1e-4,
        weight_decay: 0.0,
        warmup_fraction: 0.0,
        final_lr_fraction: 1.0,
        ema_fraction: 0.5,
        clip: 1.0,
        label_dropout: 0.1,
        unmasked_fraction: 0.0,
        prediction: PredictionType::Epsilon,
        schedule: Schedule { betas: BetaSchedule::Cosine, train_steps: 1000, zero_terminal_snr: false, float32: false },
        checkpoint_every: 1_000_000,
    }
}
