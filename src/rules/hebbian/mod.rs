//! Hebbian layers without feedback, target or error signal, under a linear read-out. This file
//! is the driver of their phases (unsupervised, then read-out epochs; `Rule::phase`), their
//! micro-batches and per-neuron rates, and the `Plasticity` trait; each plasticity rule
//! implements it in its own file with its settings and registry entries: `softhebb.rs`
//! (`SoftWta`: soft winner-take-all, single and multilayer), `instar.rs` (`Instar`:
//! winner-take-all instar), `subspace.rs` (`Subspace`: Activation Learning and its activation
//! read-out).
//!
//! Every weight layer but the last is Hebbian. For one such layer with weights W (K neurons or
//! channels), input patches x (the dense input, or the k x k x C_in patch at each position)
//! and pre-activations u = W x, at each sample and position:
//!
//! **SoftHebb** (`softhebb`, `softhebb-deep`; Moraitis et al. 2022, single layer; Journe et al.
//! ICLR 2023, multilayer convolutional; code `NeuromorphicComputing/SoftHebb`, `hebblinear.py`,
//! `hebbconv.py`), no bias:
//!
//!   y = softmax(t_inv u) over the K neurons / channels
//!   anti-Hebbian (`softhebb-deep`): y_k -> -y_k for every k but the winner argmax_k u_k
//!   dW_k = sum_{b,pos} y_k x  -  (sum_{b,pos} y_k u_k) W_k       (Hebbian term, decay term)
//!   dW /= max |dW| over the whole layer
//!   W_k += eta_k dW_k,   eta_k = lr (| ||W_k|| - 1 | + 1e-10)^power_lr
//!
//! Optional bias (a Hebbian layer with a bias, `softhebb-mlp:H/bias`; Moraitis et al.'s
//! `HebbSoftLinear`): u = W x + b, and b learns each neuron's log prior,
//!   db_k = (sum_{b,pos} y_k - N e^{t_inv b_k}) / e^{t_inv b_k},  db /= max |db|,
//!   b_k += (eta_k / t_inv) db_k,   b starting at ln(1/K) / t_inv (uniform priors).
//!
//! The decay term pulls every ||W_k|| to 1, and the per-neuron rate falls with it (the rule's
//! own annealing; no schedule). Initialisation as in the code: dense layers (raw pixels in
//! [0, 1]) W ~ U[0, sqrt(3 r^2 / n)) with r = 35; conv layers (after a batch norm) W ~
//! N(0, (25 / sqrt(C_in k^2))^2). Drawn when the rule is built (`RuleName::build`), from the rule's own stream.
//!
//! **Winner-take-all instar** (`hebb-wta`; Miconi 2021 `ThomasMiconi/HebbianCNNPyTorch`, the
//! Hebbian arm of Gupta et al. 2022): the conv bias holds minus an adaptive threshold theta_k,
//! u = W x - theta; at each sample and position the one channel with the largest u wins if
//! u > 0 (y = 1, all others 0);
//!   W_k += lr sum_{b,pos} y_k (x - W_k)        (instar), then W_k /= ||W_k||
//!   theta_k += mu (mean_{b,pos} y_k - 1/K)     (homeostasis: every channel wins 1/K of the time)
//! W starts as unit-norm Gaussian filters, theta at 0. Deviations from the notebook: no ZCA
//! whitening (each layer's input is standardised per sample, as the notebook also does), no
//! random 99% connection masks, no burn-in.
//!
//! **Activation Learning** (`activation-learning`; Hongchao Zhou 2022, arXiv 2209.13400, the
//! rule as restated in ALAD, Ding et al. 2025, eqs. 2, 6, 7): on dense layers without bias, with
//! the linear output z = W a of the layer's input a (unit-norm at the first layer, the
//! norm-preserving activation beta (|z| - mean|z|) after each layer),
//!   W += (eta / B) sum_b z (a - W^T z)^T       (Oja's subspace rule: local competition)
//! at a constant rate eta per layer, from small Gaussian weights N(0, (0.1 / sqrt(inputs))^2).
//! Two read-outs: unsupervised pre-training under the linear read-out (the default), or the
//! paper's own "activation" read-out (`al_label = s > 0`): the label enters the input, which
//! becomes a_0 = [x / |x|, s e_y] / sqrt(1 + s^2) (the first layer's label weights W_y learn by
//! the same rule, as the label columns of W), every epoch learns on (image, label) pairs, and
//! the prediction is argmax_c ||a_L(x, c)||^2 over the classes c ("learn more, activate more";
//! the last Hebbian layer's output a_L, the dense read-out is not used).
//!
//! Schedule inside `--epochs N` (the driver's epochs): the first `hebb_epochs` (default 1)
//! are unsupervised: every layer learns at once (as `demo.py`), or with `hebb_greedy` layer e
//! alone in unsupervised epoch e (greedy layer-wise), on micro-batches of `hebb_batch`. With
//! `hebb_updates` > 0 (SoftHebb) an unsupervised epoch is that many micro-batch updates, however
//! many passes over the training set they take (the driver repeats shuffled passes until
//! `Rule::settled`), ended early once every neuron's norm is within `hebb_settle` of 1: a small
//! data set gets the Hebbian steps a large one gets. The unsupervised epochs are cut to leave
//! the read-out at least the run's last epoch. Then the linear read-out (the last weight layer
//! and the dropout before it) trains on the frozen features (the reference code's order), by
//! backprop through the read-out only, with the driver's optimiser, its learning-rate schedule
//! starting at the first read-out epoch (`Rule::schedule_start`); in unsupervised epochs the
//! read-out is untrained (their test accuracy is chance; their training loss and accuracy are the
//! untrained read-out's on each micro-batch's features before its update, so no second forward
//! pass is spent on them). Hebbian layers and their batch norms
//! are in evaluation mode for the read-out; their weights are never touched by the optimiser.
//!
//! A one-epoch run (`--epochs 1`, and the online condition's single pass over a stream) has no
//! epoch to spare for a read-out after the features: there the Hebbian layers and the read-out
//! learn together ("concurrent" phase): each batch makes its Hebbian updates, then one read-out
//! step on the features as they now are (every sample seen once, by both).
//!
//! # Shapes
//! Y: K x (N P) (neuron-major, columns (sample, position)); patches: CKK x (N P) for conv
//! (the layer's im2col), N x inp for dense; W: K x inp.

