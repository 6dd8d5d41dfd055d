//! Competition across channels at every position (SoftHebb's and Miconi's output
//! nonlinearities): for each sample and spatial position, over the C channels,
//!
//!   triangle  y_c = relu(x_c - mean_k x_k)^power          (Coates et al. 2011; Journe et al. 2023)
//!   softmax   y_c = exp(t x_c) / sum_k exp(t x_k)         (the soft winner-take-all read out)
//!
//! A flat (dense) input is one position with all its features as channels.
//!
//! Backward (g = dL/dy):
//!   triangle  s_c = power relu(z_c)^(power-1) [z_c > 0],  dx_c = g_c s_c - mean_k(g_k s_k)
//!   softmax   dx_c = t y_c (g_c - sum_k g_k y_k)
//!
//! # Shapes
//! x, y: N x C x P (channel-major per sample, P = H W).

use crate::linalg;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum CompeteKind {
    Triangle { power: f32 },
    Softmax { t: f32 },
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
            for pos in 0..p {
                match self.kind {
                    CompeteKind::Triangle { power } => {
                        let mean = (0..c).map(|k| xs[k * p + pos]).sum::<f32>() / c as f32;
                        for k in 0..c {
                            let z = (xs[k * p + pos] - mean).max(0.0);
                            ys[k * p + pos] = if power == 1.0 { z } else { z.powf(power) };
                        }
                    }
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
                }
            }
        });
    }

    pub fn backward(&self, x: &[f32], y: &[f32], g: &[f32], n: usize, dx: &mut [f32]) {
        let (c, p) = (self.c, self.p);
        linalg::par_rows(&mut dx[..n * c * p], c * p, |s, ds| {
            let r = s * c * p..(s + 1) * c * p;
            let (xs, ys, gs) = (&x[r.clone()], &y[r.clone()], &g[r]);
            for pos in 0..p {
                match self.kind {
                    CompeteKind::Triangle { power } => {
                        let mean = (0..c).map(|k| xs[k * p + pos]).sum::<f32>() / c as f32;
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
                            ds[k * p + pos] = gs[k * p + pos] * sk;
                            acc += ds[k * p + pos];
                        }
                        let m = acc / c as f32;
                        for k in 0..c {
                            ds[k * p + pos] -= m;
                        }
                    }
                    CompeteKind::Softmax { t } => {
                        let dot: f32 = (0..c).map(|k| gs[k * p + pos] * ys[k * p + pos]).sum();
                        for k in 0..c {
                            ds[k * p + pos] = t * ys[k * p + pos] * (gs[k * p + pos] - dot);
                        }
                    }
                }
            }
        });
    }
}
