//! The comparison protocol (Gupta et al. 2022, "Is Bio-Inspired Learning Better than Backprop?"):
//! a grid of conditions (rules x data fraction x epoch budget x sparsity x noise x seed) run by one
//! command, resumable, shardable over a Slurm array, one self-contained JSON line per run.
//!
//! - `plan`: the grid and its runs. `prune`: global magnitude pruning. `noise`: input corruption.
//! - `record`: one line of `results.jsonl`.
//! - `run_plan`: runs the missing runs in parallel (one rayon pool per run) and appends each
//!   finished record with a single write + fsync. A record is complete exactly when its line
//!   ends in a newline: after a crash (kill -9) the torn tail is cut off on the next start and
//!   that run is redone, so a resumed sweep ends with exactly the records of an uninterrupted one.
//!
//! Definitions used in the records:
//! - *Accuracy at budget E*: with `budgets = "curve"` (the default), test accuracy after epoch E
//!   of the run for the largest budget (mid-schedule of its learning rate); with `budgets =
//!   "separate"`, the final test accuracy of a run of E epochs (a budget-only record).
//! - *Epochs to stable accuracy*: the first epoch e after which every later test accuracy lies
//!   within 0.5 points (0.005) of the final one.

pub mod adversarial;
pub mod continual;
pub mod episodes;
pub mod estimate;
pub mod interference;
pub mod lm;
pub mod online;
pub mod plan;
pub mod record;
pub mod slurm;
pub mod tune;
pub mod vae;

/// One candidate of a condition's rate search (online, continual): the value tried and the
/// configuration that has it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub value: f64,
    pub cfg: crate::config::TrainConfig,
}

/// A candidate's score on the validation split.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Trial {
    /// The searched setting's value (a list setting: its first entry).
    pub value: f64,
    pub score: f64,
    pub diverged: bool,
}

/// The candidates of a search over `key`: `lr`, or a rule setting holding a positive number or a
/// list of them (Activation Learning's `hebb_lr`, one rate per layer). `values` are the values
/// themselves, or with `relative` factors of the configured value (a list: every entry scaled,
/// so per-layer ratios stay). Each candidate configuration is validated.
pub fn rate_candidates(
    cfg: &crate::config::TrainConfig,
    key: &str,
    values: &[f64],
    relative: bool,
) -> Result<Vec<Candidate>, String> {
    if values.is_empty() || values.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
        return Err(format!("search over {key}: the values must be positive numbers"));
    }
    values
        .iter()
        .map(|&v| {
            let mut c = cfg.clone();
            let value = if key == "lr" {
                c.lr = if relative { (v * cfg.lr as f64) as f32 } else { v as f32 };
                c.lr as f64
            } else {
                let cur = c.settings.get(key).cloned().ok_or_else(|| {
                    format!("search over {key}: not a setting of rule {} (lr, or one of its own numbers)", cfg.rule)
                })?;
                let num = |x: &toml::Value| x.as_float().or_else(|| x.as_integer().map(|i| i as f64));
                let (list, old): (bool, Option<Vec<f64>>) = match &cur {
                    toml::Value::Array(a) if !a.is_empty() => (true, a.iter().map(num).collect()),
                    x => (false, num(x).map(|n| vec![n])),
                };
                let old = old
                    .ok_or_else(|| format!("search over {key}: {key} = {cur} is not a number or a list of numbers"))?;
                let new: Vec<f64> = old.iter().map(|&x| if relative { x * v } else { v }).collect();
                let value = if list {
                    toml::Value::Array(new.iter().map(|&x| toml::Value::Float(x)).collect())
                } else {
                    toml::Value::Float(new[0])
                };
                c.settings.insert(key.to_string(), value);
                new[0]
            };
            c.validate().map_err(|e| format!("search over {key} = {value}: {e}"))?;
            Ok(Candidate { value, cfg: c })
        })
        .collect()
}

/// Mixed into a search's seed for its validation split's draw ("VAL"), so the split does not
/// share its stream with the runs of the same seed.
pub const VAL_SALT: u64 = 0x0056_414C;

/// What every condition's search refuses: no candidates, a validation share outside (0, 1).
pub fn check_search(candidates: &[Candidate], val_fraction: f32, what: &str) -> Result<(), String> {
    if candidates.is_empty() {
        return Err(format!("{what} search: no candidates"));
    }
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(format!("{what} search: the validation share must be in (0, 1), not {val_fraction}"));
    }
    Ok(())
}

/// The best trial (the first on ties; a score that is not a number never wins).
pub fn best_trial(trials: &[Trial]) -> usize {
    let key = |t: &Trial| if t.score.is_nan() { f64::NEG_INFINITY } else { t.score };
    (0..trials.len()).fold(0, |b, i| if key(&trials[i]) > key(&trials[b]) { i } else { b })
}

/// A metric's mean over seeds and the half-width of its 95% interval (t quantile), in percent.
pub type MeanCi = (f64, f64);

