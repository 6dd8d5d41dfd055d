//! Supervised predictive coding (Whittington & Bogacz 2017; PCX, `pcx/predictive_coding`), with
//! its variants: the fixed-prediction assumption (Millidge et al. 2022) and a nudged output.
//!
//! Value nodes x_k sit at the output of every weight layer (before its nonlinearity); node K is
//! the network's output. Each node is predicted from the one below through the layers between
//! them (activation, pooling, then the next weight layer): mu_k = g_k(x_{k-1}), mu_0 = g_0(input).
//!
//!   energy   F = sum_k 1/2 ||e_k||^2,  e_k = x_k - mu_k            (Gaussian energies; eq. 2)
//!   output   x_K clamped to the target: e_K = y - mu_K, or with the categorical energy
//!            (`--pc-energy ce`, Pinchetti et al. 2022) e_K = onehot(y) - softmax(mu_K);
//!            with a nudge beta < 1 the target is mu_K + beta (y - mu_K)
//!   inference x_k <- x_k - gamma (e_k - J_{k+1}^T e_{k+1})          (T steps, SGD with momentum)
//!   learning  dW_k = -dF/dW_k at the relaxed nodes = -e_k (x) input of W_k  (local)
//!
//! J_{k+1}^T e_{k+1} and dF/dW_k are computed by the network's own backward pass restricted to
//! one block (the chain rule inside a block is local: the activation's derivative and the
//! weight's transpose at that synapse), so the rule runs on MLPs and conv nets alike.
//!
//! Fixed-prediction assumption (`pc-fpa`): predictions and Jacobians stay at their feed-forward
//! values during inference. With gamma = 1 and T >= number of hidden nodes the errors are then
//! exactly backprop's deltas, and the update is exactly BP's gradient (tested).
//!
//! Incremental PC (`ipc`, Salvatori et al. 2024, "A stable, fast, and fully automatic learning
//! algorithm for predictive coding networks"): the weights take an optimiser step at every
//! inference step, from the errors of that step (x and W descend the same energy together),
//! so a batch makes T weight steps and no separate learning phase.
//!
//! Reported per step (`PcStats`): energy at the feed-forward initialisation and after relaxation.
//!
//! # Shapes
//! x_k, mu_k, e_k: N x (size of weight layer k's output).

use super::{forward_with_error, Rule, Step, StepStats, Updater};
use crate::nn::{loss::Loss, Layer, Network, Workspace};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Energy {
    /// 1/2 ||y - mu_K||^2 at the output.
    Gaussian,
    /// Cross-entropy of softmax(mu_K) against the label (a categorical output node).
    Ce,
}

#[derive(Clone, Debug)]
pub struct PcConfig {
    /// Inference steps per batch.
    pub steps: usize,
    /// State learning rate and momentum.
    pub gamma: f32,
    pub momentum: f32,
    /// Hold predictions at their feed-forward values (fixed-prediction assumption).
    pub fixed_prediction: bool,
    pub energy: Energy,
    /// Output target = mu_K + beta (y - mu_K); 1 clamps the output to the label.
    pub beta: f32,
    /// Incremental PC: a weight step (the driver's optimiser) at every inference step, from
    /// the same errors as the state step, instead of one after relaxation.
    pub incremental: bool,
}

