//! How often does a check's interval contain the truth? The harness measures it itself.
//!
//! For each check kind there is one scenario: rows with known true means (a monotone size
//! sweep, two power laws that cross, a guidance grid whose optimum moves, …) and the check a
//! suite would put on them. A trial draws `n` seeded replicates of every noisy cell around its
//! true mean, evaluates the check exactly as a run does, and asks of every interval a verdict
//! depends on (each judged row's, else the headline's) whether it contains the truth: the
//! same statistic computed on the true means. Coverage is the fraction over trials.
//!
//! Noise shapes, all multiplicative and mean-preserving (the suites' metrics are positive):
//! `normal` (1 + cv·Z), `heavy` (Student-t with 3 d.o.f., scaled to sd cv), `skewed`
//! (log-normal with σ = `skew_sigma`) and `records` (log-normal with each cell's CV drawn from
//! the CVs found across seeds in the suites' own case records).

use super::{evaluate, CheckOutcome, ClaimData, Ctx, Verdict};
use crate::fit::Estimate;
use crate::seed::Rng;
use crate::suite::validate::Columns;
pub use crate::suite::COVERAGE_KINDS as KINDS;
use crate::suite::{Bootstrap, Check, CoverageShape, IntervalCoverageExp};

thread_local! {
    static SEEDED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// One column of a scenario: per row, its true mean (None: no value in that row).
struct Column {
    name: &'static str,
    means: Vec<Option<f64>>,
    /// A design value (a size, a cost, an x): the same in every replicate.
    design: bool,
}

struct Scenario {
    rows: Vec<String>,
    columns: Vec<Column>,
    check: Check,
}

fn noisy(name: &'static str, means: Vec<f64>) -> Column {
    Column { name, means: means.into_iter().map(Some).collect(), design: false }
}

fn design(name: &'static str, values: Vec<f64>) -> Column {
    Column { name, means: values.into_iter().map(Some).collect(), design: true }
}

fn check(yaml: &str) -> Check {
    serde_saphyr::from_str(yaml).expect("the scenarios' checks are valid")
}

/// Model m of sizes [1, 4, 16] at `steps`: quality floor(m) + 1/steps at cost rel(m)·steps.
fn cost_grid() -> (Vec<String>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (sizes, rel, floors) = ([1.0, 4.0, 16.0], [1.0 / 16.0, 0.25, 1.0], [0.3, 0.2, 0.1]);
    let (mut rows, mut cost, mut y, mut size) = (vec![], vec![], vec![], vec![]);
    for m in 0..3 {
        for n in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0] {
            rows.push(format!("m{m} · steps={n}"));
            cost.push(rel[m] * n);
            size.push(sizes[m]);
            y.push(floors[m] + 1.0 / n);
        }
    }
    (rows, cost, y, size)
}

