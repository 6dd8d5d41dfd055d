//! Desire backpropagation (Gerlinghoff, Luo, Goh & Wong 2023, Neurocomputing;
//! `DanielGerlinghoff/desire-backpropagation`, `desire_pytorch.py` at its release commit
//! 5e86036, read for this file): a spiking MLP trained one sample at a time by an STDP-like
//! update whose sign comes from binary "desires" propagated down from the output error.
//!
//! Network: the MLP's dense layers (no biases: `mlp:1000,100/nobias`) as spiking layers; the
//! network's activation layers are not used. Per sample (from rest, `desire_steps` = T steps):
//! - input: each value x (read as a rate in [0, 1]) drives a non-leaky IF neuron with threshold
//!   1 (`nn::spiking::Encoding::Rate`), or a Poisson train (`desire_encoding = "poisson"`);
//! - every dense layer is a LIF population (`nn::spiking::Neuron`: v <- 0.75 v + W s_in, spike at
//!   v >= 1, reset by subtraction); the first reads the input's spikes of the same step, every
//!   later one the previous layer's spikes of the step before (the reference's one-step delay per
//!   layer: the output fires at most T - 2 times);
//! - dropout (`desire_dropout_in`, `desire_dropout_hidden`, one mask per sample held over the T
//!   steps, on the input and every hidden layer, not the output): a dropped neuron never fires,
//!   passes no desire down and is not updated; surviving spikes carry 1 / (1 - p) into the next
//!   layer's membrane.
//!
//! Desire. With c_j a neuron's spike count and r_j = c_j / (T - `desire_margin`):
//! - output: the label neuron wants to fire (d_j = 1) and is active if 1 - r_j > 0.30
//!   (`desire_out_threshold`); every other neuron wants silence (d_j = 0), active if r_j > 0.30;
//! - down one layer, with sigma_j = (2 d_j - 1) [active_j and not dropped] and e_j = |d_j - r_j|:
//!   S_i = sum_j W_ji e_j sigma_j; neuron i is active if |S_i| >= 0.05 (`desire_hidden_threshold`)
//!   and wants to fire if S_i > 0. Every layer's desire is computed with the weights before the
//!   sample's update.
//!
//! Update, once per sample after the T steps, every layer:
//!   dW_ji = lr sigma_j sum_t post_j(t) x_i(t),   x_i(t) = 0.75 x_i(t-1) + s_i(t)
//! (the presynaptic trace at the post spike, including the input integrated in that step; no
//! error magnitude, only the desire's sign). The learning rate is the driver's: the preset gives
//! the reference's 1e-5 exp(-0.04 epoch) as a step schedule with step 1 and gamma exp(-0.04).
//! The update is a local change through the driver (`Updater::local`), so pruning masks and
//! hardware devices see it; the shared optimiser is not used. A batch is a group of samples for
//! the driver only: each sample updates the weights before the next is simulated (batch 1 as the
//! reference).
//!
//! Prediction (`Prediction::Own`): the output spike counts of an evaluation pass (no dropout),
//! argmax with the first class winning ties like every rule's; the reference counts a tie as
//! wrong, so our accuracy can be higher by the ties that fall on the label.
//!
//! Speed: the synaptic input is event-driven (`nn::spiking::accumulate`, on a transposed mirror
//! of every weight matrix that the rule keeps in step with the network's), the update touches
//! only the rows of active neurons that fired.

use super::{Prediction, Rule, Step, StepStats, Updater};
use crate::linalg;
use crate::nn::spiking::{self, Encoding, Neuron};
use crate::nn::{Layer, Network, Workspace};
use crate::rng::Rng;

