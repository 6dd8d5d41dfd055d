//! Learning rules and their registry.
//!
//! A rule turns one mini-batch into an update for every trainable parameter (same convention as
//! a gradient: the optimiser subtracts it). It runs whatever forward passes and feedback it needs
//! and knows nothing of epochs, data sets, masks, logging or files: the driver (`train`) does
//! those, identically for every rule.
//!
//! Adding a rule: one file here implementing `Rule`, with its settings type (`settings!`) and its
//! registry entry (`pub static ENTRY: RuleEntry`), and one line in `BUILTIN`.

pub mod settings;

use crate::nn::hardware::Device;
use crate::nn::prune::{self, Masks};
use crate::nn::{Loss, Network, Workspace};
use crate::optim::Optimizer;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
pub use settings::{NoSettings, Settings, SettingsKind};

/// What a step reports back to the driver: the batch's summed loss and correct count, computed
/// on the training forward pass the rule made anyway.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub loss_sum: f64,
    pub correct: usize,
    /// Energy-based rules: (energy before relaxation, after, inference steps), batch sums.
    pub energy: Option<(f64, f64, usize)>,
}

/// One training step's inputs: the batch in `ws.acts[ws.first]` (`ws.n` samples, prepared by
/// the driver), its labels, the loss, where the update goes, the run's RNG, and the epoch.
pub struct Step<'a> {
    pub net: &'a mut Network,
    pub ws: &'a mut Workspace,
    pub y: &'a [u32],
    pub loss: Loss,
    /// The update of every trainable parameter (gradient convention: the optimiser subtracts it).
    pub grads: &'a mut [Vec<f32>],
    pub rng: &'a mut Rng,
    /// 0-based epoch of the run (what `Rule::phase` answered for it holds).
    pub epoch: usize,
}

impl<'a> Step<'a> {
    /// A step at epoch 0 (tests, tools).
    pub fn new(
        net: &'a mut Network,
        ws: &'a mut Workspace,
        y: &'a [u32],
        loss: Loss,
        grads: &'a mut [Vec<f32>],
        rng: &'a mut Rng,
    ) -> Self {
        Step { net, ws, y, loss, grads, rng, epoch: 0 }
    }

    /// Every field at once (disjoint borrows), for a rule's body.
    #[allow(clippy::type_complexity)]
    pub fn parts(&mut self) -> (&mut Network, &mut Workspace, &'a [u32], Loss, &mut [Vec<f32>], &mut Rng) {
        (&mut *self.net, &mut *self.ws, self.y, self.loss, &mut *self.grads, &mut *self.rng)
    }
}

/// What a rule does in an epoch, declared (the driver acts on it; the rule counts nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase {
    /// A name for reports and timings ("train"; Hebbian rules: "unsupervised", "read-out").
    pub name: &'static str,
    /// Leading layers this rule no longer changes (parameters and running statistics) and whose
    /// evaluation-mode output is all its batches need from them (0: none). The driver then
    /// computes the activations entering that layer once per sample and hands the rule batches
    /// with `ws.first` set to it and only `ws.acts[first]` filled.
    pub frozen_prefix: usize,
    /// The epoch is not one pass: the driver makes passes over the training set (each freshly
    /// shuffled) until `Rule::settled` says the phase is done, checking after every batch
    /// (Hebbian phases measured in updates, not epochs).
    pub until_settled: bool,
}

impl Phase {
    /// The phase of a rule with one: every layer trains every epoch.
    pub const TRAIN: Phase = Phase { name: "train", frozen_prefix: 0, until_settled: false };
}

/// Where a rule's answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The network's feed-forward output (nearly every rule). White-box attacks follow its input
    /// gradient, so only these rules are attacked.
    FeedForward,
    /// The rule's own answer, written over the output by `Rule::predict` after the evaluation
    /// forward pass (EP's free phase, Activation Learning's class scores).
    Own,
}

pub trait Rule: Send {
    /// One training step: write the update of every trainable parameter into `s.grads`.
    fn step(&mut self, s: &mut Step) -> StepStats;

