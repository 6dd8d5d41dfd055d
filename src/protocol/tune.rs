//! `biolearn tune`: hyperparameter search on a validation split carved from the training set,
//! with the same budget for every rule, never looking at the test set.
//!
//! A search is a seeded random search over a space of settings (shared ones such as `lr` and
//! `weight_decay`, and any rule setting by name), `trials` trials of `epochs` epochs each on a
//! stratified `subset` of the training set. The validation split (`val_fraction` of every class)
//! and the subset depend on the search's seed only, so every trial of every rule sees the same
//! images. A trial's score is its validation accuracy after its last epoch (a diverged trial
//! scores 0), or, where the model's objective is a loss rather than a class (a language model's
//! cross-entropy per token, a VAE's negative ELBO), minus that loss on the validation split (a
//! diverged trial scores worst). The test split is never evaluated (`Splits::test` is None).
//!
//! Output: `OUT/trials.jsonl` (one line per trial, appended as each ends: an interrupted search
//! resumes where it stopped, trial draws depend on the trial index only) and `OUT/preset.toml`,
//! the best trial's settings with a header recording where they come from (data, network,
//! split, budget, space, score).

use super::repair_with;
use crate::config::TrainConfig;
use crate::data::sampling;
use crate::rng::Rng;
use crate::train::{self, NoHooks, Splits, Trainer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a dimension of the space is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Uniform in [lo, hi].
    Lin,
    /// Log-uniform in [lo, hi] (lo > 0).
    Log,
    /// A uniform integer in [lo, hi].
    Int,
}

/// One setting searched over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dim {
    pub key: String,
    pub scale: Scale,
    pub lo: f64,
    pub hi: f64,
}

impl Dim {
    fn draw(&self, rng: &mut Rng) -> toml::Value {
        let u = rng.uniform_in(0.0, 1.0) as f64;
        match self.scale {
            Scale::Lin => toml::Value::Float(self.lo + u * (self.hi - self.lo)),
            Scale::Log => toml::Value::Float((self.lo.ln() + u * (self.hi.ln() - self.lo.ln())).exp()),
            Scale::Int => {
                let span = (self.hi - self.lo) as i64 + 1;
                toml::Value::Integer(self.lo as i64 + ((u * span as f64) as i64).min(span - 1))
            }
        }
    }
}

/// `KEY=SCALE:LO:HI,...` (SCALE lin, log or int), e.g. `lr=log:1e-4:1,pc_steps=int:5:50`.
pub fn parse_space(s: &str) -> Result<Vec<Dim>, String> {
    let mut dims: Vec<Dim> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let err = |why: &str| format!("--space {item}: {why} (expected KEY=lin|log|int:LO:HI)");
        let (key, spec) = item.split_once('=').ok_or_else(|| err("no '='"))?;
        let parts: Vec<&str> = spec.split(':').collect();
        let [scale, lo, hi] = parts[..] else { return Err(err("not three fields")) };
        let scale = match scale {
            "lin" => Scale::Lin,
            "log" => Scale::Log,
            "int" => Scale::Int,
            _ => return Err(err("unknown scale")),
        };
        let num = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| err("not a number"));
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi
            || (scale == Scale::Log && lo <= 0.0)
            || (scale == Scale::Int && (lo.fract() != 0.0 || hi.fract() != 0.0))
        {
            return Err(err("bounds must be lo <= hi (log: lo > 0; int: integers)"));
        }
        // Integers a draw can hold exactly (and no setting takes more).
        if scale == Scale::Int && (lo.abs() > 1e15 || hi.abs() > 1e15) {
            return Err(err("int bounds must be within +-1e15"));
        }
        let key = key.trim().to_string();
        if dims.iter().any(|d| d.key == key) {
            return Err(err("key given twice"));
        }
        dims.push(Dim { key, scale, lo, hi });
    }
    if dims.is_empty() {
        return Err("--space: no dimension".into());
    }
    Ok(dims)
}

/// The space searched when none is given: the learning rate (log-uniform over the range where
/// the optimiser kind trains at all: SGD 1e-4..1, the adaptive ones 1e-5..1e-1) and the weight decay
/// (log-uniform 1e-6..1e-2). The same for every rule.
pub fn default_space(cfg: &TrainConfig) -> Vec<Dim> {
    let (lo, hi) = match cfg.optimizer {
        crate::optim::OptimizerKind::Sgd => (1e-4, 1.0),
        _ => (1e-5, 1e-1),
    };
    vec![
        Dim { key: "lr".into(), scale: Scale::Log, lo, hi },
        Dim { key: "weight_decay".into(), scale: Scale::Log, lo: 1e-6, hi: 1e-2 },
    ]
}

