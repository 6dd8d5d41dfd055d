//! Predictive coding with positive firing rates and one-way synapses (Alonso & Neftci 2021,
//! "Tightening the biological constraints on gradient-based predictive coding",
//! `nalonso2/Tightening-the-Biological-Constraints-on-Gradient-Based-Predictive-Coding`, PC.py).
//!
//! Value nodes are firing rates a_l (after the nonlinearity), not membrane potentials: on an MLP
//! with dense layers W_k (k = 0..L-1, W_k: n_{k+1} x n_k) and hidden activation f,
//!
//!   prediction  p_k = W_k a_k + b_k,  a_0 = x,  a_L clamped to onehot(y)
//!   errors      e_k = a_{k+1} - f_k(p_k)        (f_{L-1} = sigmoid at the output, as in PC.py)
//!               delta_k = e_k (.) f_k'(p_k)
//!   inference   a_l += gamma (delta_l B_l - e_{l-1}),  then a_l = relu(a_l) (positive rates)
//!               for every hidden l, synchronously, T steps (`--pc-steps`, `--pc-gamma`;
//!               gamma_b = gamma_t = gamma as in the paper's runs)
//!   learning    dW_k = delta_k^T a_k / N, db_k = sum delta_k / N  at the relaxed nodes
//!
//! B_l carries the error of layer l+1 back to layer l: `transpose` B_l = W_l (weight transport,
//! what standard PC assumes), `random` a fixed random matrix (one-way synapses: Rand-PC), or
//! `learned` (KP-PC, the default): B_l starts random and receives the same update as W_l plus
//! the same small decay (0.01 x lr per step on both), so B_l - W_l shrinks geometrically and
//! the feedback comes to equal the forward weights without ever copying them (Kolen-Pollack).
//! The learned B_l takes its steps through an optimiser of the same kind and settings as the
//! forward weights. Prediction (evaluation) is the feed-forward pass; its argmax is that of the
//! pre-sigmoid output, as in the paper's test.
//!
//! Deviations: the dense layers keep their biases (PC.py has none), and the update is the batch
//! mean, not the sum (Adam is invariant to that scale).
//!
//! # Shapes
//! a_k: N x n_k; p_k, e_k, delta_k: N x n_{k+1}; W_k, B_k: n_{k+1} x n_k (row-major, out x in).

use super::{forward_with_error, Rule, Step, StepStats, Updater};
use crate::linalg;
use crate::nn::activation::sigmoid;
use crate::nn::{dense_backward, dense_forward, Activation, Layer, Network, ParamKind};
use crate::optim::{OptimConfig, Optimizer};
use crate::rng::Rng;

/// Where the hidden layers' error feedback comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Feedback {
    /// B = W (weight transport).
    Transpose,
    /// B fixed at its random initialisation.
    Random,
    /// B learned with the forward weights' own update and decay (Kolen-Pollack).
    Learned,
}

#[derive(Clone, Debug)]
pub struct PcPositiveConfig {
    pub steps: usize,
    pub gamma: f32,
    pub feedback: Feedback,
    /// Clip the hidden rates at zero after every inference step.
    pub relu: bool,
}

pub struct PcPositive {
    pub cfg: PcPositiveConfig,
    /// Dense layer index in the network per k, and the hidden activation after it.
    dense: Vec<usize>,
    acts: Vec<Activation>,
    /// B_l for l = 1..L-1 (index l - 1): network parameters of W_l's shape named
    /// `feedback.L.b`, kind `LearnedFeedback` (or `Feedback` when fixed); empty with `transpose`.
    pub b: Vec<usize>,
    b_opt: Option<Optimizer>,
    /// Nodes a_k (k = 1..L-1 at index k), predictions p_k, errors e_k, deltas d_k.
    a: Vec<Vec<f32>>,
    p: Vec<Vec<f32>>,
    e: Vec<Vec<f32>>,
    d: Vec<Vec<f32>>,
    fb: Vec<f32>,
    /// Energy 1/2 sum ||e_k||^2 after each inference step of the last batch.
    pub trace: Vec<f64>,
}

/// Kolen-Pollack decay per step, as a multiple of the learning rate (PC.py: decay 0.01).
const KP_DECAY: f32 = 0.01;

