//! What the figures' axes say: the quantity a column measures, with its unit, and tick labels
//! a reader can read (10ⁿ, 2·10ⁿ, 5·10ⁿ on log axes; never `2.000e11`).
//!
//! A column the harness measures itself is named here from the experiment that measures it
//! (a sampler's FD says which features it is computed in); a column a suite defines (a paper
//! table's `fid`, a power law's `x`) is named by the suite's `quantities:`. A printed column
//! is the paper's number, and says so.

use crate::metrics::Features;
use crate::run::ResolvedClaim;
use crate::suite::{Experiment, Plan, SampleMetric};

/// The quantity `col` measures in `claim`, with its unit; `None` when nothing names it.
pub fn quantity(claim: &ResolvedClaim, col: &str) -> Option<String> {
    if let Some(p) = col.strip_prefix("printed.") {
        let q = claim.quantities.get(p).cloned().or_else(|| quantity(claim, p))?;
        return Some(if q.contains("paper") { q } else { format!("{q}, as printed in the paper") });
    }
    if let Some(q) = claim.quantities.get(col) {
        // A column both printed and recomputed: the recomputation says what it is.
        let recomputed = matches!(&claim.plan, Plan::Run(e) if table_printed(e, col));
        return Some(if recomputed { format!("{q}, recomputed") } else { q.clone() });
    }
    match col {
        "fit.exponent" => return Some("fitted power-law exponent".into()),
        "fit.prefactor" => return Some("fitted power-law prefactor".into()),
        "fit.r2" => return Some("R² of the power-law fit".into()),
        _ => {}
    }
    let Plan::Run(e) = &claim.plan else { return None };
    measured(e, col)
}

/// `quantity`, or the column's own name where the suite names no quantity for it.
pub fn axis(claim: &ResolvedClaim, col: &str) -> String {
    quantity(claim, col).unwrap_or_else(|| col.to_string())
}

/// One axis for several columns drawn on it: their common quantity (the words their names
/// share, e.g. "FD of samples (classifier features)" for three samplers' columns; the legend
/// names each), or the quantities joined when they share none.
pub fn axis_many(claim: &ResolvedClaim, cols: &[&str]) -> String {
    let qs: Vec<String> = cols.iter().map(|c| axis(claim, c)).collect();
    let Some(first) = qs.first() else { return String::new() };
    if qs.iter().all(|q| q == first) {
        return first.clone();
    }
    let words: Vec<Vec<&str>> = qs.iter().map(|q| q.split(' ').collect()).collect();
    let shortest = words.iter().map(Vec::len).min().unwrap_or(0);
    let prefix = (0..shortest).take_while(|&i| words.iter().all(|w| w[i] == words[0][i])).count();
    let suffix = (0..shortest - prefix)
        .take_while(|&i| words.iter().all(|w| w[w.len() - 1 - i] == words[0][words[0].len() - 1 - i]))
        .count();
    if prefix == 0 {
        return qs.join(" / ");
    }
    let w = &words[0];
    let joined = w[..prefix].iter().chain(&w[w.len() - suffix..]).copied().collect::<Vec<_>>().join(" ");
    joined.replace(" ()", "").replace("()", "").trim().to_string()
}

fn table_printed(e: &Experiment, col: &str) -> bool {
    matches!(e, Experiment::Table(t) if t.rows.iter().any(|r| r.printed.contains_key(col)))
}

fn features(f: &Features) -> &'static str {
    match f {
        Features::Raw => "data space",
        Features::RandomRelu { .. } => "random ReLU features",
        Features::Classifier(_) => "classifier features",
    }
}

fn metric(m: &SampleMetric) -> &'static str {
    match m {
        SampleMetric::Fd => "FD",
        SampleMetric::FdInfinity => "FD∞",
        SampleMetric::SlicedWasserstein => "sliced W₂",
    }
}

