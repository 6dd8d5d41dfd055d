//! White-box adversarial robustness: FGSM (Goodfellow, Shlens & Szegedy 2015) and PGD (Madry
//! et al. 2018), L-inf, through the trained network's true input gradient of the cross-entropy
//! loss, whatever rule trained it (the attacker knows the weights; the rule's own feedback
//! plays no part).
//!
//!   FGSM  x' = clip(x + eps sign(d loss / d x))
//!   PGD   x_0 = x + U(-eps, eps);  x_{t+1} = clip(proj_eps(x_t + alpha sign(d loss / d x_t))),
//!         alpha = 2.5 eps / steps
//!
//! eps is in pixel units (pixels in [0, 1]); on normalised data it is eps / std per channel,
//! and clip keeps every pixel in [0, 1]. The network runs in evaluation mode (batch-norm
//! running statistics, no dropout) for the gradient.

use crate::data::noise::Norm;
use crate::data::Split;
use crate::nn::{Loss, Network, Workspace};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    Fgsm,
    Pgd { steps: usize },
}

impl Attack {
    pub fn name(&self) -> &'static str {
        match self {
            Attack::Fgsm => "fgsm",
            Attack::Pgd { .. } => "pgd",
        }
    }
}

/// d(batch-mean cross-entropy)/d input of the batch `x` (`y.len()` samples), into `g`;
/// `pg` is the backward pass's parameter-gradient scratch (the dense and convolution layers
/// skip theirs: `nn::without_param_grads`).
pub fn input_gradient(net: &mut Network, ws: &mut Workspace, pg: &mut [Vec<f32>], x: &[f32], y: &[u32], g: &mut [f32]) {
    let n = y.len();
    net.prepare(ws, n);
    ws.input_mut().copy_from_slice(x);
    net.forward(ws, false, &mut Rng::new(0));
    let k = net.output_len();
    let l = ws.acts.len() - 1;
    let (acts, grads) = (&ws.acts[l], &mut ws.grads[l]);
    Loss::Ce.eval(&acts[..n * k], y, k, Some(&mut grads[..n * k]));
    crate::nn::without_param_grads(|| net.backward(ws, pg, 0, net.num_layers(), None, true));
    g.copy_from_slice(&ws.grads[0][..x.len()]);
}