/// The mean of `v` (fractions) and its 95% half-width from `t975` (the t quantile at n - 1
/// degrees of freedom: `report::stats::t_quantile`), both in percent; NaN half-width below 2.
pub fn mean_ci(v: &[f64], t975: f64) -> MeanCi {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (100.0 * mean, f64::NAN);
    }
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (100.0 * mean, 100.0 * t975 * sd / n.sqrt())
}

use crate::data::noise::{self, NoiseKind, Norm};
use crate::data::{sampling, Split};
use crate::nn::prune;
use crate::nn::Shape;
use crate::rng::Rng;
use crate::train::{self, Loaded, Trainer};
use plan::{Plan, RunSpec};
use record::{AttackPoint, BudgetPoint, EpochPoint, NoisePoint, PrunePoint, Record, Status};
use std::collections::HashSet;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// The band of `epochs_to_stable` the records and reports use: 0.5 points of accuracy.
pub const STABLE_TOL: f64 = 0.005;

/// First epoch (1-based) after which accuracy stays within `tol` of the final value. A
/// difference of exactly `tol` is within: accuracies are fractions whose differences carry the
/// last bit of rounding (0.8922 - 0.8872 = 0.0050000000000000044), so `tol` is widened by 1e-9.
pub fn epochs_to_stable(curve: &[f64], tol: f64) -> Option<usize> {
    let last = *curve.last()?;
    let mut e = curve.len();
    while e > 0 && (curve[e - 1] - last).abs() <= tol + 1e-9 {
        e -= 1;
    }
    Some(e + 1)
}

