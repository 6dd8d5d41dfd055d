//! Directional direct feedback alignment (Bacho & Chu 2022, "Low-variance forward gradients
//! using direct feedback alignment and momentum"; `Florian-BACHO/FDFA`, train mode `FDFA`).
//!
//! DFA's error path (the output error e reaches every block's output directly, through a matrix
//! B_l), with B_l learned instead of fixed: a forward-mode (dual-number) pass through the
//! network estimates each block's output Jacobian, and B_l follows it.
//!
//! Each training step, after the forward pass:
//!   1. Tangent pass (`Network::jvp_layers`): the input carries no tangent; at every block's
//!      output h_l (where DFA's signal enters: the input of the next weight layer) a fresh
//!      u_l ~ N(0, I) is added to the tangent, so the output's tangent is
//!      `d = sum_k J_k u_k`, `J_k = d(output) / d h_k` (N x K per batch; `DFATrainingHook.jvp`).
//!   2. Weights, as DFA: every block gets e B_l^T at h_l and goes back by the exact chain rule
//!      to its own weight layer; the output layer by its true gradient (`Dfa`, `DirectFeedback`).
//!   3. Feedback: the gradient `grad B_l = B_l - mean over the batch of u_l d^T` (D_l x K; the
//!      reference's `feedbacks_view - mean(dir_der x perturbations)`, transposed to B's layout)
//!      goes to B_l's own Adam (lr `ddfa_b_lr`, weight decay `ddfa_b_decay`; the reference's
//!      backward optimiser) after the weight step. Since E[u_k u_l^T] = I [k = l],
//!      E[u_l d^T] = J_l^T: B_l tracks the block's Jacobian averaged over the data, and e B_l^T
//!      tends to backprop's gradient at h_l with that Jacobian in place of the sample's own.
//!
//! B_l starts at zero (the reference's `FDFA` init), so the first steps train the output layer
//! only. B_l is a dense D_l x K matrix on conv blocks too (the reference's conv feedback is
//! K x C x H x W, viewed as K x D_l): the same product. The weights' optimiser and schedule are
//! the run's; B's rate stays constant (the reference's StepLR acts on the forward optimiser).
//!
//! # Shapes
//! e, d: N x K; u_l: N x D_l; B_l: D_l x K (parameter `feedback.I.ddfa`, kind `LearnedFeedback`).

use super::dfa::DirectFeedback;
use super::{forward_with_error, step_then_apply, Rule, Step, StepStats, Updater};
use crate::linalg;
use crate::nn::{Network, ParamKind, Tangents};
use crate::optim::{OptimConfig, Optimizer, OptimizerKind};
use crate::rng::Rng;

crate::settings! {
    /// Directional DFA's settings (`ddfa`).
    pub struct DdfaSettings {
        /// The feedback matrices' Adam learning rate (the reference's `--b-lr`, 1e-4).
        pub ddfa_b_lr: f32 = 1e-4,
        /// The feedback matrices' weight decay in their Adam (the reference's
        /// `--feedback-decay`, 0).
        pub ddfa_b_decay: f32 = 0.0,
    }
    check(s) {
        use super::settings::{non_negative, positive};
        positive("ddfa_b_lr", s.ddfa_b_lr)?;
        non_negative("ddfa_b_decay", s.ddfa_b_decay)?;
        if s.ddfa_b_lr > 10.0 {
            return Err(format!("ddfa_b_lr {} is above 10: an Adam step that large makes B noise", s.ddfa_b_lr));
        }
        Ok(())
    }
}

pub struct Ddfa {
    pub fb: DirectFeedback,
    s: DdfaSettings,
    /// B's own Adam, one tensor per block.
    opt: Optimizer,
    tg: Tangents,
    /// Per block: this batch's tangent u_l (N x D_l).
    u: Vec<Vec<f32>>,
    /// Per block: grad B_l (D_l x K).
    gb: Vec<Vec<f32>>,
}

