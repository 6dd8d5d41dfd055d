//! The one training driver, shared by every rule: seeded shuffling and mini-batches, the rule's
//! step, the optimiser, the learning-rate schedule, evaluation every epoch, divergence detection,
//! and the run's record (`RunResult`, written as `result.json`).
//!
//! Reproducibility: one `Rng` from the seed; the network's initialisation, the rule's feedback
//! matrices, the validation split and the shuffling each draw from a fork of it in a fixed order.
//! The step runs inside one rayon pool of `threads` threads.

use crate::config::TrainConfig;
use crate::data::noise::{self, NoiseKind, Norm};
use crate::data::{self, Dataset, Split};
use crate::nn::hardware::Device;
use crate::nn::prune::Masks;
use crate::nn::{loss::argmax, Layer, Network, Shape, Workspace};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::rules::{Prediction, Rule, Step, StepStats, Updater};
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_REVISION: &str = env!("BIOLEARN_GIT_REVISION");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub lr: f32,
    /// Mean loss and accuracy over the epoch's mini-batches (training mode, as they were seen;
    /// the loss NaN where the run diverged, written as `null`).
    #[serde(deserialize_with = "crate::nonfinite::f64")]
    pub train_loss: f64,
    #[serde(deserialize_with = "crate::nonfinite::f64")]
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    /// Energy-based rules: mean per-sample energy at the feed-forward start of relaxation and
    /// after it, and the inference steps per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_after: Option<f64>,
    /// Mean inference steps per batch (a tolerance may stop relaxation early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_steps: Option<f64>,
    /// Passes over the training set in this epoch, where more than one (a Hebbian phase
    /// measured in updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<usize>,
    /// Multiply-adds of the epoch's training (every GEMM of every step: forward, the rule's
    /// backward or relaxation, updates) and its steps.
    #[serde(default)]
    pub train_macs: u64,
    #[serde(default)]
    pub steps: usize,
    /// At the epoch's end, each feedback matrix's angle (degrees) to the matrix backprop would
    /// use in its place, by parameter name (`rules::feedback_angles`; empty for rules without).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "crate::nonfinite::pairs")]
    pub feedback_angles: Vec<(String, f64)>,
    /// Spiking rules: the mean spikes per test sample of the epoch's test evaluation, every
    /// layer's (the input's encoding included): an energy proxy (`Rule::take_activity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spikes_per_sample: Option<f64>,
    /// Sequence data (language models): the mean cross-entropy per predicted token (nats) on
    /// the test and validation splits; the perplexity is its exponential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// A VAE: the negative ELBO per test sample (nats; one latent sample per input, the
    /// evaluation's fixed draws), its reconstruction term (the decoder's Bernoulli negative
    /// log-likelihood), and the validation split's negative ELBO. Its `train_loss` is the
    /// training batches' negative ELBO per pixel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_elbo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_recon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_elbo: Option<f64>,
}

impl EpochRecord {
    /// exp(test cross-entropy per token), for sequence data.
    pub fn test_perplexity(&self) -> Option<f64> {
        self.test_loss.map(f64::exp)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub name: String,
    pub source: String,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    pub shape: [usize; 3],
    pub classes: usize,
    /// FNV-1a 64 of the loaded pixels and labels, before normalisation.
    pub checksum: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diverged {
    pub epoch: usize,
    pub batch: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The record format's version (`env::SCHEMA_VERSION`; 0 in files written before it).
    #[serde(default)]
    pub schema_version: u32,
    pub biolearn_version: String,
    pub git_revision: String,
    /// Where the run was made (CPU, kernel path, rustc, ...); absent in old files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<crate::env::Environment>,
    pub seed: u64,
    pub config: TrainConfig,
    pub data: DataInfo,
    pub parameters: usize,
    pub epochs: Vec<EpochRecord>,
    /// Test accuracy after the last epoch, a fraction in [0, 1].
    pub test_accuracy: f64,
    /// Set when the loss became NaN or infinite: training stopped there.
    pub diverged: Option<Diverged>,
    pub total_seconds: f64,
    /// Training samples per second over all epochs (evaluation excluded).
    pub train_samples_per_second: f64,
    /// False when the run stopped before its last epoch on request (`RunOptions::stop_after`),
    /// to be continued from its checkpoint.
    #[serde(default = "yes")]
    pub complete: bool,
    /// On compute-in-memory hardware: the arrays' activity per training step (of this
    /// process's epochs) and its energy, latency and area (`nn::hardware::cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_cost: Option<crate::nn::hardware::cost::HardwareCost>,
}

fn yes() -> bool {
    true
}

/// How a run goes beyond its configuration: checkpoints, resuming, a starting point.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Write the whole training state to this file after every epoch (atomically): weights, the
    /// rule's state, optimiser moments, the RNG, the epochs done and their records.
    pub checkpoint: Option<std::path::PathBuf>,
    /// Continue the run saved in this checkpoint (it must hold the same configuration): the
    /// records come out as an uninterrupted run's.
    pub resume: Option<std::path::PathBuf>,
    /// Start from the network weights and rule tensors of a saved model or checkpoint (any run
    /// with the same network), instead of the initialisation.
    pub init_from: Option<std::path::PathBuf>,
    /// Train at most this many epochs in this call (then `complete` is false).
    pub stop_after: Option<usize>,
}

/// A checkpoint's file format marker.
const CHECKPOINT_KIND: &str = "biolearn-checkpoint";

/// Progress reports for a UI.
pub enum Progress<'a> {
    Batch { epoch: usize, epochs: usize, done: usize, total: usize },
    Epoch { record: &'a EpochRecord, epochs: usize },
}

/// A network, its rule and optimiser, and the buffers of one batch size.
pub struct Trainer {
    pub net: Network,
    pub rule: Box<dyn Rule>,
    pub opt: Optimizer,
    pub cfg: TrainConfig,
    /// The loss trained on (`TrainConfig::train_loss`).
    loss: crate::nn::Loss,
    ws: Workspace,
    eval_ws: Workspace,
    grads: Vec<Vec<f32>>,
    rng: Rng,
    /// The devices the weights live on (`cfg.hardware` not ideal).
    pub device: Option<Device>,
    /// The arrays' activity per training step, for the hardware cost model (`cfg.hardware` not
    /// ideal).
    pub meter: Option<crate::nn::hardware::cost::Meter>,
    order: Vec<usize>,
    /// Pruning masks multiplied into the weights after every optimiser step.
    pub masks: Option<Masks>,
    /// Gaussian noise (std in pixel units) added to every training batch.
    pub train_noise: Option<(f64, Norm)>,
    /// Epochs trained so far (the next epoch's index: `Rule::phase` and `Step::epoch` take it).
    pub epochs_done: usize,
    /// Who trained the epochs before a resume, where not this process's build and CPU path
    /// ("REVISION / KERNEL", from the checkpoint): a record made across a code change says so.
    pub trained_by: Vec<String>,
    /// Features of the rule's frozen prefix (`Rule::frozen_prefix`), most recently used last.
    cache: Vec<Frozen>,
    /// Use that cache (the default); false recomputes the prefix for every batch.
    pub cache_frozen: bool,
    /// Train on a split in its own order instead of a fresh shuffle per pass (the online
    /// condition's stream, already in the seed's order: every arm sees the same sequence).
    pub keep_order: bool,
    /// Score every training batch in evaluation mode just before the rule's step on it (the
    /// online condition's prequential accuracy: each sample predicted before its own update),
    /// adding the hits to `prequential_correct`. Off by default (it costs a forward pass).
    pub score_before_step: bool,
    pub prequential_correct: usize,
}

/// The complete training state of a `Trainer` (every parameter, feedback matrices included,
/// the optimiser, the rule's own state, the RNG, the epoch count and the masks), to try
/// something (fine-tuning at one sparsity) and come back to exactly where training stood.
pub struct Snapshot {
    params: Vec<Vec<f32>>,
    opt: Optimizer,
    rule: crate::rules::RuleState,
    rng: Rng,
    device_rng: Option<Rng>,
    /// The hardware meter's activity so far (a fine-tuning epoch tried after the snapshot is
    /// not a training step of the run).
    metered: Option<crate::nn::hardware::cost::Activity>,
    epochs_done: usize,
    masks: Option<Masks>,
}

/// The evaluation-mode activations entering layer `layer` for every sample of one split, valid
/// while the split's pixels and the prefix's parameters hash to `key`.
struct Frozen {
    layer: usize,
    key: u64,
    feats: Vec<f32>,
}

/// Splits whose frozen features are kept at once (training, test, validation).
const CACHED_SPLITS: usize = 3;

pub struct EpochStats {
    pub loss: f64,
    pub accuracy: f64,
    /// Mean per-sample (energy before, after) relaxation and mean inference steps per batch, for
    /// energy-based rules.
    pub energy: Option<(f64, f64, f64)>,
    /// Index of the batch whose loss was not finite.
    pub diverged_at: Option<usize>,
    pub seconds: f64,
    /// Passes over the training set (1 but in a phase until settled) and samples trained on.
    pub passes: usize,
    pub samples: usize,
    /// Multiply-adds of the epoch's training (`linalg::macs`) and its optimisation steps (batches).
    pub macs: u64,
    pub steps: usize,
}

impl Trainer {
    /// Bytes the training workspace holds (activations, gradients, scratch; `Workspace::bytes`).
    pub fn workspace_bytes(&self) -> usize {
        self.ws.bytes()
    }

