//! Judging a whole claim from its case records.

use super::experiment::assemble;
use super::record::{CaseRecord, CaseStatus};
use super::ResolvedClaim;
use crate::check::{evaluate, fit_claim, CheckOutcome, ClaimData, Ctx, FitOutcome, Verdict};
use crate::fit::Estimate;
use crate::suite::validate::columns;
use crate::suite::{Check, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One claim's outcome: what `summary.json`, `report.md` and `junit.xml` are made of.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClaimResult {
    pub id: String,
    pub suite: String,
    pub claim: String,
    pub source: String,
    pub profile: String,
    pub verdict: Verdict,
    /// The headline number (the first check's measured value).
    #[serde(default, with = "crate::fit::json_float::option")]
    pub measured: Option<f64>,
    #[serde(default, with = "crate::fit::json_float::pair")]
    pub interval: Option<[f64; 2]>,
    /// How the intervals were made (over seeds, or over a table's rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_method: Option<String>,
    pub expected: String,
    /// The band the headline value must lie in (`[min, max]`, either open), where the first
    /// check has one: what `history` draws and tests each run against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<[Option<f64>; 2]>,
    /// Why it was skipped or failed, or what the errata are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<FitOutcome>,
    pub checks: Vec<CheckOutcome>,
    /// Values the experiment derives for the report (e.g. utilisation, price per GPU-hour).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    /// Content hash of the fully resolved claim.
    pub claim_hash: String,
    pub suite_version: u32,
    pub cases: usize,
    pub seconds: f64,
}

/// The claim's table of values, from its records (for figures as well as checks).
pub fn claim_data(claim: &ResolvedClaim, records: &BTreeMap<String, CaseRecord>) -> Option<ClaimData> {
    let Plan::Run(exp) = &claim.plan else {
        return None;
    };
    let rows = columns(exp).rows;
    let cases: Vec<_> = claim
        .cases
        .iter()
        .filter_map(|pc| records.get(&pc.hash))
        .filter(|r| r.status == CaseStatus::Ok)
        .map(|r| (r.row.clone(), r.replicate, r.values.clone()))
        .collect();
    Some(assemble(exp, &rows, &cases))
}

fn opposite_reading(c: &Check) -> bool {
    matches!(c, Check::GuidanceOptimum(g) if g.independent)
}

/// The band of a claim's headline (its first check's value): a `within` check's headline is
/// the worst row's |measured − printed| / tolerance, which passes at ≤ 1.
fn headline_band(c: &Check) -> Option<[Option<f64>; 2]> {
    match c {
        Check::Within(_) => Some([None, Some(1.0)]),
        _ => crate::suite::validate::check_band(c).map(|(lo, hi)| [lo, hi]),
    }
}

