//! Architecture specs (`--arch`) and the network builder.
//!
//! | spec | network |
//! |---|---|
//! | `mlp:1024` | input -> 1024 -> classes (activation after each hidden layer) |
//! | `mlp:800,800` | two hidden layers; `mlp:` (no hidden layer) is a linear classifier |
//! | `mlp:800,800/bn` | batch norm before each hidden activation; `/dropout=0.2` after it; `/nobias`: dense layers without bias |
//! | `lenet` | BioTorch's LeNet (`biotorch/models/le_net.py`): conv 6 k5 -> act -> maxpool 2 -> conv 16 k5 -> act -> maxpool 2 -> conv 120 k5 -> act -> dense 84 -> act -> classes; 32x32 inputs (28x28 ones padded by 2 in conv1, as BioTorch's resize to 32 gives the same shapes) |
//! | `softhebb-mlp:2000` | SoftHebb single layer: dense 2000 (no bias; `softhebb-mlp:2000/bias` adds the bias that learns each neuron's log prior) -> softmax(5 u) over the units -> classes |
//! | `softhebb-cnn28` | `softhebb-cnn:32,128,512`: the same blocks a third as wide (a ninth of the compute), sized for 28x28 grey images |
//! | `softhebb-stl` | SoftHebb's four-layer STL-10 preset (`5SoftHebbCnnSTL`): 96 k5 / 384 k3 / 1536 k3 / 6144 k3, triangle 0.7 / 0.7 / 1.4 / 1.0, pools avg 4/2/1, max 4/2/1, avg 4/2/1, avg 2/2 -> dropout 0.5 -> classes; run with `--set hebb_t_inv=[1,0.65,0.45,0.25] --set hebb_lr=[0.08,0.005,0.01,0.01]` |
//! | `softhebb-cnn` | multilayer SoftHebb (Journe et al. 2023, CIFAR-10 preset): [batch norm (no affine) -> conv (reflect pad, no bias) -> triangle -> pool] with 96 k5 / 384 k3 / 1536 k3 channels, triangle powers 0.7 / 1.4 / 1.0, max 4/2 pad 1, max 4/2 pad 1, avg 2/2 (32x32: 1536x4x4 read-out inputs; 28x28: 1536x3x3) -> dropout 0.5 -> classes |
//! | `hebb-conv3`, `hebb-conv3:W1,W2,W3` | `conv3` as Miconi's Hebbian CNN builds it: each layer's input standardised per sample, triangle outputs relu(u - mean_c u), the conv bias holding minus the adaptive WTA threshold |
//! | `al-mlp:1000,1000` | Activation Learning (Zhou 2022): input scaled to unit norm, then per hidden layer dense (no bias) -> f(x) = beta (|x| - mean|x|) with beta keeping the norm -> classes |
//! | `rnn:128`, `gru:128`, `gru:128,128` | recurrent layers over the image's rows (28 steps of 28 pixels on Fashion-MNIST; step t = row t of every channel): an Elman RNN (tanh) or a GRU (PyTorch's cell); stacked layers pass their state sequences on, the last state feeds a linear read-out (`nn::recurrent`) |
//! | `gpt:L,D,H` | a decoder-only transformer over token sequences (`nn::transformer`, nanoGPT's layout): token + learned position embedding (width D) -> L pre-norm blocks (H-head causal self-attention, GELU MLP of width 4D) -> layer norm -> a dense map to the vocabulary at every position; weights N(0, 0.02) (the blocks' output projections N(0, 0.02 / sqrt(2L))), biases 0, layer norms 1 / 0, whatever `--init` says; `/embed=S`: the embeddings' std S instead (PyTorch's `nn.Embedding`: 1); `/pos=sin`: fixed sinusoidal positions (Vaswani et al. 2017) instead of learned ones; `gpt` alone is `gpt:2,128,4` |
//! | `vae:H1,...,Z` | a variational autoencoder (`nn::latent`; Kingma & Welling 2014): encoder input -> H1 -> ... (activation after each) -> 2Z (the posterior's mean and log-variance) -> the Gaussian latent's sample of Z -> decoder Hk -> ... -> H1 (activation after each) -> one logit per input value (a Bernoulli pixel); `vae` alone is `vae:512,20` |
//! | `conv3`, `conv3:W1,W2,W3` | the holistic benchmark's net (Gupta et al. 2022, after Miconi's Hebbian CNN; the widths 100/196/400 unless given): conv 100 k5 -> act -> avgpool 2 -> conv 196 k3 -> act -> avgpool 2 -> conv 400 k3 -> act -> avgpool 2 -> classes (no padding; 32x32 gives 400x2x2 features) |
//!
//! Initialisation (`Init`): `torch` is PyTorch's default for Linear/Conv2d (W and b from
//! U(+-1/sqrt(fan_in))); `xavier` is Glorot-uniform U(+-sqrt(6/(fan_in+fan_out))) with zero bias;
//! `kaiming` is He-uniform U(+-sqrt(6/fan_in)) with zero bias.

use super::{Activation, Layer, Network, Param, ParamKind, Shape};
use crate::nn::batchnorm::BnGeom;
use crate::nn::compete::{CompeteGeom, CompeteKind};
use crate::nn::conv::ConvGeom;
use crate::nn::pool::PoolGeom;
use crate::nn::recurrent::{Cell, RnnGeom};
use crate::nn::transformer::{BlockGeom, BlockParams, EmbedGeom};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    Torch,
    Xavier,
    Kaiming,
}