    /// Build the network and rule for inputs of `input` shape and `classes` outputs, drawing
    /// from `rng` in a fixed order: network, rule, then the training stream.
    /// A trainer for a data set: the network built for its samples' shape and classes, and
    /// checked to answer what the data asks (a score per class for every target: one target an
    /// image, T for a text window; a VAE one logit per pixel), so that a mismatch (an image
    /// network on a text corpus, a model trained on other data) is an error naming both, not a
    /// panic in the loss.
    pub fn on_data(cfg: &TrainConfig, ds: &crate::data::Dataset, rng: &mut Rng) -> Result<Self, String> {
        let tr = Self::new(cfg, Shape::new(ds.channels, ds.height, ds.width), ds.num_classes, rng)?;
        let (out, t) = (tr.net.output_len(), ds.train.targets().max(1));
        let per = if tr.net.has_latent() { 1 } else { ds.num_classes };
        if out != t * per {
            let what = if t > 1 && per > 1 {
                format!("{t} targets x {per} classes")
            } else if t > 1 {
                format!("{t} targets")
            } else {
                format!("{per} classes")
            };
            let hint = if ds.alphabet.is_some() { ": a text data set needs a language model (gpt:L,D,H)" } else { "" };
            return Err(format!(
                "network {} answers {out} values per sample, but {} asks {} ({what}){hint}",
                cfg.arch,
                ds.name,
                t * per
            ));
        }
        Ok(tr)
    }

    pub fn new(cfg: &TrainConfig, input: Shape, classes: usize, rng: &mut Rng) -> Result<Self, String> {
        cfg.validate()?;
        let arch = cfg.arch_spec()?;
        let mut net = arch.build(input, classes, cfg.activation, cfg.init, &mut rng.fork())?;
        crate::nn::arch::check_memory(&cfg.arch, &net, cfg.batch)?;
        let rule = cfg
            .rule
            .build(&mut net, &cfg.build_context(), &mut rng.fork())
            .map_err(|e| format!("rule {}: {e}", cfg.rule))?;
        let opt = Optimizer::new(cfg.optim(), &net.update_sizes());
        let grads = net.zero_grads();
        let stream = rng.fork();
        // Hardware last, so that an ideal run draws exactly what it drew before hardware existed;
        // its devices draw from a stream of their own (from the seed, salted), not from `rng`,
        // whose next draws the caller makes (the validation split, the training subset): a
        // hardware condition at seed s trains on the same data as the ideal run at seed s.
        let hw = cfg.hardware_config()?;
        let device = if hw.is_ideal() {
            None
        } else {
            if net.has_transformer() {
                return Err(format!(
                    "hardware {}: compute-in-memory conditions are modelled for dense, conv and recurrent layers; \
                     network {} is a transformer",
                    cfg.hardware, cfg.arch
                ));
            }
            if hw.adc_bits > 0 {
                let conv = net.layers.iter().any(|l| match l {
                    Layer::Conv { geom, .. } => !geom.is_dense(),
                    Layer::Recurrent { .. } => true,
                    _ => false,
                });
                if conv {
                    return Err(format!(
                        "hardware {}: the ADC (adc_bits) is modelled for dense layers only; network {} has conv or \
                         recurrent layers (set adc_bits = 0 in a hardware file to run it without)",
                        cfg.hardware, cfg.arch
                    ));
                }
            }
            let mut hw_rng = Rng::new(cfg.seed ^ 0x6861_7264_7761_7265);
            net.hw = crate::nn::hardware::read_model(&net, &hw).map(std::sync::Arc::new);
            hw.has_device().then(|| Device::new(&hw, &mut net, &mut hw_rng))
        };
        let meter = (!hw.is_ideal()).then(|| crate::nn::hardware::cost::Meter::new(&net, rule.layer_parallel()));
        Ok(Trainer {
            net,
            rule,
            opt,
            cfg: cfg.clone(),
            loss: cfg.train_loss(),
            ws: Workspace::default(),
            eval_ws: Workspace::default(),
            grads,
            rng: stream,
            device,
            meter,
            order: Vec::new(),
            masks: None,
            train_noise: None,
            epochs_done: 0,
            trained_by: Vec::new(),
            cache: Vec::new(),
            cache_frozen: true,
            score_before_step: false,
            prequential_correct: 0,
            keep_order: false,
        })
    }

