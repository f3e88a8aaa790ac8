//! The one result writer: every file diffscale writes goes through [`write_atomic`], and every
//! case result is a [`CaseRecord`] named by its content hash.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the result-file format; bump when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("DIFFSCALE_GIT_COMMIT");

/// Write `bytes` to `path` so that a reader (or a crash) sees the old file or the new one,
/// never a torn one: write a temporary file beside it, flush it to disk, rename it over.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    // Persist the rename itself (best effort: not every filesystem lets a folder be synced).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Remove temporary files a killed run left behind.
pub fn clean_temporaries(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with('.') && n.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The machine a case ran on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub threads: usize,
    pub os: String,
    pub device: String,
}

impl Machine {
    pub fn detect(device: &str) -> Self {
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
            device: device.to_string(),
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
    pub machine: Machine,
    pub started_unix: f64,
    pub seconds: f64,
}

pub fn case_path(out: &Path, hash: &str) -> PathBuf {
    out.join("cases").join(format!("{hash}.json"))
}

/// A finished case at `path`, if there is one that can be reused (failed ones never are).
pub fn reusable(path: &Path, hash: &str) -> Option<CaseRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    let r: CaseRecord = serde_json::from_str(&text).ok()?;
    (r.status == CaseStatus::Ok && r.hash == hash && r.schema_version == SCHEMA_VERSION).then_some(r)
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1);
    }
}
