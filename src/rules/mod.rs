//! Learning rules and their registry.
//!
//! A rule turns one mini-batch into an update for every trainable parameter (same convention as
//! a gradient: the optimiser subtracts it). It runs whatever forward passes and feedback it needs
//! and knows nothing of epochs, data sets, masks, logging or files: the driver (`train`) does
//! those, identically for every rule.
//!
//! Adding a rule: one file here implementing `Rule`, one variant in `RuleName` with its line in
//! `RuleName::info` and `RuleName::build`.

pub mod bp;
pub mod dfa;
pub mod equilibrium_propagation;
pub mod feedback_alignment;
pub mod hebbian;
pub mod pc_positive;
pub mod predictive_coding;
pub mod target_prop;

use crate::config::TrainConfig;
use crate::nn::{Loss, Network, Workspace};
use crate::optim::Optimizer;
use crate::protocol::prune::{self, Masks};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// What a step reports back to the driver: the batch's summed loss and correct count, computed
/// on the training forward pass the rule made anyway.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub loss_sum: f64,
    pub correct: usize,
    /// Energy-based rules: (energy before relaxation, after, inference steps), batch sums.
    pub energy: Option<(f64, f64, usize)>,
}

pub trait Rule: Send {
    /// One training step on the batch in `ws.acts[0]` (`ws.n` samples, prepared by the driver)
    /// with labels `y`: write the update of every trainable parameter of `net` into `grads`.
    fn step(
        &mut self,
        net: &mut Network,
        ws: &mut Workspace,
        y: &[u32],
        loss: Loss,
        grads: &mut [Vec<f32>],
        rng: &mut Rng,
    ) -> StepStats;

    /// One batch with its weight changes. The default is what nearly every rule wants: `step`,
    /// then one optimiser step on every trainable parameter (skipped when the loss is not
    /// finite: the driver records the run as diverged). Rules that change the weights several
    /// times per batch (incremental PC) or change some of them by a rule of their own (Hebbian
    /// layers) override this and call `upd` themselves.
    #[allow(clippy::too_many_arguments)]
    fn train_batch(
        &mut self,
        net: &mut Network,
        ws: &mut Workspace,
        y: &[u32],
        loss: Loss,
        grads: &mut [Vec<f32>],
        rng: &mut Rng,
        upd: &mut Updater,
    ) -> StepStats {
        step_then_apply(self, net, ws, y, loss, grads, rng, upd)
    }

    /// Called by the driver before every epoch (0-based `epoch` of `epochs`): rules with a
    /// schedule of phases (unsupervised layers, then a read-out) switch here.
    fn begin_epoch(&mut self, _epoch: usize, _epochs: usize) {}

    /// The number of leading layers this rule no longer changes (parameters and running
    /// statistics) and whose evaluation-mode output is all its training batches need from them,
    /// from this epoch on (0: none, the default). The driver may then compute the activations
    /// entering that layer once per sample and hand the rule batches with `ws.first` set to it
    /// and only `ws.acts[first]` filled (the Hebbian read-out epochs).
    fn frozen_prefix(&self) -> usize {
        0
    }

    /// Whether the prediction is the network's feed-forward output (true for nearly every rule).
    /// White-box attacks follow the feed-forward input gradient, so the protocol attacks only
    /// rules for which it is the gradient of their own prediction.
    fn predicts_feedforward(&self) -> bool {
        true
    }

    /// Rules whose answer is not the feed-forward pass (equilibrium propagation's free phase)
    /// overwrite the output in `ws` after the driver's evaluation forward pass.
    fn settle_prediction(&mut self, _net: &mut Network, _ws: &mut Workspace) {}

    /// Tensors the rule owns (feedback matrices), by name, for checkpoints and hardware models.
    fn tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        Vec::new()
    }
}

/// `Rule::train_batch`'s default: the rule's `step`, then one optimiser step on every trainable
/// parameter unless the loss is not finite (callable by overrides that only sometimes differ).
#[allow(clippy::too_many_arguments)]
pub fn step_then_apply<R: Rule + ?Sized>(
    rule: &mut R,
    net: &mut Network,
    ws: &mut Workspace,
    y: &[u32],
    loss: Loss,
    grads: &mut [Vec<f32>],
    rng: &mut Rng,
    upd: &mut Updater,
) -> StepStats {
    let stats = rule.step(net, ws, y, loss, grads, rng);
    if stats.loss_sum.is_finite() {
        upd.apply(net, grads);
    }
    stats
}

