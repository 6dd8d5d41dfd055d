//! Phaseless alignment learning (Max et al. 2022, "Learning efficient backprojections across
//! cortical hierarchies in real time"; `kma-code/Phaseless-Alignment-Learning`).
//!
//! Errors travel back as in feedback alignment, through feedback matrices B in place of W^T:
//!
//!   e_l = f'(u_l) (.) (B_{l+1}^T e_{l+1}),   dW_l = e_l h_{l-1}^T / N   (weight updates as in BP)
//!
//! but B is not fixed: it learns from noise, with no separate phase. Each neuron's voltage carries
//! noise xi_l; the layer above sees its effect r_{l+1} (the high-passed response), and
//!
//!   B_{l+1} += eta_B (r_{l+1} xi_l^T - alpha B_{l+1})
//!
//! so B_{l+1} follows the noise's response through W_{l+1}: E[r xi^T] = sigma^2 W_{l+1} D'_l
//! (D'_l = diag f'(u_l)), aligned with W_{l+1} whatever the rest of the network does.
//!
//! The reference simulates continuous-time latent-equilibrium neurons with Ornstein-Uhlenbeck
//! noise and low/high-pass filters. This is the discrete, rate form ../shared/ALGORITHMS.md C
//! gives: per batch, after the clean forward pass and the FA backward pass, one more forward
//! pass with xi_l ~ N(0, sigma^2) added to every hidden layer's pre-activation u_l (dropout
//! masks replayed); r_{l+1} = u_{l+1}(noisy) - u_{l+1}(clean), the next layer's pre-activation
//! change (the reference's high-pass of the rate; here before the next nonlinearity, which only
//! scales each row by a positive f'), and
//!
//!   B_{l+1} += eta_B (r_{l+1}^T xi_l / (N sigma^2) - alpha B_{l+1})   (`pal_b_lr`, `pal_alpha`)
//!
//! applied after the weight step (through the driver's `Updater::local`). Dividing the noise
//! correlation by sigma^2 makes alpha dimensionless: with alpha = 1 (the default) B is a running
//! average of the estimate of W D', reached at any noise level; the reference's alpha 5e-5 belongs
//! to its unnormalised correlation and its time constants and does not carry over. B starts at
//! N(0, 0.05^2) (the reference's init), sigma = 0.05 (the reference's).
//!
//! PAL runs on MLPs (dense -> activation -> ... -> dense): r and xi must be the two sides of one
//! weight matrix.
//!
//! # Shapes
//! B_l: the shape of W_l (out x in); xi_l: N x n_l; r_{l+1}: N x n_{l+1}.

use super::{forward_with_error, mlp_layers, step_then_apply, Rule, Step, StepStats, Updater};
use crate::linalg;
use crate::nn::{Network, ParamKind};
use crate::rng::Rng;

crate::settings! {
    /// Phaseless alignment learning's settings (`pal`).
    pub struct PalSettings {
        /// The noise's standard deviation on every hidden pre-activation (the reference's 0.05).
        pub pal_sigma: f32 = 0.05,
        /// The feedback's learning rate eta_B (per batch).
        pub pal_b_lr: f32 = 0.01,
        /// The feedback's decay alpha, against the noise correlation normalised by sigma^2.
        pub pal_alpha: f32 = 1.0,
        /// The standard deviation of B's initial N(0, s^2) entries (the reference's 0.05).
        pub pal_b_init: f32 = 0.05,
    }
    check(s) {
        use super::settings::{non_negative, positive};
        positive("pal_sigma", s.pal_sigma)?;
        positive("pal_b_lr", s.pal_b_lr)?;
        non_negative("pal_alpha", s.pal_alpha)?;
        non_negative("pal_b_init", s.pal_b_init)?;
        if s.pal_b_lr * s.pal_alpha >= 2.0 {
            return Err(format!("pal_b_lr x pal_alpha must be below 2 (got {}): B's decay would diverge", s.pal_b_lr * s.pal_alpha));
        }
        if s.pal_sigma > 1e3 || s.pal_b_init > 1e3 {
            return Err("pal_sigma and pal_b_init must be at most 1000".into());
        }
        Ok(())
    }
}

pub struct Pal {
    /// Per layer index: the network parameter (kind `LearnedFeedback`, named
    /// `feedback.I.weight`) used in place of W on the way back (None for non-weight layers and
    /// the first weight layer).
    pub feedback: Vec<Option<usize>>,
    /// The dense layers, in order.
    dense: Vec<usize>,
    s: PalSettings,
    /// Per dense layer after the first: its clean pre-activation, then r (noisy - clean).
    r: Vec<Vec<f32>>,
    /// Per hidden dense layer: the noise added to its pre-activation.
    xi: Vec<Vec<f32>>,
    /// Per dense layer after the first: this batch's estimate r^T xi / (N sigma^2) (B's shape).
    est: Vec<Vec<f32>>,
}

