//! Feed-forward networks: a flat list of layers over named parameter tensors.
//!
//! A `Network` is a sequence of `Layer`s (dense, conv, pooling, activation, dropout, batch norm)
//! whose parameters live in one `Vec<Param>`, so optimisers, pruning masks, checkpoints and
//! learning rules all see the same named tensors. Activations are batch-major matrices:
//! sample after sample, each sample's features laid out C x H x W.
//!
//! The forward pass caches what the backward pass needs in a `Workspace` (allocated once per
//! batch size, reused every step). The backward pass is generic over the *feedback path*: through
//! each weight layer it propagates with W (backprop) or with a feedback matrix of W's shape given
//! by the learning rule (feedback alignment, sign symmetry). It can run over any sub-range of
//! layers, which is how direct feedback alignment injects its projected error block by block.

pub mod activation;
pub mod arch;
pub mod batchnorm;
pub mod compete;
pub mod conv;
pub mod hardware;
pub mod jvp;
pub mod latent;
pub mod loss;
pub mod pool;
pub mod prune;
pub mod recurrent;
pub mod samplenorm;
pub mod spiking;
pub mod transformer;

pub use activation::Activation;
pub use arch::{ArchSpec, Init};
pub use jvp::Tangents;
pub use loss::{AttackLoss, Loss};

use crate::linalg;
use crate::rng::Rng;
use batchnorm::BnGeom;
use conv::ConvGeom;
use pool::PoolGeom;
use recurrent::{RnnAux, RnnGeom};
use serde::{Deserialize, Serialize};
use transformer::{BlockAux, BlockGeom, BlockParams, EmbedGeom};

/// Per-sample shape C x H x W (a dense layer's output is C x 1 x 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    pub fn flat(n: usize) -> Self {
        Shape { c: n, h: 1, w: 1 }
    }
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamKind {
    /// A weight matrix or kernel: what pruning, feedback matrices and weight decay act on.
    Weight,
    Bias,
    BnScale,
    BnShift,
    /// Not trained (batch-norm running statistics).
    Buffer,
    /// A learning rule's feedback matrix that no gradient trains: fixed random (FA's B, DFA's
    /// and DRTP's projections) or recomputed from the weights every step (sign symmetry).
    Feedback,
    /// A feedback matrix the rule learns by an update of its own, applied through the driver's
    /// `Updater::local` (DTP's inverses, pc-positive's B); not the shared optimiser's.
    LearnedFeedback,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub kind: ParamKind,
}

impl Param {
    /// Trained by the shared optimiser from the rule's update (weights, biases, batch-norm
    /// affine); not buffers or feedback matrices.
    pub fn trainable(&self) -> bool {
        matches!(self.kind, ParamKind::Weight | ParamKind::Bias | ParamKind::BnScale | ParamKind::BnShift)
    }
}

#[derive(Clone, Debug)]
pub enum Layer {
    /// y = x W^T + b; W: out x inp.
    Dense {
        w: usize,
        b: Option<usize>,
        inp: usize,
        out: usize,
    },
    Conv {
        w: usize,
        b: Option<usize>,
        geom: ConvGeom,
    },
    MaxPool(PoolGeom),
    AvgPool(PoolGeom),
    Act(Activation),
    /// Inverted dropout with drop probability p.
    Dropout(f32),
    /// Competition across channels at every position (triangle or softmax; `compete`).
    Compete(compete::CompeteGeom),
    /// Per-sample standardisation over all of a sample's values (`samplenorm`).
    SampleNorm,
    /// An Elman RNN or a GRU unrolled over the input's rows (`recurrent`): W_x (G x I, the
    /// layer's weight), W_h (G x H, also a weight: pruned, decayed), biases b and (GRU) b_h.
    Recurrent {
        wx: usize,
        wh: usize,
        b: Option<usize>,
        bh: Option<usize>,
        geom: RnnGeom,
    },
    /// Token + learned position embedding (`transformer`): input T token ids per sample, output
    /// T x d; `tok`: vocab x d, `pos`: T x d (both weights).
    Embed {
        tok: usize,
        pos: usize,
        geom: EmbedGeom,
    },
    /// Layer norm over every row of `d` values (per position of a sequence), gain g and shift b.
    LayerNorm {
        g: usize,
        b: usize,
        d: usize,
    },
    /// A pre-norm transformer block (`transformer`): causal self-attention and a GELU MLP.
    Block {
        p: BlockParams,
        geom: BlockGeom,
    },
    /// The same dense map applied to every row of `inp` values (every position of a sequence):
    /// y_t = W x_t + b; W: out x inp.
    TokenDense {
        w: usize,
        b: Option<usize>,
        inp: usize,
        out: usize,
    },
    /// A VAE's Gaussian latent (`latent`): input 2z values (mean, log-variance), output the
    /// reparameterised sample of z values; its KL divergence from the prior is a loss term.
    Latent {
        z: usize,
    },
    /// gamma/beta (absent when not affine), running mean/var.
    BatchNorm {
        affine: Option<(usize, usize)>,
        mean: usize,
        var: usize,
        geom: BnGeom,
    },
}

