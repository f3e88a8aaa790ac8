//! Fits and statistics, with the method next to the code.
//!
//! Data arrive as rows (a model, a step count, an x value), each with one value per replicate
//! (seed). Two kinds of interval:
//!
//! * Seeded data (trained models, simulations): the design (which x values were run) is fixed
//!   by the experiment, the noise is in the seeds. Intervals are the delete-one-seed jackknife
//!   with Student-t quantiles ([`interval`]), whose coverage at 3–8 seeds the harness measures
//!   itself (`calibration/interval-coverage`). A percentile bootstrap of 3 seeds returns about
//!   [min, max] and covers ~75%, so it is never used on seeds.
//! * One value per row (a paper's own table): the only variation left is which rows were
//!   published, so [`bootstrap`] resamples rows with replacement. Resamples that make a
//!   statistic undefined (all x equal) are dropped and counted. The interval is
//!   [q(α/2), q(1−α/2)] of the resampled statistic, drawn from an RNG seeded by (suite,
//!   claim, check), so it is reproducible bit for bit.

pub mod interval;
pub mod json_float;
pub mod orders;

use crate::seed::Rng;

/// A point estimate with an optional interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    #[serde(with = "json_float")]
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_float::option")]
    pub lo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "json_float::option")]
    pub hi: Option<f64>,
}

impl Estimate {
    pub fn exact(value: f64) -> Self {
        Estimate { value, lo: None, hi: None }
    }

    pub fn lo_or_value(&self) -> f64 {
        self.lo.unwrap_or(self.value)
    }

    pub fn hi_or_value(&self) -> f64 {
        self.hi.unwrap_or(self.value)
    }

    pub fn show(&self) -> String {
        match (self.lo, self.hi) {
            (Some(lo), Some(hi)) => {
                format!("{} [{}, {}]", fmt_num(self.value), fmt_num(lo), fmt_num(hi))
            }
            _ => fmt_num(self.value),
        }
    }
}

/// Four significant digits, scientific outside [1e-3, 1e6).
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else {
        let digits = if a == 0.0 { 0 } else { (3 - a.log10().floor() as i32).max(0) as usize };
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Ordinary least squares y = intercept + slope·x, with R².
pub fn ols(x: &[f64], y: &[f64]) -> Option<(f64, f64, f64)> {
    let n = x.len();
    if n < 2 || n != y.len() {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    let sse: f64 = x.iter().zip(y).map(|(a, b)| (b - intercept - slope * a).powi(2)).sum();
    let r2 = if syy > 0.0 { 1.0 - sse / syy } else { 1.0 };
    Some((slope, intercept, r2))
}

/// The minimiser of y over u from the least-squares parabola y = a + b·u + c·u², restricted
/// to the measured range of u (an optimum outside it is not measured; it is reported at the
/// edge). When the fit opens downwards, the measured u of the smallest y. Used on ln y against
/// ln N per compute budget (Hoffmann et al. 2022 approach 2; Mei et al. Fig. 3).
pub fn parabola_min(u: &[f64], y: &[f64]) -> Option<f64> {
    if u.len() < 3 || u.len() != y.len() {
        return None;
    }
    let (lo, hi) = u.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let argmin = || u.iter().zip(y).min_by(|a, b| a.1.total_cmp(b.1)).map(|p| *p.0);
    // Centre u so the normal equations are well conditioned.
    let m = mean(u);
    let z: Vec<f64> = u.iter().map(|v| v - m).collect();
    let s = |p: i32| z.iter().map(|v| v.powi(p)).sum::<f64>();
    let t = |p: i32| z.iter().zip(y).map(|(v, w)| v.powi(p) * w).sum::<f64>();
    let a = [[s(0), s(1), s(2)], [s(1), s(2), s(3)], [s(2), s(3), s(4)]];
    let rhs = [t(0), t(1), t(2)];
    let det3 = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det3(a);
    if d.abs() < 1e-12 {
        return None;
    }
    // Cramer's rule for b and c.
    let with = |col: usize| {
        let mut m = a;
        (0..3).for_each(|r| m[r][col] = rhs[r]);
        det3(m) / d
    };
    let (b, c) = (with(1), with(2));
    if c <= 0.0 {
        return argmin();
    }
    Some((m - b / (2.0 * c)).clamp(lo, hi))
}

/// A fitted power law y = prefactor · x^exponent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerLaw {
    pub exponent: f64,
    pub prefactor: f64,
    pub r2: f64,
}

/// Least squares in log-log space: log y = log a + b·log x. Needs positive x and y.
pub fn power_law(x: &[f64], y: &[f64]) -> Option<PowerLaw> {
    if x.iter().chain(y).any(|v| v.is_nan() || *v <= 0.0) {
        return None;
    }
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let (b, la, r2) = ols(&lx, &ly)?;
    Some(PowerLaw { exponent: b, prefactor: la.exp(), r2 })
}

/// Ranks with ties given their average rank (1-based).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            r[*k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation; `None` when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let (mx, my) = (mean(x), mean(y));
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Spearman's ρ: Pearson correlation of the (tie-averaged) ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// Kendall's τ-b: (concordant − discordant) / sqrt((n0 − ties_x)(n0 − ties_y)).
pub fn kendall(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    let (mut s, mut tx, mut ty, mut n0) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        for j in i + 1..n {
            n0 += 1.0;
            let dx = (x[i] - x[j]).signum() * f64::from(x[i] != x[j]);
            let dy = (y[i] - y[j]).signum() * f64::from(y[i] != y[j]);
            if dx == 0.0 {
                tx += 1.0;
            }
            if dy == 0.0 {
                ty += 1.0;
            }
            s += dx * dy;
        }
    }
    let d = ((n0 - tx) * (n0 - ty)).sqrt();
    (d > 0.0).then(|| s / d)
}

