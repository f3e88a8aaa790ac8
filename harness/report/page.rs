//! `index.html`: a run's results as one page a reviewer can filter and click through.
//!
//! Self-contained: no network, no CDN, no external script; it opens from the file system, with
//! the figures and case records beside it linked by relative paths. Written as well-formed
//! XHTML-style markup (every element closed, every attribute quoted, the script free of `<`
//! and `&`) so a test can check its structure without a browser.

use super::figures::FigureRef;
use super::Summary;
use crate::check::Verdict;
use crate::fit::fmt_num;
use crate::run::judge::ClaimResult;
use crate::run::Manifest;
use crate::suite::Plan;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Text for an element or a quoted attribute: the report's XML escape, and `'` too.
pub fn esc(s: &str) -> String {
    super::xml(s).replace('\'', "&#39;")
}

/// The anchor of a claim's section.
pub fn anchor(id: &str) -> String {
    format!("claim-{}", id.replace('/', "--"))
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1180px;padding:1em 1.5em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;border-top:1px solid #ddd;padding-top:1em}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border-bottom:1px solid #e4e4e4;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
.v{font-weight:600;padding:.1em .45em;border-radius:3px;white-space:nowrap}
.PASS{background:#d8efe4;color:#075e3b}.FAIL{background:#f8d7cc;color:#8a2a00}.INCONCLUSIVE{background:#fbeccc;color:#6b4a00}
.ERRATUM{background:#e4dcf2;color:#4b2a7a}.SKIPPED{background:#e8e8e8;color:#555}.REPORTED{background:#e0eefa;color:#124a74}
#filters{display:flex;gap:.8em;flex-wrap:wrap;align-items:center;margin:1em 0;padding:.6em;background:#f7f7f7;border-radius:4px}
#filters input{flex:1;min-width:14em;padding:.3em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.88em;color:#444}
.machine{font-size:.85em;color:#444}.muted{color:#666}code{font-size:.92em}
details{margin:.5em 0}details li{font-size:.85em}
";

// Filters rows and sections by paper, kind, verdict and free text; no `<` or `&` in here.
const SCRIPT: &str = "
function applyFilters() {
  var suite = document.getElementById('f-suite').value;
  var kind = document.getElementById('f-kind').value;
  var verdict = document.getElementById('f-verdict').value;
  var q = document.getElementById('f-text').value.toLowerCase();
  var shown = 0;
  document.querySelectorAll('[data-claim]').forEach(function (el) {
    var ok = (suite === '' || el.dataset.suite === suite)
      ? ((kind === '' || el.dataset.kind === kind)
        ? ((verdict === '' || el.dataset.verdict === verdict)
          ? (q === '' || el.dataset.text.indexOf(q) !== -1) : false) : false) : false;
    el.style.display = ok ? '' : 'none';
    if (ok) { if (el.tagName === 'TR') { shown += 1; } }
  });
  document.getElementById('shown').textContent = shown;
}
document.querySelectorAll('#filters select, #filters input').forEach(function (el) {
  el.addEventListener('input', applyFilters);
});
applyFilters();
";

fn badge(v: Verdict) -> String {
    format!("<span class=\"v {0}\">{0}</span>", v.label())
}

fn interval_text(c: &ClaimResult) -> String {
    match (c.measured, c.interval) {
        (Some(m), Some([lo, hi])) => format!("{} [{}, {}]", fmt_num(m), fmt_num(lo), fmt_num(hi)),
        (Some(m), None) => fmt_num(m),
        _ => "—".into(),
    }
}

/// `analytic` (counts and the papers' own numbers) or `empirical` (trained or sampled).
fn kind_of(manifest: &Manifest, id: &str) -> &'static str {
    match manifest.claims.iter().find(|c| c.id == id).map(|c| &c.plan) {
        Some(Plan::Run(e)) if e.is_analytic() => "analytic",
        Some(Plan::Run(_)) => "empirical",
        _ => "skipped",
    }
}

/// Attributes the filters read.
fn data_attrs(c: &ClaimResult, kind: &str) -> String {
    let text = format!("{} {} {}", c.id, c.claim, c.source).to_lowercase();
    format!(
        "data-claim=\"{}\" data-suite=\"{}\" data-kind=\"{kind}\" data-verdict=\"{}\" data-text=\"{}\"",
        esc(&c.id),
        esc(&c.suite),
        c.verdict.label(),
        esc(&text)
    )
}

fn options(label: &str, id: &str, values: &[String]) -> String {
    let mut s = format!("<label>{label} <select id=\"{id}\"><option value=\"\">all</option>");
    for v in values {
        let _ = write!(s, "<option value=\"{0}\">{0}</option>", esc(v));
    }
    s.push_str("</select></label>");
    s
}

fn machine_facts(summary: &Summary) -> String {
    let m = &summary.machine;
    let mut facts: Vec<(String, String)> = vec![
        ("cpu".into(), m.cpu.clone()),
        ("threads".into(), m.threads.to_string()),
        ("os".into(), m.os.clone()),
        ("device".into(), m.device.clone()),
    ];
    if let Ok(serde_json::Value::Object(n)) = serde_json::to_value(&m.numerics) {
        for (k, v) in n {
            let v = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
            facts.push((format!("numerics.{k}"), v));
        }
    }
    let items: Vec<String> = facts.iter().map(|(k, v)| format!("<b>{}</b> {}", esc(k), esc(v))).collect();
    items.join(" · ")
}

fn claim_section(out: &mut String, c: &ClaimResult, kind: &str, figs: &[FigureRef], manifest: &Manifest) {
    let _ = writeln!(out, "<section id=\"{}\" {}>", anchor(&c.id), data_attrs(c, kind));
    let _ = writeln!(out, "<h2><code>{}</code> {}</h2>", esc(&c.id), badge(c.verdict));
    let _ = writeln!(out, "<p>{}</p>", esc(&c.claim));
    let _ = writeln!(out, "<p class=\"muted\">Source: {} · {kind}</p>", esc(&c.source));
    let _ =
        writeln!(out, "<p>Expected: {} · measured [95% interval]: {}</p>", esc(&c.expected), esc(&interval_text(c)));
    if let Some(r) = &c.reason {
        let _ = writeln!(out, "<p><i>{}</i></p>", esc(r));
    }
    if let Some(m) = &c.interval_method {
        let _ = writeln!(out, "<p class=\"muted\">Intervals: {}</p>", esc(m));
    }
    if !c.checks.is_empty() {
        out.push_str("<table><tr><th>check</th><th>measured</th><th>expected</th><th>verdict</th></tr>\n");
        for chk in &c.checks {
            let m = chk.measured.map(|e| e.show()).unwrap_or_else(|| "—".into());
            let note = chk.note.as_deref().map(|n| format!("<br/><span class=\"muted\">{}</span>", esc(n)));
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&chk.check),
                note.unwrap_or_default(),
                esc(&m),
                esc(&chk.expected),
                badge(chk.verdict)
            );
            for r in &chk.rows {
                let _ = writeln!(
                    out,
                    "<tr class=\"muted\"><td>↳ {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&r.row),
                    esc(&r.measured.show()),
                    esc(&r.expected),
                    badge(r.verdict)
                );
            }
        }
        out.push_str("</table>\n");
    }
    for f in figs {
        let _ = writeln!(
            out,
            "<figure><a href=\"figures/{0}.svg\"><img src=\"figures/{0}.svg\" alt=\"figure of {1}\" loading=\"lazy\"/></a><figcaption>{2}</figcaption></figure>",
            esc(&f.stem),
            esc(&c.id),
            esc(&f.caption)
        );
    }
    if let Some(rc) = manifest.claims.iter().find(|r| r.id == c.id).filter(|r| !r.cases.is_empty()) {
        let _ = writeln!(out, "<details><summary>{} case record(s)</summary><ul>", rc.cases.len());
        for pc in &rc.cases {
            let _ = writeln!(out, "<li><a href=\"cases/{0}.json\">{1}</a></li>", esc(&pc.hash), esc(&pc.case_id));
        }
        out.push_str("</ul></details>\n");
    }
    out.push_str("</section>\n");
}

/// The whole page.
pub fn index_html(summary: &Summary, manifest: &Manifest, figures: &BTreeMap<String, Vec<FigureRef>>) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(s, "<title>diffscale results: {}</title>", esc(&summary.profile));
    let _ = writeln!(s, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(s, "<h1>diffscale results: profile <code>{}</code></h1>", esc(&summary.profile));
    let _ = writeln!(
        s,
        "<p>diffscale {} (commit <code>{}</code>) · {} claims: {}</p>",
        esc(&summary.diffscale_version),
        esc(&summary.git_commit),
        summary.claims.len(),
        summary.counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(s, "<p class=\"machine\">{}</p>", machine_facts(summary));
    let _ = writeln!(
        s,
        "<p class=\"muted\">PASS: the interval lies inside the band; FAIL: wholly outside; INCONCLUSIVE: it straddles an edge; \
         ERRATUM: the paper's printed numbers disagree with themselves or with the recomputation, as the suite predicts; \
         SKIPPED: not run in this profile. Intervals are 95%; their coverage is measured by <code>calibration/interval-coverage</code>.</p>"
    );
    let mut suites: Vec<String> = summary.claims.iter().map(|c| c.suite.clone()).collect();
    suites.dedup();
    let kinds: Vec<String> = ["analytic", "empirical", "skipped"].map(String::from).into();
    let verdicts: Vec<String> = ["PASS", "FAIL", "INCONCLUSIVE", "ERRATUM", "SKIPPED"].map(String::from).into();
    let _ = writeln!(
        s,
        "<div id=\"filters\">{}{}{}<input id=\"f-text\" type=\"search\" placeholder=\"search ids, claims, sources\"/><span><span id=\"shown\">{}</span> shown</span></div>",
        options("paper", "f-suite", &suites),
        options("kind", "f-kind", &kinds),
        options("verdict", "f-verdict", &verdicts),
        summary.claims.len()
    );
    s.push_str("<table id=\"verdicts\"><tr><th>id</th><th>claim</th><th>source</th><th>measured [interval]</th><th>verdict</th></tr>\n");
    for c in &summary.claims {
        let kind = kind_of(manifest, &c.id);
        let _ = writeln!(
            s,
            "<tr {}><td><a href=\"#{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            data_attrs(c, kind),
            anchor(&c.id),
            esc(&c.id),
            esc(&c.claim),
            esc(&c.source),
            esc(&interval_text(c)),
            badge(c.verdict)
        );
    }
    s.push_str("</table>\n");
    for c in &summary.claims {
        let figs = figures.get(&c.id).map(Vec::as_slice).unwrap_or(&[]);
        claim_section(&mut s, c, kind_of(manifest, &c.id), figs, manifest);
    }
    let _ = writeln!(s, "<script>{SCRIPT}</script>\n</body>\n</html>");
    s
}