    /// One batch with its weight changes. The default is what nearly every rule wants: `step`,
    /// then one optimiser step on every trainable parameter (skipped when the loss is not
    /// finite: the driver records the run as diverged). Rules that change the weights several
    /// times per batch (incremental PC) or change some of them by a rule of their own (Hebbian
    /// layers) override this and call `upd` themselves.
    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        step_then_apply(self, s, upd)
    }

    /// The rule keeps only the block it is updating (layer streaming): the driver then sizes the
    /// workspace with `Network::prepare_streaming` (input and output only) and the rule lends
    /// and reclaims the other slots block by block. Default: no, the whole network's activations.
    fn streams(&self) -> bool {
        false
    }

    /// What the rule does in (0-based) `epoch` (default: one phase, everything trains).
    fn phase(&self, _epoch: usize) -> Phase {
        Phase::TRAIN
    }

    /// Every layer's update needs only the output error (or the label) and the layer's own
    /// activity, not the layers above it (direct feedback, target projection): on hardware the
    /// layers can update at once (the cost model's latency takes the slowest layer, not their
    /// sum). Default: no, the error travels down layer by layer.
    fn layer_parallel(&self) -> bool {
        false
    }

    /// The driver starts the rule's epochs over (a continual sequence's next task: its phases
    /// run again): counters kept per phase or epoch start over too (default: nothing kept).
    fn restart(&mut self) {}

    /// In a phase with `until_settled`: whether it is done (checked after every batch).
    fn settled(&self) -> bool {
        true
    }

    /// The epoch at which the driver's learning-rate schedule starts, spanning the epochs from
    /// there to the end (default 0; Hebbian rules: the first read-out epoch, so the read-out's
    /// schedule starts when the features freeze). Before it the base rate applies.
    fn schedule_start(&self) -> usize {
        0
    }

    /// Where the rule's answer comes from (default: the feed-forward output).
    fn prediction(&self) -> Prediction {
        Prediction::FeedForward
    }

    /// For `Prediction::Own`: overwrite the output in `ws` (after the driver's evaluation forward
    /// pass) with the rule's answer. Only called when `prediction` says `Own`.
    fn predict(&mut self, _net: &mut Network, _ws: &mut Workspace) {
        unreachable!("a rule answering Prediction::Own implements Rule::predict")
    }

    /// For `Prediction::Own`: the rule's answer is differentiable in the input, so white-box
    /// attacks can follow `input_gradient` (default: no, the rule is not attacked).
    fn has_input_gradient(&self) -> bool {
        false
    }

    /// Where `has_input_gradient`: d(batch-mean `loss` of the rule's answer)/d input of the
    /// batch `x` (`y.len()` samples) into `g`, in evaluation mode (`pg`: scratch for the
    /// parameter gradients on the way; nothing is changed).
    #[allow(clippy::too_many_arguments)]
    fn input_gradient(
        &mut self,
        _net: &mut Network,
        _ws: &mut Workspace,
        _pg: &mut [Vec<f32>],
        _x: &[f32],
        _y: &[u32],
        _g: &mut [f32],
        _loss: crate::nn::AttackLoss,
    ) {
        unreachable!("a rule answering has_input_gradient implements Rule::input_gradient")
    }

    /// Spiking rules: the spikes (every layer's, the input's encoding included) and samples of
    /// the evaluation passes (`predict`) since the driver last asked, then zeroed; the driver
    /// records spikes per sample of each epoch's test evaluation. Default: None (not spiking).
    fn take_activity(&mut self) -> Option<(u64, u64)> {
        None
    }

    /// Tensors the rule keeps outside the network, by name, for checkpoints and saved models.
    /// Feedback matrices are not here: a rule's build adds them to the network as parameters of
    /// kind `Feedback` (fixed, or recomputed from W) or `LearnedFeedback` (changed by the rule
    /// through `Updater::local`), so checkpoints, masks, the optimiser's policy and hardware
    /// models see them without the rule's help.
    fn tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        Vec::new()
    }

    /// The same tensors as `tensors`, by the same names, to restore them.
    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])> {
        Vec::new()
    }

    /// Everything the rule keeps between batches, for a checkpoint: by default its tensors.
    /// Rules with more (a private optimiser's moments and step count) add it here.
    fn save_state(&self) -> RuleState {
        RuleState::of_tensors(self.tensors())
    }

    /// Restore what `save_state` returned (on a rule built for the same network and settings).
    fn load_state(&mut self, state: &RuleState) -> Result<(), String> {
        load_tensors(self.tensors_mut(), &state.tensors)
    }
}

