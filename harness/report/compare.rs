//! Nightly regression: compare a run's summary with a baseline summary.
//!
//! A claim regresses when its verdict worsens (PASS/ERRATUM < SKIPPED < INCONCLUSIVE < FAIL)
//! or when its headline value leaves the baseline's tolerance: inside the baseline's interval
//! when it had one, else within `max(abs, rel·|baseline|)` of the baseline value. A claim
//! missing from the run is a regression too; a new claim is reported, not failed.

use super::Summary;
use crate::check::Verdict;
use crate::fit::fmt_num;

#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub id: String,
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

pub fn compare(run: &Summary, baseline: &Summary, rel: f64, abs: f64) -> Vec<Finding> {
    let mut out = vec![];
    for b in &baseline.claims {
        let Some(r) = run.claims.iter().find(|c| c.id == b.id) else {
            out.push(Finding { id: b.id.clone(), regression: true, message: "missing from the run".into() });
            continue;
        };
        if rank(r.verdict) > rank(b.verdict) {
            out.push(Finding {
                id: b.id.clone(),
                regression: true,
                message: format!("verdict worsened: {} → {}", b.verdict.label(), r.verdict.label()),
            });
        }
        if let (Some(old), Some(new)) = (b.measured, r.measured) {
            let ok = match b.interval {
                Some([lo, hi]) => new >= lo && new <= hi,
                None => (new - old).abs() <= abs.max(rel * old.abs()),
            };
            if !ok {
                let tol = match b.interval {
                    Some([lo, hi]) => {
                        format!("baseline interval [{}, {}]", fmt_num(lo), fmt_num(hi))
                    }
                    None => format!("±max({}, {}%)", fmt_num(abs), fmt_num(rel * 100.0)),
                };
                out.push(Finding {
                    id: b.id.clone(),
                    regression: true,
                    message: format!("value moved: {} → {} (outside {tol})", fmt_num(old), fmt_num(new)),
                });
            }
        }
        if rank(r.verdict) < rank(b.verdict) {
            out.push(Finding {
                id: b.id.clone(),
                regression: false,
                message: format!("verdict improved: {} → {}", b.verdict.label(), r.verdict.label()),
            });
        }
    }
    for r in &run.claims {
        if !baseline.claims.iter().any(|b| b.id == r.id) {
            out.push(Finding {
                id: r.id.clone(),
                regression: false,
                message: format!("new claim ({})", r.verdict.label()),
            });
        }
    }
    out
}