impl Layer {
    /// The weight parameter of a dense or conv layer (a recurrent layer's input weights W_x).
    pub fn weight(&self) -> Option<usize> {
        match self {
            Layer::Dense { w, .. }
            | Layer::Conv { w, .. }
            | Layer::Recurrent { wx: w, .. }
            | Layer::TokenDense { w, .. }
            | Layer::Embed { tok: w, .. } => Some(*w),
            Layer::Block { p, .. } => Some(p.qkv.0),
            _ => None,
        }
    }
    pub fn bias(&self) -> Option<usize> {
        match self {
            Layer::Dense { b, .. }
            | Layer::Conv { b, .. }
            | Layer::Recurrent { b, .. }
            | Layer::TokenDense { b, .. } => *b,
            _ => None,
        }
    }
    /// Every parameter the layer reads, buffers (running statistics) included.
    pub fn param_ids(&self) -> Vec<usize> {
        match self {
            Layer::Dense { w, b, .. } | Layer::Conv { w, b, .. } | Layer::TokenDense { w, b, .. } => {
                std::iter::once(*w).chain(*b).collect()
            }
            Layer::Embed { tok, pos, .. } => vec![*tok, *pos],
            Layer::LayerNorm { g, b, .. } => vec![*g, *b],
            Layer::Block { p, .. } => p.ids().to_vec(),
            Layer::Recurrent { wx, wh, b, bh, .. } => [*wx, *wh].into_iter().chain(*b).chain(*bh).collect(),
            Layer::BatchNorm { affine, mean, var, .. } => {
                affine.iter().flat_map(|&(g, b)| [g, b]).chain([*mean, *var]).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Network {
    pub layers: Vec<Layer>,
    pub params: Vec<Param>,
    /// shapes[i]: the per-sample shape entering layer i; shapes[layers.len()]: the output.
    pub shapes: Vec<Shape>,
    /// Compute-in-memory reads (`hardware`): quantised layer inputs, the ADC of dense layers'
    /// sub-arrays, quantised errors. None: exact.
    pub hw: Option<std::sync::Arc<hardware::ReadModel>>,
}

/// How a forward pass runs its layers: evaluation, training (dropout draws masks, batch norm
/// updates its running statistics) or a replay of the last training pass's randomness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Eval,
    Train,
    Replay,
}

/// What `Network::backward_part` works on: the workspace's activations (all, read) and the
/// activity gradients from slot `first` on and the scratch of layers from `aux_first` on
/// (`grads[j]` is the workspace's `grads[first + j]`, `aux[j]` its `aux[aux_first + j]`).
pub struct BackwardPart<'a> {
    pub n: usize,
    pub acts: &'a [Vec<f32>],
    pub grads: &'a mut [Vec<f32>],
    pub aux: &'a mut [Aux],
    pub first: usize,
    pub aux_first: usize,
}

/// Per-layer scratch kept between the forward and the backward pass.
#[derive(Debug, Default)]
pub enum Aux {
    #[default]
    None,
    /// `cols`: the forward pass's im2col columns (whole-batch layout where the workspace keeps
    /// them for a Hebbian rule, `Workspace::keep_cols`, with `tmp` and `dcols` its scratch;
    /// else chunk by chunk, `tmp` and `dcols` empty; empty in a forward-only workspace,
    /// `Network::prepare_forward`); `parts`, `split`: the chunked convolution's scratch and the
    /// number of parts its last forward pass used.
    Conv {
        cols: Vec<f32>,
        tmp: Vec<f32>,
        dcols: Vec<f32>,
        parts: Vec<conv::ConvPart>,
        split: usize,
    },
    MaxPool {
        arg: Vec<u32>,
    },
    Bn {
        xhat: Vec<f32>,
        inv_std: Vec<f32>,
        /// The last forward pass used the running statistics.
        eval: bool,
    },
    Dropout {
        mask: Vec<f32>,
        /// The last forward pass dropped units with `mask` (training); false: it passed the
        /// input through (evaluation), and so does the backward pass (an attack's input gradient).
        on: bool,
    },
    Rnn(Box<RnnAux>),
    Ln {
        xhat: Vec<f32>,
        rstd: Vec<f32>,
    },
    Block(Box<BlockAux>),
    Latent(latent::LatentAux),
}

/// Buffers of one batch size: activations, their gradients, per-layer scratch.
#[derive(Debug, Default)]
pub struct Workspace {
    pub n: usize,
    /// acts[i]: input of layer i (acts[0] is the batch), acts[L]: the network's output.
    pub acts: Vec<Vec<f32>>,
    /// grads[i]: dL/d acts[i], filled by `backward` where needed.
    pub grads: Vec<Vec<f32>>,
    pub aux: Vec<Aux>,
    /// The layer whose input `acts[first]` holds this batch: 0 (the raw batch) unless the driver
    /// fed cached features of a frozen prefix (`Rule::frozen_prefix`). `prepare` resets it.
    pub first: usize,
    /// Buffers not in use (layer streaming: `Network::prepare_streaming`, `lend`, `reclaim`).
    pool: Vec<Vec<f32>>,
    /// Sized by `prepare_streaming` (only the input and output slots hold buffers).
    pub streaming: bool,
    /// Conv layers keep the whole batch's im2col columns in the whole-batch layout after the
    /// forward pass (set before `prepare`): for the Hebbian rules, whose updates read them.
    /// Otherwise (the default) a conv layer works its batch in cache-sized chunks split across
    /// the threads and keeps its columns chunk by chunk (`ConvGeom::forward_chunked`), or,
    /// prepared for the forward pass only, keeps none (each part reuses one chunk's).
    pub keep_cols: bool,
}

impl Workspace {
    /// An empty workspace whose conv layers keep the whole batch's im2col columns (`keep_cols`).
    pub fn keeping_cols() -> Self {
        Workspace { keep_cols: true, ..Workspace::default() }
    }

    /// The input slot for a batch of `n` samples (fill it, then call `Network::forward`).
    pub fn input_mut(&mut self) -> &mut [f32] {
        let n = self.n;
        let d = self.acts[0].len() / n.max(1);
        &mut self.acts[0][..n * d]
    }
    pub fn output(&self) -> &[f32] {
        self.acts.last().expect("workspace not prepared")
    }
    /// dL/d(output): where a rule writes its error before calling `backward`.
    pub fn output_grad_mut(&mut self) -> &mut [f32] {
        self.grads.last_mut().expect("workspace not prepared")
    }

    /// Bytes the workspace holds: every activation, gradient and scratch buffer, pooled ones
    /// included (capacities, not lengths).
    pub fn bytes(&self) -> usize {
        let v = |v: &Vec<f32>| v.capacity() * 4;
        let aux: usize = self
            .aux
            .iter()
            .map(|a| match a {
                Aux::None => 0,
                Aux::Conv { cols, tmp, dcols, parts, .. } => {
                    v(cols) + v(tmp) + v(dcols) + parts.iter().map(|p| p.bytes()).sum::<usize>()
                }
                Aux::MaxPool { arg } => arg.capacity() * 4,
                Aux::Bn { xhat, inv_std, .. } => v(xhat) + v(inv_std),
                Aux::Dropout { mask, .. } => v(mask),
                Aux::Rnn(a) => a.bytes(),
                Aux::Ln { xhat, rstd } => v(xhat) + v(rstd),
                Aux::Block(a) => a.bytes(),
                Aux::Latent(a) => v(&a.eps),
            })
            .sum();
        self.acts.iter().chain(&self.grads).chain(&self.pool).map(v).sum::<usize>() + aux
    }

    /// Layer streaming: make `acts[i]` (and `grads[i]` when `grad`) hold at least `len` values,
    /// with a buffer from the pool when it holds none (no allocation once the pool has enough).
    pub fn lend(&mut self, i: usize, len: usize, grad: bool) {
        for slot in [Some(&mut self.acts[i]), grad.then_some(&mut self.grads[i])].into_iter().flatten() {
            if slot.capacity() == 0 {
                if let Some(v) = self.pool.pop() {
                    *slot = v;
                }
            }
            if slot.len() < len {
                slot.resize(len, 0.0);
            }
        }
    }

    /// Layer streaming: return `grads[i]`, and `acts[i]` when `act`, to the pool (their values
    /// are no longer needed by this step).
    pub fn reclaim(&mut self, i: usize, act: bool) {
        let a = if act { std::mem::take(&mut self.acts[i]) } else { Vec::new() };
        for v in [a, std::mem::take(&mut self.grads[i])] {
            if v.capacity() > 0 {
                self.pool.push(v);
            }
        }
    }
}

fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j);
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&mut a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&mut b[0], &mut a[j])
    }
}