/// Train and evaluate one run of the grid. Never fails on divergence (recorded as such).
/// With a `checkpoint` path the run's training state is saved there after every epoch, and a
/// checkpoint found there (from an interrupted sweep) is continued rather than started anew.
pub fn run_one(plan: &Plan, spec: &RunSpec, loaded: &Loaded, checkpoint: Option<&Path>) -> Result<Record, String> {
    let t0 = Instant::now();
    let ds = &loaded.ds;
    let cfg = &spec.cfg;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build().map_err(|e| e.to_string())?;
    pool.install(|| {
        let mut rng = Rng::new(cfg.seed);
        let mut tr = Trainer::on_data(cfg, ds, &mut rng)?;
        // A validation split first (the same one `train` carves for this seed, whatever the
        // fraction or shots), then the run's subset of the rest.
        let (pool, val) = if cfg.val_fraction > 0.0 {
            let (t, v) = sampling::split_validation(&ds.train, ds.num_classes, cfg.val_fraction, &mut rng.fork());
            (std::borrow::Cow::Owned(t), Some(v))
        } else {
            (std::borrow::Cow::Borrowed(&ds.train), None)
        };
        let train = match spec.shots {
            Some(k) => sampling::per_class(&pool, ds.num_classes, k, &mut rng.fork()),
            None => sampling::stratified_fraction(&pool, ds.num_classes, spec.fraction, &mut rng.fork()),
        };
        let why = match spec.shots {
            Some(k) => format!("val_fraction {} with {k} shots per class", cfg.val_fraction),
            None => format!("val_fraction {} with fraction {}", cfg.val_fraction, spec.fraction),
        };
        sampling::check_nonempty(&train, val.as_ref(), &why)?;
        if spec.train_noise > 0.0 {
            tr.train_noise = Some((spec.train_noise, loaded.norm.clone()));
        }
        // Gradual pruning after every epoch's training (before its evaluation); a checkpoint
        // after every epoch, resumed from when the run was interrupted.
        struct Around<'a> {
            gradual: Option<f64>,
            min_keep: f64,
            epochs: usize,
            checkpoint: Option<&'a Path>,
        }
        impl train::Hooks for Around<'_> {
            fn trained(&mut self, tr: &mut Trainer, e: usize) {
                if let Some(s) = self.gradual {
                    let m = prune::global_magnitude_masks(
                        &tr.net,
                        prune::gradual_sparsity(s, e + 1, self.epochs),
                        self.min_keep,
                    );
                    prune::apply(&mut tr.net, &m);
                    tr.masks = Some(m);
                }
            }
            fn epoch(&mut self, tr: &mut Trainer, state: &train::Progressed) -> Result<(), String> {
                match self.checkpoint {
                    Some(p) => tr.save_checkpoint(p, state),
                    None => Ok(()),
                }
            }
        }
        let start = match checkpoint.filter(|p| p.is_file()) {
            Some(p) => tr.load_checkpoint(p)?,
            None => train::Progressed::default(),
        };
        let mut hooks = Around { gradual: spec.gradual, min_keep: plan.min_keep, epochs: cfg.epochs, checkpoint };
        let splits = train::Splits { train: &train, val: val.as_ref(), test: Some(&ds.test) };
        let done = tr.fit(splits, start, cfg.epochs, &mut hooks)?;
        let diverged_epoch = done.diverged.as_ref().map(|d| d.epoch);
        let mut macs = 0u64;
        let epoch_seconds: Vec<f64> = done
            .epochs
            .iter()
            .scan(0.0, |t, r| {
                *t += r.seconds;
                Some(*t)
            })
            .collect();
        let curve: Vec<EpochPoint> = done
            .epochs
            .iter()
            .map(|r| {
                macs += r.train_macs;
                EpochPoint {
                    epoch: r.epoch,
                    test_accuracy: r.test_accuracy,
                    train_loss: r.train_loss,
                    train_accuracy: r.train_accuracy,
                    val_accuracy: r.val_accuracy,
                    gmacs: macs as f64 * 1e-9,
                    feedback_angles: r.feedback_angles.clone(),
                    spikes_per_sample: r.spikes_per_sample,
                    test_loss: r.test_loss,
                    test_elbo: r.test_elbo,
                    test_recon: r.test_recon,
                }
            })
            .collect();
        let steps: usize = done.epochs.iter().map(|r| r.steps).sum();
        let macs_per_step = if steps > 0 { macs as f64 / steps as f64 } else { 0.0 };
        let accs: Vec<f64> = curve.iter().map(|p| p.test_accuracy).collect();
        let test_accuracy = accs.last().copied().unwrap_or(0.0);
        let ok = diverged_epoch.is_none();
        // Budgets read off the curve, or (separate) only this run's own.
        let separate = plan.budgets == plan::BudgetMode::Separate;
        let budgets = plan
            .epochs
            .iter()
            .filter(|&&b| b <= accs.len() && (!separate || b == cfg.epochs))
            .map(|&b| BudgetPoint { epochs: b, test_accuracy: accs[b - 1] })
            .collect();
        let mut pruning = Vec::new();
        let mut noise_pts = Vec::new();
        let (mut adversarial, mut attacked_clean_accuracy) = (Vec::new(), None);
        if ok && spec.budget_only.is_none() {
            match spec.gradual {
                Some(s) => pruning.push(PrunePoint { sparsity: s, test_accuracy, finetuned_accuracy: None }),
                None => pruning = oneshot_pruning(plan, &mut tr, &train, cfg.lr * schedule_floor(cfg), &ds.test)?,
            }
            noise_pts = noise_evals(plan, &mut tr, &ds.test, &loaded.norm, cfg.seed);
            let shape = Shape::new(ds.channels, ds.height, ds.width);
            (adversarial, attacked_clean_accuracy) =
                attack_evals(plan, &mut tr, &ds.test, &loaded.norm, shape, cfg.seed);
        }
        // A VAE's pictures beside the run's checkpoint: out/images/<the checkpoint's stem>-*.png,
        // named in the record relative to `out`.
        let mut images = Vec::new();
        if let (true, Some(ck)) = (ok && tr.net.has_latent(), checkpoint) {
            if let (Some(out), Some(stem)) = (ck.parent().and_then(Path::parent), ck.file_stem()) {
                let stem = stem.to_string_lossy();
                let shape = (ds.channels, ds.height, ds.width);
                for p in vae::save_grids(&mut tr.net, &ds.test, shape, &out.join("images"), &stem, cfg.seed)? {
                    images.push(format!("images/{}", p.file_name().unwrap_or_default().to_string_lossy()));
                }
            }
        }
        let mut record = Record {
            images,
            trained_before_resume_by: tr.trained_by.clone(),
            id: spec.id.clone(),
            plan: plan.name.clone(),
            data: ds.name.clone(),
            arch: cfg.arch.clone(),
            rule: cfg.rule.to_string(),
            fraction: spec.fraction,
            shots: spec.shots,
            train_samples: train.n,
            seed: cfg.seed,
            train_noise: spec.train_noise,
            hardware: (cfg.hardware != "ideal").then(|| cfg.hardware.clone()),
            hardware_cost: tr.hardware_cost(),
            gradual_sparsity: spec.gradual,
            epochs: cfg.epochs,
            status: if ok { Status::Ok } else { Status::Diverged },
            diverged_epoch,
            epochs_to_stable: None,
            curve,
            test_accuracy,
            budgets,
            macs_per_step,
            budget_only: spec.budget_only.is_some(),
            pruning,
            noise: noise_pts,
            adversarial,
            attacked_clean_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
            epoch_seconds,
            biolearn_version: train::VERSION.into(),
            git_revision: train::GIT_REVISION.into(),
            schema_version: crate::env::SCHEMA_VERSION,
            env: Some(crate::env::Environment::current()),
        };
        // Epochs to stable accuracy off the curve (the one place: `Record::restable`).
        record.restable();
        Ok(record)
    })
}

/// Fine-tuning uses the schedule's last learning rate (a tenth of the base for a constant one).
fn schedule_floor(cfg: &crate::config::TrainConfig) -> f32 {
    let last = cfg.schedule().lr(1.0, cfg.epochs - 1, cfg.epochs);
    if last >= 1.0 {
        0.1
    } else {
        last.max(0.01)
    }
}

fn oneshot_pruning(
    plan: &Plan,
    tr: &mut Trainer,
    train: &Split,
    ft_lr: f32,
    test: &Split,
) -> Result<Vec<PrunePoint>, String> {
    let finetune = (plan.finetune_epochs > 0).then_some((train, plan.finetune_epochs, ft_lr));
    pruned_accuracies(tr, &plan.sparsities, plan.min_keep, test, finetune)
}

