//! Case records: every case result is a [`CaseRecord`] named by its content hash and sealed by
//! an integrity hash of its own contents; files are written by the one atomic writer
//! ([`crate::atomic`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the result-file format; bump when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("DIFFSCALE_GIT_COMMIT");
pub const CANDLE_VERSION: &str = env!("DIFFSCALE_CANDLE_VERSION");
pub const RUSTC_VERSION: &str = env!("DIFFSCALE_RUSTC_VERSION");
/// The CUDA toolkit of a `--features cuda` build; `none` otherwise.
pub const CUDA_TOOLKIT: &str = env!("DIFFSCALE_CUDA_TOOLKIT");

/// The machine a case ran on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub threads: usize,
    pub os: String,
    pub device: String,
    /// What decides the bits of a result (also part of every case's content hash).
    #[serde(default)]
    pub numerics: Numerics,
}

/// Everything about where a case ran that can change its bits: two runs with equal numerics (and
/// the same commit and inputs) give bitwise-identical CPU results; on a GPU, results agree within
/// the tolerance the README states, not bitwise.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Numerics {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The GPU's model and driver (empty on the CPU).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gpu: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// The CUDA toolkit the kernels were compiled with (`none` in a CPU build).
    pub cuda_toolkit: String,
    /// `f32`, or `bf16` mixed precision.
    pub precision: String,
    /// The CPU's vector instruction set as the GEMM and our kernels see it (AVX-512 and AVX2
    /// paths sum in different orders, so their bits differ).
    pub isa: String,
    pub candle: String,
    pub rustc: String,
}

impl Numerics {
    /// The fields in which `self` and `other` differ, as `field: a ≠ b`.
    pub fn differences(&self, other: &Numerics) -> Vec<String> {
        let (a, b) = (serde_json::to_value(self).unwrap_or_default(), serde_json::to_value(other).unwrap_or_default());
        let keys: std::collections::BTreeSet<&String> =
            a.as_object().into_iter().chain(b.as_object()).flat_map(|m| m.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
            .map(|k| {
                let show =
                    |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("–").to_string();
                format!("{k}: {} ≠ {}", show(&a, k), show(&b, k))
            })
            .collect()
    }
}

/// The vector instruction set this process runs on.
pub fn detect_isa() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let has = |f: bool, n: &'static str| f.then_some(n);
        let found: Vec<&str> = [
            has(std::arch::is_x86_feature_detected!("avx512f"), "avx512f"),
            has(std::arch::is_x86_feature_detected!("avx2"), "avx2"),
            has(std::arch::is_x86_feature_detected!("fma"), "fma"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if found.is_empty() {
            "x86_64".into()
        } else {
            format!("x86_64+{}", found.join("+"))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.into()
    }
}

impl Machine {
    pub fn detect(numerics: &Numerics) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        Machine {
            cpu,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            device: numerics.device.clone(),
            numerics: numerics.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Ok,
    Failed,
}

/// The result of one case: one row of one claim, one replicate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CaseRecord {
    pub schema_version: u32,
    pub diffscale_version: String,
    pub git_commit: String,
    /// `<claim id>@<row>#<replicate>`.
    pub case_id: String,
    pub claim_id: String,
    pub suite_version: u32,
    pub row: String,
    pub replicate: u32,
    pub seed: u64,
    pub profile: String,
    /// Content hash of the fully resolved case; also the file name.
    pub hash: String,
    pub status: CaseStatus,
    #[serde(default)]
    pub reason: Option<String>,
    pub values: BTreeMap<String, f64>,
    /// What else identifies the result (e.g. `feature_weights`: the hash of a trained feature
    /// classifier).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Training loss curves of the models the case trained: name → (step, mean loss over the
    /// window ending there). `diffscale report --loss-curves` draws them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub curves: BTreeMap<String, Vec<[f64; 2]>>,
    pub machine: Machine,
    pub started_unix: f64,
    pub seconds: f64,
    /// `content_hash()` when it was written; a record whose contents no longer match is not used.
    #[serde(default)]
    pub integrity: String,
}

pub fn case_path(out: &Path, hash: &str) -> PathBuf {
    out.join("cases").join(format!("{hash}.json"))
}

/// A finished case at `path`, if there is one that can be reused (failed ones never are).
/// A record that was edited, or another case's file renamed (its hash field edited to match),
/// is not reused: it is recomputed with a warning.
pub fn reusable(path: &Path, hash: &str, case_id: &str) -> Option<CaseRecord> {
    let r = read_verified(path)?;
    (r.status == CaseStatus::Ok && r.hash == hash && r.case_id == case_id && r.schema_version == SCHEMA_VERSION)
        .then_some(r)
}

/// The record at `path` if it parses and its integrity hash matches its contents; a record that
/// does not match is reported on stderr (once per file) and treated as absent.
pub fn read_verified(path: &Path) -> Option<CaseRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    let r: CaseRecord = serde_json::from_str(&text).ok()?;
    if r.integrity != r.content_hash() {
        eprintln!(
            "warning: {} does not match its integrity hash (edited or swapped after it was written); it will be recomputed",
            path.display()
        );
        return None;
    }
    Some(r)
}

impl CaseRecord {
    /// blake3 of the record's canonical JSON with `integrity` empty: any change to a value, the
    /// case identity or its hash field changes it.
    pub fn content_hash(&self) -> String {
        let bare = CaseRecord { integrity: String::new(), ..self.clone() };
        let text = serde_json::to_string(&bare).unwrap_or_default();
        blake3::hash(text.as_bytes()).to_hex()[..32].to_string()
    }

    /// The record with its integrity hash set (after any change to it).
    pub fn sealed(mut self) -> Self {
        self.integrity = self.content_hash();
        self
    }
}

/// Now, in UTC, as RFC 3339 (`2026-12-01T11:22:39Z`).
pub fn now_rfc3339() -> String {
    let secs = now_unix() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_round_trip_exactly_through_json() {
        // A report re-rendered from disk must equal the one judged in memory, bit for bit.
        let mut r = crate::seed::Rng::new(11);
        for _ in 0..10_000 {
            let v = (r.uniform() - 0.5) * 10f64.powi((r.below(40) as i32) - 20);
            let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(v.to_bits(), back.to_bits(), "{v}");
        }
    }
}