/// The gradient buffers of a recurrent layer's W_x, W_h, b and b_h, borrowed at once (four
/// distinct parameters) for `f`.
fn recurrent_grads(
    grads: &mut [Vec<f32>],
    w: [usize; 2],
    b: Option<usize>,
    bh: Option<usize>,
    f: impl FnOnce(&mut [f32], &mut [f32], Option<&mut [f32]>, Option<&mut [f32]>),
) {
    let mut taken: Vec<(usize, Vec<f32>)> =
        [Some(w[0]), Some(w[1]), b, bh].into_iter().flatten().map(|i| (i, std::mem::take(&mut grads[i]))).collect();
    {
        let mut it = taken.iter_mut();
        let dwx = &mut it.next().unwrap().1;
        let dwh = &mut it.next().unwrap().1;
        let db = b.map(|_| it.next().unwrap().1.as_mut_slice());
        let dbh = bh.map(|_| it.next().unwrap().1.as_mut_slice());
        f(dwx, dwh, db, dbh);
    }
    for (i, v) in taken {
        grads[i] = v;
    }
}

/// y = x W^T + b for a batch of n rows (W: out x inp).
pub fn dense_forward(x: &[f32], n: usize, inp: usize, out: usize, w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    linalg::matmul_bias_nt(n, out, inp, x, w, b, y);
}

thread_local! {
    /// `backward` on this thread skips the dense and convolution layers' parameter gradients
    /// (`without_param_grads`).
    static NO_PARAM_GRADS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with every `backward` it calls on this thread computing activity gradients only: the
/// dense and convolution layers leave their weight and bias gradients in `grads` as they were
/// (other layers' few parameters are still written). For a caller that discards them:
/// predictive coding's inference backprojects errors through every block at every step, and
/// takes its weight gradients afterwards.
pub fn without_param_grads<R>(f: impl FnOnce() -> R) -> R {
    let was = NO_PARAM_GRADS.with(|c| c.replace(true));
    let r = f();
    NO_PARAM_GRADS.with(|c| c.set(was));
    r
}

/// Whether `backward` computes the dense and convolution layers' parameter gradients here.
pub fn param_grads_wanted() -> bool {
    !NO_PARAM_GRADS.with(|c| c.get())
}

/// dW = g^T x, db = column sums of g (unless `without_param_grads`), and dx = g F (F = W for
/// backprop) when asked.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward(
    g: &[f32],
    x: &[f32],
    n: usize,
    inp: usize,
    out: usize,
    grads: &mut [Vec<f32>],
    w: usize,
    b: Option<usize>,
    dx: Option<(&[f32], &mut [f32])>,
) {
    if param_grads_wanted() {
        linalg::matmul(out, inp, n, g, true, x, false, &mut grads[w], false);
        if let Some(b) = b {
            let db = &mut grads[b];
            db.fill(0.0);
            linalg::add_col_sums(g, n, out, db);
        }
    }
    if let Some((f, dx)) = dx {
        linalg::matmul(n, inp, out, g, false, f, false, dx, false);
    }
}

