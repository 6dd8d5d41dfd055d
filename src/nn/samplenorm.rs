//! Per-sample standardisation (Miconi's Hebbian CNN normalises every layer's input this way):
//! y = (x - mean(x)) / (std(x) + 1e-10) over all D values of one sample (C x H x W).
//!
//! Backward (g = dL/dy, s = std + 1e-10, population std):
//!   dx = (g - mean(g) - y' mean(g y')) / s,  y' = (x - mean) / std.

/// Forward for `n` samples of `d` values; returns nothing, fills `y`.
pub fn forward(x: &[f32], n: usize, d: usize, y: &mut [f32]) {
    for s in 0..n {
        let (xs, ys) = (&x[s * d..(s + 1) * d], &mut y[s * d..(s + 1) * d]);
        let (m, sd) = stats(xs);
        for (yv, xv) in ys.iter_mut().zip(xs) {
            *yv = (xv - m) / (sd + 1e-10);
        }
    }
}

fn stats(xs: &[f32]) -> (f32, f32) {
    let d = xs.len() as f64;
    let m = xs.iter().map(|&v| v as f64).sum::<f64>() / d;
    let var = xs.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / d;
    (m as f32, var.sqrt() as f32)
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
