//! Comparison plans (`biolearn compare PLAN.toml`): the grid of conditions, its expansion into
//! training runs, and stable run ids.
//!
//! One *training run* per (rule, data fraction or few-shot size, seed, training noise[,
//! gradual-pruning sparsity]); each run is trained for the largest epoch budget and then evaluated under every
//! other condition: accuracy at each budget is read off its learning curve, one-shot pruning at
//! each sparsity (optionally fine-tuned under the mask), and every test-noise level. So the grid
//! rules x fractions x budgets x sparsities x noise x attacks x seeds costs rules x (fractions +
//! shots) x seeds runs.
//!
//! ```toml
//! name = "holistic-mlp"
//! data = "fashion-mnist"
//! arch = "mlp:1024"
//! rules = ["bp", "fa", "usf", "dfa"]
//! fractions = [0.1, 0.2, 0.5, 1.0]
//! epochs = [5, 20]              # budgets; runs train for the largest
//! budgets = "separate"          # or "curve" (default): smaller budgets read off its curve
//! sparsities = [0, 0.5, 0.9]
//! pruning = "oneshot"           # or "gradual" (one run per sparsity, cubic schedule)
//! finetune_epochs = 1           # after one-shot pruning, under the mask
//! noise = [0, 0.1, 0.3]         # Gaussian std on test inputs, pixel units
//! salt_pepper = [0.1]           # salt-and-pepper probability on test inputs
//! shots = [1, 5, 10, 100]       # few-shot: k training samples per class (one run each)
//! fgsm = [0.05, 0.1]            # adversarial eps (pixel units, L-inf) for FGSM and PGD
//! pgd = [0.05]
//! pgd_steps = 10
//! attack_loss = "ce"            # or "margin": FGSM/PGD ascend max_{k != y} z_k - z_y (CW)
//! square = [0.1]                # black-box Square attack eps (scores only, no gradient)
//! square_queries = 1000         # its queries per sample (default 1000), first window share
//! square_p = 0.05               # (default 0.05, the official code's)
//! attack_samples = 1000         # test samples attacked (0: all)
//! seeds = 3
//! [train]                       # any `biolearn train` setting, for every rule
//! optimizer = "adam"
//! lr = 1e-3
//! [rule.dfa]                    # per-rule overrides (an `arch` here replaces the plan's)
//! lr = 5e-4
//! [arm.bp-softhebb-net]         # a rule once more, with settings of its own: here BP on a
//! rule = "bp"                   # Hebbian rule's network, its baseline there
//! arch = "softhebb-mlp:2000"
//! ```
//!
//! An *arm* runs a rule a second time (and a third...) with its own table over `[train]`
//! (`[rule.X]` is not applied to it): typically BP on the network a Hebbian rule brings, so that
//! the report compares that rule with BP on the same network. An arm's rule and network must not
//! repeat another entry's: the report tells runs apart by (rule, network).