impl Init {
    /// Bounds (weight, bias) of the uniform distributions for a layer.
    pub fn bounds(&self, fan_in: usize, fan_out: usize) -> (f32, f32) {
        let (fi, fo) = (fan_in as f32, fan_out as f32);
        match self {
            Init::Torch => (1.0 / fi.sqrt(), 1.0 / fi.sqrt()),
            Init::Xavier => ((6.0 / (fi + fo)).sqrt(), 0.0),
            Init::Kaiming => ((6.0 / fi).sqrt(), 0.0),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ArchSpec {
    Mlp {
        hidden: Vec<usize>,
        batchnorm: bool,
        dropout: f32,
        /// Dense layers with a bias (`/nobias` drops them: PEPITA's reference networks).
        bias: bool,
    },
    LeNet,
    /// The holistic benchmark's three conv layers, these widths (the paper's: 100, 196, 400).
    Conv3 {
        widths: [usize; 3],
    },
    /// SoftHebb single layer: dense (no bias, or with the learned log-prior bias) ->
    /// softmax(5 u) -> classes.
    SoftHebbMlp {
        hidden: usize,
        bias: bool,
    },
    /// SoftHebb conv blocks (Journe et al. 2023) with these three widths (CIFAR-10 preset:
    /// 96, 384, 1536).
    SoftHebbCnn {
        widths: [usize; 3],
    },
    /// SoftHebb's four-layer STL-10 preset (`5SoftHebbCnnSTL`).
    SoftHebbStl,
    /// Miconi's / Gupta's Hebbian conv3 with triangle outputs, these widths.
    HebbConv3 {
        widths: [usize; 3],
    },
    /// Activation Learning MLP: unit-norm input, dense (no bias) + norm-preserving |x| activation.
    AlMlp {
        hidden: Vec<usize>,
    },
    /// Recurrent layers over the input's rows (Elman RNN or GRU), these widths; every layer but
    /// the last passes its whole state sequence to the next; the last state feeds a linear
    /// read-out.
    Recurrent {
        cell: Cell,
        hidden: Vec<usize>,
    },
    /// A variational autoencoder: these encoder widths (the decoder's mirrored), a Gaussian
    /// latent of `z` values, one output per input value.
    Vae {
        hidden: Vec<usize>,
        z: usize,
    },
    /// A decoder-only transformer: `layers` blocks of width `d` with `heads` heads.
    Gpt {
        layers: usize,
        d: usize,
        heads: usize,
        /// The embeddings' init std (`/embed=S`; GPT-2's 0.02 unless given; PyTorch's
        /// `nn.Embedding` draws N(0, 1)).
        embed_std: f32,
        /// Fixed sinusoidal positions (`/pos=sin`; Vaswani et al. 2017) instead of learned ones.
        sinusoidal: bool,
    },
}

/// GPT-2's init std of the token and position embeddings.
pub const GPT_EMBED_STD: f32 = 0.02;

/// conv3's widths in the paper (Gupta et al. 2022, after Miconi's Hebbian CNN).
pub const CONV3_WIDTHS: [usize; 3] = [100, 196, 400];

/// "" for the paper's widths (so `conv3` keeps its name, and the ids of runs made with it),
/// ":W1,W2,W3" otherwise.
fn conv3_suffix(w: &[usize; 3]) -> String {
    if *w == CONV3_WIDTHS {
        String::new()
    } else {
        format!(":{},{},{}", w[0], w[1], w[2])
    }
}

impl std::str::FromStr for ArchSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (base, opts) = match s.split_once('/') {
            Some((b, o)) => (b, Some(o)),
            None => (s, None),
        };
        // `NAME:W1,W2,...`: every width a positive integer, none empty.
        let widths = |rest: &str, form: &str| -> Result<Vec<usize>, String> {
            let list = rest.strip_prefix(':').ok_or_else(|| format!("arch '{s}': expected {form}"))?;
            list.split(',')
                .map(|t| {
                    t.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(|| {
                        format!("arch '{s}': width '{}' is not a positive integer (expected {form})", t.trim())
                    })
                })
                .collect()
        };
        // `NAME` (the paper's widths) or `NAME:W1,W2,W3`.
        let three = |rest: &str, name: &str| -> Result<[usize; 3], String> {
            if rest.is_empty() {
                return Ok(CONV3_WIDTHS);
            }
            let form = format!("{name}:W1,W2,W3");
            widths(rest, &form)?.try_into().map_err(|_| format!("arch '{s}': {form} takes three positive widths"))
        };
        let mut spec = if base == "linear" {
            // Softmax regression: no hidden layer.
            ArchSpec::Mlp { hidden: vec![], batchnorm: false, dropout: 0.0, bias: true }
        } else if let Some(rest) = base.strip_prefix("mlp") {
            let hidden = widths(rest, "mlp:H1,H2,... with at least one hidden width")?;
            ArchSpec::Mlp { hidden, batchnorm: false, dropout: 0.0, bias: true }
        } else if base == "lenet" {
            ArchSpec::LeNet
        } else if let Some(rest) = base.strip_prefix("conv3") {
            ArchSpec::Conv3 { widths: three(rest, "conv3")? }
        } else if let Some(rest) = base.strip_prefix("softhebb-mlp") {
            let hidden = match rest {
                "" => 2000,
                _ => match widths(rest, "softhebb-mlp:H")?[..] {
                    [h] => h,
                    _ => return Err(format!("arch '{s}': softhebb-mlp:H takes one width")),
                },
            };
            ArchSpec::SoftHebbMlp { hidden, bias: false }
        } else if base == "softhebb-cnn" {
            ArchSpec::SoftHebbCnn { widths: [96, 384, 1536] }
        } else if base == "softhebb-stl" {
            ArchSpec::SoftHebbStl
        } else if base == "softhebb-cnn28" {
            ArchSpec::SoftHebbCnn { widths: [32, 128, 512] }
        } else if let Some(rest) = base.strip_prefix("softhebb-cnn:") {
            let w = widths(&format!(":{rest}"), "softhebb-cnn:W1,W2,W3")?;
            let widths: [usize; 3] =
                w.try_into().map_err(|_| format!("arch '{s}': softhebb-cnn:W1,W2,W3 takes three positive widths"))?;
            ArchSpec::SoftHebbCnn { widths }
        } else if let Some(rest) = base.strip_prefix("hebb-conv3") {
            ArchSpec::HebbConv3 { widths: three(rest, "hebb-conv3")? }
        } else if let Some(rest) = base.strip_prefix("rnn") {
            ArchSpec::Recurrent { cell: Cell::Elman, hidden: widths(rest, "rnn:H1,H2,...")? }
        } else if let Some(rest) = base.strip_prefix("gru") {
            ArchSpec::Recurrent { cell: Cell::Gru, hidden: widths(rest, "gru:H1,H2,...")? }
        } else if let Some(rest) = base.strip_prefix("gpt") {
            let v = if rest.is_empty() { vec![2, 128, 4] } else { widths(rest, "gpt:LAYERS,WIDTH,HEADS")? };
            let [layers, d, heads] = v[..] else {
                return Err(format!("arch '{s}': gpt:LAYERS,WIDTH,HEADS takes three positive integers"));
            };
            if d % heads != 0 {
                return Err(format!("arch '{s}': the width {d} is not a multiple of the {heads} heads"));
            }
            ArchSpec::Gpt { layers, d, heads, embed_std: GPT_EMBED_STD, sinusoidal: false }
        } else if let Some(rest) = base.strip_prefix("vae") {
            let v = if rest.is_empty() { vec![512, 20] } else { widths(rest, "vae:H1,...,Z")? };
            let Some((&z, hidden)) = v.split_last().filter(|(_, h)| !h.is_empty()) else {
                return Err(format!("arch '{s}': vae:H1,...,Z takes at least one hidden width and the latent size"));
            };
            ArchSpec::Vae { hidden: hidden.to_vec(), z }
        } else if let Some(rest) = base.strip_prefix("al-mlp") {
            let hidden = if rest.is_empty() { vec![1000, 1000] } else { widths(rest, "al-mlp:H1,H2,...")? };
            ArchSpec::AlMlp { hidden }
        } else {
            return Err(format!(
                "unknown arch '{s}': expected mlp:H1,H2,... (e.g. mlp:1024), linear, lenet, conv3[:W1,W2,W3], softhebb-mlp:H, softhebb-cnn, softhebb-cnn28, softhebb-cnn:W1,W2,W3, softhebb-stl, hebb-conv3[:W1,W2,W3], al-mlp:H1,H2, rnn:H1,..., gru:H1,..., gpt:L,D,H or vae:H1,...,Z"
            ));
        };
        if let Some(opts) = opts {
            if let ArchSpec::Gpt { embed_std, sinusoidal, .. } = &mut spec {
                let bad = || {
                    format!(
                        "arch '{s}': gpt's options are '/embed=S', S > 0 (the embeddings' init std), and '/pos=sin' \
                         (fixed sinusoidal positions) or '/pos=learned' (the default)"
                    )
                };
                for o in opts.split('/') {
                    if let Some(v) = o.strip_prefix("embed=") {
                        *embed_std = v.parse::<f32>().ok().filter(|v| *v > 0.0 && v.is_finite()).ok_or_else(bad)?;
                    } else if let Some(v) = o.strip_prefix("pos=") {
                        *sinusoidal = match v {
                            "sin" => true,
                            "learned" => false,
                            _ => return Err(bad()),
                        };
                    } else {
                        return Err(bad());
                    }
                }
                return Ok(spec);
            }
            if let ArchSpec::SoftHebbMlp { bias, .. } = &mut spec {
                if opts != "bias" {
                    return Err(format!("arch '{s}': softhebb-mlp's one option is '/bias'"));
                }
                *bias = true;
                return Ok(spec);
            }
            let ArchSpec::Mlp { batchnorm, dropout, bias, .. } = &mut spec else {
                return Err(format!("arch '{s}': options after '/' apply to mlp (and softhebb-mlp: /bias) only"));
            };
            let mut seen = std::collections::BTreeSet::new();
            for o in opts.split('/') {
                let key = o.split('=').next().unwrap_or(o);
                if !seen.insert(key) {
                    return Err(format!("arch '{s}': option '{key}' given twice"));
                }
                if o == "bn" {
                    *batchnorm = true;
                } else if o == "nobias" {
                    *bias = false;
                } else if let Some(p) = o.strip_prefix("dropout=") {
                    *dropout = p
                        .parse::<f32>()
                        .ok()
                        .filter(|p| (0.0..1.0).contains(p))
                        .ok_or_else(|| format!("arch '{s}': dropout '{p}' must be in [0, 1)"))?;
                } else {
                    return Err(format!("arch '{s}': unknown option '{o}' (bn, dropout=P, nobias)"));
                }
            }
        }
        Ok(spec)
    }
}

impl std::fmt::Display for ArchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchSpec::Mlp { hidden, batchnorm, dropout, bias } => {
                let h: Vec<String> = hidden.iter().map(|v| v.to_string()).collect();
                if h.is_empty() {
                    write!(f, "linear")?;
                } else {
                    write!(f, "mlp:{}", h.join(","))?;
                }
                if *batchnorm {
                    write!(f, "/bn")?;
                }
                if *dropout > 0.0 {
                    write!(f, "/dropout={dropout}")?;
                }
                if !*bias {
                    write!(f, "/nobias")?;
                }
                Ok(())
            }
            ArchSpec::LeNet => write!(f, "lenet"),
            ArchSpec::Conv3 { widths } => write!(f, "conv3{}", conv3_suffix(widths)),
            ArchSpec::SoftHebbMlp { hidden, bias } => {
                write!(f, "softhebb-mlp:{hidden}{}", if *bias { "/bias" } else { "" })
            }
            ArchSpec::SoftHebbCnn { widths: [a, b, c] } => write!(f, "softhebb-cnn:{a},{b},{c}"),
            ArchSpec::SoftHebbStl => write!(f, "softhebb-stl"),
            ArchSpec::HebbConv3 { widths } => write!(f, "hebb-conv3{}", conv3_suffix(widths)),
            ArchSpec::AlMlp { hidden } => {
                let h: Vec<String> = hidden.iter().map(|v| v.to_string()).collect();
                write!(f, "al-mlp:{}", h.join(","))
            }
            ArchSpec::Recurrent { cell, hidden } => {
                let h: Vec<String> = hidden.iter().map(|v| v.to_string()).collect();
                let name = match cell {
                    Cell::Elman => "rnn",
                    Cell::Gru => "gru",
                };
                write!(f, "{name}:{}", h.join(","))
            }
            ArchSpec::Vae { hidden, z } => {
                let h: Vec<String> = hidden.iter().chain([z]).map(|v| v.to_string()).collect();
                write!(f, "vae:{}", h.join(","))
            }
            ArchSpec::Gpt { layers, d, heads, embed_std, sinusoidal } => {
                write!(f, "gpt:{layers},{d},{heads}")?;
                if *embed_std != GPT_EMBED_STD {
                    write!(f, "/embed={embed_std}")?;
                }
                if *sinusoidal {
                    write!(f, "/pos=sin")?;
                }
                Ok(())
            }
        }
    }
}

