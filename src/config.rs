//! The resolved configuration of one training run: defaults in one place, read from a TOML file,
//! overridden by command-line flags, validated once, and written beside the results.
//!
//! Every field has a default (`TrainConfig::default()`); a TOML file may set any subset with the
//! same names as the CLI flags (underscores for dashes: `weight_decay = 5e-4`); unknown keys are
//! errors naming the file, so a typo never silently falls back to a default.

use crate::data::DataName;
use crate::nn::{Activation, ArchSpec, Init, Loss};
use crate::optim::{OptimConfig, OptimizerKind, Schedule, ScheduleKind};
use crate::rules::pc_positive::Feedback;
use crate::rules::predictive_coding::Energy;
use crate::rules::RuleName;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data set: digits (embedded), fashion-mnist, mnist, cifar10, cifar100, stl10.
    pub data: String,
    /// Directory holding the data set's files (fashion-mnist also looks in /usr/share/datasets).
    pub data_dir: Option<String>,
    pub rule: RuleName,
    /// Network: mlp:H1,H2,... | lenet | conv3 (see `nn::arch`).
    pub arch: String,
    pub activation: Activation,
    pub loss: Loss,
    pub init: Init,
    pub epochs: usize,
    pub batch: usize,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub schedule: ScheduleKind,
    /// Decay factor of the step and multistep schedules.
    pub gamma: f32,
    /// Epochs between decays (step schedule).
    pub step_size: usize,
    /// Epochs at which the multistep schedule decays.
    pub milestones: Vec<usize>,
    pub seed: u64,
    /// Threads of the run's rayon pool (results are reproducible for a given seed and count).
    pub threads: usize,
    /// Share of the training set held out (stratified by a seeded shuffle) as a validation set.
    pub val_fraction: f32,
    /// Per-channel standardisation with the training set's statistics.
    pub normalize: bool,
    /// Predictive coding: inference steps per batch.
    pub pc_steps: usize,
    /// Predictive coding: state learning rate (per sample) and momentum.
    pub pc_gamma: f32,
    pub pc_momentum: f32,
    /// Predictive coding: output energy, gaussian (clamped output) or ce (categorical node).
    pub pc_energy: Energy,
    /// Positive-rate PC (`pc-positive`): where the hidden layers' error feedback comes from
    /// (transpose = W, random = fixed, learned = Kolen-Pollack) and whether rates are clipped at 0.
    pub pc_feedback: Feedback,
    pub pc_relu: bool,
    /// Equilibrium propagation / CHL: relaxation steps of the free and nudged phases, step size,
    /// and the nudge strength beta (its sign drawn at random every batch).
    pub ep_free_steps: usize,
    pub ep_nudged_steps: usize,
    pub ep_eps: f32,
    pub ep_beta: f32,
    /// Equilibrium propagation: symmetric nudging (+beta and -beta phases).
    pub ep_symmetric: bool,
    /// Target propagation: output target step beta, feedback-training noise sigma, learning
    /// rate and updates per batch of the learned inverses (DTP).
    pub tp_beta: f32,
    pub tp_sigma: f32,
    pub tp_feedback_lr: f32,
    pub tp_feedback_steps: usize,
    /// Hebbian rules: unsupervised epochs (at the start of the run), their micro-batch, and per
    /// Hebbian layer (the last value repeats) the inverse temperature and base learning rate;
    /// the power of SoftHebb's adaptive rate.
    pub hebb_epochs: usize,
    pub hebb_batch: usize,
    /// Greedy layer-wise: unsupervised epoch e trains Hebbian layer e only (the layers below it
    /// stay as they are); false: every layer learns in every unsupervised epoch, as `demo.py`.
    pub hebb_greedy: bool,
    pub hebb_t_inv: Vec<f32>,
    pub hebb_lr: Vec<f32>,
    pub hebb_power_lr: f32,
    /// Winner-take-all Hebbian: rate of the adaptive thresholds.
    pub hebb_mu: f32,
    /// Activation Learning: strength s of the label in the input (0: off, a linear read-out on
    /// the features). With s > 0 the input is [x / |x|, s e_label] / sqrt(1 + s^2), every epoch
    /// learns, and the prediction is argmax_c ||a_L(x, c)||^2 (the paper's "activation").
    pub al_label: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: "digits".into(),
            data_dir: None,
            rule: RuleName::Bp,
            arch: "mlp:1024".into(),
            activation: Activation::Relu,
            loss: Loss::Ce,
            init: Init::Torch,
            epochs: 20,
            batch: 128,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: ScheduleKind::Cosine,
            gamma: 0.1,
            step_size: 30,
            milestones: vec![],
            seed: 0,
            threads: default_threads(),
            val_fraction: 0.0,
            normalize: true,
            pc_steps: 5,
            pc_gamma: 0.1,
            pc_momentum: 0.1,
            pc_energy: Energy::Gaussian,
            pc_feedback: Feedback::Learned,
            pc_relu: true,
            ep_free_steps: 40,
            ep_nudged_steps: 4,
            ep_eps: 0.5,
            ep_beta: 0.5,
            ep_symmetric: false,
            tp_beta: 0.01,
            tp_sigma: 0.01,
            tp_feedback_lr: 0.01,
            tp_feedback_steps: 1,
            hebb_epochs: 1,
            hebb_batch: 10,
            hebb_greedy: false,
            hebb_t_inv: vec![1.0],
            hebb_lr: vec![0.01],
            hebb_power_lr: 0.5,
            hebb_mu: 3.0,
            al_label: 0.0,
        }
    }
}

