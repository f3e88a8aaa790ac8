//! Checks on quality against sampling cost: who wins at equal cost, a distilled model against
//! undistilled smaller ones, and how the best guidance weight moves.
//!
//! Rows are (model, steps[, w]) cells of a trained sampler sweep; a model is told apart by its
//! `size` column. Each statistic is computed on row means and bootstrapped over replicates
//! (training seeds) like every other check.

use super::{band_text, band_verdict, positive_verdict, CheckOutcome, Ctx, RowOutcome, Verdict};
use crate::fit::{self, Estimate, Rows};
use crate::suite::{CostEnd, Direction, EqualCostCheck, FrontierCheck, GapCheck, GuidanceOptimumCheck};

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Distinct values, ascending.
fn levels(v: &[f64]) -> Vec<f64> {
    let mut l: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    l.sort_by(f64::total_cmp);
    l.dedup_by(|a, b| same(*a, *b));
    l
}

/// One model's cells as (cost, y).
struct Curve {
    size: f64,
    points: Vec<(f64, f64)>,
}

impl Curve {
    /// The best quality reachable at cost ≤ c (any steps, any w): the model's cost frontier.
    fn at(&self, c: f64) -> Option<f64> {
        self.points.iter().filter(|p| p.0 <= c * (1.0 + 1e-9)).map(|p| p.1).min_by(f64::total_cmp)
    }
    fn cheapest(&self) -> f64 {
        self.points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min)
    }
    fn dearest(&self) -> f64 {
        self.points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max)
    }
}

/// Row means of (cost, y, size) grouped into one curve per size, smallest first.
fn curves(cost: &[f64], y: &[f64], size: &[f64]) -> Vec<Curve> {
    levels(size)
        .into_iter()
        .map(|s| Curve {
            size: s,
            points: (0..size.len())
                .filter(|i| same(size[*i], s) && cost[*i].is_finite() && y[*i].is_finite())
                .map(|i| (cost[i], y[i]))
                .collect(),
        })
        .collect()
}

/// The best smaller model at cost c.
fn best_smaller(cs: &[Curve], c: f64) -> Option<f64> {
    cs[..cs.len() - 1].iter().filter_map(|m| m.at(c)).min_by(f64::total_cmp)
}

/// The winner's relative margin at the claimed end of the cost range (positive: the claim holds).
fn margin(cs: &[Curve], at: CostEnd) -> Option<f64> {
    let large = cs.last().filter(|_| cs.len() >= 2)?;
    match at {
        CostEnd::Lowest => {
            let c = large.cheapest();
            let (yl, ys) = (large.at(c)?, best_smaller(cs, c)?);
            Some((yl - ys) / yl)
        }
        CostEnd::Highest => {
            let c = large.dearest();
            let (yl, ys) = (large.at(c)?, best_smaller(cs, c)?);
            Some((ys - yl) / ys)
        }
    }
}

/// The lowest measured cost from which the largest model's frontier stays below every smaller
/// model's.
fn crossover(cs: &[Curve]) -> Option<f64> {
    let large = cs.last().filter(|_| cs.len() >= 2)?;
    let mut costs = levels(&cs.iter().flat_map(|m| m.points.iter().map(|p| p.0)).collect::<Vec<_>>());
    costs.retain(|c| *c >= large.cheapest());
    let wins = |c: &f64| match (large.at(*c), best_smaller(cs, *c)) {
        (Some(l), Some(s)) => l < s,
        (Some(_), None) => true,
        _ => false,
    };
    let last_loss = costs.iter().rposition(|c| !wins(c));
    match last_loss {
        None => costs.first().copied(),
        Some(k) => costs.get(k + 1).copied(),
    }
}

fn cols3(ctx: &Ctx, a: &str, b: &str, c: &str) -> Result<[Rows; 3], String> {
    let (xa, xb, xc) = (ctx.rows(a)?, ctx.rows(b)?, ctx.rows(c)?);
    let idx = ctx.complete(&[&xa, &xb, &xc], None);
    Ok([Ctx::pick(&xa, &idx), Ctx::pick(&xb, &idx), Ctx::pick(&xc, &idx)])
}

