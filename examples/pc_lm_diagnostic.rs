//! Diagnostic, not a check: standard predictive coding training the Devil's Dictionary language
//! model (`gpt:2,128,4`), printing every 25 steps BP's gradient on the same batch beside PC's
//! update, per trainable tensor (the cosine and the norm ratio) and the training loss, and every 5
//! steps the energy after each inference step. The README's account of why standard PC collapses
//! on the transformer quotes what this prints. Needs `apt-get install -y dict-devil`; about two
//! minutes. Settings from the environment: `PC_EMBED` (embedding std), `PC_OPT` (`adamw` or
//! `sgd`), `PC_LR`, `PC_GAMMA`, `PC_STEPS`, `PC_CURV` (`pc_curvature_iters`), `PC_PER_NODE`,
//! `PC_ITERS`, `PC_BETA` (the output nudge; 1 clamps the output to the label):
//!   PC_OPT=adamw PC_GAMMA=0.1 cargo run --release --example pc_lm_diagnostic

use biolearn::nn::{Activation, Init, Loss, Shape, Workspace};
use biolearn::optim::{OptimConfig, Optimizer, OptimizerKind};
use biolearn::rng::Rng;
use biolearn::rules::predictive_coding::{Energy, PcConfig, PredictiveCoding};
use biolearn::rules::{forward_with_error, Rule, Step, Updater};

/// PC's update on one batch (the rule's step, as the driver takes it).
fn grads_of(rule: &mut dyn Rule, net: &mut biolearn::nn::Network, x: &[f32], y: &[u32]) -> Vec<Vec<f32>> {
    let mut ws = Workspace::default();
    net.prepare(&mut ws, x.len() / net.input_shape().len());
    ws.input_mut().copy_from_slice(x);
    let mut g = net.zero_grads();
    rule.step(&mut Step::new(net, &mut ws, y, Loss::Ce, &mut g, &mut Rng::new(1)));
    g
}

fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let data = biolearn::data::text::load_devil(None).expect("apt-get install -y dict-devil");
    let spec: biolearn::nn::arch::ArchSpec = format!("gpt:2,128,4/embed={}", env("PC_EMBED", "1")).parse().unwrap();
    let ctx = data.train.dim;
    let mut net =
        spec.build(Shape::flat(ctx), data.num_classes, Activation::Relu, Init::Torch, &mut Rng::new(0)).unwrap();
    let kind = if env("PC_OPT", "adamw") == "sgd" { OptimizerKind::Sgd } else { OptimizerKind::Adamw };
    let lr: f32 = env("PC_LR", if kind == OptimizerKind::Sgd { "0.1" } else { "0.0006" }).parse().unwrap();
    let momentum = if kind == OptimizerKind::Sgd { 0.9 } else { 0.0 };
    let mut opt = Optimizer::new(OptimConfig { kind, lr, momentum, ..Default::default() }, &net.update_sizes());
    // Standard PC (no fixed prediction, no tolerance), the categorical output energy, beta 1
    // unless `PC_BETA` says otherwise.
    let cfg = PcConfig {
        steps: env("PC_STEPS", "5").parse().unwrap(),
        gamma: env("PC_GAMMA", "0.1").parse().unwrap(),
        momentum: 0.0,
        energy: Energy::Ce,
        beta: env("PC_BETA", "1").parse().unwrap(),
        curvature_iters: env("PC_CURV", "0").parse().unwrap(),
        curvature_per_node: env("PC_PER_NODE", "0") == "1",
        ..PcConfig::default()
    };
    let mut pc = PredictiveCoding::new(&net, cfg).unwrap();
    let (n, t) = (32, data.train.targets());
    let mut rng = Rng::new(3);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(u, v)| (*u as f64) * (*v as f64)).sum::<f64>();
    let iters: usize = env("PC_ITERS", "300").parse().unwrap();
    for it in 0..=iters {
        let idx: Vec<usize> = (0..n).map(|_| rng.below(data.train.n)).collect();
        let x: Vec<f32> = idx.iter().flat_map(|&i| data.train.x[i * ctx..(i + 1) * ctx].to_vec()).collect();
        let y: Vec<u32> = idx.iter().flat_map(|&i| data.train.y[i * t..(i + 1) * t].to_vec()).collect();
        let g = grads_of(&mut pc, &mut net, &x, &y);
        if it % 5 == 0 {
            let tr: Vec<String> = pc.trace.iter().map(|e| format!("{e:.4e}")).collect();
            eprintln!(
                "step {it} inference energies: {} (rate {:.4}, curvature {:.1})",
                tr.join(" "),
                pc.last.gamma,
                pc.last.curvature
            );
        }
        if it % 25 == 0 {
            let mut ws = Workspace::default();
            net.prepare(&mut ws, n);
            ws.input_mut().copy_from_slice(&x);
            let mut bp = net.zero_grads();
            let loss = forward_with_error(&mut net, &mut ws, &y, Loss::Ce, &mut Rng::new(1)).loss_sum / y.len() as f64;
            net.backward(&mut ws, &mut bp, 0, net.num_layers(), None, false);
            let row: Vec<String> = net
                .params
                .iter()
                .enumerate()
                .filter(|(_, p)| p.trainable())
                .map(|(i, p)| {
                    let (ab, aa, bb) = (dot(&g[i], &bp[i]), dot(&g[i], &g[i]), dot(&bp[i], &bp[i]));
                    format!("{} {:.2}/{:.2}", p.name, ab / (aa * bb).sqrt().max(1e-30), (aa / bb.max(1e-30)).sqrt())
                })
                .collect();
            eprintln!("step {it} loss {loss:.3}: {}", row.join("  "));
        }
        let mut upd = Updater { opt: &mut opt, lr, masks: None, device: None };
        upd.apply(&mut net, &g);
    }
}