/// Columns the harness measures, named from the experiment that measures them.
fn measured(e: &Experiment, col: &str) -> Option<String> {
    let fixed = match col {
        "params" => "parameters",
        "forward_gflops" => "Gflops per forward pass",
        "forward_macs" => "MACs per forward pass",
        "budget" => "training budget (FLOPs)",
        "train_flops" => "training compute (FLOPs)",
        "final_loss" => "final training loss (ε MSE)",
        "excess_error" => "excess denoising error (ε MSE above the exact denoiser)",
        "excess_error_low_noise" => "excess denoising error, low-noise levels",
        "excess_error_mid_noise" => "excess denoising error, mid-noise levels",
        "excess_error_high_noise" => "excess denoising error, high-noise levels",
        "cost" => "sampling cost (steps × per-step cost / largest model's)",
        "cost_uncounted" => "sampling cost, distillation not counted",
        "guidance" => "guidance weight w",
        "coverage" => "coverage of nominal 95% intervals",
        "order_coverage" => "coverage of nominal 95% intervals of rank statistics",
        "power" => "fraction of simulated true claims that PASS",
        "pd_flops" | "cd_flops" => "distillation compute (FLOPs)",
        "pd_fraction" | "cd_fraction" => "distillation compute / training compute",
        "utilisation" => "utilisation (achieved / peak FLOP/s)",
        "gpu_hours" => "GPU-hours",
        "total_training" | "training" => "training compute (FLOPs)",
        "forward" => "Gflops per forward pass",
        _ => "",
    };
    if !fixed.is_empty() {
        return Some(fixed.into());
    }
    match e {
        Experiment::TrainSweep(_) if col == "steps" => Some("training steps".into()),
        Experiment::TrainSweep(_) if col == "fd" => Some("FD of DDIM samples (data space)".into()),
        Experiment::TrainSweep(_) if col == "align" => {
            Some("alignment accuracy of DDIM samples (the data's exact classifier)".into())
        }
        Experiment::SamplerConvergence(s) if col == "steps" || s.samplers.contains_key(col) => {
            Some(if col == "steps" {
                "sampling steps".into()
            } else {
                format!("relative error against the exact ODE solution ({col})")
            })
        }
        Experiment::SamplerSweep(s) => {
            let of = |name: &str| format!("{} of {name} samples ({})", metric(&s.metric), features(&s.features));
            if col == "steps" {
                Some("sampling steps".into())
            } else if s.samplers.contains_key(col) {
                Some(of(col))
            } else if let Some(n) = col.strip_prefix("nfe_").filter(|n| s.samplers.contains_key(*n)) {
                Some(format!("network evaluations ({n})"))
            } else if let Some(n) = col.strip_prefix("align_").filter(|n| s.samplers.contains_key(*n)) {
                Some(format!("alignment accuracy of {n} samples"))
            } else {
                match col {
                    "pd" => Some(format!(
                        "{} after progressive distillation ({})",
                        metric(&s.metric),
                        features(&s.features)
                    )),
                    "cd" => Some(format!(
                        "{} after consistency distillation ({})",
                        metric(&s.metric),
                        features(&s.features)
                    )),
                    _ => None,
                }
            }
        }
        Experiment::MetricNull(m) => {
            let f = features(&m.features);
            match col {
                "fd_null" => Some(format!("FD, true against true ({f})")),
                "fd_null_double" => Some(format!("FD, true against true at twice the samples ({f})")),
                "bias_ratio" => Some("FD null ratio (n / 2n samples)".into()),
                "fd_degraded" => Some(format!("FD, degraded against true ({f})")),
                "degraded_excess" => Some("FD of the degraded set above the null".into()),
                "fd_infinity_null" => Some(format!("FD∞, true against true ({f})")),
                _ => None,
            }
        }
        _ => None,
    }
}

const SUPERSCRIPT: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];

/// 10ⁿ with a superscript exponent.
fn power_of_ten(n: i32) -> String {
    let digits: String = n.unsigned_abs().to_string().chars().map(|c| SUPERSCRIPT[c as usize - '0' as usize]).collect();
    format!("10{}{digits}", if n < 0 { "⁻" } else { "" })
}