    /// The arrays' mean activity per training step so far and its price under the run's
    /// hardware (None on ideal hardware or before a step).
    pub fn hardware_cost(&self) -> Option<crate::nn::hardware::cost::HardwareCost> {
        use crate::nn::hardware::cost;
        let m = self.meter.as_ref().filter(|m| m.activity.steps > 0)?;
        let hw = self.cfg.hardware_config().ok()?;
        Some(cost::HardwareCost {
            activity: m.activity.clone(),
            cost: cost::estimate(&m.activity, &hw, &cost::Constants::neurosim()),
            config: Some(hw),
        })
    }

    /// This process's build and CPU path, as `trained_by` names them.
    fn this_build() -> String {
        let e = crate::env::Environment::current();
        format!("{} / {}", e.git_revision, e.kernel)
    }

    /// Every build that trained this run's epochs so far, this one included.
    fn trained_by_all(&self) -> Vec<String> {
        let mut v = self.trained_by.clone();
        if self.epochs_done > 0 {
            v.push(Self::this_build());
        }
        v
    }

    /// The complete training state, for `restore`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            params: self.net.params.iter().map(|p| p.data.clone()).collect(),
            opt: self.opt.clone(),
            rule: self.rule.save_state(),
            rng: self.rng.clone(),
            device_rng: self.device.as_ref().map(|d| d.rng.clone()),
            metered: self.meter.as_ref().map(|m| m.activity.clone()),
            epochs_done: self.epochs_done,
            masks: self.masks.clone(),
        }
    }

    /// Back to a `snapshot` of this trainer: the next epoch, evaluation or fine-tuning is what
    /// it would have been had nothing happened since.
    pub fn restore(&mut self, s: &Snapshot) -> Result<(), String> {
        for (p, d) in self.net.params.iter_mut().zip(&s.params) {
            p.data.copy_from_slice(d);
        }
        self.opt = s.opt.clone();
        self.rule.load_state(&s.rule)?;
        self.rng = s.rng.clone();
        if let (Some(d), Some(r)) = (self.device.as_mut(), &s.device_rng) {
            d.rng = r.clone();
        }
        if let (Some(m), Some(a)) = (self.meter.as_mut(), &s.metered) {
            m.activity = a.clone();
        }
        self.epochs_done = s.epochs_done;
        self.masks = s.masks.clone();
        Ok(())
    }

    /// Index in `self.cache` of the features entering layer `layer` for `split`, computed (in
    /// evaluation mode, batches of 1000) unless the same pixels under the same prefix
    /// parameters are cached. Keyed by content, so pruning or a changed split recomputes.
    fn frozen_features(&mut self, split: &Split, layer: usize) -> usize {
        let mut key = crate::hash::words(crate::hash::OFFSET ^ layer as u64, &split.x);
        for l in &self.net.layers[..layer] {
            for p in l.param_ids() {
                key = crate::hash::words(key, &self.net.params[p].data);
            }
        }
        if let Some(i) = self.cache.iter().position(|c| c.layer == layer && c.key == key) {
            let c = self.cache.remove(i);
            self.cache.push(c);
            return self.cache.len() - 1;
        }
        if self.cache.len() >= CACHED_SPLITS {
            self.cache.remove(0);
        }
        let (d, f) = (split.dim, self.net.shapes[layer].len());
        let mut feats = vec![0.0; split.n * f];
        let mut start = 0;
        while start < split.n {
            let m = 1000.min(split.n - start);
            self.net.prepare_forward(&mut self.eval_ws, m);
            self.eval_ws.input_mut().copy_from_slice(&split.x[start * d..(start + m) * d]);
            self.net.forward_layers(&mut self.eval_ws, 0, layer, false, &mut self.rng);
            feats[start * f..(start + m) * f].copy_from_slice(&self.eval_ws.acts[layer][..m * f]);
            start += m;
        }
        self.cache.push(Frozen { layer, key, feats });
        self.cache.len() - 1
    }

    /// Count the rule's epochs from 0 again (its phases start over: `protocol::continual` gives
    /// every task the rule's whole sequence of phases, a Hebbian rule its update budget).
    /// Weights, optimiser and the rule's learned state stay.
    pub fn restart_epochs(&mut self) {
        self.epochs_done = 0;
        self.rule.restart();
    }

    /// Make the next `train_epoch` continue the epoch last trained (the same phase, its counters
    /// running on): `protocol::online` trains its one pass over the stream chunk by chunk.
    pub fn continue_epoch(&mut self) {
        self.epochs_done = self.epochs_done.saturating_sub(1);
    }

    /// One pass over `split` in a seeded random order (in its own with `keep_order`). Stops
    /// early if the loss diverges.
    pub fn train_epoch(&mut self, split: &Split, lr: f32, mut on_batch: impl FnMut(usize, usize)) -> EpochStats {
        let t0 = Instant::now();
        let macs0 = crate::linalg::macs();
        let epoch = self.epochs_done;
        let phase = self.rule.phase(epoch);
        self.epochs_done += 1;
        let (n, d, b) = (split.n, split.dim, self.cfg.batch);
        let batches = n.div_ceil(b);
        // A frozen prefix runs once per sample for the whole epoch (not with training noise,
        // which changes the inputs every batch).
        let first = if self.train_noise.is_none() && self.cache_frozen { phase.frozen_prefix } else { 0 };
        let cached = (first > 0).then(|| self.frozen_features(split, first));
        let f = self.net.shapes[first].len();
        // Labels per sample (a sequence's targets: T), and the loss and accuracy per label.
        let t = split.targets();
        let mut labels = Vec::with_capacity(b * t);
        let (mut loss, mut correct) = (0.0f64, 0usize);
        let mut energy: Option<(f64, f64, usize)> = None;
        let mut batches_seen = 0usize;
        let mut diverged_at = None;
        // One pass, or (a phase until settled) passes until the rule says it is done.
        let (mut passes, mut samples, mut steps_done) = (0usize, 0usize, 0usize);
        if let Some(m) = &self.meter {
            let bufs: Vec<&[f32]> = m.params.iter().map(|&i| self.net.params[i].data.as_slice()).collect();
            crate::linalg::watch_arrays(&bufs);
        }
        let awake = crate::linalg::Awake::start();
        'passes: loop {
            // Each pass in a fresh seeded order (the frozen prefix above draws nothing).
            self.order.clear();
            self.order.extend(0..n);
            if !self.keep_order {
                self.rng.shuffle(&mut self.order);
            }
            passes += 1;
            for bi in 0..batches {
                if let Some(a) = &awake {
                    a.rearm();
                }
                let idx = &self.order[bi * b..((bi + 1) * b).min(n)];
                let m = idx.len();
                if self.rule.streams() {
                    self.net.prepare_streaming(&mut self.ws, m);
                } else {
                    self.net.prepare(&mut self.ws, m);
                }
                labels.clear();
                labels.extend(idx.iter().flat_map(|&s| &split.y[s * t..(s + 1) * t]));
                if let Some(ci) = cached {
                    let (feats, input) = (&self.cache[ci].feats, &mut self.ws.acts[first]);
                    for (r, &s) in idx.iter().enumerate() {
                        input[r * f..(r + 1) * f].copy_from_slice(&feats[s * f..(s + 1) * f]);
                    }
                    self.ws.first = first;
                } else {
                    let input = self.ws.input_mut();
                    for (r, &s) in idx.iter().enumerate() {
                        input[r * d..(r + 1) * d].copy_from_slice(&split.x[s * d..(s + 1) * d]);
                    }
                    if let Some((std, norm)) = &self.train_noise {
                        noise::corrupt(input, norm, NoiseKind::Gaussian, *std, &mut self.rng);
                    }
                }
                if self.score_before_step {
                    self.prequential_correct += self.score_batch(split, bi * b..((bi + 1) * b).min(n));
                }
                let mut upd =
                    Updater { opt: &mut self.opt, lr, masks: self.masks.as_ref(), device: self.device.as_mut() };
                let mut step = Step {
                    net: &mut self.net,
                    ws: &mut self.ws,
                    y: &labels,
                    loss: self.loss,
                    grads: &mut self.grads,
                    rng: &mut self.rng,
                    epoch,
                };
                let StepStats { loss_sum, correct: c, energy: en } = self.rule.train_batch(&mut step, &mut upd);
                if let Some((a, b, t)) = en {
                    let e = energy.get_or_insert((0.0, 0.0, 0));
                    e.0 += a;
                    e.1 += b;
                    e.2 += t;
                    batches_seen += 1;
                }
                if !loss_sum.is_finite() {
                    diverged_at = Some(bi);
                    break 'passes;
                }
                loss += loss_sum;
                correct += c;
                samples += m;
                steps_done += 1;
                on_batch(bi + 1, batches);
                if phase.until_settled && self.rule.settled() {
                    break 'passes;
                }
            }
            if !phase.until_settled {
                break;
            }
        }
        drop(awake);
        if let (Some(m), Some(reads)) = (self.meter.as_mut(), crate::linalg::take_reads()) {
            let pulses = self.device.as_mut().map(|d| d.take_pulses()).unwrap_or_default();
            m.add(steps_done as u64, samples as u64, &reads, &pulses);
        }
        // Means over the samples trained on (one pass: the split, as always).
        let seen = if phase.until_settled { samples.max(1) } else { n } as f64;
        EpochStats {
            loss: loss / (seen * t as f64),
            accuracy: correct as f64 / (seen * t as f64),
            energy: energy.map(|(a, b, t)| (a / seen, b / seen, t as f64 / batches_seen as f64)),
            diverged_at,
            seconds: t0.elapsed().as_secs_f64(),
            passes,
            samples,
            macs: crate::linalg::macs() - macs0,
            steps: steps_done,
        }
    }

    /// How many of the samples `order[range]` of `split` the network classifies right in
    /// evaluation mode now (the rule's own answer where it has one; a private RNG: training's
    /// stream is untouched).
    fn score_batch(&mut self, split: &Split, range: std::ops::Range<usize>) -> usize {
        let Trainer { net, rule, eval_ws, order, .. } = self;
        let idx = &order[range];
        let (d, k) = (split.dim, net.output_len());
        net.prepare_forward(eval_ws, idx.len());
        let input = eval_ws.input_mut();
        for (r, &s) in idx.iter().enumerate() {
            input[r * d..(r + 1) * d].copy_from_slice(&split.x[s * d..(s + 1) * d]);
        }
        let out = eval_forward(net, rule.as_mut(), eval_ws, &mut Rng::new(0));
        idx.iter().enumerate().filter(|&(r, &s)| argmax(&out[r * k..(r + 1) * k]) == split.y[s] as usize).count()
    }

    /// The network's evaluation-mode outputs on `split` (N x outputs; the rule's own answer
    /// where it has one), computed afresh (no frozen-prefix cache).
    pub fn outputs(&mut self, split: &Split) -> Vec<f32> {
        let (d, k) = (split.dim, self.net.output_len());
        let mut rng = Rng::new(EVAL_SEED);
        let mut out = Vec::with_capacity(split.n * k);
        let mut start = 0;
        while start < split.n {
            let m = 1000.min(split.n - start);
            self.net.prepare_forward(&mut self.eval_ws, m);
            self.eval_ws.input_mut().copy_from_slice(&split.x[start * d..(start + m) * d]);
            out.extend_from_slice(
                &eval_forward(&mut self.net, self.rule.as_mut(), &mut self.eval_ws, &mut rng)[..m * k],
            );
            start += m;
        }
        out
    }

    /// Accuracy (a fraction) on `split` in evaluation mode.
    pub fn evaluate(&mut self, split: &Split) -> f64 {
        self.evaluate_with_loss(split).0
    }

    /// Accuracy on `split` in evaluation mode and the mean cross-entropy of the outputs (taken
    /// as logits; NaN where an output is not finite).
    pub fn evaluate_with_loss(&mut self, split: &Split) -> (f64, f64) {
        self.evaluate_among(split, None)
    }

    /// `evaluate_with_loss` with the answer taken among `classes` only (a task-incremental
    /// evaluation, which knows the task's classes: `protocol::continual`); the cross-entropy is
    /// over every output.
    pub fn evaluate_among(&mut self, split: &Split, classes: Option<&[u32]>) -> (f64, f64) {
        let e = self.evaluate_full(split, classes);
        (e.accuracy, e.loss)
    }

    /// A VAE's evaluation on `split`: (pixel accuracy, negative ELBO per sample, its
    /// reconstruction term per sample), in nats; one sample of the latent per input, the same
    /// draws for every run (the evaluation's own seed).
    pub fn evaluate_vae(&mut self, split: &Split) -> (f64, f64, f64) {
        let e = self.evaluate_full(split, None);
        let t = split.targets() as f64;
        (e.accuracy, e.loss * t + e.kl, e.loss * t)
    }

    /// Accuracy, the output's loss per label (cross-entropy; a VAE's Bernoulli) and the latent's
    /// KL per sample (0 without one).
    fn evaluate_full(&mut self, split: &Split, classes: Option<&[u32]>) -> Evaluation {
        if split.n == 0 {
            return Evaluation { accuracy: 0.0, loss: f64::NAN, kl: 0.0 };
        }
        // Evaluation draws (a VAE's latent samples) from its own stream: training's is untouched
        // and every run and epoch sees the same draws.
        let mut rng = Rng::new(EVAL_SEED);
        let loss = if self.loss == crate::nn::Loss::Bernoulli { self.loss } else { crate::nn::Loss::Ce };
        let mut kl = 0.0f64;
        let mut ce = 0.0f64;
        // k outputs per label (a sequence: per position), t labels per sample.
        let t = split.targets();
        let (d, k) = (split.dim, self.net.output_len() / t);
        // The phase of the epoch last trained (its frozen prefix is what evaluation may reuse).
        let first =
            if self.cache_frozen { self.rule.phase(self.epochs_done.saturating_sub(1)).frozen_prefix } else { 0 };
        let cached = (first > 0).then(|| self.frozen_features(split, first));
        let f = self.net.shapes[first].len();
        let mut correct = 0;
        let mut start = 0;
        while start < split.n {
            let m = 1000.min(split.n - start);
            self.net.prepare_forward(&mut self.eval_ws, m);
            if let Some(ci) = cached {
                let feats = &self.cache[ci].feats[start * f..(start + m) * f];
                self.eval_ws.acts[first][..m * f].copy_from_slice(feats);
                self.eval_ws.first = first;
            } else {
                self.eval_ws.input_mut().copy_from_slice(&split.x[start * d..(start + m) * d]);
            }
            let out = eval_forward(&mut self.net, self.rule.as_mut(), &mut self.eval_ws, &mut rng);
            let answer = |o: &[f32]| match classes {
                None => argmax(o),
                Some(c) => c
                    .iter()
                    .copied()
                    .max_by(|&a, &b| o[a as usize].total_cmp(&o[b as usize]).then(b.cmp(&a)))
                    .map_or(0, |c| c as usize),
            };
            let ys = &split.y[start * t..(start + m) * t];
            correct += (0..m * t)
                .filter(|&r| {
                    let o = &out[r * k..(r + 1) * k];
                    if classes.is_some() {
                        answer(o) == ys[r] as usize
                    } else {
                        loss.correct(o, ys[r])
                    }
                })
                .count();
            ce += loss.eval(&out[..m * t * k], ys, k, None).0;
            kl += self.net.latent_kl(&self.eval_ws);
            start += m;
        }
        let labels = (split.n * t) as f64;
        Evaluation { accuracy: correct as f64 / labels, loss: ce / labels, kl: kl / split.n as f64 }
    }
}

