//! Competition across channels at every position (SoftHebb's and Miconi's output
//! nonlinearities): for each sample and spatial position, over the C channels,
//!
//!   triangle  y_c = relu(x_c - mean_k x_k)^power          (Coates et al. 2011; Journe et al. 2023)
//!   softmax   y_c = exp(t x_c) / sum_k exp(t x_k)         (the soft winner-take-all read out)
//!   absnorm   y_c = beta (|x_c| - mean_k |x_k|), beta = ||x|| / || |x| - mean|x| ||
//!             (Activation Learning's norm-preserving activation, Zhou 2022)
//!   l2        y_c = x_c / ||x||                            (unit-norm input)
//!
//! A flat (dense) input is one position with all its features as channels.
//!
//! Backward (g = dL/dy):
//!   triangle  s_c = power relu(z_c)^(power-1) [z_c > 0],  dx_c = g_c s_c - mean_k(g_k s_k)
//!   softmax   dx_c = t y_c (g_c - sum_k g_k y_k)
//!   absnorm   z = |x| - mean|x|, s = sign(x):
//!             dx_c = beta s_c (g_c - mean g) + (g.z) (x_c / (||x|| ||z||) - ||x|| s_c z_c / ||z||^3)
//!   l2        dx_c = (g_c - y_c (g.y)) / ||x||
//!
//! # Shapes
//! x, y: N x C x P (channel-major per sample, P = H W).

use crate::linalg;
use serde::{Deserialize, Serialize};

/// absnorm at one position: mean |x|, ||x|| and ||z|| (z = |x| - mean |x|) over the c channels
/// `x(k)` gives; None where ||x|| or ||z|| is 0 (the derivative is taken as 0 there).
fn absnorm_stats(x: impl Fn(usize) -> f32, c: usize) -> Option<(f32, f32, f32)> {
    let m = (0..c).map(|k| x(k).abs()).sum::<f32>() / c as f32;
    let nx = (0..c).map(|k| x(k).powi(2)).sum::<f32>().sqrt();
    let nz = (0..c).map(|k| (x(k).abs() - m).powi(2)).sum::<f32>().sqrt();
    (nx != 0.0 && nz != 0.0).then_some((m, nx, nz))
}

crate::wide_fn! {
    /// The triangle at every position of one sample (C x P): y_c = relu(x_c - mean_k x_k)^power.
    /// Channel-major over blocks of positions (each channel's row is contiguous), so the means and
    /// outputs vectorise across positions; each mean sums the channels in order, as a per-position
    /// sum would; a power other than 1 by `linalg::relu_pow_in_place` (AVX-512: within 2 ulp of
    /// `powf`, not its bits).
    fn triangle_forward(xs: &[f32], c: usize, p: usize, power: f32, ys: &mut [f32]) {
        const B: usize = 64;
        let mut means = [0.0f32; B];
        for p0 in (0..p).step_by(B) {
            let len = B.min(p - p0);
            let m = &mut means[..len];
            m.fill(-0.0);
            for k in 0..c {
                m.iter_mut().zip(&xs[k * p + p0..][..len]).for_each(|(a, v)| *a += v);
            }
            m.iter_mut().for_each(|a| *a /= c as f32);
            for k in 0..c {
                let (yr, xr) = (&mut ys[k * p + p0..][..len], &xs[k * p + p0..][..len]);
                if power == 1.0 {
                    yr.iter_mut().zip(xr).zip(m.iter()).for_each(|((y, v), mv)| *y = (v - mv).max(0.0));
                } else {
                    yr.iter_mut().zip(xr).zip(m.iter()).for_each(|((y, v), mv)| *y = v - mv);
                    linalg::relu_pow_in_place(yr, power);
                }
            }
        }
    }
}

