//! Adversarial robustness, L-inf. White-box: FGSM (Goodfellow, Shlens & Szegedy 2015) and PGD
//! (Madry et al. 2018) through the trained network's true input gradient of the cross-entropy
//! loss, whatever rule trained it (the attacker knows the weights; the rule's own feedback
//! plays no part). Black-box: the Square attack (Andriushchenko et al. 2020), which only queries
//! the answer's scores, so it attacks every rule (those without an input gradient too) and
//! checks the white-box figures against gradient masking: a rule whose input gradient misleads
//! FGSM/PGD still falls to it.
//!
//!   FGSM    x' = clip(x + eps sign(d loss / d x))
//!   PGD     x_0 = x + U(-eps, eps);  x_{t+1} = clip(proj_eps(x_t + alpha sign(d loss / d x_t))),
//!           alpha = 2.5 eps / steps
//!   Square  x_0 = clip(x + eps * vertical stripes of random sign per channel); then for each
//!           query a random s x s window (s from the share p of the image's pixels, p halved on
//!           the official schedule) gets a new random sign per channel, x_w = clip(x + +-eps) there,
//!           kept if it lowers the margin score_y - max_{k != y} score_k; a sample stops once
//!           its margin is negative (misclassified). The official `p_selection` schedule and
//!           initialisation (`max-andriushchenko/square-attack`, attack.py).
//!
//! eps is in pixel units (pixels in [0, 1]); on normalised data it is eps / std per channel,
//! and clip keeps every pixel in [0, 1]. The network runs in evaluation mode (batch-norm
//! running statistics, no dropout).

use crate::data::noise::Norm;
use crate::data::Split;
use crate::nn::{AttackLoss, Network, Shape, Workspace};
use crate::rng::Rng;
use crate::rules::{Prediction, Rule};

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

    /// The name records carry: "fgsm", "pgd", or with the margin loss "fgsm-margin",
    /// "pgd-margin".
    pub fn label(&self, loss: AttackLoss) -> String {
        match loss {
            AttackLoss::Ce => self.name().to_string(),
            AttackLoss::Margin => format!("{}-margin", self.name()),
        }
    }
}

/// d(batch-mean `loss`)/d input of the batch `x` (`y.len()` samples), into `g`;
/// `pg` is the backward pass's parameter-gradient scratch (the dense and convolution layers
/// skip theirs: `nn::without_param_grads`).
pub fn input_gradient(
    net: &mut Network,
    ws: &mut Workspace,
    pg: &mut [Vec<f32>],
    x: &[f32],
    y: &[u32],
    g: &mut [f32],
    loss: AttackLoss,
) {
    let n = y.len();
    net.prepare(ws, n);
    ws.input_mut().copy_from_slice(x);
    net.forward(ws, false, &mut Rng::new(0));
    let k = net.output_len();
    let l = ws.acts.len() - 1;
    let (acts, grads) = (&ws.acts[l], &mut ws.grads[l]);
    loss.output_grad(&acts[..n * k], y, k, &mut grads[..n * k]);
    crate::nn::without_param_grads(|| net.backward(ws, pg, 0, net.num_layers(), None, true));
    g.copy_from_slice(&ws.grads[0][..x.len()]);
}