impl Default for PcConfig {
    /// PCX's F-MNIST MLP settings: T = 5, state SGD lr 0.026 (here 0.1 per sample with the
    /// batch-mean energy scaled away), momentum 0.1.
    fn default() -> Self {
        PcConfig {
            steps: 5,
            gamma: 0.1,
            momentum: 0.1,
            fixed_prediction: false,
            energy: Energy::Gaussian,
            beta: 1.0,
            incremental: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PcStats {
    pub energy_start: f64,
    pub energy_end: f64,
    pub steps: usize,
}

pub struct PredictiveCoding {
    pub cfg: PcConfig,
    /// Node positions in the activation list: pos[k] = index into ws.acts of node k.
    pos: Vec<usize>,
    x: Vec<Vec<f32>>,
    mu: Vec<Vec<f32>>,
    vel: Vec<Vec<f32>>,
    /// -J^T e of the node above, per hidden node.
    back: Vec<Vec<f32>>,
    errs: Vec<Vec<f32>>,
    pub last: PcStats,
    /// Energies after each inference step of the last batch (for tests and reports).
    pub trace: Vec<f64>,
}

impl PredictiveCoding {
    pub fn new(net: &Network, cfg: PcConfig) -> Result<Self, String> {
        if net.layers.iter().any(|l| matches!(l, Layer::BatchNorm { .. } | Layer::Dropout(_))) {
            return Err("predictive coding runs on networks without batch norm or dropout (their batch statistics and masks would change at every inference step)".into());
        }
        let wl = net.weight_layers();
        if wl.is_empty() {
            return Err("predictive coding needs at least one weight layer".into());
        }
        let l = net.num_layers();
        let mut pos: Vec<usize> = wl[..wl.len() - 1].iter().map(|&w| w + 1).collect();
        pos.push(l);
        let k = pos.len();
        Ok(PredictiveCoding {
            cfg,
            pos,
            x: vec![Vec::new(); k],
            mu: vec![Vec::new(); k],
            vel: vec![Vec::new(); k],
            back: vec![Vec::new(); k],
            errs: vec![Vec::new(); k],
            last: PcStats::default(),
            trace: Vec::new(),
        })
    }

    fn start(&self, k: usize) -> usize {
        if k == 0 {
            0
        } else {
            self.pos[k - 1]
        }
    }

    /// mu_k for every node from the current x (the input feeds node 0).
    fn predict(&mut self, net: &mut Network, ws: &mut Workspace) {
        for k in 0..self.pos.len() {
            let (s, e) = (self.start(k), self.pos[k]);
            if k > 0 {
                let len = self.x[k - 1].len();
                ws.acts[s][..len].copy_from_slice(&self.x[k - 1]);
            }
            net.forward_range(ws, s, e);
            let len = self.mu[k].len();
            self.mu[k].copy_from_slice(&ws.acts[e][..len]);
        }
    }

    /// Errors e_k = x_k - mu_k (hidden) and the output error; returns the energy (batch sum).
    fn errors(&self, errs: &mut [Vec<f32>], y: &[u32], classes: usize) -> f64 {
        let kk = self.pos.len() - 1;
        let mut energy = 0.0f64;
        for k in 0..kk {
            for ((e, x), m) in errs[k].iter_mut().zip(&self.x[k]).zip(&self.mu[k]) {
                *e = x - m;
                energy += 0.5 * (*e as f64) * (*e as f64);
            }
        }
        let mu = &self.mu[kk];
        let e = &mut errs[kk];
        for (s, &label) in y.iter().enumerate() {
            let z = &mu[s * classes..(s + 1) * classes];
            let es = &mut e[s * classes..(s + 1) * classes];
            match self.cfg.energy {
                Energy::Gaussian => {
                    for (j, ev) in es.iter_mut().enumerate() {
                        let t = if j == label as usize { 1.0 } else { 0.0 };
                        *ev = self.cfg.beta * (t - z[j]);
                        energy += 0.5 * (*ev as f64) * (*ev as f64);
                    }
                }
                Energy::Ce => {
                    let mx = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = z.iter().map(|v| (v - mx).exp()).sum();
                    for (j, ev) in es.iter_mut().enumerate() {
                        let p = (z[j] - mx).exp() / sum;
                        let t = if j == label as usize { 1.0 } else { 0.0 };
                        *ev = self.cfg.beta * (t - p);
                    }
                    energy += (sum.ln() + mx - z[label as usize]) as f64;
                }
            }
        }
        energy
    }
}

impl PredictiveCoding {
    /// Feed-forward initialisation of every node; returns the driver's loss stats.
    fn init_nodes(&mut self, net: &mut Network, ws: &mut Workspace, y: &[u32], loss: Loss, rng: &mut Rng) -> StepStats {
        let stats = forward_with_error(net, ws, y, loss, rng);
        let n = ws.n;
        for k in 0..self.pos.len() {
            let len = n * net.shapes[self.pos[k]].len();
            let src = &ws.acts[self.pos[k]][..len];
            for buf in [&mut self.x[k], &mut self.mu[k]] {
                buf.clear();
                buf.extend_from_slice(src);
            }
            for buf in [&mut self.vel[k], &mut self.back[k], &mut self.errs[k]] {
                buf.clear();
                buf.resize(len, 0.0);
            }
        }
        self.trace.clear();
        stats
    }

    /// Errors at the current nodes (predictions refreshed unless they are fixed); the energy.
    fn refresh(&mut self, net: &mut Network, ws: &mut Workspace, y: &[u32], errs: &mut [Vec<f32>]) -> f64 {
        if !self.cfg.fixed_prediction {
            self.predict(net, ws);
        }
        self.errors(errs, y, net.output_len())
    }

    /// -J^T e of each node's block, top down (ws.grads[pos] is dF/dmu = -e); leaves it in `back`.
    fn backproject(&mut self, net: &mut Network, ws: &mut Workspace, errs: &[Vec<f32>], grads: &mut [Vec<f32>]) {
        for k in (1..self.pos.len()).rev() {
            let (s, e) = (self.start(k), self.pos[k]);
            for (g, ev) in ws.grads[e].iter_mut().zip(&errs[k]) {
                *g = -ev;
            }
            net.backward(ws, grads, s, e, None, true);
            let len = self.back[k - 1].len();
            self.back[k - 1].copy_from_slice(&ws.grads[s][..len]);
        }
    }

    /// One state step on every hidden node (SGD with momentum on the energy).
    fn move_nodes(&mut self, errs: &[Vec<f32>]) {
        let (gamma, mom) = (self.cfg.gamma, self.cfg.momentum);
        for k in 0..self.pos.len() - 1 {
            for (((x, v), ev), b) in self.x[k].iter_mut().zip(&mut self.vel[k]).zip(&errs[k]).zip(&self.back[k]) {
                *v = mom * *v + (ev + b);
                *x -= gamma * *v;
            }
        }
    }

    /// dF/dW of every block at the current nodes and errors, batch mean, into `grads`.
    fn weight_grads(&self, net: &mut Network, ws: &mut Workspace, errs: &[Vec<f32>], grads: &mut [Vec<f32>]) {
        let inv_n = 1.0 / ws.n as f32;
        for k in 0..self.pos.len() {
            let (s, e) = (self.start(k), self.pos[k]);
            for (g, ev) in ws.grads[e].iter_mut().zip(&errs[k]) {
                *g = -ev * inv_n;
            }
            net.backward(ws, grads, s, e, None, false);
        }
    }
}

impl Rule for PredictiveCoding {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = self.init_nodes(net, ws, y, loss, rng);
        let mut errs = std::mem::take(&mut self.errs);
        let e0 = self.errors(&mut errs, y, net.output_len());
        for _ in 0..self.cfg.steps {
            let energy = self.refresh(net, ws, y, &mut errs);
            self.trace.push(energy);
            self.backproject(net, ws, &errs, grads);
            self.move_nodes(&errs);
        }
        // Weight update at the relaxed nodes.
        let e_end = self.refresh(net, ws, y, &mut errs);
        self.trace.push(e_end);
        self.weight_grads(net, ws, &errs, grads);
        self.errs = errs;
        self.last = PcStats { energy_start: e0, energy_end: e_end, steps: self.cfg.steps };
        StepStats { energy: Some((e0, e_end, self.cfg.steps)), ..stats }
    }

    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        if !self.cfg.incremental {
            return super::step_then_apply(self, s, upd);
        }
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = self.init_nodes(net, ws, y, loss, rng);
        if !stats.loss_sum.is_finite() {
            return stats;
        }
        let mut errs = std::mem::take(&mut self.errs);
        let e0 = self.errors(&mut errs, y, net.output_len());
        for _ in 0..self.cfg.steps {
            let energy = self.refresh(net, ws, y, &mut errs);
            self.trace.push(energy);
            // Both gradients from the same errors, then both steps.
            self.backproject(net, ws, &errs, grads);
            self.weight_grads(net, ws, &errs, grads);
            upd.apply(net, grads);
            self.move_nodes(&errs);
        }
        let e_end = self.refresh(net, ws, y, &mut errs);
        self.trace.push(e_end);
        self.errs = errs;
        self.last = PcStats { energy_start: e0, energy_end: e_end, steps: self.cfg.steps };
        StepStats { energy: Some((e0, e_end, self.cfg.steps)), ..stats }
    }
}

crate::settings! {
    /// Predictive coding's settings (`pc`, `ipc`, `pc-fpa`).
    pub struct PcSettings {
        /// Inference steps T per batch (value-node relaxation; iPC: weight steps per batch).
        pub pc_steps: usize = 5,
        /// State learning rate per sample (PCX's F-MNIST setting: 0.1).
        pub pc_gamma: f32 = 0.1,
        /// Momentum of the state updates, in [0, 1).
        pub pc_momentum: f32 = 0.1,
        /// Output energy: gaussian (output clamped to the one-hot label) or ce (categorical node).
        pub pc_energy: Energy = Energy::Gaussian,
    }
    check(s) {
        use super::settings::{count, in_unit, positive};
        count("pc_steps", s.pc_steps, 100_000)?;
        positive("pc_gamma", s.pc_gamma)?;
        in_unit("pc_momentum", s.pc_momentum)
    }
}

fn build_pc(
    net: &Network,
    cx: &super::BuildContext,
    fixed_prediction: bool,
    incremental: bool,
) -> Result<Box<dyn super::Rule>, String> {
    let s: PcSettings = cx.settings()?;
    let c = PcConfig {
        steps: s.pc_steps,
        gamma: s.pc_gamma,
        momentum: s.pc_momentum,
        fixed_prediction,
        energy: s.pc_energy,
        beta: 1.0,
        incremental,
    };
    Ok(Box::new(PredictiveCoding::new(net, c)?))
}

pub static PC: super::RuleEntry = super::RuleEntry {
    name: "pc",
    summary: "predictive coding: value nodes relax on a local energy (T steps), then local weight updates (pc_steps, pc_gamma, pc_energy gaussian|ce)",
    paper: "Whittington & Bogacz 2017, Neural Comput.; Pinchetti et al. 2022 (ce energy)",
    preset: "",
    settings: super::SettingsKind::of::<PcSettings>(),
    build: |net, cx, _| build_pc(net, cx, false, false),
};

pub static IPC: super::RuleEntry = super::RuleEntry {
    name: "ipc",
    summary:
        "incremental predictive coding: a weight step at every inference step (T weight steps per batch, pc_steps)",
    paper: "Salvatori et al. 2024, ICLR (iPC)",
    // T weight steps per batch: a small Adam step (PCX's AdamW setting).
    preset: "optimizer = 'adamw'\nlr = 3e-4\nschedule = 'constant'",
    settings: super::SettingsKind::of::<PcSettings>(),
    build: |net, cx, _| build_pc(net, cx, false, true),
};

pub static PC_FPA: super::RuleEntry = super::RuleEntry {
    name: "pc-fpa",
    summary: "predictive coding with the fixed-prediction assumption: equals backprop's gradient at equilibrium",
    paper: "Millidge, Tschantz & Buckley 2022, Neural Comput.",
    preset: "",
    settings: super::SettingsKind::of::<PcSettings>(),
    build: |net, cx, _| build_pc(net, cx, true, false),
};
