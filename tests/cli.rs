//! End-to-end tests through the `diffscale` binary.

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn diffscale() -> Command {
    let mut c = Command::cargo_bin("diffscale").unwrap();
    c.current_dir(root());
    c
}

/// A run that finished: exit 0, or 1 when a claim FAILed (2 is bad input; anything else a crash).
fn finished(out: &std::process::Output) -> bool {
    let ok = matches!(out.status.code(), Some(0 | 1));
    if !ok {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    ok
}

fn run_smoke(out: &Path, extra: &[&str]) -> std::process::Output {
    diffscale().args(["run", "--profile", "smoke", "--out"]).arg(out).args(extra).output().unwrap()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn verdicts(s: &Value) -> Vec<(String, String)> {
    s["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().into(), c["verdict"].as_str().unwrap().into()))
        .collect()
}

fn verdict(s: &Value, id: &str) -> String {
    verdicts(s).into_iter().find(|(i, _)| i == id).unwrap_or_else(|| panic!("no claim {id}")).1
}

fn case_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("cases")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn smoke_profile_of_every_suite_reports_every_claim() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_smoke(dir.path(), &[]);
    // 0 or 1 (a claim failed): both are a finished run; 2 would be bad input, anything else a crash.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["report.md", "summary.json", "junit.xml", "manifest.json"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let s = summary(dir.path());
    let v = verdicts(&s);
    assert!(v.len() >= 20, "{v:?}");
    // Every suite file is represented, and every claim in summary.json carries the required fields.
    for suite in ["calibration", "dit2023", "li2024", "mei2024", "microdit2024"] {
        assert!(v.iter().any(|(id, _)| id.starts_with(&format!("{suite}/"))), "{suite}");
    }
    for c in s["claims"].as_array().unwrap() {
        for k in ["id", "verdict", "measured", "expected", "interval", "source", "profile"] {
            assert!(c.get(k).is_some(), "{} lacks {k}", c["id"]);
        }
    }
    // The analytic errata are exact facts about the papers' printed numbers, not outcomes of a
    // run: they hold at every scale.
    assert_eq!(verdict(&s, "mei2024/table1-gflops"), "ERRATUM");
    assert_eq!(verdict(&s, "mei2024/table1-norm-cost"), "ERRATUM");
    assert_eq!(verdict(&s, "li2024/scaling-functions"), "ERRATUM");
    assert_eq!(verdict(&s, "dit2023/patch-gflops-scaling"), "ERRATUM");
    assert_eq!(verdict(&s, "microdit2024/cost-ratios"), "ERRATUM");
    // The machinery, not the outcome: every claim that ran has a verdict from its checks, each
    // check a verdict, an interval method when it is seeded, and a case record per planned case;
    // a skipped claim says why. Which verdict a trained claim gets at this scale is not asserted.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap()).unwrap();
    for c in s["claims"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let v = c["verdict"].as_str().unwrap();
        assert!(["PASS", "FAIL", "INCONCLUSIVE", "ERRATUM", "SKIPPED"].contains(&v), "{id}: {v}");
        if v == "SKIPPED" {
            assert!(c["reason"].as_str().is_some_and(|r| !r.is_empty()), "{id} skipped without a reason");
            continue;
        }
        let checks = c["checks"].as_array().unwrap();
        assert!(!checks.is_empty(), "{id} has no check outcomes");
        for chk in checks {
            assert!(chk["verdict"].is_string() && chk["check"].is_string(), "{id}: {chk}");
        }
        assert!(c["interval_method"].is_string(), "{id} does not say how its intervals were made");
        assert!(c["cases"].as_u64().unwrap() > 0, "{id} ran no case");
    }
    let planned: usize =
        manifest["claims"].as_array().unwrap().iter().map(|c| c["cases"].as_array().unwrap().len()).sum();
    assert_eq!(case_files(dir.path()).len(), planned, "a case record per planned case");
    // Every record says where its bits came from.
    for f in case_files(dir.path()) {
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let n = &r["machine"]["numerics"];
        assert_eq!((n["device"].as_str(), n["precision"].as_str()), (Some("cpu"), Some("f32")), "{}", f.display());
        for k in ["isa", "candle", "rustc", "cuda_toolkit"] {
            assert!(n[k].as_str().is_some_and(|v| !v.is_empty()), "{}: no {k}", f.display());
        }
    }
    // Every claim runs in seconds at this scale: none is skipped.
    let skipped: Vec<&String> = v.iter().filter(|(_, v)| v == "SKIPPED").map(|(id, _)| id).collect();
    assert!(skipped.is_empty(), "{skipped:?}");
    // Figures: SVG and PNG for the fitted claim, and the report links them; the sampler sweeps'
    // figures and the paper-beside-reproduction panels are drawn too.
    for f in
        ["mei2024__sampler-size-independence", "mei2024__reduced-cfg-optimum", "dit2023__reduced-fd-vs-gflops__paper"]
    {
        assert!(dir.path().join(format!("figures/{f}.svg")).is_file(), "{f}");
    }
    assert!(dir.path().join("figures/dit2023__fid-vs-gflops.svg").is_file());
    assert!(dir.path().join("figures/dit2023__fid-vs-gflops.png").is_file());
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("figures/dit2023__fid-vs-gflops.svg"));
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<testcase classname=\"mei2024\" name=\"mei2024/table1-gflops\""));
    results_page_covers_every_claim(dir.path(), &s);
}