impl Pal {
    pub fn new(net: &mut Network, s: &PalSettings, rng: &mut Rng) -> Result<Self, String> {
        let (dense, _) = mlp_layers(net, "pal")?;
        let mut feedback = vec![None; net.num_layers()];
        for &d in &dense[1..] {
            let w = net.layers[d].weight().expect("dense layer");
            let (shape, len) = (net.params[w].shape.clone(), net.params[w].data.len());
            let b: Vec<f32> = (0..len).map(|_| s.pal_b_init * rng.normal()).collect();
            feedback[d] = Some(net.add_param(format!("feedback.{d}.weight"), shape, b, ParamKind::LearnedFeedback));
        }
        let k = dense.len();
        let est = dense[1..].iter().map(|&d| vec![0.0; net.params[net.layers[d].weight().unwrap()].data.len()]).collect();
        Ok(Pal { feedback, dense, s: s.clone(), r: vec![Vec::new(); k - 1], xi: vec![Vec::new(); k - 1], est })
    }
}

impl Rule for Pal {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        let l = net.num_layers();
        net.backward(ws, grads, 0, l, Some(&self.feedback), false);
        // The noise pass: clean pre-activations of the layers above, then xi on every hidden one.
        let n = ws.n;
        for (r, &d) in self.r.iter_mut().zip(&self.dense[1..]) {
            r.clear();
            r.extend_from_slice(&ws.acts[d + 1][..n * net.shapes[d + 1].len()]);
        }
        let sigma = self.s.pal_sigma;
        let mut at = 0;
        for (xi, &d) in self.xi.iter_mut().zip(&self.dense) {
            net.forward_replay_layers(ws, at, d + 1);
            let u = &mut ws.acts[d + 1][..n * net.shapes[d + 1].len()];
            xi.clear();
            xi.extend((0..u.len()).map(|_| sigma * rng.normal()));
            u.iter_mut().zip(xi.iter()).for_each(|(uv, x)| *uv += x);
            at = d + 1;
        }
        net.forward_replay_layers(ws, at, l);
        let scale = 1.0 / (n as f32 * sigma * sigma);
        for (j, &d) in self.dense[1..].iter().enumerate() {
            let (out, inp) = (net.shapes[d + 1].len(), net.shapes[d].len());
            let r = &mut self.r[j];
            for (rv, noisy) in r.iter_mut().zip(&ws.acts[d + 1][..n * out]) {
                *rv = (noisy - *rv) * scale;
            }
            // est = r^T xi (out x inp), r: N x out, xi: N x inp.
            linalg::matmul(out, inp, n, r, true, &self.xi[j], false, &mut self.est[j], false);
        }
        stats
    }

    /// The weight step, then B's step toward this batch's noise estimate.
    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        let stats = step_then_apply(self, s, upd);
        if stats.loss_sum.is_finite() {
            let (eta, alpha) = (self.s.pal_b_lr, self.s.pal_alpha);
            let (feedback, dense, est) = (&self.feedback, &self.dense, &self.est);
            upd.local(s.net, |net| {
                for (j, &d) in dense[1..].iter().enumerate() {
                    let b = feedback[d].expect("built");
                    for (bv, e) in net.params[b].data.iter_mut().zip(&est[j]) {
                        *bv += eta * (e - alpha * *bv);
                    }
                }
            });
        }
        stats
    }

    // B lives in the network (kind `LearnedFeedback`): checkpoints and saved models hold it.
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "pal",
    summary: "phaseless alignment learning: feedback alignment whose feedback matrices learn W's direction from the response to noise injected in every hidden layer, with no separate phase",
    paper: "Max et al. 2022 (PAL), arXiv:2212.10249",
    reported: "",
    preset: include_str!("../../presets/pal.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<PalSettings>(),
    build: |net, cx, rng| {
        let s: PalSettings = cx.settings()?;
        Ok(Box::new(Pal::new(net, &s, rng)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Loss, Shape, Workspace};
    use crate::optim::{OptimConfig, Optimizer};
    use crate::rules::tests::grads_of;

    fn net(seed: u64) -> Network {
        Builder::new(Shape::flat(6), Init::Torch, &mut Rng::new(seed))
            .dense(8, true)
            .act(Activation::Tanh)
            .dense(5, true)
            .act(Activation::Tanh)
            .dense(3, true)
            .build()
    }

    /// With B = W the weight updates are backprop's (the error path is FA's).
    #[test]
    fn with_b_equal_to_w_the_weight_updates_are_backprops() {
        let mut n = net(1);
        let mut r = Pal::new(&mut n, &PalSettings::default(), &mut Rng::new(2)).unwrap();
        for (i, fb) in r.feedback.clone().iter().enumerate() {
            if let Some(b) = fb {
                let w = n.layers[i].weight().unwrap();
                n.params[*b].data = n.params[w].data.clone();
            }
        }
        let mut x = vec![0.0; 4 * 6];
        Rng::new(3).fill_normal(&mut x, 1.0);
        let y = [0, 2, 1, 2];
        let g = grads_of(&mut r, &mut n, &x, &y);
        let gb = grads_of(&mut crate::rules::bp::Backprop, &mut n, &x, &y);
        for (p, (a, b)) in g.iter().zip(&gb).enumerate().filter(|(p, _)| n.params[*p].trainable()) {
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() < 1e-6, "parameter {p}: {a:?} vs {b:?}");
            }
        }
    }

    /// With the weights held still, each B turns from its random start toward its W: under 30
    /// degrees after 400 batches (random B: about 90).
    #[test]
    fn feedback_aligns_with_the_forward_weights() {
        let mut n = net(4);
        let mut r = Pal::new(&mut n, &PalSettings::default(), &mut Rng::new(5)).unwrap();
        let pairs: Vec<(usize, usize)> = r
            .feedback
            .iter()
            .enumerate()
            .filter_map(|(i, fb)| fb.map(|b| (n.layers[i].weight().unwrap(), b)))
            .collect();
        assert_eq!(pairs.len(), 2);
        let before: Vec<f64> = pairs.iter().map(|&(w, b)| crate::rules::angle(&n.params[w].data, &n.params[b].data)).collect();
        let mut opt = Optimizer::new(OptimConfig { lr: 0.0, ..Default::default() }, &n.update_sizes());
        let (mut ws, mut g, mut rng) = (Workspace::default(), n.zero_grads(), Rng::new(6));
        for _ in 0..400 {
            n.prepare(&mut ws, 16);
            rng.fill_normal(ws.input_mut(), 1.0);
            let y: Vec<u32> = (0..16).map(|_| rng.below(3) as u32).collect();
            let mut upd = Updater { opt: &mut opt, lr: 0.0, masks: None , device: None };
            r.train_batch(&mut Step::new(&mut n, &mut ws, &y, Loss::Ce, &mut g, &mut rng), &mut upd);
        }
        let after: Vec<f64> = pairs.iter().map(|&(w, b)| crate::rules::angle(&n.params[w].data, &n.params[b].data)).collect();
        for (b, a) in before.iter().zip(&after) {
            assert!(*b > 60.0 && *a < 30.0, "angle to W: {before:?} -> {after:?}");
        }
    }

    /// The feedback's scale, not only its direction: on a linear network (f' = 1) the noise
    /// correlation normalised by sigma^2 estimates W itself, so with alpha = 1 B becomes W
    /// (up to the estimate's sampling noise): a wrong 1/sigma^2, alpha or 1/N would leave it
    /// a multiple of W at the right angle.
    #[test]
    fn on_a_linear_network_the_feedback_becomes_the_forward_weights() {
        let mut n = Builder::new(Shape::flat(6), Init::Torch, &mut Rng::new(4))
            .dense(8, true)
            .act(Activation::Identity)
            .dense(5, true)
            .act(Activation::Identity)
            .dense(3, true)
            .build();
        let mut r = Pal::new(&mut n, &PalSettings { pal_b_lr: 0.02, ..Default::default() }, &mut Rng::new(5)).unwrap();
        let pairs: Vec<(usize, usize)> = r
            .feedback
            .iter()
            .enumerate()
            .filter_map(|(i, fb)| fb.map(|b| (n.layers[i].weight().unwrap(), b)))
            .collect();
        let mut opt = Optimizer::new(OptimConfig { lr: 0.0, ..Default::default() }, &n.update_sizes());
        let (mut ws, mut g, mut rng) = (Workspace::default(), n.zero_grads(), Rng::new(6));
        for _ in 0..600 {
            n.prepare(&mut ws, 64);
            rng.fill_normal(ws.input_mut(), 1.0);
            let y: Vec<u32> = (0..64).map(|_| rng.below(3) as u32).collect();
            let mut upd = Updater { opt: &mut opt, lr: 0.0, masks: None, device: None };
            r.train_batch(&mut Step::new(&mut n, &mut ws, &y, Loss::Ce, &mut g, &mut rng), &mut upd);
        }
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        for &(w, b) in &pairs {
            let (w, b) = (&n.params[w].data, &n.params[b].data);
            let diff: Vec<f32> = w.iter().zip(b).map(|(x, y)| x - y).collect();
            let (rel, scale) = (norm(&diff) / norm(w), norm(b) / norm(w));
            eprintln!("||B - W|| / ||W|| = {rel:.4}, ||B|| / ||W|| = {scale:.4}");
            assert!(rel < 0.1 && (0.93..1.07).contains(&scale), "||B - W|| / ||W|| = {rel}, ||B|| / ||W|| = {scale}");
        }
    }
}
