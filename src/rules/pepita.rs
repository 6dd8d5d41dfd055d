//! PEPITA: present the error to the input (Dellaferrera & Kreiman 2022, ICML, "Error-driven
//! input modulation: solving the credit assignment problem without a backward pass";
//! `GiorgiaD/PEPITA`, `main_pytorch.py` and the fully connected tutorial notebook).
//!
//! No backward pass. Two forward passes per batch:
//!
//!   pass 1 (clean):      h_l = f(W_l h_{l-1}),  h_0 = x,  e = softmax(h_L) - y*   (dL/da_L per sample)
//!   pass 2 (modulated):  h_0^err = x + F e,  h_l^err = f(W_l h_{l-1}^err),  e^err likewise
//!
//!   dW_l = (h_l - h_l^err) (h_{l-1}^err)^T / N     for every hidden layer l (h_0^err the modulated input)
//!   dW_L = e^err (h_{L-1}^err)^T / N               for the output layer (BP's last-layer gradient on pass 2)
//!
//! and W -= lr dW (the reference's momentum 0.9 with lr inside the velocity is the shared
//! optimiser's SGD with momentum at a constant rate). F is fixed, d_in x K, drawn
//! U(+-sqrt(6 / d_in)) x `pepita_f_scale` (the reference's `B = (rand(nin, nout) * 2 sd - sd) *
//! Bstd`, sd = sqrt(6 / nin), Bstd 0.05).
//!
//! Where the reference's choices meet biolearn's networks:
//! - h_l is the output of the first activation layer after weight layer l (the reference's
//!   `relu(activation[fc_l])`); the difference h_l - h_l^err is the signal at weight layer l's
//!   output, with no f' (there is no chain rule in PEPITA). Every weight layer but the last
//!   needs an activation after it.
//! - h_{l-1}^err is what weight layer l actually read on pass 2 (after dropout and pooling). The
//!   reference's MLP reads the activations without its dropout mask for the update (its mask
//!   multiplies them only on the way into the next layer); with keep 0.9 the two differ by the
//!   dropped units and the 1/0.9 scale.
//! - Dropout draws its masks once: pass 2 replays pass 1's (`Network::forward_replay`), as the
//!   reference's shared `do_masks`; batch norm in pass 2 uses the batch's statistics and leaves the
//!   running ones to pass 1.
//! - A conv layer's update is the batch mean of the sum over output positions of (h - h^err) x
//!   patch, divided by the number of output positions, as `compute_delta_w_conv` (its `sqrt=False`
//!   default).
//! - Biases: the reference's layers have none (`mlp:1024/nobias`, the preset); where a network has
//!   them, a bias gets the same signal summed over the batch (the update of a weight whose input is
//!   the constant 1).
//!
//! # Weight mirroring (`pepita-wm`)
//!
//! Srinivasan et al. 2024 (`ravifrancesco/PEPITA`, `models/FCNetMirror.py`) replace the fixed F
//! by a product of per-layer matrices that mirror the forward weights: F = B_1 B_2 ... B_L, B_l of
//! W_l^T's shape (n_{l-1} x n_l), drawn N(0, s^2) with s = (sd / sqrt(n_1 ... n_{L-1}))^(1/L),
//! sd = sqrt(2 / d_in) x `pepita_f_scale` (so that F's entries have sd's scale). After each
//! batch's update, every layer is driven by noise x = a (z - 0.5), z ~ N(0, 1) (a =
//! `pepita_wm_noise`, 0.1; the reference's offset kept), its block's response y = f(x W_l^T)
//! taken (the output block's f is the softmax), and B_l = (1 - decay) B_l + eta x^T y / N
//! (`pepita_wm_decay` 0.5, `pepita_wm_lr` 0.1: the reference's). The noise pass runs the block in
//! evaluation mode (no dropout) and only for MLPs (dense layers, activations and dropout).
//!
//! # Shapes
//! e: N x K; F: d_in x K (network parameter `feedback.pepita.F`, kind `Feedback`); modulation
//! e F^T: N x d_in added to the batch in place. pepita-wm's B_l: `feedback.pepita.B{l}`, kind
//! `LearnedFeedback`.

