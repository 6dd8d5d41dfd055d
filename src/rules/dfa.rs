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
//! fixed: Xavier-uniform U(+-sqrt(6/(D_l + K))) (`dfa_init = xavier`, BioTorch's for linear
//! layers), or Nokland's U(+-1/sqrt(D_l)) (`dfa_init = nokland`: `dfa-torch`'s `ErrorFeedback`,
//! whose magnitude is 1/sqrt of the receiving layer's size; the `nokland` preset). A dense B per
//! block is Nokland's formulation; BioTorch's conv layers instead broadcast e over the layer's
//! output positions and carry it to the input with a K x C x k x k kernel by the transposed
//! convolution (`dfa_init = biotorch`): a map linear in e, held as the D_l x K matrix it equals
//! (`conv_shaped`), so both run through the same product.
//!
//! # Shapes
//! e: N x K; B_l: D_l x K; injected signal e B_l^T: N x D_l.

use super::{forward_with_error, Rule, Step, StepStats};
use crate::linalg;
use crate::nn::{Network, ParamKind, Workspace};
use crate::rng::Rng;

/// A hidden block as `DirectFeedback::backward_blocks` hands it over.
pub struct Block<'a> {
    /// Its position among the hidden blocks.
    pub index: usize,
    /// Its weight layer, and the layer index where its signal enters (the next weight layer's).
    pub weight: usize,
    pub at: usize,
    /// Its B (D x K).
    pub feedback: &'a [f32],
}

/// Fixed random matrices B_l (D_l x K), one for each weight layer after the first (entering at
/// its input), and the block-by-block backward through them: what DFA and DRTP share. They differ
/// only in the signal projected (the output error, or the one-hot label) and in B's scale.
pub struct DirectFeedback {
    /// (layer index where the projected signal enters = a weight layer's index, the network
    /// parameter holding its B of D x K: kind `Feedback`, named `feedback.I.TAG`).
    pub feedback: Vec<(usize, usize)>,
    /// The network's weight-layer indices (fixed with the network).
    wl: Vec<usize>,
}

impl DirectFeedback {
    /// B_l ~ U(+-bound(D_l, K)), drawn layer by layer from `rng` and added to `net` as `Feedback`
    /// parameters named `feedback.I.TAG`.
    pub fn new(net: &mut Network, rng: &mut Rng, tag: &'static str, bound: fn(usize, usize) -> f32) -> Self {
        Self::drawn(net, rng, tag, |_, d, k, rng| {
            let bound = bound(d, k);
            let mut b = vec![0.0; d * k];
            rng.fill_uniform(&mut b, -bound, bound);
            b
        })
    }

    /// B_l (D_l x K, row-major) from `draw(layer, D_l, K, rng)` for each weight layer after the
    /// first (the layer the signal enters).
    pub fn drawn(
        net: &mut Network,
        rng: &mut Rng,
        tag: &'static str,
        draw: impl FnMut(&crate::nn::Layer, usize, usize, &mut Rng) -> Vec<f32>,
    ) -> Self {
        let k = net.output_len();
        Self::drawn_wide(net, rng, tag, k, draw)
    }

    /// `drawn` with B_l of D_l x `k` for a signal of `k` values other than the output's (TDCA's
    /// credit codes).
    pub fn drawn_wide(
        net: &mut Network,
        rng: &mut Rng,
        tag: &'static str,
        k: usize,
        mut draw: impl FnMut(&crate::nn::Layer, usize, usize, &mut Rng) -> Vec<f32>,
    ) -> Self {
        let wl = net.weight_layers();
        let feedback = wl
            .iter()
            .skip(1)
            .map(|&i| {
                let d = net.shapes[i].len();
                let b = draw(&net.layers[i], d, k, rng);
                (i, net.add_param(format!("feedback.{i}.{tag}"), vec![d, k], b, ParamKind::Feedback))
            })
            .collect();
        DirectFeedback { feedback, wl }
    }

    /// After the training forward pass: the output block by its true gradient (from the last
    /// weight layer on), then each hidden block from the signal `inject(ws, at, d, B)` writes into
    /// `ws.grads[at]` (N x D), back to its own weight layer by the exact chain rule.
    pub fn backward(
        &self,
        net: &Network,
        ws: &mut Workspace,
        grads: &mut [Vec<f32>],
        mut inject: impl FnMut(&mut Workspace, usize, usize, &[f32]),
    ) {
        self.backward_blocks(net, ws, grads, |net, ws, grads, b| {
            inject(ws, b.at, net.shapes[b.at].len(), b.feedback);
            net.backward(ws, grads, b.weight, b.at, None, false);
        });
    }

