//! Winner-take-all instar plasticity (Miconi 2021; the holistic benchmark's Hebbian arm): the
//! top-1 channel per position, unit-norm filters, adaptive thresholds; its settings and entry.

use super::{build_hebbian, channel_max, check_common, HebbConfig, Hebbian, LayerStep, Plasticity};
use crate::nn::Network;
use crate::rng::Rng;

/// Top-1 winner-take-all instar with adaptive thresholds (rate `mu`); the conv bias holds
/// minus the thresholds.
#[derive(Debug)]
pub struct Instar {
    pub mu: f32,
}

impl Plasticity for Instar {
    fn check_layer(&self, net: &Network, i: usize) -> Result<(), String> {
        if net.layers[i].bias().is_none() {
            return Err(format!("hebb-wta: Hebbian layer {i} needs a bias (it holds the threshold)"));
        }
        Ok(())
    }

    /// Miconi: randn * 0.01, normalised per filter; thresholds (minus the bias) at 0.
    fn init(&self, net: &mut Network, i: usize, _t_inv: f32, rng: &mut Rng) {
        let (k, inp) = Hebbian::rows(net, i);
        let w = net.layers[i].weight().unwrap();
        rng.fill_normal(&mut net.params[w].data, 0.01);
        normalize_rows(&mut net.params[w].data, k, inp);
        let b = net.layers[i].bias().unwrap();
        net.params[b].data.fill(0.0);
    }

    fn update(&self, net: &mut Network, l: &mut LayerStep) {
        let (n, k, inp, p) = (l.n, l.k, l.inp, l.p);
        Hebbian::hard_wta(l.u(), n, k, p, l.y, l.yu);
        let w = net.layers[l.i].weight().unwrap();
        let (x, cols) = l.patches(net);
        Hebbian::hebb_minus_decay(l.y, x, cols, k, inp, n * p, l.yu, &net.params[w].data, l.dw);
        l.add_rows(&mut net.params[w].data);
        normalize_rows(&mut net.params[w].data, k, inp);
        // yu holds the win counts: theta += mu (win rate - 1/K), bias = -theta.
        let b = net.layers[l.i].bias().unwrap();
        let np = (n * p) as f32;
        for (bv, wins) in net.params[b].data.iter_mut().zip(l.yu.iter()) {
            *bv -= self.mu * (wins / np - 1.0 / k as f32);
        }
    }
}

impl Hebbian {
    /// Top-1 winner-take-all Y (K x (N P)) from u (N x K x P): 1 for the largest u at each
    /// sample and position when it is positive, else 0; the win count per channel in `wins`.
    pub fn hard_wta(u: &[f32], n: usize, k: usize, p: usize, y: &mut Vec<f32>, wins: &mut [f32]) {
        let np = n * p;
        y.clear();
        y.resize(k * np, 0.0);
        wins.fill(0.0);
        for s in 0..n {
            let us = &u[s * k * p..(s + 1) * k * p];
            for pos in 0..p {
                let (mx, win) = channel_max(us, k, p, pos);
                if mx > 0.0 {
                    y[win * np + s * p + pos] = 1.0;
                    wins[win] += 1.0;
                }
            }
        }
    }

}

/// Scale every row of a K x inp matrix to unit Euclidean norm.
pub fn normalize_rows(w: &mut [f32], k: usize, inp: usize) {
    for r in w[..k * inp].chunks_mut(inp) {
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        r.iter_mut().for_each(|v| *v /= norm + 1e-10);
    }
}

crate::settings! {
    /// Winner-take-all Hebbian's settings (`hebb-wta`).
    pub struct HebbWtaSettings {
        /// Unsupervised epochs at the start of the run (Gupta's "learns in ~5 epochs").
        pub hebb_epochs: usize = 5,
        /// Micro-batch of the Hebbian updates (Miconi's notebook: 100).
        pub hebb_batch: usize = 100,
        /// Greedy layer-wise: unsupervised epoch e trains Hebbian layer e only.
        pub hebb_greedy: bool = false,
        /// Rate per Hebbian layer of the summed batch update (1e-4, 1e-4, 1e-3).
        pub hebb_lr: Vec<f32> = vec![1e-4, 1e-4, 1e-3],
        /// Rate of the adaptive thresholds (homeostasis).
        pub hebb_mu: f32 = 3.0,
    }
    check(s) {
        check_common(s.hebb_epochs, s.hebb_batch, &s.hebb_lr)?;
        crate::rules::settings::non_negative("hebb_mu", s.hebb_mu)
    }
}

pub static HEBB_WTA: crate::rules::RuleEntry = crate::rules::RuleEntry {
    name: "hebb-wta",
    summary: "winner-take-all Hebbian: instar updates of the top-1 channel per position, unit-norm filters, adaptive thresholds, triangle outputs (conv3 100/196/400), no feedback; linear read-out trained by backprop through the read-out only",
    paper: "Miconi 2021 (Hebbian learning with gradients); Gupta et al. 2022 (holistic benchmark's Hebbian arm)",
    reported: "CIFAR-10 about 64-66% (Gupta et al. 2022, read from a figure)",
    // Miconi's notebook: batch 100. The preset's read-out rate and epochs: presets/hebb-wta.toml
    // (its header says where each comes from).
    preset: include_str!("../../../presets/hebb-wta.toml"),
    presets: &[],
    settings: crate::rules::SettingsKind::of::<HebbWtaSettings>(),
    build: |net, cx, rng| {
        let s: HebbWtaSettings = cx.settings()?;
        let c = HebbConfig::new(Instar { mu: s.hebb_mu }, s.hebb_lr, s.hebb_epochs, s.hebb_batch, s.hebb_greedy);
        build_hebbian(net, c, cx.epochs, rng)
    },
};