/// All available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl TrainConfig {
    /// Read a TOML file (any subset of the fields), apply `overrides` (a TOML table of flags given
    /// on the command line, which win), fill the rest with defaults, and validate.
    pub fn load(file: Option<&Path>, overrides: toml::Table) -> Result<Self, String> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                text.parse::<toml::Table>().map_err(|e| format!("{}: not valid TOML: {e}", p.display()))?
            }
            None => toml::Table::new(),
        };
        for (k, v) in overrides {
            table.insert(k, v);
        }
        let where_ = file.map_or("command line".to_string(), |p| p.display().to_string());
        // The rule's own defaults (`RuleName::preset`) fill what the file and flags leave unset.
        let rule: RuleName = match table.get("rule") {
            Some(v) => v.clone().try_into().map_err(|e| format!("{where_}: rule: {e}"))?,
            None => TrainConfig::default().rule,
        };
        let preset: toml::Table = rule.preset().parse().expect("rule presets are valid TOML");
        for (k, v) in preset {
            table.entry(k).or_insert(v);
        }
        let cfg: TrainConfig = toml::Value::Table(table).try_into().map_err(|e| format!("{where_}: {e}"))?;
        cfg.validate().map_err(|e| format!("{where_}: {e}"))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.data_name()?;
        self.arch_spec()?;
        let checks: [(bool, &str); 10] = [
            (
                self.pc_gamma > 0.0 && (0.0..1.0).contains(&self.pc_momentum),
                "pc_gamma must be > 0 and pc_momentum in [0, 1)",
            ),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch >= 1, "batch must be at least 1"),
            (self.lr.is_finite() && self.lr > 0.0, "lr must be a positive number"),
            ((0.0..1.0).contains(&self.momentum), "momentum must be in [0, 1)"),
            (self.weight_decay >= 0.0 && self.weight_decay.is_finite(), "weight_decay must be >= 0"),
            (self.threads >= 1, "threads must be at least 1"),
            ((0.0..1.0).contains(&self.val_fraction), "val_fraction must be in [0, 1)"),
            ((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2), "beta1 and beta2 must be in [0, 1)"),
            (self.gamma > 0.0 && self.step_size >= 1, "gamma must be > 0 and step_size >= 1"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg.to_string()),
            None => Ok(()),
        }
    }

    pub fn data_name(&self) -> Result<DataName, String> {
        self.data.parse::<DataName>()
    }
    pub fn arch_spec(&self) -> Result<ArchSpec, String> {
        self.arch.parse::<ArchSpec>()
    }
    pub fn optim(&self) -> OptimConfig {
        OptimConfig {
            kind: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
        }
    }
    pub fn schedule(&self) -> Schedule {
        Schedule {
            kind: self.schedule,
            gamma: self.gamma,
            step_size: self.step_size,
            milestones: self.milestones.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_then_validation() {
        let dir = std::env::temp_dir().join(format!("biolearn-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("run.toml");
        std::fs::write(&f, "rule = \"fa\"\nepochs = 3\nlr = 0.1\nmilestones = [1, 2]\n").unwrap();
        let mut over = toml::Table::new();
        over.insert("lr".into(), toml::Value::Float(0.5));
        let c = TrainConfig::load(Some(&f), over).unwrap();
        assert_eq!((c.rule, c.epochs, c.lr, c.milestones.clone()), (RuleName::Fa, 3, 0.5, vec![1, 2]));
        assert_eq!(c.batch, TrainConfig::default().batch);
        std::fs::write(&f, "epoch = 3\n").unwrap();
        let e = TrainConfig::load(Some(&f), toml::Table::new()).unwrap_err();
        assert!(e.contains("run.toml") && e.contains("epoch"), "{e}");
        std::fs::write(&f, "epochs = 0\n").unwrap();
        let e = TrainConfig::load(Some(&f), toml::Table::new()).unwrap_err();
        assert!(e.contains("epochs must be at least 1"), "{e}");
        std::fs::write(&f, "rule = \"nope\"\n").unwrap();
        assert!(TrainConfig::load(Some(&f), toml::Table::new()).is_err());
        std::fs::write(&f, "arch = \"mlp:x\"\n").unwrap();
        assert!(TrainConfig::load(Some(&f), toml::Table::new()).unwrap_err().contains("mlp:x"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
