//! Training loss curves (`diffscale report RUN --loss-curves`): per trained claim, one figure of
//! each model's training loss against its step, the mean over seeds with their spread, from the
//! curves every training case keeps in its record.

use super::figures::{file_stem, write_figure, FigureRef};
use super::plot::{Figure, Plot, Pt, Series, PALETTE};
use crate::fit::mean;
use crate::run::record::CaseRecord;
use crate::run::Manifest;
use std::collections::BTreeMap;
use std::path::Path;

/// Write `<stem>__loss.svg/.png` into `dir` for every claim whose records carry loss curves.
pub fn write_loss_curves(
    dir: &Path,
    manifest: &Manifest,
    records: &BTreeMap<String, CaseRecord>,
) -> std::io::Result<Vec<(String, FigureRef)>> {
    let mut out = vec![];
    for claim in &manifest.claims {
        // Model → its seeds' curves.
        let mut by_model: BTreeMap<String, Vec<&Vec<[f64; 2]>>> = BTreeMap::new();
        for r in claim.cases.iter().filter_map(|c| records.get(&c.hash)) {
            for (model, curve) in &r.curves {
                by_model.entry(model.clone()).or_default().push(curve);
            }
        }
        if by_model.is_empty() {
            continue;
        }
        let series = by_model
            .iter()
            .enumerate()
            .map(|(i, (model, curves))| Series {
                name: format!("{model} ({} seed{})", curves.len(), if curves.len() == 1 { "" } else { "s" }),
                points: seed_mean(curves),
                line: true,
                bar: false,
                color: PALETTE[i % PALETTE.len()],
            })
            .collect();
        let fig = Figure {
            title: format!("{}: training loss", claim.id),
            subtitle: format!(
                "Training loss of each model of {} against its step: the mean over seeds of the loss averaged \
                 over windows of equal length, with the seeds' range where they differ. A curve starts where \
                 training last resumed from a checkpoint.",
                claim.id
            ),
            x_label: "training step".into(),
            y_label: "training loss (mean over a window of steps)".into(),
            series,
            hlines: vec![],
            diagonal: false,
            ticks: None,
        };
        let stem = format!("{}__loss", file_stem(&claim.id));
        let plot = Plot::One(fig);
        write_figure(dir, &stem, &plot)?;
        out.push((claim.id.clone(), FigureRef { stem, caption: plot.caption() }));
    }
    Ok(out)
}

/// Points at the steps every seed reached: the seeds' mean, with their range as the interval.
fn seed_mean(curves: &[&Vec<[f64; 2]>]) -> Vec<Pt> {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for c in curves {
        for [step, loss] in c.iter() {
            at.entry(*step as u64).or_default().push(*loss);
        }
    }
    at.into_iter()
        .filter(|(_, v)| v.len() == curves.len())
        .map(|(step, v)| {
            let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
            (step as f64, mean(&v), (hi > lo).then_some((lo, hi)))
        })
        .collect()
}