/// Builds a network layer by layer, tracking the current shape and drawing initial weights.
pub struct Builder<'r> {
    net: Network,
    init: Init,
    rng: &'r mut Rng,
    /// Shapes only: weights are not allocated (or drawn), so a network's size can be checked
    /// before it is built.
    dry: bool,
}

impl<'r> Builder<'r> {
    pub fn new(input: Shape, init: Init, rng: &'r mut Rng) -> Self {
        Builder {
            net: Network { layers: vec![], params: vec![], shapes: vec![input], hw: None },
            init,
            rng,
            dry: false,
        }
    }
    fn cur(&self) -> Shape {
        *self.net.shapes.last().unwrap()
    }
    fn param(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>, kind: ParamKind) -> usize {
        self.net.params.push(Param { name, shape, data, kind });
        self.net.params.len() - 1
    }
    fn push(&mut self, layer: Layer, out: Shape) {
        self.net.layers.push(layer);
        self.net.shapes.push(out);
    }
    fn weights(&mut self, fan_in: usize, fan_out: usize, rows: usize, bias: bool) -> (Vec<f32>, Option<Vec<f32>>) {
        if self.dry {
            return (vec![], bias.then(Vec::new));
        }
        let (wb, bb) = self.init.bounds(fan_in, fan_out);
        let mut w = vec![0.0; rows * fan_in];
        self.rng.fill_uniform(&mut w, -wb, wb);
        let b = bias.then(|| {
            let mut b = vec![0.0; rows];
            if bb > 0.0 {
                self.rng.fill_uniform(&mut b, -bb, bb);
            }
            b
        });
        (w, b)
    }

