//! Intervals for statistics that see a column's row means only through their order: rank
//! correlations (Spearman's ρ, Kendall's τ) and differences of them.
//!
//! Why not the jackknife of [`super::interval`]: such a statistic jumps. At 3 seeds the three
//! delete-one values are often equal, the interval has zero width and misses the truth whenever
//! the means are out of order (measured: 91–93% coverage); at 5–8 seeds the truth, a perfect
//! order, sits on the statistic's bound (ρ = −1), where a symmetric interval is meaningless.
//!
//! What the seeds can say about an order is which pairs of rows they separate. So:
//!
//! 1. Work in ln y when every value is positive (the suites' metrics are, and their seed noise
//!    is multiplicative, a CV), else in y.
//! 2. Fit z_rk = μ_r + β_k + ε_rk over rows r and seeds k. β_k is what seed k shares across
//!    rows (its noise bank); it cancels in every comparison. The residual variance s² pools
//!    all rows, with (R − 1)(n − 1) degrees of freedom.
//! 3. Rows i and j are ordered when their mean difference exceeds t(df, 1 − α/2)·s·√(2/n).
//! 4. The interval is the range of the statistic over every order of the rows that keeps the
//!    separated pairs as they are (the linear extensions of that partial order). The means'
//!    own order is one of them, so the interval holds the point estimate.
//!
//! The truth lies inside whenever no pair is separated the wrong way round. Each pair is tested
//! at α, not α over the number of pairs: a Bonferroni split would guarantee 95% by itself but
//! at 3 seeds separates almost nothing (measured: 0–37% power where this keeps 30–92%). The
//! coverage is instead measured, by `calibration/interval-coverage`, on the same noise shapes
//! as every other check kind. It comes out above 95%, and must: a discrete statistic equals its
//! truth whenever the noise leaves the rows in their true order, and then any interval that
//! holds the estimate covers. So that check asks of these kinds at least 93%, and reports their
//! power beside it, since an interval as wide as [−1, 1] would cover too.

use super::interval::{student_t_quantile, MIN_REPLICATES};
use super::{mean, row_means, Estimate, Rows};

/// Most orders enumerated. Beyond, the seeds leave so much undecided that the interval is the
/// whole line (INCONCLUSIVE) rather than a long wait.
pub const MAX_ORDERS: usize = 100_000;

/// How the interval was made, for a check's note.
pub const METHOD: &str = "interval: the range over every order of the rows that keeps the pairs \
     the seeds separate (two-sided t test at 95% on ln values, seed effects removed)";

/// θ̂ = `stat(means of y)` and its interval at `level`, for a `stat` that depends on its
/// argument's order only. The whole line below [`MIN_REPLICATES`] seeds, when rows carry
/// different numbers of seeds, or past [`MAX_ORDERS`] orders.
pub fn order_interval<F>(y: &Rows, level: f64, stat: F) -> Option<Estimate>
where
    F: Fn(&[f64]) -> Option<f64>,
{
    let value = stat(&row_means(y))?;
    let unbounded = Some(Estimate { value, lo: Some(f64::NEG_INFINITY), hi: Some(f64::INFINITY) });
    let n = y.first().map_or(0, |r| r.len());
    let rows = y.len();
    if n < MIN_REPLICATES || rows < 2 || y.iter().any(|r| r.len() != n) || rows > 64 {
        return unbounded;
    }
    let positive = y.iter().flatten().all(|v| *v > 0.0);
    let z: Rows = y.iter().map(|r| r.iter().map(|v| if positive { v.ln() } else { *v }).collect()).collect();
    let Some(before) = separated(&z, level) else { return unbounded };
    let (mut lo, mut hi) = (value, value);
    let mut seen = 0usize;
    let mut ranks = vec![0.0; rows];
    let complete = extensions(&before, 0, 0, &mut ranks, &mut seen, &mut |r| {
        if let Some(s) = stat(r).filter(|s| s.is_finite()) {
            lo = lo.min(s);
            hi = hi.max(s);
        }
    });
    if !complete {
        return unbounded;
    }
    Some(Estimate { value, lo: Some(lo), hi: Some(hi) })
}