/// The attacked copy of `test` (normalised with `norm`): every sample moved within eps (pixel
/// units, L-inf) to raise the loss. `rng` draws PGD's random starts. The network only runs in
/// evaluation mode (its parameters are not changed).
/// `rule`: a rule with its own differentiable answer (`Rule::has_input_gradient`) is attacked
/// through its own input gradient; None (or a feed-forward rule): the network's.
#[allow(clippy::too_many_arguments)]
pub fn attack(
    net: &mut Network,
    mut rule: Option<&mut dyn crate::rules::Rule>,
    test: &Split,
    norm: &Norm,
    atk: Attack,
    loss: AttackLoss,
    eps: f64,
    rng: &mut Rng,
) -> Split {
    let mut out = test.clone();
    if eps <= 0.0 {
        return out;
    }
    let d = test.dim;
    let bound = bounds(norm, eps);
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
                Some(r) if r.has_input_gradient() => r.input_gradient(net, &mut ws, &mut pg, xa, y, &mut g, loss),
                _ => input_gradient(net, &mut ws, &mut pg, xa, y, &mut g, loss),
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

/// The draws of the `i`-th gradient attack (FGSM/PGD, in the plan's order) or Square attack of
/// a run with `seed`: one place, so that `biolearn eval` repeats a plan's attack exactly.
pub fn attack_rng(seed: u64, i: usize, square: bool) -> Rng {
    if square {
        Rng::new(seed.wrapping_mul(1_000_037).wrapping_add(i as u64 + 211))
    } else {
        Rng::new(seed.wrapping_mul(1_000_033).wrapping_add(i as u64 + 101))
    }
}

/// Per input value j: eps, and the lower and upper pixel bounds, in the normalised space.
fn bounds(norm: &Norm, eps: f64) -> impl Fn(usize) -> (f32, f32, f32) + '_ {
    let c = norm.mean.len();
    move |j: usize| {
        let ch = (j / norm.plane).min(c - 1);
        let (m, s) = (norm.mean[ch], norm.std[ch]);
        (eps as f32 / s, (0.0 - m) / s, (1.0 - m) / s)
    }
}

/// The Square attack's share of pixels changed per query at query `it` of `n` (the official
/// piece-wise constant schedule, on a 10,000-query scale).
pub fn square_p(p_init: f64, it: usize, n: usize) -> f64 {
    let it = (it as f64 / n.max(1) as f64 * 10_000.0) as usize;
    let div = match it {
        11..=50 => 2.0,
        51..=200 => 4.0,
        201..=500 => 8.0,
        501..=1000 => 16.0,
        1001..=2000 => 32.0,
        2001..=4000 => 64.0,
        4001..=6000 => 128.0,
        6001..=8000 => 256.0,
        8001..=10_000 => 512.0,
        _ => 1.0,
    };
    p_init / div
}

/// The answer's scores (the network's output in evaluation mode, or the rule's own answer) for
/// the `n` samples in `x`, into `out` (n x classes).
fn scores(
    net: &mut Network,
    rule: &mut Option<&mut dyn Rule>,
    ws: &mut Workspace,
    x: &[f32],
    n: usize,
    out: &mut Vec<f32>,
) {
    net.prepare_forward(ws, n);
    ws.input_mut().copy_from_slice(x);
    net.forward_layers(ws, 0, net.num_layers(), false, &mut Rng::new(0));
    if let Some(r) = rule.as_deref_mut() {
        if r.prediction() == Prediction::Own {
            r.predict(net, ws);
        }
    }
    let k = net.output_len();
    out.clear();
    out.extend_from_slice(&ws.output()[..n * k]);
}

/// score_y - max_{k != y} score_k (NaN scores count as misclassified: -inf).
fn margin(s: &[f32], y: u32) -> f32 {
    let y = y as usize;
    let other = s.iter().enumerate().filter(|&(k, _)| k != y).map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
    let m = s[y] - other;
    if m.is_nan() {
        f32::NEG_INFINITY
    } else {
        m
    }
}