/// A rule's state in a checkpoint: named tensors and named counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleState {
    pub tensors: std::collections::BTreeMap<String, Vec<f32>>,
    pub counters: std::collections::BTreeMap<String, u64>,
}

impl RuleState {
    /// A state holding copies of these tensors (as `Rule::tensors` gives them) and no counters.
    pub fn of_tensors(tensors: Vec<(String, Vec<usize>, &[f32])>) -> RuleState {
        RuleState {
            tensors: tensors.into_iter().map(|(n, _, d)| (n, d.to_vec())).collect(),
            counters: Default::default(),
        }
    }
}

/// Copy `saved` into `into` by name; every tensor must be there with its length.
pub fn load_tensors(
    into: Vec<(String, &mut [f32])>,
    saved: &std::collections::BTreeMap<String, Vec<f32>>,
) -> Result<(), String> {
    for (name, dst) in into {
        let src = saved.get(&name).ok_or_else(|| format!("rule tensor '{name}' is missing"))?;
        if src.len() != dst.len() {
            return Err(format!("rule tensor '{name}' has {} values, the rule needs {}", src.len(), dst.len()));
        }
        dst.copy_from_slice(src);
    }
    Ok(())
}

/// A rule's private optimiser (one for its learned feedback) into its checkpoint state: the
/// moments as tensors `PREFIX.m.K` and `PREFIX.v.K`, the step count as counter `PREFIX.t`.
pub fn save_optimizer(s: &mut RuleState, prefix: &str, opt: &Optimizer) {
    let (m, v, t) = opt.moments();
    for (k, x) in m.iter().enumerate() {
        s.tensors.insert(format!("{prefix}.m.{k}"), x.clone());
    }
    for (k, x) in v.iter().enumerate() {
        s.tensors.insert(format!("{prefix}.v.{k}"), x.clone());
    }
    s.counters.insert(format!("{prefix}.t"), t);
}

/// Restore what `save_optimizer` wrote under `prefix` into `opt` (built for the same tensors).
pub fn load_optimizer(state: &RuleState, prefix: &str, opt: &mut Optimizer) -> Result<(), String> {
    let (m0, v0, _) = opt.moments();
    let take = |kind: &str, n: usize| -> Result<Vec<Vec<f32>>, String> {
        (0..n)
            .map(|k| {
                let name = format!("{prefix}.{kind}.{k}");
                state.tensors.get(&name).cloned().ok_or_else(|| format!("rule tensor '{name}' is missing"))
            })
            .collect()
    };
    let (m, v) = (take("m", m0.len())?, take("v", v0.len())?);
    let t =
        *state.counters.get(&format!("{prefix}.t")).ok_or_else(|| format!("rule counter '{prefix}.t' is missing"))?;
    opt.set_moments(m, v, t)
}

/// `Rule::train_batch`'s default: the rule's `step`, then one optimiser step on every trainable
/// parameter unless the loss is not finite (callable by overrides that only sometimes differ).
pub fn step_then_apply<R: Rule + ?Sized>(rule: &mut R, s: &mut Step, upd: &mut Updater) -> StepStats {
    let stats = rule.step(s);
    if stats.loss_sum.is_finite() {
        upd.apply(s.net, s.grads);
    }
    stats
}

/// The driver's optimiser step, handed to `Rule::train_batch`: the configured optimiser at the
/// epoch's learning rate, then the pruning masks (if any) multiplied into the weights.
pub struct Updater<'a> {
    pub opt: &'a mut Optimizer,
    pub lr: f32,
    pub masks: Option<&'a Masks>,
    /// Compute-in-memory devices the weights live on (`nn::hardware`): every change is written
    /// to them as pulses. None: digital weights.
    pub device: Option<&'a mut Device>,
}

