//! Small statistics helpers: mean/std, Student-t confidence intervals, Welch's test.

/// `t_{0.975, df}`: the multiplier of a two-sided 95% confidence interval.
///
/// Computed by bisection on the Student-t CDF (regularized incomplete beta
/// function), so it is exact to ~1e-9 for any `df`, including the fractional
/// degrees of freedom of Welch's test. `df` below 1 is treated as 1; an
/// infinite `df` gives the normal quantile 1.959964.
pub fn t975(df: f64) -> f64 {
    t_quantile(0.975, df)
}

/// Quantile `p` (in `0.5..1`) of Student's t distribution with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if df.is_nan() || p.is_nan() {
        return f64::NAN;
    }
    let df = df.max(1.0);
    if df.is_infinite() || df > 1e7 {
        return normal_quantile_975_like(p);
    }
    // t_{p,df} <= t_{p,1} = tan(pi (p - 1/2)), the Cauchy quantile
    let mut lo = 0.0;
    let mut hi = (std::f64::consts::PI * (p - 0.5)).tan().max(1.0) * 1.01;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
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

/// Normal quantile by bisection on the error function's series (only used as df → ∞).
fn normal_quantile_975_like(p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 10.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn normal_cdf(x: f64) -> f64 {
    // P(Z <= x) = 1/2 + 1/2 * P(a = 1/2, x^2/2) (regularized lower gamma), via its series
    if x <= 0.0 {
        return 0.5;
    }
    let z = x * x / 2.0;
    let a = 0.5;
    let mut term = 1.0 / a;
    let mut sum = term;
    let mut n = 1.0;
    while term > sum * 1e-17 && n < 10_000.0 {
        term *= z / (a + n);
        sum += term;
        n += 1.0;
    }
    let p = sum * (-z + a * z.ln() - ln_gamma(a)).exp();
    0.5 + 0.5 * p
}

/// CDF of Student's t distribution at `x >= 0`.
fn t_cdf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 0.5;
    }
    1.0 - 0.5 * inc_beta(df / 2.0, 0.5, df / (df + x * x))
}

/// ln Γ(x) (Lanczos, g = 7), for x > 0.
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
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized incomplete beta function I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_bt = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let bt = ln_bt.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        bt * beta_cf(a, b, x) / a
    } else {
        1.0 - bt * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let fix = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / fix(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / fix(1.0 + aa * d);
        c = fix(1.0 + aa / c);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / fix(1.0 + aa * d);
        c = fix(1.0 + aa / c);
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Mean, sample standard deviation (n − 1 denominator) and count of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation; 0 when `n < 2`.
    pub std: f64,
}

impl Summary {
    /// `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n as f64 - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Summary { n, mean, std })
    }

    /// Half-width of the Student-t 95% CI of the mean; `None` when `n < 2`.
    pub fn ci95_half_width(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        Some(t975(self.n as f64 - 1.0) * self.std / (self.n as f64).sqrt())
    }

    /// `(lo, hi)` of the Student-t 95% CI of the mean; `None` when `n < 2`.
    pub fn ci95(&self) -> Option<(f64, f64)> {
        self.ci95_half_width().map(|h| (self.mean - h, self.mean + h))
    }

    /// The same summary with every value multiplied by `k` (e.g. 100 for percent).
    pub fn scaled(&self, k: f64) -> Summary {
        Summary { n: self.n, mean: self.mean * k, std: self.std * k.abs() }
    }
}

/// Verdict of a difference CI against zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    NoSignificantDifference,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoSignificantDifference => "no significant difference",
        }
    }
}

/// Difference of two means (`a − b`) with a Welch 95% confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WelchDiff {
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
    /// Welch–Satterthwaite degrees of freedom (infinite when both variances are 0).
    pub df: f64,
}

impl WelchDiff {
    pub fn verdict(&self) -> Verdict {
        if self.lo > 0.0 {
            Verdict::Better
        } else if self.hi < 0.0 {
            Verdict::Worse
        } else {
            Verdict::NoSignificantDifference
        }
    }
}