/// The scenario of a check kind (the names `diffscale schema` gives the kinds).
fn scenario(kind: &str) -> Result<Scenario, String> {
    let labels = |n: usize| (0..n).map(|i| format!("r{i}")).collect::<Vec<_>>();
    let pow = |xs: &[f64], a: f64, b: f64| xs.iter().map(|x| a * x.powf(b)).collect::<Vec<_>>();
    Ok(match kind {
        "band" => Scenario {
            rows: labels(3),
            columns: vec![noisy("y", vec![1.0, 2.0, 3.0])],
            check: check("band: {of: y, min: 0, max: 10}"),
        },
        "within" => Scenario {
            rows: labels(2),
            columns: vec![noisy("y", vec![1.0, 2.0]), design("ref", vec![1.0, 2.0])],
            check: check("within: {value: y, reference: ref, abs: 0.5}"),
        },
        "monotone" => Scenario {
            rows: labels(4),
            columns: vec![design("x", vec![1.0, 2.0, 4.0, 8.0]), noisy("y", vec![1.0, 0.8, 0.65, 0.55])],
            check: check("monotone: {x: x, y: y, direction: decreasing}"),
        },
        "correlation" => {
            let x = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
            Scenario {
                rows: labels(6),
                // Neighbours 8% apart: near-ties that the noise can swap, as sizes of similar
                // compute do in the suites.
                columns: vec![design("x", x.to_vec()), noisy("y", pow(&x, 1.0, -0.11))],
                check: check("correlation: {x: x, y: y, max: 0}"),
            }
        }
        "ranks_better" => {
            let x = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
            Scenario {
                rows: labels(6),
                columns: vec![
                    design("flops", x.to_vec()),
                    design("params", vec![3.0, 1.0, 6.0, 2.0, 5.0, 4.0]),
                    noisy("y", pow(&x, 1.0, -0.11)),
                ],
                check: check("ranks_better: {y: y, better: flops, than: params}"),
            }
        }
        "crossover" => {
            let x = [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0];
            Scenario {
                rows: labels(6),
                columns: vec![
                    design("x", x.to_vec()),
                    noisy("large", pow(&x, 3.0, -0.6)),
                    noisy("small", pow(&x, 1.0, -0.3)),
                ],
                check: check("crossover: {x: x, a: large, b: small, min: 1, max: 1000}"),
            }
        }
        "exponent" => {
            let x = [1.0, 2.0, 4.0, 8.0, 16.0];
            Scenario {
                rows: labels(5),
                columns: vec![design("x", x.to_vec()), noisy("y", pow(&x, 2.0, -0.5))],
                check: check("exponent: {x: x, y: y, max: 0}"),
            }
        }
        "ordered" => Scenario {
            rows: labels(2),
            columns: vec![noisy("ddpm", vec![3.0, 2.5]), noisy("ddim", vec![2.0, 1.8]), noisy("dpmpp", vec![1.0, 1.2])],
            check: check("ordered: {columns: [ddpm, ddim, dpmpp], direction: decreasing}"),
        },
        "ratio" => Scenario {
            rows: labels(2),
            columns: vec![noisy("num", vec![1.9, 1.0]), noisy("den", vec![1.0, 1.1])],
            check: check("ratio: {num: num, den: den, min: 0, max: 10}"),
        },
        "optimum" => {
            // ln y = (ln x − ln x*)²/4 with x*(g) = 2·g^0.3: the optimum grows as g^0.3.
            let (mut rows, mut x, mut g, mut y) = (vec![], vec![], vec![], vec![]);
            for gv in [1.0, 10.0, 100.0, 1000.0] {
                let opt = 2.0 * f64::powf(gv, 0.3);
                for s in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0] {
                    rows.push(format!("{s}@{gv}"));
                    x.push(s);
                    g.push(gv);
                    y.push((f64::ln(s / opt).powi(2) / 4.0).exp());
                }
            }
            Scenario {
                rows,
                columns: vec![design("x", x), design("g", g), noisy("y", y)],
                check: check("optimum: {x: x, y: y, group: g, min: 0}"),
            }
        }
        "sampling_frontier" => {
            let (rows, cost, y, size) = cost_grid();
            Scenario {
                rows,
                columns: vec![design("cost", cost), design("size", size), noisy("y", y)],
                check: check("sampling_frontier: {cost: cost, y: y, size: size, at: lowest, floor: 0.05}"),
            }
        }
        "equal_cost" => {
            let (rows, cost, y, size) = cost_grid();
            // The distilled largest model at 4 steps (cost 4): 0.12.
            let target = rows.iter().map(|r| (r == "m2 · steps=4").then_some(0.12)).collect();
            Scenario {
                rows,
                columns: vec![
                    design("cost", cost),
                    design("size", size),
                    noisy("y", y),
                    Column { name: "t", means: target, design: false },
                ],
                check: check("equal_cost: {target: t, y: y, cost: cost, size: size, max: 1.5}"),
            }
        }
        "guidance_optimum" => {
            // y = 1 + ln(w/w*)² with w* = 1 + 8/steps: it moves from 3 to 1.25.
            let (mut rows, mut w, mut y, mut n, mut s) = (vec![], vec![], vec![], vec![], vec![]);
            for size in [1.0, 2.0] {
                for steps in [4.0, 32.0] {
                    for wv in [1.0, 1.25, 1.5, 2.0, 3.0, 4.0] {
                        rows.push(format!("{size} {steps} {wv}"));
                        w.push(wv);
                        n.push(steps);
                        s.push(size);
                        y.push(1.0 + f64::ln(wv / (1.0 + 8.0 / steps)).powi(2));
                    }
                }
            }
            Scenario {
                rows,
                columns: vec![design("w", w), design("steps", n), design("size", s), noisy("y", y)],
                check: check("guidance_optimum: {w: w, y: y, across: steps, within: size, floor: 0.223}"),
            }
        }
        "gap" => {
            // (naive, deferred) pairs: naive worse by 10%, 30%, 60%.
            let mut rows = vec![];
            let mut y = vec![];
            for (m, g) in [0.1, 0.3, 0.6].iter().enumerate() {
                rows.extend([format!("naive {m}"), format!("deferred {m}")]);
                y.extend([1.0 + g, 1.0]);
            }
            Scenario {
                rows,
                columns: vec![noisy("y", y)],
                check: check(
                    "gap: {y: y, pairs: [[naive 0, deferred 0], [naive 1, deferred 1], [naive 2, deferred 2]], direction: increasing}",
                ),
            }
        }
        other => return Err(format!("no coverage scenario for the check kind `{other}`")),
    })
}

