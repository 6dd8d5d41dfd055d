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
        let mut win = Vec::new();
        Hebbian::wta_winners(l.u(), n, k, p, &mut win, l.yu);
        let w = net.layers[l.i].weight().unwrap();
        let (x, cols) = l.patches(net);
        Hebbian::wta_hebb_minus_decay(&win, x, cols, k, inp, l.yu, &net.params[w].data, l.dw);
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
    /// sample and position when it is positive, else 0 (`wta_winners` as a one-hot matrix); the
    /// win count per channel in `wins`.
    pub fn hard_wta(u: &[f32], n: usize, k: usize, p: usize, y: &mut Vec<f32>, wins: &mut [f32]) {
        let mut win = Vec::new();
        Self::wta_winners(u, n, k, p, &mut win, wins);
        y.clear();
        y.resize(k * n * p, 0.0);
        for (j, &c) in win.iter().enumerate().filter(|(_, &c)| c != NONE) {
            y[c as usize * n * p + j] = 1.0;
        }
    }

    /// `hard_wta`'s winners as indices: `win[s P + pos]` is the channel that fires at sample s,
    /// position pos, or `NONE`; the win count per channel in `wins`.
    pub fn wta_winners(u: &[f32], n: usize, k: usize, p: usize, win: &mut Vec<u32>, wins: &mut [f32]) {
        win.clear();
        wins.fill(0.0);
        for s in 0..n {
            let us = &u[s * k * p..(s + 1) * k * p];
            win.extend((0..p).map(|pos| {
                let (mx, c) = channel_max(us, k, p, pos);
                if mx > 0.0 {
                    wins[c] += 1.0;
                    c as u32
                } else {
                    NONE
                }
            }));
        }
    }

    /// `hebb_minus_decay` for a one-hot Y given by its winners (`wta_winners`): dW_k = the sum
    /// of the patches channel k won, in position order, minus c_k W_k. The dense product summed
    /// K x inp x (N P) terms of which all but inp x (N P) are zero (hebb-conv3's second layer:
    /// 128 x 576 x 18432 multiply-adds a step, 26 ms); these sums add the same nonzero terms in
    /// another order than the product's blocked one (the last bits differ).
    /// `x`: the patches, CKK x (N P) when `cols`, else (N P) x inp.
    #[allow(clippy::too_many_arguments)]
    pub fn wta_hebb_minus_decay(win: &[u32], x: &[f32], cols: bool, k: usize, inp: usize, c: &[f32], w: &[f32], dw: &mut Vec<f32>) {
        let np = win.len();
        dw.clear();
        dw.resize(k * inp, 0.0);
        // The positions each channel won, grouped by channel, each group in position order.
        let mut start = vec![0usize; k + 1];
        for &v in win.iter().filter(|&&v| v != NONE) {
            start[v as usize + 1] += 1;
        }
        for ch in 0..k {
            start[ch + 1] += start[ch];
        }
        let mut next = start.clone();
        let mut order = vec![0u32; start[k]];
        for (j, &v) in win.iter().enumerate().filter(|(_, &v)| v != NONE) {
            order[next[v as usize]] = j as u32;
            next[v as usize] += 1;
        }
        if cols {
            for r in 0..inp {
                let row = &x[r * np..(r + 1) * np];
                for ch in 0..k {
                    dw[ch * inp + r] = order[start[ch]..start[ch + 1]].iter().fold(0.0, |a, &j| a + row[j as usize]);
                }
            }
        } else {
            for ch in 0..k {
                let d = &mut dw[ch * inp..(ch + 1) * inp];
                for &j in &order[start[ch]..start[ch + 1]] {
                    d.iter_mut().zip(&x[j as usize * inp..(j as usize + 1) * inp]).for_each(|(a, v)| *a += v);
                }
            }
        }
        // The work done: one addition per patch value of every position that fired (counted as
        // the records' multiply-adds; the dense product counted K times as many).
        crate::linalg::add_macs((order.len() * inp) as u64);
        Hebbian::minus_decay(dw, c, w, k, inp);
    }
}

/// No channel fires (every u at the position is <= 0).
pub const NONE: u32 = u32::MAX;

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
