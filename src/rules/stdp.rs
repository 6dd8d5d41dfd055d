//! Unsupervised spike-timing-dependent plasticity under a linear read-out (`stdp`; after Diehl &
//! Cook 2015, Front. Comput. Neurosci., "Unsupervised learning of digit recognition using
//! spike-timing-dependent plasticity", simplified to discrete time).
//!
//! Network: `mlp:N` as [dense N (the plastic layer; its bias holds minus each neuron's adaptive
//! threshold) -> activation (unused) -> dense K (the read-out)]. Per sample, T = `stdp_steps`
//! steps from rest:
//! - input: each value x (read as a rate in [0, 1], times `stdp_input_rate`) as a rate or Poisson
//!   spike train (`nn::spiking::encode`);
//! - the plastic layer: LIF membranes (`stdp_decay`) driven event-driven by the input spikes;
//!   winner-take-all lateral inhibition: at each step at most one neuron fires, the one whose
//!   membrane exceeds its threshold 1 + theta_j by the most, and every membrane is then reset to 0
//!   (Diehl & Cook's strong inhibition, in the limit);
//! - plasticity (`nn::spiking::Stdp`, pair-based with traces): potentiation a+ x_i at a post
//!   spike (x_i the presynaptic trace, decay `stdp_trace_decay`, including a pre spike of the
//!   same step), depression a- y_j at a pre spike (y_j the postsynaptic trace of the steps
//!   before); weights kept in [0, `stdp_w_max`] and every neuron's weights rescaled to sum to
//!   `stdp_norm` after the sample (Diehl & Cook's normalisation);
//! - homeostasis: theta_j += `stdp_theta_plus` at each spike of j; theta decays by the factor
//!   `stdp_theta_decay` per sample.
//!
//! Phases: the first `stdp_epochs` epochs are unsupervised (one update per sample, through the
//! driver's `Updater::local`); then the plastic layer is frozen and the read-out learns by the
//! driver's optimiser from the spike counts / T (cross-entropy), as the Hebbian rules' read-out.
//! Prediction (`Prediction::Own`): the read-out of an evaluation pass's spike counts.

use super::{output_error, Phase, Prediction, Rule, Step, StepStats, Updater};
use crate::nn::spiking::{self, Encoding, Stdp};
use crate::nn::{Layer, Network, Workspace};
use crate::rng::Rng;

crate::settings! {
    /// Unsupervised STDP's settings (`stdp`).
    pub struct StdpSettings {
        /// Unsupervised epochs before the read-out trains.
        pub stdp_epochs: usize = 1,
        /// Time steps per sample.
        pub stdp_steps: usize = 25,
        /// Input rate per step of a value of 1.
        pub stdp_input_rate: f32 = 0.5,
        /// How inputs become spikes: rate (deterministic IF) or poisson.
        pub stdp_encoding: Encoding = Encoding::Poisson,
        /// Membrane decay per step of the plastic layer.
        pub stdp_decay: f32 = 0.9,
        /// Potentiation per pre-before-post pairing (times the presynaptic trace).
        pub stdp_a_plus: f32 = 0.002,
        /// Depression per post-before-pre pairing (times the postsynaptic trace).
        pub stdp_a_minus: f32 = 0.0021,
        /// Decay per step of both traces.
        pub stdp_trace_decay: f32 = 0.8,
        /// Upper bound of a weight (the lower bound is 0).
        pub stdp_w_max: f32 = 1.0,
        /// Every neuron's weights sum to this after each update (0: no normalisation).
        pub stdp_norm: f32 = 10.0,
        /// Threshold increase per spike (homeostasis).
        pub stdp_theta_plus: f32 = 0.005,
        /// Threshold decay factor per sample.
        pub stdp_theta_decay: f32 = 0.9999,
    }
    check(s) {
        use super::settings::{count, non_negative, positive};
        count("stdp_steps", s.stdp_steps, 10_000)?;
        positive("stdp_input_rate", s.stdp_input_rate)?;
        non_negative("stdp_a_plus", s.stdp_a_plus)?;
        non_negative("stdp_a_minus", s.stdp_a_minus)?;
        positive("stdp_w_max", s.stdp_w_max)?;
        non_negative("stdp_norm", s.stdp_norm)?;
        non_negative("stdp_theta_plus", s.stdp_theta_plus)?;
        for (k, v) in [
            ("stdp_decay", s.stdp_decay),
            ("stdp_trace_decay", s.stdp_trace_decay),
            ("stdp_theta_decay", s.stdp_theta_decay),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("{k} must be in (0, 1] (got {v})"));
            }
        }
        if s.stdp_epochs > 1_000_000 {
            return Err(format!("stdp_epochs must be at most 1000000 (got {})", s.stdp_epochs));
        }
        Ok(())
    }
}

