//! One line of `results.jsonl`: the outcome of one training run (one condition).

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Diverged,
}

/// Test accuracy and training statistics after one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    /// 1-based epoch number.
    pub epoch: usize,
    pub test_accuracy: f64,
    /// NaN where the run diverged (written as `null`).
    #[serde(deserialize_with = "crate::nonfinite::f64")]
    pub train_loss: f64,
    #[serde(deserialize_with = "crate::nonfinite::f64")]
    pub train_accuracy: f64,
    /// Accuracy on the validation split carved from the training set (`val_fraction` > 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Training multiply-adds up to the end of this epoch, in 1e9 (every GEMM of every step;
    /// deterministic: wall-clock time is in `Record::epoch_seconds`).
    #[serde(default)]
    pub gmacs: f64,
    /// Each feedback matrix's angle (degrees) to what backprop would use in its place, at the
    /// epoch's end (`rules::feedback_angles`; empty for rules without feedback matrices).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "crate::nonfinite::pairs")]
    pub feedback_angles: Vec<(String, f64)>,
    /// Spiking rules: mean spikes per test sample in the epoch's test evaluation (every layer's,
    /// the input's encoding included; an energy proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spikes_per_sample: Option<f64>,
    /// Sequence data (language models): the test cross-entropy per token (nats); its
    /// exponential is the perplexity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// A VAE: the negative ELBO per test sample and its reconstruction term (nats;
    /// `train::EpochRecord`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_elbo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_recon: Option<f64>,
}

/// Test accuracy after training for `epochs` epochs (an epoch budget).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetPoint {
    pub epochs: usize,
    pub test_accuracy: f64,
}

/// Accuracy after global magnitude pruning to `sparsity` (share of weights set to zero).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrunePoint {
    pub sparsity: f64,
    /// One-shot accuracy, straight after pruning.
    pub test_accuracy: f64,
    /// Accuracy after fine-tuning the pruned network, when that was done.
    pub finetuned_accuracy: Option<f64>,
}

/// Accuracy on test inputs corrupted by noise of `kind` at `level`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoisePoint {
    /// `"gaussian"` or `"salt-pepper"`.
    pub kind: String,
    pub level: f64,
    pub test_accuracy: f64,
}

/// Accuracy on test inputs attacked by `attack` ("fgsm" or "pgd") at L-inf radius `eps`
/// (pixel units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackPoint {
    pub attack: String,
    pub eps: f64,
    pub test_accuracy: f64,
}

/// One line of `results.jsonl`. Accuracies are fractions in `0..=1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique key of the run's condition, e.g. `"fashion-mnist|mlp:1024|bp|f=0.2|s=0"`.
    pub id: String,
    pub plan: String,
    pub data: String,
    pub arch: String,
    pub rule: String,
    /// Share of the training set used (1.0 = all).
    pub fraction: f64,
    /// Few-shot run: training samples per class (`fraction` is then 1 and unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shots: Option<usize>,
    pub train_samples: usize,
    pub seed: u64,
    /// Std of Gaussian noise added to training inputs (0 = none).
    pub train_noise: f64,
    /// The compute-in-memory hardware condition (`nn::hardware`; None: ideal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
    /// On that hardware: the arrays' activity per training step and its energy, latency and
    /// area (`nn::hardware::cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_cost: Option<crate::nn::hardware::cost::HardwareCost>,
    /// Final sparsity when the run was pruned gradually during training (None: one-shot
    /// pruning after training, reported in `pruning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradual_sparsity: Option<f64>,
    /// Epochs trained (the largest budget).
    pub epochs: usize,
    pub status: Status,
    pub diverged_epoch: Option<usize>,
    pub curve: Vec<EpochPoint>,
    /// Fraction 0..1 after the last epoch.
    pub test_accuracy: f64,
    pub budgets: Vec<BudgetPoint>,
    /// Multiply-adds of one training step (a mini-batch), mean over the run's steps (GEMMs only).
    #[serde(default)]
    pub macs_per_step: f64,
    /// A run for one epoch budget only (a plan's `budgets = "separate"`): its final accuracy is
    /// that budget's; reports use it for the budgets and nothing else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub budget_only: bool,
    /// First epoch after which test accuracy stays within 0.5 points of the final value.
    pub epochs_to_stable: Option<usize>,
    pub pruning: Vec<PrunePoint>,
    pub noise: Vec<NoisePoint>,
    /// White-box adversarial accuracy (on the first `attack_samples` test samples).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adversarial: Vec<AttackPoint>,
    /// The clean accuracy of the test images the attacks ran on (the first `attack_samples`):
    /// the reference of an attack's accuracy drop (absent from records before session 25, and
    /// where nothing was attacked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacked_clean_accuracy: Option<f64>,
    /// Pictures the run saved (a VAE's reconstructions and samples: `protocol::vae`), relative
    /// to its results file's directory (made absolute when the report reads the file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Resumed from a checkpoint another build or CPU path wrote ("REVISION / KERNEL" of the
    /// epochs before the resume; `git_revision` and `env` are the process that finished it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trained_before_resume_by: Vec<String>,
    pub seconds: f64,
    /// Wall-clock training seconds up to the end of each epoch (not evaluation): with the
    /// curve, seconds to an accuracy.
    #[serde(default)]
    pub epoch_seconds: Vec<f64>,
    pub biolearn_version: String,
    pub git_revision: String,
    /// The record format's version (`env::SCHEMA_VERSION`; 0 in records written before it).
    #[serde(default)]
    pub schema_version: u32,
    /// Where the record was made (CPU, kernel path, rustc, ...); absent in old records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<crate::env::Environment>,
}

