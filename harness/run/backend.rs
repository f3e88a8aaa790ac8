//! Where the cases of a run execute: the device (`cpu` or `cuda:N`) and the precision, opened once
//! per run and handed to every case. Models, their training batches and their sampling live on
//! this device; the harness's feature classifier (the FD metric's definition) stays on the CPU in
//! f32, so a metric means the same thing whichever device trained the model it scores.

use super::record::{self, Machine, Numerics};
use crate::models::Precision;
use candle_core::Device;
use std::sync::OnceLock;

pub struct Backend {
    pub device: Device,
    pub precision: Precision,
    /// The machine facts every record carries, its numerics included.
    pub machine: Machine,
}

impl Backend {
    /// The default: the CPU in f32.
    pub fn cpu() -> &'static Backend {
        static CPU: OnceLock<Backend> = OnceLock::new();
        CPU.get_or_init(|| Backend::open("cpu", Precision::F32).expect("the CPU is always there"))
    }

    pub fn numerics(&self) -> &Numerics {
        &self.machine.numerics
    }

    /// Open `device` (`cpu` or `cuda:N`). The error is one line saying what to do instead.
    pub fn open(device: &str, precision: Precision) -> Result<Backend, String> {
        let facts = |device: Device, name: String, gpu: String, driver: String| Backend {
            machine: Machine::detect(&Numerics {
                device: name,
                gpu,
                driver,
                cuda_toolkit: record::CUDA_TOOLKIT.into(),
                precision: precision.name().into(),
                isa: record::detect_isa(),
                candle: record::CANDLE_VERSION.into(),
                rustc: record::RUSTC_VERSION.into(),
            }),
            device,
            precision,
        };
        if device == "cpu" {
            if precision != Precision::F32 {
                return Err(format!(
                    "--precision {} is mixed precision for GPUs; on the CPU diffscale's kernels are f32 (use --precision f32)",
                    precision.name()
                ));
            }
            return Ok(facts(Device::Cpu, "cpu".into(), String::new(), String::new()));
        }
        let Some(n) = device.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) else {
            return Err(format!("--device takes cpu or cuda:N, not `{device}`"));
        };
        open_cuda(n).map(|d| facts(d, format!("cuda:{n}"), gpu_model(n), gpu_driver()))
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<Device, String> {
    Device::new_cuda(n)
        .map_err(|e| format!("cannot open CUDA device {n} ({e}); is there an NVIDIA GPU and its driver?"))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_n: usize) -> Result<Device, String> {
    Err("this build of diffscale has no CUDA support: build one with `scripts/build-cuda.sh` (`--features cuda`; \
         README, \"CUDA build\"), or run with --device cpu"
        .into())
}

/// The GPU's model, from the NVIDIA driver's /proc entry (no library call, so it also works
/// where NVML is absent); empty when unreadable.
fn gpu_model(n: usize) -> String {
    let Ok(dirs) = std::fs::read_dir("/proc/driver/nvidia/gpus") else { return String::new() };
    let mut dirs: Vec<_> = dirs.flatten().map(|e| e.path()).collect();
    dirs.sort();
    dirs.get(n)
        .and_then(|d| std::fs::read_to_string(d.join("information")).ok())
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_string())))
        .unwrap_or_default()
}

/// The driver version, e.g. `580.159.04`; empty when unreadable.
fn gpu_driver() -> String {
    std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_string();
            line.split_whitespace()
                .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
                .map(String::from)
        })
        .unwrap_or_default()
}
