//! What a planned run will ask of its device, from the configs alone (no model is built): the
//! training steps and FLOPs of every case, its sampling and evaluation passes, and from those an
//! estimate of the wall time on a device with a stated per-step overhead and throughput.
//! `diffscale run --dry-run` prints it; the `gpu` profile is sized with it.
//!
//! The time model: seconds = steps × per-step overhead + calls × per-call overhead + FLOPs / rate,
//! over the lanes (cases at once). The overheads are what a step or a call costs whatever its
//! size (kernel launches, the autograd's bookkeeping); on a GPU they grow with the model's op
//! count, so each step and call is weighted by its model's `launch_weight` there. On the CPU
//! cases are spread over the cores, one each. On a GPU the estimate takes cases one at a time
//! (concurrent cases overlap their launches only partly), so it is an upper bound there.

use super::ResolvedClaim;
use crate::suite::{Denoiser, Experiment, Plan};
use std::collections::HashSet;

/// The work of one case (or a sum of cases).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Work {
    pub train_steps: f64,
    pub train_flops: f64,
    /// Forward-only network calls (each over a batch of rows) and their FLOPs.
    pub calls: f64,
    pub call_flops: f64,
    /// Steps and calls weighted by their model's `launch_weight`.
    pub weighted_steps: f64,
    pub weighted_calls: f64,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, o: Work) {
        self.train_steps += o.train_steps;
        self.train_flops += o.train_flops;
        self.calls += o.calls;
        self.call_flops += o.call_flops;
        self.weighted_steps += o.weighted_steps;
        self.weighted_calls += o.weighted_calls;
    }
}

/// A device's cost per training step, per network call and per FLOP.
#[derive(Clone, Copy, Debug)]
pub struct DeviceModel {
    pub name: &'static str,
    /// Seconds of a training step, and of a forward-only call, that do not depend on its size.
    pub step_overhead: f64,
    pub call_overhead: f64,
    /// Whether the overheads scale with the model's op count (`launch_weight`).
    pub weighted: bool,
    /// Sustained FLOP/s of one case.
    pub rate: f64,
    /// Cases running at once.
    pub lanes: f64,
}

impl DeviceModel {
    /// One H200 running candle 0.11 in f32, measured 2026-11-30 (README, "GPU"): the benchmark
    /// MLP (depth 2, width 128) trains at 30,716 samples/s at batch 128 (4.2 ms a step, launch
    /// bound, launch weight 1); DiT-B/2 at 100 samples/s × 138 GFLOP a sample = 13.8 TFLOP/s.
    pub const H200_CANDLE_F32: DeviceModel = DeviceModel {
        name: "one H200, candle f32",
        step_overhead: 0.0042,
        call_overhead: 0.0014,
        weighted: true,
        rate: 1.38e13,
        lanes: 1.0,
    };
    /// One CPU core per case: least squares over the 14 trained claims of the committed cpu run
    /// (2 cores, case seconds against steps, calls and FLOPs; each claim within 35%).
    pub const CPU_CORE: DeviceModel = DeviceModel {
        name: "CPU cores",
        step_overhead: 4.9e-4,
        call_overhead: 8.3e-4,
        weighted: false,
        rate: 2.75e10,
        lanes: 2.0,
    };

    pub fn seconds(&self, w: &Work) -> f64 {
        let (steps, calls) =
            if self.weighted { (w.weighted_steps, w.weighted_calls) } else { (w.train_steps, w.calls) };
        (steps * self.step_overhead + calls * self.call_overhead + (w.train_flops + w.call_flops) / self.rate)
            / self.lanes
    }
}

/// A model's kernel launches per step relative to the benchmark MLP's, from the H200 run: a
/// depth-4 DiT step took 23 ms (5.5×, 1.4 per block), the two-level UNet's 62 ms (15×).
fn launch_weight(m: &crate::compute::ModelConfig) -> f64 {
    use crate::compute::ModelConfig as M;
    match m {
        M::Mlp(c) => 0.5 + 0.25 * c.depth as f64,
        M::Dit(c) => 1.4 * (c.depth + c.mixer_depth) as f64,
        _ => 15.0,
    }
}

/// The work of every case of `claims`, per claim. A model that several claims train the same
/// way (a sampler sweep's pool) is counted once, where it is first met.
pub fn plan_work(claims: &[ResolvedClaim]) -> Vec<(String, usize, Work)> {
    let mut pooled = HashSet::new();
    claims
        .iter()
        .map(|c| {
            let mut total = Work::default();
            if let Plan::Run(e) = &c.plan {
                for pc in &c.cases {
                    total += case_work(e, &pc.row, pc.replicate, &mut pooled);
                }
            }
            (c.id.clone(), c.cases.len(), total)
        })
        .collect()
}

