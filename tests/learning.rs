//! Every rule learns the embedded digits well above chance within a few epochs (a smoke test of
//! the whole path: data, network, rule, optimiser, evaluation), through the library API.

use biolearn::config::TrainConfig;
use biolearn::rules::RuleName;
use biolearn::train;

/// Whether the rule's preset network needs larger images than the digits' 8x8.
fn needs_larger_images(rule: RuleName) -> bool {
    let t: toml::Table = format!("rule = '{rule}'").parse().unwrap();
    TrainConfig::load(None, t).unwrap().arch_spec().unwrap().min_side() > 8
}

/// The network spec with every width set to 32 (its `/` options kept as they are).
fn narrow(arch: &str) -> String {
    let (arch, opts) = arch.split_once('/').map_or((arch, None), |(a, o)| (a, Some(o)));
    let mut out = String::new();
    let mut digits = false;
    for c in arch.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push_str("32");
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    if let Some(o) = opts {
        out.push('/');
        out.push_str(o);
    }
    out
}

/// Rules known not to beat their read-out-only baseline here, with the accuracy each must still
/// reach without diverging (a little under its measured figure) and why; the test fails when one
/// of them starts to beat it (so this list stays true) or falls under its floor. SoftHebb left it
/// when its unsupervised phase became a number of updates (92.5% vs 62.1%; 94.2% vs 78.0% at its
/// tuned preset).
const BELOW_BASELINE: &[(&str, f64, &str)] = &[
    (
        "stdp",
        0.60,
        "a 32-neuron winner-take-all spiking layer gives the read-out at most one spike per step, a \
         one-of-32 code: 68.3% against the read-out of a dense random ReLU layer's 88.3% (session 14, \
         its constants as re-chosen on the digits' validation split). At its preset width (400) on \
         the digits, 10 epochs: 81.9%, the same layer untrained (stdp_epochs = 0) 79.9%",
    ),
    (
        "pepita-wm",
        0.80,
        "on the 32-unit net its mirrored F leaves the hidden layer nearly untrained: 85.2% vs read-out only \
         85.8% (validation with the mirroring noise at 0.1 / 0.3 / 1.0: 85.0 / 85.0 / 79.1); not diagnosed \
         further (session 9). On Fashion-MNIST's 1024-unit net it trains: 83.7% validation after 3 epochs \
         beside PEPITA's 84.2%",
    ),
    (
        "align-zero",
        0.12,
        "a rule for wide networks (the NTK regime): it descends the linearisation at initialisation, \
         which a 32-unit net leaves quickly (14.8% here). On the digits at its preset, 20 epochs, two \
         hidden layers of 64 / 256 / 1024: 22.0 / 78.3 / 95.3% against BP's 95.8 / 96.4 / 96.4 (README)",
    ),
];