/// dW = g^T x and db = column sums of g (both overwritten), for `rows` rows.
pub fn dense_grads(g: &[f32], x: &[f32], rows: usize, inp: usize, out: usize, dw: &mut [f32], db: &mut [f32]) {
    linalg::matmul(out, inp, rows, g, true, x, false, dw, false);
    db.fill(0.0);
    linalg::add_col_sums(&g[..rows * out], rows, out, db);
}

/// Feedback matrices per layer index (None: propagate with the layer's own weights).
/// Per layer index: the parameter used in place of the layer's weight on the way back (None: W).
pub type FeedbackMats = [Option<usize>];

impl Network {
    pub fn input_shape(&self) -> Shape {
        self.shapes[0]
    }
    pub fn output_len(&self) -> usize {
        self.shapes.last().unwrap().len()
    }
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    /// Indices of layers that carry a weight (dense, conv), in order.
    pub fn weight_layers(&self) -> Vec<usize> {
        (0..self.layers.len()).filter(|&i| self.layers[i].weight().is_some()).collect()
    }
    pub fn num_trainable(&self) -> usize {
        self.params.iter().filter(|p| p.trainable()).map(|p| p.data.len()).sum()
    }
    /// Per parameter: the length of its update and optimiser moments, its size where it is
    /// `trainable`, else 0 (buffers and feedback matrices have neither).
    pub fn update_sizes(&self) -> Vec<usize> {
        self.params.iter().map(|p| if p.trainable() { p.data.len() } else { 0 }).collect()
    }

    /// Zeroed update buffers (`update_sizes` long).
    pub fn zero_grads(&self) -> Vec<Vec<f32>> {
        self.update_sizes().into_iter().map(|n| vec![0.0; n]).collect()
    }

