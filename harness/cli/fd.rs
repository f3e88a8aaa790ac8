//! `diffscale fd`: the Fréchet distance between two sets of features, from files the user names.

use crate::data::user::{read_fid_stats, read_npy, read_png_folder, read_safetensors, Array};
use crate::fit::fmt_num;
use crate::metrics::{fd_infinity_to, frechet_distance, moments};
use clap::Args;
use std::path::Path;

#[derive(Args, Debug)]
pub struct FdArgs {
    /// Reference: a pytorch-fid / ADM statistics file (.npz with `mu` and `sigma`), or samples:
    /// a .npy array, FILE.safetensors:TENSOR (float16, bfloat16, float32, float64 or uint8), or
    /// a folder of PNGs (one row per sample).
    #[arg(long = "ref")]
    pub reference: String,
    /// Generated set, in the same forms. With samples, FD∞ is reported as well.
    #[arg(long = "gen")]
    pub generated: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

enum Source {
    Stats(Vec<f64>, Vec<f64>),
    Samples(Array),
}

fn load(spec: &str) -> Result<Source, String> {
    let path = Path::new(spec);
    if path.is_dir() {
        return read_png_folder(path).map(Source::Samples);
    }
    if let Some((file, tensor)) = spec.rsplit_once(".safetensors:") {
        return read_safetensors(Path::new(&format!("{file}.safetensors")), tensor).map(Source::Samples);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("npz") => read_fid_stats(path).map(|(mu, s)| Source::Stats(mu, s.data)),
        Some("npy") => read_npy(path).map(Source::Samples),
        Some("safetensors") => Err(format!("{spec}: name the tensor, as {spec}:NAME")),
        _ => Err(format!("{spec}: expected a .npz of statistics, a .npy, FILE.safetensors:TENSOR or a folder of PNGs")),
    }
}

fn stats(s: &Source) -> (Vec<f64>, Vec<f64>) {
    match s {
        Source::Stats(m, c) => (m.clone(), c.clone()),
        Source::Samples(a) => moments(&a.data, a.cols),
    }
}

fn features(s: &Source) -> usize {
    match s {
        Source::Stats(m, _) => m.len(),
        Source::Samples(a) => a.cols,
    }
}

/// Refuse before allocating: the distance holds about six d × d matrices of f64 (the two
/// covariances, a factor, a product and the eigensolver's work), 1.5 TB at d = 196,608 (a
/// folder of 256² RGB images read as raw pixels).
fn fits_in_memory(d: usize) -> Result<(), String> {
    let gib = 6.0 * (d as f64).powi(2) * 8.0 / (1u64 << 30) as f64;
    match super::machine_memory_gib() {
        Some(have) if gib > have => Err(format!(
            "{d} features: the covariances need about {gib:.0} GiB, more than this machine's {have:.0} GiB; \
             compare features of fewer dimensions (pytorch-fid uses Inception's 2048-d pool3 features) \
             rather than raw pixels"
        )),
        _ => Ok(()),
    }
}

pub fn run(args: FdArgs) -> Result<i32, String> {
    let (r, g) = (load(&args.reference)?, load(&args.generated)?);
    fits_in_memory(features(&r).max(features(&g)))?;
    let ((mr, sr), (mg, sg)) = (stats(&r), stats(&g));
    if mr.len() != mg.len() {
        return Err(format!("the reference has {} features and the generated set {}", mr.len(), mg.len()));
    }
    for (name, src) in [("reference", &r), ("generated", &g)] {
        if let Source::Samples(a) = src {
            if a.rows < 2 {
                return Err(format!("the {name} set needs at least 2 samples"));
            }
        }
    }
    let fd = frechet_distance(&mg, &sg, &mr, &sr);
    let inf = match &g {
        Source::Samples(a) if a.rows >= 8 => Some(fd_infinity_to(&a.data, a.cols, &mr, &sr)),
        _ => None,
    };
    if args.json {
        println!("{}", serde_json::json!({"fd": fd, "fd_infinity": inf, "features": mr.len()}));
    } else {
        println!("FD = {} over {} features", fmt_num(fd), mr.len());
        if let Some(v) = inf {
            println!("FD∞ = {} (FD extrapolated to infinitely many generated samples)", fmt_num(v));
        }
    }
    Ok(0)
}
