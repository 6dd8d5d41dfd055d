//! Optimisers and learning-rate schedules. An optimiser applies an update (a gradient, or any
//! rule's gradient-like signal: `w -= lr * f(update)`) to a parameter; it knows nothing of rules.
//!
//! Formulas follow PyTorch's `torch.optim` exactly (so results can be checked against it):
//! - SGD: g += wd w; b = mu b + g (b = g at the first step); g = g + mu b (Nesterov) or b; w -= lr g.
//! - Adam: g += wd w; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//!   w -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
//! - AdamW: w -= lr wd w, then Adam without weight decay (Loshchilov & Hutter 2019).
//! - RMSprop: g += wd w; v = b2 v + (1-b2) g^2 (b2 is PyTorch's alpha: set beta2 = 0.99 for its
//!   default); b = mu b + g / (sqrt(v) + eps), w -= lr b (mu = momentum; without it
//!   w -= lr g / (sqrt(v) + eps)).
//!
//! Schedules give the learning rate of an epoch (stepped once per epoch, as PyTorch's):
//! constant; step (x gamma every `step_size` epochs); multistep (x gamma at each milestone);
//! cosine (annealed from lr to 0 over the run's epochs).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Optimiser state for a list of parameter tensors.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub cfg: OptimConfig,
    /// First-moment (momentum / Adam m) and second-moment (Adam v) buffers per tensor.
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: u64,
}

const CH: usize = 4096;

impl Optimizer {
    pub fn new(cfg: OptimConfig, sizes: &[usize]) -> Self {
        let m = sizes.iter().map(|&n| vec![0.0; n]).collect();
        let v = match cfg.kind {
            OptimizerKind::Sgd => sizes.iter().map(|_| Vec::new()).collect(),
            _ => sizes.iter().map(|&n| vec![0.0; n]).collect(),
        };
        Optimizer { cfg, m, v, t: 0 }
    }

    /// Count one optimisation step (call once per mini-batch, before the `update`s of that step).
    pub fn begin_step(&mut self) {
        self.t = self.t.saturating_add(1);
    }

    /// Optimisation steps counted so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moments (first, second; empty where the optimiser keeps none) and the step count, for
    /// checkpoints.
    pub fn moments(&self) -> (&[Vec<f32>], &[Vec<f32>], u64) {
        (&self.m, &self.v, self.t)
    }

    /// Restore what `moments` returned (tensor `i` of each list by its index; sizes must match).
    pub fn set_moments(&mut self, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>, t: u64) -> Result<(), String> {
        let same =
            |a: &[Vec<f32>], b: &[Vec<f32>]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.len() == y.len());
        if !same(&self.m, &m) || !same(&self.v, &v) {
            return Err("optimiser moments do not match the network's parameters".into());
        }
        (self.m, self.v, self.t) = (m, v, t);
        Ok(())
    }

    /// Apply the update `g` to tensor `idx` (`w`) at learning rate `lr`.
    pub fn update(&mut self, idx: usize, w: &mut [f32], g: &[f32], lr: f32) {
        let c = self.cfg;
        let t = self.t.max(1);
        let first = t == 1;
        let m = &mut self.m[idx];
        let v = &mut self.v[idx];
        let par = crate::linalg::par_elementwise(w.len());
        match c.kind {
            OptimizerKind::Sgd => {
                let kernel = |w: &mut [f32], g: &[f32], m: &mut [f32]| {
                    sgd_kernel(w, g, m, lr, c.weight_decay, c.momentum, first, c.nesterov)
                };
                if par {
                    w.par_chunks_mut(CH)
                        .zip(g.par_chunks(CH))
                        .zip(m.par_chunks_mut(CH))
                        .for_each(|((w, g), m)| kernel(w, g, m));
                } else {
                    kernel(w, g, m);
                }
            }
            OptimizerKind::Rmsprop => {
                let kernel = |w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
                    for j in 0..w.len() {
                        let d = g[j] + c.weight_decay * w[j];
                        v[j] = c.beta2 * v[j] + (1.0 - c.beta2) * d * d;
                        let step = d / (v[j].sqrt() + c.eps);
                        if c.momentum != 0.0 {
                            m[j] = c.momentum * m[j] + step;
                            w[j] -= lr * m[j];
                        } else {
                            w[j] -= lr * step;
                        }
                    }
                };
                with_moments(par, w, g, m, v, kernel);
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                let decoupled = c.kind == OptimizerKind::Adamw;
                let bc1 = 1.0 - c.beta1.powi(t as i32);
                let bc2 = 1.0 - c.beta2.powi(t as i32);
                // Constants in locals and zipped slices (no bounds checks): the loop vectorises,
                // each lane computing exactly the scalar expression.
                let (wd, b1, b2, eps) = (c.weight_decay, c.beta1, c.beta2, c.eps);
                let step = |w: &mut f32, d: f32, m: &mut f32, v: &mut f32| {
                    *m = b1 * *m + (1.0 - b1) * d;
                    *v = b2 * *v + (1.0 - b2) * d * d;
                    *w -= lr * (*m / bc1) / ((*v / bc2).sqrt() + eps);
                };
                let kernel = |w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
                    let it = w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
                    if decoupled {
                        for (((w, &g), m), v) in it {
                            *w -= lr * wd * *w;
                            step(w, g, m, v);
                        }
                    } else {
                        for (((w, &g), m), v) in it {
                            step(w, g + wd * *w, m, v);
                        }
                    }
                };
                with_moments(par, w, g, m, v, kernel);
            }
        }
    }
}

