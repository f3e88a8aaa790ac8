//! `diffscale history`: each claim's headline value, interval and band across a sequence of
//! runs (nightly ones, say), as one small figure per claim and a page, with the first run at
//! which each claim left its band or changed verdict.
//!
//! Runs are ordered by the time their summary was written (`created`); summaries from before
//! that field keep the order they were given in. Runs of different profiles measure different
//! things at different scales, and runs on machines whose numerics differ give other bits:
//! neither is mixed into one history (the latter unless asked).

use super::figures::{file_stem, write_figure};
use super::page::esc;
use super::plot::{Figure, Plot, Series, PALETTE};
use super::Summary;
use crate::check::Verdict;
use crate::fit::fmt_num;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One run of a claim's history.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub run: usize,
    pub verdict: Verdict,
    pub measured: Option<f64>,
    pub interval: Option<[f64; 2]>,
}

/// A claim across the runs, and the first change seen.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimHistory {
    pub id: String,
    pub band: Option<[Option<f64>; 2]>,
    pub points: Vec<Point>,
    /// The first run (index into `runs`) that left the band or changed verdict, and what it did.
    pub first_change: Option<(usize, String)>,
    /// Whether the latest run is such a change.
    pub latest_changed: bool,
}

/// A run as the history names it.
#[derive(Clone, Debug, Serialize)]
pub struct RunLabel {
    pub path: String,
    pub commit: String,
    pub created: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct History {
    pub profile: String,
    pub runs: Vec<RunLabel>,
    pub claims: Vec<ClaimHistory>,
}

fn outside(v: f64, band: &[Option<f64>; 2]) -> bool {
    band[0].is_some_and(|lo| v < lo) || band[1].is_some_and(|hi| v > hi)
}

/// What run `i` did relative to run `i − 1`, if it is a change worth flagging.
fn change(prev: &Point, cur: &Point, band: Option<&[Option<f64>; 2]>) -> Option<String> {
    if cur.verdict != prev.verdict {
        return Some(format!("verdict {} → {}", prev.verdict.label(), cur.verdict.label()));
    }
    let (b, m) = (band?, cur.measured?);
    let was_in = prev.measured.is_some_and(|p| !outside(p, b));
    (was_in && outside(m, b)).then(|| format!("left its band: {}", fmt_num(m)))
}

/// Order `summaries` and follow every claim through them. Err: they cannot share a history.
pub fn history(mut runs: Vec<(PathBuf, Summary)>, allow_mixed: bool) -> Result<History, String> {
    let Some((first_path, first)) = runs.first().cloned() else { return Err("no runs given".into()) };
    for (p, s) in &runs[1..] {
        if s.profile != first.profile {
            return Err(format!(
                "{} is a `{}` run and {} a `{}` run: a history follows one profile",
                p.display(),
                s.profile,
                first_path.display(),
                first.profile
            ));
        }
        let diff = s.machine.numerics.differences(&first.machine.numerics);
        if !diff.is_empty() && !allow_mixed {
            return Err(format!(
                "{} ran where results have other bits than {} ({}); follow them together anyway with --allow-mixed-machines",
                p.display(),
                first_path.display(),
                diff.join(", ")
            ));
        }
    }
    // RFC 3339 UTC strings sort as times; the sort is stable, so untimed runs keep their order.
    if runs.iter().all(|(_, s)| s.created.is_some()) {
        runs.sort_by(|a, b| a.1.created.cmp(&b.1.created));
    }
    let mut ids: Vec<String> = vec![];
    for (_, s) in &runs {
        for c in &s.claims {
            if !ids.contains(&c.id) {
                ids.push(c.id.clone());
            }
        }
    }
    let claims = ids
        .into_iter()
        .map(|id| {
            let mut band = None;
            let points: Vec<Point> = runs
                .iter()
                .enumerate()
                .filter_map(|(i, (_, s))| {
                    let c = s.claims.iter().find(|c| c.id == id)?;
                    band = c.band.or(band);
                    Some(Point { run: i, verdict: c.verdict, measured: c.measured, interval: c.interval })
                })
                .collect();
            let changes: Vec<(usize, String)> =
                points.windows(2).filter_map(|w| change(&w[0], &w[1], band.as_ref()).map(|m| (w[1].run, m))).collect();
            let latest_changed = changes.last().is_some_and(|c| c.0 == runs.len() - 1);
            ClaimHistory { id, band, points, first_change: changes.into_iter().next(), latest_changed }
        })
        .collect();
    let runs = runs
        .into_iter()
        .map(|(p, s)| RunLabel { path: p.display().to_string(), commit: s.git_commit, created: s.created })
        .collect();
    Ok(History { profile: first.profile, runs, claims })
}

/// A run's tick: its short commit.
fn tick(r: &RunLabel) -> String {
    r.commit.chars().take(7).collect()
}

fn figure(h: &History, c: &ClaimHistory) -> Plot {
    let points = c
        .points
        .iter()
        .filter_map(|p| Some((p.run as f64, p.measured.filter(|m| m.is_finite())?, p.interval.map(|i| (i[0], i[1])))))
        .map(|(x, y, i)| (x, y, i.filter(|(lo, hi)| lo.is_finite() && hi.is_finite())))
        .collect();
    let mut hlines = vec![];
    for (v, name) in c.band.iter().flat_map(|b| [(b[0], "band min"), (b[1], "band max")]) {
        if let Some(v) = v {
            hlines.push((v, format!("{name} {}", fmt_num(v))));
        }
    }
    Plot::One(Figure {
        title: format!("{} over {} runs", c.id, h.runs.len()),
        subtitle: format!("headline value of {} per run, with its 95% interval and band", c.id),
        x_label: "run (commit)".into(),
        y_label: "headline value".into(),
        series: vec![Series { name: "headline".into(), points, line: true, bar: false, color: PALETTE[0] }],
        hlines,
        diagonal: false,
        ticks: Some(h.runs.iter().map(tick).collect()),
    })
}

fn page(h: &History, stems: &[String]) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(s, "<title>diffscale history: {}</title>", esc(&h.profile));
    s.push_str("<style>body{font-family:system-ui,sans-serif;max-width:1180px;margin:0 auto;padding:1em}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.25em .5em;text-align:left}.flag{color:#8a2a00;font-weight:600}img{max-width:100%}</style>\n</head>\n<body>\n");
    let _ = writeln!(s, "<h1>diffscale history: profile <code>{}</code>, {} runs</h1>", esc(&h.profile), h.runs.len());
    s.push_str("<table><tr><th>#</th><th>commit</th><th>written</th><th>run</th></tr>\n");
    for (i, r) in h.runs.iter().enumerate() {
        let _ = writeln!(
            s,
            "<tr><td>{i}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&r.commit),
            esc(r.created.as_deref().unwrap_or("—")),
            esc(&r.path)
        );
    }
    s.push_str("</table>\n");
    for (c, stem) in h.claims.iter().zip(stems) {
        let _ = writeln!(s, "<h2><code>{}</code></h2>", esc(&c.id));
        match &c.first_change {
            Some((run, what)) => {
                let latest = if c.latest_changed { " (the latest run changed)" } else { "" };
                let _ = writeln!(s, "<p class=\"flag\">first change at run {run}: {}{latest}</p>", esc(what));
            }
            None => s.push_str("<p>no change across these runs</p>\n"),
        }
        let _ = writeln!(
            s,
            "<img src=\"figures/{0}.svg\" alt=\"history of {1}\" loading=\"lazy\"/>",
            esc(stem),
            esc(&c.id)
        );
    }
    s.push_str("</body>\n</html>\n");
    s
}

/// Write `history.json`, a figure per claim and `index.html` into `out`.
pub fn write(out: &Path, h: &History) -> std::io::Result<()> {
    let figs = out.join("figures");
    let mut stems = vec![];
    for c in &h.claims {
        let stem = file_stem(&c.id);
        write_figure(&figs, &stem, &figure(h, c))?;
        stems.push(stem);
    }
    crate::atomic::write_json(&out.join("history.json"), h)?;
    crate::atomic::write_atomic(&out.join("index.html"), page(h, &stems).as_bytes())
}
