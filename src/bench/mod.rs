//! Training throughput: samples per second of one full training epoch, per rule, architecture
//! and thread count, measured the same way as `bench/pytorch_bench.py` measures PyTorch
//! (data already in memory and normalised; a few warm-up steps first; evaluation excluded), and
//! the memory training takes: the model's heap, the most heap a phase's training held above it
//! (`memory::Counting`, installed by the `biolearn` binary), the workspace's share of that, and
//! the process's peak resident set.

use crate::config::TrainConfig;
use crate::data::sampling::subset;
use crate::data::Dataset;
use crate::memory;
use crate::rng::Rng;
use crate::rules::RuleName;
use crate::train::Trainer;
use serde::Serialize;

pub mod kernels;

/// One phase's measurements, inside the thread pool.
struct Timed {
    phase: String,
    seconds: f64,
    model: Option<u64>,
    train: Option<u64>,
    workspace: u64,
    rss: Option<u64>,
    diverged: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub data: String,
    pub rule: String,
    /// The rule's phase timed (`Rule::phase`: "train"; Hebbian rules' "unsupervised" and
    /// "read-out" epochs are timed separately).
    pub phase: String,
    pub arch: String,
    pub threads: usize,
    pub batch: usize,
    pub samples: usize,
    pub epoch_seconds: f64,
    pub samples_per_second: f64,
    /// Heap bytes the built model holds before training: the network's parameters (feedback
    /// matrices included), the optimiser's moments, the update buffers, the rule's own state.
    pub model_bytes: Option<u64>,
    /// The most heap bytes the phase's training held above that at once: activations and
    /// their gradients (the workspace), the rule's scratch, per-step transients.
    pub train_bytes: Option<u64>,
    /// The workspace's own bytes after the timed epoch (part of `train_bytes`).
    pub workspace_bytes: u64,
    /// The process's peak resident set during the phase (data set included; Linux only).
    pub peak_rss_bytes: Option<u64>,
    /// The loss became NaN or infinite at this (1-based) batch: the epoch stopped there and
    /// its time and rate are not a full epoch's (rerun with a smaller `--set lr=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at_batch: Option<usize>,
}

/// Time one epoch over `ds.train` for every (arch, rule, threads) combination, each run
/// configured by `config_for`.
pub fn run(
    ds: &Dataset,
    base: &toml::Table,
    rules: &[RuleName],
    archs: &[String],
    threads: &[usize],
    warmup_steps: usize,
    mut report: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>, String> {
    let mut rows = Vec::new();
    for arch in archs {
        for &rule in rules {
            for &t in threads {
                let cfg = config_for(base, rule, arch, t)?;
                let warm_idx: Vec<usize> = (0..warmup_steps.saturating_mul(cfg.batch).min(ds.train.n)).collect();
                let warm = subset(&ds.train, &warm_idx);
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| e.to_string())?;
                let timed = pool.install(|| -> Result<Vec<Timed>, String> {
                    let mut rng = Rng::new(cfg.seed);
                    let before = memory::current();
                    let mut tr = Trainer::on_data(&cfg, ds, &mut rng)?;
                    let built = memory::current();
                    // Each phase of the rule once, at the first epoch it holds (phases are a
                    // function of the epoch: Hebbian rules' unsupervised, then read-out epochs).
                    let mut phases: Vec<(&'static str, usize, usize)> = Vec::new();
                    for e in 0..1000 {
                        let p = tr.rule.phase(e);
                        if !phases.iter().any(|(n, _, _)| *n == p.name) {
                            phases.push((p.name, e, p.frozen_prefix));
                        }
                    }
                    let mut out = Vec::new();
                    for (name, e, frozen) in phases {
                        memory::reset_peak();
                        let rss_reset = memory::reset_peak_rss();
                        tr.epochs_done = e;
                        tr.train_epoch(&warm, cfg.lr, |_, _| {});
                        if frozen > 0 {
                            // A frozen prefix's features are computed once per run: not timed.
                            tr.epochs_done = e;
                            tr.train_epoch(&ds.train, cfg.lr, |_, _| {});
                        }
                        tr.epochs_done = e;
                        // The timed epoch through the same loop as every run (no evaluation).
                        let splits = crate::train::Splits { train: &ds.train, val: None, test: None };
                        let done = tr.fit(splits, Default::default(), 1, &mut crate::train::NoHooks)?;
                        // A phase until settled makes several passes: timed per sample trained on.
                        let passes = done.epochs[0].passes.unwrap_or(1);
                        out.push(Timed {
                            phase: name.to_string(),
                            seconds: done.epochs[0].seconds / passes as f64,
                            model: before.zip(built).map(|(a, b)| b.saturating_sub(a) as u64),
                            train: built.zip(memory::peak()).map(|(b, p)| p.saturating_sub(b) as u64),
                            workspace: tr.workspace_bytes() as u64,
                            rss: if rss_reset { memory::peak_rss() } else { None },
                            diverged: done.diverged.as_ref().map(|d| d.batch),
                        });
                    }
                    Ok(out)
                })?;
                for Timed { phase, seconds, model, train, workspace, rss, diverged } in timed {
                    let row = BenchRow {
                        data: ds.name.clone(),
                        rule: rule.to_string(),
                        phase,
                        arch: arch.clone(),
                        threads: t,
                        batch: cfg.batch,
                        samples: ds.train.n,
                        epoch_seconds: seconds,
                        samples_per_second: ds.train.n as f64 / seconds,
                        model_bytes: model,
                        train_bytes: train,
                        workspace_bytes: workspace,
                        peak_rss_bytes: rss,
                        diverged_at_batch: diverged,
                    };
                    report(&row);
                    rows.push(row);
                }
            }
        }
    }
    Ok(rows)
}

/// One bench run's configuration, resolved like `biolearn train`'s: `base` (settings as a TOML
/// table: batch, learning rate, the rules' own settings, ...), the rule, architecture and
/// threads, one epoch, then the rule's preset for whatever is still unset. `base` may hold
/// settings of several rules: each rule takes its own.
pub fn config_for(base: &toml::Table, rule: RuleName, arch: &str, threads: usize) -> Result<TrainConfig, String> {
    let mut table = crate::config::settings_for(rule, base);
    table.insert("rule".into(), toml::Value::String(rule.to_string()));
    table.insert("arch".into(), toml::Value::String(arch.to_string()));
    table.insert("threads".into(), toml::Value::Integer(threads as i64));
    table.insert("epochs".into(), toml::Value::Integer(1));
    TrainConfig::from_table(table).map_err(|e| format!("rule {rule}: {e}"))
}