/// The seed of evaluation's own random stream (`Trainer::evaluate_full`).
const EVAL_SEED: u64 = 0x5eed_e7a1;

struct Evaluation {
    accuracy: f64,
    loss: f64,
    kl: f64,
}

/// The evaluation-mode forward pass of the samples loaded into `ws` (from layer `ws.first` up),
/// then the rule's own answer where it has one: the output, as every evaluation reads it.
fn eval_forward<'w>(net: &mut Network, rule: &mut dyn Rule, ws: &'w mut Workspace, rng: &mut Rng) -> &'w [f32] {
    let (lo, l) = (ws.first, net.num_layers());
    net.forward_layers(ws, lo, l, false, rng);
    if rule.prediction() == Prediction::Own {
        rule.predict(net, ws);
    }
    ws.output()
}

/// What `Trainer::fit` trains on and evaluates every epoch.
pub struct Splits<'a> {
    pub train: &'a Split,
    /// Held out of the training set (its accuracy in `val_accuracy`).
    pub val: Option<&'a Split>,
    /// None: no evaluation (the record's test accuracy is NaN; for timing).
    pub test: Option<&'a Split>,
}

/// What a caller of `Trainer::fit` does around the epochs (all optional).
pub trait Hooks {
    /// After each training batch (1-based epoch, batches done, batches in the epoch).
    fn batch(&mut self, _epoch: usize, _done: usize, _total: usize) {}
    /// After the epoch's training, before its evaluation (0-based epoch): gradual pruning.
    fn trained(&mut self, _tr: &mut Trainer, _epoch: usize) {}
    /// After the epoch's record was added to `state`: progress, checkpoints.
    fn epoch(&mut self, _tr: &mut Trainer, _state: &Progressed) -> Result<(), String> {
        Ok(())
    }
}

