//! Intervals for statistics of replicated rows: the delete-one-seed jackknife with Student-t
//! quantiles.
//!
//! Why not the percentile bootstrap: a claim trained at 3 seeds has 3 values per row, and a
//! bootstrap of 3 values can only return about [min, max], which covers the truth ~75% of the
//! time, not 95%. What is honest at 3–10 replicates is a t interval: exact for a mean of
//! normal data at any n, robust to symmetric heavy tails.
//!
//! The jackknife turns any statistic of the rows into one: drop a set S of d seeds from every
//! row (seed i of every row is one unit, so rows that share seed i's noise bank stay paired),
//! recompute the statistic θ₍ₛ₎ for each of the K sets, and take
//!
//! ```text
//!   se² = (n − d)/(d·K) · Σₛ (θ₍ₛ₎ − θ̄)²,     interval = θ̂ ± t(n − 1, 1 − α/2) · se
//! ```
//!
//! with d = ⌊n/2⌋ (one seed at n = 3; see [`deleted`] for why not always one).
//!
//! For a mean, or a difference of means paired by seed, se is exactly s/√n and the interval
//! is Student's. For smooth statistics (ratios, relative gaps, fitted exponents) it is the
//! delta method. For the argmin-type statistics (optima, crossovers, frontiers) nothing
//! guarantees it: `calibration/interval-coverage` measures the coverage of every check kind
//! on data shaped like the suites' metrics, and a kind that misses 95% shows up there.
//!
//! Below [`MIN_REPLICATES`] seeds a trained claim cannot be decisive: the interval is the
//! whole line, so every check on it is INCONCLUSIVE.

use super::{mean, Estimate, Rows};

/// Fewest seeds from which an interval of a trained (replicated) statistic is finite. With 2
/// seeds the 95% t quantile is 12.7 and one seed's noise decides the verdict.
pub const MIN_REPLICATES: usize = 3;

/// How an interval was made, for the report.
pub fn method_text(n: usize) -> String {
    if n < MIN_REPLICATES {
        format!("{n} seed(s), fewer than {MIN_REPLICATES}: no interval (INCONCLUSIVE)")
    } else {
        format!("jackknife over {n} seeds, Student-t with {} d.o.f.", n - 1)
    }
}

/// Replicates per cell: the largest count of any cell holding more than one value (cells with
/// one value are constants, e.g. a printed number). 1 when nothing is replicated.
pub fn replicates(cols: &[&Rows]) -> usize {
    cols.iter().flat_map(|c| c.iter()).map(|r| r.len()).max().unwrap_or(0).max(1)
}

/// θ̂ and its jackknife-t interval at `level`; the whole line below [`MIN_REPLICATES`] or when
/// dropping a seed makes the statistic undefined.
pub fn jackknife_t<F>(cols: &[&Rows], level: f64, stat: F) -> Option<Estimate>
where
    F: Fn(&[Rows]) -> Option<f64>,
{
    let owned: Vec<Rows> = cols.iter().map(|c| (*c).clone()).collect();
    let value = stat(&owned)?;
    let n = replicates(cols);
    let unbounded = Estimate { value, lo: Some(f64::NEG_INFINITY), hi: Some(f64::INFINITY) };
    if n < MIN_REPLICATES {
        return Some(unbounded);
    }
    let d = deleted(n);
    let mut thetas = Vec::new();
    for subset in subsets(n, d) {
        let dropped: Vec<Rows> = owned
            .iter()
            .map(|c| {
                c.iter()
                    .map(|r| {
                        if r.len() > 1 {
                            r.iter().enumerate().filter(|(k, _)| !subset.contains(k)).map(|p| *p.1).collect()
                        } else {
                            r.clone()
                        }
                    })
                    .collect()
            })
            .collect();
        match stat(&dropped) {
            Some(s) if s.is_finite() => thetas.push(s),
            _ => return Some(unbounded),
        }
    }
    let m = mean(&thetas);
    let ss: f64 = thetas.iter().map(|s| (s - m).powi(2)).sum();
    let se = ((n - d) as f64 / (d * thetas.len()) as f64 * ss).sqrt();
    let t = student_t_quantile(1.0 - (1.0 - level) / 2.0, (n - 1) as f64);
    Some(Estimate { value, lo: Some(value - t * se), hi: Some(value + t * se) })
}

/// Seeds deleted at a time: half of them. Deleting one at a time is enough for smooth
/// statistics but not for those that jump (a grid argmin, a rank): dropping one seed of eight
/// rarely moves them, so the spread of the θ₍ₛ₎ understates their noise (measured: w* covered
/// 91% at 8 seeds). Deleting d ≈ n/2 is consistent for both (Shao & Wu 1989), and for a mean
/// it still gives exactly s²/n.
fn deleted(n: usize) -> usize {
    (n / 2).max(1)
}

/// Most subsets evaluated; beyond, a fixed pseudo-random sample of them.
const MAX_SUBSETS: usize = 256;