use crate::config::TrainConfig;
use crate::rules::RuleName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How the epoch budgets are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetMode {
    /// Read off the learning curve of the run for the largest budget (mid-schedule for the
    /// smaller ones: a decaying rate has not decayed there).
    Curve,
    /// Each smaller budget is a run of its own whose schedule spans it (a budget-only record:
    /// its final accuracy; the other conditions are evaluated on the largest budget's run).
    Separate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneMode {
    Oneshot,
    Gradual,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    pub data: String,
    pub data_dir: Option<String>,
    pub arch: String,
    /// The rules compared: a list of names, or `"all"` (every registered rule).
    #[serde(deserialize_with = "rules_or_all")]
    pub rules: Vec<RuleName>,
    /// Rules left out of `rules` (with `rules = "all"`: rules whose networks do not fit the data).
    pub exclude: Vec<RuleName>,
    /// Shares of the training set (stratified, seeded by the run's seed).
    pub fractions: Vec<f64>,
    /// Epoch budgets.
    pub epochs: Vec<usize>,
    /// `curve` (default: read off the largest budget's run) or `separate` (a run per budget).
    pub budgets: BudgetMode,
    pub sparsities: Vec<f64>,
    pub pruning: PruneMode,
    /// GlobalMP's minimum threshold: every layer keeps at least this share of its weights.
    pub min_keep: f64,
    pub finetune_epochs: usize,
    pub noise: Vec<f64>,
    pub salt_pepper: Vec<f64>,
    /// Gaussian noise std on training inputs (one run each).
    pub train_noise: Vec<f64>,
    /// Compute-in-memory hardware conditions (`nn::hardware` presets, or TOML files of
    /// non-idealities): one training run each, trained and tested on that hardware.
    pub hardware: Vec<String>,
    /// Few-shot conditions: k training samples per class (seeded, one run per k besides the
    /// fractions).
    pub shots: Vec<usize>,
    /// Adversarial eps (pixel units, L-inf) of FGSM and PGD, PGD's steps, and how many test
    /// samples (the first ones) are attacked (0: all).
    pub fgsm: Vec<f64>,
    pub pgd: Vec<f64>,
    pub pgd_steps: usize,
    /// The loss FGSM and PGD ascend (the margin's gradient survives a saturated softmax).
    pub attack_loss: crate::nn::AttackLoss,
    /// Eps of the black-box Square attack (scores only: every rule), its queries per sample and
    /// the share of pixels its first windows change.
    pub square: Vec<f64>,
    pub square_queries: usize,
    pub square_p: f64,
    pub attack_samples: usize,
    /// Number of seeds (0..seeds).
    pub seeds: u64,
    pub threads_per_run: usize,
    /// Runs at once (default: cores / threads_per_run).
    pub parallel: Option<usize>,
    /// Base training settings for every run.
    pub train: toml::Table,
    /// Per-rule overrides of `train`.
    pub rule: BTreeMap<String, toml::Table>,
    /// Arms: a rule once more, with its own settings over `train` (`rule = "NAME"` inside).
    pub arm: BTreeMap<String, toml::Table>,
    /// How `biolearn tune --plan` searches every entry (the same budget for each).
    pub tune: TuneSpec,
    /// A file of `[rule.X]` / `[arm.Y]` tables written by `biolearn tune --plan` (path relative
    /// to the plan's directory), merged over the plan's own tables when it is loaded.
    pub tuned: Option<String>,
}

/// `[tune]` of a plan: the budget and split `biolearn tune --plan` gives every entry, and the
/// space of the entries that search something other than the default (`lr` and
/// `weight_decay`, `tune::default_space`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuneSpec {
    pub trials: usize,
    /// Epochs per trial.
    pub epochs: usize,
    /// Share of the training set (after the validation split) a trial trains on.
    pub subset: f64,
    pub val_fraction: f64,
    /// Seed of the split, the subset and the draws.
    pub seed: u64,
    /// Entry name (a rule, or an arm's name) -> its space, `KEY=lin|log|int:LO:HI,...`.
    pub space: BTreeMap<String, String>,
}

impl Default for TuneSpec {
    fn default() -> Self {
        TuneSpec { trials: 24, epochs: 3, subset: 0.2, val_fraction: 0.1, seed: 0, space: BTreeMap::new() }
    }
}

/// One entry of the plan: a compared rule with its `[rule.X]` overrides, or an arm.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub rule: RuleName,
    /// The settings over `[train]`: `[rule.X]` or the arm's table (less its `rule` key).
    pub overrides: Option<toml::Table>,
    /// The arm's name (None: a compared rule).
    pub arm: Option<&'a str>,
}

