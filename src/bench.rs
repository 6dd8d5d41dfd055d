//! Training throughput: samples per second of one full training epoch, per rule, architecture
//! and thread count, measured the same way as `bench/pytorch_bench.py` measures PyTorch
//! (data already in memory and normalised; a few warm-up steps first; evaluation excluded).

use crate::config::TrainConfig;
use crate::data::sampling::subset;
use crate::data::Dataset;
use crate::nn::Shape;
use crate::rng::Rng;
use crate::rules::RuleName;
use crate::train::Trainer;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub data: String,
    pub rule: String,
    pub arch: String,
    pub threads: usize,
    pub batch: usize,
    pub samples: usize,
    pub epoch_seconds: f64,
    pub samples_per_second: f64,
}

/// Time one epoch over `ds.train` for every (arch, rule, threads) combination. Each run's
/// configuration is resolved like `biolearn train`'s: `base` (settings as a TOML table: batch,
/// learning rate, the rules' own settings, ...), the rule, architecture and threads, then the
/// rule's preset for whatever is still unset. `base` may hold settings of several rules: each
/// rule takes its own.
pub fn run(
    ds: &Dataset,
    base: &toml::Table,
    rules: &[RuleName],
    archs: &[String],
    threads: &[usize],
    warmup_steps: usize,
    mut report: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>, String> {
    let input = Shape::new(ds.channels, ds.height, ds.width);
    let mut rows = Vec::new();
    for arch in archs {
        for &rule in rules {
            for &t in threads {
                let own = rule.entry().settings;
                let mut table: toml::Table = base
                    .iter()
                    .filter(|(k, _)| own.has(k) || !crate::rules::is_any_rule_setting(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                table.insert("rule".into(), toml::Value::String(rule.to_string()));
                table.insert("arch".into(), toml::Value::String(arch.clone()));
                table.insert("threads".into(), toml::Value::Integer(t as i64));
                table.insert("epochs".into(), toml::Value::Integer(1));
                let cfg = TrainConfig::from_table(table).map_err(|e| format!("rule {rule}: {e}"))?;
                let warm_idx: Vec<usize> = (0..(warmup_steps * cfg.batch).min(ds.train.n)).collect();
                let warm = subset(&ds.train, &warm_idx);
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| e.to_string())?;
                let row = pool.install(|| -> Result<BenchRow, String> {
                    let mut rng = Rng::new(cfg.seed);
                    let mut tr = Trainer::new(&cfg, input, ds.num_classes, &mut rng)?;
                    tr.train_epoch(&warm, cfg.lr, |_, _| {});
                    // The timed epoch through the same loop as every run (no evaluation).
                    let splits = crate::train::Splits { train: &ds.train, val: None, test: None };
                    let done = tr.fit(splits, Default::default(), 1, &mut crate::train::NoHooks)?;
                    let s = &done.epochs[0];
                    Ok(BenchRow {
                        data: ds.name.clone(),
                        rule: rule.to_string(),
                        arch: arch.clone(),
                        threads: t,
                        batch: cfg.batch,
                        samples: ds.train.n,
                        epoch_seconds: s.seconds,
                        samples_per_second: ds.train.n as f64 / s.seconds,
                    })
                })?;
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}