/// Run `kernel` on (weights, update, first moment, second moment), in parallel chunks if `par`.
fn with_moments(
    par: bool,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    kernel: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
) {
    if par {
        w.par_chunks_mut(CH)
            .zip(g.par_chunks(CH))
            .zip(m.par_chunks_mut(CH))
            .zip(v.par_chunks_mut(CH))
            .for_each(|(((w, g), m), v)| kernel(w, g, m, v));
    } else {
        kernel(w, g, m, v);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    Step,
    Multistep,
    Cosine,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    /// Multiplier for step and multistep.
    pub gamma: f32,
    /// Epochs between decays (step).
    pub step_size: usize,
    /// Epochs at which to decay (multistep).
    pub milestones: Vec<usize>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { kind: ScheduleKind::Constant, gamma: 0.1, step_size: 30, milestones: vec![] }
    }
}

impl Schedule {
    /// Learning rate for 0-based `epoch` of a run of `epochs`.
    pub fn lr(&self, base: f32, epoch: usize, epochs: usize) -> f32 {
        match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Step => base * self.gamma.powi((epoch / self.step_size.max(1)) as i32),
            ScheduleKind::Multistep => {
                base * self.gamma.powi(self.milestones.iter().filter(|&&m| m <= epoch).count() as i32)
            }
            ScheduleKind::Cosine => {
                let t = epoch as f32 / epochs.max(1) as f32;
                0.5 * base * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: OptimConfig, steps: usize) -> Vec<f32> {
        // Minimise nothing in particular: feed fixed gradients and compare with PyTorch numbers.
        let mut w = vec![1.0f32, -2.0];
        let mut o = Optimizer::new(cfg, &[2]);
        for s in 0..steps {
            o.begin_step();
            let g = [0.5 + s as f32, -1.0];
            o.update(0, &mut w, &g, cfg.lr);
        }
        w
    }

    #[test]
    fn sgd_momentum_nesterov_by_hand() {
        // w0 = 1, g = 0.5 then 1.5, lr 0.1, mu 0.9, wd 0:
        // step 1: b = 0.5, w = 1 - 0.05 = 0.95; step 2: b = 0.45 + 1.5 = 1.95, w = 0.95 - 0.195 = 0.755.
        let cfg = OptimConfig { lr: 0.1, momentum: 0.9, ..Default::default() };
        assert!((run(cfg, 2)[0] - 0.755).abs() < 1e-6);
        // Nesterov: step 1: d = 0.5 + 0.9*0.5 = 0.95, w = 0.905; step 2: b = 1.95, d = 1.5 + 1.755 = 3.255.
        let cfg = OptimConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() };
        assert!((run(cfg, 2)[0] - (0.905 - 0.3255)).abs() < 1e-6);
        // Weight decay 0.1, no momentum: w = 1 - 0.1 (0.5 + 0.1) = 0.94.
        let cfg = OptimConfig { lr: 0.1, weight_decay: 0.1, ..Default::default() };
        assert!((run(cfg, 1)[0] - 0.94).abs() < 1e-6);
    }