impl Entry<'_> {
    /// The entry's name: its rule's, or the arm's.
    pub fn name(&self) -> String {
        self.arm.map_or_else(|| self.rule.to_string(), str::to_string)
    }

    /// How the entry is named in messages: the rule, or `arm NAME (rule)`.
    pub fn label(&self) -> String {
        match self.arm {
            Some(a) => format!("arm {a} ({})", self.rule),
            None => self.rule.to_string(),
        }
    }
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            name: "plan".into(),
            data: "digits".into(),
            data_dir: None,
            arch: "mlp:1024".into(),
            rules: vec![RuleName::named("bp"), RuleName::named("fa")],
            exclude: vec![],
            fractions: vec![1.0],
            epochs: vec![20],
            budgets: BudgetMode::Curve,
            sparsities: vec![0.0],
            pruning: PruneMode::Oneshot,
            min_keep: 0.0005,
            finetune_epochs: 0,
            noise: vec![0.0],
            salt_pepper: vec![],
            train_noise: vec![0.0],
            hardware: vec!["ideal".into()],
            shots: vec![],
            fgsm: vec![],
            pgd: vec![],
            pgd_steps: 10,
            attack_loss: crate::nn::AttackLoss::Ce,
            square: vec![],
            square_queries: 1000,
            square_p: 0.05,
            attack_samples: 1000,
            seeds: 3,
            threads_per_run: 1,
            parallel: None,
            train: toml::Table::new(),
            rule: BTreeMap::new(),
            arm: BTreeMap::new(),
            tune: TuneSpec::default(),
            tuned: None,
        }
    }
}

/// `rules = ["bp", "fa"]` or `rules = "all"`.
fn rules_or_all<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<RuleName>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rules {
        Word(String),
        List(Vec<String>),
    }
    let names = match Rules::deserialize(d)? {
        Rules::Word(w) if w == "all" => return Ok(RuleName::all()),
        Rules::Word(w) => vec![w],
        Rules::List(l) => l,
    };
    names.iter().map(|n| n.parse().map_err(serde::de::Error::custom)).collect()
}

/// One training run of the grid.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub id: String,
    pub cfg: TrainConfig,
    pub fraction: f64,
    /// Few-shot run: k training samples per class (then `fraction` is 1 and unused).
    pub shots: Option<usize>,
    pub train_noise: f64,
    /// Final sparsity of gradual pruning during training (None: one-shot after training).
    pub gradual: Option<f64>,
    /// A budget-only run (`budgets = "separate"`): trained for this many epochs (the config's),
    /// recording its final accuracy as that budget's and nothing else.
    pub budget_only: Option<usize>,
}

fn fnv(s: &str) -> u64 {
    crate::hash::bytes(crate::hash::OFFSET, s.bytes())
}

