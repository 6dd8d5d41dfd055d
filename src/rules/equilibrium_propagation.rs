//! Equilibrium propagation (Scellier & Bengio 2017, Front. Comput. Neurosci.;
//! `bscellier/Towards-a-Biologically-Plausible-Backprop`) and contrastive Hebbian learning.
//!
//! A layered Hopfield-like network with symmetric weights: the MLP's dense layers W_l (n_l x
//! n_{l-1}) couple states s_{l-1} and s_l both ways; the input s_0 = x is clamped (used as is,
//! standardised), rho = hard sigmoid clip(s, 0, 1) on every other layer (the network's own
//! activation layers are not used).
//!
//!   E(s) = 1/2 sum_l ||rho(s_l)||^2 - sum_l b_l . rho(s_l) - sum_l rho(s_l) . W_l rho(s_{l-1})   (eq. 1)
//!   C    = ||s_L - onehot(y)||^2,   F = E + beta C
//!   dynamics  s <- clip(s - eps dF/ds, 0, 1),  dE/ds_l = rho'(s_l) (rho(s_l) - b_l - W_l rho(s_{l-1}) - W_{l+1}^T rho(s_{l+1}))
//!   free phase: from the feed-forward pass (s_l = rho(W_l s_{l-1} + b_l)), `free_steps` steps;
//!   nudged phase: from the free fixed point, `nudged_steps` steps with beta (random sign);
//!   update (eq. 6): dW_l = (1/beta) (rho(s^b_l) rho(s^b_{l-1})^T - rho(s^0_l) rho(s^0_{l-1})^T) / B,
//!   db_l likewise; the optimiser's learning rate plays the paper's alpha.
//!
//! Contrastive Hebbian learning (`chl`, Movellan 1991): the second phase clamps the output to the
//! target instead of nudging it, and the update is the plain contrast (no 1/beta).
//!
//! Prediction is the free phase's output (`Prediction::Own`, `predict`), not the feed-forward pass.
//! Deviation from the reference code: no persistent per-example states (the free phase starts
//! from the feed-forward pass instead), so it uses more free steps (default 40, paper 20).
//!
//! Update order (`ep_order`): `sequential` (the default, kept for the existing records) updates
//! the layers one after another within a step, bottom to top, each from the states of the layers
//! below as already updated in that step (Gauss-Seidel); `synchronous` updates every layer from
//! the states at the start of the step (Jacobi), as the reference code's relaxation does.
//!
//! Symmetric nudging (`--set ep_symmetric=true`, Laborieux et al. 2021): a second nudged phase at
//! -beta from the free fixed point, and the contrast between the +beta and -beta phases over
//! 2 beta (the mean of the two one-sided estimates; tested). Its O(beta^2) bias holds where the
//! equilibrium is smooth in beta; with hard-sigmoid states at their bounds it need not help.
//!
//! # Shapes
//! s_l: N x n_l; W_l: n_l x n_{l-1}.

use super::{Prediction, Rule, Step, StepStats};
use crate::linalg;
use crate::nn::{Layer, Network, Workspace};

#[derive(Clone, Debug)]
pub struct EpConfig {
    pub free_steps: usize,
    pub nudged_steps: usize,
    pub eps: f32,
    pub beta: f32,
    pub random_sign: bool,
    /// Symmetric nudging (Laborieux et al. 2021): two nudged phases at +beta and -beta, the
    /// contrast between them over 2 beta (bias O(beta^2) instead of O(beta)).
    pub symmetric: bool,
    /// Contrastive Hebbian learning: clamp the output in the second phase.
    pub clamped: bool,
    pub order: Order,
}

/// The order of the layers' updates within one relaxation step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Bottom to top, each layer from the states below as already updated (Gauss-Seidel).
    Sequential,
    /// Every layer from the states at the start of the step (Jacobi; the reference's).
    Synchronous,
}

impl Default for EpConfig {
    fn default() -> Self {
        EpConfig {
            free_steps: 40,
            nudged_steps: 4,
            eps: 0.5,
            beta: 0.5,
            random_sign: true,
            symmetric: false,
            clamped: false,
            order: Order::Sequential,
        }
    }
}