crate::settings! {
    /// Desire backpropagation's settings (`desire`).
    pub struct DesireSettings {
        /// Time steps per sample (T).
        pub desire_steps: usize = 20,
        /// Membrane and trace decay per step (the reference's 1 - 2^-2).
        pub desire_decay: f32 = 0.75,
        /// Spike threshold of the LIF layers.
        pub desire_threshold: f32 = 1.0,
        /// The spike count that means zero error is T minus this margin.
        pub desire_margin: usize = 4,
        /// An output neuron is active when its error |d - r| exceeds this.
        pub desire_out_threshold: f32 = 0.30,
        /// A hidden neuron is active when |S_i| reaches this.
        pub desire_hidden_threshold: f32 = 0.05,
        /// Input dropout probability (per sample, over all steps).
        pub desire_dropout_in: f32 = 0.0,
        /// Hidden-layer dropout probability (per sample, over all steps).
        pub desire_dropout_hidden: f32 = 0.3,
        /// How inputs become spikes: rate (deterministic IF) or poisson.
        pub desire_encoding: Encoding = Encoding::Rate,
    }
    check(s) {
        use super::settings::{count, positive};
        count("desire_steps", s.desire_steps, 10_000)?;
        positive("desire_threshold", s.desire_threshold)?;
        positive("desire_out_threshold", s.desire_out_threshold)?;
        positive("desire_hidden_threshold", s.desire_hidden_threshold)?;
        if !(s.desire_decay > 0.0 && s.desire_decay <= 1.0) {
            return Err(format!("desire_decay must be in (0, 1] (got {})", s.desire_decay));
        }
        if s.desire_margin >= s.desire_steps {
            return Err(format!(
                "desire_margin ({}) must be below desire_steps ({})",
                s.desire_margin, s.desire_steps
            ));
        }
        for (k, p) in [("desire_dropout_in", s.desire_dropout_in), ("desire_dropout_hidden", s.desire_dropout_hidden)] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{k} must be in [0, 1) (got {p})"));
            }
        }
        Ok(())
    }
}

/// One spiking layer's state for the current sample.
struct SpikeLayer {
    /// Parameter index of W (n_out x n_in).
    w: usize,
    n_in: usize,
    n_out: usize,
    /// W^T (n_in x n_out), kept equal to the network's W.
    wt: Vec<f32>,
    /// Output train, (T + 1) x n_out, row 0 silent (the reference's layout).
    out: Vec<u8>,
    counts: Vec<u32>,
    /// Dropout mask of this layer's neurons (all true for the output layer and in evaluation).
    mask: Vec<bool>,
    /// Ternary desire sigma_j (dropout applied).
    sigma: Vec<i8>,
}

pub struct Desire {
    s: DesireSettings,
    layers: Vec<SpikeLayer>,
    /// Input train, T x n_in, and its dropout mask.
    input: Vec<u8>,
    in_mask: Vec<bool>,
    cur: Vec<f32>,
    v: Vec<f32>,
    tr: Vec<f32>,
    sums: Vec<f32>,
    delta: Vec<f32>,
    events: spiking::Events,
    /// Evaluation passes' spikes since the driver last asked.
    activity: spiking::Activity,
    /// Rows of each layer changed by the current sample's update.
    changed: Vec<Vec<usize>>,
}

impl Desire {
    pub fn new(net: &Network, s: DesireSettings) -> Result<Self, String> {
        let mut layers = Vec::new();
        for l in &net.layers {
            match l {
                Layer::Dense { w, b: None, inp, out } => layers.push(SpikeLayer {
                    w: *w,
                    n_in: *inp,
                    n_out: *out,
                    wt: Vec::new(),
                    out: Vec::new(),
                    counts: vec![0; *out],
                    mask: vec![true; *out],
                    sigma: vec![0; *out],
                }),
                Layer::Act(_) | Layer::Dropout(_) => {}
                _ => {
                    return Err("desire backpropagation runs on MLPs of dense layers without biases (e.g. --arch mlp:1000,100/nobias); the activations are replaced by LIF neurons".into())
                }
            }
        }
        if layers.is_empty() {
            return Err("desire backpropagation needs at least one dense layer".into());
        }
        let k = layers.len();
        Ok(Desire {
            s,
            layers,
            input: Vec::new(),
            in_mask: Vec::new(),
            cur: Vec::new(),
            v: Vec::new(),
            tr: Vec::new(),
            sums: Vec::new(),
            delta: Vec::new(),
            events: spiking::Events::default(),
            activity: spiking::Activity::default(),
            changed: vec![Vec::new(); k],
        })
    }

    fn neuron(&self) -> Neuron {
        Neuron { decay: self.s.desire_decay, threshold: self.s.desire_threshold }
    }

    /// Every mirror W^T from the network's W.
    fn sync_all(&mut self, net: &Network) {
        for l in &mut self.layers {
            spiking::transpose(&net.params[l.w].data, l.n_out, l.n_in, &mut l.wt);
        }
    }