crate::wide_fn! {
    /// The triangle's backward for one sample (C x P), channel-major over blocks of positions as
    /// `triangle_forward`: s_c = power relu(z_c)^(power-1) [z_c > 0] (`f32::powf`),
    /// dx_c = g_c s_c - mean_k(g_k s_k), every sum in the per-position order (the mean of x from
    /// -0.0, as `Iterator::sum`; the mean of g s from 0.0), so bit for bit the per-position
    /// reading of the formula.
    fn triangle_backward(xs: &[f32], gs: &[f32], c: usize, p: usize, power: f32, ds: &mut [f32]) {
        const B: usize = 64;
        let (mut means, mut accs) = ([0.0f32; B], [0.0f32; B]);
        for p0 in (0..p).step_by(B) {
            let len = B.min(p - p0);
            let (m, acc) = (&mut means[..len], &mut accs[..len]);
            m.fill(-0.0);
            for k in 0..c {
                m.iter_mut().zip(&xs[k * p + p0..][..len]).for_each(|(a, v)| *a += v);
            }
            m.iter_mut().for_each(|a| *a /= c as f32);
            acc.fill(0.0);
            for k in 0..c {
                let r = k * p + p0..k * p + p0 + len;
                let (dr, xr, gr) = (&mut ds[r.clone()], &xs[r.clone()], &gs[r]);
                let rows = dr.iter_mut().zip(xr).zip(gr).zip(m.iter());
                if power == 1.0 {
                    rows.for_each(|(((d, v), g), mv)| *d = g * if v - mv > 0.0 { 1.0 } else { 0.0 });
                } else {
                    rows.for_each(|(((d, v), g), mv)| {
                        let z = v - mv;
                        *d = g * if z > 0.0 { power * z.powf(power - 1.0) } else { 0.0 };
                    });
                }
                acc.iter_mut().zip(dr.iter()).for_each(|(a, d)| *a += d);
            }
            acc.iter_mut().for_each(|a| *a /= c as f32);
            for k in 0..c {
                ds[k * p + p0..][..len].iter_mut().zip(acc.iter()).for_each(|(d, a)| *d -= a);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum CompeteKind {
    Triangle { power: f32 },
    Softmax { t: f32 },
    AbsNorm,
    L2,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompeteGeom {
    pub c: usize,
    pub p: usize,
    pub kind: CompeteKind,
}

impl CompeteGeom {
    pub fn forward(&self, x: &[f32], n: usize, y: &mut [f32]) {
        let (c, p) = (self.c, self.p);
        linalg::par_rows(&mut y[..n * c * p], c * p, |s, ys| {
            let xs = &x[s * c * p..(s + 1) * c * p];
            if let CompeteKind::Triangle { power } = self.kind {
                return triangle_forward(xs, c, p, power, ys);
            }
            for pos in 0..p {
                match self.kind {
                    CompeteKind::Triangle { .. } => unreachable!(),
                    CompeteKind::Softmax { t } => {
                        let mx = (0..c).map(|k| xs[k * p + pos]).fold(f32::NEG_INFINITY, f32::max);
                        let mut sum = 0.0;
                        for k in 0..c {
                            let e = (t * (xs[k * p + pos] - mx)).exp();
                            ys[k * p + pos] = e;
                            sum += e;
                        }
                        for k in 0..c {
                            ys[k * p + pos] /= sum;
                        }
                    }
                    CompeteKind::AbsNorm => {
                        let m = (0..c).map(|k| xs[k * p + pos].abs()).sum::<f32>() / c as f32;
                        let nx = (0..c).map(|k| xs[k * p + pos].powi(2)).sum::<f32>().sqrt();
                        let nz = (0..c).map(|k| (xs[k * p + pos].abs() - m).powi(2)).sum::<f32>().sqrt();
                        let beta = if nz > 0.0 { nx / nz } else { 0.0 };
                        for k in 0..c {
                            ys[k * p + pos] = beta * (xs[k * p + pos].abs() - m);
                        }
                    }
                    CompeteKind::L2 => {
                        let nx = (0..c).map(|k| xs[k * p + pos].powi(2)).sum::<f32>().sqrt();
                        let inv = if nx > 0.0 { 1.0 / nx } else { 0.0 };
                        for k in 0..c {
                            ys[k * p + pos] = xs[k * p + pos] * inv;
                        }
                    }
                }
            }
        });
    }

    /// Forward-mode: dy = J v, the change of y along the input direction v (`jvp`). Softmax's
    /// and l2's Jacobians are symmetric, so theirs is the backward formula applied to v;
    /// the others (s_c as in `backward`):
    ///   triangle  dy_c = s_c (v_c - mean_k v_k)
    ///   absnorm   dy_c = beta (s_c v_c - mean_k s_k v_k) + z_c (grad beta . v),
    ///             grad beta_k = x_k / (||x|| ||z||) - ||x|| s_k z_k / ||z||^3.
    pub fn jvp(&self, x: &[f32], y: &[f32], v: &[f32], n: usize, dy: &mut [f32]) {
        let (c, p) = (self.c, self.p);
        match self.kind {
            CompeteKind::Softmax { .. } | CompeteKind::L2 => return self.backward(x, y, v, n, dy),
            CompeteKind::Triangle { .. } | CompeteKind::AbsNorm => {}
        }
        linalg::par_rows(&mut dy[..n * c * p], c * p, |s, ds| {
            let r = s * c * p..(s + 1) * c * p;
            let (xs, vs) = (&x[r.clone()], &v[r]);
            for pos in 0..p {
                let x = |k: usize| xs[k * p + pos];
                let v = |k: usize| vs[k * p + pos];
                match self.kind {
                    CompeteKind::Triangle { power } => {
                        let mean = (0..c).map(x).sum::<f32>() / c as f32;
                        let vm = (0..c).map(v).sum::<f32>() / c as f32;
                        for k in 0..c {
                            let z = x(k) - mean;
                            let sk = match (z > 0.0, power == 1.0) {
                                (false, _) => 0.0,
                                (true, true) => 1.0,
                                (true, false) => power * z.powf(power - 1.0),
                            };
                            ds[k * p + pos] = sk * (v(k) - vm);
                        }
                    }
                    CompeteKind::AbsNorm => {
                        let Some((m, nx, nz)) = absnorm_stats(x, c) else {
                            (0..c).for_each(|k| ds[k * p + pos] = 0.0);
                            continue;
                        };
                        let beta = nx / nz;
                        let sign = |k: usize| x(k).signum() * f32::from(x(k) != 0.0);
                        let svm = (0..c).map(|k| sign(k) * v(k)).sum::<f32>() / c as f32;
                        let dbeta: f32 = (0..c)
                            .map(|k| v(k) * (x(k) / (nx * nz) - nx * sign(k) * (x(k).abs() - m) / (nz * nz * nz)))
                            .sum();
                        for k in 0..c {
                            ds[k * p + pos] = beta * (sign(k) * v(k) - svm) + (x(k).abs() - m) * dbeta;
                        }
                    }
                    CompeteKind::Softmax { .. } | CompeteKind::L2 => unreachable!(),
                }
            }
        });
    }

    pub fn backward(&self, x: &[f32], y: &[f32], g: &[f32], n: usize, dx: &mut [f32]) {
        let (c, p) = (self.c, self.p);
        linalg::par_rows(&mut dx[..n * c * p], c * p, |s, ds| {
            let r = s * c * p..(s + 1) * c * p;
            let (xs, ys, gs) = (&x[r.clone()], &y[r.clone()], &g[r]);
            if let CompeteKind::Triangle { power } = self.kind {
                return triangle_backward(xs, gs, c, p, power, ds);
            }
            for pos in 0..p {
                match self.kind {
                    CompeteKind::Triangle { .. } => unreachable!(),
                    CompeteKind::Softmax { t } => {
                        let dot: f32 = (0..c).map(|k| gs[k * p + pos] * ys[k * p + pos]).sum();
                        for k in 0..c {
                            ds[k * p + pos] = t * ys[k * p + pos] * (gs[k * p + pos] - dot);
                        }
                    }
                    CompeteKind::AbsNorm => {
                        let x = |k: usize| xs[k * p + pos];
                        let Some((m, nx, nz)) = absnorm_stats(x, c) else {
                            (0..c).for_each(|k| ds[k * p + pos] = 0.0);
                            continue;
                        };
                        let beta = nx / nz;
                        let gm = (0..c).map(|k| gs[k * p + pos]).sum::<f32>() / c as f32;
                        let gz: f32 = (0..c).map(|k| gs[k * p + pos] * (x(k).abs() - m)).sum();
                        for k in 0..c {
                            let (xv, sk) = (x(k), x(k).signum() * f32::from(x(k) != 0.0));
                            let z = xv.abs() - m;
                            ds[k * p + pos] = beta * sk * (gs[k * p + pos] - gm)
                                + gz * (xv / (nx * nz) - nx * sk * z / (nz * nz * nz));
                        }
                    }
                    CompeteKind::L2 => {
                        let nx = (0..c).map(|k| xs[k * p + pos].powi(2)).sum::<f32>().sqrt();
                        if nx == 0.0 {
                            (0..c).for_each(|k| ds[k * p + pos] = 0.0);
                            continue;
                        }
                        let gy: f32 = (0..c).map(|k| gs[k * p + pos] * ys[k * p + pos]).sum();
                        for k in 0..c {
                            ds[k * p + pos] = (gs[k * p + pos] - ys[k * p + pos] * gy) / nx;
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked triangle against a per-position reading of its definition, on positions
    /// spanning several blocks (and a partial one): bit for bit at power 1, within 2 ulp
    /// (`linalg::relu_pow_in_place`) otherwise.
    #[test]
    fn triangle_matches_its_definition_at_every_position() {
        let mut rng = crate::rng::Rng::new(5);
        for (c, p, power) in [(3, 1, 0.7), (5, 150, 0.7), (4, 64, 1.4), (7, 129, 1.0)] {
            let n = 2;
            let mut x = vec![0.0f32; n * c * p];
            rng.fill_normal(&mut x, 1.0);
            let g = CompeteGeom { c, p, kind: CompeteKind::Triangle { power } };
            let mut y = vec![f32::NAN; n * c * p];
            g.forward(&x, n, &mut y);
            for s in 0..n {
                let xs = &x[s * c * p..(s + 1) * c * p];
                for pos in 0..p {
                    let mean = (0..c).map(|k| xs[k * p + pos]).sum::<f32>() / c as f32;
                    for k in 0..c {
                        let z = (xs[k * p + pos] - mean).max(0.0);
                        let want = if power == 1.0 { z } else { z.powf(power) };
                        let got = y[s * c * p + k * p + pos];
                        if power == 1.0 {
                            assert_eq!(got.to_bits(), want.to_bits(), "c{c} p{p} at ({s}, {k}, {pos})");
                        } else {
                            assert!(
                                (got - want).abs() <= 2.0 * f32::EPSILON * want,
                                "c{c} p{p} at ({s}, {k}, {pos}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The blocked triangle backward against the per-position reading of its formula (the
    /// code it replaced), bit for bit at every power, across blocks and a partial one.
    #[test]
    fn triangle_backward_matches_the_per_position_formula_bit_for_bit() {
        let mut rng = crate::rng::Rng::new(6);
        for (c, p, power) in [(3, 1, 0.7), (5, 150, 0.7), (4, 64, 1.4), (7, 129, 1.0), (6, 65, 1.0)] {
            let n = 3;
            let (mut x, mut gy) = (vec![0.0f32; n * c * p], vec![0.0f32; n * c * p]);
            rng.fill_normal(&mut x, 1.0);
            rng.fill_normal(&mut gy, 1.0);
            // Ties and signed zeros: equal inputs (z = 0 exactly) and zero gradients.
            for i in (0..x.len()).step_by(7) {
                x[i] = 0.5;
                gy[i] = if i % 2 == 0 { -0.0 } else { 0.0 };
            }
            let g = CompeteGeom { c, p, kind: CompeteKind::Triangle { power } };
            let y = vec![0.0f32; n * c * p];
            let mut dx = vec![f32::NAN; n * c * p];
            g.backward(&x, &y, &gy, n, &mut dx);
            for s in 0..n {
                let (xs, gs) = (&x[s * c * p..(s + 1) * c * p], &gy[s * c * p..(s + 1) * c * p]);
                for pos in 0..p {
                    let mean = (0..c).map(|k| xs[k * p + pos]).sum::<f32>() / c as f32;
                    let mut want = vec![0.0f32; c];
                    let mut acc = 0.0;
                    for k in 0..c {
                        let z = xs[k * p + pos] - mean;
                        let sk = if z > 0.0 {
                            if power == 1.0 {
                                1.0
                            } else {
                                power * z.powf(power - 1.0)
                            }
                        } else {
                            0.0
                        };
                        want[k] = gs[k * p + pos] * sk;
                        acc += want[k];
                    }
                    let m = acc / c as f32;
                    for (k, w) in want.iter().enumerate() {
                        let got = dx[s * c * p + k * p + pos];
                        assert_eq!(got.to_bits(), (w - m).to_bits(), "c{c} p{p} power {power} at ({s}, {k}, {pos})");
                    }
                }
            }
        }
    }
}