pub struct EquilibriumProp {
    pub cfg: EpConfig,
    /// (weight param, bias param, n_out, n_in) per dense layer.
    layers: Vec<(usize, usize, usize, usize)>,
    free: Vec<Vec<f32>>,
    nudged: Vec<Vec<f32>>,
    /// Symmetric nudging: the +beta phase's states while the -beta phase relaxes.
    plus: Vec<Vec<f32>>,
    drive: Vec<f32>,
    /// Synchronous order: the states at the start of the step.
    prev: Vec<Vec<f32>>,
    /// The input drive W_1 x + b_1, constant over a phase.
    input_drive: Vec<f32>,
    xbuf: Vec<f32>,
    tmp: Vec<f32>,
}

#[inline]
fn rho(s: f32) -> f32 {
    s.clamp(0.0, 1.0)
}

impl EquilibriumProp {
    pub fn new(net: &Network, cfg: EpConfig) -> Result<Self, String> {
        let mut layers = Vec::new();
        for l in &net.layers {
            match l {
                Layer::Dense { w, b: Some(b), inp, out } => layers.push((*w, *b, *out, *inp)),
                Layer::Act(_) => {}
                _ => {
                    return Err(
                        "equilibrium propagation runs on MLPs (dense layers with biases; activations are replaced by rho = clip(0, 1))".into(),
                    )
                }
            }
        }
        if layers.is_empty() {
            return Err("equilibrium propagation needs at least one dense layer".into());
        }
        let k = layers.len();
        Ok(EquilibriumProp {
            cfg,
            layers,
            free: vec![Vec::new(); k],
            nudged: vec![Vec::new(); k],
            plus: vec![Vec::new(); k],
            drive: Vec::new(),
            prev: vec![Vec::new(); k],
            input_drive: Vec::new(),
            xbuf: Vec::new(),
            tmp: Vec::new(),
        })
    }

    /// Feed-forward initialisation of the states from input `x` (n samples), and the input drive.
    fn init_states(&mut self, net: &Network, n: usize) {
        let x = &self.xbuf;
        let (w, b, out, inp) = self.layers[0];
        self.input_drive.resize(n * out, 0.0);
        for r in 0..n {
            self.input_drive[r * out..(r + 1) * out].copy_from_slice(&net.params[b].data);
        }
        linalg::matmul(n, out, inp, &x[..n * inp], false, &net.params[w].data, true, &mut self.input_drive, true);
        for l in 0..self.layers.len() {
            let (w, b, out, inp) = self.layers[l];
            let s = &mut self.free[l];
            s.resize(n * out, 0.0);
            if l == 0 {
                s.copy_from_slice(&self.input_drive);
            } else {
                for r in 0..n {
                    s[r * out..(r + 1) * out].copy_from_slice(&net.params[b].data);
                }
                // states below are already in [0, 1]: rho(s) = s
                let (lo, hi) = self.free.split_at_mut(l);
                linalg::matmul(n, out, inp, &lo[l - 1], false, &net.params[w].data, true, &mut hi[0][..n * out], true);
            }
            self.free[l].iter_mut().for_each(|v| *v = rho(*v));
        }
    }

    /// `steps` of s <- clip(s - eps dF/ds) on `states`; `beta` nudges the output toward y;
    /// `clamp` fixes the output at the target.
    fn relax(
        &mut self,
        net: &Network,
        states_free: bool,
        y: Option<&[u32]>,
        beta: f32,
        clamp: bool,
        steps: usize,
        n: usize,
    ) {
        let k = self.layers.len();
        let eps = self.cfg.eps;
        let mut states = std::mem::take(if states_free { &mut self.free } else { &mut self.nudged });
        let classes = self.layers[k - 1].2;
        if clamp {
            let y = y.expect("clamped phase needs labels");
            let out = &mut states[k - 1];
            out.fill(0.0);
            for (r, &c) in y.iter().enumerate() {
                out[r * classes + c as usize] = 1.0;
            }
        }
        let sync = self.cfg.order == Order::Synchronous;
        for _ in 0..steps {
            if sync {
                self.prev.clone_from(&states);
            }
            for l in 0..k {
                if clamp && l == k - 1 {
                    continue;
                }
                let (_, b, out, _) = self.layers[l];
                self.drive.resize(n * out, 0.0);
                // bottom-up drive: W_l rho(s_{l-1}) + b_l (the input drive for l = 0)
                if l == 0 {
                    self.drive.copy_from_slice(&self.input_drive);
                } else {
                    let (w, _, _, inp) = self.layers[l];
                    for r in 0..n {
                        self.drive[r * out..(r + 1) * out].copy_from_slice(&net.params[b].data);
                    }
                    // states hold values in [0, 1] after every step, so rho(s) = s
                    linalg::matmul(
                        n,
                        out,
                        inp,
                        if sync { &self.prev[l - 1] } else { &states[l - 1] },
                        false,
                        &net.params[w].data,
                        true,
                        &mut self.drive,
                        true,
                    );
                }
                // top-down drive: W_{l+1}^T rho(s_{l+1})
                if l + 1 < k {
                    let (w2, _, out2, _) = self.layers[l + 1];
                    linalg::matmul(
                        n,
                        out,
                        out2,
                        if sync { &self.prev[l + 1] } else { &states[l + 1] },
                        false,
                        &net.params[w2].data,
                        false,
                        &mut self.drive,
                        true,
                    );
                }
                let s = &mut states[l];
                for (j, (sv, d)) in s.iter_mut().zip(&self.drive).enumerate() {
                    // dE/ds = rho'(s) (rho(s) - drive), rho' = 1 on [0, 1]
                    let mut g = *sv - d;
                    if l == k - 1 && beta != 0.0 {
                        let (r, c) = (j / classes, j % classes);
                        let t = if c == y.unwrap()[r] as usize { 1.0 } else { 0.0 };
                        g += beta * 2.0 * (*sv - t);
                    }
                    *sv = rho(*sv - eps * g);
                }
            }
        }
        if states_free {
            self.free = states;
        } else {
            self.nudged = states;
        }
    }
}