    /// Draw the sample's dropout masks (training) or clear them (evaluation).
    fn masks(&mut self, n_in: usize, train: bool, rng: &mut Rng) {
        let (p_in, p_hid) = (self.s.desire_dropout_in, self.s.desire_dropout_hidden);
        self.in_mask.clear();
        self.in_mask.extend((0..n_in).map(|_| !train || p_in == 0.0 || rng.uniform() >= p_in));
        let k = self.layers.len();
        for (li, l) in self.layers.iter_mut().enumerate() {
            let hidden = li + 1 < k;
            for m in l.mask.iter_mut() {
                *m = !train || !hidden || p_hid == 0.0 || rng.uniform() >= p_hid;
            }
        }
    }

    /// Simulate one sample `x` through every layer (masks already drawn). Returns the spikes
    /// of every layer, the input's included.
    fn simulate(&mut self, x: &[f32], train: bool, rng: &mut Rng) -> u64 {
        let t_steps = self.s.desire_steps;
        let neuron = self.neuron();
        let n0 = x.len();
        self.input.resize(t_steps * n0, 0);
        let in_mask = (train && self.s.desire_dropout_in > 0.0).then_some(&self.in_mask[..]);
        let mut total = spiking::encode(self.s.desire_encoding, x, t_steps, in_mask, rng, &mut self.v, &mut self.input) as u64;
        let k = self.layers.len();
        for li in 0..k {
            let (before, rest) = self.layers.split_at_mut(li);
            let l = &mut rest[0];
            // The input train this layer integrates (T rows) and the value its spikes carry.
            let (inp, p): (&[u8], f32) = if li == 0 {
                (&self.input, if train { self.s.desire_dropout_in } else { 0.0 })
            } else {
                let prev = &before[li - 1];
                (&prev.out[..t_steps * prev.n_out], if train { self.s.desire_dropout_hidden } else { 0.0 })
            };
            let scale = 1.0 / (1.0 - p);
            self.cur.clear();
            self.cur.resize(t_steps * l.n_out, 0.0);
            spiking::accumulate(&l.wt, l.n_out, inp, l.n_in, scale, &mut self.events, &mut self.cur);
            l.out.resize((t_steps + 1) * l.n_out, 0);
            l.out[..l.n_out].fill(0);
            let mask = (train && li + 1 < k && self.s.desire_dropout_hidden > 0.0).then_some(&l.mask[..]);
            total += neuron.run(&self.cur, l.n_out, mask, &mut self.v, &mut l.out[l.n_out..]) as u64;
            spiking::counts(&l.out, l.n_out, &mut l.counts);
        }
        total
    }

    /// The desires of every layer from the label, top down (pre-update weights).
    fn desires(&mut self, net: &Network, label: usize) {
        let s = &self.s;
        let target = (s.desire_steps - s.desire_margin) as f32;
        let k = self.layers.len();
        {
            let top = &mut self.layers[k - 1];
            for (j, sg) in top.sigma.iter_mut().enumerate() {
                let r = top.counts[j] as f32 / target;
                *sg = if j == label {
                    if 1.0 - r > s.desire_out_threshold { 1 } else { 0 }
                } else if r > s.desire_out_threshold {
                    -1
                } else {
                    0
                };
            }
        }
        for li in (1..k).rev() {
            let (lower, upper) = self.layers.split_at_mut(li);
            let (l, below) = (&upper[0], &mut lower[li - 1]);
            let w = &net.params[l.w].data;
            self.sums.clear();
            self.sums.resize(l.n_in, 0.0);
            for j in 0..l.n_out {
                let sg = l.sigma[j];
                if sg == 0 {
                    continue;
                }
                let d = (sg > 0) as u8 as f32;
                let e = (d - l.counts[j] as f32 / target).abs() * sg as f32;
                linalg::axpy(e, &w[j * l.n_in..(j + 1) * l.n_in], &mut self.sums);
            }
            for (i, sg) in below.sigma.iter_mut().enumerate() {
                let si = self.sums[i];
                *sg = if si.abs() >= s.desire_hidden_threshold && below.mask[i] {
                    if si > 0.0 {
                        1
                    } else {
                        -1
                    }
                } else {
                    0
                };
            }
        }
    }