/// `index.html` parses (every element closed in order), has a section and a table row per
/// claim, and every figure and case record it links exists beside it; no network address.
fn results_page_covers_every_claim(dir: &Path, s: &Value) {
    let page = std::fs::read_to_string(dir.join("index.html")).expect("index.html written");
    if let Err(e) = well_formed(&page) {
        panic!("index.html does not parse: {e}");
    }
    for c in s["claims"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let anchor = format!("claim-{}", id.replace('/', "--"));
        assert!(page.contains(&format!("id=\"{anchor}\"")), "no section for {id}");
        assert!(page.contains(&format!("href=\"#{anchor}\"")), "no table row for {id}");
    }
    let linked = |attr: &str| -> Vec<String> {
        page.split(attr).skip(1).map(|t| t[..t.find('"').unwrap()].to_string()).collect()
    };
    let (imgs, hrefs) = (linked("src=\""), linked("href=\""));
    assert!(imgs.len() > 20, "{} figures", imgs.len());
    for f in imgs.iter().chain(hrefs.iter().filter(|h| !h.starts_with('#'))) {
        assert!(!f.contains("://"), "the page reaches the network: {f}");
        assert!(dir.join(f).is_file(), "the page links {f}, which is not there");
    }
    // Every figure the run drew is on the page.
    for f in std::fs::read_dir(dir.join("figures")).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".svg") {
            assert!(imgs.contains(&format!("figures/{name}")), "{name} is not on the page");
        }
    }
}

/// A strict reading of the markup: tags nest and close, attributes are quoted; the contents
/// of `<script>` and `<style>` are skipped. (The page is written to pass it.)
fn well_formed(html: &str) -> Result<(), String> {
    const VOID: [&str; 4] = ["meta", "img", "br", "input"];
    let mut stack: Vec<String> = vec![];
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        if rest.starts_with("<!") {
            rest = &rest[rest.find('>').ok_or("unclosed <!")? + 1..];
            continue;
        }
        let end = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if name.is_empty() {
            return Err(format!("bad tag <{tag}>"));
        }
        if !tag.matches('"').count().is_multiple_of(2) || tag.contains("=\'") {
            return Err(format!("unquoted attribute in <{tag}>"));
        }
        if name == "script" || name == "style" {
            let close = format!("</{name}>");
            let body_end = rest.find(&close).ok_or(format!("unclosed <{name}>"))?;
            if name == "script" && rest[..body_end].contains(['<', '&']) {
                return Err("`<` or `&` inside the script".into());
            }
            rest = &rest[body_end + close.len()..];
            continue;
        }
        if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
            stack.push(name);
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed: {stack:?}"))
    }
}