    /// `backward` with each hidden block's update left to `block` (in order, after the output
    /// block's true gradient): for a rule whose signal is not one gradient at the block's output
    /// (TPSGD's per-step targets in a recurrent layer, TDCA's per-block credit codes).
    pub fn backward_blocks(
        &self,
        net: &Network,
        ws: &mut Workspace,
        grads: &mut [Vec<f32>],
        mut block: impl FnMut(&Network, &mut Workspace, &mut [Vec<f32>], Block),
    ) {
        let l = net.num_layers();
        let last = *self.wl.last().expect("network has no weight layer");
        net.backward(ws, grads, last, l, None, false);
        for (j, &(at, b)) in self.feedback.iter().enumerate() {
            block(net, ws, grads, Block { index: j, weight: self.wl[j], at, feedback: &net.params[b].data });
        }
    }
}

impl DirectFeedback {
    /// The whole step block by block, for a rule whose signal `inject(ws, at, d, B)` needs
    /// nothing from the layers above the block (DRTP's and TPSGD's label projections): forward
    /// through block j, its signal, its backward to its own weight layer, then its buffers go
    /// back to the workspace's pool before block j + 1 runs; the output block last, from the
    /// loss. On a workspace from `Network::prepare_streaming` the step holds one block's
    /// activations and gradients at a time. Every number is the one `forward_with_error` then
    /// `backward` computes (each block's update reads the same inputs).
    #[allow(clippy::too_many_arguments)]
    pub fn step_streaming(
        &self,
        net: &mut Network,
        ws: &mut Workspace,
        grads: &mut [Vec<f32>],
        y: &[u32],
        loss: crate::nn::Loss,
        rng: &mut Rng,
        mut inject: impl FnMut(&mut Workspace, usize, usize, &[f32]),
    ) -> StepStats {
        let (n, l) = (ws.n, net.num_layers());
        let mut lo = 0;
        let blocks = self.feedback.iter().map(|&(at, b)| (at, Some(b))).chain([(l, None)]);
        for (j, (at, b)) in blocks.enumerate() {
            for i in lo + 1..=at {
                ws.lend(i, n * net.shapes[i].len(), true);
            }
            net.forward_layers(ws, lo, at, true, rng);
            let stats = match b {
                Some(b) => {
                    inject(ws, at, net.shapes[at].len(), &net.params[b].data);
                    None
                }
                None => Some(super::output_error(net, ws, y, loss)),
            };
            net.backward(ws, grads, self.wl[j], at, None, false);
            // The block's input and inner buffers go back; its output stays for the next block.
            for i in lo.max(1)..at {
                ws.reclaim(i, true);
            }
            if at < l {
                ws.reclaim(at, false);
            }
            if let Some(stats) = stats {
                return stats;
            }
            lo = at;
        }
        unreachable!("the output block returns")
    }
}

/// DFA's signal: the output error through B, e B^T (N x K)(K x D), into `ws.grads[at]`.
pub fn project_error(ws: &mut Workspace, at: usize, d: usize, b: &[f32]) {
    let (n, l) = (ws.n, ws.grads.len() - 1);
    let (lo, hi) = ws.grads.split_at_mut(l);
    project(&hi[0], n, b, d, &mut lo[at]);
}

/// e B^T: the error `e` (n x K) through B (D x K) into `out` (n x D).
fn project(e: &[f32], n: usize, b: &[f32], d: usize, out: &mut [f32]) {
    let k = b.len() / d;
    linalg::matmul(n, d, k, &e[..n * k], false, b, true, &mut out[..n * d], false);
}