/// The attacked copy of `test` (normalised with `norm`): every sample moved within eps (pixel
/// units, L-inf) to raise the loss. `rng` draws PGD's random starts. The network only runs in
/// evaluation mode (its parameters are not changed).
/// `rule`: a rule with its own differentiable answer (`Rule::has_input_gradient`) is attacked
/// through its own input gradient; None (or a feed-forward rule): the network's.
pub fn attack(
    net: &mut Network,
    mut rule: Option<&mut dyn crate::rules::Rule>,
    test: &Split,
    norm: &Norm,
    atk: Attack,
    eps: f64,
    rng: &mut Rng,
) -> Split {
    let mut out = test.clone();
    if eps <= 0.0 {
        return out;
    }
    let (d, c) = (test.dim, norm.mean.len());
    // Per value: eps, lower and upper pixel bounds in the normalised space.
    let bound = |j: usize| {
        let ch = (j / norm.plane).min(c - 1);
        let (m, s) = (norm.mean[ch], norm.std[ch]);
        (eps as f32 / s, (0.0 - m) / s, (1.0 - m) / s)
    };
    let mut ws = Workspace::default();
    let mut pg = net.zero_grads();
    let chunk = 250;
    let mut g = Vec::new();
    let mut start = 0;
    while start < test.n {
        let m = chunk.min(test.n - start);
        let x0 = &test.x[start * d..(start + m) * d];
        let y = &test.y[start..start + m];
        let xa = &mut out.x[start * d..(start + m) * d];
        g.resize(m * d, 0.0);
        let (steps, alpha) = match atk {
            Attack::Fgsm => (1, 1.0),
            Attack::Pgd { steps } => {
                for (i, v) in xa.iter_mut().enumerate() {
                    let (e, lo, hi) = bound(i % d);
                    *v = (*v + e * (2.0 * rng.uniform() - 1.0)).clamp(lo, hi);
                }
                (steps.max(1), 2.5 / steps.max(1) as f32)
            }
        };
        for _ in 0..steps {
            match rule.as_deref_mut() {
                Some(r) if r.has_input_gradient() => r.input_gradient(net, &mut ws, &mut pg, xa, y, &mut g),
                _ => input_gradient(net, &mut ws, &mut pg, xa, y, &mut g),
            }
            for (i, (v, gv)) in xa.iter_mut().zip(&g).enumerate() {
                let (e, lo, hi) = bound(i % d);
                let x = x0[i];
                let step = alpha * e * gv.signum() * f32::from(*gv != 0.0);
                *v = (*v + step).clamp(x - e, x + e).clamp(lo, hi);
            }
        }
        start += m;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Shape};

    fn net() -> Network {
        Builder::new(Shape::new(1, 4, 4), Init::Torch, &mut Rng::new(3))
            .batchnorm(true)
            .conv(3, 3, 1, 1, false, true)
            .act(Activation::Tanh)
            .dense(3, true)
            .build()
    }

    fn loss(net: &Network, x: &[f32], y: &[u32]) -> f64 {
        let mut net = net.clone();
        let mut ws = Workspace::default();
        net.prepare(&mut ws, y.len());
        ws.input_mut().copy_from_slice(x);
        net.forward(&mut ws, false, &mut Rng::new(0));
        Loss::Ce.eval(ws.output(), y, 3, None).0
    }

    #[test]
    fn input_gradient_matches_finite_differences_in_evaluation_mode() {
        // Batch norm with non-trivial running statistics: evaluation mode must use them in the
        // backward pass too (a train-mode backward would be wrong here). Tolerance 2e-3
        // relative: f32 central differences with h = 1e-2 on a smooth (tanh) net.
        let mut n = net();
        n.params[2].data = vec![0.3]; // running mean
        n.params[3].data = vec![2.0]; // running var
        let mut rng = Rng::new(4);
        let mut x = vec![0.0; 2 * 16];
        rng.fill_normal(&mut x, 1.0);
        let y = [0u32, 2];
        let mut g = vec![0.0; x.len()];
        let mut pg = n.zero_grads();
        input_gradient(&mut n, &mut Workspace::default(), &mut pg, &x, &y, &mut g);
        for j in [0, 5, 17, 31] {
            let h = 1e-2;
            let (mut p, mut m) = (x.clone(), x.clone());
            p[j] += h;
            m[j] -= h;
            let fd = (loss(&n, &p, &y) - loss(&n, &m, &y)) / (2.0 * h as f64) / y.len() as f64;
            assert!((g[j] as f64 - fd).abs() < 2e-3 * fd.abs().max(0.1), "x[{j}]: {} vs {fd}", g[j]);
        }
    }

    #[test]
    fn attacks_stay_within_eps_and_the_pixel_range_and_raise_the_loss() {
        let mut n = net();
        let norm = Norm { mean: vec![0.5], std: vec![0.25], plane: 16 };
        let mut rng = Rng::new(5);
        let mut x: Vec<f32> = (0..8 * 16).map(|_| (rng.uniform() - 0.5) / 0.25).collect();
        x[0] = (1.0 - 0.5) / 0.25; // a pixel already at 1
        let test = Split { x, y: (0..8).map(|i| (i % 3) as u32).collect(), n: 8, dim: 16 };
        let base = loss(&n, &test.x, &test.y);
        for atk in [Attack::Fgsm, Attack::Pgd { steps: 5 }] {
            let adv = attack(&mut n, None, &test, &norm, atk, 0.1, &mut Rng::new(6));
            for (a, b) in adv.x.iter().zip(&test.x) {
                let (pa, pb) = (a * 0.25 + 0.5, b * 0.25 + 0.5);
                assert!((pa - pb).abs() <= 0.1 + 1e-5, "{atk:?}: moved {} pixels", (pa - pb).abs());
                assert!((-1e-5..=1.0 + 1e-5).contains(&pa), "{atk:?}: pixel {pa}");
            }
            let l = loss(&n, &adv.x, &adv.y);
            assert!(l > base, "{atk:?}: loss {base} -> {l}");
        }
    }
}
