//! The feedback-alignment family: backprop's backward pass with a feedback matrix B in place of
//! each weight matrix W (BioTorch's `fa`, `usf`, `brsf`, `frsf` modes; `biotorch/autograd/fa/linear.py`:
//! `grad_input = grad_output.mm(weight_fa)`).
//!
//! delta_l = (B_{l+1}^T delta_{l+1}) (.) f'(a_l),  dW_l = delta_l h_{l-1}^T   (weight updates as in BP)
//!
//! | mode | B (same shape as W) | paper |
//! |---|---|---|
//! | FA | fixed, Xavier-uniform U(+-sqrt(6/(fan_in+fan_out))), drawn independently of W | Lillicrap et al. 2016 |
//! | uSF | s * sign(W), s = sqrt(2/(fan_in+fan_out)) (the Xavier std), recomputed every step | Liao et al. 2016 |
//! | brSF | abs(M) (.) sign(W), M Xavier-uniform redrawn every mini-batch | Moskovitz et al. 2018 |
//! | frSF | abs(M0) (.) sign(W), M0 Xavier-uniform drawn once | Moskovitz et al. 2018 |
//!
//! For conv layers W is the O x (C k k) kernel matrix (fan_in = C k k, fan_out = O k k, as
//! PyTorch's), and B enters the transposed convolution that carries errors to the input.
//! The first weight layer never propagates an error (nothing below it learns), so it has no B.
//!
//! # What BioTorch's runs depend on (issue 13)
//! Read from `jsalbert/biotorch` (layers/fa_constructor, autograd/fa, benchmark_configs):
//! - the backward pass: `conv2d_input(weight_backward)` / `grad_output @ weight_backward` for the
//!   input gradient, the ordinary weight and bias gradients: what this file computes, checked
//!   number for number against it (`rules::tests::biotorch_step`, `bench/biotorch_step.py`);
//! - init "xavier" (its configs): W and B both Xavier-uniform, biases 0; uSF's scale the Xavier
//!   std (as here); init "pytorch": W and B both PyTorch's default, uSF's scale 1/sqrt(3 fan_in).
//!   Here B is always Xavier-uniform and W follows `--init` (default PyTorch's): with `--init
//!   xavier` the two match BioTorch's configs;
//! - the learning rate per rule: its CIFAR-10 LeNet configs train BP, uSF, brSF and frSF at 0.1,
//!   FA at 1e-3 and DFA at 1e-4 (SGD momentum 0.9, weight decay 1e-4, batch 128, multistep
//!   100/150/200); no Fashion-MNIST config is published. At BP's rate FA explodes on LeNet in
//!   BioTorch's mechanics too (`bench/biotorch_lenet.py`: lr 0.05, train loss 8.4e9 after one
//!   epoch): biolearn's LeNet rates per rule come from a validation search
//!   (plans/lenet-fa-family.toml);
//! - options off in its configs: `constrain_weights` (every weight tensor rescaled to its initial
//!   Frobenius norm before every forward pass; Moskovitz et al. 2018; here `fa_constrain_weights
//!   = true`), `gradient_clip` (input gradients clamped to [-1, 1]; not implemented);
//! - its figures are the best epoch on the test set (it validates on the test set).
//!
//! # Shapes
//! B_l: the shape of W_l (out x in, or O x C x k x k).

use super::{forward_with_error, Rule, Step, StepStats};
use crate::nn::{Layer, Network, ParamKind};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fa,
    Usf,
    Brsf,
    Frsf,
}

pub struct FeedbackAlignment {
    pub mode: Mode,
    /// Per layer index: the network parameter (kind `Feedback`, named `feedback.I.weight`) used
    /// in place of W on the way back (None for non-weight layers and the first weight layer).
    pub feedback: Vec<Option<usize>>,
    /// frSF's fixed magnitudes |M0| (per layer index).
    magnitudes: Vec<Option<Vec<f32>>>,
    /// Xavier bound and std per layer index.
    fans: Vec<(f32, f32)>,
    /// BioTorch's `constrain_weights`: each weight tensor's initial norm (by layer index), to
    /// which the tensor is rescaled before every training forward pass and after every update;
    /// None when off.
    norms: Option<Vec<Option<f32>>>,
}