pub struct StdpRule {
    s: StdpSettings,
    w: usize,
    theta: usize,
    n_in: usize,
    n: usize,
    readout: usize,
    /// The read-out layers' parameters (what the read-out phase's optimiser steps).
    readout_params: Vec<usize>,
    input: Vec<u8>,
    out: Vec<u8>,
    counts: Vec<u32>,
    cur: Vec<f32>,
    v: Vec<f32>,
    scaled: Vec<f32>,
    /// W^T (n_in x n), kept equal to the network's W.
    wt: Vec<f32>,
    events: spiking::Events,
    plastic: spiking::StdpScratch,
    /// Evaluation passes' spikes since the driver last asked.
    activity: spiking::Activity,
}

impl StdpRule {
    pub fn new(net: &mut Network, s: StdpSettings, rng: &mut Rng) -> Result<Self, String> {
        let bad = || "stdp runs on mlp:N (a dense plastic layer with a bias, the activation unused, a dense read-out)".to_string();
        let (w, theta, n_in, n) = match net.layers.first() {
            Some(Layer::Dense { w, b: Some(b), inp, out }) => (*w, *b, *inp, *out),
            _ => return Err(bad()),
        };
        let mut readout = 1;
        while matches!(net.layers.get(readout), Some(Layer::Act(_)) | Some(Layer::Dropout(_))) {
            readout += 1;
        }
        match net.layers.get(readout) {
            Some(Layer::Dense { inp, .. }) if *inp == n && readout + 1 == net.layers.len() => {}
            _ => return Err(bad()),
        }
        // Diehl & Cook: random positive weights, then the normalisation; thresholds at rest.
        let data = &mut net.params[w].data;
        rng.fill_uniform(data, 0.0, 0.3 * s.stdp_w_max);
        if s.stdp_norm > 0.0 {
            Stdp::normalize_rows(data, n, n_in, s.stdp_norm, s.stdp_w_max);
        }
        net.params[theta].data.fill(0.0);
        Ok(StdpRule {
            s,
            w,
            theta,
            n_in,
            n,
            readout,
            readout_params: net.layers[readout..].iter().flat_map(|l| l.param_ids()).collect(),
            input: Vec::new(),
            out: Vec::new(),
            counts: vec![0; n],
            cur: Vec::new(),
            v: Vec::new(),
            scaled: Vec::new(),
            wt: Vec::new(),
            events: spiking::Events::default(),
            plastic: spiking::StdpScratch::default(),
            activity: spiking::Activity::default(),
        })
    }

    fn stdp(&self) -> Stdp {
        Stdp { a_plus: self.s.stdp_a_plus, a_minus: self.s.stdp_a_minus, decay: self.s.stdp_trace_decay }
    }

    /// One sample through the plastic layer (winner-take-all); counts in `self.counts`.
    /// Returns the spikes (input's included).
    fn simulate(&mut self, net: &Network, r: usize, x: &[f32], rng: &mut Rng) -> u64 {
        let (t_steps, n, n_in) = (self.s.stdp_steps, self.n, self.n_in);
        self.scaled.clear();
        self.scaled.extend(x[r * n_in..(r + 1) * n_in].iter().map(|v| v.clamp(0.0, 1.0) * self.s.stdp_input_rate));
        self.input.resize(t_steps * n_in, 0);
        let mut total =
            spiking::encode(self.s.stdp_encoding, &self.scaled, t_steps, None, rng, &mut self.v, &mut self.input) as u64;
        self.cur.clear();
        self.cur.resize(t_steps * n, 0.0);
        spiking::accumulate(&self.wt, n, &self.input, n_in, 1.0, &mut self.events, &mut self.cur);
        let theta = &net.params[self.theta].data;
        self.v.clear();
        self.v.resize(n, 0.0);
        self.out.clear();
        self.out.resize(t_steps * n, 0);
        self.counts.fill(0);
        for t in 0..t_steps {
            let mut best: Option<(usize, f32)> = None;
            for j in 0..n {
                self.v[j] = self.s.stdp_decay * self.v[j] + self.cur[t * n + j];
                // theta_j = -bias_j.
                let excess = self.v[j] - (1.0 - theta[j]);
                if excess >= 0.0 && best.is_none_or(|(_, e)| excess > e) {
                    best = Some((j, excess));
                }
            }
            if let Some((j, _)) = best {
                self.out[t * n + j] = 1;
                self.counts[j] += 1;
                total += 1;
                self.v.fill(0.0);
            }
        }
        total
    }

