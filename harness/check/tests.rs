//! Every check kind, with the negative control that must make it FAIL.

use super::*;
use std::collections::BTreeSet;

/// A claim's data from measured columns (rows of replicates) and printed columns.
struct Data {
    data: ClaimData,
    cols: Columns,
}

fn data(rows: &[&str], measured: &[(&str, Vec<Vec<f64>>)], printed: &[(&str, Vec<Option<f64>>)]) -> Data {
    let mut d = ClaimData { rows: rows.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let mut cols = Columns { rows: d.rows.clone(), ..Default::default() };
    for (k, v) in measured {
        d.measured.insert(k.to_string(), v.clone());
        cols.measured.insert(k.to_string());
    }
    for (k, v) in printed {
        d.printed.insert(k.to_string(), v.clone());
        cols.printed.insert(k.to_string());
    }
    // Replicated values are seeds (intervals over seeds); single values a paper's table.
    d.seeded = measured.iter().any(|(_, v)| v.iter().any(|r| r.len() > 1));
    Data { data: d, cols }
}

const BOOT: Bootstrap = Bootstrap { resamples: 400, level: 0.95 };

fn run(d: &Data, check: Check) -> CheckOutcome {
    let ctx = Ctx { data: &d.data, fit: None, cols: &d.cols, boot: &BOOT, suite: "t", claim: "t/c" };
    evaluate(&ctx, &check, 0)
}

fn exact(v: &[f64]) -> Vec<Vec<f64>> {
    v.iter().map(|x| vec![*x]).collect()
}

fn noisy(v: &[f64], sd: f64, n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut r = crate::seed::Rng::new(seed);
    v.iter().map(|m| (0..n).map(|_| m + sd * r.normal()).collect()).collect()
}

#[test]
fn band_verdict_has_three_outcomes() {
    let e = |v, lo, hi| Estimate { value: v, lo: Some(lo), hi: Some(hi) };
    assert_eq!(band_verdict(&e(0.5, 0.4, 0.6), Some(0.0), Some(1.0)), Verdict::Pass);
    assert_eq!(band_verdict(&e(1.5, 1.4, 1.6), Some(0.0), Some(1.0)), Verdict::Fail);
    assert_eq!(band_verdict(&e(0.95, 0.9, 1.1), Some(0.0), Some(1.0)), Verdict::Inconclusive);
    assert_eq!(band_verdict(&Estimate::exact(1.0), Some(0.0), Some(1.0)), Verdict::Pass);
    assert_eq!(band_verdict(&Estimate::exact(1.0 + 1e-12), Some(0.0), Some(1.0)), Verdict::Fail);
}

#[test]
fn within_passes_and_a_wrong_reference_fails() {
    let rows = ["a", "b"];
    let d = data(&rows, &[("g", exact(&[1.00, 2.00]))], &[("g", vec![Some(1.01), Some(2.02)])]);
    let chk = |abs| {
        Check::Within(WithinCheck {
            value: "g".into(),
            reference: None,
            divide: None,
            abs: Some(abs),
            rel: None,
            rows: None,
            errata: vec![],
        })
    };
    assert_eq!(run(&d, chk(0.05)).verdict, Verdict::Pass);
    // Negative control: a reference off by more than the tolerance.
    let wrong = data(&rows, &[("g", exact(&[1.00, 2.00]))], &[("g", vec![Some(1.01), Some(2.2)])]);
    let out = run(&wrong, chk(0.05));
    assert_eq!(out.verdict, Verdict::Fail);
    assert_eq!(out.rows[1].verdict, Verdict::Fail);
}

#[test]
fn errata_must_show_to_count() {
    let rows = ["ok", "typo"];
    let d = data(&rows, &[("g", exact(&[1.0, 53.0]))], &[("g", vec![Some(1.0), Some(25.3)])]);
    let erratum = |row: &str| Erratum { row: row.into(), why: "printed MACs, not FLOPs".into() };
    let chk = |errata| {
        Check::Within(WithinCheck {
            value: "g".into(),
            reference: None,
            divide: None,
            abs: None,
            rel: Some(0.04),
            rows: None,
            errata,
        })
    };
    let out = run(&d, chk(vec![erratum("typo")]));
    assert_eq!(out.verdict, Verdict::Erratum);
    assert_eq!(out.rows[1].note.as_deref(), Some("printed MACs, not FLOPs"));
    // Without the declaration the same row fails ...
    assert_eq!(run(&d, chk(vec![])).verdict, Verdict::Fail);
    // ... and declaring an erratum on a row that agrees is itself a failure.
    let out = run(&d, chk(vec![erratum("typo"), erratum("ok")]));
    assert_eq!(out.verdict, Verdict::Fail);
    assert!(out.rows[0].note.as_ref().unwrap().starts_with("declared erratum not observed"));
}

#[test]
fn within_is_inconclusive_when_the_interval_straddles() {
    // Replicates around 1.0 with sd 0.05 against 1.0 ± 0.01: the interval of the mean is wider.
    let d = data(&["a"], &[("g", noisy(&[1.0], 0.05, 6, 1))], &[("g", vec![Some(1.0)])]);
    let chk = Check::Within(WithinCheck {
        value: "g".into(),
        reference: None,
        divide: None,
        abs: Some(0.01),
        rel: None,
        rows: None,
        errata: vec![],
    });
    assert_eq!(run(&d, chk).verdict, Verdict::Inconclusive);
}

#[test]
fn band_single_value_and_rows() {
    let d = data(&["a", "b"], &[("s", exact(&[0.8, 0.83]))], &[]);
    let chk =
        |lo, hi| Check::Band(BandCheck { of: "s".into(), min: Some(lo), max: Some(hi), rows: None, errata: vec![] });
    assert_eq!(run(&d, chk(0.75, 0.86)).verdict, Verdict::Pass);
    // Negative control: a band the values miss.
    assert_eq!(run(&d, chk(0.0, 0.5)).verdict, Verdict::Fail);
}

/// `at_max: budget` judges only the rows of the largest budget, whatever the budgets are.
#[test]
fn monotone_at_the_largest_budget_ignores_the_other_rows() {
    let rows = ["s@1", "l@1", "s@10", "l@10"];
    let cols = [
        ("size", exact(&[1.0, 2.0, 1.0, 2.0])),
        ("budget", exact(&[1.0, 1.0, 10.0, 10.0])),
        // The larger model is worse at the small budget and better at the large one.
        ("err", exact(&[1.0, 1.5, 0.8, 0.5])),
    ];
    let d = data(&rows, &cols, &[]);
    let chk = |at_max: Option<&str>| {
        Check::Monotone(MonotoneCheck {
            x: "size".into(),
            y: "err".into(),
            direction: Direction::Decreasing,
            min_relative_change: 0.0,
            rows: None,
            at_max: at_max.map(String::from),
        })
    };
    assert_eq!(run(&d, chk(Some("budget"))).verdict, Verdict::Pass);
    // Control: over every row the sizes' errors are not ordered.
    assert_eq!(run(&d, chk(None)).verdict, Verdict::Fail);
}

#[test]
fn monotone_passes_and_shuffled_sizes_fail() {
    let rows = ["s", "m", "l", "xl"];
    let size = exact(&[1.0, 2.0, 3.0, 4.0]);
    let chk = Check::Monotone(MonotoneCheck {
        x: "size".into(),
        y: "fid".into(),
        direction: Direction::Decreasing,
        min_relative_change: 0.0,
        rows: None,
        at_max: None,
    });
    let d = data(&rows, &[("size", size.clone()), ("fid", exact(&[25.3, 24.3, 24.1, 23.7]))], &[]);
    let out = run(&d, chk.clone());
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(out.measured.unwrap().value, -1.0);
    // Negative control: the size labels shuffled.
    let shuffled =
        data(&rows, &[("size", exact(&[3.0, 1.0, 4.0, 2.0])), ("fid", exact(&[25.3, 24.3, 24.1, 23.7]))], &[]);
    assert_eq!(run(&shuffled, chk.clone()).verdict, Verdict::Fail);
    // Noise larger than the steps: the trend cannot be told apart, so not a pass.
    let blurred = data(&rows, &[("size", size), ("fid", noisy(&[25.3, 25.2, 25.1, 25.0], 1.0, 4, 7))], &[]);
    assert_ne!(run(&blurred, chk).verdict, Verdict::Pass);
}

#[test]
fn correlation_sign_is_checked() {
    let d = data(
        &["a", "b", "c", "d", "e"],
        &[("x", exact(&[1., 2., 3., 4., 5.])), ("y", exact(&[9., 7., 6., 3., 1.]))],
        &[],
    );
    let chk = |max| {
        Check::Correlation(CorrelationCheck {
            x: "x".into(),
            y: "y".into(),
            method: RankMethod::Spearman,
            min: None,
            max: Some(max),
        })
    };
    assert_eq!(run(&d, chk(0.0)).verdict, Verdict::Pass);
    // Negative control: claim a positive trend.
    let chk = Check::Correlation(CorrelationCheck {
        x: "x".into(),
        y: "y".into(),
        method: RankMethod::Kendall,
        min: Some(0.0),
        max: None,
    });
    assert_eq!(run(&d, chk).verdict, Verdict::Fail);
}

#[test]
fn ranks_better_and_its_swap() {
    // FID follows compute exactly; params only loosely (the DiT pattern).
    let d = data(
        &["1", "2", "3", "4", "5", "6", "7", "8"],
        &[
            ("gflops", exact(&[1., 2., 3., 4., 5., 6., 7., 8.])),
            ("params", exact(&[1., 1., 5., 5., 2., 2., 8., 8.])),
            ("fid", exact(&[80., 70., 60., 50., 40., 30., 20., 10.])),
        ],
        &[],
    );
    let chk = |better: &str, than: &str| {
        Check::RanksBetter(RanksBetterCheck {
            y: "fid".into(),
            better: better.into(),
            than: than.into(),
            method: RankMethod::Spearman,
        })
    };
    assert_eq!(run(&d, chk("gflops", "params")).verdict, Verdict::Pass);
    // Negative control: the columns swapped.
    assert_eq!(run(&d, chk("params", "gflops")).verdict, Verdict::Fail);
}

#[test]
fn crossover_located_missing_or_misplaced() {
    let x = [1.0, 10.0, 100.0];
    let d = data(
        &["1", "10", "100"],
        &[("x", exact(&x)), ("a", exact(&[1.0, 1.0, 1.0])), ("b", exact(&[10.0, 1.0, 0.1]))],
        &[],
    );
    let chk = |a: &str, b: &str, lo, hi| {
        Check::Crossover(CrossoverCheck { x: "x".into(), a: a.into(), b: b.into(), min: Some(lo), max: Some(hi) })
    };
    let out = run(&d, chk("a", "b", 5.0, 20.0));
    assert_eq!(out.verdict, Verdict::Pass);
    assert!((out.measured.unwrap().value - 10.0).abs() < 1e-9);
    // Negative controls: a band elsewhere, and two series that never cross.
    assert_eq!(run(&d, chk("a", "b", 50.0, 90.0)).verdict, Verdict::Fail);
    let apart = data(
        &["1", "10", "100"],
        &[("x", exact(&x)), ("a", exact(&[1.0, 1.0, 1.0])), ("b", exact(&[10.0, 5.0, 2.0]))],
        &[],
    );
    assert_eq!(run(&apart, chk("a", "b", 0.0, 1e9)).verdict, Verdict::Fail);
}

#[test]
fn fitted_exponent_band_and_a_wrong_truth() {
    let xs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
    let ys: Vec<f64> = xs.iter().map(|x: &f64| 2.0 * x.powf(-0.5)).collect();
    let d = data(&["1", "2", "3", "4", "5", "6"], &[("x", noisy(&xs, 0.0, 3, 1)), ("y", noisy(&ys, 0.02, 3, 2))], &[]);
    let ctx = Ctx { data: &d.data, fit: None, cols: &d.cols, boot: &BOOT, suite: "t", claim: "t/c" };
    let fit = fit_claim(&ctx, &FitSpec { power_law: PowerLawFit { x: "x".into(), y: "y".into() } }).unwrap().unwrap();
    let cols = Columns {
        measured: d.cols.measured.clone(),
        printed: BTreeSet::new(),
        scalars: BTreeSet::new(),
        rows: d.cols.rows.clone(),
        unavailable: Default::default(),
    };
    let ctx = Ctx { data: &d.data, fit: Some(&fit), cols: &cols, boot: &BOOT, suite: "t", claim: "t/c" };
    let band = |lo, hi| {
        Check::Band(BandCheck { of: "fit.exponent".into(), min: Some(lo), max: Some(hi), rows: None, errata: vec![] })
    };
    assert_eq!(evaluate(&ctx, &band(-0.55, -0.45), 0).verdict, Verdict::Pass);
    // Negative control: the band of a wrong truth (−0.6).
    assert_eq!(evaluate(&ctx, &band(-0.65, -0.55), 0).verdict, Verdict::Fail);
}

#[test]
fn combine_orders_verdicts() {
    use Verdict::*;
    assert_eq!(Verdict::combine([Pass, Erratum]), Erratum);
    assert_eq!(Verdict::combine([Erratum, Inconclusive]), Inconclusive);
    assert_eq!(Verdict::combine([Inconclusive, Fail, Pass]), Fail);
    assert_eq!(Verdict::combine(Vec::<Verdict>::new()), Pass);
}

#[test]
fn optimum_recovers_a_growing_optimal_size_and_shuffled_sizes_fail() {
    // ln y = (ln x − ln x*)² / 4 + noise with x*(g) = 2·g^0.3: the optimum grows as g^0.3.
    let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
    let groups = [1.0, 10.0, 100.0, 1000.0];
    let mut rows = vec![];
    let (mut x, mut g, mut y) = (vec![], vec![], vec![]);
    let mut r = crate::seed::Rng::new(3);
    for gv in groups {
        let opt = 2.0 * f64::powf(gv, 0.3);
        for s in sizes {
            rows.push(format!("{s}@{gv}"));
            x.push(vec![s; 3]);
            g.push(vec![gv; 3]);
            y.push((0..3).map(|_| ((f64::ln(s / opt)).powi(2) / 4.0 + 0.02 * r.normal()).exp()).collect());
        }
    }
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let chk =
        Check::Optimum(OptimumCheck { x: "x".into(), y: "y".into(), group: "g".into(), min: Some(0.0), max: None });
    let d = data(&labels, &[("x", x.clone()), ("y", y.clone()), ("g", g.clone())], &[]);
    let o = run(&d, chk.clone());
    assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
    let a = o.measured.unwrap();
    assert!((a.value - 0.3).abs() < 0.05 && a.lo.unwrap() > 0.2, "{a:?}");
    assert_eq!(o.rows.len(), 4);
    // Negative control: the size labels shuffled (reversed within each budget).
    let reversed: Vec<Vec<f64>> = x.chunks(sizes.len()).flat_map(|c| c.iter().rev().cloned()).collect();
    let d = data(&labels, &[("x", reversed), ("y", y), ("g", g)], &[]);
    assert_eq!(run(&d, chk).verdict, Verdict::Fail);
}

/// Rows (model, steps) of y = floor(size) + a(size)/steps at cost = rel(size) × steps.
type Columns3 = Vec<(&'static str, Vec<Vec<f64>>)>;

fn cost_grid(a: &[f64]) -> (Vec<String>, Columns3) {
    let (sizes, rel, floors) = ([1.0, 4.0, 16.0], [1.0 / 16.0, 0.25, 1.0], [0.3, 0.2, 0.1]);
    let steps = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
    let mut r = crate::seed::Rng::new(5);
    let (mut rows, mut cost, mut y, mut size) = (vec![], vec![], vec![], vec![]);
    for m in 0..3 {
        for n in steps {
            rows.push(format!("m{m} · steps={n}"));
            cost.push(vec![rel[m] * n; 3]);
            size.push(vec![sizes[m]; 3]);
            y.push((0..3).map(|_| (floors[m] + a[m] / n) * (1.0 + 0.01 * r.normal())).collect());
        }
    }
    (rows, vec![("cost", cost), ("y", y), ("size", size)])
}

#[test]
fn sampling_frontier_finds_the_cheap_winner_and_a_dominant_large_model_fails() {
    let chk = |at| {
        Check::SamplingFrontier(FrontierCheck {
            cost: "cost".into(),
            y: "y".into(),
            size: "size".into(),
            at,
            floor: 0.05,
        })
    };
    let (rows, cols) = cost_grid(&[1.0, 1.0, 1.0]);
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let d = data(&labels, &cols, &[]);
    let low = run(&d, chk(CostEnd::Lowest));
    assert_eq!(low.verdict, Verdict::Pass, "{low:?}");
    // At cost 1 the small model has 16 steps: 0.3 + 1/16 against the large model's 0.1 + 1.
    assert!((low.measured.unwrap().value - (1.1 - 0.3625) / 1.1).abs() < 0.02);
    assert_eq!(run(&d, chk(CostEnd::Highest)).verdict, Verdict::Pass);
    // Negative control: a large model that needs no steps (a = 0) wins at every cost.
    let (rows, cols) = cost_grid(&[1.0, 1.0, 0.0]);
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    assert_eq!(run(&data(&labels, &cols, &[]), chk(CostEnd::Lowest)).verdict, Verdict::Fail);
}

#[test]
fn equal_cost_compares_against_the_distilled_row_and_a_worse_small_model_fails() {
    let (rows, mut cols) = cost_grid(&[1.0, 1.0, 1.0]);
    // The distilled large model at 4 steps (cost 4): 0.12.
    let target: Vec<Vec<f64>> = rows.iter().map(|r| if r == "m2 · steps=4" { vec![0.12; 3] } else { vec![] }).collect();
    cols.push(("t", target));
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let chk = |max| {
        Check::EqualCost(EqualCostCheck {
            target: "t".into(),
            y: "y".into(),
            cost: "cost".into(),
            size: "size".into(),
            scale: 1.0,
            min: None,
            max: Some(max),
        })
    };
    let d = data(&labels, &cols, &[]);
    // Within cost 4 the best smaller model is m1 at 16 steps: 0.2 + 1/16 = 0.2625, 119% worse.
    let o = run(&d, chk(1.5));
    assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
    assert!((o.measured.unwrap().value - (0.2625 / 0.12 - 1.0)).abs() < 0.05);
    // Negative control: the claim that small models match it (within 5%).
    assert_eq!(run(&d, chk(0.05)).verdict, Verdict::Fail);
}

#[test]
fn guidance_optimum_sees_a_moving_optimum_and_a_fixed_one_fails() {
    let grid = |moving: bool| {
        let mut r = crate::seed::Rng::new(9);
        let (mut rows, mut w, mut y, mut n, mut s) = (vec![], vec![], vec![], vec![], vec![]);
        for size in [1.0, 2.0] {
            for steps in [4.0, 32.0] {
                let opt: f64 = if moving { 1.0 + 8.0 / steps } else { 1.5 };
                for wv in [1.0, 1.25, 1.5, 2.0, 3.0, 4.0] {
                    rows.push(format!("{size} {steps} {wv}"));
                    // Four seeds: the fewest on which a guidance optimum decides.
                    w.push(vec![wv; 4]);
                    n.push(vec![steps; 4]);
                    s.push(vec![size; 4]);
                    y.push((0..4).map(|_| (1.0 + (f64::ln(wv / opt)).powi(2)) * (1.0 + 0.005 * r.normal())).collect());
                }
            }
        }
        (rows, vec![("w", w), ("y", y), ("steps", n), ("size", s)])
    };
    let chk = Check::GuidanceOptimum(GuidanceOptimumCheck {
        w: "w".into(),
        y: "y".into(),
        across: "steps".into(),
        within: "size".into(),
        floor: 0.223,
        independent: false,
    });
    let independent = match &chk {
        Check::GuidanceOptimum(g) => Check::GuidanceOptimum(GuidanceOptimumCheck { independent: true, ..g.clone() }),
        _ => unreachable!(),
    };
    let (rows, cols) = grid(true);
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let o = run(&data(&labels, &cols, &[]), chk.clone());
    // w* = 3 at 4 steps and 1.25 at 32: a spread of ln 2.4 = 0.88.
    assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
    assert!((o.measured.unwrap().value - f64::ln(2.4)).abs() < 0.15, "{o:?}");
    assert_eq!(o.rows.len(), 4);
    // The opposite reading ("w* stays put") FAILs on the same moving data …
    assert_eq!(run(&data(&labels, &cols, &[]), independent.clone()).verdict, Verdict::Fail);
    // Negative control: w* = 1.5 at every step count …
    let (rows, cols) = grid(false);
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    assert_eq!(run(&data(&labels, &cols, &[]), chk.clone()).verdict, Verdict::Fail);
    // … where the opposite reading PASSes.
    assert_eq!(run(&data(&labels, &cols, &[]), independent).verdict, Verdict::Pass);
    // Three seeds of the same data decide nothing.
    let three: Vec<(&str, Vec<Vec<f64>>)> =
        cols.iter().map(|(k, c)| (*k, c.iter().map(|r| r[..3].to_vec()).collect())).collect();
    let o = run(&data(&labels, &three, &[]), chk);
    assert_eq!(o.verdict, Verdict::Inconclusive, "{o:?}");
    assert!(o.note.as_deref().is_some_and(|n| n.contains("needs 4")), "{o:?}");
}

#[test]
fn gap_sees_a_widening_gap_and_a_shrinking_one_fails() {
    // Pairs (naive, deferred) at three mask ratios: naive worse by 10%, 30%, 60% (or shrinking).
    let pairs = |gaps: [f64; 3]| {
        let mut r = crate::seed::Rng::new(4);
        let (mut rows, mut y) = (vec![], vec![]);
        for (m, g) in gaps.iter().enumerate() {
            rows.push(format!("naive {m}"));
            y.push((0..3).map(|_| (1.0 + g) * (1.0 + 0.01 * r.normal())).collect::<Vec<f64>>());
            rows.push(format!("deferred {m}"));
            y.push((0..3).map(|_| 1.0 + 0.01 * r.normal()).collect());
        }
        (rows, y)
    };
    let chk = Check::Gap(GapCheck {
        y: "y".into(),
        pairs: (0..3).map(|m| [format!("naive {m}"), format!("deferred {m}")]).collect(),
        direction: Direction::Increasing,
    });
    let (rows, y) = pairs([0.1, 0.3, 0.6]);
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let o = run(&data(&labels, &[("y", y)], &[]), chk.clone());
    assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
    assert!((o.rows[0].measured.value - 0.1).abs() < 0.03, "{o:?}");
    // Negative control: the gap shrinks.
    let (rows, y) = pairs([0.6, 0.3, 0.1]);
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    assert_eq!(run(&data(&labels, &[("y", y)], &[]), chk).verdict, Verdict::Fail);
}

#[test]
fn ordered_passes_and_a_swapped_pair_fails() {
    let rows = ["steps=8", "steps=16"];
    let chk = Check::Ordered(OrderedCheck {
        x: None,
        columns: vec!["ddpm".into(), "ddim".into(), "dpmpp".into()],
        direction: Direction::Decreasing,
        rows: None,
    });
    let good = data(
        &rows,
        &[
            ("ddpm", noisy(&[3.0, 2.5], 0.02, 3, 1)),
            ("ddim", noisy(&[2.0, 1.8], 0.02, 3, 2)),
            ("dpmpp", noisy(&[1.0, 1.2], 0.02, 3, 3)),
        ],
        &[],
    );
    let o = run(&good, chk.clone());
    assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
    assert_eq!(o.rows.len(), 4);
    // Negative control: DDIM and DPM-Solver++ swapped in one row.
    let swapped = data(
        &rows,
        &[
            ("ddpm", noisy(&[3.0, 2.5], 0.02, 3, 1)),
            ("ddim", noisy(&[2.0, 1.0], 0.02, 3, 2)),
            ("dpmpp", noisy(&[1.0, 1.8], 0.02, 3, 3)),
        ],
        &[],
    );
    let o = run(&swapped, chk);
    assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
    assert_eq!(o.rows.iter().filter(|r| r.verdict == Verdict::Fail).count(), 1);
}

#[test]
fn ratio_passes_a_planted_gain_and_fails_without_it() {
    let rows = ["small", "large"];
    let chk =
        |max| Check::Ratio(RatioCheck { num: "pd".into(), den: "ddim".into(), min: None, max: Some(max), rows: None });
    // The student is 30% better than its teacher in every row.
    let d = data(&rows, &[("pd", noisy(&[0.7, 1.4], 0.01, 3, 4)), ("ddim", noisy(&[1.0, 2.0], 0.01, 3, 5))], &[]);
    let o = run(&d, chk(0.95));
    assert_eq!(o.verdict, Verdict::Pass, "{o:?}");
    // Several rows: the headline is the row nearest the band's edge, never "no value".
    assert!(o.measured.is_some_and(|m| (m.value - 0.7).abs() < 0.02), "{o:?}");
    // Negative control: a student no better than its teacher.
    let same = data(&rows, &[("pd", noisy(&[1.0, 2.0], 0.01, 3, 4)), ("ddim", noisy(&[1.0, 2.0], 0.01, 3, 5))], &[]);
    assert_eq!(run(&same, chk(0.95)).verdict, Verdict::Fail);
}

#[test]
fn gap_of_the_wrong_sign_fails_even_when_it_grows() {
    // Naive beats deferred by 56%, 43%, 35%: the "gap" (naive − deferred)/deferred grows from
    // −0.56 towards 0, but the claim (deferred better) is false in every pair.
    let mut r = crate::seed::Rng::new(8);
    let (mut rows, mut y) = (vec![], vec![]);
    for (m, g) in [0.56, 0.43, 0.35].iter().enumerate() {
        rows.push(format!("naive {m}"));
        y.push((0..3).map(|_| (1.0 - g) * (1.0 + 0.01 * r.normal())).collect::<Vec<f64>>());
        rows.push(format!("deferred {m}"));
        y.push((0..3).map(|_| 1.0 + 0.01 * r.normal()).collect());
    }
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let chk = Check::Gap(GapCheck {
        y: "y".into(),
        pairs: (0..3).map(|m| [format!("naive {m}"), format!("deferred {m}")]).collect(),
        direction: Direction::Increasing,
    });
    let o = run(&data(&labels, &[("y", y)], &[]), chk);
    assert_eq!(o.verdict, Verdict::Fail, "{o:?}");
    assert!(o.rows[..3].iter().all(|r| r.verdict == Verdict::Fail), "{o:?}");
}

#[test]
fn reported_rows_never_pass_and_do_not_decide() {
    assert_eq!(Verdict::combine([Verdict::Reported, Verdict::Pass]), Verdict::Pass);
    assert_eq!(Verdict::combine([Verdict::Reported, Verdict::Fail]), Verdict::Fail);
    let r = RowOutcome::reported("w* at size = 1".into(), Estimate::exact(2.0));
    assert_eq!((r.verdict, r.verdict.label()), (Verdict::Reported, "REPORTED"));
    // A check whose rows are all reported has decided nothing.
    assert_eq!(rows_verdict(&[r]).0, Verdict::Fail);
}

#[test]
fn too_few_seeds_cannot_decide() {
    // Two seeds of a clearly planted effect: the interval is the whole line, INCONCLUSIVE.
    let rows = ["a"];
    let d = data(&rows, &[("pd", vec![vec![0.5, 0.5001]]), ("ddim", vec![vec![1.0, 1.0001]])], &[]);
    let chk = Check::Ratio(RatioCheck { num: "pd".into(), den: "ddim".into(), min: None, max: Some(0.95), rows: None });
    assert_eq!(run(&d, chk).verdict, Verdict::Inconclusive);
}

#[test]
fn an_optimum_on_the_grid_edge_is_inconclusive() {
    // x*(g) grows past the largest size at the top budget: that optimum is only a bound.
    let sizes = [1.0, 2.0, 4.0, 8.0];
    let (mut rows, mut x, mut g, mut y) = (vec![], vec![], vec![], vec![]);
    for gv in [1.0, 10.0, 100.0] {
        let opt = 2.0 * f64::powf(gv, 0.6);
        for s in sizes {
            rows.push(format!("{s}@{gv}"));
            x.push(vec![s; 3]);
            g.push(vec![gv; 3]);
            y.push(vec![((f64::ln(s / opt)).powi(2) / 4.0).exp(); 3]);
        }
    }
    let labels: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
    let d = data(&labels, &[("x", x), ("y", y), ("g", g)], &[]);
    let chk =
        Check::Optimum(OptimumCheck { x: "x".into(), y: "y".into(), group: "g".into(), min: Some(0.0), max: None });
    let o = run(&d, chk);
    assert_eq!(o.verdict, Verdict::Inconclusive, "{o:?}");
    assert!(o.note.as_deref().is_some_and(|n| n.contains("edge")), "{o:?}");
}
