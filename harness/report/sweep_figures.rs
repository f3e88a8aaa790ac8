//! Figures of trained sampler sweeps: quality against sampling cost per model (Mei et al.
//! Fig. 6), the samplers side by side (Fig. 11–12), the w* heat map (Fig. 8) and distillation
//! bars (Fig. 13).

use super::labels::{axis, axis_many};
use super::plot::{col_points, header, model_legend, Figure, Heat, Plot, Pt, RowPoints, Series, PALETTE};
use crate::check::sampling::guidance_optima;
use crate::fit;
use crate::run::experiment::ClaimData;
use crate::run::ResolvedClaim;
use crate::suite::{Check, Denoiser, Experiment, Plan};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The model a row belongs to: its label before the first " · ".
fn model_of(row: &str) -> &str {
    row.split(" · ").next().unwrap_or(row)
}

fn models(d: &ClaimData) -> Vec<String> {
    let mut m: Vec<String> = vec![];
    for r in &d.rows {
        if !m.iter().any(|x| x == model_of(r)) {
            m.push(model_of(r).to_string());
        }
    }
    m
}

/// Per model: (cost, y) at each step count, the best w where w is swept.
fn cost_curves(d: &ClaimData, cost: &str, y: &str) -> Vec<Series> {
    let (Some(c), Some(v), Some(n)) = (col_points(d, cost), col_points(d, y), col_points(d, "steps")) else {
        return vec![];
    };
    models(d)
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let mut best: Vec<(f64, Pt)> = vec![];
            // Per step count the best cell (over w); with w swept, every cell (costs differ).
            let swept = d.measured.contains_key("guidance");
            for i in (0..d.rows.len()).filter(|i| model_of(&d.rows[*i]) == m) {
                let (Some(ci), Some(vi), Some(ni)) = (&c[i], &v[i], &n[i]) else { continue };
                let pt = (ci.0, vi.0, vi.1);
                if swept {
                    best.push((ni.0, pt));
                    continue;
                }
                match best.iter_mut().find(|b| b.0 == ni.0) {
                    Some(b) if b.1 .1 > pt.1 => b.1 = pt,
                    Some(_) => {}
                    None => best.push((ni.0, pt)),
                }
            }
            let mut points: Vec<Pt> = best.into_iter().map(|b| b.1).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if d.measured.contains_key("guidance") {
                // With w swept a cell's cost depends on w: draw the frontier the checks use, the
                // best quality at cost ≤ c.
                let mut best_y = f64::INFINITY;
                points.retain(|p| {
                    let better = p.1 < best_y;
                    best_y = best_y.min(p.1);
                    better
                });
            }
            let name = model_legend(d, m, |r| model_of(r) == m);
            Series { name, points, line: true, bar: false, color: PALETTE[k % PALETTE.len()] }
        })
        .collect()
}

fn cost_figure(title: &str, claim: &ResolvedClaim, d: &ClaimData, cost: &str, y: &str) -> Figure {
    Figure {
        title: title.to_string(),
        subtitle: format!(
            "{y} against sampling {cost} (per-step cost relative to the largest model × evaluations), one curve per model; best w per step count where swept ({})",
            claim.source
        ),
        x_label: axis(claim, cost),
        y_label: axis(claim, y),
        series: cost_curves(d, cost, y),
        hlines: vec![],
        diagonal: false,
        ticks: None,
    }
}

/// Quality against steps per model, one panel per sampler.
fn sampler_panels(title: &str, claim: &ResolvedClaim, d: &ClaimData, samplers: &[String]) -> Plot {
    Plot::Panels(
        samplers
            .iter()
            .map(|s| Figure {
                title: format!("{title}: {s}"),
                subtitle: format!("FD of {s} samples against steps, one curve per model"),
                x_label: axis(claim, "steps"),
                y_label: axis(claim, s),
                series: cost_curves(d, "steps", s),
                hlines: vec![],
                diagonal: false,
                ticks: None,
            })
            .collect(),
    )
}