/// The search's budget and split, the same for every rule it is compared across.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub trials: usize,
    /// Epochs per trial.
    pub epochs: usize,
    /// Share of the (validation-less) training set each trial trains on, stratified.
    pub subset: f64,
    /// Share of every class held out for validation.
    pub val_fraction: f64,
    /// Seeds the split, the subset and the draws.
    pub seed: u64,
}

/// One trial's line in `trials.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub trial: usize,
    pub params: BTreeMap<String, toml::Value>,
    /// Validation accuracy after each epoch.
    pub val_curve: Vec<f64>,
    /// Validation accuracy after the last epoch (0 when diverged): the score, unless `val_loss`.
    pub val_accuracy: f64,
    /// Sequence data and VAEs: the validation loss after the last epoch (cross-entropy per
    /// token; negative ELBO per sample), the score's objective (lower is better; f64::MAX when
    /// diverged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    pub diverged: bool,
    pub seconds: f64,
}

impl Trial {
    /// What the search maximises: minus the validation loss where there is one, else the
    /// validation accuracy.
    pub fn score(&self) -> f64 {
        match self.val_loss {
            Some(l) if l.is_finite() && l < f64::MAX => -l,
            Some(_) => f64::NEG_INFINITY,
            None => self.val_accuracy,
        }
    }

    /// The score in words: "validation accuracy 0.8123" or "validation loss 251.2" (a language
    /// model's cross-entropy per token, a VAE's negative ELBO per sample).
    pub fn score_text(&self) -> String {
        match self.val_loss {
            Some(l) if l < f64::MAX => {
                format!("validation loss {l:.4}")
            }
            Some(_) => "validation loss: diverged".into(),
            None => format!("validation accuracy {:.4}", self.val_accuracy),
        }
    }
}

pub struct Summary {
    pub trials: Vec<Trial>,
    /// The best trial's settings as the preset has them (tidied; a list setting's draw as `[v]`).
    pub chosen: BTreeMap<String, toml::Value>,
    /// Index into `trials` of the best score (the first on ties).
    pub best: usize,
    /// Trials run now (the rest were on disk).
    pub ran: usize,
    pub preset: PathBuf,
}