/// The driver's optimiser step, handed to `Rule::train_batch`: the configured optimiser at the
/// epoch's learning rate, then the pruning masks (if any) multiplied into the weights.
pub struct Updater<'a> {
    pub opt: &'a mut Optimizer,
    pub lr: f32,
    pub masks: Option<&'a Masks>,
}

impl Updater<'_> {
    /// One optimiser step on every trainable parameter.
    pub fn apply(&mut self, net: &mut Network, grads: &[Vec<f32>]) {
        self.apply_where(net, grads, |_| true)
    }

    /// One optimiser step on the trainable parameters `which` selects (by parameter index).
    pub fn apply_where(&mut self, net: &mut Network, grads: &[Vec<f32>], which: impl Fn(usize) -> bool) {
        self.opt.begin_step();
        for (i, p) in net.params.iter_mut().enumerate() {
            if p.trainable() && which(i) {
                self.opt.update(i, &mut p.data, &grads[i], self.lr);
            }
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

/// The loss of the output already in the workspace; leaves dL/d(output) in its gradient slot.
pub fn output_error(net: &Network, ws: &mut Workspace, y: &[u32], loss: Loss) -> StepStats {
    let k = net.output_len();
    let l = ws.acts.len() - 1;
    let (acts, grads) = (&ws.acts[l], &mut ws.grads[l]);
    let (loss_sum, correct) = loss.eval(&acts[..y.len() * k], y, k, Some(&mut grads[..y.len() * k]));
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

/// The registry: every rule the CLI knows, by its command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RuleName {
    Bp,
    Fa,
    Usf,
    Brsf,
    Frsf,
    Dfa,
    Pc,
    Ipc,
    PcFpa,
    PcPositive,
    Ep,
    Chl,
    Dtp,
    FwDtp,
    Softhebb,
    SofthebbDeep,
    HebbWta,
    ActivationLearning,
}

impl RuleName {
    /// Every rule, in registry order.
    pub fn all() -> &'static [RuleName] {
        <RuleName as clap::ValueEnum>::value_variants()
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            RuleName::Bp => "bp",
            RuleName::Fa => "fa",
            RuleName::Usf => "usf",
            RuleName::Brsf => "brsf",
            RuleName::Frsf => "frsf",
            RuleName::Dfa => "dfa",
            RuleName::Pc => "pc",
            RuleName::Ipc => "ipc",
            RuleName::PcFpa => "pc-fpa",
            RuleName::PcPositive => "pc-positive",
            RuleName::Ep => "ep",
            RuleName::Chl => "chl",
            RuleName::Dtp => "dtp",
            RuleName::FwDtp => "fw-dtp",
            RuleName::Softhebb => "softhebb",
            RuleName::SofthebbDeep => "softhebb-deep",
            RuleName::HebbWta => "hebb-wta",
            RuleName::ActivationLearning => "activation-learning",
        }
    }

    /// (one-line description, paper).
    pub fn info(&self) -> (&'static str, &'static str) {
        match self {
            RuleName::Bp => ("backpropagation: errors flow back through W^T", "Rumelhart, Hinton & Williams 1986"),
            RuleName::Fa => (
                "feedback alignment: errors flow back through fixed random matrices B",
                "Lillicrap et al. 2016, Nat. Commun. 7:13276",
            ),
            RuleName::Usf => (
                "uniform sign-concordant feedback: B = s * sign(W), s = Xavier std",
                "Liao, Leibo & Poggio 2016; Moskovitz et al. 2018 (BioTorch 'usf')",
            ),
            RuleName::Brsf => (
                "batchwise random-magnitude sign-concordant feedback: B = |M| * sign(W), M redrawn every batch",
                "Moskovitz et al. 2018 (BioTorch 'brsf')",
            ),
            RuleName::Frsf => (
                "fixed random-magnitude sign-concordant feedback: B = |M0| * sign(W), M0 drawn once",
                "Moskovitz et al. 2018 (BioTorch 'frsf')",
            ),
            RuleName::Dfa => (
                "direct feedback alignment: the output error reaches every hidden layer through its own fixed random matrix",
                "Nokland 2016, NeurIPS",
            ),
            RuleName::Pc => (
                "predictive coding: value nodes relax on a local energy (T steps), then local weight updates (--pc-steps, --pc-gamma, --pc-energy gaussian|ce)",
                "Whittington & Bogacz 2017, Neural Comput.; Pinchetti et al. 2022 (ce energy)",
            ),
            RuleName::Ipc => (
                "incremental predictive coding: a weight step at every inference step (T weight steps per batch, --pc-steps)",
                "Salvatori et al. 2024, ICLR (iPC)",
            ),
            RuleName::PcFpa => (
                "predictive coding with the fixed-prediction assumption: equals backprop's gradient at equilibrium",
                "Millidge, Tschantz & Buckley 2022, Neural Comput.",
            ),
            RuleName::PcPositive => (
                "predictive coding on positive firing rates with one-way synapses: feedback B learned (Kolen-Pollack), fixed random or W^T (MLPs; --set pc_feedback=learned|random|transpose, pc_relu)",
                "Alonso & Neftci 2021, ICONS",
            ),
            RuleName::Ep => (
                "equilibrium propagation: free and beta-nudged relaxations of a symmetric energy network, contrastive local update (MLPs; --ep-beta, --ep-free-steps)",
                "Scellier & Bengio 2017, Front. Comput. Neurosci.",
            ),
            RuleName::Chl => (
                "contrastive Hebbian learning: free phase vs output-clamped phase, contrastive local update (MLPs)",
                "Movellan 1991; Xie & Seung 2003",
            ),
            RuleName::Dtp => (
                "difference target propagation: layer targets through learned approximate inverses tanh(V z), difference-corrected (MLPs; --tp-beta)",
                "Lee, Zhang, Fischer & Bengio 2015, ECML-PKDD",
            ),
            RuleName::FwDtp => (
                "fixed-weight difference target propagation: DTP with fixed random feedback V (MLPs)",
                "Shibuya, Inoue, Kawakami & Sato 2023, AAAI",
            ),
            RuleName::Softhebb => (
                "SoftHebb, one layer: soft winner-take-all Hebbian plasticity with adaptive per-neuron rates (and the log-prior bias rule on `softhebb-mlp:H/bias`), no feedback; unsupervised for hebb_epochs, the linear read-out trained by backprop through the read-out only (Adam) on the frozen features",
                "Moraitis, Toichkin, Journe, Chua & Guo 2022, Neuromorph. Comput. Eng.",
            ),
            RuleName::SofthebbDeep => (
                "multilayer SoftHebb: conv blocks (BN, reflect-padded conv, triangle, pool) learn by soft WTA with anti-Hebbian non-winners, no feedback, all layers at once for hebb_epochs; linear read-out trained by backprop through the read-out only (on cached features once the blocks are frozen)",
                "Journe, Rodriguez, Guo & Moraitis 2023, ICLR",
            ),
            RuleName::HebbWta => (
                "winner-take-all Hebbian: instar updates of the top-1 channel per position, unit-norm filters, adaptive thresholds, triangle outputs (conv3 100/196/400), no feedback; linear read-out trained by backprop through the read-out only",
                "Miconi 2021 (Hebbian learning with gradients); Gupta et al. 2022 (holistic benchmark's Hebbian arm)",
            ),
            RuleName::ActivationLearning => (
                "Activation Learning: local competition (Oja's subspace rule) on unit-norm inputs with a norm-preserving |x| activation, no feedback; the label enters the input ([x/|x|, s e_y], al_label = s) and the prediction is the class whose input activates the output most, argmax_c ||a_L(x, c)||^2, every epoch learning; al_label = 0 makes it unsupervised pre-training under a linear read-out trained by backprop through the read-out only",
                "Zhou 2022, arXiv 2209.13400",
            ),
        }
    }

    /// Settings this rule trains well with, as TOML: they replace the global defaults wherever
    /// the configuration file, plan and flags leave a field unset (`TrainConfig::load`), and
    /// the resolved values are recorded with every run.
    pub fn preset(&self) -> &'static str {
        match self {
            // Alonso & Neftci's F-MNIST setting (784-300-300-10 sigmoid, Adam 1e-3, batch 64, T 7,
            // gamma 0.025). Measured on Fashion-MNIST, 15 epochs, 3 seeds: 88.54 +- 0.23% at batch
            // 64; at batch 16 one seed of three collapsed. On the small digits set batch 64 is too
            // few steps (15% after 8 epochs; batch 16: 94%).
            RuleName::PcPositive => {
                "arch = 'mlp:300,300'\nactivation = 'sigmoid'\noptimizer = 'adam'\nlr = 1e-3\nbatch = 64\nschedule = 'constant'\npc_steps = 7\npc_gamma = 0.025"
            }
            // Scellier & Bengio's network and plain SGD (784-500-10, batch 20, alpha 0.05).
            RuleName::Ep | RuleName::Chl => {
                "arch = 'mlp:500'\nactivation = 'sigmoid'\nbatch = 20\noptimizer = 'sgd'\nmomentum = 0.0\nlr = 0.05\nschedule = 'constant'"
            }
            // SoftHebb's `2SoftMlpMNIST`: 2000 neurons, lr 0.045, power 0.2, raw pixels, unsupervised
            // batch 32; read-out Adam batch 32. Changed from the preset, measured on Fashion-MNIST
            // (the PyTorch re-implementation `bench/softhebb_reference.py` gives the same numbers
            // at t_inv 12): 3 unsupervised epochs instead of 1 (after one the weight norms are
            // still ~16, not 1: 62-64% test accuracy; after three they are 1.00); read-out lr 1e-2
            // with a cosine schedule instead of 1e-3 (83.0% instead of 79% after 15 epochs); the
            // plasticity's softmax inverse temperature 80 instead of MNIST's 12 (seed 0, 10
            // epochs: t_inv 5 / 8 / 12 / 20 / 30 / 50 / 80 gave 73.5 / 78.9 / 82.5 / 84.1 / 84.5 /
            // 84.5 / 84.7%), and 20 epochs (t_inv 80: 85.8%).
            RuleName::Softhebb => {
                "arch = 'softhebb-mlp:2000'\nnormalize = false\nepochs = 20\noptimizer = 'adam'\nlr = 1e-2\nbatch = 32\nschedule = 'cosine'\nhebb_epochs = 3\nhebb_batch = 32\nhebb_t_inv = [80.0]\nhebb_lr = [0.045]\nhebb_power_lr = 0.2"
            }
            // `4SoftHebbCnnCIFAR` / `demo.py`: t_inv 1 / 0.65 / 0.25, lr 0.08 / 0.005 / 0.01, power
            // 0.5, unsupervised batch 10; read-out Adam batch 64 (cosine in place of the halving
            // steps) at lr 3e-4 instead of 1e-3: with the padded pools (512 x 3 x 3 features) the
            // read-out's loss blew up at 1e-3 in its second epoch (Fashion-MNIST, seed 0: 86.0%
            // after epoch 1, 7% after epoch 10); 3e-4 gave 90.29%, 1e-4 89.77% (10 epochs). The
            // network is the 28x28-sized `softhebb-cnn28` (32/128/512 channels); `--arch
            // softhebb-cnn` is the paper's 96/384/1536 for CIFAR-10 (~9x the compute).
            RuleName::SofthebbDeep => {
                "arch = 'softhebb-cnn28'\nnormalize = false\noptimizer = 'adam'\nlr = 3e-4\nbatch = 64\nschedule = 'cosine'\nhebb_batch = 10\nhebb_t_inv = [1.0, 0.65, 0.25]\nhebb_lr = [0.08, 0.005, 0.01]\nhebb_power_lr = 0.5"
            }
            // Miconi's notebook: batch 100, rates 1e-4 / 1e-4 / 1e-3 per summed batch update,
            // threshold rate 3; 5 unsupervised epochs (Gupta's "learns in ~5 epochs"); read-out
            // Adam 1e-2, cosine (at 1e-3 it was still at 64% after 3 epochs on Fashion-MNIST).
            RuleName::HebbWta => {
                "arch = 'hebb-conv3'\noptimizer = 'adam'\nlr = 1e-2\nbatch = 100\nschedule = 'cosine'\nhebb_epochs = 5\nhebb_batch = 100\nhebb_lr = [1e-4, 1e-4, 1e-3]\nhebb_mu = 3.0"
            }
            // The paper's activation read-out (label in the input, strength 1). Widths and rate
            // are chosen here (the paper does not report them), measured on Fashion-MNIST (3
            // epochs, 1 seed): 400-40 80.7%, 1000-50 81.7%, 100-20 75.0%, 20 73.9%. The layers must
            // be narrower than their input: a subspace as wide as the input passes everything
            // and the scores stop telling the classes apart. Rate 1.0 per batch mean (0.05-0.2:
            // digits still below chance after 2-6 epochs, the label columns learn slowly).
            // As pre-training under the linear read-out (`al_label = 0`), the settings of
            // plans/hebbian-fmnist.toml: al-mlp:1000,1000, hebb_lr [0.05], hebb_epochs 1, lr 1e-2.
            RuleName::ActivationLearning => {
                "arch = 'al-mlp:400,40'\nnormalize = false\noptimizer = 'adam'\nlr = 1e-2\nbatch = 32\nschedule = 'cosine'\nhebb_epochs = 1\nhebb_batch = 32\nhebb_lr = [1.0]\nal_label = 1.0"
            }
            // T weight steps per batch: a small Adam step (PCX's AdamW setting).
            RuleName::Ipc => "optimizer = 'adamw'\nlr = 3e-4\nschedule = 'constant'",
            _ => "",
        }
    }

    /// Build the rule for `net` (feedback matrices drawn from `rng`), with the rule-specific
    /// settings of `cfg`; rules with an initialisation of their own (Hebbian layers) draw it into
    /// `net` here. Fails when the rule cannot run on this network.
    pub fn build(&self, net: &mut Network, cfg: &TrainConfig, rng: &mut Rng) -> Result<Box<dyn Rule>, String> {
        use feedback_alignment::{FeedbackAlignment, Mode};
        use predictive_coding::{PcConfig, PredictiveCoding};
        let pc = |fixed_prediction: bool, incremental: bool| PcConfig {
            steps: cfg.pc_steps,
            gamma: cfg.pc_gamma,
            momentum: cfg.pc_momentum,
            fixed_prediction,
            energy: cfg.pc_energy,
            beta: 1.0,
            incremental,
        };
        Ok(match self {
            RuleName::Bp => Box::new(bp::Backprop),
            RuleName::Fa => Box::new(FeedbackAlignment::new(Mode::Fa, net, rng)),
            RuleName::Usf => Box::new(FeedbackAlignment::new(Mode::Usf, net, rng)),
            RuleName::Brsf => Box::new(FeedbackAlignment::new(Mode::Brsf, net, rng)),
            RuleName::Frsf => Box::new(FeedbackAlignment::new(Mode::Frsf, net, rng)),
            RuleName::Dfa => Box::new(dfa::Dfa::new(net, rng)),
            RuleName::Pc => Box::new(PredictiveCoding::new(net, pc(false, false))?),
            RuleName::Ipc => Box::new(PredictiveCoding::new(net, pc(false, true))?),
            RuleName::PcFpa => Box::new(PredictiveCoding::new(net, pc(true, false))?),
            RuleName::PcPositive => Box::new(pc_positive::PcPositive::new(
                net,
                pc_positive::PcPositiveConfig {
                    steps: cfg.pc_steps,
                    gamma: cfg.pc_gamma,
                    feedback: cfg.pc_feedback,
                    relu: cfg.pc_relu,
                },
                cfg.optim(),
                rng,
            )?),
            RuleName::Dtp | RuleName::FwDtp => Box::new(target_prop::TargetProp::new(
                net,
                target_prop::TpConfig {
                    fixed: *self == RuleName::FwDtp,
                    beta: cfg.tp_beta,
                    sigma: cfg.tp_sigma,
                    feedback_lr: cfg.tp_feedback_lr,
                    feedback_steps: cfg.tp_feedback_steps,
                },
                rng,
            )?),
            RuleName::Softhebb | RuleName::SofthebbDeep | RuleName::HebbWta | RuleName::ActivationLearning => {
                let mut h = hebbian::Hebbian::new(
                    net,
                    hebbian::HebbConfig {
                        plasticity: match self {
                            RuleName::HebbWta => hebbian::Plasticity::Instar { mu: cfg.hebb_mu },
                            RuleName::ActivationLearning => hebbian::Plasticity::Subspace,
                            _ => hebbian::Plasticity::SoftWta { anti: *self == RuleName::SofthebbDeep },
                        },
                        t_inv: cfg.hebb_t_inv.clone(),
                        lr: cfg.hebb_lr.clone(),
                        power_lr: cfg.hebb_power_lr,
                        hebb_epochs: cfg.hebb_epochs,
                        hebb_batch: cfg.hebb_batch,
                        greedy: cfg.hebb_greedy,
                        label: if *self == RuleName::ActivationLearning { cfg.al_label } else { 0.0 },
                    },
                )?;
                h.init_weights(net, &mut rng.fork());
                Box::new(h)
            }
            RuleName::Ep | RuleName::Chl => Box::new(equilibrium_propagation::EquilibriumProp::new(
                net,
                equilibrium_propagation::EpConfig {
                    free_steps: cfg.ep_free_steps,
                    nudged_steps: cfg.ep_nudged_steps,
                    eps: cfg.ep_eps,
                    beta: cfg.ep_beta,
                    random_sign: true,
                    symmetric: cfg.ep_symmetric,
                    clamped: *self == RuleName::Chl,
                },
            )?),
        })
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
        RuleName::all().iter().copied().find(|r| r.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = RuleName::all().iter().map(|r| r.as_str()).collect();
            format!("unknown rule '{s}' (known: {})", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests;
