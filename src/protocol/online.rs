//! Online learning: one pass over a stream of training samples, each seen once, a small batch
//! (1 by default), no epochs, at a constant learning rate; the accuracy on a held-out set is
//! recorded against the samples seen, as a curve. Any rule runs it through the same `Trainer`
//! as every other run: a one-epoch run, so a Hebbian rule's layers and read-out learn together
//! from each batch (`rules::hebbian`, the "concurrent" phase).
//!
//! The stream: the training set in an order drawn from the run's seed, its first `samples`.
//! Checkpoints at 0 and then 1, 2, 5, 10, 20, 50, ... samples seen (a 1-2-5 series, so the early
//! stream, where online learners differ most, is sampled as densely as the late), and at the
//! end. Per run:
//! - the curve: held-out accuracy at each checkpoint;
//! - `mean_accuracy`: the curve's mean over the checkpoints after 0 (the log-spaced area under
//!   the curve; the paper's online figure, Song et al. 2024 Fig. 4, reports the mean test error
//!   over training the same way);
//! - `final_accuracy`: after the whole stream;
//! - `stream_accuracy`: the share of stream samples the network classified right just before
//!   the step that trained on them (prequential, "test then train": the driver scores each batch
//!   in evaluation mode before the rule sees it, so no rule's own training statistics, which
//!   some compute after their update, enter it).
//!
//! A run whose loss diverges stops; its later checkpoints count at chance (1 / classes), its
//! stream accuracy is over the samples scored until then.
//!
//! A Hebbian rule's update budget (`hebb_updates`, counted in micro-batch updates) covers the
//! whole stream: at batch 1 SoftHebb's 10000 updates are 10000 samples.
//!
//! The learning rate, which online learning at batch 1 needs its own of, is chosen per rule by
//! `search`: every candidate (the same list for every rule compared) runs the stream once on
//! the training set less a validation split, scored by its mean accuracy on that split; the
//! test set is never seen.

use crate::config::TrainConfig;
use crate::data::Split;
use crate::nn::Shape;
use crate::rng::Rng;
use crate::train::Trainer;
use serde::Serialize;

/// The checkpoints (samples seen) of a stream of `n`: 0, the 1-2-5 series below n, and n.
pub fn checkpoints(n: usize) -> Vec<usize> {
    let mut c = vec![0];
    let mut decade = 1usize;
    'series: loop {
        for m in [1, 2, 5] {
            let v = m * decade;
            if v >= n {
                break 'series;
            }
            c.push(v);
        }
        decade *= 10;
    }
    if n > 0 {
        c.push(n);
    }
    c
}

/// One checkpoint of a run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    pub samples: usize,
    pub accuracy: f64,
}

/// One seed's pass over the stream.
#[derive(Clone, Debug, Serialize)]
pub struct OnlineRun {
    pub seed: u64,
    pub lr: f32,
    pub curve: Vec<Point>,
    pub mean_accuracy: f64,
    pub final_accuracy: f64,
    pub stream_accuracy: f64,
    /// Samples seen when the loss diverged (the rest of the stream is not trained).
    pub diverged_at: Option<usize>,
    pub train_seconds: f64,
}

/// One pass of `cfg` (its `lr`, `batch`) over the first `samples` of `train` in the seed's
/// order, evaluated on `eval` at the checkpoints, from a fresh network drawn from `seed`.
pub fn run(
    cfg: &TrainConfig,
    input: Shape,
    classes: usize,
    train: &Split,
    eval: &Split,
    samples: usize,
    seed: u64,
) -> Result<OnlineRun, String> {
    if samples == 0 || samples > train.n {
        return Err(format!("online: a stream of 1 to {} samples (the training split's size), not {samples}", train.n));
    }
    let mut cfg = cfg.clone();
    // One pass: the rule sees one epoch (a Hebbian rule's layers and read-out learn together).
    cfg.epochs = 1;
    cfg.seed = seed;
    let mut tr = Trainer::new(&cfg, input, classes, &mut Rng::new(seed))?;
    tr.score_before_step = true;
    // The chunks are trained in the stream's order (the same sequence for every arm of a seed).
    tr.keep_order = true;
    let mut order: Vec<usize> = (0..train.n).collect();
    Rng::new(seed ^ 0x4F4E_4C49).shuffle(&mut order);
    order.truncate(samples);
    let chance = 1.0 / classes as f64;
    let marks = checkpoints(samples);
    let mut curve = vec![Point { samples: 0, accuracy: tr.evaluate(eval) }];
    let (mut seen, mut seconds) = (0usize, 0.0f64);
    let mut diverged_at = None;
    for w in marks.windows(2) {
        let (from, to) = (w[0], w[1]);
        if diverged_at.is_none() {
            let chunk = crate::data::sampling::subset(train, &order[from..to]);
            // Every chunk is part of the one pass: epoch 0 for the rule's phases, their counters
            // (a Hebbian update budget) running on from chunk to chunk.
            if from > 0 {
                tr.continue_epoch();
            }
            let st = tr.train_epoch(&chunk, cfg.lr, |_, _| {});
            seconds += st.seconds;
            if let Some(b) = st.diverged_at {
                diverged_at = Some(from + b * cfg.batch);
                // The diverging batch was scored before its step: it counts among those seen.
                seen += ((b + 1) * cfg.batch).min(chunk.n);
            } else {
                seen += chunk.n;
            }
        }
        let accuracy = if diverged_at.is_some() { chance } else { tr.evaluate(eval) };
        curve.push(Point { samples: to, accuracy });
    }
    let after: Vec<f64> = curve[1..].iter().map(|p| p.accuracy).collect();
    Ok(OnlineRun {
        seed,
        lr: cfg.lr,
        mean_accuracy: after.iter().sum::<f64>() / after.len() as f64,
        final_accuracy: *after.last().unwrap(),
        stream_accuracy: if seen > 0 { tr.prequential_correct as f64 / seen as f64 } else { f64::NAN },
        curve,
        diverged_at,
        train_seconds: seconds,
    })
}

