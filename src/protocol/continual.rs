//! Continual learning: a sequence of tasks built from one data set, learned one after another by
//! one network, any rule, through the same `Trainer` as every other run.
//!
//! Task sequences (`Tasks`):
//! - `split:T`: the classes in order, cut into T tasks of about K / T classes each (split
//!   Fashion-MNIST: 5 tasks of 2 classes), each task's training and test examples those of its
//!   classes, labels unchanged.
//! - `permuted:T`: every task all classes, its inputs' values under a fixed random permutation
//!   (task 0 the identity; task t's drawn from the run's seed).
//!
//! Each task trains `epochs` epochs on its training examples: the schedule and the rule's phases
//! start over per task (a Hebbian rule's unsupervised phase, then its read-out, on every task);
//! the weights, the optimiser's state and the rule's own state carry over. After each task every task's test
//! examples are scored twice: class-incremental (the answer among all K outputs) and
//! task-incremental (among the task's own classes; both forms train the same shared head, so
//! they differ only in what the evaluation knows). On permuted tasks the two are the same
//! (domain-incremental). From the accuracy matrix R[i][j] (task j after training task i):
//!
//!   average accuracy  A   = mean_j R[T-1][j]
//!   forgetting        F   = mean_{j < T-1} (max_{j <= i < T-1} R[i][j] - R[T-1][j])
//!   backward transfer BWT = mean_{j < T-1} (R[T-1][j] - R[j][j])
//!
//! (Chaudhry et al. 2018 for F; Lopez-Paz & Ranzato 2017 for BWT.)

use crate::config::TrainConfig;
use crate::data::{Dataset, Split};
use crate::rng::Rng;
use crate::train::{NoHooks, Progressed, Splits, Trainer};
use serde::Serialize;

/// A task sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tasks {
    Split(usize),
    Permuted(usize),
}

impl std::str::FromStr for Tasks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("tasks '{s}': expected split:T or permuted:T with T from 2 to 100");
        let (kind, t) = s.split_once(':').ok_or_else(bad)?;
        let t: usize = t.trim().parse().map_err(|_| bad())?;
        if !(2..=100).contains(&t) {
            return Err(bad());
        }
        match kind.trim() {
            "split" => Ok(Tasks::Split(t)),
            "permuted" => Ok(Tasks::Permuted(t)),
            _ => Err(bad()),
        }
    }
}

/// One task: its classes and its training and test examples.
pub struct Task {
    pub classes: Vec<u32>,
    pub train: Split,
    pub test: Split,
}

/// The examples of `split` whose label is in `classes`, their values permuted by `perm`.
fn subset(split: &Split, classes: &[u32], perm: Option<&[usize]>) -> Split {
    let d = split.dim;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..split.n {
        if !classes.contains(&split.y[i]) {
            continue;
        }
        let row = &split.x[i * d..(i + 1) * d];
        match perm {
            Some(p) => x.extend(p.iter().map(|&j| row[j])),
            None => x.extend_from_slice(row),
        }
        y.push(split.y[i]);
    }
    Split { n: y.len(), x, y, dim: d }
}

