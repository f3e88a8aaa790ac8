//! The paper beside the reproduction: two panels on the same kind of axes, the paper's
//! published points (left) and the reduced run's (right), each relative to its own row with the
//! largest x (or its first row when x is the rows), so that shapes compare where units cannot.
//! Where the claim checks a power-law exponent of the drawn columns, both panels show the
//! band's edges as slopes through that reference point, and the right one the fitted exponent
//! with the verdict's interval.

use super::labels::axis;
use super::plot::{col_points, Figure, Plot, Pt, Series, PALETTE};
use crate::fit::fmt_num;
use crate::run::experiment::ClaimData;
use crate::run::judge::ClaimResult;
use crate::run::ResolvedClaim;
use crate::suite::{Check, PaperPanel};

/// Index of the reference point: the largest x, or the first row.
fn reference(xs: &[Option<f64>]) -> usize {
    (0..xs.len()).max_by(|a, b| xs[*a].unwrap_or(f64::MIN).total_cmp(&xs[*b].unwrap_or(f64::MIN))).unwrap_or(0)
}

/// y = (x / x_ref)^b through (x_ref, 1) over the points' x range.
fn slope(name: String, b: f64, pts: &[Pt], x_ref: f64, color: plotters::style::RGBColor) -> Series {
    let (lo, hi) = pts.iter().fold((f64::INFINITY, 0f64), |(a, c), p| (a.min(p.0), c.max(p.0)));
    let points = (0..=20)
        .map(|i| {
            let x = lo * (hi / lo).powf(i as f64 / 20.0);
            (x, (x / x_ref).powf(b), None)
        })
        .collect();
    Series { name, points, line: true, bar: false, color }
}

/// The paper's own log-log slope, fitted as every claim's power law is.
fn log_slope(pts: &[Pt]) -> Option<f64> {
    let (x, y): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.0, p.1)).unzip();
    crate::fit::power_law(&x, &y).map(|f| f.exponent)
}

/// The claim's exponent check on the drawn columns, with its outcome.
fn exponent_check<'a>(
    claim: &'a ResolvedClaim,
    result: &'a ClaimResult,
    p: &PaperPanel,
) -> Option<(&'a crate::suite::ExponentCheck, Option<crate::fit::Estimate>)> {
    claim.expect.iter().enumerate().find_map(|(i, c)| match c {
        Check::Exponent(e) if Some(&e.x) == p.vs.x.as_ref() && e.y == p.vs.y => {
            Some((e, result.checks.get(i).and_then(|o| o.measured)))
        }
        _ => None,
    })
}

/// The two-panel figure of a claim with a `paper_panel`.
pub fn paper_plot(claim: &ResolvedClaim, result: &ClaimResult, d: &ClaimData) -> Option<Plot> {
    let p = claim.paper_panel.as_ref()?;
    let numeric = p.x.is_some() && p.vs.x.is_some();
    // The paper's points, relative to the reference row.
    let pxs: Vec<Option<f64>> = p.points.iter().map(|q| q.x).collect();
    let pref = p.points.get(if numeric { reference(&pxs) } else { 0 })?;
    let paper: Vec<Pt> = p
        .points
        .iter()
        .enumerate()
        .map(|(i, q)| (if numeric { q.x.unwrap_or(f64::NAN) } else { i as f64 }, q.y / pref.y, None))
        .collect();
    // The reproduction's: mean and interval per row, relative to the reference row's mean.
    let ys = col_points(d, &p.vs.y)?;
    let xs: Vec<Option<f64>> = match &p.vs.x {
        Some(x) if numeric => col_points(d, x)?.iter().map(|v| v.map(|q| q.0)).collect(),
        _ => (0..d.rows.len()).map(|i| Some(i as f64)).collect(),
    };
    let rows: Vec<usize> = (0..d.rows.len()).filter(|i| ys[*i].is_some() && xs[*i].is_some()).collect();
    let r = if numeric {
        rows.iter().copied().max_by(|a, b| xs[*a].unwrap().total_cmp(&xs[*b].unwrap()))?
    } else {
        *rows.first()?
    };
    let y_ref = ys[r]?.0;
    let ours: Vec<Pt> = rows
        .iter()
        .map(|i| {
            let (m, iv) = ys[*i].unwrap();
            (xs[*i].unwrap(), m / y_ref, iv.map(|(lo, hi)| (lo / y_ref, hi / y_ref)))
        })
        .collect();
    let relative = if numeric { "relative to the row with the largest x" } else { "relative to the first row" };
    let mut left =
        vec![Series { name: "paper".into(), points: paper.clone(), line: !numeric, bar: false, color: PALETTE[1] }];
    let mut right = vec![Series {
        name: "diffscale (mean, 95% interval)".into(),
        points: ours.clone(),
        line: !numeric,
        bar: false,
        color: PALETTE[0],
    }];
    if numeric {
        if let Some((e, fitted)) = exponent_check(claim, result, p) {
            let (px, ox) = (pref.x.unwrap_or(1.0), xs[r].unwrap_or(1.0));
            for (edge, v) in [("band min", e.min), ("band max", e.max)] {
                if let Some(b) = v {
                    left.push(slope(format!("{edge}: exponent {}", fmt_num(b)), b, &paper, px, PALETTE[3]));
                    right.push(slope(format!("{edge}: exponent {}", fmt_num(b)), b, &ours, ox, PALETTE[3]));
                }
            }
            if let Some(b) = log_slope(&paper) {
                left.push(slope(format!("paper's fit: exponent {}", fmt_num(b)), b, &paper, px, PALETTE[2]));
            }
            if let Some(f) = fitted {
                right.push(slope(format!("fit: exponent {}", f.show()), f.value, &ours, ox, PALETTE[2]));
            }
        }
    }
    let ticks = |labels: Vec<String>| (!numeric).then_some(labels);
    let what = match &p.readout {
        Some(r) => format!("figure readouts ({r})"),
        None => "printed numbers".into(),
    };
    let from = p.from.as_deref().unwrap_or(&claim.id);
    let paper_fig = Figure {
        title: format!("{}: paper", claim.id),
        subtitle: format!(
            "The paper's {} against {} ({what}, via {from}; {}), {relative}",
            axis(claim, &p.y),
            p.x.as_deref().map(|x| axis(claim, x)).unwrap_or_else(|| "its rows".into()),
            claim.source
        ),
        x_label: p.x.as_deref().map(|x| axis(claim, x)).unwrap_or_default(),
        y_label: format!("{} ÷ reference row's", axis(claim, &p.y)),
        series: left,
        hlines: vec![(1.0, "reference row".into())],
        diagonal: false,
        ticks: ticks(p.points.iter().map(|q| q.label.clone()).collect()),
    };
    let ours_fig = Figure {
        title: format!("{}: diffscale ({})", claim.id, result.verdict.label()),
        subtitle: format!(
            "The reduced run's {} against {} (mean and 95% interval over seeds), {relative}",
            axis(claim, &p.vs.y),
            p.vs.x.as_deref().map(|x| axis(claim, x)).unwrap_or_else(|| "its rows".into()),
        ),
        x_label: p.vs.x.as_deref().map(|x| axis(claim, x)).unwrap_or_default(),
        y_label: format!("{} ÷ reference row's", axis(claim, &p.vs.y)),
        series: right,
        hlines: vec![(1.0, "reference row".into())],
        diagonal: false,
        ticks: ticks(d.rows.clone()),
    };
    Some(Plot::Panels(vec![paper_fig, ours_fig]))
}
