//! Figures (SVG and PNG), drawn headless with an embedded font (DejaVu Sans).
//!
//! Each claim gets at most one figure, chosen from what it checks: its power-law fit, a
//! crossover between two series, printed-versus-recomputed values for a `within` check, or
//! row values against a band. The title names the claim and the subtitle the data shown.

use super::labels::{axis, axis_many, log_ticks, tick};
use super::plot::{col_points, header, model_legend, Figure, Plot, Pt, Series, PALETTE};
use crate::check::Verdict;
use crate::fit;
use crate::run::experiment::ClaimData;
use crate::run::judge::{claim_data, ClaimResult};
use crate::run::record::CaseRecord;
use crate::run::{Manifest, ResolvedClaim};
use crate::suite::Check;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

const SIZE: (u32, u32) = (760, 500);
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            let _ = plotters::style::register_font("sans-serif", style, dejavu::sans::regular());
        }
    });
}

fn paired(d: &ClaimData, x: &str, y: &str) -> Option<Vec<(String, Pt)>> {
    let (xs, ys) = (col_points(d, x)?, col_points(d, y)?);
    Some(
        xs.iter()
            .zip(&ys)
            .zip(&d.rows)
            .filter_map(|((a, b), row)| Some((row.clone(), (a.as_ref()?.0, b.as_ref()?.0, b.as_ref()?.1))))
            .collect(),
    )
}

/// Choose and build the figure of one claim.
pub fn figure_for(claim: &ResolvedClaim, result: &ClaimResult, d: &ClaimData) -> Option<Plot> {
    let title = format!("{} ({})", claim.id, result.verdict.label());
    if let Some(p) = super::sweep_figures::sweep_plot(&title, claim, d) {
        return Some(p);
    }
    chart_for(title, claim, result, d).map(Plot::One)
}

/// The rows and their fitted power law.
fn fit_chart(title: String, claim: &ResolvedClaim, f: &crate::check::FitOutcome, d: &ClaimData) -> Option<Figure> {
    let pts = paired(d, &f.x, &f.y)?;
    let (lo, hi) = pts.iter().fold((f64::INFINITY, 0.0f64), |(a, b), (_, p)| (a.min(p.0), b.max(p.0)));
    let line: Vec<Pt> = (0..=40)
        .map(|i| {
            let x = lo * (hi / lo).powf(i as f64 / 40.0);
            (x, f.prefactor.value * x.powf(f.exponent.value), None)
        })
        .collect();
    Some(Figure {
        title,
        subtitle: format!("{} vs {}; fit exponent {} ({})", f.y, f.x, f.exponent.show(), claim.source),
        x_label: axis(claim, &f.x),
        y_label: axis(claim, &f.y),
        series: vec![
            Series {
                name: "points".into(),
                points: pts.into_iter().map(|p| p.1).collect(),
                line: false,
                bar: false,
                color: PALETTE[0],
            },
            Series { name: "power-law fit".into(), points: line, line: true, bar: false, color: PALETTE[1] },
        ],
        hlines: vec![],
        diagonal: false,
        ticks: None,
    })
}

/// Quality against a row variable, one curve per column (Mei et al. Fig. 11 style), for an
/// ordering over columns, or for the convergence of several series.
fn curves_chart(title: String, claim: &ResolvedClaim, d: &ClaimData) -> Option<Figure> {
    let curves: Vec<(&String, Vec<&String>)> = claim
        .expect
        .iter()
        .filter_map(|c| match c {
            Check::Ordered(o) => o.x.as_ref().map(|x| (x, o.columns.iter().collect())),
            Check::Exponent(e) => Some((&e.x, vec![&e.y])),
            Check::Monotone(m) if !m.x.starts_with("printed.") => Some((&m.x, vec![&m.y])),
            _ => None,
        })
        .collect();
    let (x, _) = curves.first()?;
    let mut names: Vec<&String> = curves.iter().filter(|(cx, _)| cx == x).flat_map(|(_, ys)| ys.clone()).collect();
    names.dedup();
    let series = names
        .iter()
        .enumerate()
        .filter_map(|(i, y)| {
            let points = paired(d, x, y)?.into_iter().map(|p| p.1).collect();
            // Several series are told apart by their names (samplers, series); one by its quantity.
            let name = if names.len() == 1 { axis(claim, y) } else { y.to_string() };
            Some(Series { name, points, line: true, bar: false, color: PALETTE[i % PALETTE.len()] })
        })
        .collect();
    let ys: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    Some(Figure {
        title,
        subtitle: format!("{} against {} (mean and 95% interval over replicates; {})", ys.join(", "), x, claim.source),
        x_label: axis(claim, x),
        y_label: axis_many(claim, &ys),
        series,
        hlines: vec![],
        diagonal: false,
        ticks: None,
    })
}