impl Plan {
    pub fn load(path: &Path) -> crate::Result<Plan> {
        let bad = |e: String| crate::Error::Plan(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        // A plan says what it compares: an empty file is not a plan of defaults.
        let keys: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if !keys.contains_key("rules") {
            return Err(bad("no `rules` (a list of rules, or \"all\")".into()));
        }
        let mut plan: Plan = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if let Some(t) = plan.tuned.clone() {
            let file = path.parent().unwrap_or(Path::new(".")).join(&t);
            plan.merge_tuned(&file).map_err(|e| bad(format!("tuned = \"{t}\": {e}")))?;
        }
        plan.validate().map_err(bad)?;
        Ok(plan)
    }

    /// Merge a `biolearn tune --plan` result (`[rule.X]` and `[arm.Y]` tables of the settings it
    /// chose) over the plan's own tables.
    pub fn merge_tuned(&mut self, file: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let t: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut merged = std::collections::BTreeSet::new();
        for (section, v) in t {
            let Some(entries) = v.as_table() else {
                return Err(format!("{}: '{section}' is not a table of [rule.X] / [arm.Y]", file.display()));
            };
            for (name, settings) in entries {
                let Some(settings) = settings.as_table() else {
                    return Err(format!("{}: [{section}.{name}] is not a table", file.display()));
                };
                let target = match section.as_str() {
                    "rule" if self.compared().iter().any(|r| r.as_str() == name) => {
                        self.rule.entry(name.clone()).or_default()
                    }
                    "arm" if self.arm.contains_key(name) => self.arm.get_mut(name).unwrap(),
                    "rule" | "arm" => {
                        return Err(format!("{}: [{section}.{name}] is not an entry of this plan", file.display()))
                    }
                    _ => return Err(format!("{}: unknown section [{section}]", file.display())),
                };
                target.extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
                merged.insert(format!("{section}.{name}"));
            }
        }
        // Every entry searched, or the comparison is not fair: a rule registered (or an arm added)
        // after the search would run on its untuned preset beside tuned ones.
        let mut missing: Vec<String> = self
            .compared()
            .iter()
            .map(|r| format!("rule.{}", r.as_str()))
            .chain(self.arm.keys().map(|a| format!("arm.{a}")))
            .filter(|e| !merged.contains(e))
            .map(|e| format!("[{e}]"))
            .collect();
        missing.sort();
        if !missing.is_empty() {
            return Err(format!(
                "{}: no searched settings for {} (added after the search?): search them with the plan's \
                 [tune] budget (`biolearn tune --plan` on a copy of the plan that lists only them) and add \
                 their tables, or exclude them from the plan",
                file.display(),
                missing.join(", ")
            ));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        let bad = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(msg.to_string()) };
        bad(!self.compared().is_empty(), "rules is empty (after exclude)")?;
        // The name is a directory under runs/ by default: one plain word.
        bad(
            !self.name.is_empty()
                && !self.name.starts_with('.')
                && self.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
            "name must be one word of letters, digits, '_', '.' and '-' (not starting with '.')",
        )?;
        // Every condition once: a repeated one would write two records with one id.
        let twice = |v: &[f64]| {
            let mut s: Vec<f64> = v.to_vec();
            s.sort_by(f64::total_cmp);
            s.windows(2).any(|w| w[0] == w[1])
        };
        let mut rules: Vec<&str> = self.rules.iter().map(|r| r.as_str()).collect();
        rules.sort_unstable();
        bad(!rules.windows(2).any(|w| w[0] == w[1]), "a rule is listed twice in rules")?;
        for (name, v) in [
            ("fractions", &self.fractions),
            ("sparsities", &self.sparsities),
            ("noise", &self.noise),
            ("salt_pepper", &self.salt_pepper),
            ("train_noise", &self.train_noise),
            ("fgsm", &self.fgsm),
            ("pgd", &self.pgd),
            ("square", &self.square),
        ] {
            bad(v.iter().all(|x| x.is_finite()), &format!("{name}: every value must be a finite number"))?;
            bad(!twice(v), &format!("{name}: a value is listed twice"))?;
        }
        let mut hw = self.hardware.clone();
        hw.sort_unstable();
        bad(!hw.is_empty(), "hardware: give at least one condition (\"ideal\" is the default)")?;
        bad(!hw.windows(2).any(|w| w[0] == w[1]), "hardware: a condition is listed twice")?;
        for h in &self.hardware {
            crate::nn::hardware::HardwareConfig::named(h).map_err(|e| format!("hardware: {e}"))?;
        }
        let tables = std::iter::once(&self.train).chain(self.rule.values()).chain(self.arm.values());
        bad(
            !tables.into_iter().any(|t| t.contains_key("hardware")),
            "hardware is a condition of the plan (`hardware = [...]`), not a setting of [train], [rule.X] or [arm.Y]",
        )?;
        let ints = |v: &[usize]| twice(&v.iter().map(|&x| x as f64).collect::<Vec<_>>());
        bad(!ints(&self.epochs) && !ints(&self.shots), "epochs / shots: a value is listed twice")?;
        bad(self.parallel != Some(0), "parallel must be at least 1")?;
        bad(
            !self.fractions.is_empty() && self.fractions.iter().all(|f| *f > 0.0 && *f <= 1.0),
            "fractions must be in (0, 1]",
        )?;
        bad(!self.epochs.is_empty() && self.epochs.iter().all(|e| *e >= 1), "epochs (budgets) must be >= 1")?;
        bad(self.sparsities.iter().all(|s| (0.0..1.0).contains(s)), "sparsities must be in [0, 1)")?;
        // (Past 1e6 a level overflows the f32 inputs it is added to.)
        bad(
            self.noise.iter().chain(&self.train_noise).all(|s| (0.0..=1e6).contains(s)),
            "noise and train_noise levels must be in [0, 1e6]",
        )?;
        bad(self.salt_pepper.iter().all(|s| (0.0..=1.0).contains(s)), "salt_pepper must be in [0, 1]")?;
        bad(self.seeds >= 1, "seeds must be >= 1")?;
        bad(self.shots.iter().all(|k| *k >= 1), "shots must be >= 1 sample per class")?;
        bad(self.fgsm.iter().chain(&self.pgd).all(|e| (0.0..=1.0).contains(e)), "fgsm/pgd eps must be in [0, 1]")?;
        bad((1..=100_000).contains(&self.pgd_steps), "pgd_steps must be in 1..=100000")?;
        bad(self.square.iter().all(|e| (0.0..=1.0).contains(e)), "square eps must be in [0, 1]")?;
        bad((1..=1_000_000).contains(&self.square_queries), "square_queries must be in 1..=1000000")?;
        bad(self.square_p > 0.0 && self.square_p <= 1.0, "square_p must be in (0, 1]")?;
        // Counts past any study a machine can run are typos: refused, not started.
        use crate::limits::{MAX_BATCH, MAX_EPOCHS};
        bad(self.epochs.iter().all(|e| *e <= MAX_EPOCHS), "epochs (budgets) must be <= 1000000")?;
        bad(self.finetune_epochs <= MAX_EPOCHS, "finetune_epochs must be <= 1000000")?;
        bad(self.seeds <= 100_000, "seeds must be <= 100000")?;
        bad(self.shots.iter().all(|k| *k <= MAX_BATCH), "shots must be <= 16777216 samples per class")?;
        bad(self.attack_samples <= MAX_BATCH, "attack_samples must be <= 16777216 (0: the whole test set)")?;
        bad((0.0..1.0).contains(&self.min_keep), "min_keep must be in [0, 1)")?;
        bad(self.threads_per_run >= 1, "threads_per_run must be >= 1")?;
        for k in self.rule.keys() {
            k.parse::<RuleName>().map_err(|e| format!("[rule.{k}]: {e}"))?;
        }
        let tu = &self.tune;
        bad(
            (1..=100_000).contains(&tu.trials) && (1..=MAX_EPOCHS).contains(&tu.epochs),
            "[tune] trials must be in 1..=100000 and epochs in 1..=1000000",
        )?;
        bad(tu.subset > 0.0 && tu.subset <= 1.0, "[tune] subset must be in (0, 1]")?;
        bad(tu.val_fraction > 0.0 && tu.val_fraction < 1.0, "[tune] val_fraction must be in (0, 1)")?;
        let entries = self.entries()?;
        for (name, space) in &tu.space {
            if !self.arm.contains_key(name) && name.parse::<RuleName>().is_err() {
                return Err(format!("[tune.space] {name}: not a rule or an arm of this plan"));
            }
            super::tune::parse_space(space).map_err(|e| format!("[tune.space] {name}: {e}"))?;
        }
        let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
        for e in &entries {
            let cfg = self.config_of(e, 0)?;
            if let Some(other) = seen.insert((e.rule.to_string(), cfg.arch.clone()), e.label()) {
                return Err(format!(
                    "{} and {other} both run {} on {}: an arm needs a network of its own",
                    e.label(),
                    e.rule,
                    cfg.arch
                ));
            }
        }
        Ok(())
    }

    /// A compared rule's entry: the rule with its `[rule.X]` overrides.
    fn entry_of(&self, rule: RuleName) -> Entry<'_> {
        Entry { rule, overrides: self.rule.get(rule.as_str()).cloned(), arm: None }
    }