use super::{forward_with_error, output_error, Rule, Step, StepStats};
use crate::linalg;
use crate::nn::{Layer, Network, ParamKind};
use crate::rng::Rng;

pub struct Pepita {
    /// The network parameter holding F (d_in x K).
    pub f: usize,
    /// The weight layers, in order.
    wl: Vec<usize>,
    /// For each weight layer but the last: (the activations index holding h_l = the output of the
    /// first activation after it, the number of output positions its update is divided by).
    h_at: Vec<(usize, usize)>,
    /// Pass 1's h_l for each hidden weight layer (N x len), kept for pass 2.
    h1: Vec<Vec<f32>>,
    /// Pass 1's per-sample output error e (N x K).
    e: Vec<f32>,
    /// pepita-wm: the mirrored factors of F and their mirroring.
    mirror: Option<Mirror>,
    /// `pepita_recompute`: the workspace of the recomputed clean pass (streaming).
    recompute: Option<crate::nn::Workspace>,
}

/// pepita-wm's per-layer feedback factors B_l (network parameters) and what mirroring needs.
struct Mirror {
    /// (dense layer index, parameter of B_l: inp x out).
    b: Vec<(usize, usize)>,
    /// The next dense layer's index after each (the network's length after the last).
    ends: Vec<usize>,
    lr: f32,
    decay: f32,
    noise: f32,
    /// Each B_l's change estimate x^T y / N from this batch's noise.
    est: Vec<Vec<f32>>,
    /// A workspace for the noise passes (sized once per batch size).
    ws: crate::nn::Workspace,
    /// Scratch for F's product (the partial product and the next one), reused every batch.
    cur: Vec<f32>,
    prod: Vec<f32>,
}

crate::settings! {
    /// PEPITA's settings (`pepita`).
    pub struct PepitaSettings {
        /// F's scale: F ~ U(+-sqrt(6 / d_in)) x this (the reference's Bstd, 0.05).
        pub pepita_f_scale: f32 = 0.05,
        /// pepita-wm: the mirroring rate eta (the reference's wmlr, 0.1).
        pub pepita_wm_lr: f32 = 0.1,
        /// pepita-wm: the decay of B_l per batch (the reference's wmwd, 0.5).
        pub pepita_wm_decay: f32 = 0.5,
        /// pepita-wm: the mirroring noise's amplitude (the reference's 0.1).
        pub pepita_wm_noise: f32 = 0.1,
        /// Keep no activations across layers: pass 1 keeps only its output, and its hidden
        /// activities are recomputed block by block beside pass 2 (a third forward pass; the
        /// same numbers). Memory of a few layers instead of the network's; MLPs without
        /// dropout or batch norm, `pepita` only.
        pub pepita_recompute: bool = false,
    }
    check(s) {
        super::settings::positive("pepita_f_scale", s.pepita_f_scale)?;
        super::settings::non_negative("pepita_wm_lr", s.pepita_wm_lr)?;
        super::settings::in_unit("pepita_wm_decay", s.pepita_wm_decay)?;
        super::settings::positive("pepita_wm_noise", s.pepita_wm_noise)?;
        if s.pepita_wm_lr > 1e3 || s.pepita_wm_noise > 1e3 {
            return Err("pepita_wm_lr and pepita_wm_noise must be at most 1000".into());
        }
        if s.pepita_f_scale > 1e3 {
            return Err(format!("pepita_f_scale must be at most 1000 (got {})", s.pepita_f_scale));
        }
        Ok(())
    }
}