/// The task sequence of `tasks` over `ds` (permutations drawn from `seed`).
pub fn build_tasks(ds: &Dataset, tasks: Tasks, seed: u64) -> Result<Vec<Task>, String> {
    let k = ds.num_classes;
    let all: Vec<u32> = (0..k as u32).collect();
    match tasks {
        Tasks::Split(t) => {
            if t > k {
                return Err(format!("split:{t}: {} has {k} classes, fewer than {t} tasks", ds.name));
            }
            // Task i: classes [i K / T, (i + 1) K / T).
            let out: Vec<Task> = (0..t)
                .map(|i| {
                    let classes: Vec<u32> = all[i * k / t..(i + 1) * k / t].to_vec();
                    Task { train: subset(&ds.train, &classes, None), test: subset(&ds.test, &classes, None), classes }
                })
                .collect();
            if let Some(empty) = out.iter().find(|t| t.train.n == 0 || t.test.n == 0) {
                return Err(format!("split:{t}: classes {:?} have no training or no test examples", empty.classes));
            }
            Ok(out)
        }
        Tasks::Permuted(t) => {
            let bytes = 4.0 * t as f64 * (ds.train.x.len() + ds.test.x.len()) as f64;
            if bytes > crate::limits::memory_cap() {
                return Err(format!(
                    "permuted:{t}: the {t} permuted copies of {} need {:.1} GiB, more than the cap of {:.1} GiB (BIOLEARN_MAX_MEMORY_GB)",
                    ds.name,
                    bytes / (1u64 << 30) as f64,
                    crate::limits::memory_cap() / (1u64 << 30) as f64
                ));
            }
            let mut rng = Rng::new(seed ^ 0x5045_524D);
            Ok((0..t)
                .map(|i| {
                    let mut perm: Vec<usize> = (0..ds.train.dim).collect();
                    if i > 0 {
                        rng.shuffle(&mut perm);
                    }
                    Task {
                        train: subset(&ds.train, &all, Some(&perm)),
                        test: subset(&ds.test, &all, Some(&perm)),
                        classes: all.clone(),
                    }
                })
                .collect())
        }
    }
}

/// A, F and BWT of an accuracy matrix (`r[i][j]`, j <= i).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Metrics {
    pub average_accuracy: f64,
    pub forgetting: f64,
    pub backward_transfer: f64,
}

pub fn metrics(r: &[Vec<f64>]) -> Metrics {
    let t = r.len();
    let last = &r[t - 1];
    let average_accuracy = last.iter().sum::<f64>() / t as f64;
    let old = (t - 1).max(1) as f64;
    let forgetting =
        (0..t - 1).map(|j| (j..t - 1).map(|i| r[i][j]).fold(f64::NEG_INFINITY, f64::max) - last[j]).sum::<f64>() / old;
    let backward_transfer = (0..t - 1).map(|j| last[j] - r[j][j]).sum::<f64>() / old;
    Metrics { average_accuracy, forgetting, backward_transfer }
}

/// One seed's run: the accuracy matrices (class- and task-incremental) and their metrics.
#[derive(Clone, Debug, Serialize)]
pub struct ContinualRun {
    pub seed: u64,
    /// r[i][j]: task j's test accuracy after training task i (j <= i), answer among all classes.
    pub class_il: Vec<Vec<f64>>,
    /// The same, answer among task j's classes.
    pub task_il: Vec<Vec<f64>>,
    pub class_il_metrics: Metrics,
    pub task_il_metrics: Metrics,
    /// Training diverged (in this task, 1-based): the rest of the sequence is not trained.
    pub diverged_in_task: Option<usize>,
}

/// Learn the sequence from a fresh network (initialised from `seed`) under `cfg`, `epochs` per
/// task.
pub fn run(cfg: &TrainConfig, ds: &Dataset, tasks: &[Task], epochs: usize, seed: u64) -> Result<ContinualRun, String> {
    if epochs == 0 || epochs > crate::limits::MAX_EPOCHS {
        return Err(format!("continual: epochs per task from 1 to {}", crate::limits::MAX_EPOCHS));
    }
    let mut cfg = cfg.clone();
    cfg.epochs = epochs;
    cfg.seed = seed;
    let mut rng = Rng::new(seed);
    let mut tr = Trainer::on_data(&cfg, ds, &mut rng)?;
    let (mut class_il, mut task_il) = (Vec::new(), Vec::new());
    let mut diverged_in_task = None;
    for (i, task) in tasks.iter().enumerate() {
        if diverged_in_task.is_none() {
            tr.restart_epochs();
            let done = tr.fit(
                Splits { train: &task.train, val: None, test: None },
                Progressed::default(),
                epochs,
                &mut NoHooks,
            )?;
            if done.diverged.is_some() {
                diverged_in_task = Some(i + 1);
            }
        }
        let (mut c, mut t) = (Vec::new(), Vec::new());
        for seen in &tasks[..=i] {
            // A diverged network scores chance on both forms (not evaluated).
            if diverged_in_task.is_some() {
                c.push(1.0 / ds.num_classes as f64);
                t.push(1.0 / seen.classes.len() as f64);
            } else {
                c.push(tr.evaluate_among(&seen.test, None).0);
                t.push(tr.evaluate_among(&seen.test, Some(&seen.classes)).0);
            }
        }
        class_il.push(c);
        task_il.push(t);
    }
    Ok(ContinualRun {
        seed,
        class_il_metrics: metrics(&class_il),
        task_il_metrics: metrics(&task_il),
        class_il,
        task_il,
        diverged_in_task,
    })
}