/// A number as a tick says it: plain from 10⁻³ up to 10⁴, else m·10ⁿ (m to 2 decimals).
pub fn tick(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() || a == 0.0 || (1e-3..1e4).contains(&a) {
        return crate::fit::fmt_num(x);
    }
    let n = a.log10().floor() as i32;
    let m = x / 10f64.powi(n);
    let m = crate::fit::fmt_num((m * 100.0).round() / 100.0);
    match m.as_str() {
        "1" => power_of_ten(n),
        "-1" => format!("−{}", power_of_ten(n)),
        _ => format!("{m}·{}", power_of_ten(n)),
    }
}

/// The ticks of a log axis over [lo, hi]: the labelled ones (1·10ⁿ always; 2·10ⁿ and 5·10ⁿ
/// when the axis spans at most three decades; every m·10ⁿ when fewer than two of those fall
/// inside it) and the unlabelled grid lines (every m·10ⁿ, m = 1…9).
pub fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    if !(lo > 0.0 && hi > lo && (hi / lo).is_finite()) {
        return (vec![], vec![]);
    }
    let with_2_5 = (hi / lo).log10() <= 3.0;
    let mut all = vec![];
    for n in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
        for m in 1..=9 {
            // Through the decimal string, so 3·10⁻¹ is the f64 nearest 0.3, not 3 × 0.1.
            let v: f64 = format!("{m}e{n}").parse().unwrap_or(f64::NAN);
            if v >= lo && v <= hi {
                all.push((m, v));
            }
        }
    }
    let bold: Vec<f64> =
        all.iter().filter(|(m, _)| *m == 1 || (with_2_5 && (*m == 2 || *m == 5))).map(|p| p.1).collect();
    let light: Vec<f64> = all.iter().map(|p| p.1).collect();
    if bold.len() < 2 {
        return (light.clone(), light);
    }
    (bold, light)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column a committed claim's checks or fit read names its quantity, so no figure
    /// axis shows a column path (`printed.fid`) or a bare column name (`ddim`).
    #[test]
    fn every_committed_column_names_its_quantity() {
        let suites = crate::suite::load_all(&[std::path::PathBuf::from("suites")]).expect("suites load");
        let numerics = crate::run::record::Numerics::default();
        let mut missing = vec![];
        for p in crate::suite::Profile::ALL {
            for claim in crate::run::plan(&suites, None, p, None, &numerics) {
                let fit = claim.fit.iter().flat_map(|f| [&f.power_law.x, &f.power_law.y]);
                let checked = claim.expect.iter().flat_map(crate::suite::validate::check_columns);
                for col in fit.chain(checked) {
                    if matches!(claim.plan, Plan::Run(_)) && quantity(&claim, col).is_none() {
                        missing.push(format!("{}: {col}", claim.id));
                    }
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "columns without a quantity (add them to the suite's `quantities:`):\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn ticks_read_as_numbers_not_exponent_notation() {
        assert_eq!(tick(2e11), "2·10¹¹");
        assert_eq!(tick(1e9), "10⁹");
        assert_eq!(tick(4.5e-5), "4.5·10⁻⁵");
        assert_eq!(tick(250.0), "250");
        assert_eq!(tick(0.02), "0.02");
        for x in [3e-7, 2e11, 1e20, -4e6] {
            assert!(!tick(x).contains('e'), "{x}: {}", tick(x));
        }
    }

    #[test]
    fn log_axes_label_one_two_five_and_never_crowd() {
        // The axis of Mei's compute-optimal figure printed 4.000e9 … 2.000e10, every tick, on
        // top of each other. Now: 5·10⁹, 10¹⁰, 2·10¹⁰.
        let labels = |lo, hi| log_ticks(lo, hi).0.into_iter().map(tick).collect::<Vec<_>>();
        assert_eq!(labels(3e9, 2.6e10), ["5·10⁹", "10¹⁰", "2·10¹⁰"]);
        // Over six decades only the powers of ten.
        assert_eq!(labels(1e3, 1e9), ["1000", "10⁴", "10⁵", "10⁶", "10⁷", "10⁸", "10⁹"]);
        // A narrow axis holding fewer than two of them labels every m·10ⁿ.
        assert_eq!(labels(2.1e9, 4.9e9), ["3·10⁹", "4·10⁹"]);
        assert_eq!(log_ticks(0.3, 0.8).0, [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    }
}