/// Test accuracy under global magnitude pruning at each sparsity (`min_keep`: the share of
/// every layer's weights kept at least), and with `finetune = (train, epochs, lr)` after
/// fine-tuning under the mask (sparsity > 0). Each sparsity starts from the trainer's complete
/// state (network, feedback, rule state, optimiser, RNG, epoch count) and returns to it, so a
/// sparsity's point does not depend on the others listed, nor does what the trainer does next.
pub fn pruned_accuracies(
    tr: &mut Trainer,
    sparsities: &[f64],
    min_keep: f64,
    test: &Split,
    finetune: Option<(&Split, usize, f32)>,
) -> Result<Vec<PrunePoint>, String> {
    let trained = tr.snapshot();
    let mut out = Vec::new();
    for &s in sparsities {
        let m = prune::global_magnitude_masks(&tr.net, s, min_keep);
        prune::apply(&mut tr.net, &m);
        let acc = tr.evaluate(test);
        let mut finetuned = None;
        if let (Some((train, epochs, lr)), true) = (finetune, s > 0.0) {
            tr.masks = Some(m);
            for _ in 0..epochs {
                tr.train_epoch(train, lr, |_, _| {});
            }
            finetuned = Some(tr.evaluate(test));
        }
        out.push(PrunePoint { sparsity: s, test_accuracy: acc, finetuned_accuracy: finetuned });
        tr.restore(&trained)?;
    }
    Ok(out)
}

/// One weight tensor's part in global magnitude pruning at one sparsity.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPruning {
    /// The tensor's name (as in the model file).
    pub name: String,
    /// Its weight count.
    pub size: usize,
    /// The share of its weights that the global mask keeps.
    pub kept: f64,
    /// Test accuracy with only this tensor pruned by its part of the global mask (every other
    /// weight intact): which layer's pruning costs the accuracy.
    pub alone_accuracy: f64,
}

/// For each weight tensor, what global magnitude pruning at `sparsity` keeps of it and the test
/// accuracy when only it is pruned (no fine-tuning). The trainer returns to its state.
pub fn layer_pruning(
    tr: &mut Trainer,
    sparsity: f64,
    min_keep: f64,
    test: &Split,
) -> Result<Vec<LayerPruning>, String> {
    let masks = prune::global_magnitude_masks(&tr.net, sparsity, min_keep);
    let trained = tr.snapshot();
    let mut out = Vec::new();
    for (i, m) in masks.iter().enumerate() {
        let Some(m) = m else { continue };
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len().max(1) as f64;
        let only: prune::Masks = (0..masks.len()).map(|j| if j == i { Some(m.clone()) } else { None }).collect();
        prune::apply(&mut tr.net, &only);
        let acc = tr.evaluate(test);
        tr.restore(&trained)?;
        out.push(LayerPruning { name: tr.net.params[i].name.clone(), size: m.len(), kept, alone_accuracy: acc });
    }
    Ok(out)
}

/// Accuracy on `test` with `kind` noise of `level` (pixel units) drawn from `rng`.
pub fn noisy_accuracy(tr: &mut Trainer, test: &Split, norm: &Norm, kind: NoiseKind, level: f64, rng: &mut Rng) -> f64 {
    let mut noisy = test.clone();
    noise::corrupt(&mut noisy.x, norm, kind, level, rng);
    tr.evaluate(&noisy)
}

/// White-box attacks through the trained network's input gradient, none for a rule whose
/// prediction is not the feed-forward output (EP/CHL's free phase, Activation Learning's
/// activation read-out) and has no input gradient of its own, where that gradient is not its
/// prediction's; then the black-box Square attack on the answer's scores, for every rule.
/// Also the clean accuracy of the attacked images (the first `attack_samples` of the test set),
/// the reference an attack's accuracy drop is measured from.
fn attack_evals(
    plan: &Plan,
    tr: &mut Trainer,
    test: &Split,
    norm: &Norm,
    shape: Shape,
    seed: u64,
) -> (Vec<AttackPoint>, Option<f64>) {
    if plan.fgsm.is_empty() && plan.pgd.is_empty() && plan.square.is_empty() {
        return (Vec::new(), None);
    }
    let m = if plan.attack_samples == 0 { test.n } else { plan.attack_samples.min(test.n) };
    let sub = sampling::subset(test, &(0..m).collect::<Vec<_>>());
    let clean = Some(tr.evaluate(&sub));
    let mut out = Vec::new();
    if tr.rule.prediction() == crate::rules::Prediction::FeedForward || tr.rule.has_input_gradient() {
        out = gradient_attacks(plan, tr, &sub, norm, seed);
    }
    for (i, &eps) in plan.square.iter().enumerate() {
        let mut rng = adversarial::attack_rng(seed, i, true);
        let adv = adversarial::square(
            &mut tr.net,
            Some(tr.rule.as_mut()),
            &sub,
            norm,
            shape,
            eps,
            plan.square_queries,
            plan.square_p,
            &mut rng,
        );
        out.push(AttackPoint { attack: "square".into(), eps, test_accuracy: tr.evaluate(&adv) });
    }
    (out, clean)
}

