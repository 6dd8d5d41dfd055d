//! `biolearn compare PLAN --estimate`: the plan's expected run time before it starts, from a
//! short timing of each rule on the plan's own data and network (not from a table of guesses).
//!
//! For each compared rule and arm (its resolved configuration at seed 0) and each of the plan's
//! hardware conditions (a simulated array costs several times the ideal run's arithmetic: BP on
//! the holistic MLP 11 ms per 1000 samples ideal, 33-50 on int8 / int4 / neurosim), at the plan's
//! threads per run:
//! - a training phase that is one pass (most rules, Hebbian read-out epochs): seconds per training
//!   sample, timed over up to 16 batches after a 2-batch warm-up, per phase the rule declares
//!   over the run's epochs (`Rule::phase`);
//! - a phase until settled (a Hebbian unsupervised epoch of a fixed number of updates): timed
//!   whole on a subset, since its cost is its update budget, not the data set's size;
//! - evaluation: seconds per test sample, in the last epoch's phase (a frozen prefix's features
//!   cached, as the driver keeps them for the test and validation splits);
//! - a read-out phase after a frozen prefix is timed with its features cached (the driver
//!   computes them once per run; that once is not counted).
//!
//! A run then costs its epochs' training on its training subset (fraction or shots), an
//! evaluation of the test (and validation) split per epoch, and its protocol evaluations: per
//! sparsity one evaluation plus `finetune_epochs` of training; per noise level an evaluation;
//! per attack eps `attack_samples` x (1 or pgd_steps) gradient passes, counted as training
//! samples. The plan's total is the sum over runs divided by the runs at once (`parallel`): an
//! estimate that ignores imbalance at the end and the cores' sharing of memory bandwidth, and
//! times each configuration at its initialisation (a run whose weights grow large writes more
//! device pulses later: PEPITA-WM on int4 hardware). Runs already recorded (`done`, a sweep to
//! resume) are added up apart.

use super::plan::{Plan, RunSpec};
use crate::data::sampling;
use crate::rng::Rng;
use crate::train::{self, Trainer};
use std::collections::HashSet;
use std::time::Instant;

/// One rule's timing and its share of the plan.
#[derive(Clone, Debug)]
pub struct RuleEstimate {
    pub rule: String,
    pub runs: usize,
    /// Seconds per training sample in each phase (name, seconds; a phase until settled: seconds
    /// for the whole phase, marked by `whole`).
    pub phases: Vec<(String, f64, bool)>,
    pub eval_per_sample: f64,
    /// Sum of the rule's runs' estimated seconds (one run at a time).
    pub seconds: f64,
    /// Of those runs, the ones already recorded (`done` ids), and the seconds of the others.
    pub done: usize,
    pub left_seconds: f64,
}

#[derive(Clone, Debug)]
pub struct Estimate {
    pub rules: Vec<RuleEstimate>,
    pub parallel: usize,
    /// Wall-clock seconds for the whole plan at `parallel` runs at once.
    pub seconds: f64,
    /// The same for the runs not yet recorded.
    pub left_seconds: f64,
}