impl Pepita {
    /// PEPITA for `net`: checks that every weight layer but the last has an activation after it
    /// (before the next weight layer), and draws F from `rng`.
    pub fn new(net: &mut Network, s: &PepitaSettings, rng: &mut Rng) -> Result<Self, String> {
        let wl = net.weight_layers();
        if wl.len() < 2 {
            return Err("pepita needs a hidden layer (two weight layers or more)".into());
        }
        let mut h_at = Vec::new();
        for (j, &w) in wl[..wl.len() - 1].iter().enumerate() {
            let act = (w + 1..wl[j + 1]).find(|&i| matches!(net.layers[i], Layer::Act(_))).ok_or_else(|| {
                format!("pepita: weight layer {w} has no activation before the next weight layer (h_l is read after it)")
            })?;
            let positions = match &net.layers[w] {
                Layer::Conv { geom, .. } => geom.p(),
                _ => 1,
            };
            h_at.push((act + 1, positions));
        }
        let (d, k) = (net.shapes[0].len(), net.output_len());
        let bound = (6.0 / d as f32).sqrt() * s.pepita_f_scale;
        let mut f = vec![0.0; d * k];
        rng.fill_uniform(&mut f, -bound, bound);
        let f = net.add_param("feedback.pepita.F".into(), vec![d, k], f, ParamKind::Feedback);
        let n_hidden = h_at.len();
        if s.pepita_recompute && !net.streamable() {
            return Err("pepita_recompute: MLPs of dense and activation layers only (no dropout, batch norm or conv)".into());
        }
        let recompute = s.pepita_recompute.then(Default::default);
        Ok(Pepita { f, wl, h_at, h1: vec![Vec::new(); n_hidden], e: Vec::new(), mirror: None, recompute })
    }

    /// pepita-wm: PEPITA whose F is the product of per-layer factors mirrored from the weights.
    pub fn mirrored(net: &mut Network, s: &PepitaSettings, rng: &mut Rng) -> Result<Self, String> {
        let dense = net.weight_layers();
        if dense.iter().any(|&d| !matches!(net.layers[d], Layer::Dense { .. })) {
            return Err("pepita-wm runs on MLPs (dense layers with activations and dropout between)".into());
        }
        if s.pepita_recompute {
            return Err("pepita_recompute: pepita only (pepita-wm's mirroring passes keep every layer)".into());
        }
        let mut r = Pepita::new(net, s, rng)?;
        let d_in = net.shapes[0].len();
        let hidden: f64 = dense[..dense.len() - 1].iter().map(|&d| net.shapes[d + 1].len() as f64).product();
        let sd = (2.0 / d_in as f64).sqrt() * s.pepita_f_scale as f64;
        let std = (sd / hidden.sqrt()).powf(1.0 / dense.len() as f64) as f32;
        let mut b = Vec::new();
        for &d in &dense {
            let (inp, out) = (net.shapes[d].len(), net.shapes[d + 1].len());
            let m: Vec<f32> = (0..inp * out).map(|_| std * rng.normal()).collect();
            b.push((d, net.add_param(format!("feedback.pepita.B{d}"), vec![inp, out], m, ParamKind::LearnedFeedback)));
        }
        let ends = dense[1..].iter().copied().chain([net.num_layers()]).collect();
        let est = b.iter().map(|&(_, p)| vec![0.0; net.params[p].data.len()]).collect();
        r.mirror = Some(Mirror {
            b,
            ends,
            lr: s.pepita_wm_lr,
            decay: s.pepita_wm_decay,
            noise: s.pepita_wm_noise,
            est,
            ws: Default::default(),
            cur: Vec::new(),
            prod: Vec::new(),
        });
        r.refresh_f(net);
        Ok(r)
    }

    /// pepita-wm: F = B_1 B_2 ... B_L (d_in x K).
    fn refresh_f(&mut self, net: &mut Network) {
        let Some(m) = &mut self.mirror else { return };
        let d_in = net.shapes[0].len();
        let (first, rest) = m.b.split_first().expect("at least two layers");
        m.cur.clear();
        m.cur.extend_from_slice(&net.params[first.1].data);
        let mut cols = net.params[first.1].shape[1];
        for &(_, p) in rest {
            let out = net.params[p].shape[1];
            m.prod.resize(d_in * out, 0.0);
            linalg::matmul(d_in, out, cols, &m.cur, false, &net.params[p].data, false, &mut m.prod, false);
            std::mem::swap(&mut m.cur, &mut m.prod);
            cols = out;
        }
        net.params[self.f].data.copy_from_slice(&m.cur);
    }

