//! Align-zero and Align-ada (Boopathy & Fiete 2022, ICML, "How to train your wide neural
//! network without backprop: an input-weight alignment perspective"; the authors' code
//! `FieteLab/Wide-Network-Alignment`, `train_alignzero` / `train_alignada`).
//!
//! In the NTK regime a wide network's Jacobians barely move from their values at
//! initialisation, so the error can travel back through the *initial* network instead of the
//! current one. A frozen copy of the network at initialisation (W0, its batch-norm statistics) is
//! kept; every step runs it on the batch beside the current network:
//!
//!   e          = dL/d(output) of the current network
//!   delta0_l   = the initial network's backward signal at layer l's output, started from e
//!                (through W0 and f'(z0), the initial network's activity)
//!
//!   Align-zero:  dW_l = delta0_l^T h0_{l-1} / N   (the initial network's own input activity:
//!                gradient descent on the linearisation at initialisation; every layer, the
//!                output layer included)
//!   Align-ada:   dW_l = delta0_l^T h_{l-1} / N    (the current network's input activity); the
//!                output layer by its ordinary gradient, e^T h_{L-1} / N
//!
//! Biases get the same signals summed over the batch. No feedback matrix is learned: the
//! feedback is the network's own initialisation, frozen. At the first step both rules are
//! backprop exactly (the two networks coincide).
//!
//! Not from the paper's text (only its abstract could be read) but from the authors' code, and
//! what is ours: the reference trains NTK-parametrised conv nets (N(0, 1) weights, each layer
//! scaled by 1/sqrt(fan_in), batch norm without affine, squared error on one-hot - 0.1, plain SGD
//! at rates 1-5); its code also has a standard-parametrisation variant with Adam. Here the rules
//! run on biolearn's standard-parametrised networks with the run's loss and optimiser, any layer
//! types. The reference's Align-ada takes f' at the *current* pre-activation for its last hidden
//! layer only (an artefact, equal in the NTK limit); here f' is the initial network's throughout.
//! The paper reports no figure on MNIST-like data that could be read here.
//!
//! The frozen copy is the network as the rule was built: a run continued from its checkpoint
//! restores it (rule tensors `init.*`), but `--init-from` another rule's model loads only the
//! live weights, so the copy then stays the random initialisation (not the loaded network).
//!
//! # Shapes
//! The frozen network has the current network's layers and parameter layout.

use super::{forward_with_error, Rule, Step, StepStats};
use crate::nn::{Aux, Network, Workspace};

/// Which input activity the update pairs with the initial network's backward signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignKind {
    /// The initial network's (Align-zero).
    Zero,
    /// The current network's (Align-ada).
    Ada,
}

pub struct AlignNtk {
    kind: AlignKind,
    /// The network as it was built (its parameters restored with a checkpoint: `tensors`).
    init: Network,
    ws: Workspace,
    grads: Vec<Vec<f32>>,
}

impl AlignNtk {
    pub fn new(net: &Network, kind: AlignKind) -> Self {
        AlignNtk { kind, init: net.clone(), ws: Workspace::default(), grads: net.zero_grads() }
    }
}