/// The Square attack's copy of `test` (normalised with `norm`; images of `shape`): at most
/// `queries` score queries per sample (the initialisation's included), `p_init` the share of
/// pixels the first windows change (the official default 0.05). Only the answer's scores are
/// used, never a gradient. `rng` draws the stripes, windows and signs.
#[allow(clippy::too_many_arguments)]
pub fn square(
    net: &mut Network,
    mut rule: Option<&mut dyn Rule>,
    test: &Split,
    norm: &Norm,
    shape: Shape,
    eps: f64,
    queries: usize,
    p_init: f64,
    rng: &mut Rng,
) -> Split {
    let mut out = test.clone();
    if eps <= 0.0 || test.n == 0 {
        return out;
    }
    let d = test.dim;
    let (h, w) = (shape.h.max(1), shape.w.max(1));
    let bound = bounds(norm, eps);
    let chans = d / (h * w).max(1);
    let mut ws = Workspace::default();
    let k = net.output_len();
    let (mut sc, mut cand, mut idx) = (Vec::new(), Vec::new(), Vec::new());
    let chunk = 500;
    let mut start = 0;
    while start < test.n {
        let m = chunk.min(test.n - start);
        let x0 = &test.x[start * d..(start + m) * d];
        let y = &test.y[start..start + m];
        let best = &mut out.x[start * d..(start + m) * d];
        // Vertical stripes: one random sign per sample, channel and column.
        for i in 0..m {
            for ch in 0..chans {
                for col in 0..w {
                    let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                    for row in 0..h {
                        let j = ch * h * w + row * w + col;
                        let (e, lo, hi) = bound(j);
                        best[i * d + j] = (x0[i * d + j] + sign * e).clamp(lo, hi);
                    }
                }
            }
        }
        scores(net, &mut rule, &mut ws, best, m, &mut sc);
        let mut marg: Vec<f32> = (0..m).map(|i| margin(&sc[i * k..(i + 1) * k], y[i])).collect();
        for it in 1..queries {
            idx.clear();
            idx.extend((0..m).filter(|&i| marg[i] > 0.0));
            if idx.is_empty() {
                break;
            }
            let p = square_p(p_init, it - 1, queries);
            let side = ((p * (h * w) as f64).sqrt().round() as usize).clamp(1, (h.max(w) - 1).max(1));
            let (sh, sw) = (side.min(h), side.min(w));
            cand.clear();
            for &i in &idx {
                let xb = &best[i * d..(i + 1) * d];
                let xo = &x0[i * d..(i + 1) * d];
                let base = cand.len();
                cand.extend_from_slice(xb);
                let (r0, c0) = (rng.below(h - sh + 1), rng.below(w - sw + 1));
                // A new sign per channel over the window; redrawn (up to 10 times) while it
                // would leave the window as it is.
                for _ in 0..10 {
                    let mut changed = false;
                    for ch in 0..chans {
                        let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
                        for row in r0..r0 + sh {
                            for col in c0..c0 + sw {
                                let j = ch * h * w + row * w + col;
                                let (e, lo, hi) = bound(j);
                                let v = (xo[j] + sign * e).clamp(lo, hi);
                                changed |= (v - xb[j]).abs() > 1e-7;
                                cand[base + j] = v;
                            }
                        }
                    }
                    if changed {
                        break;
                    }
                }
            }
            scores(net, &mut rule, &mut ws, &cand, idx.len(), &mut sc);
            for (a, &i) in idx.iter().enumerate() {
                let mn = margin(&sc[a * k..(a + 1) * k], y[i]);
                if mn < marg[i] {
                    marg[i] = mn;
                    best[i * d..(i + 1) * d].copy_from_slice(&cand[a * d..(a + 1) * d]);
                }
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
    use crate::nn::{Activation, Init, Loss, Shape};

    /// Batch norm and dropout: evaluation mode must pass both as evaluation does (running
    /// statistics; dropout passes everything through, in the backward pass too).
    fn net() -> Network {
        Builder::new(Shape::new(1, 4, 4), Init::Torch, &mut Rng::new(3))
            .batchnorm(true)
            .conv(3, 3, 1, 1, false, true)
            .act(Activation::Tanh)
            .dropout(0.5)
            .dense(3, true)
            .build()
    }

    /// The network's outputs for the samples in `x` (evaluation mode).
    fn outputs(net: &Network, x: &[f32], n: usize) -> Vec<f32> {
        let mut net = net.clone();
        let mut ws = Workspace::default();
        net.prepare(&mut ws, n);
        ws.input_mut().copy_from_slice(x);
        net.forward(&mut ws, false, &mut Rng::new(0));
        ws.output().to_vec()
    }

    /// Summed cross-entropy of the 3-class outputs.
    fn loss(net: &Network, x: &[f32], y: &[u32]) -> f64 {
        Loss::Ce.eval(&outputs(net, x, y.len()), y, 3, None).0
    }

    /// Summed margin max_{k != y} z_k - z_y of the 3-class outputs.
    fn margin(net: &Network, x: &[f32], y: &[u32]) -> f64 {
        let z = outputs(net, x, y.len());
        y.iter()
            .enumerate()
            .map(|(i, &t)| {
                let zi = &z[i * 3..(i + 1) * 3];
                let other = (0..3).filter(|&k| k != t as usize).map(|k| zi[k]).fold(f32::NEG_INFINITY, f32::max);
                f64::from(other - zi[t as usize])
            })
            .sum()
    }

    #[test]
    fn input_gradient_matches_finite_differences_in_evaluation_mode() {
        // Batch norm with non-trivial running statistics: evaluation mode must use them in the
        // backward pass too (a train-mode backward would be wrong here). Tolerance 2e-3
        // relative: f32 central differences with h = 1e-2 on a smooth (tanh) net. Both losses
        // an attack ascends: the cross-entropy and the margin (locally smooth away from ties).
        let mut n = net();
        n.params[2].data = vec![0.3]; // running mean
        n.params[3].data = vec![2.0]; // running var
        let mut rng = Rng::new(4);
        let mut x = vec![0.0; 2 * 16];
        rng.fill_normal(&mut x, 1.0);
        let y = [0u32, 2];
        let mut pg = n.zero_grads();
        type Objective = fn(&Network, &[f32], &[u32]) -> f64;
        let objectives: [(AttackLoss, Objective); 2] = [(AttackLoss::Ce, loss), (AttackLoss::Margin, margin)];
        for (which, f) in objectives {
            let mut g = vec![0.0; x.len()];
            input_gradient(&mut n, &mut Workspace::default(), &mut pg, &x, &y, &mut g, which);
            for j in [0, 5, 17, 31] {
                let h = 1e-2;
                let (mut p, mut m) = (x.clone(), x.clone());
                p[j] += h;
                m[j] -= h;
                let fd = (f(&n, &p, &y) - f(&n, &m, &y)) / (2.0 * h as f64) / y.len() as f64;
                assert!((g[j] as f64 - fd).abs() < 2e-3 * fd.abs().max(0.1), "{which:?} x[{j}]: {} vs {fd}", g[j]);
            }
        }
    }

    /// Where the softmax is exactly one-hot in f32 (huge logits) the cross-entropy's input
    /// gradient is exactly zero, so FGSM/PGD cannot move the input (gradient masking); the
    /// margin's gradient is not.
    #[test]
    fn the_margin_gradient_survives_a_saturated_softmax() {
        let mut n = net();
        let out_w = n.params.len() - 2;
        for w in n.params[out_w].data.iter_mut() {
            *w *= 1e6;
        }
        let mut rng = Rng::new(4);
        let mut x = vec![0.0; 2 * 16];
        rng.fill_normal(&mut x, 1.0);
        // Labels the saturated net gets right.
        let right: Vec<u32> = outputs(&n, &x, 2)
            .chunks(3)
            .map(|z| (0..3).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap() as u32)
            .collect();
        let mut pg = n.zero_grads();
        let (mut gce, mut gm) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        input_gradient(&mut n, &mut Workspace::default(), &mut pg, &x, &right, &mut gce, AttackLoss::Ce);
        input_gradient(&mut n, &mut Workspace::default(), &mut pg, &x, &right, &mut gm, AttackLoss::Margin);
        assert!(gce.iter().all(|&v| v == 0.0), "the cross-entropy's gradient vanishes: {gce:?}");
        assert!(gm.iter().filter(|&&v| v != 0.0).count() > 16, "the margin's does not: {gm:?}");
    }

    #[test]
    fn square_schedule_is_the_official_one() {
        assert_eq!(square_p(0.05, 0, 1000), 0.05);
        assert_eq!(square_p(0.05, 1, 1000), 0.05); // 10 on the 10,000 scale
        assert_eq!(square_p(0.05, 2, 1000), 0.025); // 20
        assert_eq!(square_p(0.8, 100, 1000), 0.8 / 16.0); // 1000
        assert_eq!(square_p(0.8, 101, 1000), 0.8 / 32.0); // 1010
        assert_eq!(square_p(0.8, 999, 1000), 0.8 / 512.0); // 9990
    }

    /// On a linear 2-class model whose margin w.x + b cannot turn negative within eps, the
    /// best L-inf move is known: every pixel by eps against sign(w_0 - w_1), lowering the
    /// margin by eps ||w_0 - w_1||_1. The Square attack, from scores alone, must find it (its
    /// windows shrink to single pixels on a 4x4 image), stay within eps and the pixel range, and
    /// never end above its starting margin. A rule's own answer is what it queries.
    #[test]
    fn square_finds_the_best_linf_move_on_a_linear_model_from_scores_alone() {
        let mut n = Builder::new(Shape::new(1, 4, 4), Init::Torch, &mut Rng::new(3)).dense(2, true).build();
        n.params[1].data = vec![100.0, 0.0]; // class 0 far ahead: the attack never succeeds
        let w = n.params[0].data.clone(); // 2 x 16, row-major
        let norm = Norm { mean: vec![0.5], std: vec![0.25], plane: 16 };
        // Pixels in the middle of [0, 1], so eps 0.1 never meets the range's ends.
        let mut rng = Rng::new(8);
        let x: Vec<f32> = (0..3 * 16).map(|_| (0.3 + 0.4 * rng.uniform() - 0.5) / 0.25).collect();
        let test = Split { x, y: vec![0; 3], n: 3, dim: 16 };
        let marg =
            |x: &[f32]| -> f64 { (0..16).map(|j| f64::from(w[j] - w[16 + j]) * f64::from(x[j])).sum::<f64>() + 100.0 };
        let adv = square(&mut n, None, &test, &norm, Shape::new(1, 4, 4), 0.1, 400, 0.05, &mut Rng::new(9));
        let best: f64 = (0..16).map(|j| f64::from((w[j] - w[16 + j]).abs())).sum::<f64>() * 0.1 / 0.25;
        for i in 0..3 {
            let (a, b) = (&adv.x[i * 16..(i + 1) * 16], &test.x[i * 16..(i + 1) * 16]);
            for (p, q) in a.iter().zip(b) {
                assert!(((p - q) * 0.25).abs() <= 0.1 + 1e-5, "moved {}", (p - q) * 0.25);
            }
            let drop = marg(b) - marg(a);
            assert!((drop - best).abs() < 1e-3 * best, "sample {i}: margin down by {drop}, best {best}");
        }
        // A model the attack can fool: margin 0.1 sum(x) + 0.2 at normalised x (0 at pixel 0.5:
        // every sample starts correct), which eps 0.1 (0.4 normalised) can lower by up to 0.64.
        n.params[0].data = (0..32).map(|j| if j < 16 { 0.05 } else { -0.05 }).collect();
        n.params[1].data = vec![0.2, 0.0];
        let mid = Split { x: vec![0.0; 3 * 16], ..test.clone() };
        let adv = square(&mut n, None, &mid, &norm, Shape::new(1, 4, 4), 0.1, 200, 0.05, &mut Rng::new(9));
        for i in 0..3 {
            let m: f32 = adv.x[i * 16..(i + 1) * 16].iter().map(|v| 0.1 * v).sum::<f32>() + 0.2;
            assert!(m < 0.0, "sample {i}: margin {m}");
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
            let adv = attack(&mut n, None, &test, &norm, atk, AttackLoss::Ce, 0.1, &mut Rng::new(6));
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