pub use super::MeanCi;

/// Choose among the `candidates` (the rate search's configurations, `protocol::rate_candidates`)
/// for this sequence: every task's training examples lose a stratified `val_fraction` to a
/// validation split (drawn from `seed`), each candidate learns the sequence on what is left
/// (`epochs` per task, seed `seed`) and is scored by its task-incremental average accuracy on
/// the tasks' validation splits after the last task (the class-incremental one, near chance for
/// every rule of the split sequences, would choose nothing); the best's index (the first on
/// ties) and every trial. The test examples are not used.
pub fn search(
    candidates: &[super::Candidate],
    ds: &Dataset,
    tasks: &[Task],
    epochs: usize,
    val_fraction: f32,
    seed: u64,
) -> Result<(usize, Vec<super::Trial>), String> {
    super::check_search(candidates, val_fraction, "continual")?;
    let mut rng = Rng::new(seed ^ super::VAL_SALT);
    let mut carved = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (train, val) = crate::data::sampling::split_validation(&t.train, ds.num_classes, val_fraction, &mut rng);
        crate::data::sampling::check_nonempty(&train, Some(&val), &format!("validation share {val_fraction}"))?;
        carved.push(Task { classes: t.classes.clone(), train, test: val });
    }
    let mut trials = Vec::new();
    for c in candidates {
        let r = run(&c.cfg, ds, &carved, epochs, seed)?;
        trials.push(super::Trial {
            value: c.value,
            score: r.task_il_metrics.average_accuracy,
            diverged: r.diverged_in_task.is_some(),
        });
    }
    Ok((super::best_trial(&trials), trials))
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct MetricsSummary {
    pub average_accuracy: MeanCi,
    pub forgetting: MeanCi,
    pub backward_transfer: MeanCi,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub class_il: MetricsSummary,
    pub task_il: MetricsSummary,
    /// Runs whose training diverged (their later accuracies counted at chance).
    pub diverged: usize,
}