/// Time each rule of `plan` and add up its runs; `done`: the ids of runs already recorded (a
/// sweep to resume), whose time is counted apart.
pub fn estimate(plan: &Plan, parallel: usize, done: &HashSet<String>) -> Result<Estimate, String> {
    let runs = plan.runs()?;
    let mut rules = Vec::new();
    // A plan with a hardware axis times each rule on each condition: simulating the devices,
    // ADCs and quantisers costs several times the ideal run's arithmetic.
    let conditions: Vec<&str> = {
        let mut c: Vec<&str> = runs.iter().map(|r| r.cfg.hardware.as_str()).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    for entry in plan.entries()? {
        // An entry's runs: its rule on its network (an arm runs a rule on a network of its own).
        let arch = plan.config_of(&entry, 0)?.arch;
        for hw in &conditions {
            let mine: Vec<&RunSpec> = runs
                .iter()
                .filter(|r| r.cfg.rule == entry.rule && r.cfg.arch == arch && r.cfg.hardware == *hw)
                .collect();
            let Some(first) = mine.first() else { continue };
            let label = if conditions.len() > 1 { format!("{} [{hw}]", entry.label()) } else { entry.label() };
            rules.push(time_runs(plan, &mine, &first.cfg, label, done)?);
        }
    }
    let parallel = parallel.max(1);
    let total: f64 = rules.iter().map(|r| r.seconds).sum();
    let left: f64 = rules.iter().map(|r| r.left_seconds).sum();
    Ok(Estimate { rules, parallel, seconds: total / parallel as f64, left_seconds: left / parallel as f64 })
}

/// Time one rule's configuration `cfg` (its first run's) and add up the runs `mine` at it.
fn time_runs(
    plan: &Plan,
    mine: &[&RunSpec],
    cfg: &crate::config::TrainConfig,
    label: String,
    done: &HashSet<String>,
) -> Result<RuleEstimate, String> {
    let loaded = train::load_data(cfg).map_err(|e| e.to_string())?;
    let ds = &loaded.ds;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build().map_err(|e| e.to_string())?;
    let (phases, per_epoch, eval) = pool.install(|| -> Result<_, String> {
        let mut rng = Rng::new(cfg.seed);
        let mut tr = Trainer::on_data(cfg, ds, &mut rng)?;
        let take = |n: usize| sampling::subset(&ds.train, &(0..n.min(ds.train.n)).collect::<Vec<_>>());
        let (warm, timed) = (take(2 * cfg.batch), take(16 * cfg.batch));
        let test = sampling::subset(&ds.test, &(0..ds.test.n.min(1000)).collect::<Vec<_>>());
        // The phase of every epoch of the run, and the cost of each distinct one.
        let mut phases: Vec<(String, f64, bool)> = Vec::new();
        let mut per_epoch = Vec::new();
        for e in 0..cfg.epochs {
            let p = tr.rule.phase(e);
            if let Some(i) = phases.iter().position(|(n, _, _)| n == p.name) {
                per_epoch.push(i);
                continue;
            }
            if !p.until_settled {
                tr.epochs_done = e;
                tr.train_epoch(&warm, cfg.lr, |_, _| {});
            }
            if p.frozen_prefix > 0 {
                // A frozen prefix's features are computed once per run (and the test and
                // validation splits' once too): a read-out epoch is timed with them cached.
                tr.epochs_done = e;
                tr.train_epoch(&timed, cfg.lr, |_, _| {});
                tr.evaluate(&test);
            }
            tr.epochs_done = e;
            let t0 = Instant::now();
            let s = tr.train_epoch(&timed, cfg.lr, |_, _| {});
            let secs = t0.elapsed().as_secs_f64();
            let cost = if p.until_settled { secs } else { secs / s.samples.max(1) as f64 };
            per_epoch.push(phases.len());
            phases.push((p.name.to_string(), cost, p.until_settled));
        }
        // Evaluation as the last epoch's phase has it (cached features after a frozen prefix).
        let t0 = Instant::now();
        tr.evaluate(&test);
        Ok((phases, per_epoch, t0.elapsed().as_secs_f64() / test.n.max(1) as f64))
    })?;
    let train_cost = |samples: usize, epochs: usize| -> f64 {
        (0..epochs)
            .map(|e| {
                let (_, c, whole) = &phases[per_epoch[e.min(per_epoch.len() - 1)]];
                if *whole {
                    *c
                } else {
                    c * samples as f64
                }
            })
            .sum()
    };
    let last = phases[*per_epoch.last().unwrap_or(&0)].1;
    let (mut seconds, mut left_seconds, mut recorded) = (0.0, 0.0, 0);
    for spec in mine {
        let pool_n = (ds.train.n as f64 * (1.0 - spec.cfg.val_fraction as f64)) as usize;
        let samples = match spec.shots {
            Some(k) => k * ds.num_classes,
            None => (pool_n as f64 * spec.fraction).round() as usize,
        };
        let val = ds.train.n - pool_n;
        let epochs = spec.cfg.epochs;
        let mut s = train_cost(samples, epochs) + epochs as f64 * (ds.test.n + val) as f64 * eval;
        if spec.budget_only.is_none() {
            let evals_at = |n: usize| n as f64 * ds.test.n as f64 * eval;
            s += evals_at(plan.sparsities.len() + plan.noise.len() + plan.salt_pepper.len());
            s += (plan.sparsities.len() * plan.finetune_epochs * samples) as f64 * last;
            let attacked = if plan.attack_samples == 0 { ds.test.n } else { plan.attack_samples.min(ds.test.n) };
            let passes = plan.fgsm.len() + plan.pgd.len() * plan.pgd_steps;
            s += (passes * attacked) as f64 * last;
            // Square: at most square_queries evaluation passes per sample (fewer once it
            // is misclassified: an upper bound).
            s += (plan.square.len() * plan.square_queries * attacked) as f64 * eval;
        }
        seconds += s;
        if done.contains(&spec.id) {
            recorded += 1;
        } else {
            left_seconds += s;
        }
    }
    Ok(RuleEstimate {
        rule: label,
        runs: mine.len(),
        phases,
        eval_per_sample: eval,
        seconds,
        done: recorded,
        left_seconds,
    })
}