pub fn frontier(ctx: &Ctx, f: &FrontierCheck, i: usize) -> Result<CheckOutcome, String> {
    let cols = cols3(ctx, &f.cost, &f.y, &f.size)?;
    let refs: Vec<&Rows> = cols.iter().collect();
    let curves_of = |c: &[Rows]| curves(&fit::row_means(&c[0]), &fit::row_means(&c[1]), &fit::row_means(&c[2]));
    let est = ctx.interval(&refs, ctx.seed(&format!("check{i}")), |c| margin(&curves_of(c), f.at));
    let cross = ctx.interval(&refs, ctx.seed(&format!("check{i}/crossover")), |c| crossover(&curves_of(c)));
    let (who, end) = match f.at {
        CostEnd::Lowest => ("a smaller model", "the largest model's cheapest cost"),
        CostEnd::Highest => ("the largest model", "its dearest cost"),
    };
    let mut rows = vec![];
    let measured = curves_of(&cols);
    if let Some(large) = measured.last() {
        let c = match f.at {
            CostEnd::Lowest => large.cheapest(),
            CostEnd::Highest => large.dearest(),
        };
        for m in &measured {
            if let Some(y) = m.at(c) {
                rows.push(RowOutcome::reported(
                    format!("{} = {}: best {} at cost ≤ {}", f.size, fit::fmt_num(m.size), f.y, fit::fmt_num(c)),
                    Estimate::exact(y),
                ));
            }
        }
    }
    let row = format!("{} from which the largest model is best", f.cost);
    rows.push(match cross {
        Some(e) => RowOutcome::reported(row, e),
        // No crossover: the largest model never becomes best within the measured costs.
        None => RowOutcome {
            note: Some("no crossover in the measured range".into()),
            ..RowOutcome::reported(row, Estimate::exact(f64::INFINITY))
        },
    });
    let (verdict, note) = match &est {
        Some(e) => {
            let shifted =
                Estimate { value: e.value - f.floor, lo: e.lo.map(|v| v - f.floor), hi: e.hi.map(|v| v - f.floor) };
            (positive_verdict(&shifted), None)
        }
        None => (Verdict::Fail, Some("needs two models whose costs overlap".into())),
    };
    Ok(CheckOutcome {
        check: format!("{who} has the best {} at {end} by > {}%", f.y, fit::fmt_num(100.0 * f.floor)),
        verdict,
        measured: est,
        expected: format!("relative margin > {}", fit::fmt_num(f.floor)),
        rows,
        note,
    })
}

/// The distilled row k (the largest model with a `target`) and the best smaller-model row j
/// within `scale` × k's cost, from row means.
fn equal_cost_rows(t: &[f64], y: &[f64], cost: &[f64], size: &[f64], scale: f64) -> Option<(usize, Option<usize>)> {
    let k = (0..t.len()).filter(|k| t[*k].is_finite()).max_by(|a, b| size[*a].total_cmp(&size[*b]))?;
    let budget = scale * cost[k];
    let j = (0..y.len())
        .filter(|j| size[*j] < size[k] && !same(size[*j], size[k]) && cost[*j] <= budget * (1.0 + 1e-9))
        .min_by(|a, b| y[*a].total_cmp(&y[*b]));
    Some((k, j))
}

pub fn equal_cost(ctx: &Ctx, e: &EqualCostCheck, i: usize) -> Result<CheckOutcome, String> {
    // The target column exists only in a few rows: align it to the same rows, empty elsewhere.
    let (tc, yc, cc, sc) = (ctx.rows(&e.target)?, ctx.rows(&e.y)?, ctx.rows(&e.cost)?, ctx.rows(&e.size)?);
    let idx = ctx.complete(&[&yc, &cc, &sc], None);
    let target: Rows = idx.iter().map(|k| tc[*k].clone().unwrap_or_default()).collect();
    let (y, cost, size) = (Ctx::pick(&yc, &idx), Ctx::pick(&cc, &idx), Ctx::pick(&sc, &idx));
    let stat = |c: &[Rows]| {
        let (t, y, cost, size) =
            (fit::row_means(&c[0]), fit::row_means(&c[1]), fit::row_means(&c[2]), fit::row_means(&c[3]));
        let (k, j) = equal_cost_rows(&t, &y, &cost, &size, e.scale)?;
        Some((y[j?] - t[k]) / t[k])
    };
    let est = ctx.interval(&[&target, &y, &cost, &size], ctx.seed(&format!("check{i}")), stat);
    // The two sides on the data, with the rows they come from.
    let mut rows = vec![];
    let (tm, ym, cm, sm) = (fit::row_means(&target), fit::row_means(&y), fit::row_means(&cost), fit::row_means(&size));
    if let Some((k, best)) = equal_cost_rows(&tm, &ym, &cm, &sm, e.scale) {
        let budget = e.scale * cm[k];
        let report = |row: String, v: f64| RowOutcome::reported(row, Estimate::exact(v));
        rows.push(report(format!("{} at {} (cost {})", e.target, ctx.data.rows[idx[k]], fit::fmt_num(cm[k])), tm[k]));
        if let Some(j) = best {
            rows.push(report(
                format!("best {} at {} ≤ {}: {}", e.y, e.cost, fit::fmt_num(budget), ctx.data.rows[idx[j]]),
                ym[j],
            ));
        }
    }
    let check = format!(
        "(best smaller-model {} at {} ≤ {}× the distilled model's − {}) / {} {}",
        e.y,
        e.cost,
        fit::fmt_num(e.scale),
        e.target,
        e.target,
        band_text(e.min, e.max)
    );
    let (verdict, note) = match &est {
        Some(m) => (band_verdict(m, e.min, e.max), None),
        None => (Verdict::Fail, Some(format!("no `{}` row, or no smaller model within its cost", e.target))),
    };
    Ok(CheckOutcome { check, verdict, measured: est, expected: band_text(e.min, e.max), rows, note })
}