    /// The compared rules, then the arms, each with the settings it brings over `[train]`.
    pub fn entries(&self) -> Result<Vec<Entry<'_>>, String> {
        let mut v: Vec<Entry> = self.compared().into_iter().map(|rule| self.entry_of(rule)).collect();
        for (name, t) in &self.arm {
            let rule = match t.get("rule") {
                Some(toml::Value::String(r)) => r.parse::<RuleName>().map_err(|e| format!("[arm.{name}]: {e}"))?,
                _ => return Err(format!("[arm.{name}]: needs rule = \"NAME\" (the rule the arm runs)")),
            };
            let mut overrides = t.clone();
            overrides.remove("rule");
            v.push(Entry { rule, overrides: Some(overrides), arm: Some(name) });
        }
        Ok(v)
    }

    /// The rules compared: `rules` less `exclude`.
    pub fn compared(&self) -> Vec<RuleName> {
        self.rules.iter().copied().filter(|r| !self.exclude.contains(r)).collect()
    }

    pub fn max_epochs(&self) -> usize {
        self.epochs.iter().copied().max().unwrap_or(1)
    }

    /// The resolved training config of the compared `rule` at `seed`.
    pub fn config_for(&self, rule: RuleName, seed: u64) -> Result<TrainConfig, String> {
        self.config_of(&self.entry_of(rule), seed)
    }

    /// The resolved training config of an entry (a compared rule or an arm) at `seed`.
    pub fn config_of(&self, entry: &Entry, seed: u64) -> Result<TrainConfig, String> {
        let who = match entry.arm {
            Some(a) => format!("[arm.{a}] (rule {})", entry.rule),
            None => format!("rule {}", entry.rule),
        };
        TrainConfig::from_table(self.table_of(entry, seed)).map_err(|e| format!("{who}: {e}"))
    }

    /// The settings of an entry's runs at `seed`, as a table (what `config_of` resolves).
    pub fn table_of(&self, entry: &Entry, seed: u64) -> toml::Table {
        // Layers, later ones winning: the plan's network, [train], [rule.X] or the arm's table (a
        // rule may bring its own network: Hebbian rules), then what the plan fixes for every run.
        let rule = entry.rule;
        let s = |v: &str| toml::Value::String(v.to_string());
        let mut t = toml::Table::new();
        t.insert("arch".into(), s(&self.arch));
        // `[train]` is for every rule: another rule's own settings there are skipped.
        t.extend(crate::config::settings_for(rule, &self.train));
        if let Some(o) = &entry.overrides {
            t.extend(o.clone());
        }
        t.insert("data".into(), s(&self.data));
        if let Some(d) = &self.data_dir {
            t.insert("data_dir".into(), s(d));
        }
        t.insert("rule".into(), s(rule.as_str()));
        t.insert("epochs".into(), toml::Value::Integer(self.max_epochs() as i64));
        t.insert("seed".into(), toml::Value::Integer(seed as i64));
        t.insert("threads".into(), toml::Value::Integer(self.threads_per_run as i64));
        t
    }

    /// The plan's own training settings for an entry (base table, then its overrides),
    /// canonical: keys sorted.
    fn settings_key(&self, entry: &Entry) -> String {
        let mut t: BTreeMap<String, String> = self.train.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        if let Some(o) = &entry.overrides {
            t.extend(o.iter().map(|(k, v)| (k.clone(), v.to_string())));
        }
        let rule = entry.rule;
        // The settings the rule's presets give (default, and the named one the plan picks) are
        // part of what the run is: a changed preset must not reuse a record made with the old
        // one (a changed comment does).
        let named = t.get("preset").map(|v| v.trim_matches('"').to_string()).unwrap_or_default();
        let preset = rule.preset_table(&named).unwrap_or_default().to_string();
        format!("{}|{}|{:?}|{}|{:016x}", self.data, self.arch, t, self.max_epochs(), fnv(&preset))
    }

    /// Every training run of the grid, in a fixed order.
    pub fn runs(&self) -> Result<Vec<RunSpec>, String> {
        let gradual: Vec<Option<f64>> = match self.pruning {
            PruneMode::Oneshot => vec![None],
            PruneMode::Gradual => self.sparsities.iter().map(|s| Some(*s)).collect(),
        };
        // What every run is also evaluated on: part of the id, so that a changed evaluation
        // never reuses an old record.
        let mut evals = format!(
            "{:?}|{:?}|{:?}|{}|{}|{:?}",
            self.epochs, self.sparsities, self.noise, self.min_keep, self.finetune_epochs, self.salt_pepper
        );
        // (Appended only when used, so that plans written before attacks existed keep their ids.)
        if !self.fgsm.is_empty() || !self.pgd.is_empty() {
            evals += &format!("|{:?}|{:?}|{}|{}", self.fgsm, self.pgd, self.pgd_steps, self.attack_samples);
            if self.attack_loss != crate::nn::AttackLoss::Ce {
                evals += &format!("|{:?}", self.attack_loss);
            }
        }
        if !self.square.is_empty() {
            evals +=
                &format!("|square{:?}|{}|{}|{}", self.square, self.square_queries, self.square_p, self.attack_samples);
        }
        let separate = self.budgets == BudgetMode::Separate;
        if separate {
            evals += "|separate";
        }
        // The smaller budgets, as runs of their own when separate.
        let max = self.max_epochs();
        let mut extra: Vec<usize> =
            if separate { self.epochs.iter().copied().filter(|&e| e < max).collect() } else { vec![] };
        extra.sort_unstable();
        extra.dedup();
        // Data conditions: the fractions, then the few-shot sizes.
        let data: Vec<(f64, Option<usize>)> =
            self.fractions.iter().map(|&f| (f, None)).chain(self.shots.iter().map(|&k| (1.0, Some(k)))).collect();
        let mut out = Vec::new();
        for entry in self.entries()? {
            let rule = entry.rule;
            for &(fraction, shots) in &data {
                for (hw, &tn) in self.hardware.iter().flat_map(|h| self.train_noise.iter().map(move |t| (h, t))) {
                    for g in &gradual {
                        for seed in 0..self.seeds {
                            let mut cfg = self.config_of(&entry, seed)?;
                            cfg.hardware = hw.clone();
                            // The id hashes what the plan sets (not the resolved config, which
                            // grows a field with every new rule setting and its default), and
                            // the hardware condition's non-idealities (ideal: nothing, so that
                            // plans written before hardware existed keep their ids).
                            let mut key = self.settings_key(&entry) + &evals;
                            if hw != "ideal" {
                                key += &format!("|hw={}", crate::nn::hardware::HardwareConfig::source(hw));
                            }
                            let h = fnv(&key);
                            let cond = match shots {
                                Some(k) => format!("k={k}"),
                                None => format!("f={fraction}"),
                            };
                            let mut id = format!("{}|{}|{}|{cond}|s={seed}", self.data, cfg.arch, rule);
                            if tn > 0.0 {
                                id += &format!("|tn={tn}");
                            }
                            if hw != "ideal" {
                                id += &format!("|hw={hw}");
                            }
                            if let Some(g) = g {
                                id += &format!("|gp={g}");
                            }
                            id += &format!("|h={:08x}", h as u32);
                            for &e in &extra {
                                let mut cfg = cfg.clone();
                                cfg.epochs = e;
                                out.push(RunSpec {
                                    id: format!("{id}|e={e}"),
                                    cfg,
                                    fraction,
                                    shots,
                                    train_noise: tn,
                                    gradual: *g,
                                    budget_only: Some(e),
                                });
                            }
                            out.push(RunSpec {
                                id,
                                cfg,
                                fraction,
                                shots,
                                train_noise: tn,
                                gradual: *g,
                                budget_only: None,
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `I/N` -> (I, N), 0 <= I < N.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("shard '{s}' is not I/N"))?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| format!("shard '{s}': bad index"))?,
        n.trim().parse().map_err(|_| format!("shard '{s}': bad count"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("shard '{s}': need 0 <= I < N"));
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_expansion_ids_and_overrides() {
        let plan: Plan = toml::from_str(
            "rules = [\"bp\", \"dfa\"]\nfractions = [0.5, 1.0]\nepochs = [2, 5]\nseeds = 2\n[train]\nlr = 0.1\n[rule.dfa]\nlr = 0.01\n",
        )
        .unwrap();
        plan.validate().unwrap();
        let runs = plan.runs().unwrap();
        assert_eq!(runs.len(), 2 * 2 * 2);
        let ids: std::collections::BTreeSet<_> = runs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), runs.len(), "ids are unique");
        assert!(runs.iter().all(|r| r.cfg.epochs == 5));
        let dfa = runs.iter().find(|r| r.cfg.rule == RuleName::named("dfa")).unwrap();
        assert!((dfa.cfg.lr - 0.01).abs() < 1e-9);
        assert!(dfa.id.starts_with("digits|mlp:1024|dfa|f=0.5|s=0|h="), "{}", dfa.id);
        // Ids are stable, and change when a training setting changes.
        assert_eq!(plan.runs().unwrap()[0].id, runs[0].id);
        let mut p2 = plan.clone();
        p2.train.insert("lr".into(), toml::Value::Float(0.2));
        assert_ne!(p2.runs().unwrap()[0].id, runs[0].id);
        let mut p3 = plan.clone();
        p3.pruning = PruneMode::Gradual;
        p3.sparsities = vec![0.5, 0.9];
        assert_eq!(p3.runs().unwrap().len(), 16);
        // Few-shot sizes add one run per (rule, k, seed); attacks change the ids (a new
        // evaluation), while plans without them keep their old ids.
        let mut p4 = plan.clone();
        p4.shots = vec![1, 5];
        let r4 = p4.runs().unwrap();
        assert_eq!(r4.len(), 8 + 2 * 2 * 2);
        assert_eq!(r4[0].id, runs[0].id);
        assert!(r4.iter().any(|r| r.shots == Some(5) && r.id.contains("|k=5|s=1|")));
        let mut p5 = plan.clone();
        p5.pgd = vec![0.1];
        assert_ne!(p5.runs().unwrap()[0].id, runs[0].id);
    }

    #[test]
    fn arms_run_a_rule_again_on_a_network_of_their_own() {
        let base = "rules = [\"bp\", \"dfa\"]\nseeds = 2\n[train]\nlr = 0.1\n[rule.bp]\nlr = 0.3\n";
        let plain: Plan = toml::from_str(base).unwrap();
        let plan: Plan =
            toml::from_str(&format!("{base}[arm.bp-wide]\nrule = \"bp\"\narch = \"mlp:64,64\"\n")).unwrap();
        plan.validate().unwrap();
        let runs = plan.runs().unwrap();
        assert_eq!(runs.len(), 3 * 2);
        // The compared rules' runs (and ids) are those of the plan without the arm.
        let old: Vec<String> = plain.runs().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(runs[..4].iter().map(|r| r.id.clone()).collect::<Vec<_>>(), old);
        let arm: Vec<&RunSpec> = runs[4..].iter().collect();
        assert!(arm.iter().all(|r| r.cfg.rule == RuleName::named("bp") && r.cfg.arch == "mlp:64,64"));
        // Over [train], not [rule.bp].
        assert!(arm.iter().all(|r| (r.cfg.lr - 0.1).abs() < 1e-9), "{}", arm[0].cfg.lr);
        assert!(arm[0].id.starts_with("digits|mlp:64,64|bp|f=1|s=0|h="), "{}", arm[0].id);
        for (text, want) in [
            ("[arm.x]\narch = \"mlp:8\"", "needs rule"),
            ("[arm.x]\nrule = \"nope\"", "nope"),
            ("[arm.x]\nrule = \"bp\"", "network of its own"),
            ("[arm.x]\nrule = \"bp\"\nlrr = 1", "lrr"),
        ] {
            let p: Plan = toml::from_str(&format!("{base}{text}\n")).unwrap();
            let e = p.validate().unwrap_err();
            assert!(e.contains(want) && e.contains("arm.x") || e.contains(want) && e.contains("arm x"), "{text}: {e}");
        }
    }

    #[test]
    fn bad_plans_are_rejected_with_reasons() {
        for (text, want) in [
            ("fractions = [0]", "fractions"),
            ("epochs = []", "epochs"),
            ("rules = [\"nope\"]", "nope"),
            ("[rule.bogus]\nlr = 1.0", "bogus"),
            ("[train]\nlrr = 1.0", "lrr"),
            ("sparsities = [1.0]", "sparsities"),
        ] {
            let e = toml::from_str::<Plan>(text).map_err(|e| e.to_string()).and_then(|p| p.validate());
            assert!(e.as_ref().unwrap_err().contains(want), "{text}: {e:?}");
        }
        assert_eq!(parse_shard("2/4").unwrap(), (2, 4));
        assert!(parse_shard("4/4").is_err() && parse_shard("x").is_err());
    }
}