    pub fn dense(mut self, out: usize, bias: bool) -> Self {
        let inp = self.cur().len();
        let i = self.net.layers.len();
        let (w, b) = self.weights(inp, out, out, bias);
        let w = self.param(format!("layers.{i}.weight"), vec![out, inp], w, ParamKind::Weight);
        let b = b.map(|b| self.param(format!("layers.{i}.bias"), vec![out], b, ParamKind::Bias));
        self.push(Layer::Dense { w, b, inp, out }, Shape::flat(out));
        self
    }

    pub fn conv(mut self, o: usize, k: usize, stride: usize, pad: usize, reflect: bool, bias: bool) -> Self {
        let s = self.cur();
        let geom = ConvGeom { c: s.c, h: s.h, w: s.w, o, k, stride, pad, reflect };
        let i = self.net.layers.len();
        let (w, b) = self.weights(geom.ckk(), o * k * k, o, bias);
        let w = self.param(format!("layers.{i}.weight"), vec![o, s.c, k, k], w, ParamKind::Weight);
        let b = b.map(|b| self.param(format!("layers.{i}.bias"), vec![o], b, ParamKind::Bias));
        let out = Shape::new(o, geom.oh(), geom.ow());
        self.push(Layer::Conv { w, b, geom }, out);
        self
    }