use super::{Phase, Prediction, Rule, Step, StepStats, Updater};
use crate::linalg;
use crate::nn::{Layer, Loss, Network, Workspace};
use crate::rng::Rng;

mod instar;
mod softhebb;
mod subspace;

pub use instar::{normalize_rows, HebbWtaSettings, Instar, HEBB_WTA, NONE};
pub use softhebb::{SoftHebbDeepSettings, SoftHebbSettings, SoftWta, SOFTHEBB, SOFTHEBB_DEEP};
pub use subspace::{ActivationLearningSettings, Subspace, ACTIVATION_LEARNING};

/// One plasticity rule of the Hebbian layers (each in its own file: `softhebb.rs`,
/// `instar.rs`, `subspace.rs`): which layers it can train, how they start, how their rates
/// move, and one update of one layer from a micro-batch. The driver (`Hebbian`) owns the
/// phases, micro-batches, rates and scratch buffers; a new Hebbian rule implements this trait.
pub trait Plasticity: Send + Sync + std::fmt::Debug {
    /// Refuse Hebbian layer `i` when this rule cannot train it (bias, layer kind).
    fn check_layer(&self, _net: &Network, _i: usize) -> Result<(), String> {
        Ok(())
    }
    /// Draw Hebbian layer `i`'s reference initialisation (`t_inv`: its softmax temperature).
    fn init(&self, net: &mut Network, i: usize, t_inv: f32, rng: &mut Rng);
    /// Per-neuron rates lr (| ||W_k|| - 1 | + 1e-10)^power_lr (SoftHebb's own annealing);
    /// false: every neuron at the base rate.
    fn norm_rates(&self) -> bool {
        false
    }
    /// The label may enter the input (Activation Learning's activation read-out).
    fn takes_label(&self) -> bool {
        false
    }
    /// One update of Hebbian layer `l.i` from the micro-batch forward pass in `l.micro`.
    fn update(&self, net: &mut Network, l: &mut LayerStep);
}