/// No hooks.
pub struct NoHooks;
impl Hooks for NoHooks {}

impl Trainer {
    /// The one epoch loop (used by `train`, `compare` and `bench`): from the epochs `state`
    /// already holds up to `until` (at most the configured epochs), each epoch at the
    /// schedule's rate, then evaluated; stops after a diverged epoch.
    pub fn fit(
        &mut self,
        data: Splits,
        mut state: Progressed,
        until: usize,
        hooks: &mut dyn Hooks,
    ) -> Result<Progressed, String> {
        let (schedule, epochs) = (self.cfg.schedule(), self.cfg.epochs);
        for e in state.epochs.len()..until.min(epochs) {
            if state.diverged.is_some() {
                break;
            }
            // The schedule spans the epochs from the rule's start (the first read-out epoch of a
            // Hebbian rule) to the end; before it the base rate.
            let s0 = self.rule.schedule_start().min(epochs - 1);
            let lr = if e < s0 { self.cfg.lr } else { schedule.lr(self.cfg.lr, e - s0, epochs - s0) };
            let stats = self.train_epoch(data.train, lr, |done, total| hooks.batch(e + 1, done, total));
            state.train_seconds += stats.seconds;
            state.seen += stats.samples;
            if let Some(b) = stats.diverged_at {
                state.diverged = Some(Diverged { epoch: e + 1, batch: b + 1 });
            }
            hooks.trained(self, e);
            self.rule.take_activity();
            // Sequence data also records the cross-entropy per token (its perplexity).
            let vae = self.net.has_latent();
            let seq = data.train.targets() > 1 && !vae;
            // A VAE: pixel accuracy, negative ELBO and reconstruction term per sample.
            let (test_accuracy, test_loss, test_recon) = match data.test {
                Some(t) if vae => self.evaluate_vae(t),
                Some(t) => {
                    let (a, l) = self.evaluate_with_loss(t);
                    (a, l, f64::NAN)
                }
                None => (f64::NAN, f64::NAN, f64::NAN),
            };
            let spikes_per_sample =
                self.rule.take_activity().filter(|a| a.1 > 0).map(|(spikes, n)| spikes as f64 / n as f64);
            let val = data.val.map(|v| {
                if vae {
                    let (a, nelbo, _) = self.evaluate_vae(v);
                    (a, nelbo)
                } else {
                    self.evaluate_with_loss(v)
                }
            });
            let record = EpochRecord {
                epoch: e + 1,
                lr,
                train_loss: if state.diverged.is_some() { f64::NAN } else { stats.loss },
                train_accuracy: stats.accuracy,
                test_accuracy,
                val_accuracy: val.map(|v| v.0),
                seconds: stats.seconds,
                energy_before: stats.energy.map(|e| e.0),
                energy_after: stats.energy.map(|e| e.1),
                inference_steps: stats.energy.map(|e| e.2),
                passes: (stats.passes > 1).then_some(stats.passes),
                train_macs: stats.macs,
                steps: stats.steps,
                feedback_angles: crate::rules::feedback_angles(&self.net),
                spikes_per_sample,
                test_loss: (seq && data.test.is_some()).then_some(test_loss),
                val_loss: if seq { val.map(|v| v.1) } else { None },
                test_elbo: (vae && data.test.is_some()).then_some(test_loss),
                test_recon: (vae && data.test.is_some()).then_some(test_recon),
                val_elbo: if vae { val.map(|v| v.1) } else { None },
            };
            state.epochs.push(record);
            hooks.epoch(self, &state)?;
        }
        Ok(state)
    }

