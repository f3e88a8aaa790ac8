//! The vocabulary of the report's figures, shared by the claim charts (`figures.rs`) and the
//! sweep figures (`sweep_figures.rs`): series, figures, heat maps, the palette, the per-row points
//! with their intervals, and the header every image starts with. Its own file so that those two
//! depend on it and not on each other.

use crate::fit::{self, mean};
use crate::run::experiment::ClaimData;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Okabe and Ito's colour-blind-safe palette (blue, orange, bluish green, vermillion, reddish
/// purple, sky blue): every pair stays apart under the common colour-vision deficiencies.
pub(super) const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
];

/// A point with an optional interval on y.
pub(super) type Pt = (f64, f64, Option<(f64, f64)>);

pub(super) struct Series {
    pub name: String,
    pub points: Vec<Pt>,
    pub line: bool,
    /// Drawn as bars from the bottom of the axis (categorical x).
    pub bar: bool,
    pub color: RGBColor,
}

pub struct Figure {
    pub(super) title: String,
    /// What the figure shows, in full: the caption under it in the report and the page.
    pub(super) subtitle: String,
    pub(super) x_label: String,
    pub(super) y_label: String,
    pub(super) series: Vec<Series>,
    pub(super) hlines: Vec<(f64, String)>,
    pub(super) diagonal: bool,
    /// Category labels for an x axis of row indices.
    pub(super) ticks: Option<Vec<String>>,
}

/// What one claim's figure file shows: one chart, charts side by side, or a heat map.
pub enum Plot {
    One(Figure),
    Panels(Vec<Figure>),
    Heat(Heat),
}

impl Plot {
    /// The caption: what each chart shows (the image itself carries only short titles).
    pub fn caption(&self) -> String {
        match self {
            Plot::One(f) => f.subtitle.clone(),
            Plot::Heat(h) => h.subtitle.clone(),
            Plot::Panels(fs) => {
                let parts: Vec<String> = fs
                    .iter()
                    .enumerate()
                    .map(|(i, f)| format!("({}) {}", (b'a' + i as u8) as char, f.subtitle))
                    .collect();
                parts.join(" ")
            }
        }
    }
}

/// Per row: the mean and, with 3 or more seeds, its 95% Student-t interval.
pub(super) type RowPoints = Vec<Option<(f64, Option<(f64, f64)>)>>;

pub(super) fn col_points(d: &ClaimData, name: &str) -> Option<RowPoints> {
    let rows: Vec<Option<Vec<f64>>> = if let Some(p) = name.strip_prefix("printed.") {
        d.printed.get(p)?.iter().map(|v| v.map(|x| vec![x])).collect()
    } else {
        d.measured.get(name)?.iter().map(|r| (!r.is_empty()).then(|| r.clone())).collect()
    };
    Some(
        rows.into_iter()
            .map(|r| {
                r.map(|v| {
                    // The interval the checks use for a row's mean (Student-t over seeds); none
                    // drawn below the seeds that can decide.
                    let rows: fit::Rows = vec![v.clone()];
                    let e = fit::interval::jackknife_t(&[&rows], 0.95, |c| Some(mean(&c[0][0])));
                    let spread = e
                        .and_then(|e| Some((e.lo?, e.hi?)))
                        .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo < hi);
                    (mean(&v), spread)
                })
            })
            .collect(),
    )
}

/// A model's legend entry: its label and, where the rows record it, its parameter count
/// (`w32 (11k params)`), so the legend says what the series is.
pub(super) fn model_legend(d: &ClaimData, label: &str, row_of: impl Fn(&str) -> bool) -> String {
    let params = d
        .measured
        .get("params")
        .and_then(|p| d.rows.iter().zip(p).find(|(r, v)| row_of(r) && !v.is_empty()).map(|(_, v)| mean(v)));
    match params {
        Some(n) if n >= 1e9 => format!("{label} ({:.1}B params)", n / 1e9),
        Some(n) if n >= 1e6 => format!("{label} ({:.1}M params)", n / 1e6),
        Some(n) if n >= 1e3 => format!("{label} ({:.1}k params)", n / 1e3),
        Some(n) => format!("{label} ({n:.0} params)"),
        None => label.to_string(),
    }
}

/// A table of values drawn as coloured cells with their numbers.
pub struct Heat {
    pub(super) title: String,
    pub(super) subtitle: String,
    pub(super) x_label: String,
    pub(super) y_label: String,
    pub(super) x_ticks: Vec<String>,
    pub(super) y_ticks: Vec<String>,
    /// [y][x]
    pub(super) values: Vec<Vec<Option<f64>>>,
}

/// White background and a short title; returns the area below it. The caption (the figure's
/// subtitle) is not drawn: cut to fit an image it lost its end, so it goes whole under the
/// figure in the report and the page.
pub(super) fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<DrawingArea<DB, Shift>, String>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (top, body) = root.split_vertically(32);
    top.draw(&Text::new(title.to_string(), (12, 7), ("sans-serif", 17).into_font())).map_err(e)?;
    Ok(body)
}
