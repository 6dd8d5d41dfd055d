//! Direct random target projection (Frenkel, Lefebvre & Bol 2021, Front. Neurosci. 15:629892;
//! `ChFrenkel/DirectRandomTargetProjection`).
//!
//! DFA with the one-hot label y* in place of the output error: every hidden layer receives a
//! fixed random projection of the *target*, which is known before the forward pass ends, so no
//! layer waits for the output (no update locking) and no error travels back (no weight transport):
//!
//!   delta_l = (B_l y*) (.) f'(a_l)   for a hidden layer,   output layer: e = dL/da_L.
//!
//! As in the reference's `TrainingHook` (mode "DRTP": `grad_output_est = labels.mm(B)`), the
//! projected target replaces the gradient at the output of a hidden block's nonlinearity, with a
//! positive sign, and the block's own non-weight layers multiply it by f'(a_l) by the chain rule;
//! the output layer is trained on its own loss (backprop through the last weight layer only).
//! Here the signal enters where DFA's does, at the next weight layer's input: in an MLP that is
//! the same place; in a conv block it is after pooling (the reference hooks before its pooling).
//!
//! B_l is D_l x K (D_l = the next weight layer's input size, K = classes), fixed, drawn like the
//! reference's `kaiming_uniform_` of its K x D_l tensor: U(+-sqrt(6 / D_l)).
//!
//! Scale: the injected signal is y* / N for a batch of N, the batch mean every rule in biolearn
//! uses. The reference's hook ignores the incoming gradient, so its hidden updates are batch
//! *sums* while its output loss is a batch mean: its lr 1e-4 at batch 100 moves the hidden
//! layers like lr 1e-2 here. Its defaults (tanh hidden units, sigmoid output with binary
//! cross-entropy, Nesterov SGD, batch 100, 100 epochs) are not the preset: DRTP trains here on the
//! shared settings, like BP and DFA beside it.
//!
//! # Shapes
//! y*: N x K one-hot; B_l: D_l x K; injected signal y* B_l^T / N: N x D_l (row r = column y_r of B_l).

use super::dfa::DirectFeedback;
use super::{forward_with_error, Rule, Step, StepStats};
use crate::nn::{Network, Workspace};
use crate::rng::Rng;

pub struct Drtp {
    pub fb: DirectFeedback,
    /// The network is an MLP: the driver may size a streaming workspace.
    stream: bool,
}

impl Drtp {
    /// B_l as the reference's `kaiming_uniform_` of a K x D_l tensor: U(+-sqrt(6 / D_l)).
    pub fn new(net: &mut Network, rng: &mut Rng) -> Self {
        let fb = DirectFeedback::new(net, rng, "drtp", |d, _| (6.0 / d as f32).sqrt());
        Drtp { fb, stream: net.streamable() }
    }
}