/// ln w* per (within, across) pair, from row means of w, y, within, across: the grid argmin,
/// refined with the parabola through it and its neighbours when interior. The argmin jumps
/// with the noise; `fit::interval` deletes half the seeds at a time so that its interval sees
/// those jumps (`calibration/interval-coverage` measures it).
pub fn guidance_optima(w: &[f64], y: &[f64], within: &[f64], across: &[f64]) -> Vec<((f64, f64), Option<f64>)> {
    let mut out = vec![];
    for a in levels(within) {
        for b in levels(across) {
            let mut pts: Vec<(f64, f64)> = (0..w.len())
                .filter(|k| same(within[*k], a) && same(across[*k], b) && w[*k] > 0.0 && y[*k] > 0.0)
                .map(|k| (w[k].ln(), y[k].ln()))
                .collect();
            pts.sort_by(|p, q| p.0.total_cmp(&q.0));
            let best = pts.iter().enumerate().min_by(|p, q| p.1 .1.total_cmp(&q.1 .1)).map(|p| p.0);
            // Refine an interior minimum with the parabola through it and its neighbours.
            let opt = best.map(|k| {
                if k == 0 || k + 1 == pts.len() {
                    pts[k].0
                } else {
                    let (u, v): (Vec<f64>, Vec<f64>) = pts[k - 1..=k + 1].iter().copied().unzip();
                    fit::parabola_min(&u, &v).unwrap_or(pts[k].0)
                }
            });
            out.push(((a, b), opt));
        }
    }
    out
}

/// Mean over `within` values of the spread (max − min) of ln w* across `across` values.
fn spread(o: &[((f64, f64), Option<f64>)]) -> Option<f64> {
    let groups = levels(&o.iter().map(|g| g.0 .0).collect::<Vec<_>>());
    let spreads: Vec<f64> = groups
        .iter()
        .filter_map(|a| {
            let v: Vec<f64> = o.iter().filter(|g| same(g.0 .0, *a)).filter_map(|g| g.1).collect();
            (v.len() >= 2).then(|| {
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max) - v.iter().copied().fold(f64::INFINITY, f64::min)
            })
        })
        .collect();
    (!spreads.is_empty()).then(|| fit::mean(&spreads))
}