impl PcPositive {
    pub fn new(net: &mut Network, cfg: PcPositiveConfig, optim: OptimConfig, rng: &mut Rng) -> Result<Self, String> {
        let (dense, acts) = super::mlp_layers(net, "pc-positive")?;
        let mut b = Vec::new();
        if cfg.feedback != Feedback::Transpose {
            let kind = if cfg.feedback == Feedback::Learned { ParamKind::LearnedFeedback } else { ParamKind::Feedback };
            for (l, &di) in dense.iter().enumerate().skip(1) {
                let Layer::Dense { w, out, .. } = &net.layers[di] else { unreachable!() };
                // PyTorch's default for Linear(n_{l+1} -> n_l): U(+-1/sqrt(n_{l+1})).
                let bound = 1.0 / (*out as f32).sqrt();
                let (len, shape) = (net.params[*w].data.len(), net.params[*w].shape.clone());
                let mut m = vec![0.0; len];
                rng.fill_uniform(&mut m, -bound, bound);
                b.push(net.add_param(format!("feedback.{l}.b"), shape, m, kind));
            }
        }
        let b_opt = (cfg.feedback == Feedback::Learned).then(|| {
            let sizes: Vec<usize> = b.iter().map(|&i| net.params[i].data.len()).collect();
            Optimizer::new(OptimConfig { weight_decay: 0.0, ..optim }, &sizes)
        });
        let k = dense.len();
        Ok(PcPositive {
            cfg,
            dense,
            acts,
            b,
            b_opt,
            a: vec![Vec::new(); k],
            p: vec![Vec::new(); k],
            e: vec![Vec::new(); k],
            d: vec![Vec::new(); k],
            fb: Vec::new(),
            trace: Vec::new(),
        })
    }

    fn layer(net: &Network, di: usize) -> (usize, Option<usize>, usize, usize) {
        let Layer::Dense { w, b, inp, out } = &net.layers[di] else { unreachable!() };
        (*w, *b, *inp, *out)
    }

    /// p_k = W_k a_k + b_k, errors and deltas for every k; returns the energy.
    fn errors(&mut self, net: &Network, x: &[f32], y: &[u32], n: usize) -> f64 {
        let kk = self.dense.len();
        let mut energy = 0.0f64;
        for k in 0..kk {
            let (w, b, inp, out) = Self::layer(net, self.dense[k]);
            let a_k: &[f32] = if k == 0 { &x[..n * inp] } else { &self.a[k] };
            let p = &mut self.p[k];
            p.resize(n * out, 0.0);
            dense_forward(a_k, n, inp, out, &net.params[w].data, b.map(|b| net.params[b].data.as_slice()), p);
            let (e, d) = (&mut self.e[k], &mut self.d[k]);
            e.resize(n * out, 0.0);
            d.resize(n * out, 0.0);
            if k + 1 < kk {
                let act = self.acts[k];
                for (((ev, dv), &pv), &av) in e.iter_mut().zip(d.iter_mut()).zip(p.iter()).zip(&self.a[k + 1]) {
                    let fp = act.f(pv);
                    *ev = av - fp;
                    *dv = *ev * act.df(pv, fp);
                }
            } else {
                for (s, &label) in y.iter().enumerate() {
                    for j in 0..out {
                        let i = s * out + j;
                        let sg = sigmoid(p[i]);
                        let t = if j == label as usize { 1.0 } else { 0.0 };
                        e[i] = t - sg;
                        d[i] = e[i] * sg * (1.0 - sg);
                    }
                }
            }
            energy += e.iter().map(|&v| 0.5 * (v as f64) * (v as f64)).sum::<f64>();
        }
        energy
    }

    /// The smallest hidden rate of the last batch's relaxed state.
    pub fn min_rate(&self) -> f32 {
        self.a[1..].iter().flatten().fold(f32::INFINITY, |m, &v| m.min(v))
    }

    /// One synchronous inference step on every hidden node.
    fn infer(&mut self, net: &Network, n: usize) {
        let gamma = self.cfg.gamma;
        for l in 1..self.dense.len() {
            let (w, _, inp, out) = Self::layer(net, self.dense[l]);
            let bm: &[f32] = match self.cfg.feedback {
                Feedback::Transpose => &net.params[w].data,
                _ => &net.params[self.b[l - 1]].data,
            };
            // delta_l (N x n_{l+1}) B_l (n_{l+1} x n_l)
            self.fb.resize(n * inp, 0.0);
            linalg::matmul(n, inp, out, &self.d[l], false, bm, false, &mut self.fb, false);
            for ((a, &f), &e) in self.a[l].iter_mut().zip(&self.fb).zip(&self.e[l - 1]) {
                *a += gamma * (f - e);
                if self.cfg.relu && *a < 0.0 {
                    *a = 0.0;
                }
            }
        }
    }
}

