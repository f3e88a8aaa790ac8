//! Nightly regression: compare a run's summary with a baseline summary.
//!
//! Every check of every claim is compared, not only the headline. A check regresses when its
//! verdict worsens (PASS/ERRATUM/REPORTED < INCONCLUSIVE < FAIL) or when its measured value
//! leaves the baseline's tolerance: inside the baseline's interval when it had one, else within
//! `max(abs, rel·|baseline|)` of the baseline value. A claim that no longer runs (any verdict →
//! SKIPPED, FAIL included: a skip must not hide a failure) or is missing from the run regresses
//! too; a claim or check that is new is reported, not failed.

use super::Summary;
use crate::check::{CheckOutcome, Verdict};
use crate::fit::fmt_num;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub id: String,
    /// The check it is about (`check 2: …`), or none for the claim as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub regression: bool,
    pub message: String,
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Pass | Verdict::Erratum | Verdict::Reported => 0,
        Verdict::Skipped => 1,
        Verdict::Inconclusive => 2,
        Verdict::Fail => 3,
    }
}

/// Whether `new` lies within the tolerance `old` sets, and that tolerance in words.
fn within(old: f64, lo: Option<f64>, hi: Option<f64>, new: f64, rel: f64, abs: f64) -> (bool, String) {
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo.is_finite() || hi.is_finite() => {
            (new >= lo && new <= hi, format!("baseline interval [{}, {}]", fmt_num(lo), fmt_num(hi)))
        }
        // Non-finite values (no crossover, an unbounded interval) compare by identity.
        _ if !old.is_finite() || !new.is_finite() => {
            (old.to_bits() == new.to_bits() || (old.is_nan() && new.is_nan()), "the same non-finite value".into())
        }
        _ => (
            (new - old).abs() <= abs.max(rel * old.abs()),
            format!("±max({}, {}%)", fmt_num(abs), fmt_num(rel * 100.0)),
        ),
    }
}

/// Check `i`'s verdict, and its value unless it is the claim's headline (check 1, compared
/// with the claim).
fn compare_check(id: &str, i: usize, b: &CheckOutcome, r: &CheckOutcome, rel: f64, abs: f64, out: &mut Vec<Finding>) {
    let name = Some(format!("check {}: {}", i + 1, b.check));
    let mut push = |regression, message| out.push(Finding { id: id.into(), check: name.clone(), regression, message });
    if rank(r.verdict) > rank(b.verdict) {
        push(true, format!("verdict worsened: {} → {}", b.verdict.label(), r.verdict.label()));
    } else if rank(r.verdict) < rank(b.verdict) {
        push(false, format!("verdict improved: {} → {}", b.verdict.label(), r.verdict.label()));
    }
    if let (Some(old), Some(new), true) = (&b.measured, &r.measured, i > 0) {
        let (ok, tol) = within(old.value, old.lo, old.hi, new.value, rel, abs);
        if !ok {
            push(true, format!("value moved: {} → {} (outside {tol})", fmt_num(old.value), fmt_num(new.value)));
        }
    }
}

pub fn compare(run: &Summary, baseline: &Summary, rel: f64, abs: f64) -> Vec<Finding> {
    let mut out = vec![];
    let claim = |id: &str, regression, message: String| Finding { id: id.into(), check: None, regression, message };
    for b in &baseline.claims {
        let Some(r) = run.claims.iter().find(|c| c.id == b.id) else {
            out.push(claim(&b.id, true, "missing from the run".into()));
            continue;
        };
        if r.verdict == Verdict::Skipped && b.verdict != Verdict::Skipped {
            let why = r.reason.as_deref().unwrap_or("no reason given");
            out.push(claim(&b.id, true, format!("no longer runs: {} → SKIPPED ({why})", b.verdict.label())));
            continue;
        }
        if rank(r.verdict) > rank(b.verdict) {
            out.push(claim(&b.id, true, format!("verdict worsened: {} → {}", b.verdict.label(), r.verdict.label())));
        } else if rank(r.verdict) < rank(b.verdict) {
            out.push(claim(&b.id, false, format!("verdict improved: {} → {}", b.verdict.label(), r.verdict.label())));
        }
        if let (Some(old), Some(new)) = (b.measured, r.measured) {
            let (lo, hi) = (b.interval.map(|i| i[0]), b.interval.map(|i| i[1]));
            let (ok, tol) = within(old, lo, hi, new, rel, abs);
            if !ok {
                out.push(claim(
                    &b.id,
                    true,
                    format!("value moved: {} → {} (outside {tol})", fmt_num(old), fmt_num(new)),
                ));
            }
        }
        for (i, bc) in b.checks.iter().enumerate() {
            match r.checks.get(i) {
                Some(rc) if rc.check == bc.check => compare_check(&b.id, i, bc, rc, rel, abs, &mut out),
                _ => out.push(Finding {
                    id: b.id.clone(),
                    check: Some(format!("check {}: {}", i + 1, bc.check)),
                    regression: true,
                    message: "missing from the run (the claim's checks changed)".into(),
                }),
            }
        }
        for (i, rc) in r.checks.iter().enumerate().skip(b.checks.len()) {
            out.push(Finding {
                id: b.id.clone(),
                check: Some(format!("check {}: {}", i + 1, rc.check)),
                regression: false,
                message: format!("new check ({})", rc.verdict.label()),
            });
        }
    }
    for r in &run.claims {
        if !baseline.claims.iter().any(|b| b.id == r.id) {
            out.push(claim(&r.id, false, format!("new claim ({})", r.verdict.label())));
        }
    }
    out
}

/// The findings as a JUnit report: one test case per baseline claim, failed when it regressed.
pub fn junit(baseline: &Summary, findings: &[Finding]) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let failed = baseline.claims.iter().filter(|b| findings.iter().any(|f| f.regression && f.id == b.id)).count();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"diffscale compare\" tests=\"{}\" failures=\"{failed}\">\n",
        baseline.claims.len()
    );
    for b in &baseline.claims {
        x += &format!("  <testcase classname=\"{}\" name=\"{}\">\n", esc(&b.suite), esc(&b.id));
        for f in findings.iter().filter(|f| f.regression && f.id == b.id) {
            let what = f.check.as_deref().map(|c| format!("{c}: ")).unwrap_or_default();
            x += &format!("    <failure message=\"{}\"/>\n", esc(&format!("{what}{}", f.message)));
        }
        x += "  </testcase>\n";
    }
    x + "</testsuite>\n"
}
