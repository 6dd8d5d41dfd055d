//! A learning rule from outside biolearn, registered through the public API: no fork, no edit
//! of biolearn's sources. `cargo run --release --example custom_rule`.
//!
//! The rule is "shallow learning" (the baseline of Frenkel et al. 2021): only the last
//! `train_last` weight layers learn, by backprop through them alone; the layers below keep their
//! random initialisation. Its one setting is declared with `biolearn::settings!`, so `--set`,
//! plans and `biolearn rules shallow` know it, documented and checked.

use biolearn::config::TrainConfig;
use biolearn::rules::{self, forward_with_error, Rule, RuleEntry, Step, StepStats};

biolearn::settings! {
    /// Shallow learning's settings.
    pub struct ShallowSettings {
        /// Trailing weight layers that learn (1: the output layer only).
        pub train_last: usize = 1,
    }
    check(s) { biolearn::rules::settings::count("train_last", s.train_last, 1000) }
}

/// Backprop through the last `train_last` weight layers only.
pub struct Shallow {
    /// First layer of the trained block.
    from: usize,
}

impl Rule for Shallow {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        let l = net.num_layers();
        // Zero updates below `from`: the optimiser leaves those layers as they are.
        for g in grads.iter_mut() {
            g.fill(0.0);
        }
        net.backward(ws, grads, self.from, l, None, false);
        stats
    }
}

pub static SHALLOW: RuleEntry = RuleEntry {
    name: "shallow",
    summary:
        "shallow learning: only the last train_last weight layers learn (backprop through them), the rest stay random",
    paper: "Frenkel, Lefebvre & Bol 2021 (their 'shallow' baseline)",
    reported: "",
    preset: "",
    presets: &[],
    settings: rules::SettingsKind::of::<ShallowSettings>(),
    build: |net, cx, _| {
        let s: ShallowSettings = cx.settings()?;
        let wl = net.weight_layers();
        if s.train_last > wl.len() {
            return Err(format!("train_last = {} but the network has {} weight layers", s.train_last, wl.len()));
        }
        Ok(Box::new(Shallow { from: wl[wl.len() - s.train_last] }))
    },
};

/// Register the rule and train it on the embedded digits; returns (shallow, bp) test accuracy.
pub fn run() -> Result<(f64, f64), Box<dyn std::error::Error>> {
    if "shallow".parse::<rules::RuleName>().is_err() {
        rules::register(SHALLOW)?;
    }
    let acc = |rule: &str| -> Result<f64, Box<dyn std::error::Error>> {
        let t: toml::Table = format!("rule = '{rule}'\narch = 'mlp:256'\nepochs = 5\nthreads = 1").parse().unwrap();
        let cfg = TrainConfig::load(None, t)?;
        Ok(biolearn::train::run(&cfg, &Default::default(), &mut |_| {})?.0.test_accuracy)
    };
    Ok((acc("shallow")?, acc("bp")?))
}

#[allow(dead_code)]
fn main() {
    match run() {
        Ok((shallow, bp)) => {
            println!("digits, MLP 64-256-10, 5 epochs: shallow {shallow:.4}, bp {bp:.4}");
            println!("{}", biolearn::rules::RuleName::named("shallow").info().0);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