fn chart_for(title: String, claim: &ResolvedClaim, result: &ClaimResult, d: &ClaimData) -> Option<Figure> {
    if let crate::suite::Plan::Run(e) = &claim.plan {
        if let crate::suite::Experiment::TrainSweep(t) = e.as_ref() {
            if !t.budgets.is_empty() {
                return Some(compute_curves(title, claim, t, d));
            }
        }
    }
    if let Some(f) = &result.fit {
        return fit_chart(title, claim, f, d);
    }
    if let Some(fig) = curves_chart(title.clone(), claim, d) {
        return Some(fig);
    }
    for chk in &claim.expect {
        match chk {
            Check::Crossover(c) => return Some(crossover_chart(title, claim, c, d)),
            Check::Within(w) => return within_chart(title, claim, w, d),
            Check::Band(b) if d.measured.contains_key(&b.of) => return band_chart(title, claim, b, d),
            _ => {}
        }
    }
    None
}

/// The two series of a crossover against its x.
fn crossover_chart(title: String, claim: &ResolvedClaim, c: &crate::suite::CrossoverCheck, d: &ClaimData) -> Figure {
    let series = [&c.a, &c.b]
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Some(Series {
                name: s.to_string(),
                points: paired(d, &c.x, s)?.into_iter().map(|p| p.1).collect(),
                line: true,
                bar: false,
                color: PALETTE[i],
            })
        })
        .collect();
    Figure {
        title,
        subtitle: format!("{} and {} against {} ({})", c.a, c.b, c.x, claim.source),
        x_label: axis(claim, &c.x),
        y_label: axis_many(claim, &[c.a.as_str(), c.b.as_str()]),
        series,
        hlines: vec![],
        diagonal: false,
        ticks: None,
    }
}

/// Recomputed against printed values, the diagonal being agreement; declared errata apart.
fn within_chart(title: String, claim: &ResolvedClaim, w: &crate::suite::WithinCheck, d: &ClaimData) -> Option<Figure> {
    let reference = w.reference.clone().unwrap_or_else(|| format!("printed.{}", w.value));
    let pts = paired(d, &reference, &w.value)?;
    let errata: Vec<&str> = w.errata.iter().map(|e| e.row.as_str()).collect();
    let (bad, good): (Vec<_>, Vec<_>) = pts.into_iter().partition(|(r, _)| errata.contains(&r.as_str()));
    let mut series = vec![Series {
        name: "rows".into(),
        points: good.into_iter().map(|p| p.1).collect(),
        line: false,
        bar: false,
        color: PALETTE[0],
    }];
    if !bad.is_empty() {
        series.push(Series {
            name: format!("erratum: {}", bad.iter().map(|b| b.0.clone()).collect::<Vec<_>>().join(", ")),
            points: bad.into_iter().map(|p| p.1).collect(),
            line: false,
            bar: false,
            color: PALETTE[3],
        });
    }
    Some(Figure {
        title,
        subtitle: format!("{} against {} (diagonal: agreement; {})", w.value, reference, claim.source),
        x_label: axis(claim, &reference),
        y_label: axis(claim, &w.value),
        series,
        hlines: vec![],
        diagonal: true,
        ticks: None,
    })
}

/// Each row's value against the band.
fn band_chart(title: String, claim: &ResolvedClaim, b: &crate::suite::BandCheck, d: &ClaimData) -> Option<Figure> {
    let pts = col_points(d, &b.of)?;
    let points: Vec<Pt> =
        pts.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|(m, s)| (i as f64, *m, *s))).collect();
    let mut hlines = vec![];
    if let Some(v) = b.min {
        hlines.push((v, format!("min {}", fit::fmt_num(v))));
    }
    if let Some(v) = b.max {
        hlines.push((v, format!("max {}", fit::fmt_num(v))));
    }
    Some(Figure {
        title,
        subtitle: format!("{} per row against its band ({})", b.of, claim.source),
        x_label: String::new(),
        y_label: axis(claim, &b.of),
        series: vec![Series { name: axis(claim, &b.of), points, line: false, bar: false, color: PALETTE[0] }],
        hlines,
        diagonal: false,
        ticks: Some(d.rows.clone()),
    })
}