pub fn guidance_optimum(ctx: &Ctx, g: &GuidanceOptimumCheck, i: usize) -> Result<CheckOutcome, String> {
    let (ws, ys, wi, ac) = (ctx.rows(&g.w)?, ctx.rows(&g.y)?, ctx.rows(&g.within)?, ctx.rows(&g.across)?);
    let idx = ctx.complete(&[&ws, &ys, &wi, &ac], None);
    let cols: Vec<Rows> = [&ws, &ys, &wi, &ac].iter().map(|c| Ctx::pick(c, &idx)).collect();
    let refs: Vec<&Rows> = cols.iter().collect();
    let opt_of = |c: &[Rows]| {
        guidance_optima(&fit::row_means(&c[0]), &fit::row_means(&c[1]), &fit::row_means(&c[2]), &fit::row_means(&c[3]))
    };
    let mut rows = vec![];
    for (k, ((a, c), _)) in opt_of(&cols).iter().enumerate() {
        let seed = ctx.seed(&format!("check{i}/cell{k}"));
        if let Some(e) = ctx.interval(&refs, seed, |s| opt_of(s).get(k).and_then(|o| o.1).map(f64::exp)) {
            rows.push(RowOutcome::reported(
                format!("w* at {} = {}, {} = {}", g.within, fit::fmt_num(*a), g.across, fit::fmt_num(*c)),
                e,
            ));
        }
    }
    let est = ctx.interval(&refs, ctx.seed(&format!("check{i}")), |s| spread(&opt_of(s)));
    let (est, refused) = ctx.at_least(super::MIN_SEEDS_ARGMIN, &[&cols[1]], est, "a guidance optimum");
    let (verdict, note) = match &est {
        Some(e) => {
            // Distance above the floor, or below it for the opposite reading.
            let (f, s) = (g.floor, if g.independent { -1.0 } else { 1.0 });
            let shifted = |v: f64| s * (v - f);
            let (lo, hi) = (e.lo.map(shifted), e.hi.map(shifted));
            let (lo, hi) = if g.independent { (hi, lo) } else { (lo, hi) };
            (positive_verdict(&Estimate { value: shifted(e.value), lo, hi }), None)
        }
        None => (Verdict::Fail, Some(format!("needs two `{}` values per `{}`", g.across, g.within))),
    };
    let note = note.or(refused);
    let (moves, cmp) = if g.independent { ("stays put as", "<") } else { ("moves with", ">") };
    Ok(CheckOutcome {
        check: format!(
            "the {}-optimal {} {moves} {} (mean spread of ln {}* per {} {cmp} {})",
            g.y,
            g.w,
            g.across,
            g.w,
            g.within,
            fit::fmt_num(g.floor)
        ),
        verdict,
        measured: est,
        expected: format!("spread {cmp} {}", fit::fmt_num(g.floor)),
        rows,
        note,
    })
}

/// Relative gaps between paired rows, and whether they grow (or shrink) along the pairs.
pub fn gap(ctx: &Ctx, g: &GapCheck, i: usize) -> Result<CheckOutcome, String> {
    let ys = ctx.rows(&g.y)?;
    let row = |name: &str| ctx.data.rows.iter().position(|r| r == name).ok_or_else(|| format!("no row `{name}`"));
    let mut cols: Vec<Rows> = vec![];
    for [a, b] in &g.pairs {
        for r in [a, b] {
            cols.push(vec![ys[row(r)?].clone().ok_or_else(|| format!("row `{r}` has no `{}`", g.y))?]);
        }
    }
    let refs: Vec<&Rows> = cols.iter().collect();
    let gap_at = |c: &[Rows], k: usize| {
        let (a, b) = (fit::mean(&c[2 * k][0]), fit::mean(&c[2 * k + 1][0]));
        (a - b) / b.abs().max(1e-300)
    };
    let sign = if g.direction == Direction::Increasing { 1.0 } else { -1.0 };
    let mut rows = vec![];
    let mut verdicts = vec![];
    let mut worst: Option<Estimate> = None;
    let mut judge = |row: String, e: Estimate, expected: &str, rows: &mut Vec<RowOutcome>| {
        let v = positive_verdict(&e);
        if worst.is_none_or(|w| e.lo_or_value() < w.lo_or_value()) {
            worst = Some(e);
        }
        rows.push(RowOutcome { row, measured: e, expected: expected.into(), verdict: v, note: None });
        verdicts.push(v);
    };
    // The claimed sign first: in every pair, a is worse (higher) than b. A gap that grows
    // while b loses to a would otherwise pass.
    for (k, [a, bb]) in g.pairs.iter().enumerate() {
        let e = ctx.interval(&refs, ctx.seed(&format!("check{i}/gap{k}")), |c| Some(gap_at(c, k))).expect("defined");
        judge(format!("({a} − {bb}) / {bb}"), e, "> 0", &mut rows);
    }
    for k in 0..g.pairs.len().saturating_sub(1) {
        let e = ctx
            .interval(&refs, ctx.seed(&format!("check{i}/step{k}")), |c| Some(sign * (gap_at(c, k + 1) - gap_at(c, k))))
            .expect("defined");
        judge(format!("gap change, pair {} → {}", k + 1, k + 2), e, "> 0", &mut rows);
    }
    let (verdict, note) = if g.pairs.len() < 2 {
        (Verdict::Fail, Some("needs two pairs".into()))
    } else {
        (Verdict::combine(verdicts), None)
    };
    let dir = if sign > 0.0 { "grows" } else { "shrinks" };
    Ok(CheckOutcome {
        check: format!("the relative gap in {} is positive and {dir} along the pairs", g.y),
        verdict,
        measured: worst,
        expected: "every gap and every step > 0".into(),
        rows,
        note,
    })
}