/// Welch's 95% CI for `mean(a) − mean(b)`; `None` unless both samples have n ≥ 2.
pub fn welch_diff(a: &Summary, b: &Summary) -> Option<WelchDiff> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let va = a.std * a.std / a.n as f64;
    let vb = b.std * b.std / b.n as f64;
    let se2 = va + vb;
    let diff = a.mean - b.mean;
    if se2 == 0.0 {
        return Some(WelchDiff { diff, lo: diff, hi: diff, df: f64::INFINITY });
    }
    let df = se2 * se2 / (va * va / (a.n as f64 - 1.0) + vb * vb / (b.n as f64 - 1.0));
    let h = t975(df) * se2.sqrt();
    Some(WelchDiff { diff, lo: diff - h, hi: diff + h, df })
}

/// Two-sided p-value of Student's t statistic `t` with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    let df = df.max(1.0);
    inc_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// A paired comparison: the per-seed differences `d` (rule − reference, the same seed giving
/// both the same data subset, noise and attack draws), their mean, its 95% CI (paired t), the
/// two-sided p-value of mean 0, and the smallest true difference this many pairs would detect
/// with 80% power at two-sided 5% (the minimum detectable effect, from their spread).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedDiff {
    pub n: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub p: f64,
    pub mde: f64,
}

impl PairedDiff {
    /// The verdict as a table shows it: a difference the same at every seed has no spread to
    /// test, and says so rather than "no significant difference".
    pub fn verdict_text(&self, v: Verdict) -> &'static str {
        if self.lo == self.hi && self.mean != 0.0 {
            "no spread across seeds (untested)"
        } else {
            v.as_str()
        }
    }
}

/// `None` below 2 pairs.
pub fn paired_diff(d: &[f64]) -> Option<PairedDiff> {
    paired_diff_at(d, 0.05)
}

/// `paired_diff` at two-sided level `alpha`: the interval has coverage 1 - alpha and the
/// detectable difference is for a test at `alpha` (a Bonferroni share of a family's 5%).
pub fn paired_diff_at(d: &[f64], alpha: f64) -> Option<PairedDiff> {
    let s = Summary::of(d)?;
    if s.n < 2 {
        return None;
    }
    let se = s.std / (s.n as f64).sqrt();
    let df = (s.n - 1) as f64;
    let tq = t_quantile(1.0 - alpha / 2.0, df);
    let half = tq * se;
    // All differences equal: no spread, so no test (a zero sample variance at a few seeds is no
    // evidence of none in the population): not significant, whatever the mean.
    let p = if se == 0.0 { 1.0 } else { t_two_sided_p(s.mean / se, df) };
    let mde = (tq + t_quantile(0.8, df)) * se;
    Some(PairedDiff { n: s.n, mean: s.mean, lo: s.mean - half, hi: s.mean + half, p, mde })
}