impl Rule for PcPositive {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        let n = ws.n;
        let kk = self.dense.len();
        for k in 1..kk {
            let src = &ws.acts[self.dense[k - 1] + 2];
            let len = n * net.shapes[self.dense[k - 1] + 2].len();
            self.a[k].clear();
            self.a[k].extend(src[..len].iter().map(|&v| if self.cfg.relu { v.max(0.0) } else { v }));
        }
        let x = std::mem::take(&mut ws.acts[0]);
        self.trace.clear();
        let e0 = self.errors(net, &x, y, n);
        self.trace.push(e0);
        for _ in 0..self.cfg.steps {
            self.infer(net, n);
            let en = self.errors(net, &x, y, n);
            self.trace.push(en);
        }
        // dF/dW_k = -delta_k^T a_k / N at the relaxed nodes.
        let inv_n = 1.0 / n as f32;
        for k in 0..kk {
            let (w, b, inp, out) = Self::layer(net, self.dense[k]);
            let a_k: &[f32] = if k == 0 { &x[..n * inp] } else { &self.a[k] };
            self.fb.clear();
            self.fb.extend(self.d[k].iter().map(|d| -d * inv_n));
            dense_backward(&self.fb, a_k, n, inp, out, grads, w, b, None);
        }
        ws.acts[0] = x;
        let e_end = *self.trace.last().unwrap();
        StepStats { energy: Some((e0, e_end, self.cfg.steps)), ..stats }
    }

    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        let stats = self.step(s);
        if !stats.loss_sum.is_finite() {
            return stats;
        }
        let (net, _, _, _, grads, _) = s.parts();
        if let Some(opt) = &mut self.b_opt {
            // Kolen-Pollack: B_l and W_l get the same update and the same decay.
            let keep = 1.0 - KP_DECAY * upd.lr;
            opt.begin_step();
            let lr = upd.lr;
            for l in 1..self.dense.len() {
                let (w, ..) = Self::layer(net, self.dense[l]);
                let b = self.b[l - 1];
                upd.local(net, |net| {
                    net.params[w].data.iter_mut().for_each(|v| *v *= keep);
                    net.params[b].data.iter_mut().for_each(|v| *v *= keep);
                    opt.update(l - 1, &mut net.params[b].data, &grads[w], lr);
                });
            }
        }
        upd.apply(net, grads);
        stats
    }

    /// The moments and step count of the feedback's own optimiser (B itself is in the network).
    fn save_state(&self) -> super::RuleState {
        let mut s = super::RuleState::default();
        if let Some(opt) = &self.b_opt {
            super::save_optimizer(&mut s, "feedback_optimizer", opt);
        }
        s
    }

    fn load_state(&mut self, state: &super::RuleState) -> Result<(), String> {
        match &mut self.b_opt {
            Some(opt) => super::load_optimizer(state, "feedback_optimizer", opt),
            None => Ok(()),
        }
    }
}

crate::settings! {
    /// Positive-rate predictive coding's settings (`pc-positive`).
    pub struct PcPositiveSettings {
        /// Inference steps T per batch (Alonso & Neftci's F-MNIST setting: 7).
        pub pc_steps: usize = 7,
        /// State learning rate (theirs: 0.025).
        pub pc_gamma: f32 = 0.025,
        /// Where the hidden layers' error feedback comes from: learned (Kolen-Pollack), random
        /// (fixed) or transpose (B = W, weight transport).
        pub pc_feedback: Feedback = Feedback::Learned,
        /// Clip the hidden rates at zero after every inference step.
        pub pc_relu: bool = true,
    }
    check(s) {
        super::settings::count("pc_steps", s.pc_steps, 100_000)?;
        super::settings::positive("pc_gamma", s.pc_gamma)
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "pc-positive",
    summary: "predictive coding on positive firing rates with one-way synapses: feedback B learned (Kolen-Pollack), fixed random or W^T (MLPs; pc_feedback=learned|random|transpose, pc_relu)",
    paper: "Alonso & Neftci 2021, ICONS",
    reported: "",
    // Alonso & Neftci's F-MNIST setting (784-300-300-10 sigmoid, Adam 1e-3, batch 64, T 7,
    // gamma 0.025). Measured on Fashion-MNIST, 15 epochs, 3 seeds: 88.54 +- 0.23% at batch
    // 64; at batch 16 one seed of three collapsed. On the small digits set batch 64 is too
    // few steps (15% after 8 epochs; batch 16: 94%).
    preset: include_str!("../../presets/pc-positive.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<PcPositiveSettings>(),
    build: |net, cx, rng| {
        let s: PcPositiveSettings = cx.settings()?;
        let c = PcPositiveConfig { steps: s.pc_steps, gamma: s.pc_gamma, feedback: s.pc_feedback, relu: s.pc_relu };
        Ok(Box::new(PcPositive::new(net, c, cx.optim, rng)?))
    },
};