    /// The sample's update of every layer, through the driver; then the mirrors follow.
    fn update(&mut self, net: &mut Network, upd: &mut Updater) {
        let t_steps = self.s.desire_steps;
        let lr = upd.lr;
        let decay = self.s.desire_decay;
        let (layers, input, tr, delta, changed) =
            (&self.layers, &self.input, &mut self.tr, &mut self.delta, &mut self.changed);
        upd.local(net, |net| {
            for (li, l) in layers.iter().enumerate() {
                changed[li].clear();
                let inp: &[u8] = if li == 0 { input } else { &layers[li - 1].out[..t_steps * layers[li - 1].n_out] };
                let mut traced = false;
                let w = &mut net.params[l.w].data;
                for j in 0..l.n_out {
                    let sg = l.sigma[j];
                    if sg == 0 || l.counts[j] == 0 {
                        continue;
                    }
                    if !traced {
                        tr.resize(t_steps * l.n_in, 0.0);
                        spiking::traces(inp, l.n_in, decay, tr);
                        traced = true;
                    }
                    delta.clear();
                    delta.resize(l.n_in, 0.0);
                    for t in 0..t_steps {
                        if l.out[(t + 1) * l.n_out + j] != 0 {
                            linalg::axpy(1.0, &tr[t * l.n_in..(t + 1) * l.n_in], delta);
                        }
                    }
                    let a = lr * sg as f32;
                    linalg::axpy(a, delta, &mut w[j * l.n_in..(j + 1) * l.n_in]);
                    changed[li].push(j);
                }
            }
        });
        if upd.device.is_some() {
            // A device may have moved any weight (its writes are not the change asked for).
            self.sync_all(net);
            return;
        }
        // The changed rows (pruning masks applied) into the mirrors' columns.
        for (l, rows) in self.layers.iter_mut().zip(&self.changed) {
            let w = &net.params[l.w].data;
            for &j in rows {
                for i in 0..l.n_in {
                    l.wt[i * l.n_out + j] = w[j * l.n_in + i];
                }
            }
        }
    }
}