fn gradient_attacks(plan: &Plan, tr: &mut Trainer, sub: &Split, norm: &Norm, seed: u64) -> Vec<AttackPoint> {
    use adversarial::Attack;
    let attacks = plan
        .fgsm
        .iter()
        .map(|&e| (Attack::Fgsm, e))
        .chain(plan.pgd.iter().map(|&e| (Attack::Pgd { steps: plan.pgd_steps }, e)));
    let mut out = Vec::new();
    for (i, (atk, eps)) in attacks.enumerate() {
        let mut rng = adversarial::attack_rng(seed, i, false);
        let adv =
            adversarial::attack(&mut tr.net, Some(tr.rule.as_mut()), sub, norm, atk, plan.attack_loss, eps, &mut rng);
        out.push(AttackPoint { attack: atk.label(plan.attack_loss), eps, test_accuracy: tr.evaluate(&adv) });
    }
    out
}

fn noise_evals(plan: &Plan, tr: &mut Trainer, test: &Split, norm: &Norm, seed: u64) -> Vec<NoisePoint> {
    let levels = plan
        .noise
        .iter()
        .map(|&l| (NoiseKind::Gaussian, l))
        .chain(plan.salt_pepper.iter().map(|&l| (NoiseKind::SaltPepper, l)));
    levels
        .enumerate()
        .map(|(i, (kind, level))| {
            // The same corrupted test set for every rule: seeded by the run's seed and the condition.
            let mut rng = noise_rng(seed, i);
            NoisePoint {
                kind: kind.as_str().into(),
                level,
                test_accuracy: noisy_accuracy(tr, test, norm, kind, level, &mut rng),
            }
        })
        .collect()
}

/// The draws of a run's `i`-th noise condition (Gaussian levels, then salt-and-pepper ones, in
/// the plan's order): the plan's protocol and `biolearn eval --noise` (given the plan's list, in
/// its order) corrupt the same test images the same way.
pub fn noise_rng(seed: u64, i: usize) -> Rng {
    Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64 + 17))
}

/// What a sweep reports as it goes (the library prints nothing; the CLI renders these).
pub enum SweepEvent<'a> {
    /// A torn last line (an interrupted write) was cut from a result file.
    Repaired { file: &'a Path, dropped_bytes: usize },
    /// A run's record was written: `done` of `total` runs, seconds so far and left (estimate).
    Recorded { done: usize, total: usize, record: &'a Record, elapsed: f64, eta: f64 },
}

/// Where a sweep keeps the checkpoint of run `id` while it trains: OUT/checkpoints/HASH.safetensors.
pub fn checkpoint_path(out: &Path, id: &str) -> PathBuf {
    out.join("checkpoints").join(format!("{:016x}.safetensors", crate::hash::bytes(crate::hash::OFFSET, id.bytes())))
}

/// The result files of `dir` (`results.jsonl` and the shards' `results.shard-*.jsonl`).
pub fn result_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    n.starts_with("results") && n.ends_with(".jsonl")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Mend a results file's last line when it lacks its newline (a write interrupted by a crash):
/// a line that parses as a complete record keeps it (the newline is added), a torn one is cut.
/// Returns the bytes cut. Call it after `done_ids` has checked the file's complete lines, so
/// nothing is cut from a file that is refused.
pub fn repair(path: &Path) -> Result<usize, String> {
    repair_with(path, |line| serde_json::from_slice::<Record>(line).is_ok())
}

/// `repair` for a JSON-lines file whose complete last line is one that `complete` accepts.
pub(crate) fn repair_with(path: &Path, complete: impl Fn(&[u8]) -> bool) -> Result<usize, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err(e)),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(err)?;
    if buf.is_empty() || buf.ends_with(b"\n") {
        return Ok(0);
    }
    let keep = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if complete(&buf[keep..]) {
        f.seek(std::io::SeekFrom::End(0)).map_err(err)?;
        f.write_all(b"\n").and_then(|_| f.sync_data()).map_err(err)?;
        return Ok(0);
    }
    f.set_len(keep as u64).map_err(err)?;
    f.seek(std::io::SeekFrom::End(0)).map_err(err)?;
    Ok(buf.len() - keep)
}

/// Ids of the complete records in `dir`'s result files, each line checked first: a line that
/// is not a record of this format (wrong fields or types, junk, a newer schema) is an error
/// naming the file and line, so that a damaged file is refused, never skipped over. A last line
/// without its newline counts when it is a complete record (`repair` mends the file).
pub fn done_ids(dir: &Path) -> Result<HashSet<String>, String> {
    Ok(done_records(dir)?.into_iter().map(|r| r.id).collect())
}