#[test]
fn rerun_reuses_finished_cases_and_report_rerenders() {
    let dir = tempfile::tempdir().unwrap();
    assert!(finished(&run_smoke(dir.path(), &["suites/microdit2024.yaml"])));
    let first = summary(dir.path());
    let out = run_smoke(dir.path(), &["suites/microdit2024.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(": 0 run,"), "{err}");
    std::fs::remove_file(dir.path().join("summary.json")).unwrap();
    let out = diffscale().arg("report").arg(dir.path()).output().unwrap();
    assert!(finished(&out));
    assert_eq!(verdicts(&summary(dir.path())), verdicts(&first));
}

#[test]
fn damaged_or_missing_cases_are_rerun() {
    let dir = tempfile::tempdir().unwrap();
    assert!(finished(&run_smoke(dir.path(), &["suites/calibration.yaml"])));
    let want = verdicts(&summary(dir.path()));
    let files = case_files(dir.path());
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::write(&files[1], "{\"truncated").unwrap();
    std::fs::write(dir.path().join("cases/.leftover.json.999.tmp"), "x").unwrap();
    let out = run_smoke(dir.path(), &["suites/calibration.yaml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(": 2 run,"));
    assert_eq!(verdicts(&summary(dir.path())), want);
    assert_eq!(case_files(dir.path()).len(), files.len());
}

/// A summary's claims without their wall times.
fn untimed(mut s: Value) -> Value {
    for c in s["claims"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("seconds");
    }
    s["claims"].take()
}

/// A case file edited by hand (a value changed), or another case's record renamed over it with
/// its hash field edited to match, no longer matches its integrity hash: it is recomputed with a
/// warning, never reused, and `merge` does not take it either.
#[test]
fn edited_or_swapped_case_files_are_recomputed_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["suites/mei2024.yaml", "--claim", "mei2024/reduced-fixed-steps-bigger-better"];
    assert!(finished(&run_smoke(dir.path(), &args)));
    let first = summary(dir.path());
    let files = case_files(dir.path());
    let read = |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    // Edited: the headline value halved.
    let mut edited = read(&files[0]);
    let v = edited["values"]["excess_error"].as_f64().unwrap();
    edited["values"]["excess_error"] = (v / 2.0).into();
    std::fs::write(&files[0], serde_json::to_string(&edited).unwrap()).unwrap();
    // Swapped: files[2]'s record under files[1]'s name, its hash field set to match the name.
    let mut swapped = read(&files[2]);
    swapped["hash"] = read(&files[1])["hash"].clone();
    std::fs::write(&files[1], serde_json::to_string(&swapped).unwrap()).unwrap();
    // merge refuses to take them (they count as missing).
    let out = diffscale().args(["merge"]).arg(dir.path()).arg("--out").arg(dir.path().join("m")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("integrity"));
    let out = run_smoke(dir.path(), &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.matches("integrity hash").count() >= 2, "{err}");
    assert!(err.contains(": 2 run,"), "{err}");
    assert_eq!(untimed(summary(dir.path())), untimed(first), "the recomputed cases are the originals");
}

/// A damaged checkpoint is discarded with a warning and the case trains from the start: the
/// same values as a run that never had it.
#[test]
fn a_damaged_checkpoint_is_discarded_and_the_case_trained_again() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["suites/mei2024.yaml", "--claim", "mei2024/reduced-fixed-steps-bigger-better"];
    assert!(finished(&run_smoke(dir.path(), &args)));
    let first = summary(dir.path());
    let case = case_files(dir.path()).remove(0);
    let hash = case.file_stem().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(&case).unwrap();
    let ckpt = dir.path().join("checkpoints").join(format!("{hash}.safetensors"));
    std::fs::create_dir_all(ckpt.parent().unwrap()).unwrap();
    std::fs::write(&ckpt, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"trunc").unwrap();
    let out = run_smoke(dir.path(), &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(finished(&out) && err.contains("checkpoint does not load"), "{err}");
    assert!(!ckpt.exists(), "the damaged checkpoint is gone");
    assert_eq!(untimed(summary(dir.path())), untimed(first));
}

/// Two runs into one folder: the second is refused while the first holds it, naming its pid.
#[test]
fn a_second_run_into_a_busy_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_diffscale"))
        .current_dir(root())
        .args([
            "run",
            "--profile",
            "smoke",
            "suites/mei2024.yaml",
            "--claim",
            "mei2024/reduced-compute-optimal-size",
            "--out",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join(".diffscale.lock");
    let t0 = std::time::Instant::now();
    while !lock.exists() && t0.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(lock.exists(), "the first run never locked the folder");
    let out = run_smoke(dir.path(), &["suites/calibration.yaml"]);
    assert!(first.try_wait().unwrap().is_none(), "the first run ended too soon to test the lock");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(first.wait().unwrap().code().is_some_and(|c| c <= 1));
    assert!(!lock.exists(), "the lock is released at exit");
}

/// A synthetic claim with many seeded cases: slow enough to be killed half-way.
const SLOW_SUITE: &str = "suite: slow
version: 1
title: kill test
claims:
  - id: slow/fit
    claim: many cases
    source: test
    experiment:
      kind: synthetic_power_law
      series: [{name: y, a: 2.0, b: -0.5}]
      x: [1, 2, 4, 8, 16, 32, 64, 128]
      noise: 0.05
      replicates: 400
    fit: {power_law: {x: x, y: y}}
    expect:
      - band: {of: fit.exponent, min: -0.55, max: -0.45}
";

#[test]
fn kill_9_mid_run_loses_no_finished_case() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("slow.yaml");
    std::fs::write(&suite, SLOW_SUITE).unwrap();
    let out = dir.path().join("run");
    let bin = assert_cmd::cargo::cargo_bin("diffscale");
    let mut child = std::process::Command::new(&bin)
        .args(["run", "--out"])
        .arg(&out)
        .arg(&suite)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cases = out.join("cases");
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&cases).map(|d| d.count()).unwrap_or(0) < 100 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let done: Vec<PathBuf> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(!status.success() && done.len() < 3200, "the run finished before it was killed ({} cases)", done.len());
    // Every file the killed run left is a complete record.
    for p in &done {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(v["status"], "ok");
    }
    let before: Vec<(PathBuf, String)> =
        done.iter().map(|p| (p.clone(), std::fs::read_to_string(p).unwrap())).collect();
    let again = std::process::Command::new(&bin).args(["run", "--out"]).arg(&out).arg(&suite).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains(&format!("{} reused", done.len())), "{err}");
    for (p, text) in before {
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "a finished case was rewritten");
    }
    assert_eq!(verdict(&summary(&out), "slow/fit"), "PASS");
}