/// Quality against training compute, one curve per model (Mei et al. Fig. 2, DiT Fig. 9).
fn compute_curves(title: String, claim: &ResolvedClaim, t: &crate::suite::TrainSweepExp, d: &ClaimData) -> Figure {
    let y = claim
        .expect
        .iter()
        .find_map(|c| match c {
            Check::Optimum(o) => Some(o.y.clone()),
            Check::Monotone(m) => Some(m.y.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "excess_error".into());
    let pts = paired(d, "train_flops", &y).unwrap_or_default();
    let series = t
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| Series {
            name: model_legend(d, &m.label, |r| r.starts_with(&format!("{} @ ", m.label))),
            points: pts.iter().filter(|(r, _)| r.starts_with(&format!("{} @ ", m.label))).map(|p| p.1).collect(),
            line: true,
            bar: false,
            color: PALETTE[i % PALETTE.len()],
        })
        .collect();
    Figure {
        title,
        subtitle: format!("{y} against training FLOPs, one curve per model (mean and 95% interval; {})", claim.source),
        x_label: axis(claim, "train_flops"),
        y_label: axis(claim, &y),
        series,
        hlines: vec![],
        diagonal: false,
        ticks: None,
    }
}

fn range(v: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v.filter(|x| x.is_finite()) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if log {
        (lo / 1.3, hi * 1.3)
    } else {
        let pad = ((hi - lo) * 0.08).max(1e-9 * hi.abs().max(1.0));
        (lo - pad, hi + pad)
    }
}

pub(super) fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, f: &Figure) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let body = header(&root, &f.title)?;
    let all = || f.series.iter().flat_map(|s| s.points.iter());
    let ys = || {
        all()
            .flat_map(|p| [p.1, p.2.map_or(p.1, |q| q.0), p.2.map_or(p.1, |q| q.1)])
            .chain(f.hlines.iter().map(|h| h.0))
    };
    let log_x = f.ticks.is_none() && all().all(|p| p.0 > 0.0);
    let log_y = ys().all(|y| y > 0.0) && {
        let (lo, hi) = range(ys(), false);
        hi / lo.max(1e-300) > 20.0
    };
    let (mut x0, mut x1) = range(all().map(|p| p.0), log_x);
    let (mut y0, mut y1) = range(ys(), log_y);
    if f.diagonal {
        (x0, x1) = (x0.min(y0), x1.max(y1));
        (y0, y1) = (x0, x1);
    }
    let mut cb = ChartBuilder::on(&body);
    cb.margin(14).x_label_area_size(44).y_label_area_size(70);
    macro_rules! plot {
        ($xr:expr, $yr:expr) => {{
            let mut chart = cb.build_cartesian_2d($xr, $yr).map_err(e)?;
            let ticks = f.ticks.clone();
            chart
                .configure_mesh()
                .x_labels(8)
                .x_desc(f.x_label.as_str())
                .y_desc(f.y_label.as_str())
                .x_label_formatter(&|x: &f64| match &ticks {
                    Some(t) => {
                        t.get(x.round() as usize).filter(|_| (x - x.round()).abs() < 1e-6).cloned().unwrap_or_default()
                    }
                    None => tick(*x),
                })
                .y_label_formatter(&|y: &f64| tick(*y))
                .draw()
                .map_err(e)?;
            if f.diagonal {
                chart
                    .draw_series(LineSeries::new([(x0, x0), (x1, x1)], RGBColor(150, 150, 150).stroke_width(1)))
                    .map_err(e)?
                    .label("measured = printed")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(150, 150, 150)));
            }
            for (v, name) in &f.hlines {
                chart
                    .draw_series(LineSeries::new([(x0, *v), (x1, *v)], RGBColor(200, 60, 60).stroke_width(1)))
                    .map_err(e)?
                    .label(name.as_str())
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(200, 60, 60)));
            }
            for s in &f.series {
                let c = s.color;
                if s.line {
                    chart
                        .draw_series(LineSeries::new(s.points.iter().map(|p| (p.0, p.1)), c.stroke_width(2)))
                        .map_err(e)?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
                }
                chart
                    .draw_series(s.points.iter().filter_map(|p| {
                        p.2.map(|(lo, hi)| PathElement::new([(p.0, lo), (p.0, hi)], c.stroke_width(1)))
                    }))
                    .map_err(e)?;
                if s.bar {
                    let base = y0;
                    chart
                        .draw_series(
                            s.points
                                .iter()
                                .map(|p| Rectangle::new([(p.0 - 0.12, base), (p.0 + 0.12, p.1)], c.filled())),
                        )
                        .map_err(e)?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], c.filled()));
                }
                if s.line && s.points.len() <= 12 {
                    chart.draw_series(s.points.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled()))).map_err(e)?;
                }
                if !s.line && !s.bar {
                    chart
                        .draw_series(s.points.iter().map(|p| Circle::new((p.0, p.1), 4, c.filled())))
                        .map_err(e)?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                // Points on the diagonal run up to the upper right: keep the legend off them.
                .position(if f.diagonal { SeriesLabelPosition::UpperLeft } else { SeriesLabelPosition::UpperRight })
                .draw()
                .map_err(e)?;
        }};
    }
    // Log axes carry their own ticks (labels.rs): plotters' choice labels every m·10ⁿ of a
    // short axis, on top of each other.
    let (lx, ly) = (log_ticks(x0, x1), log_ticks(y0, y1));
    let log =
        |lo: f64, hi: f64, t: (Vec<f64>, Vec<f64>)| (lo..hi).log_scale().with_key_points(t.0).with_light_points(t.1);
    match (log_x, log_y) {
        (true, true) => plot!(log(x0, x1, lx), log(y0, y1, ly)),
        (true, false) => plot!(log(x0, x1, lx), y0..y1),
        (false, true) => plot!(x0..x1, log(y0, y1, ly)),
        (false, false) => plot!(x0..x1, y0..y1),
    }
    root.present().map_err(e)?;
    Ok(())
}