impl Ddfa {
    pub fn new(net: &mut Network, s: &DdfaSettings, rng: &mut Rng) -> Self {
        let fb = DirectFeedback::drawn(net, rng, "ddfa", |_, d, k, _| vec![0.0; d * k]);
        let sizes: Vec<usize> = fb.feedback.iter().map(|&(_, b)| net.params[b].data.len()).collect();
        for &(_, b) in &fb.feedback {
            net.params[b].kind = ParamKind::LearnedFeedback;
        }
        let cfg = OptimConfig {
            kind: OptimizerKind::Adam,
            lr: s.ddfa_b_lr,
            weight_decay: s.ddfa_b_decay,
            ..Default::default()
        };
        let gb = sizes.iter().map(|&n| vec![0.0; n]).collect();
        Ddfa {
            u: vec![Vec::new(); sizes.len()],
            opt: Optimizer::new(cfg, &sizes),
            fb,
            s: s.clone(),
            tg: Tangents::default(),
            gb,
        }
    }

    /// The tangent pass and grad B_l = B_l - U_l^T d / N, after the training forward pass.
    fn feedback_gradients(&mut self, net: &Network, ws: &crate::nn::Workspace, rng: &mut Rng) {
        let (n, k, l) = (ws.n, net.output_len(), net.num_layers());
        let Some(&(first, _)) = self.fb.feedback.first() else { return };
        net.prepare_tangents(&mut self.tg, n);
        for (j, &(at, _)) in self.fb.feedback.iter().enumerate() {
            let len = n * net.shapes[at].len();
            let u = &mut self.u[j];
            u.resize(len, 0.0);
            rng.fill_normal(u, 1.0);
            let t = &mut self.tg.t[at][..len];
            if at == first {
                t.copy_from_slice(u);
            } else {
                t.iter_mut().zip(u.iter()).for_each(|(tv, uv)| *tv += uv);
            }
            let next = self.fb.feedback.get(j + 1).map_or(l, |&(a, _)| a);
            net.jvp_layers(ws, &mut self.tg, at, next);
        }
        let d = &self.tg.t[l][..n * k];
        for (j, &(at, b)) in self.fb.feedback.iter().enumerate() {
            let dl = net.shapes[at].len();
            let gb = &mut self.gb[j];
            // U^T d (D x N)(N x K), then B - that / N.
            linalg::matmul(dl, k, n, &self.u[j], true, d, false, gb, false);
            let inv = 1.0 / n as f32;
            gb.iter_mut().zip(&net.params[b].data).for_each(|(g, bv)| *g = bv - *g * inv);
        }
    }
}