    /// pepita-wm: each block's response to noise, x^T y / N into `est` (the change B_l moves by).
    fn mirror_estimates(&mut self, net: &mut Network, n: usize, rng: &mut Rng) {
        let Some(m) = &mut self.mirror else { return };
        net.prepare_forward(&mut m.ws, n);
        let last = m.b.len() - 1;
        for (j, (&(d, _), &end)) in m.b.iter().zip(&m.ends).enumerate() {
            let (inp, out) = (net.shapes[d].len(), net.shapes[end].len());
            for v in m.ws.acts[d][..n * inp].iter_mut() {
                *v = m.noise * (rng.normal() - 0.5);
            }
            net.forward_range(&mut m.ws, d, end);
            if j == last {
                crate::nn::loss::softmax_rows(&mut m.ws.acts[end][..n * out], out);
            }
            let (lo, hi) = m.ws.acts.split_at(end);
            linalg::matmul(inp, out, n, &lo[d][..n * inp], true, &hi[0][..n * out], false, &mut m.est[j], false);
            m.est[j].iter_mut().for_each(|v| *v /= n as f32);
        }
    }
}

impl Pepita {
    /// The step with `pepita_recompute` on a streaming workspace: pass 1 keeps only its output;
    /// then block by block the clean pass is recomputed (in `clean`) beside pass 2 (in `ws`),
    /// each hidden block updated from the two and its buffers returned before the next.
    #[allow(clippy::too_many_arguments)]
    fn step_recompute(
        &mut self,
        net: &mut Network,
        ws: &mut crate::nn::Workspace,
        y: &[u32],
        loss: crate::nn::Loss,
        grads: &mut [Vec<f32>],
        rng: &mut Rng,
    ) -> StepStats {
        let (n, k, l, d) = (ws.n, net.output_len(), net.num_layers(), net.shapes[0].len());
        let clean = self.recompute.as_mut().expect("recompute on");
        net.prepare_streaming(clean, n);
        clean.acts[0][..n * d].copy_from_slice(&ws.acts[0][..n * d]);
        // Pass 1, its output only.
        net.forward_streaming(ws, 0, l, true, rng);
        let stats = output_error(net, ws, y, loss);
        self.e.clear();
        self.e.extend(ws.grads[l][..n * k].iter().map(|v| v * n as f32));
        linalg::matmul(n, d, k, &self.e, false, &net.params[self.f].data, true, &mut ws.acts[0][..n * d], true);
        // Block by block: the clean pass again, pass 2, the block's update.
        let mut lo = 0;
        for (j, &(at, positions)) in self.h_at.iter().enumerate() {
            let w = self.wl[j];
            net.forward_streaming(clean, lo, at, true, rng);
            for i in lo + 1..=at {
                ws.lend(i, n * net.shapes[i].len(), i == w + 1);
            }
            net.forward_layers(ws, lo, at, true, rng);
            let scale = 1.0 / (n * positions) as f32;
            let len = n * net.shapes[w + 1].len();
            for ((g, h), herr) in ws.grads[w + 1][..len].iter_mut().zip(&clean.acts[at][..len]).zip(&ws.acts[at][..len]) {
                *g = (h - herr) * scale;
            }
            net.backward(ws, grads, w, w + 1, None, false);
            for i in lo.max(1)..at {
                ws.reclaim(i, true);
            }
            ws.reclaim(w + 1, false);
            if lo > 0 {
                clean.reclaim(lo, true);
            }
            lo = at;
        }
        // The output layer on pass 2.
        for i in lo + 1..l {
            ws.lend(i, n * net.shapes[i].len(), true);
        }
        net.forward_layers(ws, lo, l, true, rng);
        let _ = output_error(net, ws, y, loss);
        let last = *self.wl.last().expect("checked at build");
        net.backward(ws, grads, last, l, None, false);
        for i in lo.max(1)..l {
            ws.reclaim(i, true);
        }
        stats
    }
}

