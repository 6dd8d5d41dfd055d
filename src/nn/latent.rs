//! A variational autoencoder's Gaussian latent layer (Kingma & Welling 2014): the encoder's last
//! dense layer gives 2Z values per sample, the posterior's mean mu and log-variance lv; the layer
//! outputs the reparameterised sample z = mu + exp(lv / 2) (.) eps, eps ~ N(0, I), and carries
//! the posterior's KL divergence from the N(0, I) prior,
//!
//!   KL = 1/2 sum_j (mu_j^2 + exp(lv_j) - 1 - lv_j)        (per sample),
//!
//! as its own term of the loss: its backward adds w x dKL/d(mu, lv) to the gradient that comes
//! from above, with the weight w the loss gives it (`Network::set_kl_weight`: 1 / labels for the
//! drivers' per-target mean; a predictive-coding nudge beta on its energy's scale).
//!
//!   dmu = dz + w mu
//!   dlv = dz (.) eps (.) exp(lv / 2) / 2 + w (exp(lv) - 1) / 2
//!
//! eps is drawn by training and evaluation passes (from the pass's RNG) and kept for a replay,
//! so a rule that re-runs the layer (predictive coding's inference) sees the same sample.
//!
//! # Shapes
//! input N x 2Z (mu, then lv, per sample); output N x Z; eps N x Z.

use crate::rng::Rng;

/// The layer's scratch between its forward and backward passes.
#[derive(Debug, Default)]
pub struct LatentAux {
    pub eps: Vec<f32>,
    /// KL divergence summed over the batch at the last forward pass.
    pub kl: f64,
    /// The KL term's weight in the loss being differentiated.
    pub weight: f32,
}

/// mu and lv of sample row `x` (2Z values).
fn halves(x: &[f32], z: usize) -> (&[f32], &[f32]) {
    x.split_at(z)
}

/// The sample and the batch's KL; draws eps from `rng` unless `replay`.
pub fn forward(x: &[f32], n: usize, z: usize, a: &mut LatentAux, replay: bool, rng: &mut Rng, y: &mut [f32]) {
    if !replay || a.eps.len() != n * z {
        a.eps.resize(n * z, 0.0);
        rng.fill_normal(&mut a.eps, 1.0);
    }
    let mut kl = 0.0f64;
    for s in 0..n {
        let (mu, lv) = halves(&x[s * 2 * z..(s + 1) * 2 * z], z);
        let (eps, ys) = (&a.eps[s * z..(s + 1) * z], &mut y[s * z..(s + 1) * z]);
        for j in 0..z {
            ys[j] = mu[j] + (0.5 * lv[j]).exp() * eps[j];
            kl += 0.5 * f64::from(mu[j] * mu[j] + lv[j].exp() - 1.0 - lv[j]);
        }
    }
    a.kl = kl;
}

/// The input gradient: the reparameterisation's chain rule plus the weighted KL gradient.
pub fn backward(x: &[f32], g: &[f32], n: usize, z: usize, a: &LatentAux, dx: &mut [f32]) {
    let w = a.weight;
    for s in 0..n {
        let (mu, lv) = halves(&x[s * 2 * z..(s + 1) * 2 * z], z);
        let (eps, gs) = (&a.eps[s * z..(s + 1) * z], &g[s * z..(s + 1) * z]);
        let (dmu, dlv) = dx[s * 2 * z..(s + 1) * 2 * z].split_at_mut(z);
        for j in 0..z {
            let sd = (0.5 * lv[j]).exp();
            dmu[j] = gs[j] + w * mu[j];
            dlv[j] = gs[j] * eps[j] * 0.5 * sd + w * 0.5 * (sd * sd - 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_kl_and_gradient_by_hand() {
        // One sample, Z = 1: mu = 1, lv = ln 4 (sd 2), eps = 0.5: z = 1 + 2 * 0.5 = 2;
        // KL = 1/2 (1 + 4 - 1 - ln 4) = 2 - ln 2.
        let x = [1.0, 4.0f32.ln()];
        let mut a = LatentAux { eps: vec![0.5], kl: 0.0, weight: 0.0 };
        let mut y = [0.0];
        forward(&x, 1, 1, &mut a, true, &mut Rng::new(0), &mut y);
        assert!((y[0] - 2.0).abs() < 1e-6);
        assert!((a.kl - (2.0 - 2f64.ln())).abs() < 1e-6);
        // dz = 3, w = 0.1: dmu = 3 + 0.1 = 3.1; dlv = 3 * 0.5 * 0.5 * 2 + 0.1 * 0.5 * 3 = 1.65.
        a.weight = 0.1;
        let mut dx = [0.0; 2];
        backward(&x, &[3.0], 1, 1, &a, &mut dx);
        assert!((dx[0] - 3.1).abs() < 1e-6 && (dx[1] - 1.65).abs() < 1e-6, "{dx:?}");
    }

    #[test]
    fn replay_keeps_the_sample_and_a_new_pass_draws_another() {
        let x = [0.0, 0.0, 0.0, 0.0];
        let mut a = LatentAux::default();
        let (mut y1, mut y2, mut y3) = ([0.0; 2], [0.0; 2], [0.0; 2]);
        let mut rng = Rng::new(3);
        forward(&x, 1, 2, &mut a, false, &mut rng, &mut y1);
        forward(&x, 1, 2, &mut a, true, &mut rng, &mut y2);
        forward(&x, 1, 2, &mut a, false, &mut rng, &mut y3);
        assert_eq!(y1, y2);
        assert_ne!(y1, y3);
    }
}