impl Rule for EquilibriumProp {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let n = ws.n;
        self.xbuf.clear();
        self.xbuf.extend_from_slice(&ws.acts[0][..n * net.input_shape().len()]);
        self.init_states(net, n);
        let free_steps = self.cfg.free_steps;
        self.relax(net, true, None, 0.0, false, free_steps, n);
        // Loss and accuracy of the free phase's prediction (what the rule would answer).
        let k = self.layers.len();
        let classes = self.layers[k - 1].2;
        let (loss_sum, correct) = loss.eval(&self.free[k - 1], y, classes, None);
        let sign = if self.cfg.random_sign && rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        let beta = sign * self.cfg.beta;
        for l in 0..k {
            self.nudged[l].clear();
            self.nudged[l].extend_from_slice(&self.free[l]);
        }
        let (clamp, nudge) = if self.cfg.clamped { (true, 0.0) } else { (false, beta) };
        let steps = self.cfg.nudged_steps;
        self.relax(net, false, Some(y), nudge, clamp, steps, n);
        // Gradient convention: g = -(contrast) / (beta B), so that w -= lr g follows eq. 6.
        let mut scale = if self.cfg.clamped { -1.0 / n as f32 } else { -1.0 / (beta * n as f32) };
        if self.cfg.symmetric && !self.cfg.clamped {
            // Second nudged phase at -beta from the free fixed point; the contrast is then
            // (+beta phase) - (-beta phase) over 2 beta: `free` holds the -beta states below.
            std::mem::swap(&mut self.plus, &mut self.nudged);
            for (m, f) in self.nudged.iter_mut().zip(&self.free) {
                m.clear();
                m.extend_from_slice(f);
            }
            self.relax(net, false, Some(y), -beta, false, steps, n);
            // free <- the -beta states, nudged <- the +beta states (buffers rotate, none allocated)
            std::mem::swap(&mut self.free, &mut self.nudged);
            std::mem::swap(&mut self.nudged, &mut self.plus);
            scale = -1.0 / (2.0 * beta * n as f32);
        }
        for l in 0..k {
            let (w, b, out, inp) = self.layers[l];
            let (pre_n, pre_f): (&[f32], &[f32]) =
                if l == 0 { (&self.xbuf, &self.xbuf) } else { (&self.nudged[l - 1], &self.free[l - 1]) };
            let gw = &mut grads[w];
            linalg::matmul(out, inp, n, &self.nudged[l], true, pre_n, false, gw, false);
            self.tmp.resize(out * inp, 0.0);
            linalg::matmul(out, inp, n, &self.free[l], true, pre_f, false, &mut self.tmp, false);
            for (g, f) in gw.iter_mut().zip(&self.tmp) {
                *g = (*g - f) * scale;
            }
            let gb = &mut grads[b];
            gb.fill(0.0);
            for r in 0..n {
                for j in 0..out {
                    gb[j] += (self.nudged[l][r * out + j] - self.free[l][r * out + j]) * scale;
                }
            }
        }
        StepStats { loss_sum, correct, energy: None }
    }

    /// The free phase's fixed point is the answer.
    fn prediction(&self) -> Prediction {
        Prediction::Own
    }

    fn predict(&mut self, net: &mut Network, ws: &mut Workspace) {
        let n = ws.n;
        self.xbuf.clear();
        self.xbuf.extend_from_slice(&ws.acts[0][..n * net.input_shape().len()]);
        self.init_states(net, n);
        let steps = self.cfg.free_steps;
        self.relax(net, true, None, 0.0, false, steps, n);
        let k = self.layers.len();
        let out = ws.acts.last_mut().unwrap();
        let len = self.free[k - 1].len();
        out[..len].copy_from_slice(&self.free[k - 1]);
    }
}

