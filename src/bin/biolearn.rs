//! The biolearn command line: a thin layer over the library (parse, call, print).

use anyhow::{bail, Context, Result};
use biolearn::config::TrainConfig;
use biolearn::data;
use biolearn::data::noise::NoiseKind;
use biolearn::nn::{Activation, Init, Loss};
use biolearn::optim::{OptimizerKind, ScheduleKind};
use biolearn::protocol::plan::{parse_shard, Plan, PruneMode};
use biolearn::protocol::{self, run_plan, SweepEvent};
use biolearn::rules::RuleName;
use biolearn::train::{self, Progress};

/// Counted, so that `biolearn bench` reports the heap a training step holds.
#[global_allocator]
static ALLOC: biolearn::memory::Counting = biolearn::memory::Counting;
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "biolearn",
    version,
    about = "Train networks with backprop and bio-plausible learning rules; compare them fairly"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// One training run (the default command): writes OUT/result.json.
    Train(TrainArgs),
    /// Every learning rule, with a one-line description and its paper; with a NAME, that rule's
    /// settings, their defaults and what they mean.
    Rules { name: Option<String> },
    /// Data set tools.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Training throughput (samples/s of a full epoch) per rule, architecture and thread count.
    Bench(BenchArgs),
    /// Run a comparison grid (rules x data fraction x epochs x sparsity x noise x seeds) into
    /// OUT/results.jsonl; re-running skips finished runs.
    Compare(CompareArgs),
    /// Tables (Markdown, HTML) and plots (PNG, SVG) from DIR's result files, into DIR/report/.
    Report {
        dir: PathBuf,
        /// Where the report goes (default DIR/report).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the Markdown report to this file, its plot links made relative to it
        /// (e.g. RESULTS.md at the top of a repository).
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// A directory of online, continual, few-shot episode or interference results (the JSON
        /// of `biolearn online|continual|episodes --json`, `biolearn interference --out`) to
        /// report after the plan's records, each arm against BP's; repeatable.
        #[arg(long)]
        conditions: Vec<PathBuf>,
        /// Another plan's results directory to report with DIR's records (repeatable): its runs
        /// form sections of their own, and a gradual-pruning plan's runs (e.g.
        /// plans/holistic-all-gradual.toml) also add to DIR's scoreboard what gradual pruning cost
        /// each rule against its unpruned run of the same network and seed.
        #[arg(long = "with", value_name = "DIR")]
        with: Vec<PathBuf>,
    },
    /// Write an sbatch script that runs a plan as a Slurm job array.
    Slurm(SlurmArgs),
    /// Evaluate a saved model (`train --save`) or a run's checkpoint: test accuracy, and under
    /// noise or pruning if asked.
    Eval(EvalArgs),
    /// Sample text from a language model trained on a text data set (`--arch gpt:...`,
    /// `train --save`): the prompt, then --tokens tokens drawn one by one.
    Sample(SampleArgs),
    /// Hyperparameter search on a validation split carved from the training set (never the
    /// test set), the same budget for every rule: OUT/trials.jsonl, OUT/preset.toml (with its
    /// provenance), OUT/trials.png. Rerun to resume.
    Tune(TuneArgs),
    /// Few-shot online learning: episodes of WAYS classes x SHOTS examples seen once each (batch
    /// 1 unless --batch), from a fresh network each; the query accuracy's mean and 95% interval.
    Episodes(EpisodesArgs),
    /// Continual learning: a task sequence (split:5 = 5 tasks of 2 classes, or permuted:5)
    /// learned one task after another; every task's accuracy after each, class- and
    /// task-incremental; average accuracy, forgetting and backward transfer over seeds
    Continual(ContinualArgs),
    /// Online learning: one pass over a stream of training samples (batch 1 unless
    /// --stream-batch), no epochs; held-out accuracy against samples seen (a curve), its mean,
    /// the final and the prequential accuracy over seeds; the rate chosen among --lrs on a
    /// validation split
    Online(OnlineArgs),
    /// Interference (prospective configuration's demonstration): the 1-1-2 example (learning
    /// one output's target, how far the other output moves) and the target alignment of one
    /// step against depth on linear MLPs, for each rule; OUT/interference.json and plots
    Interference(InterferenceArgs),
    /// Meta-train a rule's numeric settings (meta-plasticity's coefficients) by evolution
    /// strategies over few-shot online episodes; writes OUT/steps.jsonl and OUT/theta.toml (a
    /// config file: `--config OUT/theta.toml`).
    MetaTrain(MetaTrainArgs),
}

/// What an episode is (shared by `episodes` and `meta-train`).
#[derive(Args)]
struct EpisodeFlags {
    /// The classes episodes draw from: `5-9` or `5,6,7,8,9`.
    #[arg(long)]
    classes: String,
    #[arg(long, default_value_t = 5)]
    ways: usize,
    #[arg(long, default_value_t = 50)]
    shots: usize,
    #[arg(long, default_value_t = 20)]
    queries: usize,
    /// Passes over an episode's stream (1: online).
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// Which split episodes draw from: train or test.
    #[arg(long, default_value = "test")]
    split: String,
}

#[derive(Args)]
struct EpisodesArgs {
    #[command(flatten)]
    given: Given,
    #[command(flatten)]
    ep: EpisodeFlags,
    /// Episodes (each its own draw and initialisation, from --episode-seed on).
    #[arg(long, default_value_t = 50)]
    episodes: usize,
    #[arg(long, default_value_t = 0)]
    episode_seed: u64,
    /// Write the summary (every episode's accuracy too) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ContinualArgs {
    #[command(flatten)]
    given: Given,
    /// The task sequence: split:T (the classes cut into T tasks) or permuted:T.
    #[arg(long, default_value = "split:5")]
    tasks: String,
    /// Training epochs per task (the schedule restarts per task).
    #[arg(long, default_value_t = 5)]
    epochs_per_task: usize,
    /// Seeds 0..N (each its own initialisation and permutations).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    #[command(flatten)]
    search: RateSearch,
    /// Write every seed's accuracy matrices and the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct OnlineArgs {
    #[command(flatten)]
    given: Given,
    /// Stream length in samples (default: the whole training set).
    #[arg(long)]
    samples: Option<usize>,
    /// Samples per step (overrides the configuration's and preset's batch).
    #[arg(long, default_value_t = 1)]
    stream_batch: usize,
    /// Seeds 0..N (each its own initialisation and stream order).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    #[command(flatten)]
    search: RateSearch,
    /// Evaluate on the first N test samples (default: all).
    #[arg(long)]
    eval_samples: Option<usize>,
    /// Write the search, every seed's curve and the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The rate chosen for a condition on a validation split (online, continual).
#[derive(Args)]
struct RateSearch {
    /// The setting searched: lr, or a rule's own rate (a number or a per-layer list, such as
    /// Activation Learning's hebb_lr, whose read-out has no lr in its label mode).
    #[arg(long, default_value = "lr")]
    search_key: String,
    /// Candidate values, comma-separated: each learns once on the training set less a
    /// validation split (--search-val-fraction) and the best on that split is used for the seeds
    /// (default: the configured value, unsearched).
    #[arg(long, alias = "lrs", conflicts_with = "search_factors")]
    search_values: Option<String>,
    /// The candidates as factors of the configured value, comma-separated (the same grid for
    /// every rule, each around its own rate; a list setting scaled entry by entry):
    /// `--search-factors 0.01,0.03,0.1,0.3,1`.
    #[arg(long, alias = "lr-factors")]
    search_factors: Option<String>,
    #[arg(long, default_value_t = 0.1)]
    search_val_fraction: f32,
}

impl RateSearch {
    /// The candidates (empty: no search).
    fn candidates(&self, cfg: &TrainConfig) -> Result<Vec<biolearn::protocol::Candidate>> {
        let numbers = |flag: &str, l: &str| {
            l.split(',')
                .map(|v| match v.trim().parse::<f64>() {
                    Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
                    _ => Err(anyhow::anyhow!("{flag}: '{v}' is not a positive number")),
                })
                .collect::<Result<Vec<_>>>()
        };
        let (values, relative) = match (&self.search_values, &self.search_factors) {
            (Some(l), _) => (numbers("--search-values", l)?, false),
            (None, Some(f)) => (numbers("--search-factors", f)?, true),
            (None, None) => return Ok(Vec::new()),
        };
        biolearn::protocol::rate_candidates(cfg, &self.search_key, &values, relative).map_err(anyhow::Error::msg)
    }

    /// Print the trials and the choice.
    fn report(&self, trials: &[biolearn::protocol::Trial], best: usize, what: &str) {
        let key = &self.search_key;
        for t in trials {
            eprintln!(
                "search: {key} {:<12} {what} {:.2}%{}",
                t.value,
                100.0 * t.score,
                if t.diverged { " (diverged)" } else { "" }
            );
        }
        let v = trials[best].value;
        let edge = trials.len() > 1 && (trials.iter().all(|t| t.value >= v) || trials.iter().all(|t| t.value <= v));
        eprintln!(
            "search: {key} {} chosen on the validation split{}",
            trials[best].value,
            if edge { " (at the grid's edge: the best value may lie outside it)" } else { "" }
        );
    }

    /// Run the search (`search` scores the candidates) when one is asked for: `cfg` becomes the
    /// chosen candidate's; the search's JSON either way (no trials when none ran).
    fn choose(
        &self,
        cfg: &mut TrainConfig,
        what: &str,
        search: impl FnOnce(
            &[biolearn::protocol::Candidate],
        ) -> std::result::Result<(usize, Vec<biolearn::protocol::Trial>), String>,
    ) -> Result<serde_json::Value> {
        let cands = self.candidates(cfg)?;
        if cands.is_empty() {
            return Ok(self.json(&[], None));
        }
        let (best, trials) = search(&cands).map_err(anyhow::Error::msg)?;
        self.report(&trials, best, what);
        *cfg = cands[best].cfg.clone();
        Ok(self.json(&trials, Some(best)))
    }