    /// Write the whole training state and `history` to `path` (to a temporary file, then
    /// renamed over it: a crash leaves the previous checkpoint whole).
    pub fn save_checkpoint(&self, path: &std::path::Path, history: &Progressed) -> Result<(), String> {
        // Every tensor of the training state, borrowed where it lives: the network's parameters by
        // their names, the rule's state as `rule.NAME`, the optimiser's moments as
        // `optimizer.m.I` / `optimizer.v.I`, pruning masks in force as `mask.I`.
        use crate::safetensors::Tensor;
        fn flat(name: String, data: &[f32]) -> Tensor<'_> {
            Tensor { name, shape: vec![data.len()], data }
        }
        let rs = self.rule.save_state();
        let (m, v, _) = self.opt.moments();
        let mut st: Vec<Tensor> = self
            .net
            .params
            .iter()
            .map(|p| Tensor { name: p.name.clone(), shape: p.shape.clone(), data: &p.data })
            .collect();
        st.extend(rs.tensors.iter().map(|(n, d)| flat(format!("rule.{n}"), d)));
        for (kind, list) in [("m", m), ("v", v)] {
            st.extend(list.iter().enumerate().map(|(i, x)| flat(format!("optimizer.{kind}.{i}"), x)));
        }
        for (i, mask) in self.masks.iter().flatten().enumerate() {
            st.extend(mask.as_deref().map(|mk| flat(format!("mask.{i}"), mk)));
        }
        let meta = std::collections::BTreeMap::from([
            ("kind".to_string(), CHECKPOINT_KIND.to_string()),
            ("schema_version".to_string(), crate::env::SCHEMA_VERSION.to_string()),
            ("config".to_string(), serde_json::to_string(&self.cfg).map_err(|e| e.to_string())?),
            ("epochs_done".to_string(), self.epochs_done.to_string()),
            ("rng".to_string(), serde_json::to_string(&self.rng.state()).unwrap()),
            ("device_rng".to_string(), serde_json::to_string(&self.device.as_ref().map(|d| d.rng.state())).unwrap()),
            // The hardware meter's activity so far: a resumed run's cost covers every epoch.
            ("metered".to_string(), serde_json::to_string(&self.meter.as_ref().map(|m| &m.activity)).unwrap()),
            ("trained_by".to_string(), serde_json::to_string(&self.trained_by_all()).unwrap()),
            ("optimizer_steps".to_string(), self.opt.moments().2.to_string()),
            ("rule_counters".to_string(), serde_json::to_string(&rs.counters).unwrap()),
            ("history".to_string(), serde_json::to_string(history).map_err(|e| e.to_string())?),
        ]);
        crate::safetensors::save(path, &st, &meta).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Load the network's parameters (and the rule's tensors, where the file has them) from a
    /// saved model or checkpoint: every parameter must be there with its shape.
    pub fn load_weights(&mut self, path: &std::path::Path) -> Result<(), String> {
        let file = crate::safetensors::load(path)?;
        let p = path.display();
        for param in &mut self.net.params {
            let (shape, data) =
                file.get(&param.name).ok_or_else(|| format!("{p}: no tensor '{}' for this network", param.name))?;
            if *shape != param.shape {
                return Err(format!("{p}: '{}' has shape {shape:?}, the network needs {:?}", param.name, param.shape));
            }
            param.data.copy_from_slice(data);
        }
        // Rule tensors: `rule.NAME` in checkpoints, `NAME` in saved models.
        let names: Vec<String> = self.rule.tensors().into_iter().map(|(n, _, _)| n).collect();
        let mut saved = std::collections::BTreeMap::new();
        for n in names {
            if let Some((_, d)) = file.get(&format!("rule.{n}")).or_else(|| file.get(&n)) {
                saved.insert(n, d.clone());
            }
        }
        if !saved.is_empty() {
            let mut rs = self.rule.save_state();
            rs.tensors.extend(saved);
            self.rule.load_state(&rs).map_err(|e| format!("{p}: {e}"))?;
        }
        Ok(())
    }

    /// Restore the whole training state from a checkpoint written by `save_checkpoint` for the
    /// same configuration; returns the records of the epochs it holds.
    pub fn load_checkpoint(&mut self, path: &std::path::Path) -> Result<Progressed, String> {
        let p = path.display();
        let (tensors, meta) = crate::safetensors::load_with_metadata(path)?;
        let get = |k: &str| meta.get(k).ok_or_else(|| format!("{p}: not a biolearn checkpoint (no '{k}')"));
        if get("kind")? != CHECKPOINT_KIND {
            return Err(format!("{p}: not a biolearn checkpoint"));
        }
        let cfg = with_default_settings(serde_json::from_str(get("config")?).map_err(|e| format!("{p}: config: {e}"))?);
        if cfg != self.cfg {
            return Err(format!("{p}: the checkpoint is of another configuration than this run's"));
        }
        let bad = |what: &str| format!("{p}: malformed '{what}'");
        let epochs_done: usize = get("epochs_done")?.parse().map_err(|_| bad("epochs_done"))?;
        // (xoshiro's all-zero state is a fixed point: it would draw 0 forever.)
        let rng: [u64; 4] = serde_json::from_str(get("rng")?)
            .ok()
            .filter(|s: &[u64; 4]| s.iter().any(|&v| v != 0))
            .ok_or_else(|| bad("rng"))?;
        let steps: u64 = get("optimizer_steps")?.parse().map_err(|_| bad("optimizer_steps"))?;
        let counters = serde_json::from_str(get("rule_counters")?).map_err(|_| bad("rule_counters"))?;
        let history: Progressed = serde_json::from_str(get("history")?).map_err(|_| bad("history"))?;
        let tensor = |name: &str, len: usize| -> Result<Vec<f32>, String> {
            let (_, d) = tensors.get(name).ok_or_else(|| format!("{p}: tensor '{name}' is missing"))?;
            if d.len() != len {
                return Err(format!("{p}: tensor '{name}' has {} values, expected {len}", d.len()));
            }
            Ok(d.clone())
        };
        for param in &mut self.net.params {
            param.data = tensor(&param.name, param.data.len())?;
        }
        let mut rs = crate::rules::RuleState { tensors: Default::default(), counters };
        for (name, (_, d)) in &tensors {
            if let Some(n) = name.strip_prefix("rule.") {
                rs.tensors.insert(n.to_string(), d.clone());
            }
        }
        self.rule.load_state(&rs).map_err(|e| format!("{p}: {e}"))?;
        let (m0, v0, _) = self.opt.moments();
        let (nm, nv): (Vec<usize>, Vec<usize>) =
            (m0.iter().map(|x| x.len()).collect(), v0.iter().map(|x| x.len()).collect());
        let m =
            nm.iter().enumerate().map(|(i, &n)| tensor(&format!("optimizer.m.{i}"), n)).collect::<Result<_, _>>()?;
        let v =
            nv.iter().enumerate().map(|(i, &n)| tensor(&format!("optimizer.v.{i}"), n)).collect::<Result<_, _>>()?;
        self.opt.set_moments(m, v, steps).map_err(|e| format!("{p}: {e}"))?;
        let masks: crate::nn::prune::Masks =
            (0..self.net.params.len()).map(|i| tensors.get(&format!("mask.{i}")).map(|(_, d)| d.clone())).collect();
        self.masks = masks.iter().any(|m| m.is_some()).then_some(masks);
        self.rng = Rng::from_state(rng);
        // (Absent from checkpoints written before hardware existed: ideal runs.)
        let device_rng: Option<[u64; 4]> = match meta.get("device_rng") {
            Some(s) => serde_json::from_str::<Option<[u64; 4]>>(s)
                .ok()
                .filter(|r| r.is_none_or(|r| r.iter().any(|&v| v != 0)))
                .ok_or_else(|| bad("device_rng"))?,
            None => None,
        };
        match (self.device.as_mut(), device_rng) {
            (Some(d), Some(r)) => d.rng = Rng::from_state(r),
            (None, None) => {}
            _ => return Err(format!("{p}: the checkpoint's hardware devices do not match this run's")),
        }
        // Who trained the epochs so far (absent before session 25: unknown).
        let by: Vec<String> = match meta.get("trained_by") {
            Some(s) => serde_json::from_str(s).map_err(|_| bad("trained_by"))?,
            None if epochs_done > 0 => vec!["unknown (a checkpoint from before session 25)".into()],
            None => Vec::new(),
        };
        let me = Self::this_build();
        self.trained_by = by.into_iter().filter(|b| *b != me).collect();
        // (Absent from checkpoints written before session 25: the meter restarts there.)
        if let (Some(m), Some(s)) = (self.meter.as_mut(), meta.get("metered")) {
            let a: Option<crate::nn::hardware::cost::Activity> = serde_json::from_str(s).map_err(|_| bad("metered"))?;
            if let Some(a) = a {
                m.resume(a);
            }
        }
        self.epochs_done = epochs_done;
        if history.epochs.len() != epochs_done {
            return Err(format!("{p}: {} epoch records for {epochs_done} epochs", history.epochs.len()));
        }
        Ok(history)
    }
}