pub fn file_stem(id: &str) -> String {
    id.replace('/', "__")
}

/// Draw a plot on `root`: its charts side by side, or its heat map.
fn draw_plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, p: &Plot) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    match p {
        Plot::One(f) => draw(root, f),
        Plot::Panels(fs) => {
            for (area, f) in root.split_evenly((1, fs.len().max(1))).into_iter().zip(fs) {
                draw(area, f)?;
            }
            root.present().map_err(|e| e.to_string())
        }
        Plot::Heat(h) => super::sweep_figures::draw_heat(root, h),
    }
}

fn plot_size(p: &Plot) -> (u32, u32) {
    match p {
        Plot::Panels(fs) => (SIZE.0 * fs.len().max(1) as u32, SIZE.1),
        _ => SIZE,
    }
}

/// Draw `plot` to `<dir>/<stem>.svg` and `.png`.
pub fn write_figure(dir: &Path, stem: &str, plot: &Plot) -> std::io::Result<()> {
    register_font();
    std::fs::create_dir_all(dir)?;
    let size = plot_size(plot);
    let mut svg = String::new();
    draw_plot(SVGBackend::with_string(&mut svg, size).into_drawing_area(), plot).map_err(std::io::Error::other)?;
    crate::atomic::write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;
    // Drawn into memory and encoded here, so the PNG too goes through the one atomic writer.
    let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
    draw_plot(BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area(), plot).map_err(std::io::Error::other)?;
    let mut bytes = vec![];
    {
        let mut enc = png::Encoder::new(&mut bytes, size.0, size.1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().and_then(|mut w| w.write_image_data(&rgb)).map_err(std::io::Error::other)?;
    }
    crate::atomic::write_atomic(&dir.join(format!("{stem}.png")), &bytes)
}

/// A figure written for a claim: its file stem under `figures/` and its caption.
#[derive(Clone, Debug)]
pub struct FigureRef {
    pub stem: String,
    pub caption: String,
}

/// Draw every claim's figures (its own, and the paper beside it where the suite gives the
/// paper's points); returns claim id → its figures, for the report and page to show.
pub fn write_figures(
    dir: &Path,
    manifest: &Manifest,
    summary: &super::Summary,
    records: &BTreeMap<String, CaseRecord>,
) -> std::io::Result<BTreeMap<String, Vec<FigureRef>>> {
    let mut out = BTreeMap::new();
    for claim in &manifest.claims {
        let Some(result) = summary.claims.iter().find(|r| r.id == claim.id) else {
            continue;
        };
        if result.verdict == Verdict::Skipped {
            continue;
        }
        let Some(data) = claim_data(claim, records) else {
            continue;
        };
        let mut figs = vec![];
        if let Some(fig) = figure_for(claim, result, &data) {
            let stem = file_stem(&claim.id);
            write_figure(dir, &stem, &fig)?;
            figs.push(FigureRef { stem, caption: fig.caption() });
        }
        if let Some(fig) = super::paper_figures::paper_plot(claim, result, &data) {
            let stem = format!("{}__paper", file_stem(&claim.id));
            write_figure(dir, &stem, &fig)?;
            figs.push(FigureRef { stem, caption: fig.caption() });
        }
        if !figs.is_empty() {
            out.insert(claim.id.clone(), figs);
        }
    }
    Ok(out)
}
