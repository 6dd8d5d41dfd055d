//! Losses on the network's output, each returning the batch-mean loss and writing
//! e = dL/d(output), the error every rule starts from.
//!
//! - Softmax cross-entropy: L = -(1/N) sum_n log softmax(z_n)[y_n]; e = (softmax(z) - onehot(y)) / N.
//! - MSE against the one-hot target: L = (1/N) sum_n 1/2 ||z_n - onehot(y_n)||^2; e = (z - onehot) / N.
//! - Bernoulli (a VAE's decoder, one logit z per pixel): the target is the pixel's intensity
//!   t = y / 255 (`Dataset::autoencoding`); L = (1/N) sum_n softplus(z_n) - t_n z_n (the
//!   cross-entropy of sigmoid(z) against t); e = (sigmoid(z) - t) / N; a pixel is "correct" when
//!   sigmoid(z) and t fall on the same side of 1/2.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// softmax cross-entropy
    Ce,
    /// mean squared error against one-hot targets
    Mse,
    /// a VAE's pixel likelihood (set by the network, not chosen: a `vae:` arch's cross-entropy)
    #[value(skip)]
    Bernoulli,
}

use crate::picture::PIXEL_LEVELS;

impl Loss {
    /// Whether output row `o` (the outputs of one label) answers label `y`.
    pub fn correct(&self, o: &[f32], y: u32) -> bool {
        match self {
            Loss::Bernoulli => (o[0] > 0.0) == (y as f32 / PIXEL_LEVELS > 0.5),
            _ => argmax(o) == y as usize,
        }
    }
}

impl Loss {
    /// Returns (sum of per-sample losses, number correct). `e` gets dL/dz for the batch mean.
    pub fn eval(&self, z: &[f32], y: &[u32], classes: usize, e: Option<&mut [f32]>) -> (f64, usize) {
        if *self == Loss::Bernoulli {
            return bernoulli(&z[..y.len()], y, e);
        }
        let n = y.len();
        let mut total = 0.0f64;
        let mut correct = 0usize;
        let inv_n = 1.0 / n as f32;
        let mut e = e;
        for (s, &label) in y.iter().enumerate() {
            let zs = &z[s * classes..(s + 1) * classes];
            let label = label as usize;
            if self.correct(zs, label as u32) {
                correct += 1;
            }
            match self {
                Loss::Bernoulli => unreachable!("handled by `bernoulli`"),
                Loss::Ce => {
                    let mx = zs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f64 = zs.iter().map(|v| ((v - mx) as f64).exp()).sum();
                    total += sum.ln() - (zs[label] - mx) as f64;
                    if let Some(e) = e.as_deref_mut() {
                        let es = &mut e[s * classes..(s + 1) * classes];
                        for (j, ev) in es.iter_mut().enumerate() {
                            let p = (((zs[j] - mx) as f64).exp() / sum) as f32;
                            *ev = (p - if j == label { 1.0 } else { 0.0 }) * inv_n;
                        }
                    }
                }
                Loss::Mse => {
                    let mut l = 0.0f64;
                    for (j, v) in zs.iter().enumerate() {
                        let d = v - if j == label { 1.0 } else { 0.0 };
                        l += 0.5 * (d as f64) * (d as f64);
                        if let Some(e) = e.as_deref_mut() {
                            e[s * classes + j] = d * inv_n;
                        }
                    }
                    total += l;
                }
            }
        }
        (total, correct)
    }
}

/// One pixel's Bernoulli cross-entropy softplus(z) - t z (t = label / 255) and its derivative
/// sigmoid(z) - t, computed stably from one exp(-|z|) (the loss's and predictive coding's
/// Bernoulli node's).
pub fn bernoulli_pixel(z: f32, label: u32) -> (f32, f32) {
    let t = label as f32 / PIXEL_LEVELS;
    let q = (-z.abs()).exp();
    let sigmoid = if z >= 0.0 { 1.0 / (1.0 + q) } else { q / (1.0 + q) };
    (z.max(0.0) + q.ln_1p() - t * z, sigmoid - t)
}