fn distill_bars(title: &str, claim: &ResolvedClaim, d: &ClaimData, nums: &[String], den: &str) -> Option<Plot> {
    let a = col_points(d, den)?;
    let students: Vec<RowPoints> = nums.iter().filter_map(|n| col_points(d, n)).collect();
    let rows: Vec<usize> =
        (0..d.rows.len()).filter(|i| a[*i].is_some() && students.iter().any(|b| b[*i].is_some())).collect();
    let bars = |col: &RowPoints, shift: f64| -> Vec<Pt> {
        rows.iter().enumerate().filter_map(|(k, i)| col[*i].map(|(m, s)| (k as f64 + shift, m, s))).collect()
    };
    let width = 0.8 / (1 + students.len()) as f64;
    let shift = |k: usize| -0.4 + width * (k as f64 + 0.5);
    let undistilled = format!("undistilled ({den})");
    let mut series =
        vec![Series { name: undistilled, points: bars(&a, shift(0)), line: false, bar: true, color: PALETTE[0] }];
    for (k, (b, n)) in students.iter().zip(nums).enumerate() {
        let name = format!("distilled ({n})");
        series.push(Series { name, points: bars(b, shift(k + 1)), line: false, bar: true, color: PALETTE[k + 1] });
    }
    Some(Plot::One(Figure {
        title: title.to_string(),
        subtitle: format!(
            "FD at the students' step count, before and after distillation (pd: progressive, cd: consistency; {})",
            claim.source
        ),
        x_label: "model".into(),
        y_label: axis_many(claim, &std::iter::once(den).chain(nums.iter().map(|n| n.as_str())).collect::<Vec<_>>()),
        series,
        hlines: vec![],
        diagonal: false,
        ticks: Some(rows.iter().map(|i| d.rows[*i].clone()).collect()),
    }))
}

fn heat(title: &str, claim: &ResolvedClaim, d: &ClaimData, g: &crate::suite::GuidanceOptimumCheck) -> Option<Plot> {
    let mean = |c: &str| col_points(d, c).map(|v| v.iter().map(|p| p.map_or(f64::NAN, |q| q.0)).collect::<Vec<_>>());
    let (w, y, within, across) = (mean(&g.w)?, mean(&g.y)?, mean(&g.within)?, mean(&g.across)?);
    let opt = guidance_optima(&w, &y, &within, &across);
    let mut xs: Vec<f64> = opt.iter().map(|o| o.0 .1).collect();
    let mut ys: Vec<f64> = opt.iter().map(|o| o.0 .0).collect();
    for v in [&mut xs, &mut ys] {
        v.sort_by(f64::total_cmp);
        v.dedup();
    }
    let values = ys
        .iter()
        .map(|a| xs.iter().map(|b| opt.iter().find(|o| o.0 == (*a, *b)).and_then(|o| o.1).map(f64::exp)).collect())
        .collect();
    Some(Plot::Heat(Heat {
        title: title.to_string(),
        subtitle: format!(
            "FD-optimal guidance weight w* per ({}, {}), from the mean {} over replicates",
            g.within, g.across, g.y
        ),
        x_label: axis(claim, &g.across),
        y_label: axis(claim, &g.within),
        x_ticks: xs.iter().map(|v| fit::fmt_num(*v)).collect(),
        y_ticks: ys.iter().map(|v| fit::fmt_num(*v)).collect(),
        values,
    }))
}

/// Every row's `y` as a bar (all arms of a training sweep, checked or not).
fn arm_bars(title: &str, claim: &ResolvedClaim, d: &ClaimData, y: &str) -> Option<Plot> {
    let v = col_points(d, y)?;
    let rows: Vec<usize> = (0..d.rows.len()).filter(|i| v[*i].is_some()).collect();
    let points = rows.iter().enumerate().filter_map(|(k, i)| v[*i].map(|(m, s)| (k as f64, m, s))).collect();
    Some(Plot::One(Figure {
        title: title.to_string(),
        subtitle: format!("{y} of every model (mean and 95% interval over seeds; {})", claim.source),
        x_label: "model".into(),
        y_label: axis(claim, y),
        series: vec![Series { name: axis(claim, y), points, line: false, bar: true, color: PALETTE[0] }],
        hlines: vec![],
        diagonal: false,
        ticks: Some(rows.iter().map(|i| d.rows[*i].clone()).collect()),
    }))
}

/// The two sides of each pair as curves along the pairs (e.g. naive and deferred masking
/// against the mask ratio).
fn pair_curves(title: &str, claim: &ResolvedClaim, d: &ClaimData, g: &crate::suite::GapCheck) -> Option<Plot> {
    let v = col_points(d, &g.y)?;
    let side = |k: usize| -> Vec<Pt> {
        g.pairs
            .iter()
            .enumerate()
            .filter_map(|(j, p)| {
                let i = d.rows.iter().position(|r| *r == p[k])?;
                v[i].map(|(m, s)| (j as f64, m, s))
            })
            .collect()
    };
    let name = |k: usize| g.pairs.first().map(|p| p[k].clone()).unwrap_or_default();
    Some(Plot::One(Figure {
        title: title.to_string(),
        subtitle: format!("{} of each pair's two sides, pair by pair ({})", g.y, claim.source),
        x_label: "pair".into(),
        y_label: axis(claim, &g.y),
        series: vec![
            Series { name: format!("{} …", name(0)), points: side(0), line: true, bar: false, color: PALETTE[3] },
            Series { name: format!("{} …", name(1)), points: side(1), line: true, bar: false, color: PALETTE[0] },
        ],
        hlines: vec![],
        diagonal: false,
        ticks: Some(g.pairs.iter().map(|p| format!("{} / {}", p[0], p[1])).collect()),
    }))
}

