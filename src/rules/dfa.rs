//! Direct feedback alignment (Nokland 2016, NeurIPS; `anokland/dfa-torch`, BioTorch `dfa`).
//!
//! The output error e = dL/da_L reaches every hidden layer directly through its own fixed random
//! matrix instead of travelling back layer by layer:
//!
//!   delta_l = (B_l e) (.) f'(a_l)   (Nokland's eq. for a hidden layer), output layer: e.
//!
//! As in BioTorch's hook, the projected error B_l e replaces the gradient at the *input* of the
//! next weight layer (the output of layer l after its nonlinearity, and after pooling in a conv
//! net); it then goes back through that block's own non-weight layers (activation, pooling, batch
//! norm) by the exact chain rule, which multiplies by f'(a_l). No error crosses a weight layer.
//! Each block's update depends only on e and local activity, so blocks could run in parallel.
//!
//! B_l is a dense D_l x K matrix (D_l = size of the next weight layer's input, K = classes),
//! Xavier-uniform U(+-sqrt(6/(D_l + K))), fixed. (BioTorch's conv version instead broadcasts e
//! over positions and convolves with a K x C x k x k kernel; a dense B is Nokland's formulation.)
//!
//! # Shapes
//! e: N x K; B_l: D_l x K; injected signal e B_l^T: N x D_l.

use super::{forward_with_error, Rule, Step, StepStats};
use crate::linalg;
use crate::nn::Network;
use crate::rng::Rng;

pub struct Dfa {
    /// (layer index where the projected error enters = a weight layer's index, B of D x K).
    pub feedback: Vec<(usize, Vec<f32>)>,
    k: usize,
    /// The network's weight-layer indices (fixed with the network).
    wl: Vec<usize>,
}

impl Dfa {
    pub fn new(net: &Network, rng: &mut Rng) -> Self {
        let k = net.output_len();
        let wl = net.weight_layers();
        let feedback = wl
            .iter()
            .skip(1)
            .map(|&i| {
                let d = net.shapes[i].len();
                let bound = (6.0 / (d + k) as f32).sqrt();
                let mut b = vec![0.0; d * k];
                rng.fill_uniform(&mut b, -bound, bound);
                (i, b)
            })
            .collect();
        Dfa { feedback, k, wl }
    }
}

impl Rule for Dfa {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        let n = ws.n;
        let l = net.num_layers();
        let wl = &self.wl;
        // Output block: the true gradient from the last weight layer on.
        let last = *wl.last().expect("network has no weight layer");
        net.backward(ws, grads, last, l, None, false);
        // Hidden blocks: inject e B^T at the next weight layer's input, go back to this weight layer.
        for (j, &(at, ref b)) in self.feedback.iter().enumerate() {
            let d = net.shapes[at].len();
            {
                let (lo, hi) = ws.grads.split_at_mut(l);
                let e = &hi[0][..n * self.k];
                linalg::matmul(n, d, self.k, e, false, b, true, &mut lo[at][..n * d], false);
            }
            net.backward(ws, grads, wl[j], at, None, false);
        }
        stats
    }

    fn tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        self.feedback
            .iter()
            .map(|(i, b)| (format!("feedback.{i}.dfa"), vec![b.len() / self.k, self.k], b.as_slice()))
            .collect()
    }

    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])> {
        self.feedback.iter_mut().map(|(i, b)| (format!("feedback.{i}.dfa"), b.as_mut_slice())).collect()
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "dfa",
    summary:
        "direct feedback alignment: the output error reaches every hidden layer through its own fixed random matrix",
    paper: "Nokland 2016, NeurIPS",
    preset: "",
    settings: super::SettingsKind::of::<super::NoSettings>(),
    build: |net, _, rng| Ok(Box::new(Dfa::new(net, rng))),
};