impl Rule for Ddfa {
    fn layer_parallel(&self) -> bool {
        true
    }
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        self.feedback_gradients(net, ws, rng);
        self.fb.backward(net, ws, grads, super::dfa::project_error);
        stats
    }

    /// The weight step, then B's Adam step on this batch's feedback gradients.
    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        let stats = step_then_apply(self, s, upd);
        if stats.loss_sum.is_finite() {
            let (opt, fb, gb, lr) = (&mut self.opt, &self.fb, &self.gb, self.s.ddfa_b_lr);
            opt.begin_step();
            upd.local(s.net, |net| {
                for (j, &(_, b)) in fb.feedback.iter().enumerate() {
                    opt.update(j, &mut net.params[b].data, &gb[j], lr);
                }
            });
        }
        stats
    }

    /// B is in the network (kind `LearnedFeedback`); its Adam's moments and step count are here.
    fn save_state(&self) -> super::RuleState {
        let mut s = super::RuleState::default();
        super::save_optimizer(&mut s, "feedback_optimizer", &self.opt);
        s
    }

    fn load_state(&mut self, state: &super::RuleState) -> Result<(), String> {
        super::load_optimizer(state, "feedback_optimizer", &mut self.opt)
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "ddfa",
    summary: "directional DFA: DFA whose feedback matrices learn each block's output Jacobian from a forward-mode pass with random tangents",
    paper: "Bacho & Chu 2022, arXiv:2212.07282",
    reported: "",
    preset: include_str!("../../presets/ddfa.toml"),
    presets: &[("bacho-chu", include_str!("../../presets/ddfa/bacho-chu.toml"))],
    settings: super::SettingsKind::of::<DdfaSettings>(),
    build: |net, cx, rng| {
        let s: DdfaSettings = cx.settings()?;
        Ok(Box::new(Ddfa::new(net, &s, rng)))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Loss, Shape, Workspace};
    use crate::rules::tests::grads_of;

    /// A linear network 6 -> 5 -> 4 -> 3 (no activations): every block's Jacobian is the
    /// product of the weights above it, the same at every input.
    fn linear(seed: u64) -> Network {
        Builder::new(Shape::flat(6), Init::Xavier, &mut Rng::new(seed)).dense(5, true).dense(4, true).dense(3, true).build()
    }

    /// J_l^T (D_l x K) of the linear net, for the block entering weight layer `at`.
    fn jacobian_t(net: &Network, at: usize) -> Vec<f32> {
        let k = net.output_len();
        // M = W_L ... W_at (K x D_at), then transposed.
        let mut m: Option<(Vec<f32>, usize)> = None;
        for layer in net.layers[at..].iter().rev() {
            let crate::nn::Layer::Dense { w, inp, out, .. } = layer else { unreachable!() };
            let wd = &net.params[*w].data;
            m = Some(match m {
                None => (wd.clone(), *inp),
                Some((mm, _)) => {
                    let mut next = vec![0.0; k * inp];
                    linalg::matmul(k, *inp, *out, &mm, false, wd, false, &mut next, false);
                    (next, *inp)
                }
            });
        }
        let (m, d) = m.unwrap();
        (0..d * k).map(|i| m[(i % k) * d + i / k]).collect()
    }

    /// With the weights held still, every B_l (from zero) converges to its block's Jacobian
    /// (transposed): relative error under 10% after 3000 batches of 32.
    #[test]
    fn feedback_converges_to_the_jacobian_on_a_linear_network() {
        let mut net = linear(1);
        let s = DdfaSettings { ddfa_b_lr: 3e-3, ..Default::default() };
        let mut r = Ddfa::new(&mut net, &s, &mut Rng::new(2));
        assert_eq!(r.fb.feedback.len(), 2);
        let mut opt = crate::optim::Optimizer::new(OptimConfig { lr: 0.0, ..Default::default() }, &net.update_sizes());
        let (mut ws, mut g, mut rng) = (Workspace::default(), net.zero_grads(), Rng::new(3));
        for _ in 0..3000 {
            net.prepare(&mut ws, 32);
            rng.fill_normal(ws.input_mut(), 1.0);
            let y: Vec<u32> = (0..32).map(|_| rng.below(3) as u32).collect();
            let mut upd = Updater { opt: &mut opt, lr: 0.0, masks: None , device: None };
            r.train_batch(&mut Step::new(&mut net, &mut ws, &y, Loss::Ce, &mut g, &mut rng), &mut upd);
        }
        for &(at, b) in &r.fb.feedback {
            let j = jacobian_t(&net, at);
            let bd = &net.params[b].data;
            let num: f64 = bd.iter().zip(&j).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
            let den: f64 = j.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
            assert!(num / den < 0.1, "block at layer {at}: ||B - J^T|| / ||J^T|| = {}", num / den);
        }
    }

    /// With B_l at its block's Jacobian, DDFA's weight updates are backprop's on a linear network
    /// (e B_l^T is then the true gradient at every block's output).
    #[test]
    fn with_the_true_jacobian_the_updates_are_backprops() {
        let mut net = linear(4);
        let mut r = Ddfa::new(&mut net, &DdfaSettings::default(), &mut Rng::new(5));
        for &(at, b) in &r.fb.feedback.clone() {
            net.params[b].data = jacobian_t(&net, at);
        }
        let mut x = vec![0.0; 4 * 6];
        Rng::new(6).fill_normal(&mut x, 1.0);
        let y = [0, 2, 1, 2];
        let g = grads_of(&mut r, &mut net, &x, &y);
        let gb = grads_of(&mut crate::rules::bp::Backprop, &mut net, &x, &y);
        for (p, (a, b)) in g.iter().zip(&gb).enumerate().filter(|(p, _)| net.params[*p].trainable()) {
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() < 1e-5, "parameter {p}: {a:?} vs {b:?}");
            }
        }
    }

    /// The feedback gradient by hand on a 2-2-2 net with one block: B - u d^T / N with
    /// d = J u, J = W_1 diag(f'(a_0)) (ReLU, both units active), N = 1.
    #[test]
    fn feedback_gradient_by_hand() {
        let mut net = crate::rules::tests::net22(Activation::Relu);
        let mut r = Ddfa::new(&mut net, &DdfaSettings::default(), &mut Rng::new(1));
        let b = r.fb.feedback[0].1;
        net.params[b].data.copy_from_slice(&[0.1, -0.2, 0.3, 0.4]);
        // x = (1, 1): a_0 = W0 x = (0.25, 1.75) > 0, so J = W1 = [[1, -0.5], [0.25, 2]].
        let x = [1.0, 1.0];
        let mut ws = Workspace::default();
        net.prepare(&mut ws, 1);
        ws.input_mut().copy_from_slice(&x);
        let mut rng = Rng::new(9);
        net.forward(&mut ws, true, &mut rng);
        r.feedback_gradients(&net, &ws, &mut rng);
        let u = r.u[0].clone();
        let d = [u[0] - 0.5 * u[1], 0.25 * u[0] + 2.0 * u[1]];
        let want = [0.1 - u[0] * d[0], -0.2 - u[0] * d[1], 0.3 - u[1] * d[0], 0.4 - u[1] * d[1]];
        for (a, w) in r.gb[0].iter().zip(&want) {
            assert!((a - w).abs() < 1e-6, "{:?} vs {want:?}", r.gb[0]);
        }
    }

    /// It trains: on a small conv net the loss falls and stays finite (the paper's claim that
    /// DDFA trains conv layers stably; one seed here, LeNet runs in the report).
    #[test]
    fn trains_a_conv_net_without_diverging() {
        let mut rng = Rng::new(7);
        let mut net = Builder::new(Shape::new(1, 8, 8), Init::Kaiming, &mut rng)
            .conv(4, 3, 1, 1, false, true)
            .act(Activation::Relu)
            .maxpool(2, 2)
            .dense(16, true)
            .act(Activation::Relu)
            .dense(3, true)
            .build();
        let s = DdfaSettings { ddfa_b_lr: 1e-2, ..Default::default() };
        let mut r = Ddfa::new(&mut net, &s, &mut rng);
        let cfg = OptimConfig { lr: 0.01, momentum: 0.9, ..Default::default() };
        let mut opt = crate::optim::Optimizer::new(cfg, &net.update_sizes());
        let (mut ws, mut g) = (Workspace::default(), net.zero_grads());
        // Three classes, each a fixed random template plus noise.
        let mut templates = vec![0.0; 3 * 64];
        rng.fill_normal(&mut templates, 1.0);
        let mut losses = Vec::new();
        for _ in 0..300 {
            net.prepare(&mut ws, 16);
            let y: Vec<u32> = (0..16).map(|_| rng.below(3) as u32).collect();
            let mut x = vec![0.0; 16 * 64];
            rng.fill_normal(&mut x, 0.5);
            for (s, &c) in y.iter().enumerate() {
                for j in 0..64 {
                    x[s * 64 + j] += templates[c as usize * 64 + j];
                }
            }
            ws.input_mut().copy_from_slice(&x);
            let mut upd = Updater { opt: &mut opt, lr: 0.01, masks: None , device: None };
            let st = r.train_batch(&mut Step::new(&mut net, &mut ws, &y, Loss::Ce, &mut g, &mut rng), &mut upd);
            losses.push(st.loss_sum / 16.0);
        }
        let (first, last) = (losses[..20].iter().sum::<f64>() / 20.0, losses[280..].iter().sum::<f64>() / 20.0);
        assert!(losses.iter().all(|l| l.is_finite()), "diverged");
        assert!(last < 0.25 * first, "loss {first:.3} -> {last:.3}");
        let conv_b = r.fb.feedback.iter().find(|&&(at, _)| at == 3).map(|&(_, b)| b).unwrap();
        assert!(net.params[conv_b].data.iter().any(|v| *v != 0.0), "the conv block's feedback never moved");
    }
}