/// The Bernoulli loss of one logit per label (`Loss::Bernoulli`), in parallel over chunks of
/// labels whose partial sums are added in order (the same result for any thread count).
fn bernoulli(z: &[f32], y: &[u32], e: Option<&mut [f32]>) -> (f64, usize) {
    use rayon::prelude::*;
    const CHUNK: usize = 4096;
    let inv_n = 1.0 / y.len().max(1) as f32;
    let one = |z: f32, label: u32, e: Option<&mut f32>| -> (f32, bool) {
        let (l, d) = bernoulli_pixel(z, label);
        if let Some(e) = e {
            *e = d * inv_n;
        }
        (l, (z > 0.0) == (label as f32 / PIXEL_LEVELS > 0.5))
    };
    let part = |zc: &[f32], yc: &[u32], mut ec: Option<&mut [f32]>| -> (f64, usize) {
        let (mut total, mut correct) = (0.0f64, 0usize);
        for (j, (&z, &label)) in zc.iter().zip(yc).enumerate() {
            let (l, c) = one(z, label, ec.as_deref_mut().map(|e| &mut e[j]));
            total += f64::from(l);
            correct += usize::from(c);
        }
        (total, correct)
    };
    let parts: Vec<(f64, usize)> = match e {
        Some(e) => z
            .par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .zip(e[..y.len()].par_chunks_mut(CHUNK))
            .map(|((zc, yc), ec)| part(zc, yc, Some(ec)))
            .collect(),
        None => z.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)).map(|(zc, yc)| part(zc, yc, None)).collect(),
    };
    parts.iter().fold((0.0, 0), |(t, c), &(pt, pc)| (t + pt, c + pc))
}

pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_by_hand() {
        // z = [0, ln 3]: softmax = [1/4, 3/4]; label 1: loss = -ln(3/4).
        let z = [0.0, 3.0f32.ln()];
        let mut e = [0.0; 2];
        let (l, c) = Loss::Ce.eval(&z, &[1], 2, Some(&mut e));
        assert!((l - (4.0f64 / 3.0).ln()).abs() < 1e-6);
        assert_eq!(c, 1);
        assert!((e[0] - 0.25).abs() < 1e-6 && (e[1] + 0.25).abs() < 1e-6);
    }

    #[test]
    fn bernoulli_by_hand() {
        // z = 0: sigmoid 1/2, target 255 -> t = 1: loss ln 2, e = (1/2 - 1) / 2 (two pixels);
        // z = ln 3: sigmoid 3/4, target 0: loss softplus(ln 3) = ln 4, e = (3/4) / 2.
        let z = [0.0, 3.0f32.ln()];
        let mut e = [0.0; 2];
        let (l, c) = Loss::Bernoulli.eval(&z, &[255, 0], 1, Some(&mut e));
        assert!((l - (2f64.ln() + 4f64.ln())).abs() < 1e-6, "{l}");
        assert_eq!(c, 0);
        assert!((e[0] + 0.25).abs() < 1e-6 && (e[1] - 0.375).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn mse_by_hand() {
        let z = [0.5, 0.5, 2.0, 0.0];
        let mut e = [0.0; 4];
        let (l, c) = Loss::Mse.eval(&z, &[0, 1], 2, Some(&mut e));
        // sample 0 (label 0): 0.5*(0.25+0.25) = 0.25; sample 1 (label 1): 0.5*(4+1) = 2.5
        assert!((l - 2.75).abs() < 1e-9);
        assert_eq!(c, 1);
        assert_eq!(e, [-0.25, 0.25, 1.0, -0.5]);
    }
}

/// Softmax of every row of `k` values, in place (the largest value subtracted first).
pub fn softmax_rows(v: &mut [f32], k: usize) {
    for row in v.chunks_exact_mut(k) {
        let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row
            .iter_mut()
            .map(|x| {
                *x = (*x - mx).exp();
                *x
            })
            .sum();
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

/// The loss an attack ascends: the cross-entropy (FGSM/PGD as published) or the margin
/// max_{k != y} z_k - z_y (Carlini & Wagner 2017), whose gradient does not vanish where the
/// softmax saturates (a network with huge logits masks the cross-entropy's gradient, not the
/// margin's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AttackLoss {
    #[default]
    Ce,
    Margin,
}

impl AttackLoss {
    /// d(batch-mean loss)/dz of the outputs `z` (`y.len()` samples of `classes`) into `e`.
    pub fn output_grad(&self, z: &[f32], y: &[u32], classes: usize, e: &mut [f32]) {
        match self {
            AttackLoss::Ce => {
                Loss::Ce.eval(z, y, classes, Some(e));
            }
            AttackLoss::Margin => {
                let inv = 1.0 / y.len().max(1) as f32;
                for (i, &t) in y.iter().enumerate() {
                    let (zi, ei) = (&z[i * classes..(i + 1) * classes], &mut e[i * classes..(i + 1) * classes]);
                    ei.fill(0.0);
                    let t = t as usize;
                    let other = (0..classes).filter(|&k| k != t).max_by(|&a, &b| zi[a].total_cmp(&zi[b]));
                    if let Some(k) = other {
                        ei[k] = inv;
                        ei[t] = -inv;
                    }
                }
            }
        }
    }
}