/// Where `d(x)` first changes sign, with x sorted ascending, interpolated linearly in log x
/// (the axes the papers plot on). `None` if `d` never changes sign.
pub fn crossover(x: &[f64], d: &[f64]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|a, b| x[*a].total_cmp(&x[*b]));
    for w in idx.windows(2) {
        let (i, j) = (w[0], w[1]);
        if d[i] == 0.0 {
            return Some(x[i]);
        }
        if d[j] == 0.0 {
            return Some(x[j]);
        }
        if d[i].signum() != d[j].signum() {
            let t = d[i] / (d[i] - d[j]);
            let (li, lj) = (x[i].ln(), x[j].ln());
            return Some((li + t * (lj - li)).exp());
        }
    }
    None
}

/// Percentile `q` in [0, 1] of `v` (linear interpolation between order statistics).
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
}

/// Rows of replicate values, the unit every statistic below is computed on.
pub type Rows = Vec<Vec<f64>>;

/// Row means.
pub fn row_means(rows: &[Vec<f64>]) -> Vec<f64> {
    rows.iter().map(|r| mean(r)).collect()
}

/// Bootstrap a statistic of several aligned columns (each a list of rows of replicates).
///
/// `stat` receives the resampled columns and returns `None` when undefined on that resample.
/// Returns the statistic on the data and its percentile interval, or only the point value
/// when there is nothing to resample (a single value per row and fewer than 3 rows).
pub fn bootstrap<F>(cols: &[&Rows], resamples: u32, level: f64, seed: u64, stat: F) -> Option<Estimate>
where
    F: Fn(&[Rows]) -> Option<f64>,
{
    let owned: Vec<Rows> = cols.iter().map(|c| (*c).clone()).collect();
    let value = stat(&owned)?;
    let n_rows = owned.first().map(|c| c.len()).unwrap_or(0);
    let replicated = owned.iter().any(|c| c.iter().any(|r| r.len() > 1));
    if !replicated && n_rows < 3 {
        return Some(Estimate::exact(value));
    }
    let mut rng = Rng::new(seed);
    let mut samples = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        let resampled: Vec<Rows> = if replicated {
            // Stratified and paired: new replicates within every row, the same replicate
            // indices for every column of that row (replicate r shares its seeds and noise
            // bank across columns), or independent draws where the counts differ.
            let mut out: Vec<Rows> = owned.iter().map(|c| vec![vec![]; c.len()]).collect();
            for row in 0..n_rows {
                let lens: Vec<usize> = owned.iter().map(|c| c[row].len()).collect();
                let paired = lens.windows(2).all(|w| w[0] == w[1]);
                let pick: Vec<usize> = (0..lens[0]).map(|_| rng.below(lens[0])).collect();
                for (ci, c) in owned.iter().enumerate() {
                    let r = &c[row];
                    out[ci][row] = if paired {
                        pick.iter().map(|i| r[*i]).collect()
                    } else {
                        (0..r.len()).map(|_| r[rng.below(r.len())]).collect()
                    };
                }
            }
            out
        } else {
            // Rows with replacement, the same rows for every column so pairs stay paired.
            let pick: Vec<usize> = (0..n_rows).map(|_| rng.below(n_rows)).collect();
            owned.iter().map(|c| pick.iter().map(|i| c[*i].clone()).collect()).collect()
        };
        if let Some(s) = stat(&resampled) {
            if s.is_finite() {
                samples.push(s);
            }
        }
    }
    // Too many undefined resamples and the interval would describe a different population.
    if samples.len() < (resamples as usize) / 2 {
        return Some(Estimate { value, lo: Some(f64::NEG_INFINITY), hi: Some(f64::INFINITY) });
    }
    let a = (1.0 - level) / 2.0;
    let lo = quantile(&mut samples, a);
    let hi = quantile(&mut samples, 1.0 - a);
    Some(Estimate { value, lo: Some(lo), hi: Some(hi) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_law_recovers_exact_parameters() {
        let x: Vec<f64> = (1..=8).map(|i| i as f64 * 3.0).collect();
        let y: Vec<f64> = x.iter().map(|v| 50.0 * v.powf(-0.5)).collect();
        let f = power_law(&x, &y).unwrap();
        assert!((f.exponent + 0.5).abs() < 1e-12 && (f.prefactor - 50.0).abs() < 1e-9 && f.r2 > 0.999_999);
    }

    #[test]
    fn rank_correlations_closed_forms() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(spearman(&x, &[10.0, 20.0, 30.0, 40.0, 50.0]), Some(1.0));
        assert_eq!(kendall(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        // One swapped pair out of 10: τ = (9 − 1)/10.
        assert!((kendall(&x, &[1.0, 3.0, 2.0, 4.0, 5.0]).unwrap() - 0.8).abs() < 1e-12);
        // Spearman with one adjacent swap: 1 − 6·2/(5·24) = 0.9.
        assert!((spearman(&x, &[1.0, 3.0, 2.0, 4.0, 5.0]).unwrap() - 0.9).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), vec![2.5, 1.0, 2.5]);
    }

    #[test]
    fn crossover_interpolates_in_log_x() {
        // d changes sign between x = 1 and x = 100, at the geometric midpoint.
        let c = crossover(&[1.0, 100.0], &[-1.0, 1.0]).unwrap();
        assert!((c - 10.0).abs() < 1e-9);
        assert_eq!(crossover(&[1.0, 2.0], &[1.0, 1.0]), None);
    }

    #[test]
    fn bootstrap_interval_covers_and_is_reproducible() {
        let mut r = Rng::new(3);
        let rows: Rows = (0..5).map(|_| (0..20).map(|_| 1.0 + 0.1 * r.normal()).collect()).collect();
        let stat = |c: &[Rows]| Some(mean(&row_means(&c[0])));
        let a = bootstrap(&[&rows], 1000, 0.95, 9, stat).unwrap();
        let b = bootstrap(&[&rows], 1000, 0.95, 9, stat).unwrap();
        assert_eq!(a, b);
        assert!(a.lo.unwrap() < 1.0 && a.hi.unwrap() > 1.0, "{a:?}");
        // Standard error of a mean of 100 draws of sd 0.1 is 0.01: the 95% interval is ≈ ±0.02.
        assert!((a.hi.unwrap() - a.lo.unwrap() - 0.039).abs() < 0.012, "{a:?}");
    }
}