impl Updater<'_> {
    /// One optimiser step on every trainable parameter.
    pub fn apply(&mut self, net: &mut Network, grads: &[Vec<f32>]) {
        self.apply_where(net, grads, |_| true)
    }

    /// A rule's own change of the weights (Hebbian plasticity, Kolen-Pollack decay) through the
    /// driver: `change` writes them, then the pruning masks are applied, as after an optimiser
    /// step. Rules change weights only through the Updater.
    pub fn local(&mut self, net: &mut Network, change: impl FnOnce(&mut Network)) {
        self.change(net, true, change)
    }

    /// `local` for a change that is not an update of the weights (FA's rescale to constrained
    /// norms): the devices write it and its pulses count, but it is no update in the cost model
    /// (no gradient crosses DRAM for it).
    pub fn rewrite(&mut self, net: &mut Network, change: impl FnOnce(&mut Network)) {
        self.change(net, false, change)
    }

    fn change(&mut self, net: &mut Network, counts: bool, change: impl FnOnce(&mut Network)) {
        if let Some(d) = self.device.as_deref_mut() {
            d.before_update(net);
        }
        change(net);
        if let Some(d) = self.device.as_deref_mut() {
            let none = |_: usize| false;
            d.after_update(net, if counts { None } else { Some(&none) });
        }
        if let Some(m) = self.masks {
            prune::apply(net, m);
        }
    }

    /// One optimiser step on the trainable parameters `which` selects (by parameter index).
    pub fn apply_where(&mut self, net: &mut Network, grads: &[Vec<f32>], which: impl Fn(usize) -> bool) {
        self.opt.begin_step();
        let quantized = match self.device.as_deref_mut() {
            Some(d) => {
                d.before_update(net);
                d.quantized_gradients(grads, &which)
            }
            None => None,
        };
        let g = quantized.as_deref().unwrap_or(grads);
        for (i, p) in net.params.iter_mut().enumerate() {
            if p.trainable() && which(i) {
                self.opt.update(i, &mut p.data, &g[i], self.lr);
            }
        }
        if let Some(d) = self.device.as_deref_mut() {
            if let Some(q) = quantized {
                d.return_gradients(q);
            }
            d.after_update(net, Some(&which));
        }
        if let Some(m) = self.masks {
            prune::apply(net, m);
        }
    }
}

/// Training forward pass plus the loss: leaves e = dL/d(output) in the workspace's output
/// gradient, the starting point of every error-driven rule.
pub fn forward_with_error(net: &mut Network, ws: &mut Workspace, y: &[u32], loss: Loss, rng: &mut Rng) -> StepStats {
    net.forward(ws, true, rng);
    output_error(net, ws, y, loss)
}

/// The loss of the output already in the workspace; leaves dL/d(output) in its gradient slot
/// (a VAE: plus its latent's KL divergence, whose gradient its backward adds).
pub fn output_error(net: &Network, ws: &mut Workspace, y: &[u32], loss: Loss) -> StepStats {
    // Outputs per label: a sequence's labels are its positions' targets (`Split::targets`).
    let k = net.output_len() * ws.n / y.len().max(1);
    let l = ws.acts.len() - 1;
    let (acts, grads) = (&ws.acts[l], &mut ws.grads[l]);
    let (mut loss_sum, correct) = loss.eval(&acts[..y.len() * k], y, k, Some(&mut grads[..y.len() * k]));
    if net.has_latent() {
        // A VAE's KL term joins the loss at the same per-label scale (its backward adds it).
        loss_sum += net.latent_kl(ws);
        net.set_kl_weight(ws, 1.0 / y.len().max(1) as f32);
    }
    StepStats { loss_sum, correct, energy: None }
}

/// The dense layers of an MLP (dense -> activation -> ... -> dense, linear output) and the
/// hidden activation after each, for rules defined on MLPs only; `rule` names it in the error.
pub fn mlp_layers(net: &Network, rule: &str) -> Result<(Vec<usize>, Vec<crate::nn::Activation>), String> {
    use crate::nn::Layer;
    let (mut dense, mut acts) = (Vec::new(), Vec::new());
    let l = net.num_layers();
    for (i, layer) in net.layers.iter().enumerate() {
        match layer {
            Layer::Dense { .. } => {
                dense.push(i);
                if i + 1 < l {
                    match &net.layers[i + 1] {
                        Layer::Act(a) => acts.push(*a),
                        _ => return Err(format!("{rule} runs on MLPs: dense -> activation -> dense ...")),
                    }
                }
            }
            Layer::Act(_) => {}
            _ => return Err(format!("{rule} runs on MLPs (dense and activation layers only)")),
        }
    }
    if dense.len() < 2 || *dense.last().unwrap() != l - 1 {
        return Err(format!("{rule} needs a hidden layer and a linear output layer"));
    }
    Ok((dense, acts))
}

