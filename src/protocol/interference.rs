//! Interference: how much learning one target disturbs the network's other outputs, the
//! demonstration behind prospective configuration (Song et al. 2024, Nat. Neurosci., "Inferring
//! neural activity before plasticity as a foundation for learning beyond backpropagation";
//! official code `YuhangSong/Prospective-Configuration`, `experiments/nature_target_alignment`).
//! Any rule that trains a linear MLP end to end runs both experiments through the same `Trainer`
//! as every other run (MSE loss against the one-hot target; predictive coding's output energy
//! set to the Gaussian one, the same objective, whatever its preset says).
//!
//! 1. **The 1-1-2 example** (the paper's Fig. 1; `base-112.yaml`): input x = 1, one linear hidden
//!    unit, two linear outputs, every weight 1, no biases, so both outputs predict 1. The target
//!    is (0, 1): the first output must unlearn, the second is already right. SGD at rate 0.2 on
//!    this one sample, `iterations` times; the outputs are recorded before each step. Backprop
//!    lowers the hidden weight along with the first output's, so the second output drops too
//!    (interference); in prospective configuration the hidden activity settles where the second
//!    output's error is small before any weight moves, and the second output barely changes.
//!    By hand, the first step: BP gives (0.64, 0.80); PC at equilibrium (x_h = 2/3) gives
//!    (0.911 * 0.933, 1.044 * 0.933) = (0.850, 0.975).
//!
//! 2. **Target alignment against depth** (Fig. 3; `base-depth.yaml`): a linear MLP of `width`
//!    units per layer and `depth` weight layers (Xavier-uniform, no biases) takes one SGD step at
//!    rate 0.001 on one random sample x ~ N(0, I); the target alignment is
//!    cos(y_after - y_before, t - y_before), 1 when the output moves straight to its target and
//!    lower the more the step disturbs the outputs that were not asked to move. Deviation from
//!    the paper: the target t is a one-hot class vector (biolearn's targets are labels), the
//!    paper's a Gaussian vector; the direction t - y_before is generic either way.

use crate::config::TrainConfig;
use crate::data::Split;
use crate::nn::{Activation, Init, Loss, Shape};
use crate::optim::OptimizerKind;
use crate::rng::Rng;
use crate::train::Trainer;
use serde::Serialize;

/// The settings both experiments impose on a rule's configuration: a linear MLP trained by
/// plain SGD on MSE, one sample a step (the rule's own settings stay).
fn linear_sgd(cfg: &TrainConfig, arch: String, lr: f32, init: Init) -> TrainConfig {
    let mut settings = cfg.settings.clone();
    // Predictive coding's output energy is the experiments' loss (a categorical energy would be
    // cross-entropy, another objective than the MSE every other rule descends).
    if settings.contains_key("pc_energy") {
        settings.insert("pc_energy".into(), toml::Value::String("gaussian".into()));
    }
    TrainConfig {
        settings,
        arch,
        activation: Activation::Identity,
        loss: Loss::Mse,
        init,
        epochs: 1,
        batch: 1,
        optimizer: OptimizerKind::Sgd,
        lr,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
        threads: 1,
        ..cfg.clone()
    }
}

/// The network's evaluation-mode outputs for one input.
fn outputs(tr: &mut Trainer, x: &[f32], classes: usize) -> Vec<f32> {
    let split = Split { n: 1, x: x.to_vec(), y: vec![0], dim: x.len() };
    let out = tr.outputs(&split);
    debug_assert_eq!(out.len(), classes);
    out
}

/// The 1-1-2 example: the outputs (y1, y2) before each of `iterations` steps and after the
/// last, and the step whose loss diverged (1-based; the path ends before it).
pub fn example_112(cfg: &TrainConfig, iterations: usize) -> Result<(Vec<[f64; 2]>, Option<usize>), String> {
    let cfg = linear_sgd(cfg, "mlp:1/nobias".into(), 0.2, Init::Xavier);
    let mut tr = Trainer::new(&cfg, Shape::flat(1), 2, &mut Rng::new(cfg.seed))?;
    for i in tr.net.weight_layers() {
        let w = tr.net.layers[i].weight().expect("a weight layer has a weight");
        tr.net.params[w].data.fill(1.0);
    }
    let sample = Split { n: 1, x: vec![1.0], y: vec![1], dim: 1 };
    let mut path = Vec::with_capacity(iterations + 1);
    for it in 0..=iterations {
        let y = outputs(&mut tr, &sample.x, 2);
        path.push([y[0] as f64, y[1] as f64]);
        if it == iterations {
            break;
        }
        // Every step continues the one epoch (epoch 0 for the rule).
        if it > 0 {
            tr.continue_epoch();
        }
        let stats = tr.train_epoch(&sample, cfg.lr, |_, _| {});
        if stats.diverged_at.is_some() || tr.net.params.iter().any(|p| p.data.iter().any(|v| !v.is_finite())) {
            return Ok((path, Some(it + 1)));
        }
    }
    Ok((path, None))
}