    #[test]
    fn adam_and_adamw_match_pytorch() {
        // torch.optim.Adam([w], lr=0.1), w0 = [1, -2], grads [0.5, -1] then [1.5, -1]:
        // the first step moves each weight by exactly lr against the gradient's sign.
        let cfg = OptimConfig { kind: OptimizerKind::Adam, lr: 0.1, ..Default::default() };
        let w = run(cfg, 1);
        assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] + 1.9).abs() < 1e-6);
        // Second step, by hand: m = 0.05*0.9 + 0.15 = 0.195, v = 0.999*0.00025 + 0.00225 = 0.00249975
        // mhat = 0.195/0.19 = 1.026316, vhat = 0.00249975/0.001999 = 1.250500, step = 0.1*1.026316/1.118257
        let w = run(cfg, 2);
        assert!((w[0] - (0.9 - 0.1 * 1.026_316 / 1.250_500f32.sqrt())).abs() < 1e-5, "{}", w[0]);
        // AdamW(lr 0.1, wd 0.5): first step w = 1 - 0.1*0.5*1 - 0.1 = 0.85.
        let cfg = OptimConfig { kind: OptimizerKind::Adamw, lr: 0.1, weight_decay: 0.5, ..Default::default() };
        assert!((run(cfg, 1)[0] - 0.85).abs() < 1e-6);
    }

    #[test]
    fn rmsprop_matches_pytorch_by_hand() {
        // torch.optim.RMSprop([w], lr=0.1, alpha=0.99), w0 = 1, grads 0.5 then 1.5:
        // v1 = 0.01 * 0.25 = 0.0025, step 0.5 / 0.05 = 10: w = 0;
        // v2 = 0.99 * 0.0025 + 0.01 * 2.25 = 0.024975, step 1.5 / sqrt(v2) = 9.49158: w = -0.949158.
        let cfg = OptimConfig { kind: OptimizerKind::Rmsprop, lr: 0.1, beta2: 0.99, ..Default::default() };
        assert!(run(cfg, 1)[0].abs() < 1e-5, "{}", run(cfg, 1)[0]);
        assert!((run(cfg, 2)[0] + 0.949_158).abs() < 1e-4, "{}", run(cfg, 2)[0]);
        // With momentum 0.9 the buffer holds 10, then 0.9 * 10 + 9.49158: w = -1.849158.
        let cfg = OptimConfig { momentum: 0.9, ..cfg };
        assert!((run(cfg, 2)[0] + 1.849_158).abs() < 1e-4, "{}", run(cfg, 2)[0]);
    }

    #[test]
    fn schedules() {
        let s = Schedule { kind: ScheduleKind::Step, gamma: 0.5, step_size: 2, milestones: vec![] };
        assert_eq!([s.lr(1.0, 0, 9), s.lr(1.0, 1, 9), s.lr(1.0, 2, 9), s.lr(1.0, 5, 9)], [1.0, 1.0, 0.5, 0.25]);
        let s = Schedule { kind: ScheduleKind::Multistep, gamma: 0.1, step_size: 0, milestones: vec![50, 75] };
        assert!((s.lr(1.0, 74, 100) - 0.1).abs() < 1e-7 && (s.lr(1.0, 75, 100) - 0.01).abs() < 1e-7);
        let s = Schedule { kind: ScheduleKind::Cosine, ..Default::default() };
        assert_eq!(s.lr(2.0, 0, 10), 2.0);
        assert!((s.lr(2.0, 5, 10) - 1.0).abs() < 1e-6);
    }
}

crate::wide_fn! {
    /// SGD's step on one slice: d = g + wd w; with momentum m = d (first step) or mom m + d, the
    /// step m (Nesterov: d + mom m); w -= lr step. Zipped slices and the branches outside the
    /// loops, so each loop vectorises, every lane computing the scalar expression.
    fn sgd_kernel(w: &mut [f32], g: &[f32], m: &mut [f32], lr: f32, wd: f32, mom: f32, first: bool, nesterov: bool) {
        let it = w.iter_mut().zip(g).zip(m.iter_mut());
        match (mom != 0.0, first, nesterov) {
            (false, ..) => it.for_each(|((w, &g), _)| *w -= lr * (g + wd * *w)),
            (true, true, false) => it.for_each(|((w, &g), m)| {
                *m = g + wd * *w;
                *w -= lr * *m;
            }),
            (true, false, false) => it.for_each(|((w, &g), m)| {
                *m = mom * *m + (g + wd * *w);
                *w -= lr * *m;
            }),
            (true, true, true) => it.for_each(|((w, &g), m)| {
                let d = g + wd * *w;
                *m = d;
                *w -= lr * (d + mom * *m);
            }),
            (true, false, true) => it.for_each(|((w, &g), m)| {
                let d = g + wd * *w;
                *m = mom * *m + d;
                *w -= lr * (d + mom * *m);
            }),
        }
    }
}