/// How far each feedback matrix is from the matrix backprop would use in its place, in degrees
/// (0: the same direction, 90: unrelated), by the feedback parameter's name: BioTorch's alignment
/// metric. `feedback.I.weight` (feedback alignment, sign symmetry, PAL: B_I in place of W_I on the
/// way back) against W_I; `feedback.I.dfa` and `feedback.I.ddfa` (DFA's and directional DFA's
/// B_I, D_I x K, carrying e to weight layer I's
/// input) against the network's downstream map taken linear, (W_L ... W_I)^T, where every weight
/// layer from I on is dense (Nokland's and Refinetti et al.'s alignment). Other feedback (DTP's
/// inverses, PEPITA's F, label projections) has no such counterpart and is left out. Reads the
/// parameters only: no effect on training.
pub fn feedback_angles(net: &Network) -> Vec<(String, f64)> {
    use crate::nn::{Layer, ParamKind};
    let mut out = Vec::new();
    for p in &net.params {
        if !matches!(p.kind, ParamKind::Feedback | ParamKind::LearnedFeedback) {
            continue;
        }
        let mut parts = p.name.split('.');
        let (Some("feedback"), Some(Ok(i)), Some(tag), None) =
            (parts.next(), parts.next().map(str::parse::<usize>), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(w) = net.layers.get(i).and_then(Layer::weight) else { continue };
        match tag {
            "weight" if net.params[w].shape == p.shape => {
                out.push((p.name.clone(), angle(&p.data, &net.params[w].data)))
            }
            "dfa" | "ddfa" => {
                let (d, k) = (net.shapes[i].len(), net.output_len());
                if p.shape != [d, k] {
                    continue;
                }
                // M = W_L ... W_I (K x D_I), built from the top; only through dense layers.
                let mut m: Option<(Vec<f32>, usize)> = None;
                let mut dense_only = true;
                for layer in net.layers[i..].iter().rev() {
                    match layer {
                        Layer::Dense { w, inp, out: o, .. } => {
                            let wd = &net.params[*w].data;
                            m = Some(match m {
                                None => (wd.clone(), *inp),
                                Some((mm, cols)) => {
                                    debug_assert_eq!(cols, *o);
                                    let mut next = vec![0.0; k * inp];
                                    crate::linalg::matmul(k, *inp, *o, &mm, false, wd, false, &mut next, false);
                                    (next, *inp)
                                }
                            });
                        }
                        Layer::Act(_) | Layer::Dropout(_) => {}
                        _ => dense_only = false,
                    }
                }
                let Some((m, cols)) = m.filter(|_| dense_only) else { continue };
                if cols != d {
                    continue;
                }
                // B is D x K, M is K x D: compare B with M^T.
                let mt: Vec<f32> = (0..d * k).map(|j| m[(j % k) * d + j / k]).collect();
                out.push((p.name.clone(), angle(&p.data, &mt)));
            }
            _ => {}
        }
    }
    out
}

/// The angle between two tensors read as vectors, in degrees (90 when either is zero).
pub(crate) fn angle(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 90.0;
    }
    (dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0).acos().to_degrees()
}

/// What a rule is built from besides its network: its own settings (resolved and checked) and
/// the run's optimiser (for a rule that trains tensors of its own with it).
pub struct BuildContext<'a> {
    pub settings: &'a toml::Table,
    pub optim: crate::optim::OptimConfig,
    /// The run's epochs (a rule with phases fits them in: Hebbian rules leave their read-out
    /// at least the last epoch).
    pub epochs: usize,
    /// The loss the driver trains on (`TrainConfig::train_loss`): a VAE's is Bernoulli.
    pub loss: crate::nn::Loss,
}

impl BuildContext<'_> {
    /// The rule's typed settings.
    pub fn settings<S: Settings>(&self) -> Result<S, String> {
        settings::parse(self.settings)
    }
}

/// How a registry entry builds its rule.
pub type BuildFn = fn(&mut Network, &BuildContext, &mut Rng) -> Result<Box<dyn Rule>, String>;