impl Rule for Pepita {
    fn streams(&self) -> bool {
        self.recompute.is_some()
    }

    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        if self.recompute.is_some() && ws.streaming {
            return self.step_recompute(net, ws, y, loss, grads, rng);
        }
        self.refresh_f(net);
        // Pass 1: the clean forward pass; its loss is the step's.
        let stats = forward_with_error(net, ws, y, loss, rng);
        let (n, k, l) = (ws.n, net.output_len(), net.num_layers());
        for (keep, &(at, _)) in self.h1.iter_mut().zip(&self.h_at) {
            keep.clear();
            keep.extend_from_slice(&ws.acts[at]);
        }
        // e per sample: the loss's gradient holds it divided by the batch size.
        self.e.clear();
        self.e.extend(ws.grads[l][..n * k].iter().map(|v| v * n as f32));
        // The modulated input x + e F^T, in place.
        let d = net.shapes[0].len();
        linalg::matmul(n, d, k, &self.e, false, &net.params[self.f].data, true, &mut ws.acts[0][..n * d], true);
        // Pass 2 with pass 1's dropout masks.
        net.forward_replay(ws);
        let _ = output_error(net, ws, y, loss);
        // The output layer: BP's last-layer gradient on pass 2 (e^err h_{L-1}^err^T / N).
        let last = *self.wl.last().expect("checked at build");
        net.backward(ws, grads, last, l, None, false);
        // Hidden layers: (h_l - h_l^err) / (N x positions) at the weight layer's output.
        for (j, &(at, positions)) in self.h_at.iter().enumerate() {
            let w = self.wl[j];
            let scale = 1.0 / (n * positions) as f32;
            let len = n * net.shapes[w + 1].len();
            debug_assert_eq!(net.shapes[w + 1].len(), net.shapes[at].len());
            for ((g, h), herr) in ws.grads[w + 1][..len].iter_mut().zip(&self.h1[j]).zip(&ws.acts[at][..len]) {
                *g = (h - herr) * scale;
            }
            net.backward(ws, grads, w, w + 1, None, false);
        }
        self.mirror_estimates(net, n, rng);
        stats
    }

    /// The weight step, then (pepita-wm) each B_l's mirroring step.
    fn train_batch(&mut self, s: &mut Step, upd: &mut super::Updater) -> StepStats {
        let stats = super::step_then_apply(self, s, upd);
        if let (Some(m), true) = (&self.mirror, stats.loss_sum.is_finite()) {
            upd.local(s.net, |net| {
                for (&(_, p), est) in m.b.iter().zip(&m.est) {
                    for (bv, e) in net.params[p].data.iter_mut().zip(est) {
                        *bv = (1.0 - m.decay) * *bv + m.lr * e;
                    }
                }
            });
        }
        stats
    }
}