/// The model file of a run directory: `DIR/model.safetensors` (`train --save`), else
/// `DIR/checkpoint.safetensors`; a file path is taken as it is.
pub fn model_file(path: &std::path::Path) -> crate::Result<std::path::PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    for f in ["model.safetensors", "checkpoint.safetensors"] {
        let p = path.join(f);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(crate::Error::Model(format!(
        "{}: no model.safetensors or checkpoint.safetensors (train with --save, or a checkpoint)",
        path.display()
    )))
}

/// The configuration a saved model or checkpoint was trained with (its `config` metadata).
pub fn saved_config(file: &std::path::Path) -> crate::Result<TrainConfig> {
    saved_config_inner(file).map_err(crate::Error::Model)
}

fn saved_config_inner(file: &std::path::Path) -> Result<TrainConfig, String> {
    let (_, meta) = crate::safetensors::load_with_metadata(file)?;
    let text = meta.get("config").ok_or_else(|| format!("{}: no 'config' in its metadata", file.display()))?;
    let cfg: TrainConfig = serde_json::from_str(text).map_err(|e| format!("{}: config: {e}", file.display()))?;
    cfg.validate().map_err(|e| format!("{}: config: {e}", file.display()))?;
    Ok(with_default_settings(cfg))
}

/// A saved configuration's rule settings with the rule's defaults filled in: a model or
/// checkpoint written before its rule gained a setting holds its settings without it, and is
/// the same configuration as one written after (a value given differently is not).
fn with_default_settings(mut cfg: TrainConfig) -> TrainConfig {
    if let Ok(full) = (cfg.rule.entry().settings.resolve)(&cfg.settings) {
        cfg.settings = full;
    }
    cfg
}

