//! Bad input, one row per class (issue 12): each must end the process with the expected exit
//! status and a message naming the problem, never a panic, a hang or a result. A regression
//! shows as a named row.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("biolearn-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0803u32, n, rows, cols] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend((0..(n * rows * cols)).map(|i| (i % 251) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0801u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A Fashion-MNIST directory: `train` images of rows x cols (labels 0..9 cycling), 4 test ones;
/// `images` replaces the training images file's bytes when given.
fn fmnist_dir(d: &Path, name: &str, train: u32, rows: u32, cols: u32, images: Option<Vec<u8>>) -> PathBuf {
    let dir = d.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let labels = |n: u32| idx_labels(&(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    let files = [
        ("train-images-idx3-ubyte", images.unwrap_or_else(|| idx_images(train, rows, cols))),
        ("train-labels-idx1-ubyte", labels(train)),
        ("t10k-images-idx3-ubyte", idx_images(4, rows, cols)),
        ("t10k-labels-idx1-ubyte", labels(4)),
    ];
    for (f, bytes) in files {
        std::fs::write(dir.join(f), bytes).unwrap();
    }
    dir
}

/// Run biolearn with `args` (and `env`), killed after 60 s: (exit status, stderr).
fn run(args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_biolearn"));
    cmd.args(args).env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            return (None, "hung: killed after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_class_of_bad_input_is_refused_with_a_clear_error() {
    let d = tmp("table");
    let out = d.join("out");
    let o = out.to_str().unwrap().to_string();
    let plan = |name: &str, text: &str| -> String {
        let p = d.join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let base_plan = "name = 'p'\nrules = ['bp']\narch = 'mlp:8'\nepochs = [1]\nseeds = 1\n";
    let zero_train = fmnist_dir(&d, "zero-train", 0, 28, 28, None);
    let zero_pixels = fmnist_dir(&d, "zero-pixels", 10, 0, 0, None);
    let bomb = fmnist_dir(&d, "bomb", 10, 28, 28, Some(gzip(&[idx_images(10, 28, 28), vec![0u8; 1 << 24]].concat())));
    let dir_as_file = fmnist_dir(&d, "dir-as-file", 10, 28, 28, None);
    std::fs::remove_file(dir_as_file.join("train-images-idx3-ubyte")).unwrap();
    std::fs::create_dir_all(dir_as_file.join("train-images-idx3-ubyte")).unwrap();
    let huge =
        fmnist_dir(&d, "huge", 10, 28, 28, Some(idx_images(0, 0, 0)[..4].iter().copied().chain([0xff; 12]).collect()));
    let results = d.join("results-junk");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join("results.jsonl"), "\u{1}\u{2} junk\n").unwrap();
    let px20 = fmnist_dir(&d, "px20", 10, 20, 20, None);
    let text = d.join("corpus.txt");
    std::fs::write(&text, "the quick brown fox jumps over the lazy dog. ".repeat(200)).unwrap();
    let stable = d.join("results-stable");
    std::fs::create_dir_all(&stable).unwrap();
    std::fs::write(
        stable.join("results.jsonl"),
        r#"{"id":"a","plan":"p","data":"digits","arch":"mlp:8","rule":"bp","fraction":1.0,"train_samples":10,"seed":0,"train_noise":0.0,"epochs":1,"status":"ok","diverged_epoch":null,"curve":[{"epoch":1,"test_accuracy":0.5,"train_loss":1.0,"train_accuracy":0.5}],"test_accuracy":0.5,"budgets":[],"macs_per_step":1.0,"epochs_to_stable":2,"pruning":[],"noise":[],"seconds":1.0,"epoch_seconds":[1.0],"biolearn_version":"0.1.0","git_revision":"x"}"#.to_string() + "\n",
    )
    .unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let train = |extra: &[&str]| [s(&["train", "--epochs", "1", "-q", "--out", &o]), s(extra)].concat();
    let fm = |dir: &Path| train(&["--data", "fashion-mnist", "--arch", "mlp:8", "--data-dir", dir.to_str().unwrap()]);
    let p = |path: String| s(&["compare", &path, "--quiet", "--out", &o]);
    // (class, args, env, exit status, a phrase of the message)
    let rows: Vec<(&str, Vec<String>, Vec<(&str, &str)>, i32, &str)> = vec![
        ("network past the memory cap", train(&["--arch", "mlp:99999999"]), vec![], 1, "more than the cap"),
        ("empty width", train(&["--arch", "mlp:32,,32"]), vec![], 1, "is not a positive integer"),
        ("no hidden width", train(&["--arch", "mlp:"]), vec![], 1, "is not a positive integer"),
        ("option twice", train(&["--arch", "mlp:32/bn/bn"]), vec![], 1, "given twice"),
        ("bad softhebb-cnn width", train(&["--arch", "softhebb-cnn:1,x,2"]), vec![], 1, "width 'x'"),
        (
            "recurrent net, rule without BPTT",
            train(&["--rule", "pc", "--arch", "gru:8"]),
            vec![],
            1,
            "does not train recurrent",
        ),
        ("zero recurrent width", train(&["--arch", "rnn:0"]), vec![], 1, "is not a positive integer"),
        ("data dir for embedded digits", train(&["--data-dir", "/nonexistent"]), vec![], 1, "does not apply"),
        ("absurd thread count", train(&["--threads", "100000"]), vec![], 2, "count from 1 to 1024"),
        ("seed past TOML's range", train(&["--seed", "18446744073709551615"]), vec![], 2, "is not in 0..="),
        ("no training data left", train(&["--val-fraction", "0.9999"]), vec![], 1, "leaves no training samples"),
        ("validation share 1", train(&["--val-fraction", "1"]), vec![], 1, "val_fraction must be in [0, 1)"),
        ("zero inference steps", train(&["--rule", "pc", "--set", "pc_steps=0"]), vec![], 1, "pc_steps"),
        ("endless inference", train(&["--rule", "pc", "--set", "pc_steps=4000000000"]), vec![], 1, "pc_steps"),
        ("zero target nudge", train(&["--rule", "dtp", "--set", "tp_beta=0"]), vec![], 1, "tp_beta"),
        ("negative temperature", train(&["--rule", "softhebb", "--set", "hebb_t_inv=[-5]"]), vec![], 1, "hebb_t_inv"),
        ("unknown setting", train(&["--set", "lrr=0.1"]), vec![], 1, "lrr"),
        ("0 training images", fm(&zero_train), vec![], 1, "no training samples"),
        (
            "conv3 on images smaller than it needs",
            train(&["--data", "fashion-mnist", "--arch", "conv3:4,4,4", "--data-dir", px20.to_str().unwrap()]),
            vec![],
            1,
            "needs inputs of at least 24x24",
        ),
        (
            "an image network on a text corpus",
            train(&["--data", "devil", "--data-dir", text.to_str().unwrap()]),
            vec![],
            1,
            "a text data set needs a language model",
        ),
        (
            "images resized on a text corpus",
            train(&["--data", "devil", "--data-dir", text.to_str().unwrap(), "--set", "resize=32"]),
            vec![],
            1,
            "resize applies to images",
        ),
        (
            "an integer search bound past any setting",
            s(&["tune", "--space", "lr=int:0:1e19", "--trials", "1", "--epochs", "1", "--out", &o]),
            vec![],
            1,
            "int bounds must be within",
        ),
        (
            "a list entry no list can have",
            s(&[
                "meta-train",
                "--rule",
                "tdca",
                "--classes",
                "0-4",
                "--keys",
                "tdca_phi[18446744073709551615]",
                "--out",
                &o,
            ]),
            vec![],
            1,
            "index must be below",
        ),
        (
            "a record whose stable epoch is not in its curve",
            s(&["report", stable.to_str().unwrap(), "--out", &o]),
            vec![],
            1,
            "epochs_to_stable 2 is not an epoch",
        ),
        ("0x0 pixels", fm(&zero_pixels), vec![], 1, "samples of size 0"),
        ("gzip inflating past its header", fm(&bomb), vec![], 1, "more data than"),
        ("directory named like a data file", fm(&dir_as_file), vec![], 1, "is a directory"),
        ("absurd declared size", fm(&huge), vec![], 1, "more than the memory cap"),
        ("plan without rules", p(plan("empty", "")), vec![], 1, "no `rules`"),
        ("rule listed twice", p(plan("twice", "name = 'p'\nrules = ['bp', 'bp']\n")), vec![], 1, "listed twice"),
        (
            "fraction listed twice",
            p(plan("f2", &format!("{base_plan}fractions = [0.5, 0.5]\n"))),
            vec![],
            1,
            "listed twice",
        ),
        ("plan name leaving runs/", p(plan("escape", "name = '../x'\nrules = ['bp']\n")), vec![], 1, "one word"),
        ("infinite noise level", p(plan("inf", &format!("{base_plan}noise = [inf]\n"))), vec![], 1, "finite"),
        (
            "bad flag over a plan",
            [p(plan("flag", base_plan)), s(&["--fractions", "2"])].concat(),
            vec![],
            1,
            "command-line flags over",
        ),
        (
            "bad [train] in a plan",
            p(plan("trainbad", &format!("{base_plan}[train]\nlr = -1\n"))),
            vec![],
            1,
            "trainbad.toml: rule bp: lr must be",
        ),
        (
            "no parallel runs",
            [p(plan("par", base_plan)), s(&["--parallel", "0"])].concat(),
            vec![],
            2,
            "count from 1 to 1024",
        ),
        (
            "half a Slurm array environment",
            p(plan("slurm-env", base_plan)),
            vec![("SLURM_ARRAY_TASK_ID", "3")],
            1,
            "SLURM_ARRAY_TASK_COUNT is not",
        ),
        (
            "junk in a results file",
            s(&["compare", &plan("junk", base_plan), "--quiet", "--out", results.to_str().unwrap()]),
            vec![],
            1,
            "not a result record",
        ),
        (
            "shell code in a Slurm time",
            s(&["slurm", &plan("sl", base_plan), "--tasks", "2", "--time", "1; rm -rf x", "--out", &o]),
            vec![],
            1,
            "--time",
        ),
        (
            "a Slurm binary that does not exist",
            s(&["slurm", &plan("sl3", base_plan), "--tasks", "2", "--bin", "/nonexistent/biolearn", "--out", &o]),
            vec![],
            1,
            "no such file",
        ),
        (
            "an array no cluster runs",
            s(&["slurm", &plan("sl4", base_plan), "--tasks", "1099511627776", "--out", &o]),
            vec![],
            1,
            "at most 1000000 tasks",
        ),
        (
            "a plan whose grid never ends",
            p(plan("seeds", "name = 'p'\nrules = ['bp']\nseeds = 1099511627776\n")),
            vec![],
            1,
            "seeds must be <= 100000",
        ),
        (
            "an endless run",
            s(&["train", "-q", "--out", &o, "--epochs", "1099511627776"]),
            vec![],
            1,
            "epochs must be in 1..=1000000",
        ),
        (
            "a newline in a Slurm partition",
            s(&["slurm", &plan("sl2", base_plan), "--tasks", "2", "--partition", "a\n#SBATCH --x", "--out", &o]),
            vec![],
            1,
            "--partition",
        ),
    ];
    let mut failed = vec![];
    for (class, args, env, code, phrase) in &rows {
        let (got, err) = run(args, env);
        let ok = got == Some(*code) && err.contains(phrase) && !err.contains("panicked");
        if !ok {
            failed.push(format!("{class}: exit {got:?} (want {code}), stderr: {err}"));
        }
    }
    assert!(failed.is_empty(), "{} of {} rows failed:\n{}", failed.len(), rows.len(), failed.join("\n"));
    let _ = std::fs::remove_dir_all(&d);
}

/// Values no run can mean for a field whose default is `default`: non-finite and out-of-range
/// numbers (NaN, +-inf, past f32's range, negative), a count past any cap (2^40), wrong types.
fn values_no_run_can_mean(key: &str, default: &toml::Value) -> Vec<toml::Value> {
    use toml::Value::{Array, Boolean, Float, Integer, String as Str};
    let (nan, inf) = (Float(f64::NAN), Float(f64::INFINITY));
    let float_list = |a: &Vec<toml::Value>| a.first().is_none_or(|v| v.is_float());
    match default {
        Float(_) => vec![nan, inf, Float(f64::NEG_INFINITY), Float(1e39)],
        // (The plan's lists of levels and shares are empty by default: lists of floats too.)
        // (TDCA's tdca_phi is a list of signed changes: a negative entry is one a run can mean.)
        Array(a) if float_list(a) && key == "tdca_phi" => {
            vec![Array(vec![nan]), Array(vec![inf]), Array(vec![Float(1e39)]), Str("x".into())]
        }
        Array(a) if float_list(a) && !["milestones", "epochs", "shots"].contains(&key) => vec![
            Array(vec![nan]),
            Array(vec![inf]),
            Array(vec![Float(1e39)]),
            Array(vec![Float(-1.0)]),
            Str("x".into()),
        ],
        Array(_) => vec![Array(vec![Integer(-1)]), Array(vec![Integer(1 << 40)]), Str("x".into())],
        // (Any seed up to i64::MAX is a seed.)
        Integer(_) if key == "seed" || key.ends_with("_seed") => vec![Integer(-1), Str("x".into())],
        Integer(_) => vec![Integer(-1), Integer(1 << 40), Str("x".into())],
        Boolean(_) => vec![Str("yes".into()), Integer(2)],
        // A free path is checked when the data load (the bad-input table above).
        Str(_) if key == "data_dir" => vec![Integer(1)],
        Str(_) => vec![Integer(1), Str("no such value".into())],
        _ => vec![],
    }
}

/// Give every field of `defaults` each value no run can mean, through `load` (a table of that
/// one key): each must be refused with a message naming the key or the value. Returns the
/// inputs tried; failures go to `failed`.
fn sweep(
    what: &str,
    defaults: &toml::Table,
    skip: &[&str],
    load: &mut dyn FnMut(&str, &toml::Value) -> Result<(), String>,
    failed: &mut Vec<String>,
) -> usize {
    let mut tried = 0;
    for (key, default) in defaults.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        for v in values_no_run_can_mean(key, default) {
            tried += 1;
            let shown = v.to_string().trim_matches('"').to_string();
            match load(key, &v) {
                Ok(()) => failed.push(format!("{what} {key} = {v}: accepted")),
                Err(msg) if !msg.contains(key.as_str()) && !msg.contains(&shown) && !msg.contains("invalid type") => {
                    failed.push(format!("{what} {key} = {v}: the message names neither: {msg}"))
                }
                Err(_) => {}
            }
        }
    }
    tried
}

fn table_of<T: serde::Serialize>(x: &T) -> toml::Table {
    match toml::Value::try_from(x).unwrap() {
        toml::Value::Table(t) => t,
        _ => unreachable!(),
    }
}

/// Every setting of every registered rule, given values no rule can mean: each must be refused by
/// the rule's own check, naming the setting, so that no rule trains on a setting it cannot use.
/// Prints the inputs tried per rule.
#[test]
fn every_rule_setting_refuses_values_no_rule_can_mean() {
    use biolearn::rules::RuleName;
    let (mut table, mut failed) = (vec![], vec![]);
    for rule in RuleName::all() {
        let e = rule.entry();
        let defaults = (e.settings.defaults)();
        let mut load = |k: &str, v: &toml::Value| {
            (e.settings.resolve)(&[(k.to_string(), v.clone())].into_iter().collect()).map(|_| ())
        };
        let tried = sweep(e.name, &defaults, &[], &mut load, &mut failed);
        table.push(format!("{:<22} {:>3} settings {:>4} bad values", e.name, defaults.len(), tried));
    }
    println!("{}", table.join("\n"));
    assert!(failed.is_empty(), "{} bad settings not refused:\n{}", failed.len(), failed.join("\n"));
}

/// Every field of a run's configuration (a config file or `--set`), given values no run can mean:
/// each refused when the configuration loads, naming the field or the value.
#[test]
fn every_config_field_refuses_values_no_run_can_mean() {
    use biolearn::config::TrainConfig;
    let mut defaults = table_of(&TrainConfig::load(None, toml::Table::new()).unwrap());
    // (A config leaves `resize` out while it is 0, its default.)
    defaults.insert("resize".into(), toml::Value::Integer(0));
    let mut failed = vec![];
    let mut load = |k: &str, v: &toml::Value| {
        TrainConfig::load(None, [(k.to_string(), v.clone())].into_iter().collect())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let tried = sweep("configuration", &defaults, &["settings"], &mut load, &mut failed);
    println!("configuration: {} fields, {tried} bad values", defaults.len());
    assert!(failed.is_empty(), "{} bad values not refused:\n{}", failed.len(), failed.join("\n"));
}

/// Every top-level field of a plan and of its `[tune]` table, given values no study can mean,
/// over a valid plan: each refused when the plan loads, naming the field or the value.
#[test]
fn every_plan_field_refuses_values_no_study_can_mean() {
    use biolearn::protocol::plan::Plan;
    let d = tmp("plan-fields");
    let defaults = table_of(&Plan::default());
    let tune = table_of(&Plan::default().tune);
    let mut failed = vec![];
    let mut tried = 0;
    // Tables and the rule lists have rows of their own in the table above.
    let skip = ["train", "rule", "arm", "tune", "rules", "exclude", "tuned", "data_dir", "space"];
    for section in ["", "[tune]\n"] {
        let mut load = |k: &str, v: &toml::Value| {
            let p = d.join(format!("{k}.toml"));
            std::fs::write(&p, format!("name = 'p'\nrules = ['bp']\narch = 'mlp:8'\n{section}{k} = {v}\n")).unwrap();
            Plan::load(&p).map(|_| ()).map_err(|e| e.to_string())
        };
        let fields = if section.is_empty() { &defaults } else { &tune };
        tried += sweep("plan", fields, &skip, &mut load, &mut failed);
    }
    println!("plan: {} fields and [tune]'s {}, {tried} bad values", defaults.len(), tune.len() - 1);
    assert!(failed.is_empty(), "{} bad values not refused:\n{}", failed.len(), failed.join("\n"));
    let _ = std::fs::remove_dir_all(&d);
}