    fn json(&self, trials: &[biolearn::protocol::Trial], best: Option<usize>) -> serde_json::Value {
        serde_json::json!({ "key": self.search_key, "values": self.search_values, "factors": self.search_factors,
            "val_fraction": self.search_val_fraction, "trials": trials, "chosen": best.map(|b| trials[b].value) })
    }
}

#[derive(Args)]
struct InterferenceArgs {
    /// The rules, comma-separated, each RULE or RULE:PRESET (pc:equilibrium is prospective
    /// configuration).
    #[arg(long, default_value = "bp,pc:equilibrium,pc,ipc,fa,dfa,dtp,pal")]
    rules: String,
    /// Steps of the 1-1-2 example.
    #[arg(long, default_value_t = 64)]
    iterations: usize,
    /// Depths (weight layers) of the target-alignment networks.
    #[arg(long, default_value = "1,2,4,6,8,10,12,14,15")]
    depths: String,
    /// Units per layer of the target-alignment networks (inputs and outputs too).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Seeds per depth.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// Output directory: interference.json, example_112.{png,svg}, target_alignment.{png,svg}.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct MetaTrainArgs {
    #[command(flatten)]
    given: Given,
    #[command(flatten)]
    ep: EpisodeFlags,
    /// The settings learned, comma-separated (their start: the configuration's values); `log:KEY`
    /// learns KEY on a log scale (sigma and the step then in natural-log units); `KEY[i]` one entry
    /// of a list setting, `KEY[A..B]` its entries A to B - 1 (tdca's `tdca_phi[0..752]`).
    #[arg(long, default_value = "mp_pseudo_grad,mp_error_corr,mp_oja")]
    keys: String,
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Antithetic pairs per iteration.
    #[arg(long, default_value_t = 8)]
    pairs: usize,
    /// Perturbation size (the settings' units).
    #[arg(long, default_value_t = 0.01)]
    sigma: f64,
    /// Adam's step size on the settings.
    #[arg(long, default_value_t = 0.005)]
    es_lr: f64,
    #[arg(long, default_value_t = 0)]
    es_seed: u64,
    #[arg(long)]
    out: PathBuf,
}

/// The settings of a run as given: a config file, the flags over it, `--set` over those.
#[derive(Args, Default)]
struct Given {
    /// TOML file with any of these settings (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: TrainFlags,
    /// Any setting, shared or the rule's own (`biolearn rules NAME` lists them), KEY=VALUE (TOML
    /// syntax; bare words are strings), repeatable: `--set pc_steps=20 --set pc_energy=ce`.
    /// Applied after the other flags.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
struct TuneArgs {
    #[command(flatten)]
    given: Given,
    /// The space: KEY=lin|log|int:LO:HI, comma-separated (default: lr log-uniform over the
    /// optimiser's range and weight_decay log-uniform 1e-6..1e-2, the same for every rule).
    #[arg(long)]
    space: Option<String>,
    /// Trials (the budget: give every rule compared the same; default 24). `--epochs` is each
    /// trial's (default 3), `--val-fraction` the share of every class held out (default 0.1).
    #[arg(long)]
    trials: Option<usize>,
    /// Share of the training set (after the validation split) each trial trains on (default 0.2).
    #[arg(long)]
    subset: Option<f64>,
    /// Seed of the split, the subset and the draws (default 0).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    tune_seed: Option<u64>,
    /// Search every rule and arm of a comparison plan (each on its own network) with the plan's
    /// `[tune]` budget, into OUT/ENTRY/, and write OUT/tuned.toml for the plan's `tuned` key.
    /// The plan gives every setting: no other setting flag goes with it.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// With --plan: search only the I-th of N disjoint slices of the plan's entries (read from
    /// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT under an array job); OUT/tuned.toml is
    /// written by the run that finds every entry's search complete.
    #[arg(long)]
    shard: Option<String>,
    /// Trials at once (default: cores / threads per trial).
    #[arg(long, value_parser = count_1_to_1024)]
    parallel: Option<usize>,
    /// Output directory (default runs/tune-<data>-<rule>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// A run directory (its model.safetensors, else checkpoint.safetensors) or a model file.
    model: PathBuf,
    /// Evaluate on another data set of the same shape (default: the one it was trained on).
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    data_dir: Option<String>,
    /// Gaussian noise std on the test inputs (pixel units), comma-separated levels; the i-th
    /// level draws as a plan's i-th noise condition does (give the plan's `noise` list, 0
    /// included, in its order, with the run's --seed, to repeat its figures).
    #[arg(long, value_delimiter = ',')]
    noise: Vec<f64>,
    /// Global magnitude pruning to these sparsities (share of weights zeroed), comma-separated.
    #[arg(long, value_delimiter = ',')]
    sparsity: Vec<f64>,
    /// FGSM eps (pixel units, L-inf), comma-separated: white-box through the model's input
    /// gradient (or, with --attack-from, through the source model's: a transfer attack).
    #[arg(long, value_delimiter = ',')]
    fgsm: Vec<f64>,
    /// PGD eps, comma-separated (--pgd-steps steps from a random start).
    #[arg(long, value_delimiter = ',')]
    pgd: Vec<f64>,
    #[arg(long, default_value_t = 10)]
    pgd_steps: usize,
    /// The loss FGSM/PGD ascend: ce (as published) or margin (max_{k != y} z_k - z_y, whose
    /// gradient survives a saturated softmax).
    #[arg(long, value_enum, default_value_t = biolearn::nn::AttackLoss::Ce)]
    attack_loss: biolearn::nn::AttackLoss,
    /// Square attack eps, comma-separated: black-box, from the model's scores alone (every rule).
    #[arg(long, value_delimiter = ',')]
    square: Vec<f64>,
    #[arg(long, default_value_t = 1000)]
    square_queries: usize,
    /// Test samples attacked (the first ones; 0: all).
    #[arg(long, default_value_t = 1000)]
    attack_samples: usize,
    /// Craft the FGSM/PGD examples on this other saved model (trained on the same data set) and
    /// test MODEL on them: a transfer attack, which needs no gradient of MODEL.
    #[arg(long)]
    attack_from: Option<PathBuf>,
    /// With --sparsity: for each sparsity, each weight tensor's kept share under the global
    /// mask and the accuracy with only that tensor pruned (which layer's pruning costs the
    /// accuracy).
    #[arg(long)]
    per_layer: bool,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads (default: the run's).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct SampleArgs {
    /// A run directory (its model.safetensors, else checkpoint.safetensors) or a model file.
    model: PathBuf,
    /// The text to continue (its bytes must be in the corpus's alphabet).
    #[arg(long, default_value = "A")]
    prompt: String,
    /// Tokens (bytes) to generate.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Softmax temperature; 0 takes the most likely token every time.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct CompareArgs {
    /// The plan (TOML; see plans/).
    plan: PathBuf,
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    data_dir: Option<String>,
    #[arg(long)]
    arch: Option<String>,
    /// Comma-separated rules, or `all`.
    #[arg(long, value_delimiter = ',')]
    rules: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    fractions: Option<Vec<f64>>,
    /// Epoch budgets.
    #[arg(long, value_delimiter = ',')]
    epochs: Option<Vec<usize>>,
    #[arg(long, value_delimiter = ',')]
    sparsities: Option<Vec<f64>>,
    /// Gaussian noise std on test inputs (pixel units).
    #[arg(long, value_delimiter = ',')]
    noise: Option<Vec<f64>>,
    /// Number of seeds.
    #[arg(long)]
    seeds: Option<u64>,
    /// Output directory (default runs/<plan name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only the I-th of N disjoint slices of the grid (read from SLURM_ARRAY_TASK_ID /
    /// SLURM_ARRAY_TASK_COUNT under an array job).
    #[arg(long)]
    shard: Option<String>,
    /// Runs at once (default: cores / threads_per_run).
    #[arg(long, value_parser = count_1_to_1024)]
    parallel: Option<usize>,
    /// Print the plan's expected run time (each rule timed briefly on the plan's data and
    /// network) and exit without running it.
    #[arg(long)]
    estimate: bool,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct SlurmArgs {
    plan: PathBuf,
    /// Array tasks (shards).
    #[arg(long)]
    tasks: usize,
    /// Where the shards write their results (default runs/<plan name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The sbatch script to write (default OUT/slurm-array.sbatch).
    #[arg(long)]
    script: Option<PathBuf>,
    /// CPUs per task (default: the plan's threads_per_run x parallel runs per task = 1 run).
    #[arg(long)]
    cpus_per_task: Option<usize>,
    /// Time limit per task (sbatch --time).
    #[arg(long, default_value = "04:00:00")]
    time: String,
    #[arg(long)]
    partition: Option<String>,
    /// The biolearn binary the tasks run (default: this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The array runs the plan's search (`tune --plan`, one entry per task slice) instead of
    /// its grid; OUT defaults to runs/tune-<plan name>.
    #[arg(long)]
    tune: bool,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Sizes, shapes, class counts and checksum of a data set.
    Info {
        /// digits, fashion-mnist, mnist, cifar10, cifar100, stl10
        name: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Every flag is optional: unset flags come from --config, then from the rule's preset, then
/// from the defaults.
#[derive(Args, Default)]
struct TrainArgs {
    #[command(flatten)]
    given: Given,
    /// Output directory (default runs/<data>-<rule>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the trained weights as OUT/model.safetensors.
    #[arg(long)]
    save: bool,
    /// Continue the run in DIR from its checkpoint (DIR/checkpoint.safetensors, written after
    /// every epoch): the records come out as an uninterrupted run's. Takes no other settings.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Start from the weights of a saved model or checkpoint (a run directory or file) with the
    /// same network, instead of the initialisation.
    #[arg(long, value_name = "MODEL")]
    init_from: Option<PathBuf>,
    /// Train at most N epochs in this process, then stop (continue with --resume OUT).
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
    /// Do not write OUT/checkpoint.safetensors after every epoch.
    #[arg(long)]
    no_checkpoint: bool,
    /// No progress output, only the final line.
    #[arg(long, short)]
    quiet: bool,
}

/// The shared training settings as flags, serialised as they are into the configuration's
/// overrides (the names are `TrainConfig`'s fields).
#[derive(Args, Default, serde::Serialize)]
struct TrainFlags {
    /// Data set: digits (default, embedded), fashion-mnist, mnist, cifar10, cifar100, stl10.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// Directory of the data set's files.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<String>,
    /// Learning rule (see `biolearn rules`); default bp.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<RuleName>,
    /// A named preset of the rule (`biolearn rules RULE` lists them), over its default preset.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<String>,
    /// Network: mlp:1024, mlp:800,800, mlp:800/bn/dropout=0.2, lenet, conv3, rnn:128, gru:128 (recurrent over the image rows).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// Hidden-layer nonlinearity (default relu).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    activation: Option<Activation>,
    /// Loss on the output (default ce).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    loss: Option<Loss>,
    /// Weight initialisation (default torch: U(+-1/sqrt(fan_in)), PyTorch's default).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<Init>,
    /// Training epochs (default 20).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<usize>,
    /// Mini-batch size (default 128).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<usize>,
    /// Optimiser (default sgd).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    optimizer: Option<OptimizerKind>,
    /// Learning rate (default 0.05).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr: Option<f32>,
    /// SGD momentum (default 0.9).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    momentum: Option<f32>,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    nesterov: bool,
    /// Weight decay: L2 for sgd/adam, decoupled for adamw (default 0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f32>,
    /// Learning-rate schedule over the epochs (default cosine).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleKind>,
    /// Decay factor of the step/multistep schedules.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gamma: Option<f32>,
    /// Epochs between decays of the step schedule.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    step_size: Option<usize>,
    /// Comma-separated epochs of the multistep schedule.
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    milestones: Option<Vec<usize>>,
    /// Seed of the run's one RNG (default 0; at most 2^63 - 1, TOML's integer range).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Threads (default: all cores; 1 to 1024). Same seed and threads give the same results.
    #[arg(long, value_parser = count_1_to_1024)]
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    /// Share of the training set held out for validation.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    val_fraction: Option<f32>,
    /// Compute-in-memory hardware to train and run on: ideal (default), int8, int4-adc5-var,
    /// neurosim, or a TOML file of non-idealities (`nn::hardware::HardwareConfig`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    hardware: Option<String>,
}

#[derive(Args)]
struct BenchArgs {
    /// Data set (default: fashion-mnist if installed, else digits).
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Comma-separated rules.
    #[arg(long, value_delimiter = ',', default_value = "bp,fa")]
    rules: Vec<String>,
    /// Comma-separated architectures (use ';' between them if a spec has commas).
    #[arg(long, value_delimiter = ';', default_value = "mlp:1024")]
    archs: Vec<String>,
    /// Comma-separated thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 20)]
    warmup_steps: usize,
    /// Any setting, KEY=VALUE, as `train --set` (a rule's own settings reach that rule only):
    /// `--set pc_steps=20`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Write the rows as JSON lines here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The kernel suite instead of epochs: the machine's measured FMA and bandwidth peaks, every
    /// layer of each network forward and backward, a BP step's matrix products, and each rule's
    /// step against its products alone, with GFLOP/s or GB/s and the share of the peak.
    #[arg(long)]
    kernels: bool,
    /// With --kernels: one call of each (checks the suite runs; not a measurement).
    #[arg(long, requires = "kernels")]
    quick: bool,
}

fn main() {
    // A closed pipe (`biolearn rules | head`) ends the process quietly, as it does other Unix
    // tools, instead of a panic in println!.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let res = match cli.cmd {
        None => cmd_train(TrainArgs::default()),
        Some(Cmd::Train(a)) => cmd_train(a),
        Some(Cmd::Rules { name }) => cmd_rules(name.as_deref()),
        Some(Cmd::Data { cmd: DataCmd::Info { name, data_dir } }) => cmd_data_info(&name, data_dir),
        Some(Cmd::Bench(a)) => cmd_bench(a),
        Some(Cmd::Compare(a)) => cmd_compare(a),
        Some(Cmd::Report { dir, out, markdown, conditions, with }) => {
            cmd_report(&dir, out, markdown, &conditions, &with)
        }
        Some(Cmd::Slurm(a)) => cmd_slurm(a),
        Some(Cmd::Eval(a)) => cmd_eval(a),
        Some(Cmd::Sample(a)) => cmd_sample(a),
        Some(Cmd::Tune(a)) => cmd_tune(a),
        Some(Cmd::Episodes(a)) => cmd_episodes(a),
        Some(Cmd::MetaTrain(a)) => cmd_meta_train(a),
        Some(Cmd::Continual(a)) => cmd_continual(a),
        Some(Cmd::Online(a)) => cmd_online(a),
        Some(Cmd::Interference(a)) => cmd_interference(a),
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The flags given, then each `--set KEY=VALUE`, as a configuration's overrides.
/// A thread or parallel-run count: 1 to 1024 (more is a typo, not a machine).
fn count_1_to_1024(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a count from 1 to 1024")),
    }
}

fn overrides(g: &Given) -> Result<toml::Table> {
    let mut t = toml::Table::try_from(&g.flags).context("flags")?;
    for kv in &g.set {
        let Some((k, v)) = kv.split_once('=') else { bail!("--set {kv}: expected KEY=VALUE") };
        let v = v.trim();
        let value = format!("x = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("x"))
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        t.insert(k.trim().to_string(), value);
    }
    Ok(t)
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let given = overrides(&a.given)?;
    let (cfg, out) = match &a.resume {
        Some(dir) => {
            if !given.is_empty() || a.given.config.is_some() || a.init_from.is_some() {
                bail!("--resume continues {} as it was configured: give no other settings", dir.display());
            }
            if a.out.as_ref().is_some_and(|o| o != dir) {
                bail!("--resume writes into the run's own directory {}; --out must be that or absent", dir.display());
            }
            let ck = dir.join("checkpoint.safetensors");
            (train::saved_config(&ck).map_err(anyhow::Error::msg)?, dir.clone())
        }
        None => {
            let cfg = TrainConfig::load(a.given.config.as_deref(), given).map_err(anyhow::Error::msg)?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{}-seed{}", cfg.data, cfg.rule, cfg.seed)));
            (cfg, out)
        }
    };
    if a.stop_after == Some(0) {
        bail!("--stop-after must be at least 1");
    }
    let cores = biolearn::config::default_threads();
    if cfg.threads > cores && !a.quiet {
        eprintln!(
            "warning: {} threads on {cores} cores: slower than {cores}; the results are those of {} threads \
             (the same seed and thread count give the same results)",
            cfg.threads, cfg.threads
        );
    }
    let opts = train::RunOptions {
        checkpoint: (!a.no_checkpoint).then(|| out.join("checkpoint.safetensors")),
        resume: a.resume.as_ref().map(|d| d.join("checkpoint.safetensors")),
        init_from: a.init_from.as_deref().map(train::model_file).transpose().map_err(anyhow::Error::msg)?,
        stop_after: a.stop_after,
    };
    if opts.stop_after.is_some() && opts.checkpoint.is_none() {
        bail!("--stop-after needs the checkpoint to continue from (drop --no-checkpoint)");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create output directory {}", out.display()))?;
    let tty = std::io::stderr().is_terminal() && !a.quiet;
    if !a.quiet {
        eprintln!(
            "biolearn {}: {} on {} ({}, {}), {} epochs, batch {}, {:?} lr {}, {} thread(s), seed {}",
            train::VERSION,
            cfg.rule,
            cfg.data,
            cfg.arch,
            cfg.activation.as_str(),
            cfg.epochs,
            cfg.batch,
            cfg.optimizer,
            cfg.lr,
            cfg.threads,
            cfg.seed
        );
    }
    let quiet = a.quiet;
    let mut progress = |p: Progress| match p {
        Progress::Batch { epoch, epochs, done, total } if tty && (done % 8 == 0 || done == total) => {
            let w = 30;
            let f = done * w / total;
            eprint!("\repoch {epoch:>3}/{epochs} [{}{}] {done}/{total}", "#".repeat(f), ".".repeat(w - f));
            let _ = std::io::stderr().flush();
        }
        Progress::Epoch { record: r, epochs } if !quiet => {
            if tty {
                eprint!("\r\x1b[2K");
            }
            let mut val = r.val_accuracy.map_or(String::new(), |v| format!(" val_acc {:.4}", v));
            if let Some(p) = r.test_perplexity() {
                val += &format!(" test_ppl {p:.3}");
            }
            if let Some(l) = r.val_loss {
                val += &format!(" val_ppl {:.3}", l.exp());
            }
            if let (Some(e), Some(rc)) = (r.test_elbo, r.test_recon) {
                val += &format!(" test_neg_elbo {e:.2} test_recon {rc:.2}");
            }
            if let Some(e) = r.val_elbo {
                val += &format!(" val_neg_elbo {e:.2}");
            }
            let angles: Vec<String> = r.feedback_angles.iter().map(|(_, a)| format!("{a:.1}")).collect();
            let angles =
                if angles.is_empty() { String::new() } else { format!(" feedback_angles {}", angles.join("/")) };
            eprintln!(
                "epoch {:>3}/{epochs} lr {:.5} train_loss {:.4} train_acc {:.4} test_acc {:.4}{val}{angles} ({:.1}s)",
                r.epoch, r.lr, r.train_loss, r.train_accuracy, r.test_accuracy, r.seconds
            );
        }
        _ => {}
    };
    let (result, mut trainer) = train::run(&cfg, &opts, &mut progress).map_err(anyhow::Error::msg)?;
    let path = out.join("result.json");
    if trainer.net.has_latent() && result.diverged.is_none() {
        // A VAE's pictures: test images and their reconstructions, samples from the prior.
        let l = train::load_data(&cfg).map_err(anyhow::Error::msg)?;
        let shape = (l.ds.channels, l.ds.height, l.ds.width);
        let files = biolearn::protocol::vae::save_grids(&mut trainer.net, &l.ds.test, shape, &out, "vae", cfg.seed)
            .map_err(anyhow::Error::msg)?;
        if let Some(e) = result.epochs.last().and_then(|r| r.test_elbo) {
            println!("test negative ELBO {e:.2} nats per image");
        }
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    let json = serde_json::to_string_pretty(&result)?;
    std::fs::write(&path, json + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    if a.save {
        let mut tensors: Vec<biolearn::safetensors::Tensor> = trainer
            .net
            .params
            .iter()
            .map(|p| biolearn::safetensors::Tensor { name: p.name.clone(), shape: p.shape.clone(), data: &p.data })
            .collect();
        for (name, shape, data) in trainer.rule.tensors() {
            tensors.push(biolearn::safetensors::Tensor { name, shape, data });
        }
        let meta = std::collections::BTreeMap::from([("config".to_string(), serde_json::to_string(&cfg)?)]);
        let mp = out.join("model.safetensors");
        biolearn::safetensors::save(&mp, &tensors, &meta).with_context(|| format!("cannot write {}", mp.display()))?;
    }
    if !result.complete {
        println!(
            "stopped after epoch {} of {}: test accuracy {:.4}; continue with --resume {}",
            result.epochs.len(),
            cfg.epochs,
            result.test_accuracy,
            out.display()
        );
    } else if let Some(d) = &result.diverged {
        println!(
            "diverged at epoch {} batch {}: loss not finite; test accuracy {:.4} ({})",
            d.epoch,
            d.batch,
            result.test_accuracy,
            path.display()
        );
    } else {
        println!("test accuracy {:.4} ({})", result.test_accuracy, path.display());
    }
    Ok(())
}

/// Rule names from the command line: names, or `all` for every registered rule.
fn rule_list(names: &[String]) -> Result<Vec<RuleName>> {
    if names.len() == 1 && names[0] == "all" {
        return Ok(RuleName::all());
    }
    names.iter().map(|n| n.parse::<RuleName>().map_err(anyhow::Error::msg)).collect()
}

/// A preset's settings without its comments, one `key = value` each.
fn preset_values(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

fn cmd_rules(name: Option<&str>) -> Result<()> {
    let Some(name) = name else {
        for r in RuleName::all() {
            let (d, p) = r.info();
            println!("{:<20} {d}\n{:<20} paper: {p}", r.as_str(), "");
            let preset = preset_values(r.preset());
            if !preset.is_empty() {
                println!("{:<20} preset: {}", "", preset.join(", "));
            }
            let named: Vec<&str> = r.entry().presets.iter().map(|(n, _)| *n).collect();
            if !named.is_empty() {
                println!("{:<20} named presets: {} (--preset NAME)", "", named.join(", "));
            }
            let own = r.entry().settings.names();
            if !own.is_empty() {
                println!("{:<20} settings: {} (`biolearn rules {}`)", "", own.join(", "), r.as_str());
            }
        }
        return Ok(());
    };
    let r: RuleName = name.parse().map_err(anyhow::Error::msg)?;
    let (d, p) = r.info();
    println!("{}: {d}\npaper: {p}", r.as_str());
    if !r.entry().reported.is_empty() {
        println!("reported: {}", r.entry().reported);
    }
    println!("\npreset (presets/{}.toml: what it trains with unless given):", r.as_str());
    for line in r.preset().lines() {
        println!("  {line}");
    }
    for (name, text) in r.entry().presets {
        println!("\nnamed preset '{name}' (--preset {name}, over the default preset):");
        for line in text.lines() {
            println!("  {line}");
        }
    }
    let docs = r.entry().settings.docs();
    if docs.is_empty() {
        println!("\nno settings of its own");
    } else {
        println!(
            "\nits own settings (--set KEY=VALUE, `[settings]` in a config file, `[rule.{}]` in a plan):",
            r.as_str()
        );
        let preset: toml::Table = r.preset().parse().unwrap_or_default();
        for f in docs {
            match preset.get(f.name) {
                Some(v) => println!("  {} = {v} (its preset; default {})\n      {}", f.name, f.default, f.doc),
                None => println!("  {} = {}\n      {}", f.name, f.default, f.doc),
            }
        }
    }
    Ok(())
}

fn cmd_data_info(name: &str, dir: Option<PathBuf>) -> Result<()> {
    data::check_name(name).map_err(anyhow::Error::msg)?;
    let ds = data::load_by_name(name, dir.as_deref())?;
    println!("data set   {}", ds.name);
    println!("source     {}", ds.source);
    println!("shape      {} x {} x {} (C x H x W), {} values", ds.channels, ds.height, ds.width, ds.dim());
    println!("classes    {}", ds.num_classes);
    for (label, s) in [("train", &ds.train), ("test", &ds.test)] {
        let counts = ds.class_counts(s);
        let c: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
        println!("{label:<10} {} samples; per class: {}", s.n, c.join(" "));
    }
    println!("checksum   {}", ds.checksum());
    Ok(())
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    let data = match a.data {
        Some(d) => d,
        None if a.data_dir.is_some() || std::path::Path::new("/usr/share/datasets/fashion-mnist").exists() => {
            "fashion-mnist".into()
        }
        None => "digits".into(),
    };
    if a.threads.contains(&0) {
        bail!("--threads: thread counts must be at least 1");
    }
    // Shared settings of every bench run: a constant small rate (the timing does not depend on
    // it); the rules' presets fill the rest, as for `train`.
    let given = Given {
        flags: TrainFlags {
            data: Some(data.clone()),
            data_dir: a.data_dir.as_ref().map(|p| p.to_string_lossy().into_owned()),
            batch: Some(a.batch),
            schedule: Some(ScheduleKind::Constant),
            lr: Some(0.01),
            ..TrainFlags::default()
        },
        set: a.set.clone(),
        config: None,
    };
    let base = overrides(&given)?;
    let mut data_cfg = base.clone();
    data_cfg.retain(|k, _| k == "data" || k == "data_dir" || k == "normalize" || k == "resize");
    let ds = train::load_data(&TrainConfig::from_table(data_cfg).map_err(anyhow::Error::msg)?)
        .map_err(anyhow::Error::msg)?
        .ds;
    let rules = rule_list(&a.rules)?;
    if a.kernels {
        use biolearn::bench::kernels;
        let opts = if a.quick { kernels::Options::quick() } else { kernels::Options::full() };
        let mut lines = String::new();
        let rows = kernels::run(&ds, &base, &rules, &a.archs, &a.threads, &opts, |r| {
            println!(
                "{:<6} {:<12} {:<44} {:>2} thr {:>10.4} ms {:>8.1} GFLOP/s {:>7.1} GB/s {:>5.0}% of the {} peak",
                r.section,
                r.arch,
                r.name,
                r.threads,
                1e3 * r.seconds,
                r.gflops,
                r.gbs,
                100.0 * r.peak_share,
                r.bound
            );
            lines.push_str(&serde_json::to_string(r).unwrap());
            lines.push('\n');
        })
        .map_err(anyhow::Error::msg)?;
        println!("{}", kernels::markdown(&rows));
        if let Some(p) = &a.json {
            std::fs::write(p, lines).with_context(|| format!("cannot write {}", p.display()))?;
        }
        return Ok(());
    }
    println!(
        "{:<14} {:<20} {:<12} {:<12} {:>7} {:>6} {:>10} {:>12} {:>9} {:>9} {:>9}",
        "data", "rule", "phase", "arch", "threads", "batch", "epoch_s", "samples/s", "model_MB", "train_MB", "rss_MB"
    );
    let mut lines = String::new();
    biolearn::bench::run(&ds, &base, &rules, &a.archs, &a.threads, a.warmup_steps, |r| {
        let mb = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1048576.0));
        println!(
            "{:<14} {:<20} {:<12} {:<12} {:>7} {:>6} {:>10.3} {:>12.0} {:>9} {:>9} {:>9}",
            r.data,
            r.rule,
            r.phase,
            r.arch,
            r.threads,
            r.batch,
            r.epoch_seconds,
            r.samples_per_second,
            mb(r.model_bytes),
            mb(r.train_bytes),
            mb(r.peak_rss_bytes)
        );
        if let Some(b) = r.diverged_at_batch {
            println!(
                "  ^ diverged at batch {b}: the epoch stopped there; its rate is not a full epoch's (try --set lr=...)"
            );
        }
        lines.push_str(&serde_json::to_string(r).unwrap());
        lines.push('\n');
    })
    .map_err(anyhow::Error::msg)?;
    if let Some(p) = a.json {
        std::fs::write(&p, lines).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

fn load_plan(a: &CompareArgs) -> Result<Plan> {
    let mut p = Plan::load(&a.plan).map_err(anyhow::Error::msg)?;
    if let Some(v) = &a.data {
        p.data = v.clone();
    }
    if let Some(v) = &a.data_dir {
        p.data_dir = Some(v.clone());
    }
    if let Some(v) = &a.arch {
        p.arch = v.clone();
    }
    if let Some(v) = &a.rules {
        p.rules = rule_list(v)?;
    }
    if let Some(v) = &a.fractions {
        p.fractions = v.clone();
    }
    if let Some(v) = &a.epochs {
        p.epochs = v.clone();
    }
    if let Some(v) = &a.sparsities {
        p.sparsities = v.clone();
    }
    if let Some(v) = &a.noise {
        p.noise = v.clone();
    }
    if let Some(v) = a.seeds {
        p.seeds = v;
    }
    // (The file was checked as it loaded: what fails now comes from the flags.)
    p.validate().map_err(|e| anyhow::anyhow!("command-line flags over {}: {e}", a.plan.display()))?;
    Ok(p)
}

/// The shard from --shard, else from a Slurm array job's environment.
fn shard_of(flag: Option<&str>) -> Result<Option<(usize, usize)>> {
    if let Some(s) = flag {
        return Ok(Some(parse_shard(s).map_err(anyhow::Error::msg)?));
    }
    // An array task reads its slice from Slurm's environment; a half-set or malformed one is an
    // error (running the whole grid in every task would duplicate it).
    let var = |k: &str| -> Result<Option<usize>> {
        match std::env::var(k) {
            Ok(v) => v.trim().parse::<usize>().map(Some).map_err(|_| anyhow::anyhow!("{k}={v:?} is not a count")),
            Err(_) => Ok(None),
        }
    };
    match (var("SLURM_ARRAY_TASK_ID")?, var("SLURM_ARRAY_TASK_COUNT")?) {
        (Some(id), Some(n)) => {
            let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let i = id.checked_sub(min).ok_or_else(|| anyhow::anyhow!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))?;
            Ok(Some(parse_shard(&format!("{i}/{n}")).map_err(|e| anyhow::anyhow!("Slurm's array environment: {e}"))?))
        }
        (Some(_), None) => bail!("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: give --shard I/N (or unset it to run the whole grid)"),
        _ => Ok(None),
    }
}

fn cmd_compare(a: CompareArgs) -> Result<()> {
    let plan = load_plan(&a)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/{}", plan.name)));
    let shard = shard_of(a.shard.as_deref())?;
    let cores = biolearn::config::default_threads();
    let parallel = a.parallel.or(plan.parallel).unwrap_or((cores / plan.threads_per_run).max(1));
    let runs = plan.runs().map_err(anyhow::Error::msg)?.len();
    eprintln!(
        "plan {}: {} runs ({} rules{} x ({} fractions + {} few-shot sizes) x {} seeds{}), {} at a time{}",
        plan.name,
        runs,
        plan.compared().len(),
        if plan.arm.is_empty() { String::new() } else { format!(" + {} arms", plan.arm.len()) },
        plan.fractions.len(),
        plan.shots.len(),
        plan.seeds,
        [
            (plan.pruning == PruneMode::Gradual).then(|| " x sparsities".to_string()),
            (plan.train_noise.len() > 1).then(|| format!(" x {} training-noise levels", plan.train_noise.len())),
            (plan.hardware.len() > 1).then(|| format!(" x {} hardware conditions", plan.hardware.len())),
        ]
        .into_iter()
        .flatten()
        .collect::<String>(),
        parallel,
        shard.map_or(String::new(), |(i, n)| format!(", shard {i}/{n}"))
    );
    if a.estimate {
        // Runs of this plan already recorded in --out (a sweep to resume: every results file
        // there, a Slurm array's shards too, as the sweep reads them) are counted apart.
        let done: std::collections::HashSet<String> = biolearn::protocol::done_records(&out)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .filter(|r| r.plan == plan.name)
            .map(|r| r.id)
            .collect();
        let e = biolearn::protocol::estimate::estimate(&plan, parallel, &done).map_err(anyhow::Error::msg)?;
        let dur = |s: f64| {
            if s < 120.0 {
                format!("{s:.0} s")
            } else if s < 7200.0 {
                format!("{:.1} min", s / 60.0)
            } else {
                format!("{:.2} h", s / 3600.0)
            }
        };
        println!("{:<32} {:>5} {:>5} {:>12} {:>11}  timed phases", "rule", "runs", "done", "run time", "eval ms/kS");
        for r in &e.rules {
            let ph: Vec<String> = r
                .phases
                .iter()
                .map(|(n, c, whole)| {
                    if *whole {
                        format!("{n}: {} for the phase", dur(*c))
                    } else {
                        format!("{n}: {:.1} ms per 1000 samples", c * 1e6)
                    }
                })
                .collect();
            println!(
                "{:<32} {:>5} {:>5} {:>12} {:>11.1}  {}",
                r.rule,
                r.runs,
                r.done,
                dur(r.seconds),
                r.eval_per_sample * 1e6,
                ph.join(", ")
            );
        }
        println!(
            "expected: {} at {} run(s) at once ({} of runs in all; more where runs finish unevenly)",
            dur(e.seconds),
            e.parallel,
            dur(e.rules.iter().map(|r| r.seconds).sum::<f64>())
        );
        let done: usize = e.rules.iter().map(|r| r.done).sum();
        if done > 0 {
            println!(
                "left: {} at {} run(s) at once, the {} run(s) not yet recorded in {}",
                dur(e.left_seconds),
                e.parallel,
                e.rules.iter().map(|r| r.runs).sum::<usize>() - done,
                out.display()
            );
        }
        return Ok(());
    }
    let quiet = a.quiet;
    let mut on = |ev: SweepEvent| match ev {
        SweepEvent::Repaired { file, dropped_bytes } => {
            eprintln!("{}: dropped a torn last record ({dropped_bytes} bytes) from an interrupted run", file.display())
        }
        SweepEvent::Recorded { done, total, record: r, elapsed, eta } if !quiet => eprintln!(
            "[{done}/{total}] {} acc {:.4}{} ({:.0}s; elapsed {elapsed:.0}s, ETA {eta:.0}s)",
            r.id,
            r.test_accuracy,
            if r.is_ok() { "" } else { " DIVERGED" },
            r.seconds
        ),
        _ => {}
    };
    let s = run_plan(&plan, &out, shard, parallel, &mut on).map_err(anyhow::Error::msg)?;
    println!(
        "{} runs: {} already done, {} run now ({} diverged) -> {}",
        s.total,
        s.skipped,
        s.ran,
        s.diverged,
        s.file.display()
    );
    Ok(())
}

fn cmd_report(
    dir: &std::path::Path,
    out: Option<PathBuf>,
    markdown: Option<PathBuf>,
    conditions: &[PathBuf],
    with: &[PathBuf],
) -> Result<()> {
    let mut files = biolearn::protocol::result_files(dir);
    if files.is_empty() && conditions.is_empty() {
        bail!("{}: no results*.jsonl file (run `biolearn compare` first)", dir.display());
    }
    for w in with {
        let more = biolearn::protocol::result_files(w);
        if more.is_empty() {
            bail!("{} (--with): no results*.jsonl file (run `biolearn compare` first)", w.display());
        }
        files.extend(more);
    }
    // With --conditions alone, DIR holds no records: the report has the conditions' sections.
    let (records, warnings) = if files.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        biolearn::report::read_records_many(&files).map_err(anyhow::Error::msg)?
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let out = out.unwrap_or_else(|| dir.join("report"));
    let s = biolearn::report::write_report_with(&records, conditions, &out).map_err(anyhow::Error::msg)?;
    println!("{} records from {} file(s) -> {} ({} files)", records.len(), files.len(), out.display(), s.files.len());
    if let Some(md) = markdown {
        let text = std::fs::read_to_string(out.join("report.md"))?;
        let base = md.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let rel = relative(&out, base);
        let prefix = if rel.is_empty() { String::new() } else { format!("{rel}/") };
        let text = text.replace("](plots/", &format!("]({prefix}plots/"));
        std::fs::write(&md, text).with_context(|| format!("cannot write {}", md.display()))?;
        println!("markdown -> {}", md.display());
    }
    Ok(())
}

/// `target` relative to `base` (both made absolute), with '/' separators.
fn relative(target: &std::path::Path, base: &std::path::Path) -> String {
    let abs = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (t, b) = (abs(target), abs(base));
    let tc: Vec<_> = t.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); bc.len() - common];
    parts.extend(tc[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    parts.join("/")
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let file = train::model_file(&a.model).map_err(anyhow::Error::msg)?;
    let mut cfg = train::saved_config(&file).map_err(anyhow::Error::msg)?;
    if let Some(d) = &a.data {
        cfg.data = d.clone();
        cfg.data_dir = None;
    }
    if let Some(d) = &a.data_dir {
        cfg.data_dir = Some(d.clone());
    }
    if let Some(t) = a.threads {
        cfg.threads = t;
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    let l = train::load_data(&cfg).map_err(anyhow::Error::msg)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build()?;
    let rows = pool.install(|| -> Result<Vec<(String, f64)>> {
        let mut tr = train::load_model(&file, &cfg, &l.ds).map_err(anyhow::Error::msg)?;
        let mut rows = vec![("test".to_string(), tr.evaluate(&l.ds.test))];
        for (i, &std) in a.noise.iter().enumerate() {
            let mut rng = protocol::noise_rng(a.seed, i);
            let acc = protocol::noisy_accuracy(&mut tr, &l.ds.test, &l.norm, NoiseKind::Gaussian, std, &mut rng);
            rows.push((format!("gaussian noise {std}"), acc));
        }
        if a.per_layer && a.sparsity.is_empty() {
            bail!("--per-layer: give the sparsities with --sparsity");
        }
        if let Some(s) = a.sparsity.iter().find(|s| !(0.0..1.0).contains(*s)) {
            bail!("--sparsity {s}: must be in [0, 1)");
        }
        let min_keep = Plan::default().min_keep;
        for p in
            protocol::pruned_accuracies(&mut tr, &a.sparsity, min_keep, &l.ds.test, None).map_err(anyhow::Error::msg)?
        {
            rows.push((format!("sparsity {}", p.sparsity), p.test_accuracy));
            if a.per_layer && p.sparsity > 0.0 {
                for l in
                    protocol::layer_pruning(&mut tr, p.sparsity, min_keep, &l.ds.test).map_err(anyhow::Error::msg)?
                {
                    rows.push((
                        format!("  only {} ({} weights, {:.1}% kept)", l.name, l.size, 100.0 * l.kept),
                        l.alone_accuracy,
                    ));
                }
            }
        }
        rows.extend(eval_attacks(&a, &cfg, &l, &mut tr)?);
        Ok(rows)
    })?;
    println!("model {} ({} {} on {}, seed {})", file.display(), cfg.rule, cfg.arch, cfg.data, cfg.seed);
    for (what, acc) in rows {
        println!("{what:<24} accuracy {acc:.4} ({acc})");
    }
    Ok(())
}

/// `eval`'s attacks: FGSM / PGD through MODEL's input gradient (or a source model's with
/// --attack-from), the Square attack through MODEL's scores; rows of (what, accuracy).
fn eval_attacks(
    a: &EvalArgs,
    cfg: &TrainConfig,
    l: &train::Loaded,
    tr: &mut train::Trainer,
) -> Result<Vec<(String, f64)>> {
    use protocol::adversarial::{self, Attack};
    for (name, v) in [("--fgsm", &a.fgsm), ("--pgd", &a.pgd), ("--square", &a.square)] {
        if let Some(e) = v.iter().find(|e| !(0.0..=1.0).contains(*e)) {
            bail!("{name} {e}: eps must be in [0, 1] (pixel units)");
        }
    }
    if a.attack_from.is_some() && a.fgsm.is_empty() && a.pgd.is_empty() {
        bail!("--attack-from: give the attacks to transfer with --fgsm or --pgd (--square queries MODEL itself)");
    }
    if a.fgsm.is_empty() && a.pgd.is_empty() && a.square.is_empty() {
        return Ok(Vec::new());
    }
    if !(1..=100_000).contains(&a.pgd_steps) || !(1..=1_000_000).contains(&a.square_queries) {
        bail!("--pgd-steps must be in 1..=100000 and --square-queries in 1..=1000000");
    }
    if l.ds.alphabet.is_some() || cfg.is_vae() {
        bail!("attacks act on classified images: not on {} ({})", cfg.data, cfg.arch);
    }
    let m = if a.attack_samples == 0 { l.ds.test.n } else { a.attack_samples.min(l.ds.test.n) };
    let sub = biolearn::data::sampling::subset(&l.ds.test, &(0..m).collect::<Vec<_>>());
    // The source of the gradient attacks: MODEL itself, or another model on the same data.
    let mut source = match &a.attack_from {
        Some(p) => {
            let f = train::model_file(p).map_err(anyhow::Error::msg)?;
            let scfg = train::saved_config(&f).map_err(anyhow::Error::msg)?;
            if scfg.data != cfg.data || scfg.normalize != cfg.normalize || scfg.resize != cfg.resize {
                bail!(
                    "--attack-from {}: trained on {} (normalize {}, resize {}), MODEL on {} (normalize {}, resize {}): a transfer attack needs the same data",
                    f.display(),
                    scfg.data,
                    scfg.normalize,
                    scfg.resize,
                    cfg.data,
                    cfg.normalize,
                    cfg.resize
                );
            }
            Some((train::load_model(&f, &scfg, &l.ds).map_err(anyhow::Error::msg)?, f))
        }
        None => None,
    };
    let from = source.as_ref().map(|(_, f)| format!(" from {}", f.display())).unwrap_or_default();
    let mut rows = Vec::new();
    let gradient =
        a.fgsm.iter().map(|&e| (Attack::Fgsm, e)).chain(a.pgd.iter().map(|&e| (Attack::Pgd { steps: a.pgd_steps }, e)));
    for (i, (atk, eps)) in gradient.enumerate() {
        let src = source.as_mut().map_or(&mut *tr, |(s, _)| s);
        if src.rule.prediction() != biolearn::rules::Prediction::FeedForward && !src.rule.has_input_gradient() {
            bail!("--{}: {} answers by its own inference, with no input gradient: use --square, or --attack-from a model that has one", atk.name(), src.cfg.rule);
        }
        let mut rng = adversarial::attack_rng(a.seed, i, false);
        let loss = a.attack_loss;
        let adv = adversarial::attack(&mut src.net, Some(src.rule.as_mut()), &sub, &l.norm, atk, loss, eps, &mut rng);
        rows.push((format!("{} {eps}{from}", atk.label(loss)), tr.evaluate(&adv)));
    }
    let shape = biolearn::nn::Shape::new(l.ds.channels, l.ds.height, l.ds.width);
    for (i, &eps) in a.square.iter().enumerate() {
        let mut rng = adversarial::attack_rng(a.seed, i, true);
        let adv = adversarial::square(
            &mut tr.net,
            Some(tr.rule.as_mut()),
            &sub,
            &l.norm,
            shape,
            eps,
            a.square_queries,
            0.05,
            &mut rng,
        );
        rows.push((format!("square {eps}"), tr.evaluate(&adv)));
    }
    rows.push((format!("(clean, the {m} attacked samples)"), tr.evaluate(&sub)));
    Ok(rows)
}

fn cmd_sample(a: SampleArgs) -> Result<()> {
    let file = train::model_file(&a.model).map_err(anyhow::Error::msg)?;
    let cfg = train::saved_config(&file).map_err(anyhow::Error::msg)?;
    let l = train::load_data(&cfg).map_err(anyhow::Error::msg)?;
    let Some(alphabet) = l.ds.alphabet.clone() else {
        bail!("{}: trained on {}, not a text data set: nothing to sample", file.display(), cfg.data);
    };
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        bail!("--temperature {}: must be a finite number >= 0", a.temperature);
    }
    let mut prompt = Vec::with_capacity(a.prompt.len());
    for b in a.prompt.bytes() {
        match alphabet.iter().position(|&c| c == b) {
            Some(i) => prompt.push(i as u32),
            None => bail!("--prompt: the byte {b:#04x} ({:?}) is not in {}'s alphabet", b as char, cfg.data),
        }
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build()?;
    let out = pool.install(|| -> Result<Vec<u32>> {
        let mut tr = train::load_model(&file, &cfg, &l.ds).map_err(anyhow::Error::msg)?;
        let mut rng = biolearn::rng::Rng::new(a.seed);
        Ok(protocol::lm::generate(&mut tr.net, &prompt, a.tokens, a.temperature, &mut rng))
    })?;
    println!("{}{}", a.prompt, biolearn::data::text::decode(&alphabet, &out));
    Ok(())
}

/// The configuration, data set, split and episode spec of `episodes` / `meta-train`.
fn episode_setup(
    given: &Given,
    f: &EpisodeFlags,
) -> Result<(TrainConfig, biolearn::data::Dataset, biolearn::protocol::episodes::EpisodeSpec)> {
    let mut base = overrides(given)?;
    // Online unless a batch is asked for (by a flag or the config file).
    let file_batch = match given.config.as_deref() {
        Some(p) => std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .is_some_and(|t| t.contains_key("batch")),
        None => false,
    };
    if !file_batch {
        base.entry("batch").or_insert(toml::Value::Integer(1));
    }
    let cfg = TrainConfig::load(given.config.as_deref(), base).map_err(anyhow::Error::msg)?;
    let ds = class_data(&cfg, "episodes")?;
    let classes = parse_classes(&f.classes, ds.num_classes)?;
    let spec = biolearn::protocol::episodes::EpisodeSpec {
        classes,
        ways: f.ways,
        shots: f.shots,
        queries: f.queries,
        passes: f.passes,
    };
    if f.split != "train" && f.split != "test" {
        bail!("--split {}: train or test", f.split);
    }
    Ok((cfg, ds, spec))
}

/// `5-9` or `5,6,7` (each below `classes`).
fn parse_classes(s: &str, classes: usize) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num =
            |v: &str| v.trim().parse::<u32>().with_context(|| format!("--classes {s}: '{v}' is not a class number"));
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi || hi as usize >= classes {
            bail!("--classes {s}: classes are 0..{} on this data set", classes.saturating_sub(1));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("--classes: none given");
    }
    Ok(out)
}

fn cmd_episodes(a: EpisodesArgs) -> Result<()> {
    let (cfg, ds, spec) = episode_setup(&a.given, &a.ep)?;
    let split = if a.ep.split == "train" { &ds.train } else { &ds.test };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads.max(1)).build()?;
    let s = pool
        .install(|| biolearn::protocol::episodes::evaluate(&cfg, &ds, split, &spec, a.episodes, a.episode_seed))
        .map_err(anyhow::Error::msg)?;
    println!(
        "{}{} on {} ({} split, classes {:?}): {} episodes of {} ways x {} shots, {} pass(es), batch {}: query accuracy {:.2} +- {:.2} % (95%), loss {:.3}{}",
        s.rule,
        if cfg.preset.is_empty() { String::new() } else { format!(":{}", cfg.preset) },
        ds.name,
        a.ep.split,
        spec.classes,
        s.episodes,
        spec.ways,
        spec.shots,
        spec.passes,
        cfg.batch,
        100.0 * s.mean_accuracy,
        100.0 * s.ci95,
        s.mean_loss,
        if s.diverged > 0 { format!(", {} diverged", s.diverged) } else { String::new() }
    );
    if let Some(p) = a.json {
        // What makes two arms' episodes the same episodes (`report --conditions` pairs by them).
        let mut v = serde_json::to_value(&s)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("preset".into(), cfg.preset.clone().into());
            o.insert("data".into(), ds.name.clone().into());
            o.insert("split".into(), a.ep.split.clone().into());
            o.insert("episode_seed".into(), a.episode_seed.into());
            o.insert("classes".into(), serde_json::to_value(&spec.classes)?);
            o.insert("ways".into(), spec.ways.into());
            o.insert("shots".into(), spec.shots.into());
            o.insert("queries".into(), spec.queries.into());
            o.insert("passes".into(), spec.passes.into());
        }
        write_json(&p, &v)?;
    }
    Ok(())
}

/// The configured data set for a condition defined on classes (episodes, continual tasks, an
/// online stream scored by accuracy): a text data set or a VAE is refused by name.
fn class_data(cfg: &TrainConfig, command: &str) -> Result<biolearn::data::Dataset> {
    if cfg.is_vae() {
        bail!("biolearn {command} works on classes; arch {} is an autoencoder (its targets are pixels)", cfg.arch);
    }
    let ds = train::load_data(cfg).map_err(anyhow::Error::msg)?.ds;
    if ds.alphabet.is_some() {
        bail!("biolearn {command} works on classes; data set {} is text (its samples are token sequences)", ds.name);
    }
    Ok(ds)
}

fn cmd_continual(a: ContinualArgs) -> Result<()> {
    use biolearn::protocol::continual;
    let tasks: continual::Tasks = a.tasks.parse().map_err(anyhow::Error::msg)?;
    if a.seeds == 0 || a.seeds > 1000 {
        bail!("--seeds: from 1 to 1000");
    }
    let mut cfg = TrainConfig::load(a.given.config.as_deref(), overrides(&a.given)?).map_err(anyhow::Error::msg)?;
    let ds = class_data(&cfg, "continual")?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads.max(1)).build()?;
    let mut runs = Vec::new();
    // Split tasks are the same for every seed (built once); permuted ones are the seed's draw.
    let mut seq = continual::build_tasks(&ds, tasks, 0).map_err(anyhow::Error::msg)?;
    let search = a.search.choose(&mut cfg, "task-incremental validation accuracy", |cands| {
        pool.install(|| continual::search(cands, &ds, &seq, a.epochs_per_task, a.search.search_val_fraction, 0))
    })?;
    for seed in 0..a.seeds {
        if seed > 0 && matches!(tasks, continual::Tasks::Permuted(_)) {
            seq = continual::build_tasks(&ds, tasks, seed).map_err(anyhow::Error::msg)?;
        }
        let r =
            pool.install(|| continual::run(&cfg, &ds, &seq, a.epochs_per_task, seed)).map_err(anyhow::Error::msg)?;
        let row = |m: &[f64]| m.iter().map(|v| format!("{:5.1}", 100.0 * v)).collect::<Vec<_>>().join(" ");
        eprintln!("seed {seed}: class-incremental / task-incremental accuracy (%) on tasks 1.. after each task");
        for (c, t) in r.class_il.iter().zip(&r.task_il) {
            eprintln!("  {}   |   {}", row(c), row(t));
        }
        if let Some(t) = r.diverged_in_task {
            eprintln!("  diverged in task {t}");
        }
        runs.push(r);
    }
    let t975 = t975_over(runs.len());
    let summary = continual::summarise(&runs, t975);
    println!(
        "{} on {} {} ({} epochs per task, {} seeds): class-incremental A {:.2} +- {:.2}, F {:.2} +- {:.2}, BWT {:.2} +- {:.2}; task-incremental A {:.2} +- {:.2}, F {:.2} +- {:.2}, BWT {:.2} +- {:.2} (%, 95% intervals over seeds){}",
        cfg.rule, ds.name, a.tasks, a.epochs_per_task, a.seeds,
        summary.class_il.average_accuracy.0, summary.class_il.average_accuracy.1,
        summary.class_il.forgetting.0, summary.class_il.forgetting.1,
        summary.class_il.backward_transfer.0, summary.class_il.backward_transfer.1,
        summary.task_il.average_accuracy.0, summary.task_il.average_accuracy.1,
        summary.task_il.forgetting.0, summary.task_il.forgetting.1,
        summary.task_il.backward_transfer.0, summary.task_il.backward_transfer.1,
        if summary.diverged > 0 { format!("; {} of {} runs diverged (counted at chance from there)", summary.diverged, runs.len()) } else { String::new() },
    );
    if let Some(p) = a.json {
        let v = serde_json::json!({ "rule": cfg.rule.to_string(), "preset": cfg.preset, "data": ds.name,
            "tasks": a.tasks, "epochs_per_task": a.epochs_per_task, "lr": cfg.lr,
            "search": search, "config": cfg, "summary": summary, "runs": runs });
        write_json(&p, &v)?;
    }
    Ok(())
}

/// The t distribution's 0.975 quantile for an interval over `n` runs (NaN below 2).
fn t975_over(n: usize) -> f64 {
    if n > 1 {
        biolearn::report::stats::t_quantile(0.975, (n - 1) as f64)
    } else {
        f64::NAN
    }
}

/// Write `v` as pretty JSON to `p`, an error naming the file.
fn write_json(p: &std::path::Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(p, serde_json::to_string_pretty(v)?).with_context(|| format!("cannot write {}", p.display()))
}

fn cmd_online(a: OnlineArgs) -> Result<()> {
    use biolearn::protocol::online;
    if a.seeds == 0 || a.seeds > 1000 {
        bail!("--seeds: from 1 to 1000");
    }
    if a.stream_batch == 0 || a.stream_batch > 1 << 20 {
        bail!("--stream-batch: from 1 to {}", 1 << 20);
    }
    let mut cfg = TrainConfig::load(a.given.config.as_deref(), overrides(&a.given)?).map_err(anyhow::Error::msg)?;
    cfg.batch = a.stream_batch;
    let ds = class_data(&cfg, "online")?;
    let samples = a.samples.unwrap_or(ds.train.n);
    if samples == 0 || samples > ds.train.n {
        bail!("--samples: a stream of 1 to {} samples (the training split's size), not {samples}", ds.train.n);
    }
    let eval = match a.eval_samples {
        Some(0) => bail!("--eval-samples: at least 1"),
        Some(n) if n < ds.test.n => data::sampling::subset(&ds.test, &(0..n).collect::<Vec<_>>()),
        _ => ds.test.clone(),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads.max(1)).build()?;
    let input = biolearn::nn::Shape::new(ds.channels, ds.height, ds.width);
    let search = a.search.choose(&mut cfg, "mean validation accuracy", |cands| {
        pool.install(|| {
            online::search(cands, &ds.train, input, ds.num_classes, samples, a.search.search_val_fraction, 0)
        })
    })?;
    let mut runs = Vec::new();
    for seed in 0..a.seeds {
        let r = pool
            .install(|| online::run(&cfg, input, ds.num_classes, &ds.train, &eval, samples, seed))
            .map_err(anyhow::Error::msg)?;
        let pts: Vec<String> = r.curve.iter().map(|p| format!("{}:{:.1}", p.samples, 100.0 * p.accuracy)).collect();
        eprintln!(
            "seed {seed}: mean {:.2}% final {:.2}% stream {:.2}% ({:.1} s){}  {}",
            100.0 * r.mean_accuracy,
            100.0 * r.final_accuracy,
            100.0 * r.stream_accuracy,
            r.train_seconds,
            r.diverged_at.map_or(String::new(), |s| format!(" diverged after {s} samples")),
            pts.join(" ")
        );
        runs.push(r);
    }
    let t975 = t975_over(runs.len());
    let summary = online::summarise(&runs, t975);
    println!(
        "{}{} on {}, online ({} samples, batch {}, lr {}, {} seeds): mean accuracy {:.2} +- {:.2}, final {:.2} +- {:.2}, stream {:.2} +- {:.2} (%, 95% intervals over seeds){}",
        cfg.rule,
        if cfg.preset.is_empty() { String::new() } else { format!(":{}", cfg.preset) },
        ds.name, samples, cfg.batch, cfg.lr, a.seeds,
        summary.mean_accuracy.0, summary.mean_accuracy.1,
        summary.final_accuracy.0, summary.final_accuracy.1,
        summary.stream_accuracy.0, summary.stream_accuracy.1,
        if summary.diverged > 0 { format!("; {} of {} runs diverged (counted at chance from there)", summary.diverged, runs.len()) } else { String::new() },
    );
    if let Some(p) = a.json {
        let v = serde_json::json!({ "rule": cfg.rule.to_string(), "preset": cfg.preset, "data": ds.name,
            "samples": samples, "batch": cfg.batch, "eval_samples": eval.n, "lr": cfg.lr,
            "search": search, "config": cfg, "summary": summary, "runs": runs });
        write_json(&p, &v)?;
    }
    Ok(())
}

fn cmd_interference(a: InterferenceArgs) -> Result<()> {
    use biolearn::protocol::interference;
    use biolearn::report::plot::render;
    if a.seeds == 0 || a.seeds > 1000 {
        bail!("--seeds: from 1 to 1000");
    }
    if a.iterations == 0 || a.iterations > 100_000 {
        bail!("--iterations: from 1 to 100000");
    }
    if a.width == 0 || a.width > 4096 {
        bail!("--width: from 1 to 4096");
    }
    let depths: Vec<usize> = a
        .depths
        .split(',')
        .map(|v| match v.trim().parse::<usize>() {
            Ok(d) if (1..=100).contains(&d) => Ok(d),
            _ => Err(anyhow::anyhow!("--depths: '{v}' is not a depth from 1 to 100")),
        })
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut runs = Vec::new();
    for arm in a.rules.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (rule, preset) = arm.split_once(':').unwrap_or((arm, ""));
        let mut t = toml::Table::new();
        t.insert("rule".into(), toml::Value::String(rule.into()));
        t.insert("preset".into(), toml::Value::String(preset.into()));
        let cfg = TrainConfig::from_table(t).map_err(|e| anyhow::anyhow!("--rules {arm}: {e}"))?;
        // A rule that cannot train these networks at all is reported and left out.
        let r = match interference::run(arm, &cfg, a.iterations, &depths, a.width, a.seeds) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{arm}: left out: {e}");
                continue;
            }
        };
        let row: Vec<String> = r
            .alignment
            .iter()
            .map(|(d, v)| {
                let ok: Vec<f64> = v.iter().flatten().copied().collect();
                format!("{d}:{:.3}", ok.iter().sum::<f64>() / ok.len().max(1) as f64)
            })
            .collect();
        let first = r.example_112.get(1).copied().unwrap_or([f64::NAN; 2]);
        println!(
            "{arm:<18} 1-1-2: after one step ({:.3}, {:.3}), output 2 moved at most {:.3} from its target{}; target alignment by depth {}{}",
            first[0],
            first[1],
            r.max_disturbance,
            r.example_112_diverged.map_or(String::new(), |t| format!(" (diverged at step {t})")),
            row.join(" "),
            r.skipped.iter().map(|(d, e)| format!("; depth {d} skipped: {e}")).collect::<String>()
        );
        runs.push(r);
    }
    let path = a.out.join("interference.json");
    let v = serde_json::json!({ "iterations": a.iterations, "depths": depths, "width": a.width,
        "seeds": a.seeds, "runs": runs });
    write_json(&path, &v)?;
    let (path_chart, align_chart) = biolearn::report::conditions::interference_charts(&v);
    render(&path_chart, &a.out, "example_112").map_err(anyhow::Error::msg)?;
    render(&align_chart, &a.out, "target_alignment").map_err(anyhow::Error::msg)?;
    eprintln!("wrote {} and its plots", path.display());
    Ok(())
}

fn cmd_meta_train(a: MetaTrainArgs) -> Result<()> {
    use biolearn::protocol::episodes;
    let (cfg, ds, spec) = episode_setup(&a.given, &a.ep)?;
    let split = if a.ep.split == "train" { &ds.train } else { &ds.test };
    let keys = episodes::expand_keys(&a.keys).map_err(anyhow::Error::msg)?;
    let start: Vec<f64> = keys
        .iter()
        .map(|key| episodes::start_of(&cfg, key))
        .collect::<Result<_, String>>()
        .map_err(anyhow::Error::msg)?;
    let es =
        episodes::EsConfig { iterations: a.iterations, pairs: a.pairs, sigma: a.sigma, lr: a.es_lr, seed: a.es_seed };
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let steps_path = a.out.join("steps.jsonl");
    let mut lines = String::new();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads.max(1)).build()?;
    let (theta, _) = pool
        .install(|| {
            episodes::meta_train(&cfg, &ds, split, &spec, &keys, &start, &es, |st| {
                let mut th: Vec<String> =
                    keys.iter().zip(&st.theta).take(6).map(|(k, v)| format!("{k}={v:.5}")).collect();
                if keys.len() > 6 {
                    th.push(format!("... ({} settings)", keys.len()));
                }
                eprintln!(
                    "iteration {:>4}: query accuracy {:.3} loss {:.3} (candidates' mean accuracy {:.3})  {}",
                    st.iteration,
                    st.accuracy,
                    st.loss,
                    st.mean_fitness,
                    th.join(" ")
                );
                // (A long theta, such as TDCA's 752 entries, only in theta.toml: every iteration's
                // copy would make the log tens of megabytes.)
                let mut rec = serde_json::to_value(st).unwrap();
                if keys.len() > 16 {
                    rec.as_object_mut().unwrap().remove("theta");
                }
                lines.push_str(&rec.to_string());
                lines.push('\n');
                let _ = std::fs::write(&steps_path, &lines);
            })
        })
        .map_err(anyhow::Error::msg)?;
    let mut toml_out = format!(
        "# Learned by `biolearn meta-train` for rule {} on {} ({} split, classes {:?}): {} iterations x {} antithetic\n\
         # pairs of {}-way {}-shot online episodes ({} queries per class, {} pass(es)), sigma {}, Adam {}, seed {};\n\
         # start {}. Use with --config this file (and --rule {}).\n",
        cfg.rule, ds.name, a.ep.split, spec.classes, es.iterations, es.pairs, spec.ways, spec.shots, spec.queries,
        spec.passes, es.sigma, es.lr, es.seed, if start.len() <= 6 { format!("{start:?}") } else { format!("the configuration's ({} settings)", start.len()) }, cfg.rule
    );
    toml_out.push_str(&episodes::theta_toml(&cfg, &keys, &theta));
    let tp = a.out.join("theta.toml");
    std::fs::write(&tp, toml_out).with_context(|| format!("cannot write {}", tp.display()))?;
    println!("learned {} ({} settings) -> {}", a.keys, keys.len(), tp.display());
    Ok(())
}

fn cmd_tune(a: TuneArgs) -> Result<()> {
    use biolearn::protocol::tune;
    if let Some(plan) = &a.plan {
        return cmd_tune_plan(&a, plan);
    }
    if a.shard.is_some() {
        bail!("--shard slices a plan's entries: it goes with --plan");
    }
    // --epochs is each trial's, --val-fraction the held-out share (default 3 and 0.1): the
    // search's budget and split, not settings of the preset it writes.
    let mut base = overrides(&a.given)?;
    base.remove("epochs");
    base.remove("val_fraction");
    let probe = TrainConfig::load(a.given.config.as_deref(), base.clone()).map_err(anyhow::Error::msg)?;
    let space = match &a.space {
        Some(s) => tune::parse_space(s).map_err(anyhow::Error::msg)?,
        None => tune::default_space(&probe),
    };
    let budget = tune::Budget {
        trials: a.trials.unwrap_or(24),
        epochs: a.given.flags.epochs.unwrap_or(3),
        subset: a.subset.unwrap_or(0.2),
        // Through its decimal form, so the preset reads 0.1, not 0.10000000149011612.
        val_fraction: a.given.flags.val_fraction.map_or(0.1, |v| v.to_string().parse().unwrap_or(f64::from(v))),
        seed: a.tune_seed.unwrap_or(0),
    };
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/tune-{}-{}", probe.data, probe.rule)));
    let quiet = a.quiet;
    let mut on = |t: &tune::Trial| {
        if !quiet {
            let p: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let div = if t.diverged { " (diverged)" } else { "" };
            let loss = t.val_loss.map_or(String::new(), |l| format!(" val_loss {l:.4}"));
            eprintln!(
                "trial {:>3}: val_acc {:.4}{loss}{div}  {}  ({:.1}s)",
                t.trial,
                t.val_accuracy,
                p.join(" "),
                t.seconds
            );
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parallel = a.parallel.unwrap_or((cores / probe.threads.max(1)).max(1));
    let s = tune::run(&base, a.given.config.as_deref(), &space, &budget, &out, parallel, &mut on)
        .map_err(anyhow::Error::msg)?;
    biolearn::report::tune_plot(&s.trials, &out).map_err(anyhow::Error::msg)?;
    let b = &s.trials[s.best];
    println!(
        "{} trials ({} run now), best trial {} by {}: {} (plot {})",
        s.trials.len(),
        s.ran,
        b.trial,
        b.score_text(),
        s.preset.display(),
        out.join("trials.png").display()
    );
    Ok(())
}

fn cmd_tune_plan(a: &TuneArgs, path: &std::path::Path) -> Result<()> {
    use biolearn::protocol::tune;
    let given = overrides(&a.given)?;
    if !given.is_empty()
        || a.given.config.is_some()
        || a.space.is_some()
        || a.trials.is_some()
        || a.subset.is_some()
        || a.tune_seed.is_some()
    {
        bail!(
            "tune --plan takes every setting from the plan (its [train], [rule.X], [arm.Y] and [tune] tables): \
             drop the other setting flags ({})",
            given.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let plan = Plan::load(path).map_err(anyhow::Error::msg)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/tune-{}", plan.name)));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parallel = a.parallel.unwrap_or((cores / plan.threads_per_run.max(1)).max(1));
    let quiet = a.quiet;
    let mut on = |entry: &str, t: &tune::Trial| {
        if !quiet {
            let p: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let div = if t.diverged { " (diverged)" } else { "" };
            let loss = t.val_loss.map_or(String::new(), |l| format!(" val_loss {l:.4}"));
            eprintln!(
                "{entry} trial {:>3}: val_acc {:.4}{loss}{div}  {}  ({:.1}s)",
                t.trial,
                t.val_accuracy,
                p.join(" "),
                t.seconds
            );
        }
    };
    let shard = if a.plan.is_some() { shard_of(a.shard.as_deref())? } else { None };
    let Some(done) = tune::run_plan(&plan, &out, shard, parallel, &mut on).map_err(anyhow::Error::msg)? else {
        println!(
            "shard {}/{} searched; {} is written once every entry's search is complete (a run without \
             --shard then assembles it, running only what is missing)",
            shard.map_or(0, |s| s.0),
            shard.map_or(1, |s| s.1),
            out.join("tuned.toml").display()
        );
        return Ok(());
    };
    println!("{:<24} {:<22} {:>7} {:>10}  settings", "entry", "network", "trials", "best val");
    for e in &done {
        biolearn::report::tune_plot(&e.summary.trials, &out.join(&e.name)).map_err(anyhow::Error::msg)?;
        let b = &e.summary.trials[e.summary.best];
        let p: Vec<String> = b.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<24} {:<22} {:>7} {:>10.4}  {}",
            e.name,
            e.arch,
            e.summary.trials.len(),
            b.val_loss.unwrap_or(b.val_accuracy),
            p.join(" ")
        );
    }
    println!("wrote {}: point the plan's `tuned = ...` at a copy of it", out.join("tuned.toml").display());
    Ok(())
}

fn cmd_slurm(a: SlurmArgs) -> Result<()> {
    let plan = Plan::load(&a.plan).map_err(anyhow::Error::msg)?;
    if a.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(if a.tune { format!("runs/tune-{}", plan.name) } else { format!("runs/{}", plan.name) })
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let abs = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let bin = match &a.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    if !bin.is_file() {
        bail!("--bin {}: no such file (the biolearn binary the array's tasks run)", bin.display());
    }
    let cpus = a.cpus_per_task.unwrap_or(plan.threads_per_run);
    let script = a.script.clone().unwrap_or_else(|| out.join("slurm-array.sbatch"));
    let (out_abs, bin_abs, plan_abs) = (abs(&out), abs(&bin), abs(&a.plan));
    let job = biolearn::protocol::slurm::SlurmJob {
        plan_name: &plan.name,
        plan: &plan_abs,
        out: &out_abs,
        bin: &bin_abs,
        tasks: a.tasks,
        cpus_per_task: cpus,
        parallel: (cpus / plan.threads_per_run).max(1),
        time: &a.time,
        partition: a.partition.as_deref(),
        tune: a.tune,
    };
    let text = biolearn::protocol::slurm::script(&job).map_err(anyhow::Error::msg)?;
    std::fs::write(&script, text).with_context(|| format!("cannot write {}", script.display()))?;
    println!("wrote {}; submit with: sbatch {}", script.display(), script.display());
    Ok(())
}