impl Record {
    /// `epochs_to_stable` read again off the record's curve by today's definition
    /// (`protocol::epochs_to_stable`): the report reads records through this, so a record
    /// written before a fix of the definition is counted as a new one would be.
    pub fn restable(&mut self) {
        if self.status == Status::Ok && !self.curve.is_empty() {
            let accs: Vec<f64> = self.curve.iter().map(|p| p.test_accuracy).collect();
            self.epochs_to_stable = super::epochs_to_stable(&accs, super::STABLE_TOL);
        }
    }

    /// True when the run finished without diverging.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// What a record must hold beyond its fields' types for a report to read it: accuracies in
    /// [0, 1] (a VAE's pixel accuracy too), a training share in (0, 1], its epoch of stable
    /// accuracy one of its curve's. A record that fails names the problem (a hand-edited or
    /// foreign file), instead of panicking or hanging a plot.
    pub fn check(&self) -> Result<(), String> {
        let acc = |what: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{}: {what} {v} is not an accuracy in [0, 1]", self.id))
            }
        };
        acc("test_accuracy", self.test_accuracy)?;
        for p in &self.curve {
            acc("curve test_accuracy", p.test_accuracy)?;
            if let Some(v) = p.val_accuracy {
                acc("curve val_accuracy", v)?;
            }
        }
        for b in &self.budgets {
            acc("budget test_accuracy", b.test_accuracy)?;
        }
        for p in &self.pruning {
            acc("pruning test_accuracy", p.test_accuracy)?;
            if let Some(v) = p.finetuned_accuracy {
                acc("pruning finetuned_accuracy", v)?;
            }
        }
        for p in &self.noise {
            acc("noise test_accuracy", p.test_accuracy)?;
        }
        for p in &self.adversarial {
            acc("adversarial test_accuracy", p.test_accuracy)?;
        }
        if let Some(v) = self.attacked_clean_accuracy {
            acc("attacked_clean_accuracy", v)?;
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(format!("{}: fraction {} is not in (0, 1]", self.id, self.fraction));
        }
        if let Some(e) = self.epochs_to_stable {
            if e == 0 || e > self.curve.len() {
                return Err(format!(
                    "{}: epochs_to_stable {e} is not an epoch of its curve (1..={})",
                    self.id,
                    self.curve.len()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_lowercase_and_record_round_trips() {
        assert_eq!(serde_json::to_string(&Status::Ok).unwrap(), "\"ok\"");
        assert_eq!(serde_json::to_string(&Status::Diverged).unwrap(), "\"diverged\"");
        let r = Record {
            images: vec![],
            trained_before_resume_by: vec![],
            attacked_clean_accuracy: None,
            id: "d|a|bp|f=1|s=0".into(),
            plan: "p".into(),
            data: "d".into(),
            arch: "a".into(),
            rule: "bp".into(),
            fraction: 1.0,
            shots: None,
            train_samples: 10,
            seed: 0,
            train_noise: 0.0,
            hardware: None,
            hardware_cost: None,
            gradual_sparsity: None,
            epochs: 1,
            status: Status::Ok,
            diverged_epoch: None,
            curve: vec![EpochPoint {
                epoch: 1,
                test_accuracy: 0.5,
                train_loss: 1.0,
                train_accuracy: 0.4,
                val_accuracy: None,
                gmacs: 0.0,
                feedback_angles: vec![],
                spikes_per_sample: Some(12.5),
                test_loss: None,
                test_elbo: None,
                test_recon: None,
            }],
            test_accuracy: 0.5,
            budgets: vec![BudgetPoint { epochs: 1, test_accuracy: 0.5 }],
            budget_only: false,
            macs_per_step: 0.0,
            epoch_seconds: vec![],
            epochs_to_stable: Some(1),
            pruning: vec![PrunePoint { sparsity: 0.5, test_accuracy: 0.4, finetuned_accuracy: None }],
            noise: vec![NoisePoint { kind: "gaussian".into(), level: 0.1, test_accuracy: 0.3 }],
            adversarial: vec![AttackPoint { attack: "pgd".into(), eps: 0.1, test_accuracy: 0.2 }],
            seconds: 1.5,
            biolearn_version: "0.1.0".into(),
            git_revision: "abc".into(),
            schema_version: crate::env::SCHEMA_VERSION,
            env: Some(crate::env::Environment::current()),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"status\":\"ok\""));
        let back: Record = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }
}