crate::settings! {
    /// Equilibrium propagation's settings (`ep`).
    pub struct EpSettings {
        /// Relaxation steps of the free phase.
        pub ep_free_steps: usize = 40,
        /// Relaxation steps of the nudged phase.
        pub ep_nudged_steps: usize = 4,
        /// Step size of the relaxation (Euler step on the state dynamics).
        pub ep_eps: f32 = 0.5,
        /// Nudge strength beta (> 0; its sign is drawn at random every batch).
        pub ep_beta: f32 = 0.5,
        /// Symmetric nudging: a +beta and a -beta phase, contrasted over 2 beta.
        pub ep_symmetric: bool = false,
        /// Layer update order within a relaxation step: sequential (bottom to top, each from the
        /// layers below as already updated) or synchronous (all from the step's start, as the
        /// reference code).
        pub ep_order: Order = Order::Sequential,
    }
    check(s) {
        use super::settings::{count, positive};
        count("ep_free_steps", s.ep_free_steps, 1_000_000)?;
        count("ep_nudged_steps", s.ep_nudged_steps, 1_000_000)?;
        positive("ep_eps", s.ep_eps)?;
        positive("ep_beta", s.ep_beta)
    }
}

crate::settings! {
    /// Contrastive Hebbian learning's settings (`chl`): EP's relaxation with the output clamped
    /// in the second phase (no beta).
    pub struct ChlSettings {
        /// Relaxation steps of the free phase.
        pub ep_free_steps: usize = 40,
        /// Relaxation steps of the clamped phase.
        pub ep_nudged_steps: usize = 4,
        /// Step size of the relaxation.
        pub ep_eps: f32 = 0.5,
        /// Layer update order within a relaxation step (as `ep`'s).
        pub ep_order: Order = Order::Sequential,
    }
    check(s) {
        use super::settings::{count, positive};
        count("ep_free_steps", s.ep_free_steps, 1_000_000)?;
        count("ep_nudged_steps", s.ep_nudged_steps, 1_000_000)?;
        positive("ep_eps", s.ep_eps)
    }
}

pub static EP: super::RuleEntry = super::RuleEntry {
    name: "ep",
    summary: "equilibrium propagation: free and beta-nudged relaxations of a symmetric energy network, contrastive local update (MLPs; ep_beta, ep_free_steps)",
    paper: "Scellier & Bengio 2017, Front. Comput. Neurosci.",
    reported: "",
    preset: include_str!("../../presets/ep.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<EpSettings>(),
    build: |net, cx, _| {
        let s: EpSettings = cx.settings()?;
        let c = EpConfig {
            free_steps: s.ep_free_steps,
            nudged_steps: s.ep_nudged_steps,
            eps: s.ep_eps,
            beta: s.ep_beta,
            random_sign: true,
            symmetric: s.ep_symmetric,
            clamped: false,
            order: s.ep_order,
        };
        Ok(Box::new(EquilibriumProp::new(net, c)?))
    },
};

pub static CHL: super::RuleEntry = super::RuleEntry {
    name: "chl",
    summary: "contrastive Hebbian learning: free phase vs output-clamped phase, contrastive local update (MLPs)",
    paper: "Movellan 1991; Xie & Seung 2003",
    reported: "",
    preset: include_str!("../../presets/chl.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<ChlSettings>(),
    build: |net, cx, _| {
        let s: ChlSettings = cx.settings()?;
        let c = EpConfig {
            free_steps: s.ep_free_steps,
            nudged_steps: s.ep_nudged_steps,
            eps: s.ep_eps,
            // Unused with the output clamped (the sign draw still happens: same random stream).
            beta: 0.5,
            random_sign: true,
            symmetric: false,
            clamped: true,
            order: s.ep_order,
        };
        Ok(Box::new(EquilibriumProp::new(net, c)?))
    },
};