#[test]
fn shards_merge_into_the_unsharded_result() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, a, b, merged) =
        (dir.path().join("whole"), dir.path().join("a"), dir.path().join("b"), dir.path().join("m"));
    // Two suites (analytic, trained and simulated claims) exercise the machinery; the whole
    // smoke run is covered by the test above.
    let suites = ["suites/calibration.yaml", "suites/microdit2024.yaml"];
    assert!(finished(&run_smoke(&whole, &suites)));
    assert!(finished(&run_smoke(&a, &[&suites[..], &["--shard", "1/2"]].concat())));
    assert!(finished(&run_smoke(&b, &[&suites[..], &["--shard", "2/2"]].concat())));
    let (na, nb, nw) = (case_files(&a).len(), case_files(&b).len(), case_files(&whole).len());
    assert!(na > 0 && nb > 0 && na + nb == nw, "{na} + {nb} != {nw}");
    let out = diffscale().args(["merge"]).arg(&a).arg(&b).arg("--out").arg(&merged).output().unwrap();
    assert!(finished(&out));
    let strip = |s: Value| -> Vec<(String, String, Value)> {
        s["claims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().into(), c["verdict"].as_str().unwrap().into(), c["measured"].clone()))
            .collect()
    };
    assert_eq!(strip(summary(&merged)), strip(summary(&whole)));
    // A missing shard and a duplicated one are both refused.
    let out = diffscale().args(["merge"]).arg(&a).arg("--out").arg(dir.path().join("m2")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
    let out =
        diffscale().args(["merge"]).arg(&a).arg(&a).arg(&b).arg("--out").arg(dir.path().join("m3")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in both"));
    // A shard from a machine whose results have other bits (here: another instruction set) is
    // refused, naming the difference, unless the user says to mix them.
    let manifest = b.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert!(m["machine"]["numerics"]["isa"].is_string(), "the manifest records the ISA");
    m["machine"]["numerics"]["isa"] = "x86_64+avx512f+avx2+fma (elsewhere)".into();
    std::fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();
    let out = diffscale().args(["merge"]).arg(&a).arg(&b).arg("--out").arg(dir.path().join("m4")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("isa:") && err.contains("--allow-mixed-machines"), "{err}");
    let m5 = dir.path().join("m5");
    let out =
        diffscale().args(["merge", "--allow-mixed-machines"]).arg(&a).arg(&b).arg("--out").arg(&m5).output().unwrap();
    assert!(finished(&out));
    assert_eq!(strip(summary(&m5)), strip(summary(&whole)));
}

#[test]
fn slurm_auto_shard_reads_the_array_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = diffscale()
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .args(["run", "--profile", "smoke", "--shard", "auto", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(finished(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shard 1/3"));
    let out = diffscale().env_remove("SLURM_ARRAY_TASK_ID").args(["run", "--shard", "auto"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn compare_flags_a_worsened_verdict_or_moved_value() {
    let dir = tempfile::tempdir().unwrap();
    assert!(finished(&run_smoke(dir.path(), &["suites/calibration.yaml"])));
    let ok = diffscale()
        .arg("compare")
        .arg(dir.path())
        .arg("--baseline")
        .arg(dir.path().join("summary.json"))
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    // Negative control: a baseline that had a different value and a better verdict.
    let mut base = summary(dir.path());
    base["claims"][0]["measured"] = Value::from(12345.0);
    base["claims"][0]["verdict"] = Value::from("PASS");
    let mut run = summary(dir.path());
    run["claims"][0]["verdict"] = Value::from("FAIL");
    let (bp, rp) = (dir.path().join("base.json"), dir.path().join("run.json"));
    std::fs::write(&bp, base.to_string()).unwrap();
    std::fs::write(&rp, run.to_string()).unwrap();
    let bad = diffscale().arg("compare").arg(&rp).arg("--baseline").arg(&bp).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("verdict worsened") && text.contains("value moved"), "{text}");
}

/// `history` over runs written out of order, one of which drifts out of its band: it orders
/// them by time, names the first run that changed, exits 1 when the latest did, draws a
/// figure per claim, and refuses to mix profiles.
#[test]
fn history_finds_the_run_that_left_its_band() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let out = run_smoke(&base, &["suites/calibration.yaml", "--claim", "calibration/power-law-recovery"]);
    assert!(finished(&out));
    let template = summary(&base);
    assert_eq!(template["claims"][0]["band"], serde_json::json!([-0.55, -0.45]), "the headline band is recorded");
    let write_run = |i: usize, exponent: f64, profile: &str| {
        let mut s = template.clone();
        s["created"] = format!("2026-11-{:02}T02:00:00Z", i + 1).into();
        s["git_commit"] = format!("c{i:06}").into();
        s["profile"] = profile.into();
        let c = &mut s["claims"][0];
        c["measured"] = exponent.into();
        c["interval"] = serde_json::json!([exponent - 0.02, exponent + 0.02]);
        let run = dir.path().join(format!("night{}", 9 - i));
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("summary.json"), s.to_string()).unwrap();
        run
    };
    // Written newest first, so the order on the command line is not the runs' order.
    let runs: Vec<PathBuf> = [(0, -0.50), (1, -0.49), (2, -0.51), (3, -0.60)]
        .iter()
        .rev()
        .map(|(i, e)| write_run(*i, *e, "smoke"))
        .collect();
    let hist = dir.path().join("hist");
    let out = diffscale().arg("history").args(&runs).arg("--out").arg(&hist).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "the latest run left the band: {text}");
    assert!(text.contains("calibration/power-law-recovery: first at run 3 (c000003): left its band"), "{text}");
    for f in ["index.html", "history.json", "figures/calibration__power-law-recovery.svg"] {
        assert!(hist.join(f).is_file(), "{f}");
    }
    // Back inside the band: the change is history, the latest run is fine.
    let back = write_run(4, -0.5, "smoke");
    let all: Vec<&PathBuf> = runs.iter().chain([&back]).collect();
    let out = diffscale().arg("history").args(&all).arg("--out").arg(&hist).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // Another profile is refused, not mixed.
    let cpu = write_run(5, -0.5, "cpu");
    let out = diffscale().arg("history").args(&runs).arg(&cpu).arg("--out").arg(&hist).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a history follows one profile"));
}

#[test]
fn seeded_cases_are_bitwise_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(finished(&run_smoke(&a, &["suites/calibration.yaml"])));
    assert!(finished(&run_smoke(&b, &["suites/calibration.yaml"])));
    let values = |d: &Path| -> Vec<(String, Value)> {
        case_files(d)
            .iter()
            .map(|p| {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                (v["case_id"].as_str().unwrap().to_string(), v["values"].clone())
            })
            .collect()
    };
    assert_eq!(values(&a), values(&b));
    assert_eq!(
        summary(&a)["claims"],
        summary(&b)["claims"]
            .clone()
            .as_array()
            .map(|c| {
                // Timings differ between runs; everything else must not.
                let mut c = c.clone();
                for (x, y) in c.iter_mut().zip(summary(&a)["claims"].as_array().unwrap()) {
                    x["seconds"] = y["seconds"].clone();
                }
                Value::Array(c)
            })
            .unwrap()
    );
}

/// A copy of a suite with `edit` applied, beside the defaults it includes.
fn edited_suite(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(root().join("suites").join(name)).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::copy(root().join("suites/_defaults.yaml"), dir.join("_defaults.yaml")).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, edited).unwrap();
    p
}

/// The calibration claim run against a wrong truth: the fit must FAIL, and the run exit 1.
#[test]
fn negative_control_wrong_exponent_fails_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let p =
        edited_suite(dir.path(), "calibration.yaml", |t| t.replace("min: -0.55, max: -0.45", "min: -0.65, max: -0.55"));
    let out = run_smoke(&dir.path().join("run"), &[p.to_str().unwrap(), "--claim", "calibration/power-law-recovery"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&summary(&dir.path().join("run")), "calibration/power-law-recovery"), "FAIL");
}

/// Too few seeds for the noise: the honest verdict is INCONCLUSIVE, not PASS.
#[test]
fn noisy_small_run_is_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited_suite(dir.path(), "calibration.yaml", |t| t.replace("noise: 0.05", "noise: 0.6"));
    let out = run_smoke(&dir.path().join("run"), &[p.to_str().unwrap(), "--claim", "calibration/power-law-recovery"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(verdict(&summary(&dir.path().join("run")), "calibration/power-law-recovery"), "INCONCLUSIVE");
}

#[test]
fn list_schema_flops_and_help() {
    let out = diffscale().arg("list").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("mei2024/table1-gflops"));
    let out = diffscale().arg("schema").output().unwrap();
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"]["claims"].is_object());
    let out = diffscale().args(["flops", "sd15"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("859520964"));
    let out = diffscale().args(["flops", "{family: dit, depth: 2, hidden: 9, heads: 2, patch: 2}"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = diffscale().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit status") && help.contains("history"), "{help}");
    let out = diffscale().args(["run", "--profile", "huge"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    #[cfg(not(feature = "cuda"))]
    {
        let out = diffscale().args(["run", "--device", "cuda:0"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--features cuda") && err.contains("CUDA build"), "{err}");
    }
    // Mixed precision is for GPUs: refused on the CPU, with the way out.
    let out = diffscale().args(["run", "--precision", "bf16"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--precision f32"));
}

/// Run one claim of an edited copy of a suite at smoke scale; returns (exit code, verdict).
fn run_edited(suite: &str, claim: &str, edit: impl Fn(String) -> String) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = edited_suite(dir.path(), suite, edit);
    let out = run_smoke(&dir.path().join("run"), &[p.to_str().unwrap(), "--claim", claim]);
    assert_ne!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), verdict(&summary(&dir.path().join("run")), claim))
}

#[test]
fn negative_control_first_order_dpmpp_fails_the_order_claim() {
    let (code, v) = run_edited("calibration.yaml", "calibration/sampler-orders", |t| {
        t.replace("dpmpp_2m: {dpmpp_2m: {lower_order_final: false}}", "dpmpp_2m: dpmpp_2m_first_order")
    });
    assert_eq!((code, v.as_str()), (Some(1), "FAIL"));
}

#[test]
fn negative_control_broken_samplers_fail_the_ordering_claim() {
    let claim = "mei2024/sampler-order-oracle";
    let (code, v) =
        run_edited("mei2024.yaml", claim, |t| t.replace("ddim: {ddim: {eta: 0.0}}", "ddim: ddim_off_by_one"));
    assert_eq!((code, v.as_str()), (Some(1), "FAIL"));
    // DPM-Solver++ reduced to first order is DDIM: a gap of zero is not shown to be positive,
    // and no interval around zero can show it negative either, so the claim is undecided.
    let (code, v) = run_edited("mei2024.yaml", claim, |t| {
        t.replace("dpmpp: {dpmpp_2m: {lower_order_final: true}}", "dpmpp: dpmpp_2m_first_order")
    });
    assert_eq!((code, v.as_str()), (Some(0), "INCONCLUSIVE"));
    // Reversed: DDPM (the worst) in DPM-Solver++'s place fails outright.
    let (code, v) = run_edited("mei2024.yaml", claim, |t| {
        t.replace("dpmpp: {dpmpp_2m: {lower_order_final: true}}", "dpmpp: {ddpm: {variance: fixed_small}}")
    });
    assert_eq!((code, v.as_str()), (Some(1), "FAIL"));
}

/// Positive controls: claims whose effect holds by construction at any scale (the exact denoiser
/// in place of a trained model, or a metric on true samples) must PASS at the smoke scale.
#[test]
fn exact_denoiser_claims_pass_at_smoke_scale() {
    let dir = tempfile::tempdir().unwrap();
    let mei = dir.path().join("mei");
    assert!(finished(&run_smoke(&mei, &["suites/mei2024.yaml", "--claim", "mei2024/sampler-order-oracle"])));
    assert_eq!(verdict(&summary(&mei), "mei2024/sampler-order-oracle"), "PASS");
    assert!(mei.join("figures/mei2024__sampler-order-oracle.svg").is_file());
    let cal = dir.path().join("calibration");
    assert!(finished(&run_smoke(&cal, &["suites/calibration.yaml"])));
    for id in ["calibration/sampler-orders", "calibration/metric-null", "calibration/cfg-alignment"] {
        assert_eq!(verdict(&summary(&cal), id), "PASS", "{id}");
    }
}

#[test]
fn fd_command_reads_fid_statistics_and_samples() {
    use diffscale::data::user::npy_bytes;
    let dir = tempfile::tempdir().unwrap();
    let npz = |name: &str, mu: &[f64], sigma: &[f64]| {
        let p = dir.path().join(name);
        let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("mu.npy", opts).unwrap();
        std::io::Write::write_all(&mut w, &npy_bytes(&[mu.len()], mu)).unwrap();
        w.start_file("sigma.npy", opts).unwrap();
        std::io::Write::write_all(&mut w, &npy_bytes(&[mu.len(), mu.len()], sigma)).unwrap();
        w.finish().unwrap();
        p
    };
    let eye = |v: f64| (0..16).map(|i| if i % 5 == 0 { v } else { 0.0 }).collect::<Vec<_>>();
    // FD(N(0, 2I), N(1, 0.5I)) in 4-d = 4 + 8 + 2 − 2·4 = 6.
    let (a, b) = (npz("a.npz", &[0.0; 4], &eye(2.0)), npz("b.npz", &[1.0; 4], &eye(0.5)));
    let out = diffscale().args(["fd", "--json", "--ref"]).arg(&a).arg("--gen").arg(&b).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((v["fd"].as_f64().unwrap() - 6.0).abs() < 1e-9);
    // Samples drawn from the reference itself: FD near 0, FD∞ reported.
    let mut r = diffscale::seed::Rng::new(1);
    let samples: Vec<f64> = (0..4000 * 4).map(|_| 2f64.sqrt() * r.normal()).collect();
    let npy = dir.path().join("g.npy");
    std::fs::write(&npy, npy_bytes(&[4000, 4], &samples)).unwrap();
    let out = diffscale().args(["fd", "--json", "--ref"]).arg(&a).arg("--gen").arg(&npy).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["fd"].as_f64().unwrap() < 0.05 && v["fd_infinity"].is_number(), "{v}");
    // Mismatched widths and unreadable inputs are usage errors.
    let c = npz("c.npz", &[0.0; 2], &[1.0, 0.0, 0.0, 1.0]);
    let out = diffscale().args(["fd", "--ref"]).arg(&a).arg("--gen").arg(&c).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = diffscale().args(["fd", "--ref", "nope.npz", "--gen"]).arg(&c).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn negative_control_misplaced_crossover_fails() {
    let (code, v) = run_edited("calibration.yaml", "calibration/crossover-recovery", |t| {
        t.replace(
            "crossover: {x: x, a: large, b: small, min: 35, max: 43}",
            "crossover: {x: x, a: large, b: small, min: 80, max: 100}",
        )
    });
    assert_eq!((code, v.as_str()), (Some(1), "FAIL"));
}

#[test]
fn negative_control_tiny_training_fails_the_size_claim() {
    let claim = "mei2024/reduced-fixed-steps-bigger-better";
    let (code, v) = run_edited("mei2024.yaml", claim, |t| {
        t.replace(
            "smoke: {training: {steps: 300}, eval_samples: 2048, replicates: 2}",
            "smoke: {training: {steps: 3}, eval_samples: 2048, replicates: 3}",
        )
    });
    assert_eq!((code, v.as_str()), (Some(1), "FAIL"));
}

#[test]
fn tiny_training_puts_the_isoflop_optimum_on_the_grid_edge() {
    // Budgets so small that every size trains for a handful of steps (1 to 101): the optimum
    // sits at the smallest model, which is only a bound, so the claim cannot be decided (the
    // check's FAIL control, sizes shuffled, is in harness/check/tests.rs).
    let claim = "mei2024/reduced-compute-optimal-size";
    let dir = tempfile::tempdir().unwrap();
    let p = edited_suite(dir.path(), "mei2024.yaml", |t| {
        t.replace(
            "smoke: {budgets: [8.5e+8, 2.7e+9], replicates: 2",
            "smoke: {budgets: [2.0e+7, 2.0e+8], replicates: 3",
        )
    });
    let out = run_smoke(&dir.path().join("run"), &[p.to_str().unwrap(), "--claim", claim]);
    assert!(finished(&out));
    let s = summary(&dir.path().join("run"));
    let c = s["claims"].as_array().unwrap().iter().find(|c| c["id"] == claim).unwrap();
    assert_eq!(c["verdict"], "INCONCLUSIVE", "{c}");
    assert!(c["reason"].as_str().unwrap().contains("edge of the size grid"), "{c}");
}

#[test]
fn negative_control_tiny_training_fails_the_dit_gflops_claim() {
    let claim = "dit2023/reduced-fd-vs-gflops";
    let (code, v) = run_edited("dit2023.yaml", claim, |t| {
        t.replace("smoke: {training: {steps: 30}, replicates: 2", "smoke: {training: {steps: 1}, replicates: 3")
    });
    assert_eq!((code, v.as_str()), (Some(1), "FAIL"));
}

/// README's nightly recipe, its commands in order: sharded runs and the merge exit 0 although a
/// claim FAILs (`--no-fail-exit`), and `compare` is the gate: silent against its own baseline,
/// exit 1 with a JUnit failure and a JSON finding when a check's value left the baseline's band.
#[test]
fn the_nightly_recipe_runs_to_compare_and_compare_is_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    // The sampler-order claim made to FAIL (an impossible band for DDIM's order).
    let p =
        edited_suite(dir.path(), "calibration.yaml", |t| t.replace("min: -1.15, max: -0.85", "min: -3.15, max: -2.85"));
    let p = p.to_str().unwrap();
    let (a, b, m) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("all"));
    for (shard, out) in [("1/2", &a), ("2/2", &b)] {
        let o = run_smoke(out, &[p, "--no-fail-exit", "--shard", shard]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = diffscale().args(["merge", "--no-fail-exit"]).arg(&a).arg(&b).arg("--out").arg(&m).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(verdict(&summary(&m), "calibration/sampler-orders"), "FAIL");
    let o = diffscale().args(["merge"]).arg(&a).arg(&b).arg("--out").arg(dir.path().join("all2")).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "without the flag a FAIL exits 1");
    let base = m.join("summary.json");
    let o = diffscale().arg("compare").arg(&m).arg("--baseline").arg(&base).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // A baseline whose second check of the sampler claim measured something else.
    let mut s = summary(&m);
    let c = s["claims"].as_array_mut().unwrap().iter_mut().find(|c| c["id"] == "calibration/sampler-orders").unwrap();
    c["checks"][1]["measured"] = serde_json::json!({"value": 5.0, "lo": 4.9, "hi": 5.1});
    let moved = dir.path().join("baseline.json");
    std::fs::write(&moved, serde_json::to_string(&s).unwrap()).unwrap();
    let o =
        diffscale().arg("compare").arg(&m).arg("--baseline").arg(&moved).args(["--format", "junit"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let xml = String::from_utf8_lossy(&o.stdout);
    assert!(xml.contains("<failure message=\"check 2:"), "{xml}");
    let o =
        diffscale().arg("compare").arg(&m).arg("--baseline").arg(&moved).args(["--format", "json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["regressions"], 1, "{v}");
}