    /// Add a parameter that no layer reads (a rule's feedback matrix); returns its index.
    pub fn add_param(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>, kind: ParamKind) -> usize {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "parameter {name}: shape and data disagree");
        self.params.push(Param { name, shape, data, kind });
        self.params.len() - 1
    }

    /// Parameter `read`'s data beside parameter `write`'s, mutable (two distinct indices).
    pub fn param_pair(&mut self, read: usize, write: usize) -> (&[f32], &mut [f32]) {
        assert_ne!(read, write);
        if read < write {
            let (lo, hi) = self.params.split_at_mut(write);
            (&lo[read].data, &mut hi[0].data)
        } else {
            let (lo, hi) = self.params.split_at_mut(read);
            (&hi[0].data, &mut lo[write].data)
        }
    }

    /// Size the workspace for a batch of `n` (no allocation when it already fits).
    pub fn prepare(&self, ws: &mut Workspace, n: usize) {
        self.size_workspace(ws, n, true);
    }

    /// Size the workspace for a layer-streaming rule (one that keeps only the block it is
    /// updating: `Rule::streams`): the input, the output and its gradient; every other activation
    /// and gradient slot is empty until the rule `lend`s it a buffer and `reclaim`s it after use,
    /// so a step holds a few layers' buffers, not the network's. MLPs only (dense and activation
    /// layers: `streamable`), whose layers keep no per-layer scratch.
    pub fn prepare_streaming(&self, ws: &mut Workspace, n: usize) {
        assert!(self.streamable(), "prepare_streaming: the network has layers other than dense and activation");
        let l = self.layers.len();
        self.slots(ws, n, true);
        for i in 1..l {
            ws.reclaim(i, true);
        }
        let (d, k) = (n * self.shapes[0].len(), n * self.shapes[l].len());
        ws.acts[0].resize(d, 0.0);
        ws.grads[0] = Vec::new();
        ws.acts[l].resize(k, 0.0);
        ws.grads[l].resize(k, 0.0);
    }

    /// Forward through layers `lo..hi` on a streaming workspace, keeping `acts[hi]` only (and
    /// `acts[lo]`): each layer's input goes back to the pool once its output is computed.
    pub fn forward_streaming(&mut self, ws: &mut Workspace, lo: usize, hi: usize, train: bool, rng: &mut Rng) {
        for i in lo..hi {
            ws.lend(i + 1, ws.n * self.shapes[i + 1].len(), false);
            self.forward_layers(ws, i, i + 1, train, rng);
            if i > lo {
                ws.reclaim(i, true);
            }
        }
    }

    /// Whether any layer is recurrent (`Layer::Recurrent`).
    pub fn has_recurrent(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, Layer::Recurrent { .. }))
    }

    /// Whether the network is a variational autoencoder (has a Gaussian latent layer).
    pub fn has_latent(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, Layer::Latent { .. }))
    }

    /// The latent layers' KL divergence from their prior, summed over the batch of the last
    /// forward pass through them (0 without latent layers).
    pub fn latent_kl(&self, ws: &Workspace) -> f64 {
        ws.aux.iter().map(|a| if let Aux::Latent(a) = a { a.kl } else { 0.0 }).sum()
    }

    /// The KL terms' weight in the loss the next backward pass differentiates.
    pub fn set_kl_weight(&self, ws: &mut Workspace, weight: f32) {
        for a in ws.aux.iter_mut() {
            if let Aux::Latent(a) = a {
                a.weight = weight;
            }
        }
    }

    /// Whether any layer is a transformer's (embedding, block).
    pub fn has_transformer(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, Layer::Block { .. } | Layer::Embed { .. }))
    }

    /// Recurrent layer `i`'s state h_t (t = 1..T) after the last forward pass: N x H.
    pub fn recurrent_state<'a>(&self, ws: &'a Workspace, i: usize, t: usize) -> &'a [f32] {
        let (Layer::Recurrent { geom, .. }, Aux::Rnn(a)) = (&self.layers[i], &ws.aux[i]) else {
            panic!("layer {i} is not a recurrent layer that has run forward");
        };
        geom.state(a, ws.n, t)
    }

    /// Recurrent layer `i`'s parameter gradients from per-step losses with no gradient between
    /// steps (`RnnGeom::backward` with `truncate`): `gy` is N x T x H, dL/dh_t of step t's own
    /// loss. Overwrites the layer's entries of `grads`; no input gradient.
    pub fn recurrent_backward_truncated(&self, ws: &mut Workspace, grads: &mut [Vec<f32>], i: usize, gy: &[f32]) {
        let (Layer::Recurrent { wx, wh, b, bh, geom }, Aux::Rnn(a)) = (&self.layers[i], &mut ws.aux[i]) else {
            panic!("layer {i} is not a recurrent layer that has run forward");
        };
        let n = ws.n;
        recurrent_grads(grads, [*wx, *wh], *b, *bh, |dwx, dwh, db, dbh| {
            geom.backward(gy, n, &self.params[*wh].data, a, true, dwx, dwh, db, dbh, None);
        });
    }

    /// Whether `prepare_streaming` can size this network (dense and activation layers only).
    pub fn streamable(&self) -> bool {
        self.layers.iter().all(|l| matches!(l, Layer::Dense { .. } | Layer::Act(_)))
    }

    /// Size the workspace for forward passes only (evaluation): no gradient buffers, no im2col
    /// gradient scratch, and (unless `keep_cols`) no im2col columns kept: each part of a conv
    /// layer's chunked pass reuses one chunk's (for conv nets at large batches a fraction of
    /// `prepare`'s memory: hebb-conv3's second layer alone keeps 1.44 GB of columns at 1000).
    pub fn prepare_forward(&self, ws: &mut Workspace, n: usize) {
        self.size_workspace(ws, n, false);
    }

    /// One slot per activation (and scratch per layer) for this network; the batch size and mode.
    fn slots(&self, ws: &mut Workspace, n: usize, streaming: bool) {
        let l = self.layers.len();
        if ws.acts.len() != l + 1 {
            ws.acts = (0..=l).map(|_| Vec::new()).collect();
            ws.grads = (0..=l).map(|_| Vec::new()).collect();
            ws.aux = (0..l).map(|_| Aux::None).collect();
        }
        ws.n = n;
        ws.first = 0;
        ws.streaming = streaming;
    }

    fn size_workspace(&self, ws: &mut Workspace, n: usize, backward: bool) {
        let l = self.layers.len();
        self.slots(ws, n, false);
        for i in 0..=l {
            let len = n * self.shapes[i].len();
            ws.acts[i].resize(len, 0.0);
            if backward {
                ws.grads[i].resize(len, 0.0);
            }
        }
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Layer::Conv { geom, .. } if !geom.is_dense() => {
                    if !matches!(ws.aux[i], Aux::Conv { .. }) {
                        ws.aux[i] = Aux::Conv { cols: vec![], tmp: vec![], dcols: vec![], parts: vec![], split: 1 };
                    }
                    if let Aux::Conv { cols, tmp, dcols, .. } = &mut ws.aux[i] {
                        // A forward-only workspace keeps no columns (the chunked forward reuses
                        // one chunk's per part); a training one keeps them for the backward pass.
                        if backward || ws.keep_cols {
                            cols.resize(n * geom.p() * geom.ckk(), 0.0);
                        } else {
                            *cols = Vec::new();
                        }
                        if ws.keep_cols {
                            if backward {
                                dcols.resize(n * geom.p() * geom.ckk(), 0.0);
                            }
                            tmp.resize(n * geom.p() * geom.o, 0.0);
                        } else {
                            // (The chunked convolution sizes its parts' scratch as it runs.)
                            (*tmp, *dcols) = (Vec::new(), Vec::new());
                        }
                    }
                }
                Layer::MaxPool(g) => {
                    if !matches!(ws.aux[i], Aux::MaxPool { .. }) {
                        ws.aux[i] = Aux::MaxPool { arg: vec![] };
                    }
                    if let Aux::MaxPool { arg } = &mut ws.aux[i] {
                        arg.resize(n * g.out_len(), 0);
                    }
                }
                Layer::BatchNorm { geom, .. } => {
                    if !matches!(ws.aux[i], Aux::Bn { .. }) {
                        ws.aux[i] = Aux::Bn { xhat: vec![], inv_std: vec![], eval: false };
                    }
                    if let Aux::Bn { xhat, inv_std, .. } = &mut ws.aux[i] {
                        xhat.resize(n * geom.c * geom.p, 0.0);
                        inv_std.resize(geom.c, 0.0);
                    }
                }
                Layer::Recurrent { geom, .. } => {
                    if !matches!(ws.aux[i], Aux::Rnn(_)) {
                        ws.aux[i] = Aux::Rnn(Box::default());
                    }
                    if let Aux::Rnn(a) = &mut ws.aux[i] {
                        geom.prepare(a, n, backward);
                    }
                }
                Layer::LayerNorm { d, .. } => {
                    if !matches!(ws.aux[i], Aux::Ln { .. }) {
                        ws.aux[i] = Aux::Ln { xhat: vec![], rstd: vec![] };
                    }
                    if let Aux::Ln { xhat, rstd } = &mut ws.aux[i] {
                        let rows = n * self.shapes[i].len() / d;
                        xhat.resize(rows * d, 0.0);
                        rstd.resize(rows, 0.0);
                    }
                }
                Layer::Block { geom, .. } => {
                    if !matches!(ws.aux[i], Aux::Block(_)) {
                        ws.aux[i] = Aux::Block(Box::default());
                    }
                    if let Aux::Block(a) = &mut ws.aux[i] {
                        geom.prepare(a, n, backward);
                    }
                }
                Layer::Latent { .. } if !matches!(ws.aux[i], Aux::Latent(_)) => {
                    ws.aux[i] = Aux::Latent(Default::default());
                }
                Layer::Dropout(_) => {
                    if !matches!(ws.aux[i], Aux::Dropout { .. }) {
                        ws.aux[i] = Aux::Dropout { mask: vec![], on: false };
                    }
                    if let Aux::Dropout { mask, .. } = &mut ws.aux[i] {
                        mask.resize(n * self.shapes[i].len(), 0.0);
                    }
                }
                _ => {}
            }
        }
    }

    /// Forward pass over `ws.acts[0]` (batch of `ws.n`). `train`: batch statistics, dropout on
    /// (drawing masks from `rng`), running statistics updated.
    pub fn forward(&mut self, ws: &mut Workspace, train: bool, rng: &mut Rng) {
        self.forward_layers(ws, 0, self.layers.len(), train, rng);
    }

    /// Forward through layers `lo..hi` only, from `ws.acts[lo]` to `ws.acts[hi]`, in evaluation
    /// mode (for rules that re-run parts of the network, e.g. predictive coding's blocks).
    pub fn forward_range(&mut self, ws: &mut Workspace, lo: usize, hi: usize) {
        self.forward_layers(ws, lo, hi, false, &mut Rng::new(0));
    }

    /// Forward through layers `lo..hi` in training (`train`) or evaluation mode.
    pub fn forward_layers(&mut self, ws: &mut Workspace, lo: usize, hi: usize, train: bool, rng: &mut Rng) {
        self.run_layers(ws, lo, hi, if train { Pass::Train } else { Pass::Eval }, rng);
    }

    /// A second training-mode forward pass over `ws.acts[0]` that replays the first one's
    /// randomness: dropout applies the masks the last training pass drew (PEPITA's two passes
    /// share them), batch norm normalises with the batch's statistics and leaves the running
    /// statistics as the first pass left them.
    pub fn forward_replay(&mut self, ws: &mut Workspace) {
        self.forward_replay_layers(ws, 0, self.layers.len());
    }

    /// `forward_replay` through layers `lo..hi` only (from `ws.acts[lo]` to `ws.acts[hi]`), for a
    /// rule that perturbs activities between layers (PAL's noise).
    pub fn forward_replay_layers(&mut self, ws: &mut Workspace, lo: usize, hi: usize) {
        self.run_layers(ws, lo, hi, Pass::Replay, &mut Rng::new(0));
    }

    fn run_layers(&mut self, ws: &mut Workspace, lo: usize, hi: usize, pass: Pass, rng: &mut Rng) {
        let train = pass != Pass::Eval;
        let n = ws.n;
        for i in lo..hi {
            if let (Some(hw), Some(_)) = (&self.hw, self.layers[i].weight()) {
                let d = self.shapes[i].len();
                hardware::quantize_rows(&mut ws.acts[i][..n * d], d, hw.activation_bits);
            }
            let (lo, hi) = ws.acts.split_at_mut(i + 1);
            let x = &lo[i][..n * self.shapes[i].len()];
            let y = &mut hi[0][..n * self.shapes[i + 1].len()];
            let params = &mut self.params;
            match &self.layers[i] {
                Layer::Dense { w, b, inp, out } => {
                    let bias = b.map(|b| params[b].data.as_slice());
                    match &self.hw {
                        Some(hw) if hw.adc_bits > 0 => {
                            hw.dense_forward(x, n, *inp, *out, &params[*w].data, hw.ranges[*w], bias, y)
                        }
                        _ => dense_forward(x, n, *inp, *out, &params[*w].data, bias, y),
                    }
                }
                Layer::Conv { w, b, geom } if geom.is_dense() => {
                    let bias = b.map(|b| params[b].data.as_slice());
                    match &self.hw {
                        Some(hw) if hw.adc_bits > 0 => {
                            hw.dense_forward(x, n, geom.ckk(), geom.o, &params[*w].data, hw.ranges[*w], bias, y)
                        }
                        _ => dense_forward(x, n, geom.ckk(), geom.o, &params[*w].data, bias, y),
                    }
                }
                Layer::Conv { w, b, geom } => {
                    let Aux::Conv { cols, tmp, parts, split, .. } = &mut ws.aux[i] else { unreachable!() };
                    let bias = b.map(|b| params[b].data.as_slice());
                    if ws.keep_cols {
                        geom.forward(x, n, &params[*w].data, bias, cols, tmp, y);
                    } else {
                        *split = geom.forward_chunked(x, n, &params[*w].data, bias, parts, cols, y);
                    }
                }
                Layer::MaxPool(g) => {
                    let Aux::MaxPool { arg } = &mut ws.aux[i] else { unreachable!() };
                    g.max_forward(x, n, y, arg);
                }
                Layer::Recurrent { wx, wh, b, bh, geom } => {
                    let Aux::Rnn(a) = &mut ws.aux[i] else { unreachable!() };
                    let (b, bh) = (b.map(|b| params[b].data.as_slice()), bh.map(|b| params[b].data.as_slice()));
                    geom.forward(x, n, &params[*wx].data, &params[*wh].data, b, bh, a, y);
                }
                Layer::Embed { tok, pos, geom } => geom.forward(x, n, &params[*tok].data, &params[*pos].data, y),
                Layer::LayerNorm { g, b, d } => {
                    let Aux::Ln { xhat, rstd } = &mut ws.aux[i] else { unreachable!() };
                    transformer::ln_forward(x, *d, &params[*g].data, &params[*b].data, y, xhat, rstd);
                }
                Layer::Block { p, geom } => {
                    let Aux::Block(a) = &mut ws.aux[i] else { unreachable!() };
                    geom.forward(x, n, params, p, a, y);
                }
                Layer::TokenDense { w, b, inp, out } => {
                    let bias = b.map(|b| params[b].data.as_slice());
                    dense_forward(x, x.len() / inp, *inp, *out, &params[*w].data, bias, y);
                }
                Layer::Latent { z } => {
                    let Aux::Latent(a) = &mut ws.aux[i] else { unreachable!() };
                    latent::forward(x, n, *z, a, pass == Pass::Replay, rng, y);
                }
                Layer::AvgPool(g) => g.avg_forward(x, n, y),
                Layer::Act(a) => {
                    let a = *a;
                    linalg::par_zip(y, x, |_, o, inp| a.forward_slice(inp, o));
                }
                Layer::Compete(g) => g.forward(x, n, y),
                Layer::SampleNorm => samplenorm::forward(x, n, x.len() / n.max(1), y),
                Layer::Dropout(p) => {
                    if train && *p > 0.0 {
                        let Aux::Dropout { mask, on } = &mut ws.aux[i] else { unreachable!() };
                        *on = true;
                        if pass == Pass::Train {
                            let keep = 1.0 - *p;
                            let scale = 1.0 / keep;
                            // Branch-free (a random mask mispredicts half its branches):
                            // 1 x scale or 0 x scale, the same values as a select.
                            for m in mask.iter_mut() {
                                *m = f32::from(u8::from(rng.uniform() < keep)) * scale;
                            }
                        }
                        for ((yv, xv), m) in y.iter_mut().zip(x).zip(mask.iter()) {
                            *yv = xv * m;
                        }
                    } else {
                        // Evaluation passes the input through, and so must a backward pass after
                        // it (an attack's input gradient): not the last training mask.
                        if let Aux::Dropout { on, .. } = &mut ws.aux[i] {
                            *on = false;
                        }
                        y.copy_from_slice(x);
                    }
                }
                Layer::BatchNorm { affine, mean, var, geom } => {
                    // Running statistics are taken out for the call (no copy, no allocation)
                    // so that gamma and beta can be borrowed beside them.
                    let mut rm = std::mem::take(&mut params[*mean].data);
                    let mut rv = std::mem::take(&mut params[*var].data);
                    let gb = affine.map(|(g, b)| (params[g].data.as_slice(), params[b].data.as_slice()));
                    let Aux::Bn { xhat, inv_std, eval } = &mut ws.aux[i] else { unreachable!() };
                    *eval = !train;
                    if pass == Pass::Replay {
                        // The batch's statistics again; the running ones stay as they were.
                        let (mut m2, mut v2) = (rm.clone(), rv.clone());
                        geom.forward_train(x, n, gb, (&mut m2, &mut v2), xhat, inv_std, y);
                    } else if train {
                        geom.forward_train(x, n, gb, (&mut rm, &mut rv), xhat, inv_std, y);
                    } else {
                        geom.forward_eval(x, n, gb, (&rm, &rv), y, Some((xhat, inv_std)));
                    }
                    params[*mean].data = rm;
                    params[*var].data = rv;
                }
            }
        }
    }

    /// Backward pass through layers `lo..hi`, starting from `ws.grads[hi]`.
    ///
    /// Writes every trainable parameter gradient of those layers into `grads` (overwriting), and
    /// `ws.grads[i]` for `lo < i < hi` (and for `i = lo` when `input_grad`). Through a weight
    /// layer i the signal goes back through parameter `feedback[i]` when given (same shape as W),
    /// else W.
    pub fn backward(
        &self,
        ws: &mut Workspace,
        grads: &mut [Vec<f32>],
        lo: usize,
        hi: usize,
        feedback: Option<&FeedbackMats>,
        input_grad: bool,
    ) {
        let part =
            BackwardPart { n: ws.n, acts: &ws.acts, grads: &mut ws.grads, aux: &mut ws.aux, first: 0, aux_first: 0 };
        self.backward_part(part, grads, lo, hi, feedback, input_grad);
    }

    /// `backward` over a part of a workspace (`BackwardPart`: the activity gradients and scratch
    /// of layers `first..`), so that blocks with disjoint layers can run at once on disjoint
    /// parts (layer-parallel direct feedback).
    pub fn backward_part(
        &self,
        part: BackwardPart,
        grads: &mut [Vec<f32>],
        lo: usize,
        hi: usize,
        feedback: Option<&FeedbackMats>,
        input_grad: bool,
    ) {
        let BackwardPart { n, acts, grads: wg, aux, first, aux_first } = part;
        for i in (lo..hi).rev() {
            if let (Some(hw), Some(_)) = (&self.hw, self.layers[i].weight()) {
                let len = n * self.shapes[i + 1].len();
                hardware::quantize_error(&mut wg[i + 1 - first][..len], hw.error_bits);
            }
            let need_dx = i > lo || input_grad;
            let (glo, ghi) = wg.split_at_mut(i + 1 - first);
            let g = &ghi[0][..n * self.shapes[i + 1].len()];
            // (Empty where no input gradient is wanted: a streaming workspace has no buffer there.)
            let dx: &mut [f32] = if need_dx { &mut glo[i - first][..n * self.shapes[i].len()] } else { &mut [] };
            let x = &acts[i][..n * self.shapes[i].len()];
            let y = &acts[i + 1][..n * self.shapes[i + 1].len()];
            let fb = |w: usize| -> &[f32] { &self.params[feedback.and_then(|f| f[i]).unwrap_or(w)].data };
            match &self.layers[i] {
                Layer::Dense { w, b, inp, out } => {
                    dense_backward(g, x, n, *inp, *out, grads, *w, *b, need_dx.then(|| (fb(*w), dx)));
                }
                Layer::Conv { w, b, geom } if geom.is_dense() => {
                    let (inp, out) = (geom.ckk(), geom.o);
                    dense_backward(g, x, n, inp, out, grads, *w, *b, need_dx.then(|| (fb(*w), dx)));
                }
                Layer::Conv { w, b, geom } => {
                    let Aux::Conv { cols, tmp, dcols, parts, split } = &mut aux[i - aux_first] else { unreachable!() };
                    let (dw, db) = match b {
                        Some(b) => {
                            let (dw, db) = two_mut(grads, *w, *b);
                            (dw, Some(db.as_mut_slice()))
                        }
                        None => (&mut grads[*w], None),
                    };
                    if tmp.is_empty() {
                        // The chunked forward's columns (`Workspace::keep_cols` off: `prepare`
                        // leaves `tmp` empty).
                        geom.backward_chunked(g, n, cols, *split, parts, dw, db, need_dx.then(|| (fb(*w), dx)));
                    } else {
                        let dxs = if need_dx { Some((fb(*w), dcols.as_mut_slice(), dx)) } else { None };
                        geom.backward(g, n, cols, tmp, dw, db, dxs);
                    }
                }
                Layer::Recurrent { wx, wh, b, bh, geom } => {
                    let Aux::Rnn(a) = &mut aux[i - aux_first] else { unreachable!() };
                    recurrent_grads(grads, [*wx, *wh], *b, *bh, |dwx, dwh, db, dbh| {
                        let dxs = need_dx.then(|| (fb(*wx), dx));
                        geom.backward(g, n, &self.params[*wh].data, a, false, dwx, dwh, db, dbh, dxs);
                    });
                }
                Layer::Embed { tok, pos, geom } => {
                    let (dt, dp) = two_mut(grads, *tok, *pos);
                    geom.backward(x, g, n, dt, dp);
                    // Token ids have no gradient.
                    dx.fill(0.0);
                }
                Layer::LayerNorm { g: gm, b, d } => {
                    let Aux::Ln { xhat, rstd } = &aux[i - aux_first] else { unreachable!() };
                    let (dg, db) = two_mut(grads, *gm, *b);
                    let gamma = &self.params[*gm].data;
                    transformer::ln_backward(g, *d, gamma, xhat, rstd, dg, db, need_dx.then_some(dx), false);
                }
                Layer::Block { p, geom } => {
                    let Aux::Block(a) = &mut aux[i - aux_first] else { unreachable!() };
                    geom.backward(g, n, &self.params, p, a, grads, need_dx.then_some(dx));
                }
                Layer::TokenDense { w, b, inp, out } => {
                    let rows = x.len() / inp;
                    dense_backward(g, x, rows, *inp, *out, grads, *w, *b, need_dx.then(|| (fb(*w), dx)));
                }
                Layer::Latent { z } => {
                    if need_dx {
                        let Aux::Latent(a) = &aux[i - aux_first] else { unreachable!() };
                        latent::backward(x, g, n, *z, a, dx);
                    }
                }
                Layer::MaxPool(geo) => {
                    if need_dx {
                        let Aux::MaxPool { arg } = &aux[i - aux_first] else { unreachable!() };
                        geo.max_backward(g, n, arg, dx);
                    }
                }
                Layer::AvgPool(geo) => {
                    if need_dx {
                        geo.avg_backward(g, n, dx);
                    }
                }
                Layer::Act(a) => {
                    if need_dx {
                        let a = *a;
                        linalg::par_zip(dx, g, |off, d, gc| {
                            a.backward_slice(&x[off..off + d.len()], &y[off..off + d.len()], gc, d);
                        });
                    }
                }
                Layer::Compete(geo) => {
                    if need_dx {
                        geo.backward(x, y, g, n, dx);
                    }
                }
                Layer::SampleNorm => {
                    if need_dx {
                        samplenorm::backward(x, g, n, x.len() / n.max(1), dx);
                    }
                }
                Layer::Dropout(_) => {
                    if need_dx {
                        let Aux::Dropout { mask, on } = &aux[i - aux_first] else { unreachable!() };
                        if *on {
                            for ((d, gv), m) in dx.iter_mut().zip(g).zip(mask.iter()) {
                                *d = gv * m;
                            }
                        } else {
                            dx.copy_from_slice(g);
                        }
                    }
                }
                Layer::BatchNorm { affine, geom, .. } => {
                    let Aux::Bn { xhat, inv_std, eval } = &aux[i - aux_first] else { unreachable!() };
                    let gamma = affine.map(|(gm, _)| self.params[gm].data.as_slice());
                    let dgb = match affine {
                        Some((gm, bt)) => {
                            let (a, b) = two_mut(grads, *gm, *bt);
                            Some((a.as_mut_slice(), b.as_mut_slice()))
                        }
                        None => None,
                    };
                    geom.backward(*eval, g, n, gamma, xhat, inv_std, dgb, if need_dx { Some(dx) } else { None });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