impl Rule for Desire {
    fn step(&mut self, _s: &mut Step) -> StepStats {
        unreachable!("desire backpropagation updates per sample in train_batch")
    }

    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        let (net, ws, y, _, _, rng) = s.parts();
        let n0 = net.input_shape().len();
        self.sync_all(net);
        let target = (self.s.desire_steps - self.s.desire_margin) as f32;
        let mut stats = StepStats::default();
        for r in 0..ws.n {
            let x = &ws.acts[ws.first][r * n0..(r + 1) * n0];
            self.masks(n0, true, rng);
            self.simulate(x, true, rng);
            let label = y[r] as usize;
            let top = self.layers.last().unwrap();
            // The record's loss: the squared error of the output rates against the one-hot target.
            stats.loss_sum += top
                .counts
                .iter()
                .enumerate()
                .map(|(j, &c)| {
                    let e = (j == label) as u8 as f64 - c as f64 / target as f64;
                    0.5 * e * e
                })
                .sum::<f64>();
            let best = (0..top.n_out).fold(0, |b, j| if top.counts[j] > top.counts[b] { j } else { b });
            stats.correct += (best == label) as usize;
            self.desires(net, label);
            self.update(net, upd);
        }
        stats
    }

    fn prediction(&self) -> Prediction {
        Prediction::Own
    }

    fn predict(&mut self, net: &mut Network, ws: &mut Workspace) {
        let n0 = net.input_shape().len();
        self.sync_all(net);
        // Evaluation draws nothing (rate code, no dropout); a Poisson code draws from a stream of
        // its own, so evaluating never moves the run's RNG.
        let mut rng = Rng::new(0x5eed_d351);
        let k = net.output_len();
        for r in 0..ws.n {
            self.masks(n0, false, &mut rng);
            let spikes = self.simulate(&ws.acts[0][r * n0..(r + 1) * n0], false, &mut rng);
            self.activity.add(spikes, 1);
            let out = ws.acts.last_mut().unwrap();
            for (o, &c) in out[r * k..(r + 1) * k].iter_mut().zip(&self.layers.last().unwrap().counts) {
                *o = c as f32;
            }
        }
    }

    fn take_activity(&mut self) -> Option<(u64, u64)> {
        self.activity.take()
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "desire",
    summary: "desire backpropagation: a LIF spiking MLP, ternary desires from the output error propagated down, STDP-like per-sample update (MLPs without biases; desire_steps, desire_dropout_hidden)",
    paper: "Gerlinghoff, Luo, Goh & Wong 2023, Neurocomputing",
    reported: "MNIST 784-1600-800-10 (150 epochs) 98.41%; Fashion-MNIST 784-1000-100-10 (600 epochs, dropout 0.05/0.40) 87.56%",
    preset: include_str!("../../presets/desire.toml"),
    presets: &[("mnist", include_str!("../../presets/desire/mnist.toml"))],
    settings: super::SettingsKind::of::<DesireSettings>(),
    build: |net, cx, _| {
        let s: DesireSettings = cx.settings()?;
        Ok(Box::new(Desire::new(net, s)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Loss, Shape};
    use crate::optim::{OptimConfig, Optimizer};

    /// A 2-2-2 spiking MLP, worked by hand (T = 4, margin 0, decay 0.5, threshold 1, no
    /// dropout, output threshold 0.2, lr 0.1), input x = [1, 0.5], label 1.
    /// - Input (rate code): x0 fires at t = 0..3, x1 at t = 1, 3.
    /// - Hidden, W1 = [[0.6, 0.4], [0.2, -0.5]]: h0's membrane 0.6, 1.3 (fire, 0.3), 0.75,
    ///   1.375 (fire): spikes at steps 1 and 3 (rows 2, 4), count 2; h1 never reaches 1.
    /// - Output, W2 = [[1.5, 0.3], [0.9, -0.7]], reading the hidden rows of the step before:
    ///   only h0's spike of step 1 arrives (at step 2; its step-3 spike is lost to the delay):
    ///   o0 gets 1.5 and fires once, o1 gets 0.9 and stays silent. Counts [1, 0].
    /// - Output desire (target 4 spikes): o1 (label) 1 - 0 > 0.2: +1; o0 0.25 > 0.2: -1.
    /// - Hidden desire, e = (0.25, 1): S0 = 1.5 * 0.25 * -1 + 0.9 * 1 = 0.525 -> +1;
    ///   S1 = 0.3 * 0.25 * -1 + -0.7 * 1 = -0.775 -> -1.
    /// - Updates. Output layer, traces of the hidden rows 0..3 ([0,0], [0,0], [1,0], [0,0]):
    ///   (0,0), (0,0), (1,0), (0.5,0); o0 (-1) fired at step 2: W2[0] -= 0.1 (1, 0); o1 wants to
    ///   fire but never did: no change. Hidden layer, input traces (1,0), (1.5,1), (1.75,0.5),
    ///   (1.875,1.25); h0 (+1) fired at steps 1 and 3: W1[0] += 0.1 (3.375, 2.25); h1 (-1)
    ///   never fired: no change.
    #[test]
    fn desire_on_a_2_2_2_network_by_hand() {
        let mut net = Builder::new(Shape::flat(2), Init::Torch, &mut Rng::new(1))
            .dense(2, false)
            .act(Activation::Relu)
            .dense(2, false)
            .build();
        net.params[0].data.copy_from_slice(&[0.6, 0.4, 0.2, -0.5]);
        net.params[1].data.copy_from_slice(&[1.5, 0.3, 0.9, -0.7]);
        let s = DesireSettings {
            desire_steps: 4,
            desire_decay: 0.5,
            desire_margin: 0,
            desire_out_threshold: 0.2,
            desire_dropout_hidden: 0.0,
            ..Default::default()
        };
        let mut rule = Desire::new(&net, s).unwrap();
        let mut ws = Workspace::default();
        net.prepare(&mut ws, 1);
        ws.input_mut().copy_from_slice(&[1.0, 0.5]);
        let mut g = net.zero_grads();
        let mut rng = Rng::new(0);
        let mut opt = Optimizer::new(OptimConfig { lr: 0.1, ..Default::default() }, &net.update_sizes());
        let mut upd = Updater { opt: &mut opt, lr: 0.1, masks: None, device: None };
        let y = [1u32];
        let stats = {
            let mut step = Step::new(&mut net, &mut ws, &y, Loss::Mse, &mut g, &mut rng);
            rule.train_batch(&mut step, &mut upd)
        };
        assert_eq!(rule.layers[0].counts, vec![2, 0]);
        assert_eq!(rule.layers[1].counts, vec![1, 0]);
        assert_eq!(rule.layers[1].sigma, vec![-1, 1]);
        assert_eq!(rule.layers[0].sigma, vec![1, -1]);
        assert_eq!(stats.correct, 0);
        // Loss: 0.5 ((0 - 0.25)^2 + (1 - 0)^2).
        assert!((stats.loss_sum - 0.5 * (0.0625 + 1.0)).abs() < 1e-9);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&net.params[0].data, &[0.9375, 0.625, 0.2, -0.5]), "{:?}", net.params[0].data);
        assert!(close(&net.params[1].data, &[1.4, 0.3, 0.9, -0.7]), "{:?}", net.params[1].data);
        // The mirrors follow the network.
        assert!(close(&rule.layers[0].wt, &[0.9375, 0.2, 0.625, -0.5]));
        assert!(close(&rule.layers[1].wt, &[1.4, 0.9, 0.3, -0.7]));
        // Evaluation with the updated weights: h0 gets 0.9375, 1.5625, 0.9375, 1.5625 and fires
        // at steps 1, 2, 3 (membranes 0.9375, 2.03, 1.45, 1.79); the output reads its rows 2
        // and 3: o0 gets 1.4 twice and fires twice, o1 0.9 twice (0.9, 1.35) and fires once.
        // The counts are the output; spikes: input 6, hidden 3, output 3.
        net.prepare(&mut ws, 1);
        ws.input_mut().copy_from_slice(&[1.0, 0.5]);
        rule.predict(&mut net, &mut ws);
        assert_eq!(ws.output(), &[2.0, 1.0]);
        assert_eq!(rule.take_activity(), Some((12, 1)));
        assert_eq!(rule.take_activity(), Some((0, 0)));
    }

    /// Hidden dropout: a dropped neuron never fires, passes no desire down and, on a batch of
    /// one, its weights are not updated; the same seed gives the same weights.
    #[test]
    fn a_dropped_neuron_neither_fires_nor_learns_and_dropout_is_reproducible() {
        let run = |seed: u64, n: usize| {
            let mut net = Builder::new(Shape::flat(8), Init::Kaiming, &mut Rng::new(3))
                .dense(16, false)
                .act(Activation::Relu)
                .dense(3, false)
                .build();
            let s = DesireSettings { desire_dropout_hidden: 0.5, desire_dropout_in: 0.2, ..Default::default() };
            let mut rule = Desire::new(&net, s).unwrap();
            let mut ws = Workspace::default();
            net.prepare(&mut ws, n);
            let mut rng = Rng::new(seed);
            let mut x = vec![0.0; 8 * n];
            rng.fill_uniform(&mut x, 0.0, 1.0);
            ws.input_mut().copy_from_slice(&x);
            let before = net.params[0].data.clone();
            let mut g = net.zero_grads();
            let mut opt = Optimizer::new(OptimConfig { lr: 0.01, ..Default::default() }, &net.update_sizes());
            let mut upd = Updater { opt: &mut opt, lr: 0.01, masks: None, device: None };
            let y: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
            let mut step = Step::new(&mut net, &mut ws, &y, Loss::Mse, &mut g, &mut rng);
            rule.train_batch(&mut step, &mut upd);
            let l = &rule.layers[0];
            for j in 0..16 {
                if !l.mask[j] {
                    assert_eq!(l.counts[j], 0);
                    assert_eq!(l.sigma[j], 0);
                    if n == 1 {
                        assert_eq!(net.params[0].data[j * 8..(j + 1) * 8], before[j * 8..(j + 1) * 8], "dropped neuron {j} learned");
                    }
                }
            }
            assert!(l.mask.iter().any(|m| !m) && l.mask.iter().any(|m| *m));
            if n == 1 {
                assert_ne!(net.params[0].data, before, "nothing learned");
            }
            net.params[0].data.clone()
        };
        for seed in 1..4 {
            run(seed, 1);
        }
        let run = |seed| run(seed, 4);
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