/// Choose among the `candidates` (the rate search's configurations, `protocol::rate_candidates`)
/// on a validation split (`val_fraction` of every class of `train`, the training split, drawn
/// from `seed`; the test split is not an argument):
/// one stream of `samples` (at most what the split leaves) per candidate, scored by its mean
/// validation accuracy; the best's index (the first on ties) and every trial.
pub fn search(
    candidates: &[super::Candidate],
    train: &Split,
    input: Shape,
    classes: usize,
    samples: usize,
    val_fraction: f32,
    seed: u64,
) -> Result<(usize, Vec<super::Trial>), String> {
    super::check_search(candidates, val_fraction, "online")?;
    let (train, val) =
        crate::data::sampling::split_validation(train, classes, val_fraction, &mut Rng::new(seed ^ super::VAL_SALT));
    crate::data::sampling::check_nonempty(&train, Some(&val), &format!("validation share {val_fraction}"))?;
    let mut trials = Vec::new();
    for c in candidates {
        let r = run(&c.cfg, input, classes, &train, &val, samples.min(train.n), seed)?;
        trials.push(super::Trial { value: c.value, score: r.mean_accuracy, diverged: r.diverged_at.is_some() });
    }
    Ok((super::best_trial(&trials), trials))
}

pub use super::MeanCi;

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub mean_accuracy: MeanCi,
    pub final_accuracy: MeanCi,
    pub stream_accuracy: MeanCi,
    /// The curve's mean and interval at each checkpoint.
    pub curve: Vec<(usize, MeanCi)>,
    pub diverged: usize,
}