/// The complete records of `dir`'s result files (see `done_ids`).
pub fn done_records(dir: &Path) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for f in result_files(dir) {
        let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let at = || format!("{}:{}", f.display(), i + 1);
            let Some(line) = line.strip_suffix(b"\n") else {
                // A last line without its newline: a complete record counts (`repair` adds the
                // newline), a torn one does not (`repair` cuts it).
                out.extend(serde_json::from_slice::<Record>(line).ok());
                continue;
            };
            let line = std::str::from_utf8(line).map_err(|e| format!("{}: not UTF-8 text: {e}", at()))?;
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(line.trim_end_matches('\r'))
                .map_err(|e| format!("{}: not a result record: {e}", at()))?;
            if r.schema_version > crate::env::SCHEMA_VERSION {
                return Err(format!(
                    "{}: a record of schema {} (this biolearn writes {}): written by a newer biolearn",
                    at(),
                    r.schema_version,
                    crate::env::SCHEMA_VERSION
                ));
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// Refuse records of `dir` made for this plan's conditions with other settings: a record whose
/// id is a run's condition (data, network, rule, fraction or shots, seed, ...) but whose
/// settings hash differs was made by another version of the plan, and the report would count
/// both. Records of conditions the plan does not have (another plan's, or a `--rules` subset's)
/// are left alone; a record of another plan name is refused.
fn check_records_fit(plan: &Plan, runs: &[RunSpec], records: &[Record]) -> Result<(), String> {
    let cond = |id: &str| -> String { id.split('|').filter(|p| !p.starts_with("h=")).collect::<Vec<_>>().join("|") };
    let mine: std::collections::HashMap<String, &str> = runs.iter().map(|r| (cond(&r.id), r.id.as_str())).collect();
    for r in records {
        if r.plan != plan.name {
            return Err(format!(
                "record {} was written by plan '{}', not '{}': give this plan its own --out",
                r.id, r.plan, plan.name
            ));
        }
        if let Some(want) = mine.get(&cond(&r.id)) {
            if *want != r.id {
                return Err(format!(
                    "record {} is for the run {want} with other settings (the plan, a preset or a \
                     tuned file changed since it was made): move the old records away or give the plan \
                     another --out",
                    r.id
                ));
            }
        }
    }
    Ok(())
}

/// Hold `file` (open for appending) as its one writer: an advisory lock on the file itself, so
/// that the tasks of an array, each with its own shard file, still write in parallel. Its
/// holder's pid goes to `FILE.pid` for the message a second writer gets.
fn lock_results(file: &Path) -> Result<std::fs::File, String> {
    let fh = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let pid_file = file.with_extension("jsonl.pid");
    if try_lock(&fh, file, false)? {
        let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
        return Ok(fh);
    }
    let pid = std::fs::read_to_string(&pid_file).map(|p| p.trim().to_string()).unwrap_or_else(|_| "?".into());
    Err(format!(
        "{} is being written by another biolearn (pid {pid}): one writer per results file \
         (wait for it, or give this run another --out or --shard)",
        file.display()
    ))
}

/// An advisory lock on `fh` (the file `path`), exclusive or shared: Ok(false) where another
/// process holds it.
fn try_lock(fh: &std::fs::File, path: &Path, shared: bool) -> Result<bool, String> {
    match if shared { fh.try_lock_shared() } else { fh.try_lock() } {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: cannot lock: {e}", path.display())),
    }
}

/// Hold the output directory for this sweep: an unsharded sweep alone (an exclusive lock on
/// `OUT/sweep.lock`), the tasks of an array together (shared), so that a plain `compare` and an
/// array's tasks do not run the same runs at once into two results files of one directory.
fn lock_sweep(out: &Path, sharded: bool) -> Result<std::fs::File, String> {
    let path = out.join("sweep.lock");
    let fh = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if try_lock(&fh, &path, sharded)? {
        return Ok(fh);
    }
    Err(format!(
        "{}: another biolearn sweep is writing to {} ({}): wait for it, or give this one another --out",
        path.display(),
        out.display(),
        if sharded { "an unsharded one" } else { "an array's tasks or another sweep" }
    ))
}

pub struct Summary {
    pub total: usize,
    pub skipped: usize,
    pub ran: usize,
    pub diverged: usize,
    pub file: PathBuf,
}

/// Run the plan's missing runs (of shard `shard` = (I, N) if given) into `out`.
pub fn run_plan(
    plan: &Plan,
    out: &Path,
    shard: Option<(usize, usize)>,
    parallel: usize,
    on: &mut dyn FnMut(SweepEvent),
) -> crate::Result<Summary> {
    run_plan_inner(plan, out, shard, parallel, on).map_err(crate::Error::Run)
}

fn run_plan_inner(
    plan: &Plan,
    out: &Path,
    shard: Option<(usize, usize)>,
    parallel: usize,
    on: &mut dyn FnMut(SweepEvent),
) -> Result<Summary, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let file = match shard {
        Some((i, n)) => out.join(format!("results.shard-{i}-of-{n}.jsonl")),
        None => out.join("results.jsonl"),
    };
    // The one writer of this file; then every record there checked (nothing is changed in a
    // file that is refused), then its last line mended.
    let mut fh = lock_results(&file)?;
    let _sweep = lock_sweep(out, shard.is_some())?;
    let all = plan.runs()?;
    let records = done_records(out)?;
    check_records_fit(plan, &all, &records)?;
    let dropped = repair(&file)?;
    if dropped > 0 {
        on(SweepEvent::Repaired { file: &file, dropped_bytes: dropped });
    }
    let mine: Vec<RunSpec> =
        all.into_iter().enumerate().filter(|(k, _)| shard.is_none_or(|(i, n)| k % n == i)).map(|(_, r)| r).collect();
    let done: HashSet<String> = records.into_iter().map(|r| r.id).collect();
    let ck_dir = out.join("checkpoints");
    std::fs::create_dir_all(&ck_dir).map_err(|e| format!("{}: {e}", ck_dir.display()))?;
    // A kill between a record's write and its checkpoint's removal, or during a checkpoint's
    // write, leaves files no run will continue from.
    clean_checkpoints(out, &mine, &done);
    let total = mine.len();
    let todo: Vec<RunSpec> = mine.into_iter().filter(|r| !done.contains(&r.id)).collect();
    let skipped = total - todo.len();
    let summary = |ran, diverged| Summary { total, skipped, ran, diverged, file: file.clone() };
    if todo.is_empty() {
        return Ok(summary(0, 0));
    }
    // The data set once per normalisation the runs ask for (a rule's preset may turn it off:
    // SoftHebb learns on raw pixels).
    // (And once more for a VAE, whose targets are its pixels.)
    let mut loaded: Vec<((bool, bool, usize), Loaded)> = Vec::new();
    for spec in &todo {
        let key = spec.cfg.data_key();
        if !loaded.iter().any(|(n, _)| *n == key) {
            loaded.push((key, train::load_data(&spec.cfg).map_err(|e| e.to_string())?));
        }
    }
    // Token sequences and autoencoders: noise, attacks and k-per-class sets act on pixels and
    // classes.
    let what = if loaded.iter().any(|(_, l)| l.ds.alphabet.is_some()) {
        Some("the text data set {} (its inputs are token ids, its samples sequences)")
    } else if loaded.iter().any(|((_, vae, _), _)| *vae) {
        Some("a VAE on {} (its targets are its input's pixels, not classes)")
    } else {
        None
    };
    if let Some(what) = what {
        let pixel = [
            ("noise", !plan.noise.iter().all(|&v| v == 0.0)),
            ("salt_pepper", !plan.salt_pepper.is_empty()),
            ("fgsm", !plan.fgsm.is_empty()),
            ("pgd", !plan.pgd.is_empty()),
            ("square", !plan.square.is_empty()),
            ("shots", !plan.shots.is_empty()),
        ];
        if let Some((key, _)) = pixel.iter().find(|(_, on)| *on) {
            return Err(format!(
                "plan {}: `{key}` does not apply to {}: leave it out",
                plan.name,
                what.replace("{}", &plan.data)
            ));
        }
    }

    let t0 = Instant::now();
    let (mut ran, mut diverged) = (0usize, 0usize);
    let work = |k: usize| {
        let key = todo[k].cfg.data_key();
        let data = &loaded.iter().find(|(n, _)| *n == key).expect("loaded above").1;
        run_one(plan, &todo[k], data, Some(&checkpoint_path(out, &todo[k].id)))
    };
    in_parallel(todo.len(), parallel, work, |rec| {
        append_line(&mut fh, &file, &rec)?;
        // The record is on disk: its run's checkpoint is no longer needed.
        let _ = std::fs::remove_file(checkpoint_path(out, &rec.id));
        ran += 1;
        diverged += (rec.status == Status::Diverged) as usize;
        let elapsed = t0.elapsed().as_secs_f64();
        let eta = elapsed / ran as f64 * (todo.len() - ran) as f64;
        on(SweepEvent::Recorded { done: skipped + ran, total, record: &rec, elapsed, eta });
        Ok(())
    })?;
    Ok(summary(ran, diverged))
}

/// `work(i)` for every i in 0..n on `workers` threads; each result goes to `on` on this thread
/// as it comes. The first error (of `work` or `on`) stops the handing out of work; what runs
/// finishes and still reaches `on`; then that error is returned. Used by sweeps and searches.
pub(crate) fn in_parallel<R: Send>(
    n: usize,
    workers: usize,
    work: impl Fn(usize) -> Result<R, String> + Sync,
    mut on: impl FnMut(R) -> Result<(), String>,
) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Result<R, String>>();
    let mut first_err = None;
    std::thread::scope(|sc| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            let (tx, next, work) = (tx.clone(), &next, &work);
            sc.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n || tx.send(work(i)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for r in rx {
            // After the first failure nothing more is handed on (a failed append must not be
            // followed by another after its torn bytes); the runs in flight are drained.
            if first_err.is_some() {
                continue;
            }
            if let Err(e) = r.and_then(&mut on) {
                next.store(usize::MAX / 2, Ordering::SeqCst);
                first_err = Some(e);
            }
        }
    });
    first_err.map_or(Ok(()), Err)
}

