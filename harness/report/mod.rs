//! Reports of a run: `report.md`, `summary.json`, `junit.xml`, `index.html` and figures.

pub mod compare;
pub mod figures;
pub mod history;
pub mod labels;
pub mod loss_curves;
pub mod page;
mod paper_figures;
mod plot;
mod sweep_figures;

use crate::atomic::{write_atomic, write_json};
use crate::check::Verdict;
use crate::fit::fmt_num;
use crate::run::judge::ClaimResult;
use crate::run::record::{CaseRecord, Machine, GIT_COMMIT, SCHEMA_VERSION, VERSION};
use crate::run::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// `summary.json`: the machine-readable outcome of a run, and a baseline for `compare`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub diffscale_version: String,
    pub git_commit: String,
    pub profile: String,
    /// When the run was reported (UTC, RFC 3339): `history` orders runs by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub machine: Machine,
    pub counts: BTreeMap<String, usize>,
    pub claims: Vec<ClaimResult>,
}

impl Summary {
    pub fn new(manifest: &Manifest, claims: Vec<ClaimResult>) -> Self {
        let mut counts = BTreeMap::new();
        for c in &claims {
            *counts.entry(c.verdict.label().to_string()).or_insert(0) += 1;
        }
        Summary {
            schema_version: SCHEMA_VERSION,
            diffscale_version: VERSION.into(),
            git_commit: GIT_COMMIT.into(),
            profile: manifest.profile.name().into(),
            created: Some(crate::run::record::now_rfc3339()),
            machine: manifest.machine.clone(),
            counts,
            claims,
        }
    }

    pub fn worst(&self) -> Verdict {
        self.claims.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Pass)
    }
}