/// Means and 95% intervals over the seeds' runs; `t975`: the t quantile at runs - 1 degrees of
/// freedom (`report::stats::t_quantile`).
pub fn summarise(runs: &[OnlineRun], t975: f64) -> Summary {
    let ci = |v: Vec<f64>| super::mean_ci(&v, t975);
    let points = runs[0].curve.len();
    Summary {
        mean_accuracy: ci(runs.iter().map(|r| r.mean_accuracy).collect()),
        final_accuracy: ci(runs.iter().map(|r| r.final_accuracy).collect()),
        stream_accuracy: ci(runs.iter().map(|r| r.stream_accuracy).collect()),
        curve: (0..points)
            .map(|i| (runs[0].curve[i].samples, ci(runs.iter().map(|r| r.curve[i].accuracy).collect())))
            .collect(),
        diverged: runs.iter().filter(|r| r.diverged_at.is_some()).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_follow_the_1_2_5_series() {
        assert_eq!(checkpoints(1), [0, 1]);
        assert_eq!(checkpoints(7), [0, 1, 2, 5, 7]);
        assert_eq!(checkpoints(100), [0, 1, 2, 5, 10, 20, 50, 100]);
        assert_eq!(checkpoints(60000).len(), 17);
    }

    /// `rule` at its preset on `arch`, one thread, `batch`.
    fn rule_on(rule: &str, arch: &str, batch: usize) -> TrainConfig {
        let mut t = toml::Table::new();
        t.insert("rule".into(), toml::Value::String(rule.into()));
        t.insert("arch".into(), toml::Value::String(arch.into()));
        t.insert("threads".into(), toml::Value::Integer(1));
        t.insert("batch".into(), toml::Value::Integer(batch as i64));
        TrainConfig::from_table(t).unwrap()
    }

    fn digits() -> crate::data::Dataset {
        crate::train::load_data(&TrainConfig::default()).unwrap().ds
    }

    /// BP at batch 1 learns the digits in one pass: far above chance after the stream, the
    /// curve rising from its start, every sample counted once; the same seed gives the same run.
    #[test]
    fn backprop_learns_online_and_reproducibly() {
        let ds = digits();
        let cfg =
            TrainConfig { arch: "mlp:64".into(), batch: 1, lr: 0.02, momentum: 0.0, threads: 1, ..Default::default() };
        let input = Shape::new(ds.channels, ds.height, ds.width);
        let r = run(&cfg, input, 10, &ds.train, &ds.test, 1000, 3).unwrap();
        assert_eq!(r.curve.last().unwrap().samples, 1000);
        assert!(r.final_accuracy > 0.85, "{r:?}");
        assert!(r.curve[0].accuracy < 0.3, "{r:?}");
        assert!(r.stream_accuracy > 0.5 && r.stream_accuracy < r.final_accuracy, "{r:?}");
        let again = run(&cfg, input, 10, &ds.train, &ds.test, 1000, 3).unwrap();
        assert_eq!(format!("{:?}", r.curve), format!("{:?}", again.curve));
        assert!(run(&cfg, input, 10, &ds.train, &ds.test, ds.train.n + 1, 3).is_err());
    }

    /// A Hebbian rule in one pass trains its read-out too (the concurrent phase): far above
    /// chance, where a read-out left untrained would stay near it.
    #[test]
    fn a_hebbian_rule_learns_its_read_out_in_the_one_pass() {
        let ds = digits();
        let cfg = rule_on("softhebb", "softhebb-mlp:64", 1);
        let input = Shape::new(ds.channels, ds.height, ds.width);
        let r = run(&cfg, input, 10, &ds.train, &ds.test, 1000, 0).unwrap();
        assert!(r.final_accuracy > 0.3 && r.final_accuracy > r.curve[0].accuracy + 0.2, "{r:?}");
    }

    /// The stream accuracy is the driver's, scored before each update: Activation Learning's
    /// own training statistic (its class scores after learning the sample with its label) would
    /// be near 100%; scored before, it stays below the held-out accuracy after the stream.
    #[test]
    fn the_stream_accuracy_is_scored_before_each_update() {
        let ds = digits();
        let cfg = rule_on("activation-learning", "al-mlp:64", 1);
        let input = Shape::new(ds.channels, ds.height, ds.width);
        let r = run(&cfg, input, 10, &ds.train, &ds.test, 1000, 0).unwrap();
        assert!(r.stream_accuracy < r.final_accuracy && r.stream_accuracy < 0.9, "{r:?}");
        assert!(r.final_accuracy > 0.5, "{r:?}");
    }

    /// Scoring each batch before its step leaves training exactly as it was (its own workspace
    /// and RNG): the same weights after an epoch with and without it, for a rule that draws
    /// from the training RNG (dropout) and one that answers by its own prediction.
    #[test]
    fn scoring_before_each_step_does_not_change_training() {
        let ds = digits();
        let input = Shape::new(ds.channels, ds.height, ds.width);
        for (rule, arch) in [("bp", "mlp:32/dropout=0.2"), ("activation-learning", "al-mlp:32")] {
            let cfg = rule_on(rule, arch, 16);
            let weights = |score: bool| {
                let mut tr = Trainer::new(&cfg, input, 10, &mut Rng::new(5)).unwrap();
                tr.score_before_step = score;
                tr.train_epoch(&ds.train, cfg.lr, |_, _| {});
                (tr.net.params.iter().map(|p| p.data.clone()).collect::<Vec<_>>(), tr.prequential_correct)
            };
            let (off, none) = weights(false);
            let (on, hits) = weights(true);
            assert_eq!(none, 0);
            assert!(hits > 0, "{rule}");
            assert!(off == on, "{rule}: scoring changed the weights");
        }
    }

    /// The search picks a rate that learns over one that cannot (on the training split alone: the
    /// test split is not an argument).
    #[test]
    fn the_search_prefers_a_rate_that_learns() {
        let ds = digits();
        let cfg = TrainConfig { arch: "mlp:32".into(), batch: 1, momentum: 0.0, threads: 1, ..Default::default() };
        let cands = crate::protocol::rate_candidates(&cfg, "lr", &[1e-7, 0.02], false).unwrap();
        let input = Shape::new(ds.channels, ds.height, ds.width);
        let (best, trials) = search(&cands, &ds.train, input, 10, 500, 0.2, 0).unwrap();
        assert_eq!(best, 1, "{trials:?}");
        assert_eq!(trials[1].value as f32, 0.02);
        assert!(search(&[], &ds.train, input, 10, 500, 0.2, 0).is_err());
        assert!(search(&cands, &ds.train, input, 10, 500, 1.0, 0).is_err());
    }
}