/// What one layer's update sees: the layer (index `i`, `k` neurons or channels over `inp`
/// inputs, `p` positions), the micro-batch of `n` samples and its forward pass, the layer's
/// temperature, base rate and per-neuron rates, and scratch buffers kept between batches.
pub struct LayerStep<'a> {
    pub i: usize,
    pub k: usize,
    pub inp: usize,
    pub n: usize,
    pub p: usize,
    pub t_inv: f32,
    pub lr: f32,
    pub eta: &'a [f32],
    pub micro: &'a Workspace,
    /// Activity Y (K x (N P)), or Z^T Z for the subspace rule.
    pub y: &'a mut Vec<f32>,
    /// Per-neuron coefficients (sum y u, or win counts), K long.
    pub yu: &'a mut Vec<f32>,
    pub dw: &'a mut Vec<f32>,
    pub db: &'a mut Vec<f32>,
}

impl<'a> LayerStep<'a> {
    /// The layer's pre-activations u (N x K x P).
    pub fn u(&self) -> &'a [f32] {
        let m: &'a Workspace = self.micro;
        &m.acts[self.i + 1][..self.n * self.k * self.p]
    }

    /// The layer's input patches: CKK x (N P) columns of a conv layer (its im2col, `true`), or
    /// the N x inp dense input (`false`).
    pub fn patches(&self, net: &Network) -> (&'a [f32], bool) {
        let (i, np, m): (usize, usize, &'a Workspace) = (self.i, self.n * self.p, self.micro);
        match (&net.layers[i], &m.aux[i]) {
            (Layer::Conv { geom, .. }, crate::nn::Aux::Conv { cols, .. }) if !geom.is_dense() => {
                assert!(m.keep_cols, "patches: the Hebbian workspace must keep its im2col columns");
                (&cols[..self.inp * np], true)
            }
            _ => (&m.acts[i][..self.n * self.inp], false),
        }
    }

    /// W_k += eta_k dW_k, row by row.
    pub fn add_rows(&self, w: &mut [f32]) {
        let inp = self.inp;
        for (r, e) in self.eta.iter().enumerate() {
            for (wv, d) in w[r * inp..(r + 1) * inp].iter_mut().zip(&self.dw[r * inp..(r + 1) * inp]) {
                *wv += e * d;
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct HebbConfig {
    pub plasticity: std::sync::Arc<dyn Plasticity>,
    /// Per Hebbian layer (the last value repeats): softmax inverse temperature and base rate.
    pub t_inv: Vec<f32>,
    pub lr: Vec<f32>,
    pub power_lr: f32,
    pub hebb_epochs: usize,
    pub hebb_batch: usize,
    /// Unsupervised epoch e trains Hebbian layer e only.
    pub greedy: bool,
    /// Activation Learning's label strength in the input (0: linear read-out).
    pub label: f32,
    /// Hebbian updates (micro-batches) per unsupervised epoch, however many passes over the
    /// training set they take (0: one pass, the epoch as it is).
    pub updates: usize,
    /// With `updates` and per-neuron norm rates: the epoch also ends once every trained neuron's
    /// norm is within `settle` of 1 (0: never early).
    pub settle: f32,
    /// The Hebbian layers and the read-out learn in the same epochs, from the same batches (a
    /// one-epoch run: see the module's docs); `hebb_epochs` then counts nothing.
    pub concurrent: bool,
    /// The rates `lr` (the plasticities that learn at them: Activation Learning's subspace rule
    /// and its label columns; SoftHebb's and the instar's per-neuron rates `eta` do not) fall on
    /// a cosine over the E epochs in which the Hebbian layers learn (every epoch with the label
    /// in the input, else the unsupervised ones): epoch e learns at (1 + cos(pi e / E)) / 2 of
    /// `lr`, and an epoch past them (pruning's fine-tuning) at the last one's share (false: a
    /// constant rate).
    pub anneal: bool,
    /// E above (set by the build from the run's epochs).
    pub anneal_epochs: usize,
}

impl HebbConfig {
    /// The settings every Hebbian rule has (rates per layer, unsupervised epochs, micro-batch,
    /// greedy schedule); temperature 1, rate power 0.5 and no label until a rule sets them.
    pub fn new(plasticity: impl Plasticity + 'static, lr: Vec<f32>, hebb_epochs: usize, hebb_batch: usize, greedy: bool) -> Self {
        HebbConfig {
            plasticity: std::sync::Arc::new(plasticity),
            t_inv: vec![1.0],
            lr,
            power_lr: 0.5,
            hebb_epochs,
            hebb_batch,
            greedy,
            label: 0.0,
            updates: 0,
            settle: 0.0,
            concurrent: false,
            anneal: false,
            anneal_epochs: 0,
        }
    }
}

pub struct Hebbian {
    pub cfg: HebbConfig,
    /// Layer indices of the Hebbian weight layers.
    pub hebb: Vec<usize>,
    /// First layer of the read-out, and the read-out's parameters.
    head_lo: usize,
    head_params: Vec<usize>,
    /// Per Hebbian layer, per neuron: the current rate.
    pub eta: Vec<Vec<f32>>,
    micro: Workspace,
    /// Scratch: activity Y, update dW, per-neuron coefficients (sum y u, wins).
    y: Vec<f32>,
    dw: Vec<f32>,
    yu: Vec<f32>,
    db: Vec<f32>,
    /// Label-in-the-input mode: the first layer's label weights (K x classes), its update,
    /// the micro-batch labels and the class scores (N x classes).
    pub wy: Vec<f32>,
    dwy: Vec<f32>,
    labels: Vec<u32>,
    /// The image's part of the first layer's output, shared by every class's score.
    image_z: Vec<f32>,
    /// Hebbian updates made in the current unsupervised epoch (`epoch_of_count`).
    done: usize,
    epoch_of_count: usize,
    /// Per Hebbian layer: the largest | ||W_k|| - 1 | after its last update (norm rates only).
    norm_dev: Vec<f32>,
}

impl Hebbian {
    pub fn new(net: &Network, cfg: HebbConfig) -> Result<Self, String> {
        let wl = net.weight_layers();
        if wl.len() < 2 {
            return Err("softhebb needs at least one Hebbian layer below the read-out".into());
        }
        let last = *wl.last().unwrap();
        if !matches!(net.layers[last], Layer::Dense { .. }) {
            return Err("softhebb's read-out (the last weight layer) must be dense".into());
        }
        let hebb = wl[..wl.len() - 1].to_vec();
        for &i in &hebb {
            cfg.plasticity.check_layer(net, i)?;
        }
        let head_lo = if last > 0 && matches!(net.layers[last - 1], Layer::Dropout(_)) { last - 1 } else { last };
        if hebb.iter().any(|&i| i >= head_lo) {
            return Err("softhebb: no Hebbian layer may follow the read-out".into());
        }
        let head_params = [net.layers[last].weight(), net.layers[last].bias()].into_iter().flatten().collect();
        if cfg.greedy && cfg.concurrent && hebb.len() > 1 {
            return Err(format!(
                "hebb_greedy trains one layer per unsupervised epoch; a one-epoch run (the online condition) trains the read-out and all {} Hebbian layers together",
                hebb.len()
            ));
        }
        if cfg.greedy && !cfg.concurrent && cfg.hebb_epochs < hebb.len() {
            return Err(format!(
                "hebb_greedy trains one layer per unsupervised epoch: hebb_epochs = {} but there are {} Hebbian layers",
                cfg.hebb_epochs,
                hebb.len()
            ));
        }
        if cfg.label != 0.0 {
            if !(cfg.label > 0.0 && cfg.label.is_finite() && cfg.plasticity.takes_label()) {
                return Err(format!("al_label = {}: a positive strength, for activation-learning only", cfg.label));
            }
            if net.layers[..hebb[0]].iter().any(|l| l.weight().is_some() || matches!(l, Layer::Dropout(_))) {
                return Err("activation-learning: the label enters the first layer, nothing may learn before it".into());
            }
        }
        if cfg.t_inv.is_empty() || cfg.lr.is_empty() || cfg.hebb_batch == 0 {
            return Err(
                "softhebb: hebb_t_inv and hebb_lr need a value per layer (or one for all), hebb_batch >= 1".into()
            );
        }
        let mut r = Hebbian {
            cfg,
            head_lo,
            head_params,
            eta: vec![Vec::new(); hebb.len()],
            hebb,
            // The Hebbian updates read each conv layer's im2col columns (`LayerStep::patches`).
            micro: Workspace::keeping_cols(),
            y: Vec::new(),
            dw: Vec::new(),
            yu: Vec::new(),
            db: Vec::new(),
            wy: Vec::new(),
            dwy: Vec::new(),
            labels: Vec::new(),
            image_z: Vec::new(),
            done: 0,
            epoch_of_count: usize::MAX,
            norm_dev: Vec::new(),
        };
        r.norm_dev = vec![f32::INFINITY; r.hebb.len()];
        for j in 0..r.hebb.len() {
            r.update_rates(net, j);
        }
        Ok(r)
    }

    fn per_layer(v: &[f32], j: usize) -> f32 {
        v[j.min(v.len() - 1)]
    }

    /// The reference initialisation of every Hebbian layer (and the label weights), and the
    /// first rates.
    pub fn init_weights(&mut self, net: &mut Network, rng: &mut Rng) {
        for j in 0..self.hebb.len() {
            let i = self.hebb[j];
            self.cfg.plasticity.init(net, i, Self::per_layer(&self.cfg.t_inv, j), rng);
            if j == 0 && self.labelled() {
                let (k, inp) = Self::rows(net, i);
                self.wy.resize(k * net.output_len(), 0.0);
                rng.fill_normal(&mut self.wy, 0.1 / (inp as f32).sqrt());
            }
            self.update_rates(net, j);
        }
    }

    pub(super) fn rows(net: &Network, i: usize) -> (usize, usize) {
        match &net.layers[i] {
            Layer::Dense { inp, out, .. } => (*out, *inp),
            Layer::Conv { geom, .. } => (geom.o, geom.ckk()),
            _ => unreachable!(),
        }
    }

    /// eta_k = lr (| ||W_k|| - 1 | + 1e-10)^power_lr for Hebbian layer j.
    fn update_rates(&mut self, net: &Network, j: usize) {
        let i = self.hebb[j];
        let (k, inp) = Self::rows(net, i);
        let w = &net.params[net.layers[i].weight().unwrap()].data;
        let lr = Self::per_layer(&self.cfg.lr, j);
        self.eta[j].clear();
        if !self.cfg.plasticity.norm_rates() {
            self.eta[j].resize(k, lr);
            return;
        }
        let mut dev = 0.0f32;
        self.eta[j].extend((0..k).map(|r| {
            let norm = w[r * inp..(r + 1) * inp].iter().map(|v| v * v).sum::<f32>().sqrt();
            dev = dev.max((norm - 1.0).abs());
            lr * ((norm - 1.0).abs() + 1e-10).powf(self.cfg.power_lr)
        }));
        self.norm_dev[j] = dev;
    }

    /// Whether the current unsupervised epoch (with an update budget) is done: after at least
    /// one update, its budget spent or every neuron of the layers it trains within `settle` of
    /// unit norm.
    fn spent(&self) -> bool {
        if self.cfg.updates == 0 || self.done == 0 {
            return false;
        }
        self.done >= self.cfg.updates
            || (self.cfg.settle > 0.0
                && self.cfg.plasticity.norm_rates()
                && (0..self.hebb.len())
                    .filter(|&j| !self.cfg.greedy || j == self.epoch_of_count)
                    .all(|j| self.norm_dev[j] < self.cfg.settle))
    }

    /// dW = Y X^T - diag(c) W (into `dw`): the Hebbian term minus the decay term with per-neuron
    /// coefficients c (SoftHebb: sum y u; instar: sum y).
    /// `x`: the patches, CKK x (N P) when `cols`, else (N P) x inp.
    #[allow(clippy::too_many_arguments)]
    pub fn hebb_minus_decay(
        y: &[f32],
        x: &[f32],
        cols: bool,
        k: usize,
        inp: usize,
        np: usize,
        c: &[f32],
        w: &[f32],
        dw: &mut Vec<f32>,
    ) {
        dw.resize(k * inp, 0.0);
        linalg::matmul(k, inp, np, y, false, x, cols, dw, false);
        Self::minus_decay(dw, c, w, k, inp);
    }

    /// dW_r -= c_r W_r for each of the k rows of inp values: the decay term of the updates.
    pub(super) fn minus_decay(dw: &mut [f32], c: &[f32], w: &[f32], k: usize, inp: usize) {
        for r in 0..k {
            for (d, wv) in dw[r * inp..(r + 1) * inp].iter_mut().zip(&w[r * inp..(r + 1) * inp]) {
                *d -= c[r] * wv;
            }
        }
    }

    /// The share of the base rate the Hebbian layers learn at in (0-based) `epoch`: 1 without
    /// `anneal`, else (1 + cos(pi e / E)) / 2 over the E epochs in which they learn, held at
    /// epoch E - 1's past them.
    pub fn anneal_factor(&self, epoch: usize) -> f32 {
        if !self.cfg.anneal {
            return 1.0;
        }
        let horizon = self.cfg.anneal_epochs.max(1);
        let cosine = crate::optim::Schedule { kind: crate::optim::ScheduleKind::Cosine, ..Default::default() };
        cosine.lr(1.0, epoch.min(horizon - 1), horizon)
    }

    /// One Hebbian update of every layer from the micro-batch forward pass in `self.micro`, in
    /// (0-based) `epoch` (a greedy unsupervised epoch trains its own layer only).
    fn hebbian_step(&mut self, net: &mut Network, epoch: usize) {
        let n = self.micro.n;
        let anneal = self.anneal_factor(epoch);
        for j in 0..self.hebb.len() {
            if self.cfg.greedy && j != epoch {
                continue;
            }
            let i = self.hebb[j];
            let (k, inp) = Self::rows(net, i);
            let p = net.shapes[i + 1].len() / k;
            self.yu.resize(k, 0.0);
            let mut l = LayerStep {
                i,
                k,
                inp,
                n,
                p,
                t_inv: Self::per_layer(&self.cfg.t_inv, j),
                lr: Self::per_layer(&self.cfg.lr, j) * anneal,
                eta: &self.eta[j],
                micro: &self.micro,
                y: &mut self.y,
                yu: &mut self.yu,
                dw: &mut self.dw,
                db: &mut self.db,
            };
            self.cfg.plasticity.update(net, &mut l);
            if j == 0 && self.labelled() {
                // The label columns learn by the same rule; `y` holds Z^T Z after the update.
                let scale = Self::per_layer(&self.cfg.lr, j) * anneal / n as f32;
                let sy = self.label_scales().1;
                let z = &self.micro.acts[i + 1][..n * k];
                subspace::label_update(&mut self.wy, &mut self.dwy, &self.labels, sy, &self.y, z, k, scale);
            }
            self.update_rates(net, j);
        }
    }
}

/// Adds to `stats` the loss and correct answers of the network's output on `ws`'s samples
/// (labels `y`), after an evaluation-mode forward pass from layer `lo` to the output.
fn score(net: &mut Network, ws: &mut Workspace, lo: usize, y: &[u32], loss: Loss, rng: &mut Rng, stats: &mut StepStats) {
    net.forward_layers(ws, lo, net.num_layers(), false, rng);
    let st = super::output_error(net, ws, y, loss);
    stats.loss_sum += st.loss_sum;
    stats.correct += st.correct;
}

/// The largest of the K channel values at position `pos` of one sample (K x P), and its channel
/// (the first on ties).
pub(super) fn channel_max(us: &[f32], k: usize, p: usize, pos: usize) -> (f32, usize) {
    let (mut mx, mut win) = (f32::NEG_INFINITY, 0);
    for c in 0..k {
        if us[c * p + pos] > mx {
            mx = us[c * p + pos];
            win = c;
        }
    }
    (mx, win)
}


impl Rule for Hebbian {
    /// Only the read-out's gradient (backprop through the read-out alone) on the frozen features;
    /// the Hebbian updates happen in `train_batch`.
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let l = net.num_layers();
        net.forward_layers(ws, ws.first.min(self.head_lo), self.head_lo, false, rng);
        net.forward_layers(ws, self.head_lo, l, true, rng);
        let stats = super::output_error(net, ws, y, loss);
        net.backward(ws, grads, self.head_lo, l, None, false);
        stats
    }

    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        let labelled = self.labelled();
        let epoch = s.epoch;
        // Epochs in which the Hebbian layers learn, and in which the read-out does (`concurrent`
        // is only ever set without a label in the input: `build_hebbian`).
        let concurrent = self.cfg.concurrent;
        let unsupervised = concurrent || epoch < self.cfg.hebb_epochs;
        let read_out = concurrent || !unsupervised;
        if epoch != self.epoch_of_count {
            (self.epoch_of_count, self.done) = (epoch, 0);
        }
        let (net, ws, y, loss, _, rng) = s.parts();
        // An unsupervised epoch (not concurrent) trains no read-out: its statistics are the
        // untrained read-out's, on each micro-batch's features as the Hebbian update sees them
        // (before it), so no second forward pass over the batch is spent on them.
        let micro_stats = unsupervised && !concurrent && !labelled;
        let mut stats = StepStats { loss_sum: 0.0, correct: 0, energy: None };
        let t = y.len() / ws.n.max(1);
        if unsupervised || labelled {
            let (n, d) = (ws.n, net.input_shape().len());
            let mut start = 0;
            while start < n && !self.spent() {
                let m = self.cfg.hebb_batch.min(n - start);
                net.prepare(&mut self.micro, m);
                self.micro.input_mut().copy_from_slice(&ws.acts[0][start * d..(start + m) * d]);
                if labelled {
                    self.labels.clear();
                    self.labels.extend_from_slice(&y[start..start + m]);
                    let mut micro = std::mem::take(&mut self.micro);
                    self.label_forward(net, &mut micro, |b| y[start + b] as usize, rng);
                    self.micro = micro;
                } else {
                    net.forward_layers(&mut self.micro, 0, self.head_lo, true, rng);
                }
                if micro_stats {
                    score(net, &mut self.micro, self.head_lo, &y[start * t..(start + m) * t], loss, rng, &mut stats);
                }
                // The Hebbian update is a local change of the weights, through the driver.
                upd.local(net, |net| self.hebbian_step(net, epoch));
                start += m;
                if self.cfg.updates > 0 && !labelled {
                    self.done += 1;
                }
            }
            if micro_stats && start < n {
                // The update budget ran out inside the batch: the rest of it is only scored
                // (evaluation mode: no batch statistics move).
                net.prepare(&mut self.micro, n - start);
                self.micro.input_mut().copy_from_slice(&ws.acts[0][start * d..n * d]);
                score(net, &mut self.micro, 0, &y[start * t..n * t], loss, rng, &mut stats);
            }
        }
        if micro_stats {
            return stats;
        }
        if labelled {
            // No read-out to train: the statistics are those of the class scores (the
            // cross-entropy of softmax(scores) for monitoring, and the accuracy of their argmax).
            self.class_scores(net, ws, rng);
            return super::output_error(net, ws, y, loss);
        }
        let stats = self.step(s);
        // The read-out learns once the features are frozen (the reference code's order), its
        // schedule starting then (`schedule_start`); in unsupervised epochs only its statistics.
        if stats.loss_sum.is_finite() && read_out {
            let head = &self.head_params;
            upd.apply_where(s.net, s.grads, |i| head.contains(&i));
        }
        stats
    }

    /// A new task's unsupervised phase gets its whole update budget again.
    fn restart(&mut self) {
        (self.epoch_of_count, self.done) = (0, 0);
    }

    /// With an update budget, an unsupervised epoch lasts until it is spent (or the norms settle).
    fn settled(&self) -> bool {
        self.cfg.updates == 0 || self.spent()
    }

    /// The read-out's schedule starts at the first read-out epoch.
    fn schedule_start(&self) -> usize {
        if self.labelled() || self.cfg.concurrent {
            0
        } else {
            self.cfg.hebb_epochs
        }
    }

    /// Unsupervised epochs (the Hebbian layers learn; with an update budget, as many passes
    /// as it takes), then read-out epochs on fixed features. With the label in the input every
    /// epoch learns (no read-out).
    fn phase(&self, epoch: usize) -> Phase {
        if self.labelled() {
            Phase { name: "local", frozen_prefix: 0, until_settled: false }
        } else if self.cfg.concurrent {
            Phase { name: "concurrent", frozen_prefix: 0, until_settled: false }
        } else if epoch < self.cfg.hebb_epochs {
            Phase { name: "unsupervised", frozen_prefix: 0, until_settled: self.cfg.updates > 0 }
        } else {
            Phase { name: "read-out", frozen_prefix: self.head_lo, until_settled: false }
        }
    }

    /// The activation read-out answers by its class scores.
    fn prediction(&self) -> Prediction {
        if self.labelled() {
            Prediction::Own
        } else {
            Prediction::FeedForward
        }
    }

    /// The class scores replace the (unused) dense read-out's output.
    fn predict(&mut self, net: &mut Network, ws: &mut Workspace) {
        self.class_scores(net, ws, &mut Rng::new(0));
    }

    /// The tensors, and the update budget's count within the current unsupervised epoch: a
    /// snapshot taken mid-run (pruning's fine-tuning tries) comes back with its budget as it was.
    fn save_state(&self) -> super::RuleState {
        let mut s = super::RuleState::of_tensors(self.tensors());
        s.counters.insert("hebb.done".into(), self.done as u64);
        s.counters.insert("hebb.epoch_of_count".into(), self.epoch_of_count as u64);
        s
    }

    fn load_state(&mut self, state: &super::RuleState) -> Result<(), String> {
        super::load_tensors(self.tensors_mut(), &state.tensors)?;
        // (Absent from checkpoints before session 25: written at epoch boundaries, where the
        // count restarts anyway.)
        if let (Some(&d), Some(&e)) = (state.counters.get("hebb.done"), state.counters.get("hebb.epoch_of_count")) {
            self.done = usize::try_from(d).map_err(|_| "rule counter 'hebb.done' out of range".to_string())?;
            self.epoch_of_count = usize::try_from(e).unwrap_or(usize::MAX);
        }
        Ok(())
    }

    fn tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        let mut t: Vec<(String, Vec<usize>, &[f32])> =
            self.eta.iter().enumerate().map(|(j, e)| (format!("rates.{j}"), vec![e.len()], e.as_slice())).collect();
        if !self.wy.is_empty() {
            let c = self.wy.len() / self.eta[0].len();
            t.push(("label_weights".into(), vec![self.eta[0].len(), c], &self.wy));
        }
        t
    }

    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut t: Vec<(String, &mut [f32])> =
            self.eta.iter_mut().enumerate().map(|(j, e)| (format!("rates.{j}"), e.as_mut_slice())).collect();
        if !self.wy.is_empty() {
            t.push(("label_weights".into(), self.wy.as_mut_slice()));
        }
        t
    }
}