impl Rule for Drtp {
    fn layer_parallel(&self) -> bool {
        true
    }
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let (scale, k) = (1.0 / ws.n as f32, net.output_len());
        // Each hidden block gets the projected target y* B^T / N: row r is column y_r of B.
        let inject = |ws: &mut Workspace, at: usize, d: usize, b: &[f32]| {
            // On an in-memory array B is read by the batch's one-hot targets, as DFA's by its
            // errors: the cost model charges those reads (digitally a column lookup).
            crate::linalg::note_read(b, y.len(), false);
            for (r, &label) in y.iter().enumerate() {
                let row = &mut ws.grads[at][r * d..(r + 1) * d];
                for (v, bd) in row.iter_mut().zip(b.chunks_exact(k)) {
                    *v = bd[label as usize] * scale;
                }
            }
        };
        if ws.streaming {
            return self.fb.step_streaming(net, ws, grads, y, loss, rng, inject);
        }
        let stats = forward_with_error(net, ws, y, loss, rng);
        self.fb.backward(net, ws, grads, inject);
        stats
    }

    /// On an MLP the step keeps one block at a time (`DirectFeedback::step_streaming`).
    fn streams(&self) -> bool {
        self.stream
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "drtp",
    summary: "direct random target projection: the one-hot label (not the error) reaches every hidden layer through its own fixed random matrix; the output layer learns from its own loss",
    paper: "Frenkel, Lefebvre & Bol 2021, Front. Neurosci. 15:629892",
    reported: "",
    preset: include_str!("../../presets/drtp.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<super::NoSettings>(),
    build: |net, _, rng| Ok(Box::new(Drtp::new(net, rng))),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::grads_of;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Shape};

    /// 2-2-2 ReLU MLP with hand-set weights (out x in) and zero biases, B set by hand.
    fn net22() -> (Network, Drtp) {
        let mut net = crate::rules::tests::net22(Activation::Relu);
        let r = Drtp::new(&mut net, &mut Rng::new(3));
        // B (D x K = 2 x 2): row d, column class.
        net.params[r.fb.feedback[0].1].data.copy_from_slice(&[0.3, -0.7, 0.9, 0.2]);
        (net, r)
    }

    #[test]
    fn hidden_update_by_hand_on_a_2x2_net() {
        // Two samples: x = (1, 2) label 1; x = (2, -4) label 0.
        // Sample 0: a = W0 x = (0.5 - 0.5, 0.75 + 2) = (0, 2.75): relu' = (0, 1) (0 at 0).
        // Sample 1: a = (1 + 1, 1.5 - 4) = (2, -2.5): relu' = (1, 0).
        // delta row r = B[:, y_r] (.) relu'(a_r) / 2:
        //   r0: B[:, 1] = (-0.7, 0.2) -> (0, 0.1);  r1: B[:, 0] = (0.3, 0.9) -> (0.15, 0).
        // dW0 = delta^T X: row 0 = 0 * (1, 2) + 0.15 * (2, -4) = (0.3, -0.6);
        //                  row 1 = 0.1 * (1, 2) + 0 = (0.1, 0.2). db0 = (0.15, 0.1).
        let (mut net, mut r) = net22();
        let g = grads_of(&mut r, &mut net, &[1.0, 2.0, 2.0, -4.0], &[1, 0]);
        let want_w0 = [0.3, -0.6, 0.1, 0.2];
        let want_b0 = [0.15, 0.1];
        for (got, want) in [(&g[0], &want_w0[..]), (&g[1], &want_b0[..])] {
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn hidden_updates_ignore_the_output_and_the_output_layer_is_backprops() {
        let mut net = Builder::new(Shape::flat(6), Init::Torch, &mut Rng::new(5))
            .dense(5, true)
            .act(Activation::Tanh)
            .dense(4, true)
            .act(Activation::Relu)
            .dense(3, true)
            .build();
        let mut rng = Rng::new(9);
        let mut x = vec![0.0; 4 * 6];
        rng.fill_normal(&mut x, 1.0);
        let y = [0, 2, 1, 2];
        let mut r = Drtp::new(&mut net, &mut Rng::new(4));
        let g = grads_of(&mut r, &mut net, &x, &y);
        // The output layer's update is backprop's for that layer.
        let gb = grads_of(&mut crate::rules::bp::Backprop, &mut net, &x, &y);
        let out_w = net.layers[4].weight().unwrap();
        assert_eq!(g[out_w], gb[out_w]);
        assert_ne!(g[0], gb[0], "the hidden layers do not get backprop's update");
        // Changing the output layer (hence the error) leaves every hidden update unchanged: no
        // error reaches them, only the target's projection.
        for v in net.params[out_w].data.iter_mut() {
            *v = -3.0 * *v + 0.1;
        }
        let g2 = grads_of(&mut r, &mut net, &x, &y);
        for p in 0..out_w {
            assert_eq!(g[p], g2[p], "parameter {p}");
        }
        assert_ne!(g[out_w], g2[out_w]);
    }
}