impl Rule for AlignNtk {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        let (n, l) = (ws.n, net.num_layers());
        // The initial network on the same batch with the current pass's dropout masks (a
        // replay: batch statistics, its running ones left as they were).
        let first = ws.first;
        self.init.prepare(&mut self.ws, n);
        let d = n * net.shapes[first].len();
        self.ws.acts[first][..d].copy_from_slice(&ws.acts[first][..d]);
        self.ws.first = first;
        for (mine, theirs) in self.ws.aux.iter_mut().zip(&ws.aux) {
            if let (Aux::Dropout { mask: m, .. }, Aux::Dropout { mask: t, .. }) = (mine, theirs) {
                m.copy_from_slice(t);
            }
        }
        self.init.forward_replay_layers(&mut self.ws, first, l);
        let k = n * net.output_len();
        self.ws.grads[l][..k].copy_from_slice(&ws.grads[l][..k]);
        match self.kind {
            AlignKind::Zero => {
                self.init.backward(&mut self.ws, grads, first, l, None, false);
            }
            AlignKind::Ada => {
                // The initial network's backward signal at every layer (its own parameter
                // gradients are scratch), then every parameterised layer's update from that
                // signal at its output and the current network's activity at its input; the
                // output layer by the current network's own gradient.
                self.init.backward(&mut self.ws, &mut self.grads, first, l, None, false);
                let last = *net.weight_layers().last().expect("a weight layer");
                net.backward(ws, grads, last, l, None, false);
                for i in (first..last).filter(|&i| !net.layers[i].param_ids().is_empty()) {
                    let len = n * net.shapes[i + 1].len();
                    ws.grads[i + 1][..len].copy_from_slice(&self.ws.grads[i + 1][..len]);
                    net.backward(ws, grads, i, i + 1, None, false);
                }
            }
        }
        stats
    }

    /// The frozen initial network's parameters (and batch-norm statistics), for checkpoints.
    fn tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        self.init.params.iter().map(|p| (format!("init.{}", p.name), p.shape.clone(), p.data.as_slice())).collect()
    }

    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])> {
        self.init.params.iter_mut().map(|p| (format!("init.{}", p.name), p.data.as_mut_slice())).collect()
    }
}