/// Run (or resume) the search in `out`, `parallel` trials at a time. `base` holds the settings
/// given (flags, `--set`) over `config_file`; each trial adds its draws and the budget's epochs.
pub fn run(
    base: &toml::Table,
    config_file: Option<&Path>,
    space: &[Dim],
    budget: &Budget,
    out: &Path,
    parallel: usize,
    on_trial: &mut dyn FnMut(&Trial),
) -> Result<Summary, String> {
    if !(1..=100_000).contains(&budget.trials) || !(1..=crate::limits::MAX_EPOCHS).contains(&budget.epochs) {
        return Err("tune: trials must be in 1..=100000 and epochs in 1..=1000000".into());
    }
    let (subset_ok, val_ok) =
        (budget.subset > 0.0 && budget.subset <= 1.0, budget.val_fraction > 0.0 && budget.val_fraction < 1.0);
    if !(subset_ok && val_ok) {
        return Err("tune: subset must be in (0, 1] and val_fraction in (0, 1)".into());
    }
    // A rule setting that is a list (one value per layer, the last repeating: SoftHebb's
    // hebb_t_inv) is searched as one value for every layer: the draw goes in as [v].
    let listy: Vec<String> = {
        let mut t = base.clone();
        t.insert("epochs".into(), toml::Value::Integer(budget.epochs as i64));
        let c = TrainConfig::load(config_file, t).map_err(|e| e.to_string())?;
        c.settings.iter().filter(|(_, v)| v.is_array()).map(|(k, _)| k.clone()).collect()
    };
    let as_setting = |k: &String, v: &toml::Value| match v {
        toml::Value::Array(_) => v.clone(),
        _ if listy.contains(k) => toml::Value::Array(vec![v.clone()]),
        _ => v.clone(),
    };
    let trial_table = |params: &BTreeMap<String, toml::Value>| {
        let mut t = base.clone();
        t.insert("epochs".into(), toml::Value::Integer(budget.epochs as i64));
        t.extend(params.iter().map(|(k, v)| (k.clone(), as_setting(k, v))));
        t
    };
    let load = |params: &BTreeMap<String, toml::Value>| {
        TrainConfig::load(config_file, trial_table(params)).map_err(|e| format!("a trial's settings {params:?}: {e}"))
    };
    // Every dimension must be a setting of this rule: a draw from the first trial's rng checks it.
    let first = load(&draws(space, budget.seed, 0))?;
    let l = train::load_data(&first).map_err(|e| e.to_string())?;
    let ds = &l.ds;
    let mut split_rng = Rng::new(budget.seed ^ 0x7475_6e65);
    let (pool, val) = sampling::split_validation(&ds.train, ds.num_classes, budget.val_fraction as f32, &mut split_rng);
    let train = sampling::stratified_fraction(&pool, ds.num_classes, budget.subset, &mut split_rng);
    sampling::check_nonempty(
        &train,
        Some(&val),
        &format!("val_fraction {} with subset {}", budget.val_fraction, budget.subset),
    )?;

    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    // What the search is (its first trial's settings less the threads, the space, the budget
    // less its trial count, the data): a directory holding another search is refused rather
    // than resumed into; more (or fewer) trials of the same search resume it.
    let mut what = first.clone();
    what.threads = 0;
    let fingerprint = serde_json::to_string_pretty(&serde_json::json!({
        "config": what, "space": space, "data_checksum": l.checksum,
        "budget": Budget { trials: 0, ..budget.clone() },
    }))
    .map_err(|e| e.to_string())?;
    let search = out.join("search.json");
    match std::fs::read_to_string(&search) {
        Ok(old) if old != fingerprint => {
            return Err(format!(
                "{} holds another search ({} differs from this one's settings, space, budget or data): \
                 choose another output directory or delete it",
                out.display(),
                search.display()
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&search, &fingerprint).map_err(|e| format!("{}: {e}", search.display()))?
        }
        Err(e) => return Err(format!("{}: {e}", search.display())),
    }
    let file = out.join("trials.jsonl");
    repair_with(&file, |l| serde_json::from_slice::<Trial>(l).is_ok())?;
    let mut trials: Vec<Trial> = match std::fs::read_to_string(&file) {
        Ok(text) => text
            .lines()
            .enumerate()
            .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", file.display(), i + 1)))
            .collect::<Result<_, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    trials.retain(|t| t.trial < budget.trials);
    let mut fh = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    // The trials still to run, `parallel` at a time (each in its own pool of the configured
    // threads); a trial's line is written when it ends, so the file's order may vary, its lines
    // do not.
    let todo: Vec<usize> = (0..budget.trials).filter(|k| !trials.iter().any(|t| t.trial == *k)).collect();
    let run_trial = |k: usize| -> Result<Trial, String> {
        let params = draws(space, budget.seed, k);
        let cfg = load(&params)?;
        let t0 = std::time::Instant::now();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build().map_err(|e| e.to_string())?;
        let done = pool.install(|| -> Result<train::Progressed, String> {
            let mut rng = Rng::new(cfg.seed);
            let mut tr = Trainer::on_data(&cfg, ds, &mut rng)?;
            let splits = Splits { train: &train, val: Some(&val), test: None };
            tr.fit(splits, Default::default(), cfg.epochs, &mut NoHooks)
        })?;
        let val_curve: Vec<f64> = done.epochs.iter().map(|e| e.val_accuracy.unwrap_or(0.0)).collect();
        let diverged = done.diverged.is_some();
        let val_accuracy = if diverged { 0.0 } else { val_curve.last().copied().unwrap_or(0.0) };
        // A loss objective (sequence data, VAEs): its validation value after the last epoch.
        let val_loss = (train.targets() > 1).then(|| {
            let l = done.epochs.last().and_then(|e| e.val_elbo.or(e.val_loss)).unwrap_or(f64::NAN);
            if diverged || !l.is_finite() {
                f64::MAX
            } else {
                l
            }
        });
        Ok(Trial { trial: k, params, val_curve, val_accuracy, val_loss, diverged, seconds: t0.elapsed().as_secs_f64() })
    };
    let mut ran = 0;
    super::in_parallel(
        todo.len(),
        parallel,
        |i| run_trial(todo[i]),
        |t| {
            super::append_line(&mut fh, &file, &t)?;
            on_trial(&t);
            trials.push(t);
            ran += 1;
            Ok(())
        },
    )?;
    trials.sort_by_key(|t| t.trial);
    let best = (0..trials.len())
        .max_by(|&a, &b| trials[a].score().total_cmp(&trials[b].score()).then(b.cmp(&a)))
        .expect("at least one trial");
    let preset = out.join("preset.toml");
    let mut chosen = trials[best].clone();
    chosen.params = chosen.params.iter().map(|(k, v)| (k.clone(), as_setting(k, v))).collect();
    write_preset(&preset, base, &first, &chosen, space, budget, &l.checksum, trials.len())?;
    let mut chosen = chosen.params;
    chosen.iter_mut().for_each(|(_, v)| crate::rules::settings::tidy(v));
    Ok(Summary { trials, best, ran, preset, chosen })
}

/// One entry's outcome in a plan's search.
pub struct PlanEntry {
    pub name: String,
    /// `rule` or `arm`: the plan section its settings go to.
    pub section: &'static str,
    pub arch: String,
    pub space: Vec<Dim>,
    pub summary: Summary,
}

/// `biolearn tune --plan`: search every entry of `plan` (its rules and arms, each on its own
/// network with its own settings) with the plan's `[tune]` budget and split, into
/// `out/ENTRY/`, then write `out/tuned.toml`: the best settings of each entry as the plan's
/// `[rule.X]` / `[arm.Y]` tables, for the plan's `tuned = ...` key.
///
/// With `shard` = (I, N), only the entries whose index is I mod N are searched; `Ok(None)` then
/// unless every entry's search is complete on disk (the last shard to finish, or a later run
/// without a shard, writes `tuned.toml`, running nothing already done).
pub fn run_plan(
    plan: &super::plan::Plan,
    out: &Path,
    shard: Option<(usize, usize)>,
    parallel: usize,
    on_trial: &mut dyn FnMut(&str, &Trial),
) -> Result<Option<Vec<PlanEntry>>, String> {
    let spec = &plan.tune;
    let budget = Budget {
        trials: spec.trials,
        epochs: spec.epochs,
        subset: spec.subset,
        val_fraction: spec.val_fraction,
        seed: spec.seed,
    };
    let mut done = Vec::new();
    let entries = plan.entries()?;
    if let Some((i, n)) = shard {
        for (_, entry) in entries.iter().enumerate().filter(|(k, _)| k % n == i) {
            run_entry(plan, entry, &budget, out, parallel, on_trial)?;
        }
        // Complete everywhere? Then assemble below (every search resumes with nothing to run).
        let complete = entries.iter().all(|e| {
            std::fs::read_to_string(out.join(e.name()).join("trials.jsonl"))
                .map(|t| t.lines().count() >= budget.trials)
                .unwrap_or(false)
        });
        if !complete {
            return Ok(None);
        }
    }
    for entry in entries {
        let name = entry.name();
        let (arch, space, summary) = run_entry(plan, &entry, &budget, out, parallel, on_trial)?;
        let section = if entry.arm.is_some() { "arm" } else { "rule" };
        done.push(PlanEntry { name, section, arch, space, summary });
    }
    let mut text = format!(
        "# Chosen by `biolearn tune --plan` for plan {} on {}: for every entry (rule or arm, on its \n\
         # own network) {} trials x {} epochs of random search on a stratified {} of the training set\n\
         # less a {} validation split of every class (search seed {}); the best validation\n\
         # score's settings (accuracy; a language model's or a VAE's loss). Never the test set.\n\
         # Merged by the plan's `tuned = ...` key.\n",
        plan.name, plan.data, budget.trials, budget.epochs, budget.subset, budget.val_fraction, budget.seed
    );
    for e in &done {
        let b = &e.summary.trials[e.summary.best];
        let space: Vec<String> = e
            .space
            .iter()
            .map(|d| format!("{}={}:{}:{}", d.key, format!("{:?}", d.scale).to_lowercase(), d.lo, d.hi))
            .collect();
        text += &format!(
            "\n# {} on {}: best trial {} of {}, {} after {} epochs{}; space {}\n[{}.{}]\n",
            e.name,
            e.arch,
            b.trial,
            e.summary.trials.len(),
            b.score_text(),
            budget.epochs,
            if b.diverged { " (every trial diverged)" } else { "" },
            space.join(","),
            e.section,
            e.name
        );
        for (k, v) in &e.summary.chosen {
            text += &format!("{k} = {v}\n");
        }
    }
    let file = out.join("tuned.toml");
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Some(done))
}

/// One entry's search of a plan (resumed where its directory has trials): its network, space
/// and summary.
fn run_entry(
    plan: &super::plan::Plan,
    entry: &super::plan::Entry,
    budget: &Budget,
    out: &Path,
    parallel: usize,
    on_trial: &mut dyn FnMut(&str, &Trial),
) -> Result<(String, Vec<Dim>, Summary), String> {
    let name = entry.name();
    let mut base = plan.table_of(entry, 0);
    // The budget's, not the entry's: epochs and the split.
    base.remove("epochs");
    base.remove("val_fraction");
    let probe = plan.config_of(entry, 0)?;
    let space = match plan.tune.space.get(&name) {
        Some(s) => parse_space(s)?,
        None => default_space(&probe),
    };
    let summary = run(&base, None, &space, budget, &out.join(&name), parallel, &mut |t| on_trial(&name, t))
        .map_err(|e| format!("{}: {e}", entry.label()))?;
    Ok((probe.arch, space, summary))
}

/// Trial `k`'s draws: from its own stream (so a resumed search draws what it would have).
fn draws(space: &[Dim], seed: u64, k: usize) -> BTreeMap<String, toml::Value> {
    let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(k as u64 + 1));
    space.iter().map(|d| (d.key.clone(), d.draw(&mut rng))).collect()
}

