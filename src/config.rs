//! The resolved configuration of one training run: defaults in one place, read from a TOML file,
//! overridden by command-line flags, validated once, and written beside the results.
//!
//! Every field has a default (`TrainConfig::default()`); a TOML file may set any subset with the
//! same names as the CLI flags (underscores for dashes: `weight_decay = 5e-4`); unknown keys are
//! errors naming the file, so a typo never silently falls back to a default.

use crate::limits::{MAX_BATCH, MAX_EPOCHS};
use crate::nn::{Activation, ArchSpec, Init, Loss};
use crate::optim::{OptimConfig, OptimizerKind, Schedule, ScheduleKind};
use crate::rules::RuleName;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data set: digits (embedded), fashion-mnist, mnist, cifar10, cifar100, stl10, or one added
    /// with `data::register`.
    pub data: String,
    /// Directory holding the data set's files (fashion-mnist also looks in /usr/share/datasets).
    pub data_dir: Option<String>,
    pub rule: RuleName,
    /// A named preset of the rule (`biolearn rules NAME` lists them; "" = its default preset),
    /// layered over the default preset; both fill only what is not given.
    pub preset: String,
    /// The rule's own settings (`biolearn rules NAME` lists them), resolved: every field of the
    /// rule's settings type with its value. In a file: `[settings]`, or the keys at top level.
    pub settings: toml::Table,
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
    /// Compute-in-memory hardware the network trains and runs on (`nn::hardware`): a preset
    /// (ideal, int8, int4-adc5-var, neurosim) or a TOML file of its non-idealities.
    #[serde(skip_serializing_if = "is_ideal")]
    pub hardware: String,
    /// Resize every image to `resize x resize` pixels at load, as torchvision's `Resize` does
    /// (PIL's bilinear filter on bytes; BioTorch's LeNet protocol resizes 28 -> 32); 0: as stored.
    #[serde(skip_serializing_if = "is_zero")]
    pub resize: usize,
}

fn is_ideal(h: &str) -> bool {
    h == "ideal"
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: "digits".into(),
            data_dir: None,
            rule: RuleName::named("bp"),
            preset: String::new(),
            settings: toml::Table::new(),
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
            hardware: "ideal".into(),
            resize: 0,
        }
    }
}

/// The names of the settings every rule shares (the fields of `TrainConfig` but `settings`).
pub fn shared_keys() -> Vec<&'static str> {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        // (Every field: `hardware` is left out of a config only when ideal, `resize` when 0.)
        let all = TrainConfig { hardware: "any".into(), resize: 1, ..TrainConfig::default() };
        let v = serde_json::to_value(all).expect("config serialises");
        let obj = v.as_object().expect("config is a JSON object");
        obj.keys().filter(|k| *k != "settings").map(|k| &*Box::leak(k.clone().into_boxed_str())).collect()
    })
    .clone()
}