/// The intervals a verdict depends on, by name: judged rows, else the headline.
fn judged(o: &CheckOutcome) -> Vec<(String, Estimate)> {
    let rows: Vec<(String, Estimate)> = o
        .rows
        .iter()
        .filter(|r| r.verdict != Verdict::Reported && r.measured.lo.is_some())
        .map(|r| (r.row.clone(), r.measured))
        .collect();
    if !rows.is_empty() {
        return rows;
    }
    o.measured.filter(|e| e.lo.is_some()).map(|e| vec![("headline".to_string(), e)]).unwrap_or_default()
}

/// A multiplicative, mean-preserving noise factor of the given shape.
fn factor(shape: CoverageShape, e: &IntervalCoverageExp, rng: &mut Rng, cell_cv: f64) -> f64 {
    let lognormal = |rng: &mut Rng, sigma: f64| (sigma * rng.normal() - sigma * sigma / 2.0).exp();
    match shape {
        CoverageShape::Normal => 1.0 + e.cv * rng.normal(),
        CoverageShape::Heavy => {
            let chi2: f64 = (0..3).map(|_| rng.normal().powi(2)).sum();
            // t₃ has variance 3.
            1.0 + e.cv * rng.normal() / (chi2 / 3.0).sqrt() / 3f64.sqrt()
        }
        CoverageShape::Skewed => lognormal(rng, e.skew_sigma),
        CoverageShape::Records => lognormal(rng, (1.0 + cell_cv * cell_cv).ln().sqrt()),
    }
}

fn claim_data(sc: &Scenario, n: usize, mut value: impl FnMut(usize, usize) -> f64) -> (ClaimData, Columns) {
    // `seeded` picks the intervals over seeds; the tests turn it off to score the percentile
    // bootstrap instead (the negative control).
    let mut d = ClaimData { rows: sc.rows.clone(), seeded: SEEDED.with(|s| s.get()), ..Default::default() };
    let mut cols = Columns { rows: sc.rows.clone(), ..Default::default() };
    for (ci, c) in sc.columns.iter().enumerate() {
        let cells = c
            .means
            .iter()
            .enumerate()
            .map(|(r, m)| match m {
                None => vec![],
                Some(v) if c.design => vec![*v],
                Some(_) => (0..n).map(|_| value(ci, r)).collect(),
            })
            .collect();
        d.measured.insert(c.name.to_string(), cells);
        cols.measured.insert(c.name.to_string());
    }
    (d, cols)
}