#[allow(clippy::too_many_arguments)]
fn write_preset(
    path: &Path,
    base: &toml::Table,
    cfg: &TrainConfig,
    best: &Trial,
    space: &[Dim],
    budget: &Budget,
    checksum: &str,
    n: usize,
) -> Result<(), String> {
    let mut t = base.clone();
    // Not settings of a preset: the epochs are the final run's, the threads the machine's.
    for k in ["epochs", "threads", "seed"] {
        t.remove(k);
    }
    t.iter_mut().for_each(|(_, v)| crate::rules::settings::tidy(v));
    t.insert("rule".into(), toml::Value::String(cfg.rule.to_string()));
    t.insert("arch".into(), toml::Value::String(cfg.arch.clone()));
    t.extend(best.params.iter().map(|(k, v)| (k.clone(), v.clone())));
    let space_s: Vec<String> = space
        .iter()
        .map(|d| format!("{}={}:{}:{}", d.key, format!("{:?}", d.scale).to_lowercase(), d.lo, d.hi))
        .collect();
    let header = format!(
        "# Preset chosen by `biolearn tune` on a validation split, never on the test set.\n\
         # rule {} on {} (data checksum {checksum}), network {}, seed {}\n\
         # split: {} of every class held out for validation, trials train on a stratified {} of the rest (search seed {})\n\
         # budget: {} trials x {} epochs ({} run), random search over {}\n\
         # best: trial {} with {} after {} epochs\n\
         # Use: biolearn train --config THIS_FILE [--epochs N ...]\n",
        cfg.rule,
        cfg.data,
        cfg.arch,
        cfg.seed,
        budget.val_fraction,
        budget.subset,
        budget.seed,
        budget.trials,
        budget.epochs,
        n,
        space_s.join(","),
        best.trial,
        best.score_text(),
        budget.epochs,
    );
    let body = toml::to_string(&t).map_err(|e| e.to_string())?;
    std::fs::write(path, header + &body).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_parses_and_draws_stay_in_range_on_their_scale() {
        let s = parse_space("lr=log:1e-4:1, momentum=lin:0.5:0.99,pc_steps=int:5:50").unwrap();
        assert_eq!(s.len(), 3);
        let (mut below_1e2, n) = (0, 2000);
        for k in 0..n {
            let d = draws(&s, 7, k);
            let lr = d["lr"].as_float().unwrap();
            assert!((1e-4..=1.0).contains(&lr), "{lr}");
            below_1e2 += (lr < 1e-2) as usize;
            let m = d["momentum"].as_float().unwrap();
            assert!((0.5..=0.99).contains(&m));
            let st = d["pc_steps"].as_integer().unwrap();
            assert!((5..=50).contains(&st));
        }
        // Log-uniform: half the draws below the geometric middle 1e-2 (uniform would give 1%).
        assert!((below_1e2 as f64 / n as f64 - 0.5).abs() < 0.05, "{below_1e2}");
        assert_eq!(draws(&s, 7, 3), draws(&s, 7, 3), "a trial's draws depend on its index only");
        assert_ne!(draws(&s, 7, 3), draws(&s, 7, 4));
        for bad in ["lr", "lr=log:0:1", "lr=exp:1:2", "lr=lin:2:1", "k=int:1.5:3", "lr=log:1e-3:1,lr=lin:0:1", ""] {
            assert!(parse_space(bad).is_err(), "{bad}");
        }
    }
}