/// One rule as the registry knows it: the only place a rule is named. A rule's file declares its
/// entry (`pub static ENTRY: RuleEntry`); `BUILTIN` lists the entries; a crate outside biolearn
/// adds its own with [`register`].
#[derive(Clone, Copy)]
pub struct RuleEntry {
    /// The command-line name (`--rule NAME`, `rules = [..]` in plans, records).
    pub name: &'static str,
    /// One line: what the rule does.
    pub summary: &'static str,
    pub paper: &'static str,
    /// What the paper (or the benchmark quoted for it) reports, with data set and network, as
    /// `../shared/ALGORITHMS.md` gives it; empty where it gives none. Reports set it beside the
    /// rule's measured accuracy.
    pub reported: &'static str,
    /// The rule's default preset (TOML: shared settings such as network, optimiser and batch, and
    /// its own settings), filling whatever the configuration file, plan and flags leave unset;
    /// what it leaves unset comes from the shared defaults and the `Settings` type's `Default`.
    /// Built-in rules keep it in `presets/NAME.toml`, whose header says where it comes from.
    pub preset: &'static str,
    /// Named presets (`preset = "NAME"`, `--preset NAME`): (name, TOML), layered over the default
    /// preset. Built-in rules keep them in `presets/RULE/NAME.toml`.
    pub presets: &'static [(&'static str, &'static str)],
    /// The rule's own settings (typed; documented and checked).
    pub settings: SettingsKind,
    /// Build the rule for `net` from its settings (resolved and checked), drawing feedback
    /// matrices or initialisations from `rng`.
    /// Fails when the rule cannot run on this network.
    pub build: BuildFn,
}

/// `module: ENTRY, ...;` lines: declares each rule module and lists its entries in `BUILTIN`.
macro_rules! builtin {
    ($($m:ident: $($e:ident),+;)*) => {
        $(pub mod $m;)*
        /// Every rule built into biolearn, in the order `biolearn rules` lists them.
        pub static BUILTIN: &[&RuleEntry] = &[$($(&$m::$e),+),*];
    };
}

// The registry. Adding a rule: one file under `src/rules/` with its `ENTRY`, and one line here.
builtin! {
    bp: ENTRY;
    feedback_alignment: FA, USF, BRSF, FRSF;
    dfa: ENTRY;
    ddfa: ENTRY;
    drtp: ENTRY;
    pepita: ENTRY, WM;
    tpsgd: ENTRY;
    pal: ENTRY;
    tdca: ENTRY;
    meta_plasticity: ENTRY;
    align_ntk: ZERO, ADA;
    predictive_coding: PC, IPC, PC_FPA;
    pc_positive: ENTRY;
    equilibrium_propagation: EP, CHL;
    target_prop: DTP, FW_DTP;
    hebbian: SOFTHEBB, SOFTHEBB_DEEP, HEBB_WTA, ACTIVATION_LEARNING;
    desire: ENTRY;
    ide_fsnn: ENTRY;
    stdp: ENTRY;
}

/// Rules registered at run time by other crates ([`register`]).
static EXTRA: std::sync::RwLock<Vec<&'static RuleEntry>> = std::sync::RwLock::new(Vec::new());

/// Add a rule from outside biolearn (a researcher's own crate): afterwards `--rule NAME`, plans
/// and `biolearn rules` know it like a built-in one. Fails if the name is taken or empty.
pub fn register(entry: RuleEntry) -> Result<RuleName, String> {
    if entry.name.is_empty() || entry.name.contains(|c: char| c.is_whitespace() || c == ',' || c == '|') {
        return Err(format!("rule name '{}': one word, no commas or '|'", entry.name));
    }
    if lookup(entry.name).is_some() {
        return Err(format!("rule '{}' is already registered", entry.name));
    }
    let e: &'static RuleEntry = Box::leak(Box::new(entry));
    EXTRA.write().unwrap_or_else(|p| p.into_inner()).push(e);
    Ok(RuleName(e))
}

fn lookup(name: &str) -> Option<&'static RuleEntry> {
    BUILTIN
        .iter()
        .copied()
        .find(|e| e.name == name)
        .or_else(|| EXTRA.read().unwrap_or_else(|p| p.into_inner()).iter().copied().find(|e| e.name == name))
}