fn outcome(sc: &Scenario, d: &ClaimData, cols: &Columns, level: f64) -> CheckOutcome {
    let boot = Bootstrap { resamples: 1000, level };
    let ctx = Ctx { data: d, fit: None, cols, boot: &boot, suite: "calibration", claim: "coverage" };
    evaluate(&ctx, &sc.check, 0)
}

/// Check kinds whose statistic sees the rows only through their order (rank correlations):
/// discrete, so their intervals cover more than 95% by nature (`fit::orders`), and the
/// calibration judges them by a floor, beside their power.
pub const ORDER_KINDS: [&str; 2] = ["correlation", "ranks_better"];

/// What a row of the calibration measures.
pub struct Measured {
    /// Fraction of the judged intervals that contain the truth; None when the check refuses
    /// to decide at this seed count (every interval is the whole line), as a crossover does
    /// below `CROSSOVER_MIN_SEEDS`.
    pub coverage: Option<f64>,
    /// Fraction of the simulated claims the check PASSes. Every scenario's claim holds on its
    /// true means, so this is the check's power at this noise and seed count.
    pub power: f64,
}

/// Coverage and power of `kind`'s intervals under `shape` at `n` replicates over `trials` trials.
pub fn coverage(
    e: &IntervalCoverageExp,
    kind: &str,
    shape: CoverageShape,
    n: usize,
    seed: u64,
) -> Result<Measured, String> {
    let sc = scenario(kind)?;
    let level = 0.95;
    let (d, cols) = claim_data(&sc, n, |ci, r| sc.columns[ci].means[r].expect("a value"));
    let truth = judged(&outcome(&sc, &d, &cols, level));
    if truth.is_empty() {
        return Err(format!("the `{kind}` scenario has no interval to cover"));
    }
    let mut rng = Rng::new(seed);
    let (mut inside, mut total, mut passed, mut bounded) = (0usize, 0usize, 0usize, 0usize);
    for _ in 0..e.trials {
        // Under `records`, each cell (row, column) has its own CV this trial, as real rows do.
        let cvs: Vec<Vec<f64>> = sc
            .columns
            .iter()
            .map(|c| {
                c.means
                    .iter()
                    .map(|_| if e.record_cvs.is_empty() { e.cv } else { e.record_cvs[rng.below(e.record_cvs.len())] })
                    .collect()
            })
            .collect();
        let (d, cols) = claim_data(&sc, n, |ci, r| {
            sc.columns[ci].means[r].expect("a value") * factor(shape, e, &mut rng, cvs[ci][r])
        });
        let o = outcome(&sc, &d, &cols, level);
        passed += usize::from(o.verdict == Verdict::Pass);
        let got = judged(&o);
        bounded += usize::from(
            got.iter().any(|(_, e)| e.lo_or_value() > f64::NEG_INFINITY || e.hi_or_value() < f64::INFINITY),
        );
        for (name, t) in &truth {
            total += 1;
            let Some((_, est)) = got.iter().find(|g| &g.0 == name) else { continue };
            let slack = 1e-9 * t.value.abs().max(1e-12);
            if est.lo_or_value() - slack <= t.value && t.value <= est.hi_or_value() + slack {
                inside += 1;
            }
        }
    }
    let coverage = (bounded > 0).then(|| inside as f64 / total as f64);
    Ok(Measured { coverage, power: passed as f64 / e.trials.max(1) as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The negative control: the percentile bootstrap the harness used before covers far less
    /// than 95% at 3 seeds, and this measurement says so.
    #[test]
    fn the_percentile_bootstrap_misses_the_band() {
        let e = one("ratio", 400);
        SEEDED.with(|s| s.set(false));
        let boot = coverage(&e, "ratio", CoverageShape::Normal, 3, 1).unwrap().coverage.unwrap();
        SEEDED.with(|s| s.set(true));
        let jack = coverage(&e, "ratio", CoverageShape::Normal, 3, 1).unwrap().coverage.unwrap();
        assert!(boot < 0.85, "percentile bootstrap covered {boot}");
        assert!((0.92..=0.98).contains(&jack), "jackknife-t covered {jack}");
    }

    /// One kind under normal noise of 10% at 3 seeds, `trials` times.
    fn one(kind: &str, trials: u32) -> IntervalCoverageExp {
        IntervalCoverageExp {
            checks: vec![kind.into()],
            shapes: vec![CoverageShape::Normal],
            replicates: vec![3],
            trials,
            cv: 0.1,
            skew_sigma: 0.2,
            record_cvs: vec![],
        }
    }

    #[test]
    fn rank_kinds_cover_at_least_nominal_and_keep_power() {
        let e = one("correlation", 400);
        let m = coverage(&e, "correlation", CoverageShape::Normal, 3, 1).unwrap();
        let c = m.coverage.unwrap();
        assert!(c >= 0.95 && m.power > 0.5, "coverage {c}, power {}", m.power);
    }

    #[test]
    fn a_kind_that_refuses_few_seeds_measures_no_coverage() {
        let e = one("crossover", 100);
        let m = coverage(&e, "crossover", CoverageShape::Normal, 3, 1).unwrap();
        assert_eq!((m.coverage, m.power), (None, 0.0));
        assert!(coverage(&e, "crossover", CoverageShape::Normal, 4, 1).unwrap().coverage.is_some());
    }

    #[test]
    fn every_check_kind_has_a_scenario_with_an_interval() {
        for kind in KINDS {
            let sc = scenario(kind).unwrap();
            let (d, cols) = claim_data(&sc, crate::check::MIN_SEEDS_ARGMIN, |ci, r| sc.columns[ci].means[r].unwrap());
            let o = outcome(&sc, &d, &cols, 0.95);
            assert!(!judged(&o).is_empty(), "{kind}: {o:?}");
            // The scenarios are built so that the claim holds on the true means.
            assert_eq!(o.verdict, Verdict::Pass, "{kind}: {o:?}");
        }
    }
}

#[cfg(test)]
mod table {
    use super::*;

    /// `cargo test --release --lib coverage_table -- --ignored --nocapture`: the whole table.
    #[test]
    #[ignore]
    fn coverage_table() {
        let e = IntervalCoverageExp {
            checks: std::env::var("KINDS")
                .map(|k| k.split(',').map(String::from).collect())
                .unwrap_or_else(|_| KINDS.iter().map(|s| s.to_string()).collect()),
            shapes: vec![CoverageShape::Normal, CoverageShape::Heavy, CoverageShape::Skewed, CoverageShape::Records],
            replicates: std::env::var("NS")
                .map(|k| k.split(',').map(|n| n.parse().unwrap()).collect())
                .unwrap_or(vec![3, 5, 8]),
            trials: std::env::var("TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
            cv: 0.1,
            skew_sigma: std::env::var("SIGMA").ok().and_then(|v| v.parse().ok()).unwrap_or(0.2),
            record_cvs: vec![
                0.003, 0.006, 0.01, 0.011, 0.013, 0.02, 0.032, 0.037, 0.047, 0.065, 0.067, 0.095, 0.121, 0.163, 0.25,
            ],
        };
        for r in e.rows() {
            let t = std::time::Instant::now();
            let c = coverage(&e, &r.kind, r.shape, r.n, 7).unwrap();
            let cov = c.coverage.map_or("  —  ".to_string(), |v| format!("{v:.3}"));
            println!("{:45} {cov} power {:.3} ({:.2}s)", r.label, c.power, t.elapsed().as_secs_f64());
        }
    }
}