/// The part of a settings table meant for several rules (a plan's `[train]`, bench's `--set`)
/// that concerns `rule`: every key but the other rules' own settings. Unknown keys stay, for
/// `TrainConfig::load` to refuse by name.
pub fn settings_for(rule: RuleName, table: &toml::Table) -> toml::Table {
    let own = rule.entry().settings;
    table
        .iter()
        .filter(|(k, _)| own.has(k) || !crate::rules::is_any_rule_setting(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// All available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl TrainConfig {
    /// Read a TOML file (any subset of the fields), apply `overrides` (a TOML table of flags given
    /// on the command line, which win), fill the rest with defaults, and validate.
    pub fn load(file: Option<&Path>, overrides: toml::Table) -> crate::Result<Self> {
        let bad = crate::Error::Config;
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| bad(format!("{}: {e}", p.display())))?;
                text.parse::<toml::Table>().map_err(|e| bad(format!("{}: not valid TOML: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        let where_ = file.map_or("command line".to_string(), |p| p.display().to_string());
        // A `[settings]` table in the file, then flat keys (the file's, then the flags') naming
        // one of the rule's settings.
        for (k, v) in overrides {
            table.insert(k, v);
        }
        Self::from_table(table).map_err(|e| bad(format!("{where_}: {e}")))
    }

    /// The configuration of a table of settings: shared keys, the rule's own keys (flat or in a
    /// `settings` table), the rule's preset filling what is unset, everything checked.
    pub fn from_table(table: toml::Table) -> crate::Result<Self> {
        Self::resolve(table).map_err(crate::Error::Config)
    }

    fn resolve(mut table: toml::Table) -> Result<Self, String> {
        let rule: RuleName = match table.get("rule") {
            Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| format!("rule: {}", e.message().trim()))?,
            None => TrainConfig::default().rule,
        };
        let entry = rule.entry();
        let mut settings = match table.remove("settings") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err("settings must be a table of the rule's settings".into()),
            None => toml::Table::new(),
        };
        // The named preset, then the rule's default preset (`biolearn rules NAME`), fill what is
        // unset (flat or in `settings`).
        let name = match table.get("preset") {
            None => "",
            Some(toml::Value::String(s)) => s.as_str(),
            Some(_) => return Err("preset must be a string naming one of the rule's presets".into()),
        };
        for (k, v) in rule.preset_table(name)? {
            if !table.contains_key(&k) && !settings.contains_key(&k) {
                table.insert(k, v);
            }
        }
        let shared = shared_keys();
        let keys: Vec<String> = table.keys().cloned().collect();
        for k in keys {
            if entry.settings.has(&k) {
                settings.insert(k.clone(), table.remove(&k).unwrap());
            } else if !shared.iter().any(|s| *s == k) {
                let own = entry.settings.names();
                return Err(format!(
                    "unknown setting '{k}' for rule {rule}; its own settings: {}; shared settings: {}",
                    if own.is_empty() { "none".to_string() } else { own.join(", ") },
                    shared.join(", ")
                ));
            }
        }
        let settings = (entry.settings.resolve)(&settings).map_err(|e| format!("rule {rule}: {e}"))?;
        let mut cfg: TrainConfig = toml::Value::Table(table.clone()).try_into().map_err(|e: toml::de::Error| {
            // serde's message names the value, not the key: find the key that fails alone.
            let culprit = table.iter().find(|(k, v)| {
                let one: toml::Table = [((*k).clone(), (*v).clone())].into_iter().collect();
                toml::Value::Table(one).try_into::<TrainConfig>().is_err()
            });
            match culprit {
                Some((k, _)) => format!("{k}: {}", e.message().trim()),
                None => e.message().trim().to_string(),
            }
        })?;
        cfg.settings = settings;
        cfg.validate()?;
        Ok(cfg)
    }

    /// What the rule is built from: its settings and the optimiser.
    pub fn build_context(&self) -> crate::rules::BuildContext<'_> {
        crate::rules::BuildContext {
            settings: &self.settings,
            optim: self.optim(),
            epochs: self.epochs,
            loss: self.train_loss(),
        }
    }

    /// Every field checked (the rule's settings by the rule): a value no run can mean is refused,
    /// naming the field.
    pub fn validate(&self) -> Result<(), String> {
        crate::data::check_name(&self.data)?;
        self.arch_spec()?;
        (self.rule.entry().settings.resolve)(&self.settings).map_err(|e| format!("rule {}: {e}", self.rule))?;
        self.hardware_config()?;
        match (self.is_vae(), self.loss) {
            (true, Loss::Mse) => {
                return Err(format!(
                    "arch {}: a VAE's decoder is Bernoulli per pixel, its loss that cross-entropy (loss ce, the default), not mse",
                    self.arch
                ))
            }
            (false, Loss::Bernoulli) => {
                return Err("loss bernoulli is a VAE's pixel likelihood: it comes with a vae: arch".into())
            }
            _ => {}
        }
        let checks: [(bool, &str); 12] = [
            (self.resize <= 4096, "resize must be in 0..=4096 (0: images as stored)"),
            ((1..=MAX_EPOCHS).contains(&self.epochs), "epochs must be in 1..=1000000"),
            ((1..=MAX_BATCH).contains(&self.batch), "batch must be in 1..=16777216"),
            (self.lr.is_finite() && self.lr > 0.0, "lr must be a positive number"),
            ((0.0..1.0).contains(&self.momentum), "momentum must be in [0, 1)"),
            (self.weight_decay >= 0.0 && self.weight_decay.is_finite(), "weight_decay must be >= 0"),
            ((1..=1024).contains(&self.threads), "threads must be in 1..=1024"),
            ((0.0..1.0).contains(&self.val_fraction), "val_fraction must be in [0, 1)"),
            ((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2), "beta1 and beta2 must be in [0, 1)"),
            (self.eps.is_finite() && self.eps > 0.0, "eps must be a positive number"),
            (
                self.gamma.is_finite() && self.gamma > 0.0 && (1..=MAX_EPOCHS).contains(&self.step_size),
                "gamma must be a positive number and step_size in 1..=1000000",
            ),
            (self.milestones.iter().all(|m| (1..=MAX_EPOCHS).contains(m)), "milestones must be epochs in 1..=1000000"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg.to_string()),
            None => Ok(()),
        }
    }

    /// The non-idealities `hardware` names.
    pub fn hardware_config(&self) -> Result<crate::nn::hardware::HardwareConfig, String> {
        crate::nn::hardware::HardwareConfig::named(&self.hardware)
    }

    /// What `train::load_data` makes of the data set besides loading it (standardised or not,
    /// an autoencoder's targets, resized): runs that share it share one loaded copy.
    pub fn data_key(&self) -> (bool, bool, usize) {
        (self.normalize, self.is_vae(), self.resize)
    }

    /// Whether the network is a variational autoencoder (a `vae:` arch): its targets are its
    /// inputs' pixels (`data::Dataset::autoencoding`), its loss their Bernoulli cross-entropy.
    pub fn is_vae(&self) -> bool {
        matches!(self.arch_spec(), Ok(ArchSpec::Vae { .. }))
    }

    /// The loss the driver trains on: `loss`, or a VAE's Bernoulli cross-entropy.
    pub fn train_loss(&self) -> Loss {
        if self.is_vae() {
            Loss::Bernoulli
        } else {
            self.loss
        }
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
        assert_eq!((c.rule, c.epochs, c.lr, c.milestones.clone()), (RuleName::named("fa"), 3, 0.5, vec![1, 2]));
        assert_eq!(c.batch, TrainConfig::default().batch);
        std::fs::write(&f, "epoch = 3\n").unwrap();
        let e = TrainConfig::load(Some(&f), toml::Table::new()).unwrap_err().to_string();
        assert!(e.contains("run.toml") && e.contains("epoch"), "{e}");
        std::fs::write(&f, "epochs = 0\n").unwrap();
        let e = TrainConfig::load(Some(&f), toml::Table::new()).unwrap_err().to_string();
        assert!(e.contains("epochs must be in 1..=1000000"), "{e}");
        let kind = TrainConfig::load(Some(&f), toml::Table::new()).unwrap_err();
        assert!(matches!(kind, crate::Error::Config(_)), "{kind:?}");
        std::fs::write(&f, "rule = \"nope\"\n").unwrap();
        assert!(TrainConfig::load(Some(&f), toml::Table::new()).is_err());
        std::fs::write(&f, "arch = \"mlp:x\"\n").unwrap();
        assert!(TrainConfig::load(Some(&f), toml::Table::new()).unwrap_err().to_string().contains("mlp:x"));
        std::fs::remove_dir_all(&dir).ok();
    }

    fn cfg(text: &str) -> Result<TrainConfig, String> {
        TrainConfig::from_table(toml::from_str(text).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn named_presets_layer_over_the_default_and_what_is_given_wins() {
        // The default preset (presets/pc.toml) alone.
        let c = cfg("rule = 'pc'").unwrap();
        assert_eq!(c.settings["pc_steps"].as_integer(), Some(20));
        assert_eq!(c.arch, TrainConfig::default().arch);
        // A named preset over it: its keys win over the default preset's, the default preset
        // fills the rest, and the name is kept in the resolved configuration.
        let c = cfg("rule = 'pc'\npreset = 'pcx'").unwrap();
        assert_eq!((c.arch.as_str(), c.epochs, c.preset.as_str()), ("mlp:128,128,128", 25, "pcx"));
        assert_eq!(c.settings["pc_steps"].as_integer(), Some(5));
        // What is given wins over both, flat or in a [settings] table.
        let c = cfg("rule = 'pc'\npreset = 'pcx'\narch = 'mlp:32'\npc_steps = 7").unwrap();
        assert_eq!((c.arch.as_str(), c.settings["pc_steps"].as_integer()), ("mlp:32", Some(7)));
        let c = cfg("rule = 'pc'\n[settings]\npc_steps = 9").unwrap();
        assert_eq!(c.settings["pc_steps"].as_integer(), Some(9));
        // An unknown name is refused with the rule's presets named.
        let e = cfg("rule = 'pc'\npreset = 'nope'").unwrap_err();
        assert!(e.contains("no preset 'nope'") && e.contains("pcx, equilibrium"), "{e}");
        let e = cfg("rule = 'drtp'\npreset = 'pcx'").unwrap_err();
        assert!(e.contains("none but the default"), "{e}");
        assert!(cfg("preset = 3").unwrap_err().contains("preset must be a string"));
    }

    #[test]
    fn every_built_in_preset_resolves_and_names_its_source() {
        // Each preset file parses, holds only known keys and valid values, and starts with the
        // header that says where it comes from.
        for r in RuleName::all().into_iter().filter(|r| crate::rules::BUILTIN.iter().any(|e| e.name == r.as_str())) {
            let e = r.entry();
            assert!(e.preset.starts_with("# Source:"), "presets/{}.toml has no '# Source:' header", r);
            cfg(&format!("rule = '{r}'")).unwrap_or_else(|e| panic!("{r}: {e}"));
            for (name, text) in e.presets {
                assert!(text.starts_with("# Source:"), "presets/{r}/{name}.toml has no '# Source:' header");
                cfg(&format!("rule = '{r}'\npreset = '{name}'")).unwrap_or_else(|e| panic!("{r} {name}: {e}"));
            }
        }
        // And every file under presets/ is one the registry loads (none forgotten).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&root).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                for f in std::fs::read_dir(&p).unwrap() {
                    files.push(f.unwrap().path());
                }
            } else {
                files.push(p);
            }
        }
        for f in files {
            let rel = f.strip_prefix(&root).unwrap().with_extension("");
            let mut parts = rel.iter().map(|c| c.to_str().unwrap());
            let (rule, name) = (parts.next().unwrap(), parts.next());
            if rule == "hardware" {
                let name = name.unwrap();
                let text = std::fs::read_to_string(&f).unwrap();
                let shipped = crate::nn::hardware::PRESETS.iter().find(|(n, _)| *n == name);
                assert_eq!(
                    shipped.map(|(_, t)| *t),
                    Some(text.as_str()),
                    "{} is not a shipped hardware preset",
                    f.display()
                );
                assert!(text.starts_with("# Source:"), "{} has no '# Source:' header", f.display());
                crate::nn::hardware::HardwareConfig::named(name).unwrap();
                continue;
            }
            let e = rule.parse::<RuleName>().unwrap_or_else(|e| panic!("{}: {e}", f.display())).entry();
            let text = std::fs::read_to_string(&f).unwrap();
            let loaded = match name {
                None => e.preset,
                Some(n) => e.presets.iter().find(|(m, _)| *m == n).map_or("", |(_, t)| *t),
            };
            assert_eq!(loaded, text, "{} is not the preset the registry loads", f.display());
        }
    }
}