/// The subsets of d seeds out of n to delete: all of them, or MAX_SUBSETS drawn without
/// repetition from a generator seeded by (n, d) alone, so an interval is reproducible.
fn subsets(n: usize, d: usize) -> Vec<Vec<usize>> {
    let total = (0..d).fold(1f64, |acc, k| acc * (n - k) as f64 / (k + 1) as f64);
    if total <= MAX_SUBSETS as f64 {
        let mut out = vec![];
        let mut cur: Vec<usize> = (0..d).collect();
        loop {
            out.push(cur.clone());
            // The next combination in lexicographic order.
            let Some(i) = (0..d).rev().find(|&i| cur[i] < n - d + i) else { return out };
            cur[i] += 1;
            for j in i + 1..d {
                cur[j] = cur[j - 1] + 1;
            }
        }
    }
    let mut rng = crate::seed::Rng::new(((n as u64) << 32) ^ d as u64);
    let mut out: Vec<Vec<usize>> = Vec::with_capacity(MAX_SUBSETS);
    while out.len() < MAX_SUBSETS {
        let mut pick: Vec<usize> = (0..n).collect();
        for k in 0..d {
            let j = k + rng.below(n - k);
            pick.swap(k, j);
        }
        let mut s = pick[..d].to_vec();
        s.sort_unstable();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-13).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s: f64 = C[0] + (1..9).map(|k| C[k] / (x + k as f64)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// The regularised incomplete beta I_x(a, b), by its continued fraction (modified Lentz).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    // The fraction converges fast for x < (a + 1)/(a + b + 2); use the symmetry otherwise.
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(1.0 - x, b, a);
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp() / a;
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = 1.0 / if d.abs() < tiny { tiny } else { d };
    let mut f = d;
    for m in 1..300 {
        let m = m as f64;
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            d = 1.0 / if d.abs() < tiny { tiny } else { d };
            c = 1.0 + num / c;
            if c.abs() < tiny {
                c = tiny;
            }
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The p-quantile of Student's t with `df` degrees of freedom (bisection on the CDF to 1e-12).
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    let (mut lo, mut hi) = (-1e4, 1e4);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95% critical values from any table of Student's t.
        for (df, t) in [(1.0, 12.7062), (2.0, 4.3027), (4.0, 2.7764), (7.0, 2.3646), (29.0, 2.0452), (1e6, 1.9600)] {
            assert!((student_t_quantile(0.975, df) - t).abs() < 1e-3, "df {df}: {}", student_t_quantile(0.975, df));
        }
        assert!((student_t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn jackknife_of_a_mean_is_students_interval() {
        let rows: Rows = vec![vec![1.0, 2.0, 4.0]];
        let e = jackknife_t(&[&rows], 0.95, |c| Some(mean(&c[0][0]))).unwrap();
        // mean 7/3, s = 1.5275, s/√3 = 0.8819, t(2) = 4.3027.
        let half = 4.302_653 * 1.527_525 / 3f64.sqrt();
        assert!((e.lo.unwrap() - (7.0 / 3.0 - half)).abs() < 1e-5 && (e.hi.unwrap() - (7.0 / 3.0 + half)).abs() < 1e-5);
    }

    #[test]
    fn delete_half_gives_the_mean_its_exact_variance() {
        // For a mean, the delete-d jackknife's variance is s²/n for every d (Shao & Tu 1995, §2.3).
        let v = [0.3, 1.9, -0.4, 2.2, 0.8, 1.1, -1.0, 0.5];
        let rows: Rows = vec![v.to_vec()];
        let e = jackknife_t(&[&rows], 0.95, |c| Some(mean(&c[0][0]))).unwrap();
        let m = mean(&v);
        let s2 = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 7.0;
        let half = student_t_quantile(0.975, 7.0) * (s2 / 8.0).sqrt();
        assert!((e.hi.unwrap() - m - half).abs() < 1e-12, "{e:?} {half}");
        assert_eq!(subsets(8, 4).len(), 70);
        assert_eq!(subsets(60, 30).len(), MAX_SUBSETS);
    }

    #[test]
    fn paired_seeds_cancel_shared_noise() {
        // Two rows sharing each seed's offset: their difference is exact, so is its interval.
        let a: Rows = vec![vec![1.0, 5.0, -3.0], vec![2.0, 6.0, -2.0]];
        let e = jackknife_t(&[&a], 0.95, |c| Some(mean(&c[0][1]) - mean(&c[0][0]))).unwrap();
        assert!((e.value - 1.0).abs() < 1e-12 && (e.hi.unwrap() - e.lo.unwrap()).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn too_few_seeds_give_the_whole_line() {
        let rows: Rows = vec![vec![1.0, 2.0]];
        let e = jackknife_t(&[&rows], 0.95, |c| Some(mean(&c[0][0]))).unwrap();
        assert_eq!((e.lo, e.hi), (Some(f64::NEG_INFINITY), Some(f64::INFINITY)));
    }
}