/// A trained network and its rule, rebuilt from a saved model or checkpoint for the data set `ds`
/// (the one it was trained on, or another of the same shape): built from its configuration and
/// seed as in training, then its weights and rule tensors loaded.
pub fn load_model(file: &std::path::Path, cfg: &TrainConfig, ds: &Dataset) -> crate::Result<Trainer> {
    let mut rng = Rng::new(cfg.seed);
    let mut tr = Trainer::on_data(cfg, ds, &mut rng).map_err(crate::Error::Config)?;
    tr.load_weights(file).map_err(crate::Error::Model)?;
    Ok(tr)
}

/// What a run has done so far (kept in its checkpoints): the epoch records, the training time
/// and samples seen, and where it diverged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progressed {
    pub epochs: Vec<EpochRecord>,
    pub train_seconds: f64,
    pub seen: usize,
    pub diverged: Option<Diverged>,
}

/// A loaded data set, its checksum (before normalisation) and the normalisation applied.
pub struct Loaded {
    pub ds: Dataset,
    pub checksum: String,
    pub norm: Norm,
}

/// Load the configured data set (normalised per the config; a VAE's targets its pixels:
/// `Dataset::autoencoding`) and its description.
pub fn load_data(cfg: &TrainConfig) -> crate::Result<Loaded> {
    let dir = cfg.data_dir.as_deref().map(std::path::Path::new);
    let mut ds = data::load_by_name(&cfg.data, dir)?;
    if cfg.resize > 0 {
        ds.resize(cfg.resize, cfg.resize)?;
    }
    let checksum = ds.checksum();
    if cfg.is_vae() {
        ds.autoencoding()?;
    }
    let plane = ds.height * ds.width;
    let (mean, std) = if cfg.normalize && ds.alphabet.is_none() {
        ds.normalize()
    } else {
        (vec![0.0; ds.channels], vec![1.0; ds.channels])
    };
    Ok(Loaded { ds, checksum, norm: Norm { mean, std, plane } })
}

/// One full run: load data, train for `cfg.epochs` (with checkpoints, resuming or a starting
/// point as `opts` asks; `RunOptions::default()`: none), evaluate every epoch.
pub fn run(
    cfg: &TrainConfig,
    opts: &RunOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> crate::Result<(RunResult, Trainer)> {
    let l = load_data(cfg)?;
    run_on(cfg, opts, &l.ds, &l.checksum, progress)
}

/// `run` on an already loaded data set (the sweep loads once and runs many).
pub fn run_on(
    cfg: &TrainConfig,
    opts: &RunOptions,
    ds: &Dataset,
    checksum: &str,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> crate::Result<(RunResult, Trainer)> {
    cfg.validate().map_err(crate::Error::Config)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| crate::Error::Run(format!("cannot start {} threads: {e}", cfg.threads)))?;
    pool.install(|| run_in_pool(cfg, opts, ds, checksum, progress))
}

fn run_in_pool(
    cfg: &TrainConfig,
    opts: &RunOptions,
    ds: &Dataset,
    checksum: &str,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> crate::Result<(RunResult, Trainer)> {
    let t0 = Instant::now();
    let mut rng = Rng::new(cfg.seed);
    let mut trainer = Trainer::on_data(cfg, ds, &mut rng).map_err(crate::Error::Config)?;
    let mut val_rng = rng.fork();
    let split;
    let (train, val) = if cfg.val_fraction > 0.0 {
        split = crate::data::sampling::split_validation(&ds.train, ds.num_classes, cfg.val_fraction, &mut val_rng);
        (&split.0, Some(&split.1))
    } else {
        (&ds.train, None)
    };
    crate::data::sampling::check_nonempty(train, val, &format!("val_fraction {}", cfg.val_fraction))
        .map_err(crate::Error::Config)?;
    if let Some(p) = &opts.init_from {
        trainer.load_weights(p).map_err(crate::Error::Model)?;
    }
    let done = match &opts.resume {
        Some(p) => trainer.load_checkpoint(p).map_err(crate::Error::Model)?,
        None => Progressed::default(),
    };
    let until = opts.stop_after.map_or(cfg.epochs, |k| done.epochs.len().saturating_add(k));
    struct Report<'a, 'b> {
        progress: &'a mut (dyn FnMut(Progress) + Send + 'b),
        checkpoint: Option<&'a std::path::Path>,
        epochs: usize,
    }
    impl Hooks for Report<'_, '_> {
        fn batch(&mut self, epoch: usize, done: usize, total: usize) {
            (self.progress)(Progress::Batch { epoch, epochs: self.epochs, done, total })
        }
        fn epoch(&mut self, tr: &mut Trainer, state: &Progressed) -> Result<(), String> {
            (self.progress)(Progress::Epoch { record: state.epochs.last().unwrap(), epochs: self.epochs });
            match self.checkpoint {
                Some(p) => tr.save_checkpoint(p, state),
                None => Ok(()),
            }
        }
    }
    let mut hooks = Report { progress, checkpoint: opts.checkpoint.as_deref(), epochs: cfg.epochs };
    let splits = Splits { train, val, test: Some(&ds.test) };
    let Progressed { epochs, diverged, train_seconds, seen } =
        trainer.fit(splits, done, until, &mut hooks).map_err(crate::Error::Run)?;
    let complete = diverged.is_some() || epochs.len() == cfg.epochs;
    let result = RunResult {
        schema_version: crate::env::SCHEMA_VERSION,
        biolearn_version: VERSION.into(),
        git_revision: GIT_REVISION.into(),
        env: Some(crate::env::Environment::current()),
        seed: cfg.seed,
        config: cfg.clone(),
        data: DataInfo {
            name: ds.name.clone(),
            source: ds.source.clone(),
            train: train.n,
            val: val.map_or(0, |v| v.n),
            test: ds.test.n,
            shape: [ds.channels, ds.height, ds.width],
            classes: ds.num_classes,
            checksum: checksum.to_string(),
        },
        parameters: trainer.net.num_trainable(),
        test_accuracy: epochs.last().map_or(0.0, |r| r.test_accuracy),
        epochs,
        diverged,
        total_seconds: t0.elapsed().as_secs_f64(),
        train_samples_per_second: seen as f64 / train_seconds.max(1e-9),
        complete,
        hardware_cost: trainer.hardware_cost(),
    };
    Ok((result, trainer))
}