/// Means and 95% intervals over the seeds' runs (percent); `t975`: the t distribution's 0.975
/// quantile at runs - 1 degrees of freedom (the caller's: `report::stats::t_quantile`).
pub fn summarise(runs: &[ContinualRun], t975: f64) -> Summary {
    let ci = |v: Vec<f64>| super::mean_ci(&v, t975);
    let of = |pick: fn(&ContinualRun) -> Metrics| MetricsSummary {
        average_accuracy: ci(runs.iter().map(|r| pick(r).average_accuracy).collect()),
        forgetting: ci(runs.iter().map(|r| pick(r).forgetting).collect()),
        backward_transfer: ci(runs.iter().map(|r| pick(r).backward_transfer).collect()),
    };
    Summary {
        class_il: of(|r| r.class_il_metrics),
        task_il: of(|r| r.task_il_metrics),
        diverged: runs.iter().filter(|r| r.diverged_in_task.is_some()).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics on a hand-worked 3-task matrix.
    #[test]
    fn metrics_by_hand() {
        let r = vec![vec![0.9], vec![0.5, 0.8], vec![0.3, 0.7, 0.6]];
        let m = metrics(&r);
        // A = (0.3 + 0.7 + 0.6) / 3; F = ((0.9 - 0.3) + (0.8 - 0.7)) / 2; BWT = ((0.3 - 0.9) + (0.7 - 0.8)) / 2.
        assert!((m.average_accuracy - 1.6 / 3.0).abs() < 1e-12);
        assert!((m.forgetting - 0.35).abs() < 1e-12);
        assert!((m.backward_transfer + 0.35).abs() < 1e-12);
        // A forgotten task that later recovered: F counts from its best, BWT from its first.
        let m = metrics(&[vec![0.4], vec![0.9, 0.8], vec![0.5, 0.7, 0.6]]);
        assert!((m.forgetting - (0.4 + 0.1) / 2.0).abs() < 1e-12, "{m:?}");
        assert!((m.backward_transfer - (0.1 - 0.1) / 2.0).abs() < 1e-12, "{m:?}");
    }

    #[test]
    fn task_sequences_parse_and_cut_the_classes() {
        assert_eq!("split:5".parse::<Tasks>().unwrap(), Tasks::Split(5));
        assert_eq!("permuted:3".parse::<Tasks>().unwrap(), Tasks::Permuted(3));
        for bad in ["split", "split:1", "split:x", "rotated:3", "permuted:1000"] {
            assert!(bad.parse::<Tasks>().is_err(), "{bad}");
        }
        let ds = crate::train::load_data(&TrainConfig::default()).unwrap().ds;
        let tasks = build_tasks(&ds, Tasks::Split(5), 0).unwrap();
        assert_eq!(
            tasks.iter().map(|t| t.classes.clone()).collect::<Vec<_>>(),
            [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
        );
        assert_eq!(tasks.iter().map(|t| t.train.n).sum::<usize>(), ds.train.n);
        assert!(tasks[1].test.y.iter().all(|&y| y == 2 || y == 3));
        assert!(build_tasks(&ds, Tasks::Split(11), 0).is_err());
        // Permuted: every task all the examples, task 0 as loaded, the others permuted.
        let p = build_tasks(&ds, Tasks::Permuted(3), 7).unwrap();
        assert_eq!(p[0].train.x, ds.train.x);
        assert_ne!(p[1].train.x, ds.train.x);
        let (mut a, mut b) = (p[2].train.x[..ds.train.dim].to_vec(), ds.train.x[..ds.train.dim].to_vec());
        a.sort_by(f32::total_cmp);
        b.sort_by(f32::total_cmp);
        assert_eq!(a, b, "a permutation keeps each image's values");
    }

    /// BP on split digits, class-incremental: every task is learned when trained, and learning
    /// a new pair of classes wipes out the old ones (catastrophic forgetting); the
    /// task-incremental evaluation of the same network keeps far more.
    #[test]
    fn backprop_forgets_class_incrementally_more_than_task_incrementally() {
        let ds = crate::train::load_data(&TrainConfig::default()).unwrap().ds;
        // Plain SGD (the usual fine-tuning baseline of continual learning).
        let cfg = TrainConfig { arch: "mlp:64".into(), threads: 1, momentum: 0.0, ..Default::default() };
        let tasks = build_tasks(&ds, Tasks::Split(5), 0).unwrap();
        let r = run(&cfg, &ds, &tasks, 20, 1).unwrap();
        assert!((0..5).all(|i| r.class_il[i][i] > 0.9), "{:?}", r.class_il);
        assert!(r.class_il[4][0] < 0.3, "task 0 after all five, class-incremental: {:?}", r.class_il);
        assert!(r.class_il_metrics.forgetting > 0.6, "{:?}", r.class_il_metrics);
        assert!(r.task_il_metrics.average_accuracy > r.class_il_metrics.average_accuracy + 0.5, "{r:?}");
        assert!(r.task_il_metrics.forgetting < 0.2, "{r:?}");
    }
}