/// Figures of training sweeps without budgets that compare named arms.
fn arms_plot(title: &str, claim: &ResolvedClaim, d: &ClaimData) -> Option<Plot> {
    match claim.expect.first()? {
        Check::Gap(g) => pair_curves(title, claim, d, g),
        Check::Monotone(m) if m.x.starts_with("printed.") => arm_bars(title, claim, d, &m.y),
        _ => None,
    }
}

/// The figure of a trained (or guidance-swept) sampler sweep, chosen from its first check.
pub fn sweep_plot(title: &str, claim: &ResolvedClaim, d: &ClaimData) -> Option<Plot> {
    let Plan::Run(e) = &claim.plan else { return None };
    if let Experiment::TrainSweep(t) = e.as_ref() {
        return if t.budgets.is_empty() { arms_plot(title, claim, d) } else { None };
    }
    let Experiment::SamplerSweep(s) = e.as_ref() else { return None };
    if s.denoiser != Denoiser::Trained {
        return None;
    }
    let frontier_ys: Vec<String> = claim
        .expect
        .iter()
        .filter_map(|c| match c {
            Check::SamplingFrontier(f) => Some(f.y.clone()),
            _ => None,
        })
        .collect();
    match claim.expect.first()? {
        Check::Ordered(o) => Some(sampler_panels(title, claim, d, &o.columns)),
        Check::SamplingFrontier(f) if frontier_ys.len() > 1 => Some(Plot::Panels(
            frontier_ys.iter().map(|y| cost_figure(&format!("{title}: {y}"), claim, d, &f.cost, y)).collect(),
        )),
        Check::SamplingFrontier(f) => Some(Plot::One(cost_figure(title, claim, d, &f.cost, &f.y))),
        Check::EqualCost(c) => {
            let mut fig = cost_figure(title, claim, d, &c.cost, &c.y);
            let (cost, target) = (col_points(d, &c.cost)?, col_points(d, &c.target)?);
            let points: Vec<Pt> =
                (0..d.rows.len()).filter_map(|i| Some((cost[i]?.0, target[i]?.0, target[i]?.1))).collect();
            fig.series.push(Series {
                name: format!("distilled ({})", c.target),
                points,
                line: false,
                bar: false,
                color: PALETTE[5],
            });
            Some(Plot::One(fig))
        }
        Check::Ratio(r) => {
            let nums: Vec<String> = claim
                .expect
                .iter()
                .filter_map(|c| match c {
                    Check::Ratio(x) if x.den == r.den => Some(x.num.clone()),
                    _ => None,
                })
                .collect();
            distill_bars(title, claim, d, &nums, &r.den)
        }
        Check::GuidanceOptimum(g) => heat(title, claim, d, g),
        _ => None,
    }
}

/// Cells coloured from white (lowest) to blue (highest), each with its value.
pub fn draw_heat<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, h: &Heat) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let body = header(&root, &h.title)?;
    let (nx, ny) = (h.x_ticks.len().max(1), h.y_ticks.len().max(1));
    let mut chart = ChartBuilder::on(&body)
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64)
        .map_err(e)?;
    let (xt, yt) = (h.x_ticks.clone(), h.y_ticks.clone());
    let tick = |t: &[String], v: f64| {
        let k = v - 0.5;
        if (k - k.round()).abs() < 1e-6 && k >= 0.0 {
            t.get(k.round() as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(2 * nx + 1)
        .y_labels(2 * ny + 1)
        .x_desc(h.x_label.as_str())
        .y_desc(h.y_label.as_str())
        .x_label_formatter(&|v: &f64| tick(&xt, *v))
        .y_label_formatter(&|v: &f64| tick(&yt, *v))
        .draw()
        .map_err(e)?;
    let all: Vec<f64> = h.values.iter().flatten().flatten().copied().collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    for (j, row) in h.values.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            let Some(v) = v else { continue };
            let f = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
            let c = RGBColor((255.0 - 200.0 * f) as u8, (255.0 - 140.0 * f) as u8, 255);
            let (x, y) = (i as f64, j as f64);
            chart.draw_series([Rectangle::new([(x, y), (x + 1.0, y + 1.0)], c.filled())]).map_err(e)?;
            let label = Text::new(fit::fmt_num(*v), (x + 0.4, y + 0.55), ("sans-serif", 14).into_font());
            chart.draw_series([label]).map_err(e)?;
        }
    }
    root.present().map_err(e)?;
    Ok(())
}
