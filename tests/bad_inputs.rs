//! The bad-input corpus: every malformed suite in tests/bad/ must give one line naming
//! `file:line:col` (at the line the file's header names), exit with status 2, and never panic.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    v.sort();
    v
}

fn expected_line(p: &Path) -> Option<u32> {
    let bytes = std::fs::read(p).unwrap();
    let first = String::from_utf8_lossy(&bytes).lines().next().unwrap_or("").to_string();
    first.strip_prefix("# error-line: ").and_then(|s| s.trim().parse().ok())
}

fn check(path: &Path, expect_line: Option<u32>) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("diffscale")
        .unwrap()
        .args(["run", "--profile", "smoke", "--out"])
        .arg(out_dir.path())
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = path.display().to_string();
    assert_eq!(out.status.code(), Some(2), "{name}: status {:?}, stderr: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{name}: panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{name}: want one line, got: {stderr}");
    let rest = lines[0].strip_prefix("error: ").unwrap_or_else(|| panic!("{name}: {stderr}"));
    let mut parts = rest.rsplitn(2, ".yaml:");
    let (tail, _) = (parts.next().unwrap(), parts.next());
    let mut nums = tail.splitn(3, ':');
    let line: u32 = nums.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{name}: no line in {stderr}"));
    let col: u32 = nums.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{name}: no column in {stderr}"));
    assert!(col >= 1, "{name}: {stderr}");
    if let Some(want) = expect_line {
        assert_eq!(line, want, "{name}: error at the wrong line: {stderr}");
    }
}

#[test]
fn corpus_has_at_least_thirty_cases() {
    assert!(corpus().len() >= 30, "{}", corpus().len());
}

#[test]
fn every_bad_suite_is_a_located_one_line_error() {
    for p in corpus() {
        check(&p, expected_line(&p));
    }
}

#[test]
fn a_missing_or_dangling_file_is_located_too() {
    let dir = tempfile::tempdir().unwrap();
    let dangling = dir.path().join("dangling.yaml");
    std::os::unix::fs::symlink(dir.path().join("nowhere.yaml"), &dangling).unwrap();
    check(&dangling, Some(1));
    check(&dir.path().join("absent.yaml"), Some(1));
}

/// Runs `diffscale ARGS` with a time bound; returns (status, stderr).
fn bounded(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::cargo_bin("diffscale")
        .unwrap()
        .args(args)
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Paths that are not suite files: a device that never ends, a FIFO that would block the open,
/// a folder with no suites, a folder where a file was included. Each is one line, exit 2, fast.
#[test]
fn paths_that_are_not_suite_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let includes_dir = dir.path().join("inc.yaml");
    std::fs::write(&includes_dir, "include: empty\nsuite: s\nversion: 1\ntitle: t\nclaims: []\n").unwrap();
    let cases = [
        ("/dev/zero".to_string(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        (empty.display().to_string(), "no suite files"),
        (includes_dir.display().to_string(), "is not a regular file"),
    ];
    for (path, want) in cases {
        for cmd in ["list", "run"] {
            let (code, err) = bounded(&[cmd, &path]);
            assert_eq!(code, Some(2), "{cmd} {path}: {err}");
            assert_eq!(err.lines().count(), 1, "{cmd} {path}: {err}");
            assert!(err.contains(want), "{cmd} {path}: {err}");
        }
    }
}

/// A model each of whose fields is within its limit but whose product is absurd is refused
/// before anything is allocated, naming the claim and the estimate; `--max-memory` decides.
#[test]
fn a_model_too_big_for_memory_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("big.yaml");
    let text = std::fs::read_to_string("suites/mei2024.yaml").unwrap();
    // The fixed-steps claim's widest MLP, made 900,000 wide: 1.6e12 parameters.
    let edited = text.replacen(
        "{label: w128, model: {family: mlp, data_dim: 8, width: 128, depth: 2}}",
        "{label: w128, model: {family: mlp, data_dim: 8, width: 900000, depth: 2}}",
        1,
    );
    assert_ne!(edited, text);
    std::fs::write(&suite, edited).unwrap();
    std::fs::copy("suites/_defaults.yaml", dir.path().join("_defaults.yaml")).unwrap();
    let out = dir.path().join("run");
    let (s, o) = (suite.to_str().unwrap(), out.to_str().unwrap());
    let claim = "mei2024/reduced-fixed-steps-bigger-better";
    let (code, err) = bounded(&["run", s, "--claim", claim, "--profile", "smoke", "--out", o]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(claim) && err.contains("GiB") && err.contains("--max-memory"), "{err}");
    assert!(!out.join("cases").exists(), "nothing ran");
    // The limit is what decides: the committed claim (17k parameters) under 1 KiB is refused too.
    let (code, err) = bounded(&[
        "run",
        "suites/mei2024.yaml",
        "--claim",
        claim,
        "--profile",
        "smoke",
        "--out",
        o,
        "--max-memory",
        "1e-6",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("above --max-memory"), "{err}");
}

/// An I/O error names the path it is about.
#[test]
fn an_unwritable_run_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("run");
    let (code, err) = bounded(&[
        "run",
        "suites/calibration.yaml",
        "--claim",
        "calibration/sampler-orders",
        "--profile",
        "smoke",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
}

/// `fd` on raw features too wide for the machine's memory (a covariance of d² values) is refused
/// before anything is allocated, with the way out; it does not abort.
#[test]
fn fd_refuses_features_too_wide_for_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wide.npy");
    // Two uint8 rows of 3,000,000 features: 6 MB on disk, 400 TB of covariances.
    let mut header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3000000), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(vec![0u8; 6_000_000]);
    std::fs::write(&p, bytes).unwrap();
    let (code, err) = bounded(&["fd", "--ref", p.to_str().unwrap(), "--gen", p.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("3000000 features") && err.contains("2048-d"), "{err}");
}