/// Per row, the set (a bit mask) of rows whose true mean the seeds place below it.
fn separated(z: &Rows, level: f64) -> Option<Vec<u64>> {
    let (rows, n) = (z.len(), z[0].len());
    let means = row_means(z);
    let seed_means: Vec<f64> = (0..n).map(|k| mean(&z.iter().map(|r| r[k]).collect::<Vec<_>>())).collect();
    let grand = mean(&means);
    let ss: f64 = (0..rows)
        .flat_map(|r| (0..n).map(move |k| (r, k)))
        .map(|(r, k)| (z[r][k] - means[r] - seed_means[k] + grand).powi(2))
        .sum();
    let df = ((rows - 1) * (n - 1)) as f64;
    let s2 = ss / df;
    if !s2.is_finite() {
        return None;
    }
    let half = student_t_quantile(1.0 - (1.0 - level) / 2.0, df) * (2.0 * s2 / n as f64).sqrt();
    let mut below = vec![0u64; rows];
    for i in 0..rows {
        for j in 0..rows {
            if means[j] - means[i] > half {
                below[j] |= 1 << i;
            }
        }
    }
    Some(below)
}

/// Visit every order of the rows consistent with `below`: `ranks[r]` is row r's position.
/// False when more than [`MAX_ORDERS`] orders exist.
fn extensions(
    below: &[u64],
    placed: u64,
    position: usize,
    ranks: &mut [f64],
    seen: &mut usize,
    visit: &mut dyn FnMut(&[f64]),
) -> bool {
    if position == below.len() {
        *seen += 1;
        visit(ranks);
        return *seen <= MAX_ORDERS;
    }
    for r in 0..below.len() {
        if placed & (1 << r) == 0 && below[r] & !placed == 0 {
            ranks[r] = position as f64;
            if !extensions(below, placed | 1 << r, position + 1, ranks, seen, visit) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::spearman;

    fn rho(y: &Rows) -> Estimate {
        let x: Vec<f64> = (0..y.len()).map(|i| i as f64).collect();
        order_interval(y, 0.95, |m| spearman(&x, m)).unwrap()
    }

    #[test]
    fn well_separated_rows_give_a_point() {
        let y: Rows = (0..5).map(|i| vec![10.0 + i as f64, 10.1 + i as f64, 9.9 + i as f64]).collect();
        assert_eq!(rho(&y), Estimate { value: 1.0, lo: Some(1.0), hi: Some(1.0) });
    }

    #[test]
    fn an_unseparated_pair_spans_both_of_its_orders() {
        // Rows 1 and 2 overlap across seeds; the rest are far apart.
        let y: Rows = vec![vec![1.0, 1.1, 0.9], vec![5.0, 5.6, 4.7], vec![5.3, 4.9, 5.5], vec![20.0, 21.0, 19.0]];
        let e = rho(&y);
        // Swapping one neighbouring pair of 4 moves ρ from 1 to 1 − 6·2/(4·15) = 0.8.
        assert!((e.lo.unwrap() - 0.8).abs() < 1e-12 && e.hi == Some(1.0), "{e:?}");
    }

    #[test]
    fn a_shared_seed_effect_cancels() {
        // Every row moves with its seed by a factor of up to 3, yet the rows keep 1% apart.
        let y: Rows = (0..4).map(|i| [1.0, 3.0, 0.5].iter().map(|s| s * (1.0 + 0.01 * i as f64)).collect()).collect();
        assert_eq!(rho(&y).lo, Some(1.0));
    }

    #[test]
    fn too_few_seeds_or_unequal_rows_give_the_whole_line() {
        assert_eq!(rho(&vec![vec![1.0, 2.0], vec![3.0, 4.0]]).lo, Some(f64::NEG_INFINITY));
        assert_eq!(rho(&vec![vec![1.0, 2.0, 3.0], vec![3.0, 4.0]]).hi, Some(f64::INFINITY));
    }

    #[test]
    fn the_order_count_is_bounded() {
        // Nine rows the seeds cannot tell apart: 9! = 362,880 orders, past the limit.
        let y: Rows =
            (0..9).map(|i| (0..3).map(|k| [1.0, 1.2, 0.8][(i + k) % 3] + 0.001 * i as f64).collect()).collect();
        assert_eq!(rho(&y).lo, Some(f64::NEG_INFINITY));
    }
}