fn check_common(epochs: usize, batch: usize, lr: &[f32]) -> Result<(), String> {
    use super::settings::{count, positive_list};
    count("hebb_epochs", epochs, 100_000)?;
    count("hebb_batch", batch, 1 << 20)?;
    positive_list("hebb_lr", lr)
}

/// Build a Hebbian rule and draw its layers' reference initialisation into `net`.
/// The unsupervised phase is cut to leave the read-out at least the run's last epoch
/// (`epochs`); a one-epoch run trains the Hebbian layers and the read-out together.
fn build_hebbian(net: &mut Network, mut cfg: HebbConfig, epochs: usize, rng: &mut Rng) -> Result<Box<dyn Rule>, String> {
    if cfg.label == 0.0 {
        cfg.hebb_epochs = cfg.hebb_epochs.min(epochs.saturating_sub(1)).max(1);
        cfg.concurrent = epochs == 1;
    }
    cfg.anneal_epochs = if cfg.label > 0.0 || cfg.concurrent { epochs } else { cfg.hebb_epochs };
    if cfg.anneal && cfg.anneal_epochs < 2 {
        return Err(format!(
            "hebb_anneal needs the Hebbian layers to learn in 2 or more epochs; here they learn in {} \
             (with a linear read-out, in hebb_epochs of the run's epochs less its last)",
            cfg.anneal_epochs
        ));
    }
    let mut h = Hebbian::new(net, cfg)?;
    h.init_weights(net, &mut rng.fork());
    Ok(Box::new(h))
}