    /// The read-out's input, counts / T, of sample `r` into the read-out's input slot.
    fn feature(&self, ws: &mut Workspace, r: usize) {
        let (n, t) = (self.n, self.s.stdp_steps as f32);
        for (f, &c) in ws.acts[self.readout][r * n..(r + 1) * n].iter_mut().zip(&self.counts) {
            *f = c as f32 / t;
        }
    }

    /// Simulate the `ws.n` samples in `ws` (weights unchanged) into the read-out's input.
    fn features(&mut self, net: &Network, ws: &mut Workspace, rng: &mut Rng, eval: bool) {
        spiking::transpose(&net.params[self.w].data, self.n, self.n_in, &mut self.wt);
        for r in 0..ws.n {
            let spikes = self.simulate(net, r, &ws.acts[0], rng);
            if eval {
                self.activity.add(spikes, 1);
            }
            self.feature(ws, r);
        }
    }
}

impl Rule for StdpRule {
    fn step(&mut self, _s: &mut Step) -> StepStats {
        unreachable!("stdp trains in train_batch")
    }

    fn phase(&self, epoch: usize) -> Phase {
        if epoch < self.s.stdp_epochs {
            Phase { name: "unsupervised", frozen_prefix: 0, until_settled: false }
        } else {
            Phase { name: "read-out", frozen_prefix: 0, until_settled: false }
        }
    }