fn measured_text(c: &ClaimResult) -> String {
    match (c.measured, c.interval) {
        (Some(m), Some([lo, hi])) => format!("{} [{}, {}]", fmt_num(m), fmt_num(lo), fmt_num(hi)),
        (Some(m), None) => fmt_num(m),
        _ => "—".into(),
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn has_interval(c: &crate::check::CheckOutcome) -> bool {
    c.measured.is_some_and(|m| m.lo.is_some()) || c.rows.iter().any(|r| r.measured.lo.is_some())
}

pub fn markdown(summary: &Summary, figures: &BTreeMap<String, Vec<figures::FigureRef>>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# diffscale report: profile `{}`\n", summary.profile);
    let _ = writeln!(
        s,
        "diffscale {} (commit `{}`), {} ({} threads, {}).\n",
        summary.diffscale_version,
        summary.git_commit,
        summary.machine.cpu,
        summary.machine.threads,
        summary.machine.device
    );
    let counts: Vec<String> = summary.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(s, "**{} claims: {}.**\n", summary.claims.len(), counts.join(", "));
    let _ = writeln!(
        s,
        "Verdicts: PASS (the interval lies inside the band), FAIL (wholly outside), INCONCLUSIVE (it straddles an edge), \
         ERRATUM (the paper's printed numbers disagree with themselves or with the recomputation, as the suite predicts), \
         SKIPPED (not run in this profile); a REPORTED row is shown for information and decides nothing. Intervals over \
         seeds are jackknife-t intervals (fewer than 3 seeds cannot decide: the whole line); their coverage is measured \
         by `calibration/interval-coverage`. \"Measured\" is the first check's value: for `within` checks, the worst \
         row's |measured − printed| / tolerance (≤ 1 passes).\n"
    );
    let _ = writeln!(s, "| id | claim | source | expected | measured [interval] | verdict |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for c in &summary.claims {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | **{}** |",
            c.id,
            md_cell(&c.claim),
            md_cell(&c.source),
            md_cell(&c.expected),
            measured_text(c),
            c.verdict.label()
        );
    }
    for c in &summary.claims {
        let _ = writeln!(s, "\n## `{}`: {}\n", c.id, c.verdict.label());
        let _ = writeln!(s, "{} ({})\n", c.claim, c.source);
        if let Some(r) = &c.reason {
            let _ = writeln!(s, "> {}\n", md_cell(r));
        }
        if let Some(m) =
            c.interval_method.as_ref().filter(|_| c.interval.is_some() || c.checks.iter().any(has_interval))
        {
            let _ = writeln!(s, "Intervals (95%): {m}.\n");
        }
        if let Some(f) = &c.fit {
            let _ = writeln!(
                s,
                "Power-law fit of `{}` against `{}` over {} rows: exponent {}, prefactor {}, R² {}.\n",
                f.y,
                f.x,
                f.n,
                f.exponent.show(),
                f.prefactor.show(),
                fmt_num(f.r2)
            );
        }
        if !c.values.is_empty() {
            let v: Vec<String> = c.values.iter().map(|(k, v)| format!("{k} = {}", fmt_num(*v))).collect();
            let _ = writeln!(s, "Derived values: {}.\n", v.join(", "));
        }
        for chk in &c.checks {
            let m = chk.measured.map(|e| e.show()).unwrap_or_else(|| "—".into());
            let _ =
                writeln!(s, "- **{}** `{}`: measured {m} (expected {})", chk.verdict.label(), chk.check, chk.expected);
            if let Some(n) = &chk.note {
                let _ = writeln!(s, "  - {}", md_cell(n));
            }
            if !chk.rows.is_empty() {
                let _ = writeln!(s, "\n  | row | measured | expected | verdict | note |\n  |---|---|---|---|---|");
                for r in &chk.rows {
                    let _ = writeln!(
                        s,
                        "  | {} | {} | {} | {} | {} |",
                        md_cell(&r.row),
                        r.measured.show(),
                        md_cell(&r.expected),
                        r.verdict.label(),
                        md_cell(r.note.as_deref().unwrap_or(""))
                    );
                }
                let _ = writeln!(s);
            }
        }
        for fig in figures.get(&c.id).into_iter().flatten() {
            let _ = writeln!(s, "\n![{}](figures/{}.svg)\n\n*Figure: {}*", c.id, fig.stem, md_cell(&fig.caption));
        }
    }
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn junit(summary: &Summary) -> String {
    let mut by_suite: BTreeMap<&str, Vec<&ClaimResult>> = BTreeMap::new();
    for c in &summary.claims {
        by_suite.entry(&c.suite).or_default().push(c);
    }
    let count = |v: Verdict| summary.claims.iter().filter(|c| c.verdict == v).count();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"diffscale ({})\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
        summary.profile,
        summary.claims.len(),
        count(Verdict::Fail),
        count(Verdict::Skipped) + count(Verdict::Inconclusive)
    );
    for (suite, claims) in by_suite {
        let f = claims.iter().filter(|c| c.verdict == Verdict::Fail).count();
        let sk = claims.iter().filter(|c| matches!(c.verdict, Verdict::Skipped | Verdict::Inconclusive)).count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" skipped=\"{sk}\">",
            xml(suite),
            claims.len()
        );
        for c in claims {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                xml(suite),
                xml(&c.id),
                c.seconds
            );
            let msg = format!(
                "{} (measured {}; expected {})",
                c.reason.clone().unwrap_or_default(),
                measured_text(c),
                c.expected
            );
            match c.verdict {
                Verdict::Fail => {
                    let _ = write!(s, "<failure message=\"{}\"/>", xml(&msg));
                }
                Verdict::Skipped => {
                    let _ = write!(s, "<skipped message=\"{}\"/>", xml(c.reason.as_deref().unwrap_or("")));
                }
                Verdict::Inconclusive => {
                    let _ = write!(s, "<skipped message=\"INCONCLUSIVE: {}\"/>", xml(&msg));
                }
                Verdict::Erratum => {
                    let _ = write!(s, "<system-out>ERRATUM: {}</system-out>", xml(&msg));
                }
                Verdict::Pass | Verdict::Reported => {}
            }
            let _ = writeln!(s, "</testcase>");
        }
        let _ = writeln!(s, "  </testsuite>");
    }
    s.push_str("</testsuites>\n");
    s
}

/// Write every report of a run into `out`.
pub fn write_all(
    out: &Path,
    manifest: &Manifest,
    summary: &Summary,
    records: &BTreeMap<String, CaseRecord>,
) -> std::io::Result<()> {
    let figs = figures::write_figures(&out.join("figures"), manifest, summary, records)?;
    write_json(&out.join("summary.json"), summary)?;
    write_atomic(&out.join("junit.xml"), junit(summary).as_bytes())?;
    write_atomic(&out.join("report.md"), markdown(summary, &figs).as_bytes())?;
    write_atomic(&out.join("index.html"), page::index_html(summary, manifest, &figs).as_bytes())?;
    Ok(())
}