pub static WM: super::RuleEntry = super::RuleEntry {
    name: "pepita-wm",
    summary: "PEPITA with weight mirroring: F is a product of per-layer matrices that follow the forward weights through their response to noise",
    paper: "Srinivasan et al. 2024, ICLR (PEPITA with weight mirroring)",
    reported: "",
    preset: include_str!("../../presets/pepita.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<PepitaSettings>(),
    build: |net, cx, rng| {
        let s: PepitaSettings = cx.settings()?;
        Ok(Box::new(Pepita::mirrored(net, &s, rng)?))
    },
};

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "pepita",
    summary: "PEPITA: no backward pass; a second forward pass on the input modulated by the error through a fixed random F, each layer updated by its activity difference between the passes",
    paper: "Dellaferrera & Kreiman 2022, ICML",
    reported: "CIFAR-10 52.57% (3072-1024-10, the reference tutorial's log); MNIST 98.0%",
    preset: include_str!("../../presets/pepita.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<PepitaSettings>(),
    build: |net, cx, rng| {
        let s: PepitaSettings = cx.settings()?;
        Ok(Box::new(Pepita::new(net, &s, rng)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Shape, Workspace};
    use crate::rules::tests::grads_of;

    /// The 2-2-2 ReLU net of the hand-worked tests, without biases, F set by hand.
    fn net22() -> (Network, Pepita) {
        let mut net =
            Builder::new(Shape::flat(2), Init::Torch, &mut Rng::new(1)).dense(2, false).act(Activation::Relu).dense(2, false).build();
        net.params[0].data.copy_from_slice(&[0.5, -0.25, 0.75, 1.0]);
        net.params[1].data.copy_from_slice(&[1.0, -0.5, 0.25, 2.0]);
        let mut r = Pepita::new(&mut net, &PepitaSettings::default(), &mut Rng::new(3)).unwrap();
        // F (d_in x K = 2 x 2): row = input, column = class.
        net.params[r.f].data.copy_from_slice(&[1.0, -1.0, 0.5, 2.0]);
        r.h1.iter_mut().for_each(Vec::clear);
        (net, r)
    }

    fn softmax(a: [f64; 2]) -> [f64; 2] {
        let m = a[0].max(a[1]);
        let (e0, e1) = ((a[0] - m).exp(), (a[1] - m).exp());
        [e0 / (e0 + e1), e1 / (e0 + e1)]
    }

    /// One sample worked through by hand (in f64), against the rule's update.
    #[test]
    fn update_by_hand_on_a_2x2_net() {
        let (mut net, mut r) = net22();
        let (x, label) = ([1.0f64, 2.0], 1usize);
        let w0 = [[0.5, -0.25], [0.75, 1.0]];
        let w1 = [[1.0, -0.5], [0.25, 2.0]];
        let f = [[1.0, -1.0], [0.5, 2.0]];
        let fwd = |x: [f64; 2]| {
            let a = [w0[0][0] * x[0] + w0[0][1] * x[1], w0[1][0] * x[0] + w0[1][1] * x[1]];
            let h = [a[0].max(0.0), a[1].max(0.0)];
            let o = [w1[0][0] * h[0] + w1[0][1] * h[1], w1[1][0] * h[0] + w1[1][1] * h[1]];
            (h, softmax(o))
        };
        // Pass 1: a = (0.5 - 0.5, 0.75 + 2) = (0, 2.75), h = (0, 2.75); o = (-1.375, 5.5).
        let (h, p) = fwd(x);
        let onehot = |c: usize| if c == label { 1.0 } else { 0.0 };
        let e = [p[0] - onehot(0), p[1] - onehot(1)];
        // Modulated input x + F e.
        let xe = [x[0] + f[0][0] * e[0] + f[0][1] * e[1], x[1] + f[1][0] * e[0] + f[1][1] * e[1]];
        let (he, pe) = fwd(xe);
        let ee = [pe[0] - onehot(0), pe[1] - onehot(1)];
        // dW0 = (h - h^err) xe^T; dW1 = e^err h^err^T (batch of one).
        let want_w0: Vec<f64> = (0..2).flat_map(|i| (0..2).map(move |j| (h[i] - he[i]) * xe[j])).collect();
        let want_w1: Vec<f64> = (0..2).flat_map(|i| (0..2).map(move |j| ee[i] * he[j])).collect();
        assert!(want_w0.iter().any(|v| v.abs() > 1e-3), "the case must move the hidden layer: {want_w0:?}");
        let g = grads_of(&mut r, &mut net, &[1.0, 2.0], &[label as u32]);
        for (got, want) in [(&g[0], &want_w0), (&g[1], &want_w1)] {
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((*a as f64 - b).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        }
    }

    /// A batch's update is the mean of its samples' updates (each sample's modulation uses its own
    /// error), and F stays fixed.
    #[test]
    fn batch_update_is_the_mean_of_the_samples_and_f_is_fixed() {
        let (mut net, mut r) = net22();
        let f0 = net.params[r.f].data.clone();
        let xs = [[1.0, 2.0], [2.0, -4.0], [-0.5, 0.3]];
        let ys = [1u32, 0, 1];
        let flat: Vec<f32> = xs.iter().flatten().copied().collect();
        let g = grads_of(&mut r, &mut net, &flat, &ys);
        let mut mean = net.zero_grads();
        for (x, &y) in xs.iter().zip(&ys) {
            let gi = grads_of(&mut r, &mut net, x, &[y]);
            for (m, v) in mean.iter_mut().zip(&gi) {
                for (a, b) in m.iter_mut().zip(v) {
                    *a += b / xs.len() as f32;
                }
            }
        }
        for (a, b) in g.iter().zip(&mean) {
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() < 1e-5, "{a:?} vs {b:?}");
            }
        }
        assert_eq!(net.params[r.f].data, f0);
        assert!(!net.params[r.f].kind.eq(&ParamKind::Weight));
    }

    /// With F = 0 the two passes agree: hidden layers get no update and the output layer gets
    /// BP's last-layer gradient.
    #[test]
    fn zero_f_leaves_hidden_layers_alone_and_gives_bps_output_update() {
        let mut net = Builder::new(Shape::flat(5), Init::Kaiming, &mut Rng::new(2))
            .dense(4, false)
            .act(Activation::Relu)
            .dense(3, false)
            .act(Activation::Relu)
            .dense(2, false)
            .build();
        let mut r = Pepita::new(&mut net, &PepitaSettings::default(), &mut Rng::new(3)).unwrap();
        net.params[r.f].data.fill(0.0);
        let mut x = vec![0.0; 4 * 5];
        Rng::new(7).fill_normal(&mut x, 1.0);
        let y = [0, 1, 1, 0];
        let g = grads_of(&mut r, &mut net, &x, &y);
        let gb = grads_of(&mut crate::rules::bp::Backprop, &mut net, &x, &y);
        assert!(g[0].iter().chain(&g[1]).all(|v| *v == 0.0));
        assert_eq!(g[2], gb[2]);
    }

    /// Dropout: pass 2 replays pass 1's masks (else h - h^err would be mostly mask noise): with
    /// F = 0 the hidden updates stay exactly zero on a dropout net.
    #[test]
    fn second_pass_replays_the_dropout_masks() {
        let mut net = Builder::new(Shape::flat(6), Init::Kaiming, &mut Rng::new(2))
            .dense(8, false)
            .act(Activation::Relu)
            .dropout(0.5)
            .dense(3, false)
            .build();
        let mut r = Pepita::new(&mut net, &PepitaSettings::default(), &mut Rng::new(3)).unwrap();
        net.params[r.f].data.fill(0.0);
        let mut x = vec![0.0; 4 * 6];
        Rng::new(7).fill_normal(&mut x, 1.0);
        let g = grads_of(&mut r, &mut net, &x, &[0, 1, 2, 1]);
        assert!(g[0].iter().all(|v| *v == 0.0));
        assert!(g[1].iter().any(|v| *v != 0.0));
    }

    /// pepita-wm: F is the product of its factors, and with the weights held still the hidden
    /// layer's factor turns toward W^T (from about 90 degrees to under 45).
    #[test]
    fn weight_mirroring_keeps_f_the_product_and_aligns_the_factors() {
        let mut net = Builder::new(Shape::flat(6), Init::Kaiming, &mut Rng::new(2))
            .dense(5, false)
            .act(Activation::Tanh)
            .dense(3, false)
            .build();
        let mut r = Pepita::mirrored(&mut net, &PepitaSettings::default(), &mut Rng::new(3)).unwrap();
        let (b0, b1) = {
            let m = r.mirror.as_ref().unwrap();
            (m.b[0].1, m.b[1].1)
        };
        let angle = |net: &Network| {
            // B0 is 6 x 5, W0 is 5 x 6: compare B0 with W0^T.
            let w = &net.params[0].data;
            let wt: Vec<f32> = (0..6 * 5).map(|j| w[(j % 5) * 6 + j / 5]).collect();
            crate::rules::angle(&net.params[b0].data, &wt)
        };
        let before = angle(&net);
        let mut opt = crate::optim::Optimizer::new(Default::default(), &net.update_sizes());
        let (mut ws, mut g, mut rng) = (Workspace::default(), net.zero_grads(), Rng::new(4));
        for _ in 0..50 {
            net.prepare(&mut ws, 32);
            rng.fill_normal(ws.input_mut(), 1.0);
            let y: Vec<u32> = (0..32).map(|_| rng.below(3) as u32).collect();
            let mut upd = crate::rules::Updater { opt: &mut opt, lr: 0.0, masks: None , device: None };
            r.train_batch(&mut Step::new(&mut net, &mut ws, &y, crate::nn::Loss::Ce, &mut g, &mut rng), &mut upd);
        }
        let after = angle(&net);
        assert!(before > 60.0 && after < 45.0, "angle of B0 to W0^T: {before:.1} -> {after:.1}");
        r.refresh_f(&mut net);
        let (p0, p1) = (&net.params[b0].data, &net.params[b1].data);
        for i in 0..6 {
            for k in 0..3 {
                let want: f32 = (0..5).map(|h| p0[i * 5 + h] * p1[h * 3 + k]).sum();
                assert!((net.params[r.f].data[i * 3 + k] - want).abs() < 1e-6);
            }
        }
    }

    /// On a conv net the update exists for every layer and the network trains on a toy task:
    /// the loss falls over a few hundred steps.
    #[test]
    fn conv_net_updates_every_layer_and_the_loss_falls() {
        let mut net = Builder::new(Shape::new(1, 6, 6), Init::Kaiming, &mut Rng::new(4))
            .conv(3, 3, 1, 0, false, false)
            .act(Activation::Relu)
            .maxpool(2, 2)
            .dense(2, false)
            .build();
        let mut r = Pepita::new(&mut net, &PepitaSettings { pepita_f_scale: 1.0, ..Default::default() }, &mut Rng::new(3)).unwrap();
        assert_eq!(r.h_at, vec![(2, 16)]);
        // Class 1: a bright left half; class 0: a bright right half.
        let mut rng = Rng::new(11);
        let batch = |rng: &mut Rng| {
            let (mut x, mut y) = (vec![0.0f32; 8 * 36], vec![0u32; 8]);
            for (s, yv) in y.iter_mut().enumerate() {
                *yv = (s % 2) as u32;
                for p in 0..36 {
                    let left = p % 6 < 3;
                    x[s * 36 + p] = if left == (*yv == 1) { 1.0 } else { 0.0 } + 0.3 * rng.normal();
                }
            }
            (x, y)
        };
        let mut ws = Workspace::default();
        let (mut opt, mut g) = (crate::optim::Optimizer::new(Default::default(), &net.update_sizes()), net.zero_grads());
        let mut losses = Vec::new();
        for it in 0..300 {
            let (x, y) = batch(&mut rng);
            net.prepare(&mut ws, 8);
            ws.input_mut().copy_from_slice(&x);
            let st = r.step(&mut Step::new(&mut net, &mut ws, &y, crate::nn::Loss::Ce, &mut g, &mut rng));
            if it == 0 {
                for (p, v) in g.iter().enumerate().filter(|(p, _)| net.params[*p].trainable()) {
                    assert!(v.iter().any(|u| *u != 0.0), "parameter {p} got no update");
                }
            }
            let mut upd = crate::rules::Updater { opt: &mut opt, lr: 0.05, masks: None , device: None };
            upd.apply(&mut net, &g);
            losses.push(st.loss_sum / 8.0);
        }
        let (first, last) = (losses[..30].iter().sum::<f64>() / 30.0, losses[270..].iter().sum::<f64>() / 30.0);
        assert!(last < 0.5 * first, "loss {first:.3} -> {last:.3}");
    }
}