    fn schedule_start(&self) -> usize {
        self.s.stdp_epochs
    }

    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        let epoch = s.epoch;
        let (net, ws, y, loss, grads, rng) = s.parts();
        let (n, n_in) = (self.n, self.n_in);
        if epoch < self.s.stdp_epochs {
            spiking::transpose(&net.params[self.w].data, n, n_in, &mut self.wt);
            for r in 0..ws.n {
                self.simulate(net, r, &ws.acts[0], rng);
                // The statistics are the (untrained) read-out's on the features as they were seen.
                self.feature(ws, r);
                let stdp = self.stdp();
                let (input, out, counts, plastic, s) = (&self.input, &self.out, &self.counts, &mut self.plastic, &self.s);
                let (w, theta) = (self.w, self.theta);
                upd.local(net, |net| {
                    let wd = &mut net.params[w].data;
                    stdp.apply(input, n_in, out, n, plastic, wd);
                    for &j in &plastic.rows {
                        let row = &mut wd[j * n_in..(j + 1) * n_in];
                        if s.stdp_norm > 0.0 {
                            Stdp::normalize_row(row, s.stdp_norm, s.stdp_w_max);
                        } else {
                            row.iter_mut().for_each(|v| *v = v.clamp(0.0, s.stdp_w_max));
                        }
                    }
                    // Homeostasis: the bias holds -theta.
                    for (b, &c) in net.params[theta].data.iter_mut().zip(counts) {
                        *b = s.stdp_theta_decay * *b - s.stdp_theta_plus * c as f32;
                    }
                });
                if upd.device.is_some() {
                    spiking::transpose(&net.params[self.w].data, n, n_in, &mut self.wt);
                } else {
                    let wd = &net.params[self.w].data;
                    for &j in &self.plastic.rows {
                        for i in 0..n_in {
                            self.wt[i * n + j] = wd[j * n_in + i];
                        }
                    }
                }
            }
            let l = net.num_layers();
            net.forward_layers(ws, self.readout, l, true, rng);
            return output_error(net, ws, y, loss);
        }
        self.features(net, ws, rng, false);
        let l = net.num_layers();
        net.forward_layers(ws, self.readout, l, true, rng);
        let stats = output_error(net, ws, y, loss);
        net.backward(ws, grads, self.readout, l, None, false);
        if stats.loss_sum.is_finite() {
            upd.apply_where(net, grads, |i| self.readout_params.contains(&i));
        }
        stats
    }

    fn prediction(&self) -> Prediction {
        Prediction::Own
    }

    fn predict(&mut self, net: &mut Network, ws: &mut Workspace) {
        // Evaluation draws its Poisson trains from a stream of its own (the run's RNG stays put).
        let mut rng = Rng::new(0x5eed_57d9);
        self.features(net, ws, &mut rng, true);
        let l = net.num_layers();
        net.forward_range(ws, self.readout, l);
    }

    fn take_activity(&mut self) -> Option<(u64, u64)> {
        self.activity.take()
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "stdp",
    summary: "unsupervised pair-based STDP in a winner-take-all LIF layer with adaptive thresholds, then a linear read-out of its spike counts (mlp:N; stdp_epochs, stdp_steps)",
    paper: "Diehl & Cook 2015, Front. Comput. Neurosci. (simplified to discrete time)",
    reported: "",
    preset: include_str!("../../presets/stdp.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<StdpSettings>(),
    build: |net, cx, rng| {
        let s: StdpSettings = cx.settings()?;
        Ok(Box::new(StdpRule::new(net, s, rng)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Loss, Shape};
    use crate::optim::{OptimConfig, Optimizer};

    /// One sample through the rule's unsupervised step, worked by hand: one input x = 1 (rate
    /// code at input rate 1: a spike at every step), two plastic neurons with W = [0.6, 0.4], no
    /// leak, T = 3, trace decay 0.5, a+ 0.1, a- 0.02, no normalisation, theta+ 0.05, no
    /// threshold decay.
    /// - Membranes: (0.6, 0.4); (1.2, 0.8): neuron 0 exceeds its threshold 1, fires, and every
    ///   membrane resets (winner-take-all); (0.6, 0.4). Counts [1, 0].
    /// - Presynaptic trace 1, 1.5, 1.75. Neuron 0: potentiation at its spike (step 1) a+ 1.5 =
    ///   0.15; depression at the pre spike of step 2, after the post spike: a- 1 = 0.02. W0 =
    ///   0.6 + 0.15 - 0.02 = 0.73; neuron 1 never fired: its row stays 0.4.
    /// - Homeostasis: bias = -theta = (-0.05, 0). The read-out's input: counts / T = (1/3, 0).
    #[test]
    fn stdp_step_on_one_input_and_two_neurons_by_hand() {
        let mut net = Builder::new(Shape::flat(1), Init::Torch, &mut Rng::new(1))
            .dense(2, true)
            .act(Activation::Relu)
            .dense(2, true)
            .build();
        let s = StdpSettings {
            stdp_steps: 3,
            stdp_input_rate: 1.0,
            stdp_encoding: Encoding::Rate,
            stdp_decay: 1.0,
            stdp_a_plus: 0.1,
            stdp_a_minus: 0.02,
            stdp_trace_decay: 0.5,
            stdp_norm: 0.0,
            stdp_theta_plus: 0.05,
            stdp_theta_decay: 1.0,
            ..Default::default()
        };
        let mut rule = StdpRule::new(&mut net, s, &mut Rng::new(2)).unwrap();
        net.params[rule.w].data.copy_from_slice(&[0.6, 0.4]);
        let readout_before: Vec<Vec<f32>> = rule.readout_params.iter().map(|&i| net.params[i].data.clone()).collect();
        let mut ws = Workspace::default();
        net.prepare(&mut ws, 1);
        ws.input_mut().copy_from_slice(&[1.0]);
        let mut g = net.zero_grads();
        let mut rng = Rng::new(0);
        let mut opt = Optimizer::new(OptimConfig { lr: 0.1, ..Default::default() }, &net.update_sizes());
        let mut upd = Updater { opt: &mut opt, lr: 0.1, masks: None, device: None };
        let y = [1u32];
        {
            let mut step = Step::new(&mut net, &mut ws, &y, Loss::Ce, &mut g, &mut rng);
            rule.train_batch(&mut step, &mut upd);
        }
        assert_eq!(rule.counts, vec![1, 0]);
        assert_eq!(rule.out, vec![0, 0, 1, 0, 0, 0], "one spike, neuron 0's, at step 1");
        let close = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&net.params[rule.w].data, &[0.73, 0.4]), "{:?}", net.params[rule.w].data);
        assert!(close(&net.params[rule.theta].data, &[-0.05, 0.0]), "{:?}", net.params[rule.theta].data);
        assert!(close(&ws.acts[rule.readout], &[1.0 / 3.0, 0.0]), "{:?}", ws.acts[rule.readout]);
        // The mirror W^T follows the changed row; the read-out does not learn in this phase.
        assert!(close(&rule.wt, &[0.73, 0.4]));
        for (k, &i) in rule.readout_params.iter().enumerate() {
            assert_eq!(net.params[i].data, readout_before[k]);
        }
        // With the new threshold (1.05 for neuron 0) and weight 0.73 the same input now makes
        // neuron 0 fire at step 1 again (1.46 > 1.05): the evaluation pass counts it.
        rule.predict(&mut net, &mut ws);
        assert_eq!(rule.counts, vec![1, 0]);
    }
}
