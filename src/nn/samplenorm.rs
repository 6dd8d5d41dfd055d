//! Per-sample standardisation (Miconi's Hebbian CNN normalises every layer's input this way):
//! y = (x - mean(x)) / (std(x) + 1e-10) over all D values of one sample (C x H x W).
//!
//! Backward (g = dL/dy, s = std + 1e-10, population std):
//!   dx = (g - mean(g) - y' mean(g y')) / s,  y' = (x - mean) / std.

/// Forward for `n` samples of `d` values; returns nothing, fills `y`. Samples go in groups of
/// `GROUP`, their statistics' sums interleaved (each sample's f64 sum is a chain of dependent
/// additions as long as the sample: one chain at a time waited on the adder's latency), every
/// sum in `stats`' order, so the same bits; groups split across the pool's threads.
pub fn forward(x: &[f32], n: usize, d: usize, y: &mut [f32]) {
    // (d = 0: par_rows has no rows to give.)
    crate::linalg::par_rows(&mut y[..n * d], GROUP * d, |gi, ys| {
        let xs = &x[gi * GROUP * d..][..ys.len()];
        let mut st = [(0.0f32, 0.0f32); GROUP];
        let st = &mut st[..ys.len() / d];
        stats_group(xs, d, st);
        for ((ys, xs), &(m, sd)) in ys.chunks_exact_mut(d).zip(xs.chunks_exact(d)).zip(st.iter()) {
            for (yv, xv) in ys.iter_mut().zip(xs) {
                *yv = (xv - m) / (sd + 1e-10);
            }
        }
    });
}

/// Samples whose statistics `forward` sums together.
const GROUP: usize = 8;

/// `stats` of each of the `out.len()` samples of `d` values in `xs`, their sums interleaved.
fn stats_group(xs: &[f32], d: usize, out: &mut [(f32, f32)]) {
    let g = out.len();
    debug_assert!(g <= GROUP && xs.len() == g * d);
    // From -0.0, as `Iterator::sum` of f64s.
    let mut sum = [-0.0f64; GROUP];
    for i in 0..d {
        for (k, a) in sum[..g].iter_mut().enumerate() {
            *a += xs[k * d + i] as f64;
        }
    }
    let mut m = [0.0f64; GROUP];
    for k in 0..g {
        m[k] = sum[k] / d as f64;
    }
    let mut var = [-0.0f64; GROUP];
    for i in 0..d {
        for (k, a) in var[..g].iter_mut().enumerate() {
            *a += (xs[k * d + i] as f64 - m[k]).powi(2);
        }
    }
    for (k, o) in out.iter_mut().enumerate() {
        *o = (m[k] as f32, (var[k] / d as f64).sqrt() as f32);
    }
}

/// One sample's mean and population standard deviation (f64 sums in order).
fn stats(xs: &[f32]) -> (f32, f32) {
    let mut st = [(0.0, 0.0)];
    stats_group(xs, xs.len(), &mut st);
    st[0]
}

pub fn backward(x: &[f32], g: &[f32], n: usize, d: usize, dx: &mut [f32]) {
    for s in 0..n {
        let (xs, gs, ds) = (&x[s * d..(s + 1) * d], &g[s * d..(s + 1) * d], &mut dx[s * d..(s + 1) * d]);
        let (m, sd) = stats(xs);
        let inv = 1.0 / (sd + 1e-10);
        let yh = |xv: f32| if sd > 0.0 { (xv - m) / sd } else { 0.0 };
        let gm = gs.iter().sum::<f32>() / d as f32;
        let gy = gs.iter().zip(xs).map(|(gv, &xv)| gv * yh(xv)).sum::<f32>() / d as f32;
        for ((dv, gv), &xv) in ds.iter_mut().zip(gs).zip(xs) {
            *dv = (gv - gm - yh(xv) * gy) * inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grouped forward gives the per-sample reading of its formula bit for bit (`stats`, one
    /// sample at a time), for batches that are and are not whole groups, at 1 and 2 threads.
    #[test]
    fn grouped_forward_matches_the_per_sample_formula_bit_for_bit() {
        let mut rng = crate::rng::Rng::new(8);
        for (n, d) in [(1, 5), (8, 7), (13, 100), (17, 1)] {
            let mut x = vec![0.0f32; n * d];
            rng.fill_normal(&mut x, 3.0);
            x.iter_mut().step_by(5).for_each(|v| *v = -0.0);
            let mut want = vec![0.0f32; n * d];
            for (ws, xs) in want.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                // One sample at a time, by iterator sums.
                let m = xs.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = xs.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / d as f64;
                let (m, sd) = (m as f32, var.sqrt() as f32);
                ws.iter_mut().zip(xs).for_each(|(w, v)| *w = (v - m) / (sd + 1e-10));
            }
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut y = vec![f32::NAN; n * d];
                pool.install(|| forward(&x, n, d, &mut y));
                let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y), bits(&want), "n {n} d {d} at {threads} threads");
            }
        }
    }
}