/// (fan_in, fan_out) of a weight layer, PyTorch's convention.
pub fn fans(layer: &Layer) -> Option<(usize, usize)> {
    match layer {
        Layer::Dense { inp, out, .. } => Some((*inp, *out)),
        Layer::Conv { geom, .. } => Some((geom.ckk(), geom.o * geom.k * geom.k)),
        _ => None,
    }
}

impl FeedbackAlignment {
    /// Draws B (FA) or |M0| (frSF) layer by layer and adds each B to `net` as a `Feedback`
    /// parameter of W's shape.
    pub fn new(mode: Mode, net: &mut Network, rng: &mut Rng) -> Self {
        let l = net.num_layers();
        let first = net.weight_layers().first().copied();
        let mut feedback = vec![None; l];
        let mut magnitudes = vec![None; l];
        let mut fan = vec![(0.0, 0.0); l];
        for i in 0..l {
            let (Some((fi, fo)), Some(w)) = (fans(&net.layers[i]), net.layers[i].weight()) else {
                continue;
            };
            let bound = (6.0 / (fi + fo) as f32).sqrt();
            fan[i] = (bound, (2.0 / (fi + fo) as f32).sqrt());
            if Some(i) == first {
                continue;
            }
            let len = net.params[w].data.len();
            let mut b = vec![0.0; len];
            match mode {
                Mode::Fa => rng.fill_uniform(&mut b, -bound, bound),
                Mode::Frsf => {
                    let mut m = vec![0.0; len];
                    rng.fill_uniform(&mut m, -bound, bound);
                    m.iter_mut().for_each(|v| *v = v.abs());
                    magnitudes[i] = Some(m);
                }
                Mode::Usf | Mode::Brsf => {}
            }
            let shape = net.params[w].shape.clone();
            feedback[i] = Some(net.add_param(format!("feedback.{i}.weight"), shape, b, ParamKind::Feedback));
        }
        let mut fa = FeedbackAlignment { mode, feedback, magnitudes, fans: fan, norms: None };
        fa.refresh(net, rng);
        fa
    }

    /// With BioTorch's `constrain_weights`: every weight tensor is rescaled to the norm it has now
    /// (its initial one) before each training forward pass and after each update
    /// (`train_batch`).
    pub fn constrain_weights(mut self, net: &Network) -> Self {
        let norm = |i: usize| net.layers[i].weight().map(|w| l2_norm(&net.params[w].data));
        self.norms = Some((0..net.num_layers()).map(norm).collect());
        self
    }

    fn rescale(&self, net: &mut Network) {
        let Some(norms) = &self.norms else { return };
        for (i, n0) in norms.iter().enumerate() {
            let (Some(n0), Some(w)) = (n0, net.layers[i].weight()) else { continue };
            let n = l2_norm(&net.params[w].data);
            if n > 0.0 && n.is_finite() {
                let k = n0 / n;
                net.params[w].data.iter_mut().for_each(|v| *v *= k);
            }
        }
    }

    /// Recompute the sign-concordant matrices from the current weights (no-op for FA).
    pub fn refresh(&mut self, net: &mut Network, rng: &mut Rng) {
        if self.mode == Mode::Fa {
            return;
        }
        for (i, fb) in self.feedback.iter().enumerate() {
            let Some(bi) = *fb else { continue };
            let (w, b) = net.param_pair(net.layers[i].weight().unwrap(), bi);
            let (bound, std) = self.fans[i];
            match self.mode {
                Mode::Usf => sign_times(b, w, |_| std),
                Mode::Brsf => sign_times(b, w, |_| rng.uniform_in(-bound, bound).abs()),
                Mode::Frsf => {
                    let m = self.magnitudes[i].as_ref().unwrap();
                    sign_times(b, w, |j| m[j])
                }
                Mode::Fa => unreachable!(),
            }
        }
    }
}

/// The Frobenius norm of a tensor (f64 sums).
fn l2_norm(x: &[f32]) -> f32 {
    x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt() as f32
}

/// b[j] = mag(j) * sign(w[j]) (sign(0) = 0, as torch.sign).
fn sign_times(b: &mut [f32], w: &[f32], mut mag: impl FnMut(usize) -> f32) {
    for (j, (bv, wv)) in b.iter_mut().zip(w).enumerate() {
        let s = if *wv > 0.0 {
            1.0
        } else if *wv < 0.0 {
            -1.0
        } else {
            0.0
        };
        *bv = mag(j) * s;
    }
}