/// A registered rule, by name: `"fa".parse::<RuleName>()`, `RuleName::named("fa")`.
#[derive(Clone, Copy)]
pub struct RuleName(&'static RuleEntry);

impl RuleName {
    /// Every registered rule: the built-in ones in registry order, then those added by
    /// [`register`].
    pub fn all() -> Vec<RuleName> {
        let extra = EXTRA.read().unwrap_or_else(|p| p.into_inner());
        BUILTIN.iter().chain(extra.iter()).map(|e| RuleName(e)).collect()
    }

    /// The registered rule `name`; panics if there is none (for names written in code: parse
    /// user input with `str::parse`).
    pub fn named(name: &str) -> RuleName {
        name.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn as_str(&self) -> &'static str {
        self.0.name
    }

    pub fn entry(&self) -> &'static RuleEntry {
        self.0
    }

    /// (one-line description, paper).
    pub fn info(&self) -> (&'static str, &'static str) {
        (self.0.summary, self.0.paper)
    }

    /// The shared settings this rule trains well with, as TOML (see `RuleEntry::preset`).
    pub fn preset(&self) -> &'static str {
        self.0.preset
    }

    /// The settings its presets give: the named preset `name` ("" for none) over the default
    /// preset, as one table (the named one's keys win). Fails on a name the rule does not have.
    pub fn preset_table(&self, name: &str) -> Result<toml::Table, String> {
        let e = self.0;
        let parse = |what: &str, text: &str| {
            text.parse::<toml::Table>().map_err(|err| format!("rule {}: {what} is not TOML: {err}", e.name))
        };
        let mut t = parse("its preset", e.preset)?;
        if !name.is_empty() {
            let Some((_, text)) = e.presets.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = e.presets.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "rule {} has no preset '{name}' (its presets: {})",
                    e.name,
                    if known.is_empty() { "none but the default".to_string() } else { known.join(", ") }
                ));
            };
            t.extend(parse(&format!("preset '{name}'"), text)?);
        }
        Ok(t)
    }

    /// Build the rule for `net` (`TrainConfig::build_context` makes `cx`).
    pub fn build(&self, net: &mut Network, cx: &BuildContext, rng: &mut Rng) -> Result<Box<dyn Rule>, String> {
        let builtin = BUILTIN.iter().any(|e| std::ptr::eq(*e, self.0));
        if net.has_recurrent() && builtin && !RECURRENT_RULES.contains(&self.0.name) {
            return Err(format!(
                "rule {} does not train recurrent layers (rnn:, gru:); the built-in rules that do: {}",
                self.0.name,
                RECURRENT_RULES.join(", ")
            ));
        }
        if net.has_transformer() && builtin && !TRANSFORMER_RULES.contains(&self.0.name) {
            return Err(format!(
                "rule {} does not train transformer networks (gpt:); the built-in rules that do: {}",
                self.0.name,
                TRANSFORMER_RULES.join(", ")
            ));
        }
        if net.has_latent() && builtin && !VAE_RULES.contains(&self.0.name) {
            return Err(format!(
                "rule {} does not train variational autoencoders (vae:); the built-in rules that do: {}",
                self.0.name,
                VAE_RULES.join(", ")
            ));
        }
        (self.0.build)(net, cx, rng)
    }
}

/// The built-in rules that train variational autoencoders (`vae:`): backprop and predictive
/// coding, whose energy takes the latent's KL term beside its Gaussian and Bernoulli terms.
pub const VAE_RULES: &[&str] = &["bp", "pc", "ipc", "pc-fpa"];

/// The built-in rules that train transformer networks (`gpt:`): backprop and predictive coding,
/// whose value nodes sit at the embedding's and every block's output (Pinchetti et al. 2022).
/// The others refuse such a network when built.
pub const TRANSFORMER_RULES: &[&str] = &["bp", "pc", "ipc", "pc-fpa"];

/// The built-in rules that train networks with recurrent layers (`rnn:`, `gru:`); the others
/// refuse such a network when built. A rule registered from outside answers for itself.
pub const RECURRENT_RULES: &[&str] = &["bp", "dfa", "drtp", "tpsgd"];

/// A setting name that belongs to some registered rule (plans' shared `[train]` tables may hold
/// one rule's settings; the other rules skip them).
pub fn is_any_rule_setting(key: &str) -> bool {
    RuleName::all().iter().any(|r| r.entry().settings.has(key))
}

impl PartialEq for RuleName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for RuleName {}
impl std::hash::Hash for RuleName {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.name.hash(h)
    }
}
impl std::fmt::Debug for RuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuleName({})", self.0.name)
    }
}

impl Serialize for RuleName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for RuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RuleName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        lookup(s).map(RuleName).ok_or_else(|| {
            let names: Vec<&str> = RuleName::all().iter().map(|r| r.as_str()).collect();
            format!("unknown rule '{s}' (known: {})", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests;