    /// A recurrent layer over the current shape's rows (T = h steps of c w values), `hidden`
    /// units; `seq_out`: output every state (1 x T x H), else the last (H). Under `torch` every
    /// weight and bias U(+-1/sqrt(H)), as PyTorch's `nn.RNN` / `nn.GRU` (the Elman cell has one
    /// bias where PyTorch has two, b_ih + b_hh, whose sum spreads wider); under xavier / kaiming,
    /// W_x and W_h by their own fans and zero biases.
    pub fn recurrent(mut self, cell: Cell, hidden: usize, seq_out: bool) -> Self {
        let s = self.cur();
        let geom = RnnGeom { cell, c: s.c, w: s.w, steps: s.h, hidden, seq_out };
        let (i, g, h) = (geom.inp(), geom.gates(), hidden);
        let li = self.net.layers.len();
        let bias_of = |this: &mut Self| -> Vec<f32> {
            let mut b = vec![0.0; if this.dry { 0 } else { g }];
            if this.init == Init::Torch && !this.dry {
                let bound = 1.0 / (h as f32).sqrt();
                this.rng.fill_uniform(&mut b, -bound, bound);
            }
            b
        };
        let draw = |fan_in: usize, this: &mut Self| -> Vec<f32> {
            if this.dry {
                return vec![];
            }
            let bound = match this.init {
                Init::Torch => 1.0 / (h as f32).sqrt(),
                other => other.bounds(fan_in, g).0,
            };
            let mut w = vec![0.0; g * fan_in];
            this.rng.fill_uniform(&mut w, -bound, bound);
            w
        };
        let wx = draw(i, &mut self);
        let wh = draw(h, &mut self);
        let b = bias_of(&mut self);
        let bh = (cell == Cell::Gru).then(|| bias_of(&mut self));
        let wx = self.param(format!("layers.{li}.weight"), vec![g, i], wx, ParamKind::Weight);
        let wh = self.param(format!("layers.{li}.weight_hh"), vec![g, h], wh, ParamKind::Weight);
        let b = Some(self.param(format!("layers.{li}.bias"), vec![g], b, ParamKind::Bias));
        let bh = bh.map(|v| self.param(format!("layers.{li}.bias_hh"), vec![g], v, ParamKind::Bias));
        let out = if seq_out { Shape::new(1, s.h, hidden) } else { Shape::flat(hidden) };
        self.push(Layer::Recurrent { wx, wh, b, bh, geom }, out);
        self
    }

    fn normal(&mut self, len: usize, std: f32) -> Vec<f32> {
        let mut v = vec![0.0; if self.dry { 0 } else { len }];
        self.rng.fill_normal(&mut v, std);
        v
    }

    /// A Gaussian latent of `z` values over the current 2z (`nn::latent`).
    pub fn latent(mut self, z: usize) -> Self {
        assert_eq!(self.cur().len(), 2 * z, "a latent of {z} values needs 2 x {z} inputs");
        self.push(Layer::Latent { z }, Shape::flat(z));
        self
    }

    /// Token + position embedding of the current shape's T ids into width `d` (T x d out).
    pub fn embed(mut self, vocab: usize, d: usize, std: f32) -> Self {
        let ctx = self.cur().len();
        let i = self.net.layers.len();
        let (t, p) = (self.normal(vocab * d, std), self.normal(ctx * d, std));
        let tok = self.param(format!("layers.{i}.tok"), vec![vocab, d], t, ParamKind::Weight);
        let pos = self.param(format!("layers.{i}.pos"), vec![ctx, d], p, ParamKind::Weight);
        self.push(Layer::Embed { tok, pos, geom: EmbedGeom { vocab, ctx, d } }, Shape::new(1, ctx, d));
        self
    }

    /// The last embedding's positions become fixed sinusoids (Vaswani et al. 2017): position t,
    /// column 2i: sin(t / 10000^(2i / d)), column 2i + 1: cos of the same; a buffer, not trained.
    pub fn sinusoidal_positions(mut self) -> Self {
        let Some(Layer::Embed { pos, geom, .. }) = self.net.layers.last() else {
            panic!("sinusoidal_positions follows an embedding");
        };
        let (pos, ctx, d) = (*pos, geom.ctx, geom.d);
        let p = &mut self.net.params[pos];
        p.kind = ParamKind::Buffer;
        if !self.dry {
            for t in 0..ctx {
                for c in 0..d {
                    let angle = t as f64 / 10000f64.powf((c - c % 2) as f64 / d as f64);
                    p.data[t * d + c] = if c % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
                }
            }
        }
        self
    }

    fn ln_params(&mut self, name: String, d: usize) -> (usize, usize) {
        let fill = |this: &Self, v: f32| vec![v; if this.dry { 0 } else { d }];
        let (one, zero) = (fill(self, 1.0), fill(self, 0.0));
        (
            self.param(format!("{name}.weight"), vec![d], one, ParamKind::BnScale),
            self.param(format!("{name}.bias"), vec![d], zero, ParamKind::BnShift),
        )
    }

    /// Layer norm over the rows (positions) of the current T x d shape.
    pub fn layernorm(mut self) -> Self {
        let s = self.cur();
        let i = self.net.layers.len();
        let (g, b) = self.ln_params(format!("layers.{i}"), s.w);
        self.push(Layer::LayerNorm { g, b, d: s.w }, s);
        self
    }

