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