impl DirectFeedback {
    /// DFA's `backward` with every block at once: the output block and each hidden block (its
    /// projected error, then its own layers) on threads of the current pool, each on its own
    /// part of the workspace and its own parameters' updates, its products on its own thread
    /// (`linalg::serial`). The same numbers as `backward` with `project_error` in a one-thread
    /// pool; with more threads the products block differently (deterministic for a seed and
    /// thread count, equal up to rounding). Every block's multiply-adds are added to the calling
    /// thread's count (`linalg::macs`); while it counts array reads (a hardware run's cost
    /// model), the blocks run one after another on it.
    pub fn backward_parallel(&self, net: &Network, ws: &mut Workspace, grads: &mut [Vec<f32>]) {
        // Array reads are counted on the calling thread only (the hardware cost model): there,
        // the blocks run one after another.
        if linalg::watching() {
            return self.backward(net, ws, grads, project_error);
        }
        let l = net.num_layers();
        let n = ws.n;
        let mut e = ws.grads[l][..n * net.shapes[l].len()].to_vec();
        // The error the hidden blocks project is the one the output block's backward quantises
        // in place first when sequential (hardware `error_bits`).
        if let (Some(hw), Some(_)) = (&net.hw, net.layers[l - 1].weight()) {
            crate::nn::hardware::quantize_error(&mut e, hw.error_bits);
        }
        let last = *self.wl.last().expect("network has no weight layer");
        // (weight layer, top, feedback parameter): the hidden blocks, then the output block.
        let mut blocks: Vec<(usize, usize, Option<usize>)> =
            self.feedback.iter().enumerate().map(|(j, &(at, b))| (self.wl[j], at, Some(b))).collect();
        blocks.push((last, l, None));
        assert!(blocks.windows(2).all(|w| w[0].1 <= w[1].0), "direct-feedback blocks overlap");
        // Each block's own parameter updates, taken out of `grads` and put back after.
        let mut own: Vec<Vec<Vec<f32>>> = blocks
            .iter()
            .map(|&(w, at, _)| {
                let mut g: Vec<Vec<f32>> = (0..grads.len()).map(|_| Vec::new()).collect();
                for p in net.layers[w..at].iter().flat_map(|ly| ly.param_ids()) {
                    g[p] = std::mem::take(&mut grads[p]);
                }
                g
            })
            .collect();
        let Workspace { acts, grads: wg, aux, .. } = ws;
        let (mut wg, mut aux): (&mut [Vec<f32>], &mut [crate::nn::Aux]) = (wg.as_mut_slice(), aux.as_mut_slice());
        let (mut g_at, mut a_at) = (0usize, 0usize);
        let mut parts = Vec::new();
        for &(w, at, b) in &blocks {
            // Activity gradients w+1..=at, scratch w..at.
            let (_, rest) = std::mem::take(&mut wg).split_at_mut(w + 1 - g_at);
            let (mine, rest) = rest.split_at_mut(at - w);
            wg = rest;
            g_at = at + 1;
            let (_, rest) = std::mem::take(&mut aux).split_at_mut(w - a_at);
            let (mine_aux, rest) = rest.split_at_mut(at - w);
            aux = rest;
            a_at = at;
            parts.push((w, at, b, mine, mine_aux));
        }
        let acts: &[Vec<f32>] = acts;
        let e = &e;
        let macs = std::sync::atomic::AtomicU64::new(0);
        let macs = &macs;
        let before = linalg::macs();
        rayon::scope(|sc| {
            for ((w, at, b, mine, mine_aux), g) in parts.into_iter().zip(own.iter_mut()) {
                sc.spawn(move |_| {
                    let m0 = linalg::macs();
                    linalg::serial(|| {
                        if let Some(b) = b {
                            let d = net.shapes[at].len();
                            project(e, n, &net.params[b].data, d, mine.last_mut().expect("a block has a top"));
                        }
                        let part =
                            crate::nn::BackwardPart { n, acts, grads: mine, aux: mine_aux, first: w + 1, aux_first: w };
                        net.backward_part(part, g, w, at, None, false);
                    });
                    macs.fetch_add(linalg::macs() - m0, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        // Every block's multiply-adds count as this thread's (the records' cost of a step); those
        // of the blocks that ran on this thread are there already.
        let all = macs.load(std::sync::atomic::Ordering::Relaxed);
        linalg::add_macs(all - (linalg::macs() - before));
        for g in own {
            for (p, v) in g.into_iter().enumerate() {
                if !v.is_empty() {
                    grads[p] = v;
                }
            }
        }
    }
}

pub struct Dfa {
    pub fb: DirectFeedback,
    /// `dfa_parallel`: the blocks' backward at once.
    pub parallel: bool,
}

/// How B_l is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DfaInit {
    /// U(+-sqrt(6 / (D_l + K))) (BioTorch).
    Xavier,
    /// U(+-1 / sqrt(D_l)) (Nokland's `dfa-torch`).
    Nokland,
    /// BioTorch's layers: a dense layer's B Xavier-uniform as `xavier`; a conv layer's B a kernel
    /// K x C x k x k (Xavier-uniform, fan_in C k k, fan_out K k k) that carries e, broadcast over
    /// the layer's output positions, to its input by the transposed convolution
    /// (`biotorch/layers/dfa/conv.py`), held as the D_l x K matrix that map is ([`conv_shaped`]).
    Biotorch,
}

/// The D x K matrix of BioTorch's conv-shaped DFA feedback: the signal at the input of a conv
/// layer of geometry `g` is conv2d_input(e broadcast over the g.oh() x g.ow() output positions,
/// kernel `kernel` of K x C x k x k), linear in e, so
///   B[(c, y, x), j] = sum over output positions (oy, ox) whose window covers (y, x) of
///                     kernel[j, c, y + pad - oy s, x + pad - ox s]
/// (zero padding: positions in the padding receive nothing, as in PyTorch's conv2d_input; a
/// reflect-padded conv gets these zero-padding semantics too).
pub fn conv_shaped(g: &crate::nn::conv::ConvGeom, kernel: &[f32], k_out: usize) -> Vec<f32> {
    let (c, h, w, kk) = (g.c, g.h, g.w, g.k);
    let d = c * h * w;
    let mut b = vec![0.0f32; d * k_out];
    for oy in 0..g.oh() {
        for ox in 0..g.ow() {
            for ky in 0..kk {
                let y = (oy * g.stride + ky) as isize - g.pad as isize;
                if y < 0 || y >= h as isize {
                    continue;
                }
                for kx in 0..kk {
                    let x = (ox * g.stride + kx) as isize - g.pad as isize;
                    if x < 0 || x >= w as isize {
                        continue;
                    }
                    for ch in 0..c {
                        let row = (ch * h + y as usize) * w + x as usize;
                        for j in 0..k_out {
                            b[row * k_out + j] += kernel[((j * c + ch) * kk + ky) * kk + kx];
                        }
                    }
                }
            }
        }
    }
    b
}

impl Dfa {
    /// B_l Xavier-uniform: U(+-sqrt(6 / (D_l + K))).
    pub fn new(net: &mut Network, rng: &mut Rng) -> Self {
        Self::with_init(net, rng, DfaInit::Xavier)
    }

    pub fn with_init(net: &mut Network, rng: &mut Rng, init: DfaInit) -> Self {
        let xavier = |d: usize, k: usize| (6.0 / (d + k) as f32).sqrt();
        let fb = DirectFeedback::drawn(net, rng, "dfa", |layer, d, k, rng| {
            let (bound, conv) = match (init, layer) {
                // (A conv whose kernel covers its input, LeNet's third, is still BioTorch's
                // Conv2d: its kernel's fans, one output position.)
                (DfaInit::Biotorch, crate::nn::Layer::Conv { geom, .. }) => {
                    let kk = geom.k * geom.k;
                    (xavier(geom.c * kk, k * kk), Some(geom))
                }
                (DfaInit::Xavier | DfaInit::Biotorch, _) => (xavier(d, k), None),
                (DfaInit::Nokland, _) => (1.0 / (d as f32).sqrt(), None),
            };
            let mut b = vec![0.0; conv.map_or(d * k, |g| k * g.c * g.k * g.k)];
            rng.fill_uniform(&mut b, -bound, bound);
            conv.map_or(b.clone(), |g| conv_shaped(g, &b, k))
        });
        Dfa { fb, parallel: false }
    }
}

crate::settings! {
    /// Direct feedback alignment's settings (`dfa`).
    pub struct DfaSettings {
        /// How the fixed feedback matrices are drawn: xavier (dense, BioTorch's linear layers),
        /// nokland (U(+-1/sqrt(D_l))) or biotorch (conv layers get BioTorch's conv-shaped B).
        pub dfa_init: DfaInit = DfaInit::Xavier,
        /// Update the layers at once: every block's backward on its own thread of the run's pool
        /// (`DirectFeedback::backward_parallel`; sequential's numbers up to rounding).
        pub dfa_parallel: bool = false,
    }
    check(_s) { Ok(()) }
}

impl Rule for Dfa {
    fn layer_parallel(&self) -> bool {
        true
    }
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        // Each hidden block gets e B^T at the next weight layer's input.
        if self.parallel {
            self.fb.backward_parallel(net, ws, grads);
        } else {
            self.fb.backward(net, ws, grads, project_error);
        }
        stats
    }

}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "dfa",
    summary:
        "direct feedback alignment: the output error reaches every hidden layer through its own fixed random matrix",
    paper: "Nokland 2016, NeurIPS",
    reported: "Fashion-MNIST 87.19%, MNIST 98.39% (BioTorch LeNet, best epoch on the test set: error 12.81 / 1.61)",
    preset: include_str!("../../presets/dfa.toml"),
    presets: &[
        ("nokland", include_str!("../../presets/dfa/nokland.toml")),
        ("fashion-mnist-mlp1024x2", include_str!("../../presets/dfa/fashion-mnist-mlp1024x2.toml")),
    ],
    settings: super::SettingsKind::of::<DfaSettings>(),
    build: |net, cx, rng| {
        let s: DfaSettings = cx.settings()?;
        Ok(Box::new(Dfa { parallel: s.dfa_parallel, ..Dfa::with_init(net, rng, s.dfa_init) }))
    },
};