    /// A pre-norm transformer block on the current T x d shape; `depth`: the number of blocks
    /// (the output projections' std is 0.02 / sqrt(2 depth), GPT-2's).
    pub fn block(mut self, heads: usize, depth: usize) -> Self {
        let s = self.cur();
        let (ctx, d) = (s.h, s.w);
        let i = self.net.layers.len();
        let geom = BlockGeom { ctx, d, heads, hidden: 4 * d };
        let res = 0.02 / (2.0 * depth as f32).sqrt();
        let lin = |this: &mut Self, name: &str, out: usize, inp: usize, std: f32| {
            let w = this.normal(out * inp, std);
            let b = vec![0.0; if this.dry { 0 } else { out }];
            (
                this.param(format!("layers.{i}.{name}.weight"), vec![out, inp], w, ParamKind::Weight),
                this.param(format!("layers.{i}.{name}.bias"), vec![out], b, ParamKind::Bias),
            )
        };
        let ln1 = self.ln_params(format!("layers.{i}.ln1"), d);
        let qkv = lin(&mut self, "qkv", 3 * d, d, 0.02);
        let proj = lin(&mut self, "proj", d, d, res);
        let ln2 = self.ln_params(format!("layers.{i}.ln2"), d);
        let fc1 = lin(&mut self, "fc1", 4 * d, d, 0.02);
        let fc2 = lin(&mut self, "fc2", d, 4 * d, res);
        self.push(Layer::Block { p: BlockParams { ln1, qkv, proj, ln2, fc1, fc2 }, geom }, s);
        self
    }

    /// The same dense map (N(0, 0.02) weights, zero bias) on every row of the current T x d
    /// shape: T x `out`.
    pub fn token_dense(mut self, out: usize) -> Self {
        let s = self.cur();
        let i = self.net.layers.len();
        let w = self.normal(out * s.w, 0.02);
        let b = vec![0.0; if self.dry { 0 } else { out }];
        let w = self.param(format!("layers.{i}.weight"), vec![out, s.w], w, ParamKind::Weight);
        let b = Some(self.param(format!("layers.{i}.bias"), vec![out], b, ParamKind::Bias));
        self.push(Layer::TokenDense { w, b, inp: s.w, out }, Shape::new(1, s.h, out));
        self
    }

    pub fn act(mut self, a: Activation) -> Self {
        let s = self.cur();
        self.push(Layer::Act(a), s);
        self
    }

    fn pool_geom(&self, k: usize, stride: usize, pad: usize) -> PoolGeom {
        let s = self.cur();
        debug_assert!(2 * pad <= k, "pool padding is at most half the window");
        PoolGeom { c: s.c, h: s.h, w: s.w, k, stride, pad }
    }
    pub fn maxpool(self, k: usize, stride: usize) -> Self {
        self.maxpool_pad(k, stride, 0)
    }
    /// Max pooling with `pad` cells of -inf on every side (PyTorch's `padding`).
    pub fn maxpool_pad(mut self, k: usize, stride: usize, pad: usize) -> Self {
        let g = self.pool_geom(k, stride, pad);
        let out = Shape::new(g.c, g.oh(), g.ow());
        self.push(Layer::MaxPool(g), out);
        self
    }
    pub fn avgpool(self, k: usize, stride: usize) -> Self {
        self.avgpool_pad(k, stride, 0)
    }
    /// Average pooling with `pad` zero cells on every side, counted in the mean (PyTorch's
    /// `padding` with `count_include_pad`).
    pub fn avgpool_pad(mut self, k: usize, stride: usize, pad: usize) -> Self {
        let g = self.pool_geom(k, stride, pad);
        let out = Shape::new(g.c, g.oh(), g.ow());
        self.push(Layer::AvgPool(g), out);
        self
    }
    /// Triangle activation relu(x - mean over channels)^power at every position.
    pub fn triangle(mut self, power: f32) -> Self {
        let s = self.cur();
        let g = CompeteGeom { c: s.c, p: s.h * s.w, kind: CompeteKind::Triangle { power } };
        self.push(Layer::Compete(g), s);
        self
    }
    /// Any cross-channel operation of `compete`.
    pub fn compete(mut self, kind: CompeteKind) -> Self {
        let s = self.cur();
        self.push(Layer::Compete(CompeteGeom { c: s.c, p: s.h * s.w, kind }), s);
        self
    }
    /// A `compete` operation over all of a sample's values at once (C x H x W as one vector).
    pub fn compete_flat(mut self, kind: CompeteKind) -> Self {
        let s = self.cur();
        self.push(Layer::Compete(CompeteGeom { c: s.len(), p: 1, kind }), s);
        self
    }
    /// Per-sample standardisation of all of a sample's values.
    pub fn samplenorm(mut self) -> Self {
        let s = self.cur();
        self.push(Layer::SampleNorm, s);
        self
    }
    /// Softmax over channels at every position, temperature 1/t.
    pub fn channel_softmax(mut self, t: f32) -> Self {
        let s = self.cur();
        let g = CompeteGeom { c: s.c, p: s.h * s.w, kind: CompeteKind::Softmax { t } };
        self.push(Layer::Compete(g), s);
        self
    }
    pub fn dropout(mut self, p: f32) -> Self {
        let s = self.cur();
        self.push(Layer::Dropout(p), s);
        self
    }
    pub fn batchnorm(mut self, affine: bool) -> Self {
        let s = self.cur();
        let i = self.net.layers.len();
        let affine = affine.then(|| {
            let g = self.param(format!("layers.{i}.gamma"), vec![s.c], vec![1.0; s.c], ParamKind::BnScale);
            let b = self.param(format!("layers.{i}.beta"), vec![s.c], vec![0.0; s.c], ParamKind::BnShift);
            (g, b)
        });
        let mean = self.param(format!("layers.{i}.running_mean"), vec![s.c], vec![0.0; s.c], ParamKind::Buffer);
        let var = self.param(format!("layers.{i}.running_var"), vec![s.c], vec![1.0; s.c], ParamKind::Buffer);
        let geom = BnGeom { c: s.c, p: s.h * s.w, eps: 1e-5, momentum: 0.1 };
        self.push(Layer::BatchNorm { affine, mean, var, geom }, s);
        self
    }
    pub fn build(self) -> Network {
        self.net
    }
}

