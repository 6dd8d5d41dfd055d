//! Activation Learning (Zhou 2022): Oja's subspace rule on unit-norm inputs, and its activation
//! read-out with the label in the input (the class whose input activates the output most);
//! its settings and entry.

use super::{build_hebbian, check_common, HebbConfig, Hebbian, LayerStep, Plasticity};
use crate::nn::Layer;
use crate::linalg;
use crate::nn::{Network, Workspace};
use crate::rng::Rng;

/// Activation Learning's local competition (Oja's subspace rule) on dense layers without bias,
/// at a constant rate per layer: W += (lr / N) (Z^T A - (Z^T Z) W).
#[derive(Debug)]
pub struct Subspace;

impl Plasticity for Subspace {
    fn check_layer(&self, net: &Network, i: usize) -> Result<(), String> {
        if net.layers[i].bias().is_some() || !matches!(net.layers[i], Layer::Dense { .. }) {
            return Err(format!("activation-learning: layer {i} must be dense without bias"));
        }
        Ok(())
    }

    /// Small Gaussian weights (ALAD: "small variance"; 0.1 / sqrt(inputs) here): the subspace
    /// rule then grows W towards orthonormal rows from below, stably.
    fn init(&self, net: &mut Network, i: usize, _t_inv: f32, rng: &mut Rng) {
        let (_, inp) = Hebbian::rows(net, i);
        let w = net.layers[i].weight().unwrap();
        rng.fill_normal(&mut net.params[w].data, 0.1 / (inp as f32).sqrt());
    }

    fn takes_label(&self) -> bool {
        true
    }

    fn update(&self, net: &mut Network, l: &mut LayerStep) {
        let (n, k, inp) = (l.n, l.k, l.inp);
        let w = net.layers[l.i].weight().unwrap();
        let m: &Workspace = l.micro;
        let a = &m.acts[l.i][..n * inp];
        Hebbian::subspace_delta(l.u(), a, n, k, inp, &net.params[w].data, l.y, l.dw);
        let scale = l.lr / n as f32;
        for (wv, d) in net.params[w].data.iter_mut().zip(l.dw.iter()) {
            *wv += scale * d;
        }
    }
}

/// The first layer's label columns W_y (K x classes) by the same rule: W_y -= scale (Z^T Z W_y -
/// s' Z^T E_label), with `zz` = Z^T Z from the layer's update, `z` its outputs (N x K).
#[allow(clippy::too_many_arguments)]
pub(super) fn label_update(
    wy: &mut [f32],
    dwy: &mut Vec<f32>,
    labels: &[u32],
    sy: f32,
    zz: &[f32],
    z: &[f32],
    k: usize,
    scale: f32,
) {
    let c = wy.len() / k;
    dwy.resize(k * c, 0.0);
    linalg::matmul(k, c, k, zz, false, wy, false, dwy, false);
    for (b, &lab) in labels.iter().enumerate() {
        for r in 0..k {
            dwy[r * c + lab as usize] -= sy * z[b * k + r];
        }
    }
    for (wv, d) in wy.iter_mut().zip(dwy.iter()) {
        *wv -= scale * d;
    }
}

impl Hebbian {
    /// Oja's subspace update summed over the batch, into `dw` (K x inp): Z^T A - (Z^T Z) W,
    /// z: N x K linear outputs, a: N x inp inputs, W: K x inp; `zz` is scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn subspace_delta(
        z: &[f32],
        a: &[f32],
        n: usize,
        k: usize,
        inp: usize,
        w: &[f32],
        zz: &mut Vec<f32>,
        dw: &mut Vec<f32>,
    ) {
        dw.resize(k * inp, 0.0);
        zz.resize(k * k, 0.0);
        linalg::matmul(k, k, n, z, true, z, false, zz, false);
        linalg::matmul(k, inp, k, zz, false, w, false, dw, false);
        dw.iter_mut().for_each(|v| *v = -*v);
        linalg::matmul(k, inp, n, z, true, a, false, dw, true);
    }

    /// The Hebbian layers' forward pass in `ws` (evaluation mode) with the label in the input:
    /// sample b gets class `class(b)`. a_0 = [x / |x|, s e_c] / sqrt(1 + s^2): the unit-norm
    /// image is scaled, and s W_y[:, c] / sqrt(1 + s^2) is added to the first layer's output.
    pub(super) fn label_forward(&self, net: &mut Network, ws: &mut Workspace, class: impl Fn(usize) -> usize, rng: &mut Rng) {
        let i0 = self.hebb[0];
        self.image_part(net, ws, rng);
        self.add_label(net, ws, class);
        net.forward_layers(ws, i0 + 1, self.head_lo, false, rng);
    }

    /// The first layer's output from the image part of a_0 alone (into `ws.acts[i0 + 1]`).
    pub(super) fn image_part(&self, net: &mut Network, ws: &mut Workspace, rng: &mut Rng) {
        let (i0, n) = (self.hebb[0], ws.n);
        let (norm, _) = self.label_scales();
        net.forward_layers(ws, 0, i0, false, rng);
        ws.acts[i0][..n * net.shapes[i0].len()].iter_mut().for_each(|v| *v /= norm);
        net.forward_layers(ws, i0, i0 + 1, false, rng);
    }

    /// Add the label part s W_y[:, c] / sqrt(1 + s^2) to the first layer's output.
    pub(super) fn add_label(&self, net: &Network, ws: &mut Workspace, class: impl Fn(usize) -> usize) {
        let i0 = self.hebb[0];
        let (_, cy) = self.label_scales();
        let (k, c) = (net.shapes[i0 + 1].len(), net.output_len());
        for b in 0..ws.n {
            let cl = class(b);
            for (r, z) in ws.acts[i0 + 1][b * k..(b + 1) * k].iter_mut().enumerate() {
                *z += cy * self.wy[r * c + cl];
            }
        }
    }

    /// The activation read-out: ||a_L(x, c)||^2 for every sample of `ws.acts[0]` and class c,
    /// written as the network's output (N x classes) in `ws`. The image's part of the first
    /// layer is computed once for all classes.
    pub(super) fn class_scores(&mut self, net: &mut Network, ws: &mut Workspace, rng: &mut Rng) {
        let (n, d, c, l) = (ws.n, net.input_shape().len(), net.output_len(), net.num_layers());
        let i0 = self.hebb[0];
        let (f, k) = (net.shapes[self.head_lo].len(), net.shapes[i0 + 1].len());
        let mut micro = std::mem::take(&mut self.micro);
        net.prepare(&mut micro, n);
        micro.input_mut().copy_from_slice(&ws.acts[0][..n * d]);
        self.image_part(net, &mut micro, rng);
        let mut base = std::mem::take(&mut self.image_z);
        base.clear();
        base.extend_from_slice(&micro.acts[i0 + 1][..n * k]);
        let out = &mut ws.acts[l];
        for cl in 0..c {
            micro.acts[i0 + 1][..n * k].copy_from_slice(&base);
            self.add_label(net, &mut micro, |_| cl);
            net.forward_layers(&mut micro, i0 + 1, self.head_lo, false, rng);
            for b in 0..n {
                let a = &micro.acts[self.head_lo][b * f..(b + 1) * f];
                out[b * c + cl] = a.iter().map(|v| v * v).sum();
            }
        }
        self.image_z = base;
        self.micro = micro;
    }

    /// Activation Learning with the label in the input (its activation read-out).
    pub(super) fn labelled(&self) -> bool {
        self.cfg.label > 0.0
    }

    /// a_0 = [x / |x|, s e_y] / norm: the norm sqrt(1 + s^2) and the label's factor s / norm.
    pub(super) fn label_scales(&self) -> (f32, f32) {
        let s = self.cfg.label;
        let norm = (1.0 + s * s).sqrt();
        (norm, s / norm)
    }

}