/// Append `value` as one JSON line to `fh` (the file `path`) and sync it to disk. A write that
/// fails part-way (a full disk) is cut back to the file's length before it, so no torn line is
/// left in the middle of the file for a later append to follow.
pub(crate) fn append_line(fh: &mut std::fs::File, path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let line = serde_json::to_string(value).map_err(|e| e.to_string())? + "\n";
    let before = fh.metadata().map(|m| m.len()).map_err(|e| format!("{}: {e}", path.display()))?;
    fh.write_all(line.as_bytes()).and_then(|_| fh.sync_data()).map_err(|e| {
        let _ = fh.set_len(before);
        format!("{}: {e}", path.display())
    })
}

/// Remove the checkpoints of `mine`'s recorded runs and every half-written checkpoint of
/// `mine` (only this shard's runs: another shard may be writing its own checkpoints here).
fn clean_checkpoints(out: &Path, mine: &[RunSpec], done: &HashSet<String>) {
    for r in mine {
        let ck = checkpoint_path(out, &r.id);
        let _ = std::fs::remove_file(crate::safetensors::tmp_path(&ck));
        if done.contains(&r.id) {
            let _ = std::fs::remove_file(ck);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the first failure (an append that failed) no further result is handed on, and the
    /// failure is what the sweep returns.
    #[test]
    fn nothing_is_handed_on_after_the_first_failure() {
        let mut calls = 0;
        let r = in_parallel(
            6,
            2,
            |i| Ok(i),
            |_| {
                calls += 1;
                Err("disk full".to_string())
            },
        );
        assert_eq!((r, calls), (Err("disk full".to_string()), 1));
    }

    /// A write that fails part-way leaves the file as it was (here /dev/full refuses it).
    #[test]
    fn a_failed_append_reports_the_file() {
        let Ok(mut fh) = std::fs::OpenOptions::new().append(true).open("/dev/full") else { return };
        let e = append_line(&mut fh, Path::new("/dev/full"), &"x".repeat(100)).unwrap_err();
        assert!(e.starts_with("/dev/full: "), "{e}");
    }

    #[test]
    fn epochs_to_stable_definition() {
        // Final 0.90; within 0.005 from epoch 3 on (0.897, 0.903, 0.90), epoch 2 is 0.89 (off by 0.01).
        assert_eq!(epochs_to_stable(&[0.5, 0.89, 0.897, 0.903, 0.90], 0.005), Some(3));
        assert_eq!(epochs_to_stable(&[0.9], 0.005), Some(1));
        assert_eq!(epochs_to_stable(&[0.5, 0.6], 0.005), Some(2));
        assert_eq!(epochs_to_stable(&[], 0.005), None);
        // Exactly half a point from the final value is within the band, whatever the rounding
        // of the difference (0.8922 - 0.8872 is 0.0050000000000000044 in f64).
        assert_eq!(epochs_to_stable(&[0.5, 0.8872, 0.8922], STABLE_TOL), Some(2));
        assert_eq!(epochs_to_stable(&[0.5, 0.8871, 0.8922], STABLE_TOL), Some(3));
    }

    #[test]
    fn repair_cuts_only_a_torn_tail() {
        let d = std::env::temp_dir().join(format!("biolearn-repair-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("results.jsonl");
        std::fs::write(&f, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c").unwrap();
        assert_eq!(repair(&f).unwrap(), 8); // {"id":"c
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
        // (Those lines are not records: `done_ids` refuses them, tests/compare.rs checks it.)
        assert!(done_ids(&d).unwrap_err().contains("results.jsonl:1: not a result record"));
        assert_eq!(repair(&f).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&f).unwrap().len(), 22);
        std::fs::remove_dir_all(&d).ok();
    }

    /// A search's candidates: lr as values or factors; a rule's per-layer list scaled entry by
    /// entry (its first entry the value reported); a key that is not a number refused.
    #[test]
    fn rate_candidates_scale_lr_and_a_rules_own_rate() {
        let cfg = crate::config::TrainConfig { lr: 0.1, ..Default::default() };
        let c = rate_candidates(&cfg, "lr", &[0.5, 2.0], true).unwrap();
        assert_eq!((c[0].cfg.lr, c[1].cfg.lr), (0.05, 0.2));
        assert_eq!(rate_candidates(&cfg, "lr", &[0.3], false).unwrap()[0].cfg.lr, 0.3);
        let mut t = toml::Table::new();
        t.insert("rule".into(), toml::Value::String("softhebb-deep".into()));
        let deep = crate::config::TrainConfig::from_table(t).unwrap();
        let before: Vec<f64> =
            deep.settings["hebb_lr"].as_array().unwrap().iter().map(|x| x.as_float().unwrap()).collect();
        assert!(before.len() > 1);
        let c = rate_candidates(&deep, "hebb_lr", &[0.5], true).unwrap();
        let after: Vec<f64> =
            c[0].cfg.settings["hebb_lr"].as_array().unwrap().iter().map(|x| x.as_float().unwrap()).collect();
        assert_eq!(after, before.iter().map(|x| x * 0.5).collect::<Vec<_>>());
        assert_eq!(c[0].value, before[0] * 0.5);
        assert!(rate_candidates(&cfg, "no_such_setting", &[1.0], true).is_err());
        assert!(rate_candidates(&cfg, "lr", &[], true).is_err());
        assert!(rate_candidates(&cfg, "lr", &[-1.0], true).is_err());
    }
}