impl ArchSpec {
    /// The network for inputs of `input` shape and `classes` outputs. Checks that every layer
    /// fits its input (a conv net on inputs too small for it is an error, not a panic).
    pub fn build(
        &self,
        input: Shape,
        classes: usize,
        act: Activation,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Network, String> {
        need(input, self.min_side(), &self.to_string())?;
        // Its size first, from the shapes alone: a network too large for memory is an error
        // before anything is allocated.
        let mut scratch = Rng::new(0);
        let dry = self.assemble(Builder { dry: true, ..Builder::new(input, init, &mut scratch) }, classes, act, input);
        check_memory(&self.to_string(), &dry, 0)?;
        Ok(self.assemble(Builder::new(input, init, rng), classes, act, input))
    }

    fn assemble(&self, b: Builder, classes: usize, act: Activation, input: Shape) -> Network {
        match self {
            ArchSpec::Mlp { hidden, batchnorm, dropout, bias } => {
                let mut b = b;
                for &h in hidden {
                    b = b.dense(h, *bias);
                    if *batchnorm {
                        b = b.batchnorm(true);
                    }
                    b = b.act(act);
                    if *dropout > 0.0 {
                        b = b.dropout(*dropout);
                    }
                }
                b.dense(classes, *bias).build()
            }
            ArchSpec::LeNet => {
                // BioTorch resizes 28x28 images to 32x32; padding conv1 by 2 gives the same shapes.
                let pad = 32usize.saturating_sub(input.h.min(input.w)).div_ceil(2);
                b.conv(6, 5, 1, pad, false, true)
                    .act(act)
                    .maxpool(2, 2)
                    .conv(16, 5, 1, 0, false, true)
                    .act(act)
                    .maxpool(2, 2)
                    .conv(120, 5, 1, 0, false, true)
                    .act(act)
                    .dense(84, true)
                    .act(act)
                    .dense(classes, true)
                    .build()
            }
            ArchSpec::Conv3 { widths: [w1, w2, w3] } => {
                // Miconi's Hebbian CNN, used by Gupta et al. 2022: no padding, 2x2 average pooling.
                b.conv(*w1, 5, 1, 0, false, true)
                    .act(act)
                    .avgpool(2, 2)
                    .conv(*w2, 3, 1, 0, false, true)
                    .act(act)
                    .avgpool(2, 2)
                    .conv(*w3, 3, 1, 0, false, true)
                    .act(act)
                    .avgpool(2, 2)
                    .dense(classes, true)
                    .build()
            }
            ArchSpec::SoftHebbMlp { hidden, bias } => {
                // Moraitis et al. 2022 / SoftHebb's `2SoftMlpMNIST`: the read-out sees softmax(5 u).
                b.dense(*hidden, *bias).channel_softmax(5.0).dense(classes, true).build()
            }
            ArchSpec::SoftHebbCnn { widths: [w1, w2, w3] } => {
                // Journe et al. 2023, `demo.py` / `4SoftHebbCnnCIFAR`: [BN (no affine) -> conv
                // (reflect pad, no bias) -> triangle -> pool] x 3 -> dropout 0.5 -> linear; max
                // pools 4/2 padded by 1, avg pool 2/2: 32x32 gives 1536 x 4 x 4 (the reference's
                // 24576 read-out inputs), 28x28 gives 1536 x 3 x 3.
                b.batchnorm(false)
                    .conv(*w1, 5, 1, 2, true, false)
                    .triangle(0.7)
                    .maxpool_pad(4, 2, 1)
                    .batchnorm(false)
                    .conv(*w2, 3, 1, 1, true, false)
                    .triangle(1.4)
                    .maxpool_pad(4, 2, 1)
                    .batchnorm(false)
                    .conv(*w3, 3, 1, 1, true, false)
                    .triangle(1.0)
                    .avgpool(2, 2)
                    .dropout(0.5)
                    .dense(classes, true)
                    .build()
            }
            ArchSpec::SoftHebbStl => {
                // SoftHebb's `5SoftHebbCnnSTL` for 96x96 colour images: 96 k5 / 384 k3 / 1536 k3
                // / 6144 k3, triangle powers 0.7 / 0.7 / 1.4 / 1.0, pools avg 4/2/1, max 4/2/1,
                // avg 4/2/1, avg 2/2 (96x96 gives 6144 x 6 x 6), dropout 0.5. Per-layer softmax
                // temperatures and rates: hebb_t_inv [1, 0.65, 0.45, 0.25], hebb_lr [0.08, 0.005,
                // 0.01, 0.01].
                b.batchnorm(false)
                    .conv(96, 5, 1, 2, true, false)
                    .triangle(0.7)
                    .avgpool_pad(4, 2, 1)
                    .batchnorm(false)
                    .conv(384, 3, 1, 1, true, false)
                    .triangle(0.7)
                    .maxpool_pad(4, 2, 1)
                    .batchnorm(false)
                    .conv(1536, 3, 1, 1, true, false)
                    .triangle(1.4)
                    .avgpool_pad(4, 2, 1)
                    .batchnorm(false)
                    .conv(6144, 3, 1, 1, true, false)
                    .triangle(1.0)
                    .avgpool(2, 2)
                    .dropout(0.5)
                    .dense(classes, true)
                    .build()
            }
            ArchSpec::HebbConv3 { widths: [w1, w2, w3] } => {
                // conv3 as Miconi's Hebbian CNN builds it: every layer's input standardised per
                // sample, the conv bias holding minus the adaptive WTA threshold (set by the
                // rule, zero at start), triangle outputs relu(u - mean_c u).
                // 28x28 inputs are padded by 2 in the first conv (as `lenet`): 32x32 shapes, 1600
                // features for the read-out instead of 400.
                let pad = 32usize.saturating_sub(input.h.min(input.w)).div_ceil(2).min(2);
                b.samplenorm()
                    .conv(*w1, 5, 1, pad, false, true)
                    .triangle(1.0)
                    .avgpool(2, 2)
                    .samplenorm()
                    .conv(*w2, 3, 1, 0, false, true)
                    .triangle(1.0)
                    .avgpool(2, 2)
                    .samplenorm()
                    .conv(*w3, 3, 1, 0, false, true)
                    .triangle(1.0)
                    .avgpool(2, 2)
                    .dense(classes, true)
                    .build()
            }
            ArchSpec::Recurrent { cell, hidden } => {
                let mut b = b;
                for (j, &h) in hidden.iter().enumerate() {
                    b = b.recurrent(*cell, h, j + 1 < hidden.len());
                }
                b.dense(classes, true).build()
            }
            ArchSpec::Gpt { layers, d, heads, embed_std, sinusoidal } => {
                let mut b = b.embed(classes, *d, *embed_std);
                if *sinusoidal {
                    b = b.sinusoidal_positions();
                }
                for _ in 0..*layers {
                    b = b.block(*heads, *layers);
                }
                b.layernorm().token_dense(classes).build()
            }
            ArchSpec::Vae { hidden, z } => {
                // The decoder reconstructs the input: one Bernoulli logit per input value.
                let mut b = b;
                for &h in hidden {
                    b = b.dense(h, true).act(act);
                }
                b = b.dense(2 * z, true).latent(*z);
                for &h in hidden.iter().rev() {
                    b = b.dense(h, true).act(act);
                }
                b.dense(input.len(), true).build()
            }
            ArchSpec::AlMlp { hidden } => {
                // Zhou 2022: the input scaled to unit norm; a = f(W^T a) per layer, no bias.
                let mut b = b.compete_flat(CompeteKind::L2);
                for &h in hidden {
                    b = b.dense(h, false).compete(CompeteKind::AbsNorm);
                }
                b.dense(classes, true).build()
            }
        }
    }
}

/// Refuse a network whose training would need more than `memory_cap()`: its parameters four
/// times over (weights, gradients, two optimiser moments) and, for a `batch` of samples, every
/// layer's output three times over (activations, the layer's saved inputs, gradients). The
/// error names the network, the estimate and the cap.
pub fn check_memory(arch: &str, net: &Network, batch: usize) -> Result<(), String> {
    let params: f64 = net.params.iter().map(|p| p.shape.iter().product::<usize>() as f64).sum();
    // A recurrent layer also keeps every step's input, gate pre-activations and state.
    let unrolled: f64 = net
        .layers
        .iter()
        .map(|l| match l {
            super::Layer::Block { geom, .. } => {
                // LN outputs, q k v, attention probabilities, MLP pre-activations, and gradients.
                (geom.ctx * (2 * 8 * geom.d + 2 * 2 * geom.hidden) + geom.heads * geom.ctx * geom.ctx) as f64
            }
            super::Layer::Recurrent { geom, .. } => {
                // Inputs and their gradients, gate pre-activations and theirs, states, GRU gates.
                let gates = if geom.cell == Cell::Gru { 4 * geom.hidden } else { 0 };
                (geom.steps * (2 * geom.inp() + 2 * geom.gates() + geom.hidden + gates)) as f64
            }
            _ => 0.0,
        })
        .sum();
    let acts: f64 = net.shapes.iter().map(|s| s.len() as f64).sum::<f64>() + unrolled;
    let bytes = 4.0 * (4.0 * params + 3.0 * batch as f64 * acts);
    let cap = crate::limits::memory_cap();
    if bytes > cap {
        let gib = |b: f64| b / (1u64 << 30) as f64;
        return Err(format!(
            "arch {arch}: training it needs about {:.1} GiB ({:.3e} parameters{}), more than the cap of {:.1} GiB \
             (set BIOLEARN_MAX_MEMORY_GB to change it)",
            gib(bytes),
            params,
            if batch > 0 { format!(", {acts:.3e} activations per sample at batch {batch}") } else { String::new() },
            gib(cap)
        ));
    }
    Ok(())
}

impl ArchSpec {
    /// The smallest image side (height and width) the network runs on: its convolutions and
    /// pools leave nothing on smaller images. 1 for the MLPs.
    pub fn min_side(&self) -> usize {
        match self {
            ArchSpec::LeNet => 28,
            ArchSpec::Conv3 { .. } => 24,
            ArchSpec::HebbConv3 { .. } => 20,
            ArchSpec::SoftHebbCnn { .. } => 24,
            ArchSpec::SoftHebbStl => 32,
            ArchSpec::Mlp { .. }
            | ArchSpec::SoftHebbMlp { .. }
            | ArchSpec::AlMlp { .. }
            | ArchSpec::Recurrent { .. }
            | ArchSpec::Gpt { .. }
            | ArchSpec::Vae { .. } => 1,
        }
    }
}

fn need(input: Shape, min: usize, name: &str) -> Result<(), String> {
    if input.h < min || input.w < min {
        Err(format!("arch {name} needs inputs of at least {min}x{min}, the data set's are {}x{}", input.h, input.w))
    } else {
        Ok(())
    }
}
