//! The vocabulary of the report's figures, shared by the claim charts (`figures.rs`) and the
//! sweep figures (`sweep_figures.rs`): series, figures, heat maps, the palette, the per-row points
//! with their intervals, and the header every image starts with. Its own file so that those two
//! depend on it and not on each other.

use crate::fit::{self, mean};
use crate::run::experiment::ClaimData;
use plotters::coord::Shift;
use plotters::prelude::*;

pub(super) const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
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

/// White background, the title and up to two lines of subtitle; returns the area below them.
pub(super) fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<DB, Shift>, String>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (top, body) = root.split_vertically(64);
    top.draw(&Text::new(title.to_string(), (12, 6), ("sans-serif", 18).into_font())).map_err(e)?;
    for (i, line) in wrap(subtitle, 110).iter().take(2).enumerate() {
        let style = ("sans-serif", 12).into_font().color(&RGBColor(80, 80, 80));
        top.draw(&Text::new(line.clone(), (12, 28 + 15 * i as i32), style)).map_err(e)?;
    }
    Ok(body)
}

/// Greedy word wrap at `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}