pub static ZERO: super::RuleEntry = super::RuleEntry {
    name: "align-zero",
    summary: "Align-zero: the error travels back through the network frozen at initialisation and meets that network's own input activity (gradient descent on the linearisation at init; NTK regime)",
    paper: "Boopathy & Fiete 2022, ICML (code FieteLab/Wide-Network-Alignment)",
    reported: "",
    preset: include_str!("../../presets/align-zero.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<super::NoSettings>(),
    build: |net, _, _| Ok(Box::new(AlignNtk::new(net, AlignKind::Zero))),
};

pub static ADA: super::RuleEntry = super::RuleEntry {
    name: "align-ada",
    summary: "Align-ada: the error travels back through the network frozen at initialisation and meets the current network's input activity; the output layer by its own gradient",
    paper: "Boopathy & Fiete 2022, ICML (code FieteLab/Wide-Network-Alignment)",
    reported: "",
    preset: include_str!("../../presets/align-ada.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<super::NoSettings>(),
    build: |net, _, _| Ok(Box::new(AlignNtk::new(net, AlignKind::Ada))),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Shape};
    use crate::rng::Rng;
    use crate::rules::tests::grads_of;

    fn net(seed: u64) -> Network {
        Builder::new(Shape::flat(6), Init::Torch, &mut Rng::new(seed))
            .dense(8, true)
            .batchnorm(true)
            .act(Activation::Tanh)
            .dense(5, true)
            .act(Activation::Tanh)
            .dense(3, true)
            .build()
    }

    fn batch() -> (Vec<f32>, Vec<u32>) {
        let mut x = vec![0.0; 4 * 6];
        Rng::new(9).fill_normal(&mut x, 1.0);
        (x, vec![0, 2, 1, 2])
    }

    fn close(a: &[Vec<f32>], b: &[Vec<f32>], net: &Network) -> bool {
        a.iter().zip(b).enumerate().filter(|(p, _)| net.params[*p].trainable()).all(|(_, (u, v))| {
            u.iter().zip(v).all(|(x, y)| (x - y).abs() < 1e-5)
        })
    }

    /// At initialisation both are backprop (batch norm included).
    #[test]
    fn at_initialisation_both_are_backprop() {
        let (x, y) = batch();
        for kind in [AlignKind::Zero, AlignKind::Ada] {
            let mut n = net(1);
            let mut r = AlignNtk::new(&n, kind);
            let g = grads_of(&mut r, &mut n, &x, &y);
            let gb = grads_of(&mut crate::rules::bp::Backprop, &mut n, &x, &y);
            assert!(close(&g, &gb, &n), "{kind:?}");
        }
    }

    /// After the weights move: Align-zero is the initial network's gradient with the current
    /// error; Align-ada pairs that signal with the current input activity (its output layer's
    /// update is backprop's), and neither is backprop any more.
    #[test]
    fn after_the_weights_move_the_signal_is_the_initial_networks() {
        let (x, y) = batch();
        let mut n = net(2);
        let mut zero = AlignNtk::new(&n, AlignKind::Zero);
        let mut ada = AlignNtk::new(&n, AlignKind::Ada);
        let init = n.clone();
        for p in n.params.iter_mut().filter(|p| p.trainable()) {
            p.data.iter_mut().enumerate().for_each(|(i, v)| *v += 0.3 * ((i % 7) as f32 - 3.0) / 3.0);
        }
        let gz = grads_of(&mut zero, &mut n, &x, &y);
        let ga = grads_of(&mut ada, &mut n, &x, &y);
        let gb = grads_of(&mut crate::rules::bp::Backprop, &mut n, &x, &y);
        assert!(!close(&gz, &gb, &n) && !close(&ga, &gb, &n));
        // Align-zero by hand: the initial network's backward from the current network's error.
        let mut ws = Workspace::default();
        n.prepare(&mut ws, 4);
        ws.input_mut().copy_from_slice(&x);
        let mut cur = n.clone();
        let _ = forward_with_error(&mut cur, &mut ws, &y, crate::nn::Loss::Ce, &mut Rng::new(1));
        let e = ws.grads[cur.num_layers()].clone();
        let mut iw = Workspace::default();
        let mut init = init;
        init.prepare(&mut iw, 4);
        iw.input_mut().copy_from_slice(&x);
        init.forward(&mut iw, true, &mut Rng::new(5));
        let l = init.num_layers();
        iw.grads[l].copy_from_slice(&e);
        let mut want = init.zero_grads();
        init.backward(&mut iw, &mut want, 0, l, None, false);
        assert!(close(&gz, &want, &n), "align-zero is not the initial network's gradient");
        // Align-ada's output layer is backprop's.
        let (w_out, b_out) = (n.params.len() - 2, n.params.len() - 1);
        assert!(ga[w_out].iter().zip(&gb[w_out]).all(|(a, b)| (a - b).abs() < 1e-6));
        assert!(ga[b_out].iter().zip(&gb[b_out]).all(|(a, b)| (a - b).abs() < 1e-6));
        // Align-ada's first layer sees the input, as the initial network's does: its update is
        // Align-zero's, bit for bit.
        for p in n.layers[0].param_ids() {
            assert_eq!(ga[p], gz[p], "parameter {p}");
        }
        // Its middle dense layer: the initial network's signal at that layer's output, through
        // the current network's layer (its input activity).
        let mid = 3;
        assert!(matches!(n.layers[mid], crate::nn::Layer::Dense { .. }));
        let len = ws.grads[mid + 1].len();
        ws.grads[mid + 1][..len].copy_from_slice(&iw.grads[mid + 1][..len]);
        let mut want_ada = cur.zero_grads();
        cur.backward(&mut ws, &mut want_ada, mid, mid + 1, None, false);
        for p in n.layers[mid].param_ids() {
            assert!(ga[p].iter().zip(&want_ada[p]).all(|(a, b)| (a - b).abs() < 1e-5), "parameter {p}");
        }
        // Its weight pairs that signal with the current input, Align-zero's with the initial one
        // (the bias has no input: the two rules share it).
        let w_mid = n.layers[mid].weight().unwrap();
        assert!(ga[w_mid].iter().zip(&gz[w_mid]).any(|(a, b)| (a - b).abs() > 1e-4), "ada = zero at layer {mid}");
    }
}