fn macs(m: &crate::compute::ModelConfig) -> f64 {
    m.count().total().macs.values().sum()
}

/// The work of one case. `pooled` holds the sampler-sweep models already counted.
pub fn case_work(e: &Experiment, row: &str, replicate: u32, pooled: &mut HashSet<String>) -> Work {
    let mut w = Work::default();
    match e {
        Experiment::TrainSweep(t) => {
            let Some((m, budget)) = t.row_model(row) else { return w };
            let spec = m.training(&t.training, budget);
            let f = spec.unmasked_fraction;
            let unmasked = macs(&m.model.unmasked());
            let fwd = (1.0 - f) * macs(&m.model) + f * unmasked;
            let steps = spec.steps_for(fwd) as f64;
            w.train_steps = steps;
            w.train_flops = 6.0 * fwd * spec.batch as f64 * steps;
            let k = launch_weight(&m.model);
            // The held-out excess error: one call per noise level.
            w.calls = crate::train::EVAL_LEVELS as f64;
            w.call_flops = 2.0 * unmasked * t.eval_samples as f64;
            if let Some(s) = &t.sample_fd {
                w.calls += s.steps as f64;
                w.call_flops += 2.0 * unmasked * (s.samples * s.steps) as f64;
            }
            (w.weighted_steps, w.weighted_calls) = (k * w.train_steps, k * w.calls);
        }
        Experiment::SamplerSweep(s) if s.denoiser == Denoiser::Trained => {
            let (Some(m), Some(spec)) = (s.models.iter().find(|m| m.label == row), &s.training) else { return w };
            let fwd = macs(&m.model);
            let key = pool_key(s, m, spec, replicate);
            if pooled.insert(key) {
                let steps = spec.steps_for(fwd) as f64;
                w.train_steps = steps;
                w.train_flops = 6.0 * fwd * spec.batch as f64 * steps;
                w.calls += crate::train::EVAL_LEVELS as f64;
                w.call_flops += 2.0 * fwd * 4096.0;
            }
            let per_sampler: f64 = s
                .sub_rows()
                .iter()
                .map(|(n, g, _)| *n as f64 * if *g != 1.0 || !s.guidance_sweep.is_empty() { 2.0 } else { 1.0 })
                .sum();
            let samplers = s.samplers.len() as f64;
            w.calls += per_sampler * samplers;
            w.call_flops += 2.0 * fwd * s.samples as f64 * per_sampler * samplers;
            if let Some(d) = &s.distill {
                w.train_steps += (d.rounds() as u64 * d.updates) as f64;
                w.train_flops += d.flops(fwd);
                w.calls += d.steps as f64;
                w.call_flops += 2.0 * fwd * (s.samples * d.steps) as f64;
            }
            if let Some(ft) = &s.finetune {
                let key =
                    serde_json::json!({"pretrained": pool_key(s, m, spec, replicate), "finetune": ft}).to_string();
                if pooled.insert(key) {
                    let steps = ft.training.steps_for(fwd) as f64;
                    w.train_steps += steps;
                    w.train_flops += 6.0 * fwd * ft.training.batch as f64 * steps;
                }
            }
            if let Some(c) = &s.consistency {
                w.train_steps += c.updates as f64;
                w.train_flops += c.flops(fwd);
                w.calls += c.steps as f64;
                w.call_flops += 2.0 * fwd * (s.samples * c.steps) as f64;
            }
            let k = launch_weight(&m.model);
            (w.weighted_steps, w.weighted_calls) = (k * w.train_steps, k * w.calls);
        }
        // Analytic claims, exact denoisers and simulations use no network.
        _ => {}
    }
    w
}

/// A pooled model's identity for counting it once.
fn pool_key(
    s: &crate::suite::SamplerSweepExp,
    m: &crate::suite::SizedModel,
    spec: &crate::train::TrainSpec,
    replicate: u32,
) -> String {
    serde_json::json!({"data": s.data, "model": m.model, "training": spec, "r": replicate}).to_string()
}

/// Bytes a trained model holds at least, per parameter: weights, gradient, two AdamW moments,
/// the EMA and one more copy (the EMA model that samples), in f32.
pub const BYTES_PER_PARAM: f64 = 24.0;

/// The largest trainable model of an experiment: its label and parameter count (from the config
/// that would build it; nothing is allocated).
pub fn largest_model(e: &Experiment) -> Option<(String, u64)> {
    let models = match e {
        Experiment::TrainSweep(t) => &t.models,
        Experiment::SamplerSweep(s) if s.denoiser == Denoiser::Trained => &s.models,
        _ => return None,
    };
    models.iter().map(|m| (m.label.clone(), m.model.count().total().params)).max_by_key(|(_, p)| *p)
}
