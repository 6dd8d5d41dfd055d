//! Input corruption for robustness conditions, in pixel units (inputs in [0, 1] before the data
//! set's per-channel standardisation, which is undone and redone here so that a noise level
//! means the same on every data set):
//!
//! - Gaussian: x + N(0, std^2) per value (not clipped).
//! - Salt and pepper: each value becomes 0 or 1 (equal odds) with probability p.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseKind {
    Gaussian,
    SaltPepper,
}

impl NoiseKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NoiseKind::Gaussian => "gaussian",
            NoiseKind::SaltPepper => "salt-pepper",
        }
    }
}

/// Per-channel normalisation (mean, std) of a data set; identity when not normalised.
#[derive(Clone, Debug)]
pub struct Norm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Values per channel of one sample (H * W).
    pub plane: usize,
}

/// Corrupt normalised samples `x` (each `mean.len() * plane` long) in place.
pub fn corrupt(x: &mut [f32], norm: &Norm, kind: NoiseKind, level: f64, rng: &mut Rng) {
    if level <= 0.0 {
        return;
    }
    let c = norm.mean.len();
    let d = c * norm.plane;
    for sample in x.chunks_mut(d) {
        for ch in 0..c {
            let (m, s) = (norm.mean[ch], norm.std[ch]);
            for v in &mut sample[ch * norm.plane..(ch + 1) * norm.plane] {
                match kind {
                    NoiseKind::Gaussian => *v += level as f32 * rng.normal() / s,
                    NoiseKind::SaltPepper => {
                        if (rng.uniform() as f64) < level {
                            let pixel = if rng.uniform() < 0.5 { 0.0 } else { 1.0 };
                            *v = (pixel - m) / s;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_in_pixel_units_and_salt_pepper_rate() {
        let norm = Norm { mean: vec![0.5], std: vec![0.25], plane: 10_000 };
        let mut x = vec![0.0f32; 10_000];
        corrupt(&mut x, &norm, NoiseKind::Gaussian, 0.1, &mut Rng::new(1));
        let var: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        // std 0.1 in pixels = 0.4 in normalised units.
        assert!((var.sqrt() - 0.4).abs() < 0.01, "{}", var.sqrt());
        let mut x = vec![0.0f32; 10_000];
        corrupt(&mut x, &norm, NoiseKind::SaltPepper, 0.2, &mut Rng::new(2));
        let hit = x.iter().filter(|v| **v != 0.0).count();
        assert!((1800..2200).contains(&hit), "{hit}");
        assert!(x.iter().all(|v| *v == 0.0 || *v == -2.0 || *v == 2.0));
        let mut x = vec![0.3f32; 10];
        corrupt(&mut x, &norm, NoiseKind::Gaussian, 0.0, &mut Rng::new(3));
        assert_eq!(x, vec![0.3f32; 10]);
    }
}