#[test]
fn every_rule_learns_digits_and_beats_its_read_out_only_baseline() {
    // Each rule with its own defaults (`RuleName::preset`) under a fixed small budget, on its
    // preset's kind and depth of network made narrow (32 units per hidden layer), against the
    // same run in which only the read-out learns (random hidden layers of that width are a weak
    // baseline: learned ones must beat it by 5 points).
    let mut failed = Vec::new();
    for rule in RuleName::all() {
        if needs_larger_images(rule) {
            continue; // `rules_on_conv_nets_learn_a_fashion_mnist_subset`
        }
        let mut t: toml::Table = format!("rule = '{rule}'\nepochs = 20\nthreads = 1\nseed = 3").parse().unwrap();
        if rule.as_str() == "pc-positive" {
            // 1438 images are 23 steps per epoch at its preset batch 64: too few for Adam 1e-3
            // on its sigmoid-MSE output (at batch 16: 71.9% here, 93.6% at its width 300).
            t.insert("batch".into(), toml::Value::Integer(16));
        }
        if rule.as_str().starts_with("pepita") {
            // The preset's lr 0.01 is the paper's CIFAR-10 rate; on MNIST it used 0.1. At 0.01 the
            // 32-unit net reaches 76.3% here in 460 steps (read-out only 73.8%). F's scale 0.1 (the
            // preset's 0.05) was chosen on the digits' validation split (20% held out, seed 3, lr
            // 0.1): F scale 0.05 / 0.1 / 0.2 / 0.5 gave 91.6 / 93.4 / 93.0 / 23.7 (diverged).
            t.insert("lr".into(), toml::Value::Float(0.1));
            t.insert("pepita_f_scale".into(), toml::Value::Float(0.1));
        }
        if rule.as_str() == "desire" {
            // The preset is the paper's Fashion-MNIST setting (lr 1e-5 for 784 inputs into 1000
            // units, dropout 0.4 on the hidden layers): on 64 inputs into 32-unit layers it
            // barely moves in 20 epochs (11.7% here). lr and hidden dropout chosen on the digits'
            // validation split, never this test's accuracy: `biolearn tune --rule desire --arch
            // mlp:32,32/nobias --seed 3 --space lr=log:1e-5:1e-2,desire_dropout_hidden=lin:0:0.4
            // --set desire_dropout_in=0 --trials 16 --epochs 20 --subset 1.0 --val-fraction 0.2`:
            // best trial 7, validation 88.9%.
            t.insert("lr".into(), toml::Value::Float(1.4989e-4));
            t.insert("desire_dropout_hidden".into(), toml::Value::Float(0.1702));
            t.insert("desire_dropout_in".into(), toml::Value::Float(0.0));
        }
        let mut cfg = TrainConfig::load(None, t).unwrap();
        cfg.arch = narrow(&cfg.arch);
        let (r, _) = train::run(&cfg, &Default::default(), &mut |_| {}).unwrap();
        let base_cfg = TrainConfig { rule: readout_baseline::name(), settings: Default::default(), ..cfg.clone() };
        let (b, _) = train::run(&base_cfg, &Default::default(), &mut |_| {}).unwrap();
        eprintln!("{rule} on {}: {:.4} (read-out only: {:.4})", cfg.arch, r.test_accuracy, b.test_accuracy);
        // Measured when written (seed 3, 20 epochs, width 32; read-out only in brackets): BP
        // 96.1 (76.0), FA 95.3, uSF 95.8, brSF 96.1, frSF 95.8, DFA 95.5, DRTP 91.1, PC 96.1
        // (near-BP preset; 95.8 clamped), iPC 94.4 (17.3), PC-FPA 96.1 (= BP's gradient; 95.3 at
        // the old settings), PC-positive 71.9 (9.5), PEPITA 92.5 (85.8; lr 0.1, F scale 0.1), TPSGD 69.6 (36.8; its preset lr 0.0047, tuned on Fashion-MNIST, is slow on 460 steps), PAL 95.0, EP 95.8 (72.1), CHL 95.8 (95.3 with 4 clamped steps), DTP
        // 96.1, FW-DTP 96.4, SoftHebb 94.2 (78.0 at its tuned read-out rate; 54.0 vs 62.1 when its unsupervised phase was one pass), Activation Learning 93.3 (76.9). Chance: 10%.
        let beats = r.diverged.is_none() && r.test_accuracy > 0.6 && r.test_accuracy > b.test_accuracy + 0.05;
        match (beats, BELOW_BASELINE.iter().find(|(n, _, _)| *n == rule.as_str())) {
            (false, None) => {
                failed.push(format!("{rule}: {:.4} vs read-out only {:.4}", r.test_accuracy, b.test_accuracy))
            }
            (true, Some(_)) => failed.push(format!("{rule} now beats its baseline: take it off BELOW_BASELINE")),
            (false, Some((_, floor, _))) if r.diverged.is_some() || r.test_accuracy < *floor => failed
                .push(format!("{rule}: {:.4} (diverged: {:?}), under its floor {floor}", r.test_accuracy, r.diverged)),
            (false, Some((_, _, why))) => eprintln!("  known: {rule} does not beat it: {why}"),
            (true, None) => {}
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}

/// The Hebbian conv rules' preset networks need 28x28 inputs: three epochs (unsupervised, then
/// the read-out on the frozen features: at least the last epoch is the read-out's) on 1000
/// Fashion-MNIST training images at batch 20 (50 read-out steps an epoch), tested on 500
/// (skipped, with a message, where the data set is not installed; CI installs it).
/// The run's data set, or None (a skip, with a message) where it is not installed; under
/// `BIOLEARN_REQUIRE_DATA=1` (set by `.ci/run`, which installs Fashion-MNIST) a missing data set
/// fails the test instead.
fn data_or_skip(cfg: &TrainConfig) -> Option<train::Loaded> {
    match train::load_data(cfg) {
        Ok(l) => Some(l),
        Err(e) if std::env::var("BIOLEARN_REQUIRE_DATA").as_deref() == Ok("1") => {
            panic!("BIOLEARN_REQUIRE_DATA=1 but the data set does not load: {e}")
        }
        Err(e) => {
            eprintln!("{e}: skipped");
            None
        }
    }
}

/// `cfg` trained on the first `train` training and `test` test images of the loaded data set.
fn run_on_first(cfg: &TrainConfig, mut l: train::Loaded, train: usize, test: usize) -> train::RunResult {
    let keep = |s: &biolearn::data::Split, n: usize| biolearn::data::sampling::subset(s, &(0..n).collect::<Vec<_>>());
    l.ds.train = keep(&l.ds.train, train);
    l.ds.test = keep(&l.ds.test, test);
    train::run_on(cfg, &Default::default(), &l.ds, &l.checksum, &mut |_| {}).unwrap().0
}

#[test]
fn rules_on_conv_nets_learn_a_fashion_mnist_subset() {
    let rules: Vec<RuleName> = RuleName::all().into_iter().filter(|r| needs_larger_images(*r)).collect();
    assert!(rules.len() >= 2, "{rules:?}");
    for rule in rules {
        let t: toml::Table =
            format!("rule = '{rule}'\ndata = 'fashion-mnist'\nepochs = 3\nbatch = 20\nthreads = 2\nseed = 1")
                .parse()
                .unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let Some(l) = data_or_skip(&cfg) else { return };
        let r = run_on_first(&cfg, l, 1000, 500);
        eprintln!("{rule}, 1000 images: {:?}", r.epochs.iter().map(|e| e.test_accuracy).collect::<Vec<_>>());
        // Measured when written (1000 images, epochs 1, 2, 3): softhebb-deep 7.6 (unsupervised
        // epoch, untrained read-out), 73.2, 78.6%; hebb-wta 11.8, 9.0 (its 5 unsupervised epochs
        // cut to 2), 56.8%. Chance is 10%.
        assert!(r.test_accuracy > 0.35, "{rule}: {}", r.test_accuracy);
    }
}

/// The driver's cache of a frozen prefix (the Hebbian layers during the read-out epochs) gives
/// the run it would give without it: the same losses, accuracies and read-out weights. On the
/// digits (dense SoftHebb) and on a small Fashion-MNIST subset (the conv blocks, with batch
/// norm, padded pooling and dropout; skipped where the data set is not installed).
#[test]
fn frozen_prefix_cache_changes_nothing() {
    use biolearn::nn::Shape;
    use biolearn::rng::Rng;
    let cases = [
        ("rule = 'softhebb'\narch = 'softhebb-mlp:100'\nhebb_epochs = 1", 0),
        ("rule = 'softhebb-deep'\narch = 'softhebb-cnn:4,8,16'\ndata = 'fashion-mnist'", 300),
    ];
    for (toml, keep) in cases {
        let t: toml::Table = format!("{toml}\nepochs = 3\nthreads = 1").parse().unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let Some(mut l) = data_or_skip(&cfg) else { continue };
        if keep > 0 {
            let sub = |s: &biolearn::data::Split| biolearn::data::sampling::subset(s, &(0..keep).collect::<Vec<_>>());
            l.ds.train = sub(&l.ds.train);
            l.ds.test = sub(&l.ds.test);
        }
        let ds = &l.ds;
        let run = |cache: bool| {
            let mut rng = Rng::new(5);
            let shape = Shape::new(ds.channels, ds.height, ds.width);
            let mut tr = train::Trainer::new(&cfg, shape, ds.num_classes, &mut rng).unwrap();
            tr.cache_frozen = cache;
            let mut hist = Vec::new();
            let mut last_macs = 0;
            for _ in 0..3 {
                let st = tr.train_epoch(&ds.train, 0.01, |_, _| {});
                hist.push((st.loss, tr.evaluate(&ds.test), tr.evaluate(&ds.train)));
                last_macs = st.macs;
            }
            (hist, tr.net.params.iter().map(|p| p.data.clone()).collect::<Vec<_>>(), last_macs)
        };
        let (h1, p1, m1) = run(true);
        let (h0, p0, m0) = run(false);
        // The cache is used: the last read-out epoch runs the read-out alone on cached features.
        assert!(m1 * 2 < m0, "multiply-adds of the last epoch, cached {m1} vs plain {m0}");
        eprintln!("{toml}\ncached {h1:?}\nplain  {h0:?}");
        for ((l1, a1, b1), (l0, a0, b0)) in h1.iter().zip(&h0) {
            assert!((l1 - l0).abs() < 1e-4 * l0.abs(), "{l1} vs {l0}");
            assert!((a1 - a0).abs() < 4e-3 && (b1 - b0).abs() < 4e-3, "{a1}/{b1} vs {a0}/{b0}");
        }
        for (a, b) in p1.iter().flatten().zip(p0.iter().flatten()) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn train_with_val_fraction_holds_out_a_fifth_and_records_its_accuracy() {
    let cfg = TrainConfig { epochs: 1, val_fraction: 0.2, threads: 1, ..TrainConfig::default() };
    let (r, _) = train::run(&cfg, &Default::default(), &mut |_| {}).unwrap();
    assert_eq!(r.data.train + r.data.val, 1438);
    assert!((r.data.val as f64 - 0.2 * 1438.0).abs() < 10.0);
    assert!(r.epochs[0].val_accuracy.is_some());
}

/// Hebbian layers learn by their own rule only: with momentum and weight decay on, the read-out
/// epochs that follow the unsupervised one leave every Hebbian weight bit for bit (the optimiser
/// trains the read-out alone) while the read-out moves; and the unsupervised epoch's change of a
/// Hebbian layer does not depend on the optimiser's settings.
#[test]
fn hebbian_layers_are_untouched_by_the_optimiser_with_momentum_and_decay() {
    use biolearn::nn::Shape;
    use biolearn::rng::Rng;
    let build = |opt: &str| {
        let t: toml::Table = format!(
            "rule = 'softhebb'\narch = 'softhebb-mlp:50'\nhebb_epochs = 1\nthreads = 1\nschedule = 'constant'\n{opt}"
        )
        .parse()
        .unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let l = train::load_data(&cfg).unwrap();
        let shape = Shape::new(l.ds.channels, l.ds.height, l.ds.width);
        let tr = train::Trainer::new(&cfg, shape, l.ds.num_classes, &mut Rng::new(3)).unwrap();
        (tr, l, cfg.lr)
    };
    let (mut tr, l, lr) = build("optimizer = 'sgd'\nlr = 0.05\nmomentum = 0.9\nweight_decay = 0.01");
    let wl = tr.net.weight_layers();
    let (hebb, head) = (tr.net.layers[wl[0]].weight().unwrap(), tr.net.layers[*wl.last().unwrap()].weight().unwrap());
    let init = tr.net.params[hebb].data.clone();
    tr.train_epoch(&l.ds.train, lr, |_, _| {}); // unsupervised
    let after_hebb = tr.net.params[hebb].data.clone();
    assert_ne!(after_hebb, init, "the Hebbian layer did not learn");
    let head_before = tr.net.params[head].data.clone();
    for _ in 0..2 {
        tr.train_epoch(&l.ds.train, lr, |_, _| {}); // read-out
    }
    assert_eq!(tr.net.params[hebb].data, after_hebb, "the optimiser moved a Hebbian layer");
    assert_ne!(tr.net.params[head].data, head_before, "the read-out did not learn");
    // Same seed, another optimiser (Adam, no decay): the same unsupervised change.
    let (mut tr2, l2, lr2) = build("optimizer = 'adam'\nlr = 0.001");
    tr2.train_epoch(&l2.ds.train, lr2, |_, _| {});
    assert_eq!(tr2.net.params[hebb].data, after_hebb, "the optimiser reached the Hebbian update");
}

/// The frozen-hidden baseline of a learning test: the same network, initialisation, data,
/// optimiser and budget, but only the last weight layer learns (backprop through it alone);
/// every layer below keeps its initial random weights (the optimiser, weight decay included,
/// never touches them). A rule that does not beat it has not learned useful hidden layers.
mod readout_baseline {
    use biolearn::nn::Network;
    use biolearn::rules::{self, forward_with_error, Rule, RuleEntry, RuleName, Step, StepStats, Updater};

    struct ReadOut {
        from: usize,
        head: Vec<usize>,
    }

    impl Rule for ReadOut {
        fn step(&mut self, s: &mut Step) -> StepStats {
            let (net, ws, y, loss, grads, rng) = s.parts();
            let stats = forward_with_error(net, ws, y, loss, rng);
            net.backward(ws, grads, self.from, net.num_layers(), None, false);
            stats
        }
        fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
            let stats = self.step(s);
            if stats.loss_sum.is_finite() {
                let head = &self.head;
                upd.apply_where(s.net, s.grads, |i| head.contains(&i));
            }
            stats
        }
    }

    static ENTRY: RuleEntry = RuleEntry {
        name: "readout-baseline",
        summary: "test baseline: only the last weight layer learns",
        paper: "",
        reported: "",
        preset: "",
        presets: &[],
        settings: rules::SettingsKind::of::<rules::NoSettings>(),
        build: |net: &mut Network, _, _| {
            let from = *net.weight_layers().last().ok_or("no weight layer")?;
            let head = net.layers[from..].iter().flat_map(|l| l.param_ids()).collect();
            Ok(Box::new(ReadOut { from, head }))
        },
    };

    pub fn name() -> RuleName {
        "readout-baseline".parse().unwrap_or_else(|_| rules::register(ENTRY).unwrap())
    }
}

#[test]
fn pc_default_preset_matches_backprop_on_a_two_hidden_layer_mlp() {
    // Issue 11's claim for the default preset (presets/pc.toml, near-BP): on the same MLP with two
    // hidden layers and the same optimiser (the shared defaults: SGD 0.05 momentum 0.9, cosine,
    // batch 128, 20 epochs), PC's mean test accuracy over 3 seeds is within 0.5 points of BP's.
    // Measured when written: BP 96.47, PC 96.57 (digits, mlp:128,128); the test allows 1.0
    // (360 test images: one image is 0.28 points).
    let mean = |rule: &str| {
        let accs: Vec<f64> = (0..3)
            .map(|seed| {
                let t: toml::Table =
                    format!("rule = '{rule}'\narch = 'mlp:128,128'\nthreads = 1\nseed = {seed}").parse().unwrap();
                let cfg = TrainConfig::load(None, t).unwrap();
                let (r, _) = train::run(&cfg, &Default::default(), &mut |_| {}).unwrap();
                r.test_accuracy
            })
            .collect();
        100.0 * accs.iter().sum::<f64>() / accs.len() as f64
    };
    let (bp, pc) = (mean("bp"), mean("pc"));
    eprintln!("digits mlp:128,128, 3 seeds: BP {bp:.2}, PC {pc:.2}");
    assert!((pc - bp).abs() <= 1.0, "BP {bp:.2} vs PC {pc:.2}");
}

#[test]
fn softhebb_unsupervised_phase_is_a_number_of_updates_then_the_read_out_schedule_starts() {
    // hebb_updates = 100 at micro-batch 32: on the digits' 1438 training images (45 batches a
    // pass) the first epoch makes 3 passes, on a 400-image subset (13 a pass) 8: the same
    // Hebbian steps on both. The read-out is untrained in that epoch (chance), and its cosine
    // schedule spans the 3 read-out epochs (base rate in the first of them).
    let passes_on = |n: usize| {
        let t: toml::Table = "rule = 'softhebb'\narch = 'softhebb-mlp:32'\nepochs = 4\nthreads = 1\nhebb_updates = 100\nhebb_settle = 0.0"
            .parse()
            .unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let mut l = train::load_data(&cfg).unwrap();
        l.ds.train = biolearn::data::sampling::subset(&l.ds.train, &(0..n.min(l.ds.train.n)).collect::<Vec<_>>());
        let (r, _) = train::run_on(&cfg, &Default::default(), &l.ds, &l.checksum, &mut |_| {}).unwrap();
        let lrs: Vec<f32> = r.epochs.iter().map(|e| e.lr).collect();
        assert_eq!(lrs[..2], [cfg.lr, cfg.lr], "{lrs:?}");
        assert!(lrs[2] < cfg.lr && lrs[3] < lrs[2], "{lrs:?}");
        assert!(r.epochs[0].test_accuracy < 0.2, "untrained read-out: {}", r.epochs[0].test_accuracy);
        // Measured: 55.2% (the whole set), 45.4% (400 images) after 3 read-out epochs on 32
        // features; chance 10%.
        assert!(r.test_accuracy > 0.4, "the read-out learns: {}", r.test_accuracy);
        assert_eq!(r.epochs[1].passes, None);
        r.epochs[0].passes.unwrap()
    };
    assert_eq!(passes_on(100_000), 3);
    assert_eq!(passes_on(400), 8);
}

#[test]
fn a_training_step_counts_its_multiply_adds() {
    // BP on the digits' 64-8-10 MLP at batch 2 (1438 = 719 x 2 training images): the forward
    // pass N (64x8 + 8x10), the output layer's weight gradient and its input gradient (8x10 each),
    // the first layer's weight gradient (64x8) and no gradient for the input: N (2x64x8 + 3x8x10)
    // = 2528 per step. FA's backward is the same shape. PC-FPA adds a back-projection per
    // inference step (predictions fixed: no forward); PC adds per inference step a
    // back-projection and the predictions above node 0 (node 0's depends on the data and the
    // weights only: computed once per batch), its tolerance stopping inference after a few
    // steps (near-BP preset): measured 1.26 BP steps here (2.7 when every step recomputed node 0).
    let run = |rule: &str| {
        let t: toml::Table =
            format!("rule = '{rule}'\narch = 'mlp:8'\nepochs = 1\nbatch = 2\nthreads = 1").parse().unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let (r, _) = train::run(&cfg, &Default::default(), &mut |_| {}).unwrap();
        (r.epochs[0].train_macs, r.epochs[0].steps)
    };
    assert_eq!(run("bp"), (719 * 2528, 719));
    assert_eq!(run("fa"), (719 * 2528, 719));
    let (fpa, _) = run("pc-fpa");
    let (pc, steps) = run("pc");
    eprintln!("multiply-adds per step: BP 2528, PC-FPA {}, PC {}", fpa / 719, pc / 719);
    assert!(fpa > 719 * 2528 && fpa < 2 * 719 * 2528, "{fpa}");
    assert!(pc > fpa && pc < 2 * 719 * 2528 && steps == 719, "{pc}");
}

/// The feedback-alignment family on BioTorch's LeNet at each rule's tuned rate
/// (plans/tuned/lenet-fa-family.toml, chosen on a validation split): none diverges, each learns a
/// 6000-image Fashion-MNIST subset well past chance in 3 epochs. (At BP's rate, 0.05, FA and DFA
/// explode in BioTorch's own mechanics too: bench/biotorch_lenet.py, issue 13.)
#[test]
fn the_fa_family_trains_lenet_at_its_tuned_rate_without_diverging() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tuned: toml::Table =
        std::fs::read_to_string(root.join("plans/tuned/lenet-fa-family.toml")).unwrap().parse().unwrap();
    let rules = tuned["rule"].as_table().unwrap();
    assert_eq!(rules.len(), 7, "{rules:?}");
    // Directional DFA (session 12) is in the plan beside the family but not in this test: at its
    // searched SGD settings it blows up on the full set (README, "DDFA on conv layers").
    for (rule, t) in rules.iter().filter(|(r, _)| r.as_str() != "ddfa") {
        let mut t = t.as_table().unwrap().clone();
        for (k, v) in [("rule", rule.as_str()), ("data", "fashion-mnist"), ("arch", "lenet")] {
            t.insert(k.into(), v.into());
        }
        for (k, v) in [("epochs", 3), ("batch", 64), ("threads", 2), ("seed", 1)] {
            t.insert(k.into(), toml::Value::Integer(v));
        }
        let cfg = TrainConfig::load(None, t).unwrap();
        let Some(l) = data_or_skip(&cfg) else { return };
        let r = run_on_first(&cfg, l, 6000, 1000);
        let curve: Vec<(f64, f64)> = r.epochs.iter().map(|e| (e.train_loss, e.test_accuracy)).collect();
        eprintln!("{rule} at lr {}: {curve:?}", cfg.lr);
        // Measured when written (6000 images, test accuracy after epochs 1-3, 1000 test images):
        // bp 74.1/78.1/82.0, usf 68.9/74.3/78.3, frsf 63.4/74.0/77.1, brsf 61.0/71.1/73.0,
        // fa 37.1/52.4/61.4, dfa 7.5/44.7/57.9 (FA and DFA first sit at chance while aligning).
        assert!(r.diverged.is_none() && curve.iter().all(|(l, _)| l.is_finite() && *l < 2.5), "{rule}: {curve:?}");
        assert!(curve[2].0 < curve[0].0 && r.test_accuracy > 0.5, "{rule}: {curve:?}");
    }
}

/// The hardware cost model's counts are what the rule did, measured: BP on a 64-32-10 MLP at
/// batch 16 reads every weight array forward by the batch and every one but the first
/// transposed by it (the input needs no error); DFA reads no weight array transposed and its
/// two projections by the batch's errors, a backward phase that runs on every layer at once;
/// the 2-bit devices took pulses. And BP still trains the digits on NeuroSim's defaults.
#[test]
fn hardware_activity_is_measured_per_step() {
    for rule in ["bp", "dfa", "drtp"] {
        let t: toml::Table =
            format!("rule = '{rule}'\narch = 'mlp:64,32'\nepochs = 2\nbatch = 16\nthreads = 1\nhardware = 'neurosim'")
                .parse()
                .unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let (r, _) = train::run(&cfg, &Default::default(), &mut |_| {}).unwrap();
        // (BP; DFA at its preset's rate reaches about 36% in these 2 epochs on 2-bit devices.)
        assert!(rule != "bp" || r.test_accuracy > 0.7, "{rule}: {}", r.test_accuracy);
        let h = r.hardware_cost.expect("hardware runs carry their cost");
        // 1437 training digits (the embedded set's split) at batch 16: the last batch is smaller.
        let steps = h.activity.steps as f64;
        let batch_mean = r.data.train as f64 * 2.0 / steps;
        // The samples a step trained on, whose gradients the model moves through DRAM.
        assert!((h.activity.samples - batch_mean).abs() < 1e-6, "{rule}: {} samples a step", h.activity.samples);
        assert!(h.activity.arrays.iter().all(|a| a.input_share == 1.0));
        // Every learned array is updated at every step.
        assert!(h.activity.arrays.iter().filter(|a| a.learned).all(|a| (a.updates - 1.0).abs() < 1e-9), "{rule}");
        let arrays: Vec<(&str, f64, f64)> =
            h.activity.arrays.iter().map(|a| (a.name.as_str(), a.forward, a.transposed)).collect();
        let weights: Vec<&(&str, f64, f64)> = arrays.iter().filter(|a| a.0.ends_with("weight")).collect();
        assert_eq!(weights.len(), 3, "{arrays:?}");
        for (i, w) in weights.iter().enumerate() {
            assert!((w.1 - batch_mean).abs() < 1e-6, "{rule} {}: {} forward vectors a step", w.0, w.1);
            let tr = if rule == "bp" && i > 0 { batch_mean } else { 0.0 };
            assert!((w.2 - tr).abs() < 1e-6, "{rule} {}: {} transposed", w.0, w.2);
        }
        let fb: Vec<_> = arrays.iter().filter(|a| !a.0.ends_with("weight")).collect();
        // DFA's projections read by the errors, DRTP's by the one-hot targets (session 25:
        // they were a column lookup the model did not charge).
        assert_eq!(fb.len(), if rule == "bp" { 0 } else { 2 }, "{arrays:?}");
        for f in fb {
            assert!((f.1 + f.2 - batch_mean).abs() < 1e-6, "{f:?}");
        }
        assert_eq!(h.activity.layer_parallel, rule != "bp");
        assert!(h.activity.arrays.iter().filter(|a| a.learned).all(|a| a.pulses > 0.0));
        assert!(h.cost.step_energy_j > 0.0 && h.cost.step_latency_s > 0.0 && h.cost.inference_energy_j > 0.0);
    }
}

/// A layer's gradients cross DRAM only at the steps that update it: SoftHebb's unsupervised
/// epoch updates its hidden layer alone (a number of updates), its read-out epoch the head alone
/// over frozen features (one pass of the training digits in batches of 32), so each array's
/// updates a step are its phase's share of the steps and no step updates both.
#[test]
fn a_frozen_layer_moves_no_gradients_through_dram() {
    let t: toml::Table = "rule = 'softhebb'\narch = 'softhebb-mlp:64'\nepochs = 2\nthreads = 1\nhardware = 'neurosim'\nhebb_updates = 300"
        .parse()
        .unwrap();
    let cfg = TrainConfig::load(None, t).unwrap();
    let (r, _) = train::run(&cfg, &Default::default(), &mut |_| {}).unwrap();
    let h = r.hardware_cost.expect("hardware runs carry their cost");
    let a = &h.activity;
    let steps = a.steps as f64;
    let learned: Vec<_> = a.arrays.iter().filter(|x| x.learned).collect();
    assert_eq!(learned.len(), 2, "{:?}", a.arrays);
    let (hidden, head) = (learned[0].updates * steps, learned[1].updates * steps);
    let readout_steps = r.data.train.div_ceil(32) as f64;
    assert!((head - readout_steps).abs() < 1e-6, "head updated at {head} steps, read-out has {readout_steps}");
    assert!((hidden + head - steps).abs() < 1e-6, "{hidden} + {head} updates in {steps} steps");
    assert!(hidden >= 300.0, "the unsupervised phase's updates: {hidden}");
}

/// A hardware condition draws its devices from a stream of its own: building the trainer
/// leaves the caller's RNG where the ideal run leaves it, so the validation split and the
/// training subset a plan draws next are the ideal run's (the hardware study is paired on data).
#[test]
fn hardware_conditions_leave_the_callers_draws_to_the_ideal_runs() {
    let mut next = Vec::new();
    for hw in ["ideal", "int8", "neurosim"] {
        let t: toml::Table = format!("arch = 'mlp:16'\nthreads = 1\nseed = 7\nhardware = '{hw}'").parse().unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let l = train::load_data(&cfg).unwrap();
        let mut rng = biolearn::rng::Rng::new(7);
        let _tr = train::Trainer::on_data(&cfg, &l.ds, &mut rng).unwrap();
        next.push(rng.next_u64());
    }
    assert!(next.iter().all(|v| *v == next[0]), "{next:?}");
}

/// A run resumed from a checkpoint another build wrote says so: the checkpoint names who trained
/// its epochs, and the resuming trainer keeps those that are not itself.
#[test]
fn a_checkpoint_names_the_builds_that_trained_it() {
    use biolearn::safetensors::{load_with_metadata, save, Tensor};
    let t: toml::Table = "arch = 'mlp:8'\nthreads = 1\nepochs = 1".parse().unwrap();
    let cfg = TrainConfig::load(None, t).unwrap();
    let l = train::load_data(&cfg).unwrap();
    let dir = std::env::temp_dir().join(format!("biolearn-ck-by-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("c.safetensors");
    let mut tr = train::Trainer::on_data(&cfg, &l.ds, &mut biolearn::rng::Rng::new(1)).unwrap();
    tr.train_epoch(&l.ds.train, 0.05, |_, _| {});
    let history: train::Progressed = serde_json::from_str(
        r#"{"epochs":[{"epoch":1,"lr":0.05,"train_loss":1.0,"train_accuracy":0.5,"test_accuracy":0.5,
        "val_accuracy":null,"seconds":1.0}],"train_seconds":1.0,"seen":1437,"diverged":null}"#,
    )
    .unwrap();
    tr.save_checkpoint(&ck, &history).unwrap();
    let (tensors, mut meta) = load_with_metadata(&ck).unwrap();
    let by: Vec<String> = serde_json::from_str(&meta["trained_by"]).unwrap();
    assert_eq!(by.len(), 1, "{by:?}");
    // The same build resuming: nothing to name. Another build's epochs: named.
    let mut again = train::Trainer::on_data(&cfg, &l.ds, &mut biolearn::rng::Rng::new(1)).unwrap();
    again.load_checkpoint(&ck).unwrap();
    assert!(again.trained_by.is_empty(), "{:?}", again.trained_by);
    meta.insert("trained_by".into(), r#"["0123abcd / generic"]"#.into());
    let views: Vec<Tensor> =
        tensors.iter().map(|(n, (s, d))| Tensor { name: n.clone(), shape: s.clone(), data: d }).collect();
    save(&ck, &views, &meta).unwrap();
    let mut other = train::Trainer::on_data(&cfg, &l.ds, &mut biolearn::rng::Rng::new(1)).unwrap();
    other.load_checkpoint(&ck).unwrap();
    assert_eq!(other.trained_by, vec!["0123abcd / generic".to_string()]);
    // An RNG state no run can have (xoshiro's all-zero fixed point: it would draw 0 forever and
    // hang the first shuffle) is a malformed checkpoint.
    meta.insert("rng".into(), "[0,0,0,0]".into());
    save(&ck, &views, &meta).unwrap();
    let mut zero = train::Trainer::on_data(&cfg, &l.ds, &mut biolearn::rng::Rng::new(1)).unwrap();
    let e = zero.load_checkpoint(&ck).unwrap_err();
    assert!(e.contains("malformed 'rng'"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A 2-thread epoch keeps the pool's other thread spinning between the step's parallel regions
/// (`linalg::Awake`): which thread runs a block must not change a number. Two runs of the same
/// seed in 2-thread pools give the same weights bit for bit, for BP (products split across the
/// threads: mlp:1024,1024's hidden product) and for layer-parallel DFA (blocks on both threads,
/// nested inside the spinning pool).
#[test]
fn two_thread_epochs_repeat_bit_for_bit_with_the_pool_kept_awake() {
    for extra in ["rule = 'bp'", "rule = 'dfa'\ndfa_parallel = true"] {
        let t: toml::Table =
            format!("{extra}\narch = 'mlp:1024,1024'\nthreads = 2\nepochs = 2\nbatch = 128").parse().unwrap();
        let cfg = TrainConfig::load(None, t).unwrap();
        let l = train::load_data(&cfg).unwrap();
        let run = || {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            pool.install(|| {
                let mut tr = train::Trainer::on_data(&cfg, &l.ds, &mut biolearn::rng::Rng::new(3)).unwrap();
                let losses: Vec<f64> = (0..2).map(|_| tr.train_epoch(&l.ds.train, 0.05, |_, _| {}).loss).collect();
                (losses, tr.net.params.iter().map(|p| p.data.clone()).collect::<Vec<_>>())
            })
        };
        let (a, b) = (run(), run());
        assert!(a.0.iter().all(|l| l.is_finite()), "{extra}: {:?}", a.0);
        assert_eq!(a.0, b.0, "{extra}");
        assert!(a.1 == b.1, "{extra}: the weights differ");
    }
}