impl Rule for FeedbackAlignment {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        self.refresh(net, rng);
        let stats = forward_with_error(net, ws, y, loss, rng);
        net.backward(ws, grads, 0, net.num_layers(), Some(&self.feedback), false);
        stats
    }

    /// With `fa_constrain_weights`, the weights are rescaled to their initial norms before the
    /// step's forward pass (BioTorch's; a pruning event or the devices' programming may have
    /// moved them) and again after the update, so that evaluations, pruning and saved models
    /// see constrained weights. A rescale is a change of the weights: through the Updater, so
    /// devices write it on in-memory hardware (which holds the norms only as closely as its
    /// levels allow), though not as an update in the cost model (`Updater::rewrite`).
    fn train_batch(&mut self, s: &mut Step, upd: &mut super::Updater) -> StepStats {
        if self.norms.is_some() {
            upd.rewrite(s.net, |net| self.rescale(net));
        }
        let stats = super::step_then_apply(self, s, upd);
        if self.norms.is_some() {
            upd.rewrite(s.net, |net| self.rescale(net));
        }
        stats
    }

    // B lives in the network (kind `Feedback`): checkpoints and saved models hold it there.
}

crate::settings! {
    /// The feedback-alignment family's settings (`fa`, `usf`, `brsf`, `frsf`).
    pub struct FaSettings {
        /// BioTorch's `constrain_weights` (Moskovitz et al. 2018): every weight tensor rescaled to
        /// its initial norm before each training forward pass and after each update.
        pub fa_constrain_weights: bool = false,
    }
    check(_s) { Ok(()) }
}

macro_rules! fa_entry {
    ($static:ident, $name:literal, $mode:expr, $summary:literal, $paper:literal, $reported:literal $(, $preset:literal)*) => {
        pub static $static: super::RuleEntry = super::RuleEntry {
            name: $name,
            summary: $summary,
            paper: $paper,
            reported: $reported,
            preset: include_str!(concat!("../../presets/", $name, ".toml")),
            presets: &[$(($preset, include_str!(concat!("../../presets/", $name, "/", $preset, ".toml")))),*],
            settings: super::SettingsKind::of::<FaSettings>(),
            build: |net, cx, rng| {
                let s: FaSettings = cx.settings()?;
                let fa = FeedbackAlignment::new($mode, net, rng);
                Ok(Box::new(if s.fa_constrain_weights { fa.constrain_weights(net) } else { fa }))
            },
        };
    };
}

fa_entry!(
    FA,
    "fa",
    Mode::Fa,
    "feedback alignment: errors flow back through fixed random matrices B",
    "Lillicrap et al. 2016, Nat. Commun. 7:13276",
    "Fashion-MNIST 86.94%, MNIST 98.3% (BioTorch LeNet, best epoch on the test set: error 13.06 / 1.7)",
    "fashion-mnist-mlp1024x2"
);
fa_entry!(
    USF,
    "usf",
    Mode::Usf,
    "uniform sign-concordant feedback: B = s * sign(W), s = Xavier std",
    "Liao, Leibo & Poggio 2016; Moskovitz et al. 2018 (BioTorch 'usf')",
    "Fashion-MNIST 90.31%, MNIST 99.06% (BioTorch LeNet, best epoch on the test set: error 9.69 / 0.94)"
);
fa_entry!(
    BRSF,
    "brsf",
    Mode::Brsf,
    "batchwise random-magnitude sign-concordant feedback: B = |M| * sign(W), M redrawn every batch",
    "Moskovitz et al. 2018 (BioTorch 'brsf')",
    "Fashion-MNIST 89.98%, MNIST 99.09% (BioTorch LeNet, best epoch on the test set: error 10.02 / 0.91)"
);
fa_entry!(
    FRSF,
    "frsf",
    Mode::Frsf,
    "fixed random-magnitude sign-concordant feedback: B = |M0| * sign(W), M0 drawn once",
    "Moskovitz et al. 2018 (BioTorch 'frsf')",
    "Fashion-MNIST 90.39%, MNIST 99.03% (BioTorch LeNet, best epoch on the test set: error 9.61 / 0.97)"
);