/// Holm's step-down adjustment of a family of p-values (controls the family-wise error rate):
/// sorted ascending, p_(i) x (m - i + 1), made non-decreasing, capped at 1; in the input order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut run = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        run = run.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_t_and_holm_by_hand() {
        // d = 1, 2, 3: mean 2, sd 1, se 1/sqrt 3, t = 3.4641 with 2 df: p = 0.0742 (tables),
        // CI 2 +- 4.3027 / sqrt 3 = 2 +- 2.4841.
        let d = paired_diff(&[1.0, 2.0, 3.0]).unwrap();
        assert!((d.p - 0.07418).abs() < 1e-4, "{}", d.p);
        assert!((d.hi - 4.4841).abs() < 1e-3 && (d.lo + 0.4841).abs() < 1e-3, "{d:?}");
        // MDE: (t_0.975,2 + t_0.8,2) se = (4.3027 + 1.0607) / sqrt 3 = 3.0967.
        assert!((d.mde - 3.0967).abs() < 1e-3, "{}", d.mde);
        assert!(paired_diff(&[1.0]).is_none());
        // No spread across the pairs: nothing to test (not significant), whatever the mean.
        assert_eq!(paired_diff(&[0.5, 0.5]).unwrap().p, 1.0);
        // Holm: 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1 -> 0.02, 0.03, 0.06, max(0.06, 0.04).
        let a = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (x, y) in a.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            assert!((x - y).abs() < 1e-12, "{a:?}");
        }
        assert_eq!(holm(&[0.6, 0.9]), vec![1.0, 1.0]);
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Published two-sided 95% t table, df 1..=30.
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    #[test]
    fn t_quantiles_match_tables() {
        for (i, want) in TABLE.iter().enumerate() {
            let df = (i + 1) as f64;
            assert!(close(t975(df), *want, 6e-4), "df {df}: {}", t975(df));
        }
        // fractional and large df (reference values by numerical integration of the pdf)
        assert!(close(t975(2.5), 3.574655, 1e-5), "{}", t975(2.5));
        assert!(close(t975(50.0 / 17.0), 3.218759, 1e-5));
        assert!(close(t975(7.3), 2.345067, 1e-5));
        assert!(close(t975(50.0), 2.008559, 1e-5));
        assert!(close(t975(1000.0), 1.962339, 1e-5));
        assert!(close(t975(f64::INFINITY), 1.959964, 1e-5));
        // monotone decreasing
        let mut prev = f64::INFINITY;
        for i in 1..400 {
            let t = t975(i as f64 * 0.5 + 0.5);
            assert!(t <= prev + 1e-12, "not monotone at {i}");
            prev = t;
        }
        // df below 1 is clamped
        assert_eq!(t975(0.3), t975(1.0));
    }

    #[test]
    fn summary_and_ci_of_1_2_3() {
        let s = Summary::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.n, 3);
        assert!(close(s.mean, 2.0, 1e-12));
        assert!(close(s.std, 1.0, 1e-12));
        let h = s.ci95_half_width().unwrap();
        assert!(close(h, 4.303 / 3f64.sqrt(), 1e-3));
        assert!(close(h, 2.484, 1e-3));
        let (lo, hi) = s.ci95().unwrap();
        assert!(close(lo, 2.0 - 2.484, 1e-3) && close(hi, 2.0 + 2.484, 1e-3));
    }

    #[test]
    fn summary_edge_cases() {
        assert!(Summary::of(&[]).is_none());
        let one = Summary::of(&[0.7]).unwrap();
        assert_eq!((one.n, one.mean, one.std), (1, 0.7, 0.0));
        assert!(one.ci95().is_none());
        let p = Summary::of(&[0.5, 0.7]).unwrap().scaled(100.0);
        assert!(close(p.mean, 60.0, 1e-9));
        assert!(close(p.std, 14.142135, 1e-5));
    }

    #[test]
    fn welch_hand_worked_equal_variances() {
        // a = 1,2,3 (mean 2, var 1); b = 3,4,5 (mean 4, var 1)
        // se^2 = 1/3 + 1/3 = 2/3; df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4
        // half-width = t_{0.975,4} * sqrt(2/3) = 2.7764 * 0.81650 = 2.2669
        let a = Summary::of(&[1.0, 2.0, 3.0]).unwrap();
        let b = Summary::of(&[3.0, 4.0, 5.0]).unwrap();
        let w = welch_diff(&a, &b).unwrap();
        assert!(close(w.diff, -2.0, 1e-12));
        assert!(close(w.df, 4.0, 1e-9));
        assert!(close(w.lo, -4.2669, 1e-3), "{}", w.lo);
        assert!(close(w.hi, 0.2669, 1e-3), "{}", w.hi);
        assert_eq!(w.verdict(), Verdict::NoSignificantDifference);
    }

    #[test]
    fn welch_hand_worked_unequal_variances() {
        // a = 1,2,3 (var 1), b = 4,6,8 (var 4): va = 1/3, vb = 4/3, se^2 = 5/3
        // df = (25/9) / ((1/9)/2 + (16/9)/2) = 50/17 = 2.941
        let a = Summary::of(&[1.0, 2.0, 3.0]).unwrap();
        let b = Summary::of(&[4.0, 6.0, 8.0]).unwrap();
        let w = welch_diff(&a, &b).unwrap();
        assert!(close(w.df, 50.0 / 17.0, 1e-9));
        // t_{0.975, 2.941} = 3.21876; half-width = 3.21876 * sqrt(5/3) = 4.15539
        let h = w.hi - w.diff;
        assert!(close(h, 4.15539, 1e-4), "{h}");
        assert!(close(w.lo, -8.15539, 1e-4) && close(w.hi, 0.15539, 1e-4));
        assert_eq!(w.verdict(), Verdict::NoSignificantDifference);
        // a clear difference: b is better than a
        let w2 = welch_diff(&b, &Summary::of(&[1.0, 1.1, 0.9]).unwrap()).unwrap();
        assert_eq!(w2.verdict(), Verdict::Better);
        let w3 = welch_diff(&Summary::of(&[1.0, 1.1, 0.9]).unwrap(), &b).unwrap();
        assert_eq!(w3.verdict(), Verdict::Worse);
        // too few samples
        assert!(welch_diff(&Summary::of(&[1.0]).unwrap(), &b).is_none());
    }
}