crate::settings! {
    /// Activation Learning's settings (`activation-learning`).
    pub struct ActivationLearningSettings {
        /// Unsupervised epochs (with the label in the input every epoch learns; with al_label =
        /// 0, the epochs before the linear read-out).
        pub hebb_epochs: usize = 1,
        /// Micro-batch of the local updates.
        pub hebb_batch: usize = 32,
        /// Greedy layer-wise: unsupervised epoch e trains layer e only.
        pub hebb_greedy: bool = false,
        /// Rate of the subspace rule per layer, per batch mean (1.0; 0.05-0.2 left the label
        /// columns unlearned for several epochs on the digits).
        pub hebb_lr: Vec<f32> = vec![1.0],
        /// Strength s of the label in the input, [x/|x|, s e_y] / sqrt(1 + s^2); the prediction is
        /// argmax_c ||a_L(x, c)||^2. 0: unsupervised pre-training under a linear read-out.
        pub al_label: f32 = 1.0,
        /// The subspace rule's rate falls on a cosine over the epochs in which it learns, held
        /// at the last one's share past them (false: constant, the default; the paper gives no
        /// schedule). Needs 2 or more learning epochs; not with hebb_greedy.
        pub hebb_anneal: bool = false,
    }
    check(s) {
        check_common(s.hebb_epochs, s.hebb_batch, &s.hebb_lr)?;
        if s.hebb_anneal && s.hebb_greedy {
            // A greedy layer learns in one epoch only: a cosine over the epochs would only scale
            // each layer's rate by its epoch's share.
            return Err("hebb_anneal and hebb_greedy cannot be combined (a greedy layer learns in one epoch)".into());
        }
        crate::rules::settings::non_negative("al_label", s.al_label)
    }
}

pub static ACTIVATION_LEARNING: crate::rules::RuleEntry = crate::rules::RuleEntry {
    name: "activation-learning",
    summary: "Activation Learning: local competition (Oja's subspace rule) on unit-norm inputs with a norm-preserving |x| activation, no feedback; the label enters the input ([x/|x|, s e_y], al_label = s) and the prediction is the class whose input activates the output most, argmax_c ||a_L(x, c)||^2, every epoch learning; al_label = 0 makes it unsupervised pre-training under a linear read-out trained by backprop through the read-out only",
    paper: "Zhou 2022, arXiv 2209.13400",
    reported: "",
    // The paper reports no widths or rate. In an early session they were chosen on Fashion-MNIST
    // *test* accuracy (3 epochs, 1 seed: 400-40 80.7%, 1000-50 81.7%, 100-20 75.0%, 20 73.9%);
    // the preset's are now from a validation search (presets/activation-learning.toml). The
    // layers must be narrower than their input: a subspace as wide as the input passes everything
    // and the scores stop telling the classes apart. As pre-training under the linear read-out
    // (`al_label = 0`), the settings of plans/hebbian-fmnist.toml: al-mlp:1000,1000, hebb_lr
    // [0.05], hebb_epochs 1, lr 1e-2.
    preset: include_str!("../../../presets/activation-learning.toml"),
    presets: &[],
    settings: crate::rules::SettingsKind::of::<ActivationLearningSettings>(),
    build: |net, cx, rng| {
        let s: ActivationLearningSettings = cx.settings()?;
        let c = HebbConfig {
            label: s.al_label,
            anneal: s.hebb_anneal,
            ..HebbConfig::new(Subspace, s.hebb_lr, s.hebb_epochs, s.hebb_batch, s.hebb_greedy)
        };
        build_hebbian(net, c, cx.epochs, rng)
    },
};