/// The target alignment of one step on one random sample, for a linear MLP of `depth` weight
/// layers of `width` units (drawn from `seed`), or None if the step did not move the output.
pub fn target_alignment(cfg: &TrainConfig, depth: usize, width: usize, seed: u64) -> Result<Option<f64>, String> {
    if depth == 0 || width == 0 {
        return Err("target alignment: depth and width from 1".into());
    }
    let arch = if depth == 1 {
        "linear/nobias".to_string()
    } else {
        format!("mlp:{}/nobias", vec![width.to_string(); depth - 1].join(","))
    };
    let mut cfg = linear_sgd(cfg, arch, 0.001, Init::Xavier);
    cfg.seed = seed;
    let mut tr = Trainer::new(&cfg, Shape::flat(width), width, &mut Rng::new(seed))?;
    let mut rng = Rng::new(seed ^ 0x414C_4947);
    let x: Vec<f32> = (0..width).map(|_| rng.normal()).collect();
    let label = rng.below(width) as u32;
    let sample = Split { n: 1, x, y: vec![label], dim: width };
    let before = outputs(&mut tr, &sample.x, width);
    let stats = tr.train_epoch(&sample, cfg.lr, |_, _| {});
    if stats.diverged_at.is_some() {
        return Err(format!("{}: the step diverged (depth {depth})", cfg.rule));
    }
    let after = outputs(&mut tr, &sample.x, width);
    let (mut dot, mut nd, mut nt) = (0.0f64, 0.0f64, 0.0f64);
    for j in 0..width {
        let d = (after[j] - before[j]) as f64;
        let t = (if j == label as usize { 1.0 } else { 0.0 }) - before[j] as f64;
        dot += d * t;
        nd += d * d;
        nt += t * t;
    }
    Ok((nd > 0.0 && nt > 0.0).then(|| dot / (nd.sqrt() * nt.sqrt())))
}

/// One rule's results: the 1-1-2 path and the alignment per depth (one value per seed).
#[derive(Clone, Debug, Serialize)]
pub struct InterferenceRun {
    /// The rule and its preset ("" = default), as given.
    pub arm: String,
    pub rule: String,
    pub preset: String,
    /// (y1, y2) before each step of the 1-1-2 example and after the last.
    pub example_112: Vec<[f64; 2]>,
    /// The step of the 1-1-2 example whose loss diverged (the path ends before it).
    pub example_112_diverged: Option<usize>,
    /// The second output's largest distance from its target 1 along the path (the
    /// interference the example shows).
    pub max_disturbance: f64,
    /// Per depth: the alignment of each seed (None: the output did not move).
    pub alignment: Vec<(usize, Vec<Option<f64>>)>,
    /// Depths the rule cannot run, or whose step diverged, and why.
    pub skipped: Vec<(usize, String)>,
}

/// Both experiments for one rule configuration.
pub fn run(
    arm: &str,
    cfg: &TrainConfig,
    iterations: usize,
    depths: &[usize],
    width: usize,
    seeds: u64,
) -> Result<InterferenceRun, String> {
    let (example_112, example_112_diverged) = example_112(cfg, iterations)?;
    let max_disturbance = example_112.iter().map(|p| (p[1] - 1.0).abs()).filter(|d| d.is_finite()).fold(0.0, f64::max);
    let (mut alignment, mut skipped) = (Vec::new(), Vec::new());
    for &d in depths {
        // A rule that needs a hidden layer cannot run depth 1: that depth is skipped, with why.
        match (0..seeds).map(|s| target_alignment(cfg, d, width, s)).collect::<Result<Vec<_>, _>>() {
            Ok(per_seed) => alignment.push((d, per_seed)),
            Err(e) => skipped.push((d, e)),
        }
    }
    Ok(InterferenceRun {
        arm: arm.to_string(),
        rule: cfg.rule.to_string(),
        preset: cfg.preset.clone(),
        example_112,
        example_112_diverged,
        max_disturbance,
        alignment,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rule: &str, settings: &[(&str, toml::Value)]) -> TrainConfig {
        let mut t = toml::Table::new();
        t.insert("rule".into(), toml::Value::String(rule.into()));
        for (k, v) in settings {
            t.insert(k.to_string(), v.clone());
        }
        TrainConfig::from_table(t).unwrap()
    }

    /// The first step of the 1-1-2 example, by hand (module docs): BP (0.64, 0.80); PC relaxed
    /// to equilibrium (0.850, 0.975).
    #[test]
    fn the_112_example_by_hand() {
        let bp = example_112(&cfg("bp", &[]), 1).unwrap().0;
        assert_eq!(bp[0], [1.0, 1.0]);
        assert!((bp[1][0] - 0.64).abs() < 1e-6 && (bp[1][1] - 0.8).abs() < 1e-6, "{bp:?}");
        let eq = [
            ("pc_energy", toml::Value::String("gaussian".into())),
            ("pc_steps", toml::Value::Integer(2000)),
            ("pc_gamma", toml::Value::Float(0.1)),
            ("pc_momentum", toml::Value::Float(0.0)),
            ("pc_beta", toml::Value::Float(1.0)),
            ("pc_tol", toml::Value::Float(0.0)),
        ];
        let pc = example_112(&cfg("pc", &eq), 1).unwrap().0;
        let (h, v1, v2) = (1.0 - 0.2 / 3.0, 1.0 - 0.2 * 4.0 / 9.0, 1.0 + 0.2 * 2.0 / 9.0);
        assert!((pc[1][0] - v1 * h).abs() < 1e-4 && (pc[1][1] - v2 * h).abs() < 1e-4, "{pc:?}");
    }

    /// One linear layer: every rule's step moves the output straight at its target (alignment
    /// 1); deeper, backprop's step turns away from it.
    #[test]
    fn alignment_is_one_for_one_layer_and_falls_with_depth_for_backprop() {
        let bp = cfg("bp", &[]);
        for s in 0..3 {
            let a = target_alignment(&bp, 1, 16, s).unwrap().unwrap();
            assert!((a - 1.0).abs() < 1e-4, "seed {s}: {a}");
        }
        let deep: f64 = (0..3).map(|s| target_alignment(&bp, 8, 16, s).unwrap().unwrap()).sum::<f64>() / 3.0;
        assert!(deep < 0.95, "depth 8: {deep}");
    }
}