pub fn judge(claim: &ResolvedClaim, records: &BTreeMap<String, CaseRecord>) -> ClaimResult {
    let mut res = ClaimResult {
        id: claim.id.clone(),
        suite: claim.suite.clone(),
        claim: claim.claim.clone(),
        source: claim.source.clone(),
        profile: claim.profile.name().into(),
        verdict: Verdict::Pass,
        measured: None,
        interval: None,
        interval_method: None,
        expected: String::new(),
        band: claim.expect.first().and_then(headline_band),
        reason: None,
        fit: None,
        checks: vec![],
        values: BTreeMap::new(),
        claim_hash: claim.hash.clone(),
        suite_version: claim.suite_version,
        cases: claim.cases.len(),
        seconds: claim.cases.iter().filter_map(|c| records.get(&c.hash)).map(|r| r.seconds).sum(),
    };
    let exp = match &claim.plan {
        Plan::Skip(why) => {
            res.verdict = Verdict::Skipped;
            res.reason = Some(why.clone());
            return res;
        }
        Plan::Run(e) => e,
    };
    let missing = claim.cases.iter().filter(|c| !records.contains_key(&c.hash)).count();
    let failed: Vec<&CaseRecord> =
        claim.cases.iter().filter_map(|c| records.get(&c.hash)).filter(|r| r.status == CaseStatus::Failed).collect();
    if missing > 0 || !failed.is_empty() {
        res.verdict = Verdict::Fail;
        res.reason = Some(match failed.first() {
            Some(r) => format!("case {} failed: {}", r.case_id, r.reason.clone().unwrap_or_default()),
            None => format!("{missing} case(s) have no result"),
        });
        return res;
    }
    let data = claim_data(claim, records).expect("a run plan");
    let mut cols = columns(exp);
    // A fit of a column the data cannot fill is not attempted; checks of `fit.*` then say why.
    let fit_spec = claim.fit.as_ref().filter(|f| {
        let why = [&f.power_law.x, &f.power_law.y].into_iter().find_map(|c| cols.unavailable.get(c.as_str()).cloned());
        if let Some(why) = why {
            cols.unavailable.insert("fit".into(), format!("a fit of a column {why}"));
        }
        !cols.unavailable.contains_key("fit")
    });
    res.interval_method = if data.seeded {
        let n = data.measured.values().flatten().map(|r| r.len()).max().unwrap_or(0);
        Some(crate::fit::interval::method_text(n))
    } else {
        Some("percentile bootstrap over the table's rows (exact values have none)".into())
    };
    res.values = data.scalars.clone();
    let mut ctx =
        Ctx { data: &data, fit: None, cols: &cols, boot: &claim.bootstrap, suite: &claim.suite, claim: &claim.id };
    let fit = match fit_spec {
        Some(spec) => match fit_claim(&ctx, spec) {
            Ok(Some(f)) => Some(f),
            Ok(None) => {
                res.verdict = Verdict::Fail;
                res.reason =
                    Some("the power law could not be fitted (needs positive values and two distinct x)".into());
                return res;
            }
            Err(e) => {
                res.verdict = Verdict::Fail;
                res.reason = Some(e);
                return res;
            }
        },
        None => None,
    };
    ctx.fit = fit.as_ref();
    res.checks = claim.expect.iter().enumerate().map(|(i, c)| evaluate(&ctx, c, i)).collect();
    // A check of the opposite reading (a write-up's "w* does not move") is judged on the same
    // data and shown with its own verdict, but the claim is the paper's reading: it does not count.
    for (o, c) in res.checks.iter_mut().zip(&claim.expect) {
        if opposite_reading(c) {
            let n = "the opposite reading, judged on the same data: shown, not counted in the claim's verdict";
            o.note = Some(o.note.take().map_or(n.to_string(), |x| format!("{x}; {n}")));
        }
    }
    res.verdict = Verdict::combine(
        res.checks.iter().zip(&claim.expect).filter(|(_, c)| !opposite_reading(c)).map(|(o, _)| o.verdict),
    );
    if let Some(first) = res.checks.first() {
        res.measured = first.measured.map(|e: Estimate| e.value);
        res.interval = first.measured.and_then(|e| Some([e.lo?, e.hi?]));
        res.expected = first.check.clone();
    }
    // One line per distinct note, naming every row it applies to.
    let mut notes: Vec<(Vec<String>, String)> = vec![];
    for c in &res.checks {
        for r in &c.rows {
            if let Some(n) = &r.note {
                match notes.iter_mut().find(|(_, text)| text == n) {
                    Some((rows, _)) if !rows.contains(&r.row) => rows.push(r.row.clone()),
                    Some(_) => {}
                    None => notes.push((vec![r.row.clone()], n.clone())),
                }
            }
        }
        if let Some(n) = &c.note {
            notes.push((vec![], n.clone()));
        }
    }
    if !notes.is_empty() {
        let lines: Vec<String> = notes
            .iter()
            .map(|(rows, n)| if rows.is_empty() { n.clone() } else { format!("{}: {n}", rows.join(", ")) })
            .collect();
        res.reason = Some(lines.join("; "));
    }
    res.fit = fit;
    res
}
