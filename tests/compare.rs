//! The comparison sweep end to end: resume after kill -9 gives exactly the records of an
//! uninterrupted sweep; a Slurm array gives exactly the records of one process; report renders.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_biolearn"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("biolearn-cmp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn plan() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/smoke.toml")
}

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// id -> record without its wall-clock field; panics on a duplicate id or a torn line.
fn records(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in biolearn::protocol::result_files(dir) {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{}: torn last line", f.display());
        for line in text.lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v.as_object_mut().unwrap().remove("epoch_seconds");
            let id = v["id"].as_str().unwrap().to_string();
            assert!(out.insert(id.clone(), v).is_none(), "duplicate record {id}");
        }
    }
    out
}

#[test]
fn resume_after_kill_9_gives_exactly_the_uninterrupted_records() {
    let d = tmp("resume");
    let args = ["--epochs", "10,30", "--arch", "mlp:256", "--parallel", "2", "--quiet"];
    let full = d.join("full");
    ok(bin().arg("compare").arg(plan()).args(args).arg("--out").arg(&full));
    let want = records(&full);
    assert_eq!(want.len(), 12);

    let part = d.join("part");
    let mut child = bin()
        .arg("compare")
        .arg(plan())
        .args(args)
        .arg("--out")
        .arg(&part)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let file = part.join("results.jsonl");
    let t0 = Instant::now();
    loop {
        let n = std::fs::read_to_string(&file).map(|t| t.lines().count()).unwrap_or(0);
        // Kill while a run is part-way (its checkpoint written after an epoch, no record yet).
        let mid = std::fs::read_dir(part.join("checkpoints")).map(|d| d.count()).unwrap_or(0) > 0;
        if (n >= 3 && mid) || t0.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = std::fs::read_to_string(&file).unwrap();
    let n_before = before.lines().filter(|l| !l.is_empty()).count();
    assert!(n_before < 12, "the sweep finished before it could be killed; make it longer");
    // A crash in the middle of a write leaves a torn line: simulate one on top.
    let mut torn = before.clone();
    if !torn.ends_with('\n') {
        torn.push('\n');
    }
    torn.push_str("{\"id\":\"digits|mlp:256|bp|f=0.5|s=0|h=0000");
    std::fs::write(&file, torn).unwrap();

    let checkpoints = || std::fs::read_dir(part.join("checkpoints")).unwrap().count();
    assert!(checkpoints() > 0, "no run was killed part-way");
    let out = ok(bin().arg("compare").arg(plan()).args(args).arg("--out").arg(&part));
    assert!(out.contains("12 runs"), "{out}");
    // The runs killed part-way continued from their checkpoints, removed once recorded.
    let left: Vec<_> = std::fs::read_dir(part.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        left.is_empty(),
        "checkpoints left after the sweep finished: {left:?}\n{}",
        std::fs::read_to_string(&file).unwrap()
    );
    let got = records(&part);
    assert_eq!(got.len(), 12);
    assert_eq!(got, want, "resumed sweep differs from the uninterrupted one");
    // A third call has nothing to do.
    let out = ok(bin().arg("compare").arg(plan()).args(args).arg("--out").arg(&part));
    assert!(out.contains("12 already done, 0 run now"), "{out}");
}

#[test]
fn shards_partition_the_grid_and_merge_into_one_report() {
    let d = tmp("shards");
    let one = d.join("one");
    ok(bin().arg("compare").arg(plan()).args(["--quiet", "--out"]).arg(&one));
    let sharded = d.join("sharded");
    for i in 0..3 {
        ok(bin().arg("compare").arg(plan()).args(["--quiet", "--shard", &format!("{i}/3"), "--out"]).arg(&sharded));
    }
    assert_eq!(biolearn::protocol::result_files(&sharded).len(), 3);
    assert_eq!(records(&sharded), records(&one));
    let out = ok(bin().arg("report").arg(&sharded));
    assert!(out.contains("12 records"), "{out}");
    let rep = sharded.join("report");
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("bp") && md.contains("dfa"), "{md}");
    let html = std::fs::read_to_string(rep.join("index.html")).unwrap();
    let mut pngs = 0;
    for e in std::fs::read_dir(rep.join("plots")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "png") {
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
            assert!(html.contains(p.file_name().unwrap().to_str().unwrap()), "index.html lacks {}", p.display());
            pngs += 1;
        }
    }
    assert!(pngs >= 4, "{pngs} plots");
}

#[test]
fn compare_flags_override_the_plan_and_bad_plans_fail() {
    let d = tmp("flags");
    let out = d.join("o");
    ok(bin()
        .arg("compare")
        .arg(plan())
        .args([
            "--rules",
            "bp",
            "--fractions",
            "1",
            "--seeds",
            "1",
            "--sparsities",
            "0,0.5",
            "--noise",
            "0",
            "--quiet",
            "--out",
        ])
        .arg(&out));
    let r = records(&out);
    assert_eq!(r.len(), 1);
    let rec = r.values().next().unwrap();
    assert_eq!(rec["pruning"].as_array().unwrap().len(), 2);
    assert_eq!(rec["budgets"].as_array().unwrap().len(), 2);
    // Epochs to stable accuracy as its definition reads the record's own curve.
    let curve: Vec<f64> =
        rec["curve"].as_array().unwrap().iter().map(|p| p["test_accuracy"].as_f64().unwrap()).collect();
    let want = biolearn::protocol::epochs_to_stable(&curve, biolearn::protocol::STABLE_TOL).unwrap();
    assert_eq!(rec["epochs_to_stable"].as_u64().unwrap() as usize, want);
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "rules = [\"bp\"]\nfractions = [2.0]\n").unwrap();
    let o = bin().arg("compare").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.toml"));
}

#[test]
fn a_sparsity_point_does_not_depend_on_the_other_sparsities_listed() {
    // Fine-tuning at one sparsity starts from the complete trained state (network, feedback,
    // the rule's own state, optimiser, RNG) and leaves it as it found it: the 0.9 point and the
    // noise evaluations after pruning are the same whether 0.5 was fine-tuned before or not.
    // Rules with state of their own: Activation Learning (label weights, rates), DTP (learned
    // inverses), pc-positive (learned feedback and its optimiser).
    let d = tmp("sparsities");
    let every = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/every-rule.toml");
    let run = |sp: &str, out: &Path| {
        ok(bin()
            .arg("compare")
            .arg(&every)
            .args(["--rules", "activation-learning,dtp,pc-positive,fa", "--sparsities", sp, "--quiet", "--out"])
            .arg(out));
        let mut by: BTreeMap<(String, String), Value> = BTreeMap::new();
        for (_, r) in records(out) {
            by.insert((r["rule"].as_str().unwrap().into(), format!("{}|{}", r["fraction"], r["shots"])), r);
        }
        by
    };
    let (a, b) = (run("0,0.5,0.9", &d.join("a")), run("0,0.9", &d.join("b")));
    assert_eq!(a.len(), 8);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, ra) in &a {
        let rb = &b[k];
        let at = |r: &Value, s: f64| r["pruning"].as_array().unwrap().iter().find(|p| p["sparsity"] == s).cloned();
        assert!(at(ra, 0.9).is_some(), "{k:?}: no 0.9 point");
        assert_eq!(at(ra, 0.9), at(rb, 0.9), "{k:?}: the 0.9 point depends on fine-tuning at 0.5 before it");
        for key in ["noise", "adversarial", "curve"] {
            assert_eq!(ra[key], rb[key], "{k:?}: {key} depends on the sparsities listed");
        }
    }
}

/// A plan of BP on a 64-32-10 MLP on the digits, one seed, with `rest` (TOML keys), compared into
/// `DIR/o`: its records.
fn compare_digits_bp(d: &Path, rest: &str) -> BTreeMap<String, Value> {
    let p = d.join("plan.toml");
    let head = "name = 'p'\ndata = 'digits'\narch = 'mlp:32'\nrules = ['bp']\nseeds = 1\nthreads_per_run = 1\n";
    // `rest` may open a table ([train]): it goes last.
    std::fs::write(&p, format!("{head}{rest}")).unwrap();
    ok(bin().arg("compare").arg(&p).args(["--quiet", "--out"]).arg(d.join("o")));
    records(&d.join("o"))
}

#[test]
fn a_plans_validation_fraction_is_carved_before_the_runs_subset() {
    // `[train] val_fraction` in a plan: each run records its validation accuracy per epoch, on
    // a split carved from the whole training set before the fraction is taken (the same split
    // for every fraction of a seed).
    let d = tmp("val");
    let recs = compare_digits_bp(&d, "fractions = [0.5, 1.0]\nepochs = [2]\n[train]\nval_fraction = 0.2\n");
    assert_eq!(recs.len(), 2);
    // 1438 digits training images, round(20%) of each class to validation: 1151 left; half
    // of each class of those: 578. (`train --val-fraction 0.2` keeps the same 1151.)
    let mut sizes: Vec<u64> = recs.values().map(|r| r["train_samples"].as_u64().unwrap()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![578, 1151]);
    for r in recs.values() {
        for e in r["curve"].as_array().unwrap() {
            let v = e["val_accuracy"].as_f64().expect("an epoch without validation accuracy");
            assert!(v > 0.3 && v <= 1.0, "{v}");
        }
    }
}

#[test]
fn separate_budgets_are_runs_of_their_own_whose_schedule_spans_them() {
    // budgets = "separate": the 2-epoch budget is a run of its own (cosine over 2 epochs, the
    // same record as `train --epochs 2` gives), recorded as budget-only (no pruning or noise
    // points); the 4-epoch run records only its own budget; the report's budget table has both.
    let d = tmp("budgets");
    let recs = compare_digits_bp(&d, "epochs = [2, 4]\nbudgets = 'separate'\nsparsities = [0, 0.5]\nnoise = [0.1]\n");
    assert_eq!(recs.len(), 2, "{:?}", recs.keys());
    let (short, long): (Vec<&Value>, Vec<&Value>) = recs.values().partition(|r| r["budget_only"] == true);
    let (short, long) = (short[0], long[0]);
    assert_eq!((short["epochs"].as_u64(), long["epochs"].as_u64()), (Some(2), Some(4)));
    assert!(short["id"].as_str().unwrap().ends_with("|e=2"));
    assert_eq!(short["pruning"].as_array().unwrap().len() + short["noise"].as_array().unwrap().len(), 0);
    assert_eq!(long["budgets"].as_array().unwrap().len(), 1);
    assert_eq!(long["pruning"].as_array().unwrap().len(), 2);
    // The same as a 2-epoch training run of that seed.
    let t = d.join("t");
    ok(bin().args(["train", "--arch", "mlp:32", "--epochs", "2", "--threads", "1", "--quiet", "--out"]).arg(&t));
    let want: Value = serde_json::from_str(&std::fs::read_to_string(t.join("result.json")).unwrap()).unwrap();
    assert_eq!(short["test_accuracy"], want["test_accuracy"]);
    assert_ne!(short["budgets"][0]["test_accuracy"], long["curve"][1]["test_accuracy"], "mid-schedule differs");
    ok(bin().arg("report").arg(d.join("o")).arg("--out").arg(d.join("r")));
    let md = std::fs::read_to_string(d.join("r/report.md")).unwrap();
    assert!(md.contains("each budget a run of its own") && md.contains("| 2 epochs | 4 epochs"), "{md}");
    // Each record carries its cost: multiply-adds per step (the 64-32-10 MLP at batch 128:
    // 128 (2 x 64 x 32 + 3 x 32 x 10) = 647168 on full batches, fewer on the last) and per
    // epoch; the report turns them into cost to stable accuracy.
    let mps = long["macs_per_step"].as_f64().unwrap();
    assert!(mps > 0.9 * 647168.0 && mps <= 647168.0, "{mps}");
    assert!(long["curve"][3]["gmacs"].as_f64().unwrap() > long["curve"][0]["gmacs"].as_f64().unwrap());
    assert!(md.contains("MMAC / step"), "{md}");
}

#[test]
fn estimate_times_each_rule_and_runs_nothing() {
    let d = tmp("estimate");
    let out = ok(bin().arg("compare").arg(plan()).args(["--estimate", "--out"]).arg(d.join("o")));
    for rule in ["bp", "fa", "dfa"] {
        assert!(out.lines().any(|l| l.starts_with(rule) && l.contains("ms per 1000 samples")), "{out}");
    }
    assert!(out.contains("expected: ") && out.contains("run(s) at once"), "{out}");
    assert!(!d.join("o").exists(), "an estimate must not run the plan");
}

/// A plan with a hardware axis is timed on each condition (simulating the devices costs several
/// times the ideal run's arithmetic), and runs already recorded in `--out` are counted apart.
#[test]
fn estimate_times_each_hardware_condition_and_counts_recorded_runs() {
    let d = tmp("estimate-hw");
    let p = d.join("hw.toml");
    std::fs::write(
        &p,
        "name = \"hw\"\ndata = \"digits\"\narch = \"mlp:16\"\nrules = [\"bp\"]\nfractions = [1.0]\n\
         epochs = [1]\nseeds = 1\nthreads_per_run = 1\nhardware = [\"ideal\", \"int8\"]\n",
    )
    .unwrap();
    let o = d.join("o");
    let est = || ok(bin().arg("compare").arg(&p).args(["--estimate", "--out"]).arg(&o));
    let before = est();
    for hw in ["bp [ideal]", "bp [int8]"] {
        assert!(before.lines().any(|l| l.starts_with(hw) && l.contains("ms per 1000 samples")), "{before}");
    }
    assert!(!before.contains("left: "), "nothing recorded yet: {before}");
    ok(bin().arg("compare").arg(&p).args(["--quiet", "--out"]).arg(&o));
    let after = est();
    assert!(after.contains("left: ") && after.contains("the 0 run(s) not yet recorded in"), "{after}");
    // Each condition's row counts its one recorded run.
    assert_eq!(
        after.lines().filter(|l| l.starts_with("bp [") && l.split_whitespace().nth(3) == Some("1")).count(),
        2,
        "{after}"
    );
}

/// A real one-node Slurm cluster (`shared/tools/slurm-local.sh`, started by `.ci/run`): a 4-task
/// array over the smoke grid gives exactly the records of the same grid run in one process.
/// Runs where `BIOLEARN_SLURM_TEST=1` (CI sets it after starting the cluster).
#[test]
fn slurm_array_equals_one_process() {
    if std::env::var("BIOLEARN_SLURM_TEST").as_deref() != Ok("1") {
        eprintln!("slurm_array_equals_one_process: BIOLEARN_SLURM_TEST != 1, no cluster here; not run");
        return;
    }
    let d = tmp("slurm");
    let arr = d.join("array");
    ok(bin().arg("slurm").arg(plan()).args(["--tasks", "4", "--time", "10", "--out"]).arg(&arr));
    let script = arr.join("slurm-array.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-3"), "{text}");
    let o = Command::new("sbatch").arg("--wait").arg(&script).output().unwrap();
    assert!(
        o.status.success(),
        "sbatch: {} {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(biolearn::protocol::result_files(&arr).len(), 4, "one result file per array task");
    let one = d.join("one");
    ok(bin().arg("compare").arg(plan()).args(["--quiet", "--out"]).arg(&one));
    assert_eq!(records(&arr), records(&one));
}

/// Every rule goes through the whole protocol (fractions and few-shot, budgets, pruning with
/// fine-tuning, noise, FGSM and PGD) with no special case: `plans/every-rule.toml`.
#[test]
fn every_rule_runs_through_the_whole_protocol() {
    let out = tmp("every-rule");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/every-rule.toml");
    ok(bin().args(["compare"]).arg(&plan).arg("--out").arg(&out));
    let recs = records(&out);
    let rules: std::collections::BTreeSet<&str> = recs.values().map(|r| r["rule"].as_str().unwrap()).collect();
    // Every registered rule whose preset network runs on 8x8 images (the plan excludes the others).
    let fits = |r: &biolearn::rules::RuleName| {
        let t: toml::Table = format!("rule = '{r}'").parse().unwrap();
        biolearn::config::TrainConfig::load(None, t).unwrap().arch_spec().unwrap().min_side() <= 8
    };
    let want: std::collections::BTreeSet<&str> =
        biolearn::rules::RuleName::all().iter().filter(|r| fits(r)).map(|r| r.as_str()).collect();
    assert_eq!(rules, want);
    assert_eq!(recs.len(), 2 * want.len());
    for (id, r) in &recs {
        assert_eq!(r["status"], "ok", "{id}");
        // EP/CHL (free-phase prediction), Activation Learning (activation read-out) and the
        // spike-count answers (desire, stdp) do not predict by the feed-forward pass whose input
        // gradient the attacks follow, nor by a differentiable answer of their own: not attacked
        // (IDE-FSNN's answer is, by implicit differentiation: attacked).
        // The black-box Square attack needs only the answer's scores: every rule gets it.
        let attacked = !["|ep|", "|chl|", "|activation-learning|", "|desire|", "|stdp|"].iter().any(|r| id.contains(r));
        let adv = r.get("adversarial").and_then(|a| a.as_array()).cloned().unwrap_or_default();
        let kinds: Vec<&str> = adv.iter().map(|p| p["attack"].as_str().unwrap()).collect();
        assert_eq!(kinds, if attacked { vec!["fgsm", "pgd", "square"] } else { vec!["square"] }, "{id}");
        if !id.contains("|e=") {
            // Against the clean accuracy of the same attacked samples: Square keeps only moves
            // that lower the true class's margin, but its initial stripes go on every sample and
            // can turn a misclassified one right (rarely): 5% of the attacked samples are allowed.
            let (clean, sq) = (
                r["attacked_clean_accuracy"].as_f64().expect("attacked runs record their samples' clean accuracy"),
                adv.last().unwrap()["test_accuracy"].as_f64().unwrap(),
            );
            assert!(sq <= clean + 0.05, "{id}: square {sq} against clean {clean} on the same samples");
        }
        assert_eq!(r["pruning"].as_array().unwrap().len(), 2, "{id}");
        assert_eq!(r["budgets"].as_array().unwrap().len(), 2, "{id}");
        if id.contains("|k=5|") {
            assert_eq!(r["shots"], 5);
            assert_eq!(r["train_samples"], 50, "{id}");
        }
    }
    check_fixture("every-rule", &recs);
    let rep = out.join("report");
    ok(bin().args(["report"]).arg(&out).arg("--out").arg(&rep));
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("## Few-shot: digits / al-mlp:400, mlp:64, mlp:64/nobias, softhebb-mlp:200"), "{md}");
    assert!(md.contains("### Adversarial robustness"));
    // A run inside the sweep is the same run as `biolearn train` with the same settings, data
    // normalisation included (SoftHebb's preset turns it off while BP's is on).
    let single = out.join("single");
    ok(bin()
        .args(["train", "--rule", "softhebb", "--arch", "softhebb-mlp:200", "--epochs", "3", "--threads", "1", "-q"])
        .arg("--out")
        .arg(&single));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(single.join("result.json")).unwrap()).unwrap();
    let want: Vec<f64> = r["epochs"].as_array().unwrap().iter().map(|e| e["test_accuracy"].as_f64().unwrap()).collect();
    let rec = recs.iter().find(|(id, _)| id.contains("|softhebb|f=1|")).unwrap().1;
    let got: Vec<f64> = rec["curve"].as_array().unwrap().iter().map(|e| e["test_accuracy"].as_f64().unwrap()).collect();
    assert_eq!(got, want);
}

/// The two Hebbian conv rules (their networks need 20x20 images and up) through the same
/// protocol on the 500/200-image Fashion-MNIST subset in tests/fixtures: `plans/every-rule-conv.toml`.
#[test]
fn every_conv_rule_matches_its_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tmp("every-rule-conv");
    ok(bin()
        .args(["compare"])
        .arg(root.join("plans/every-rule-conv.toml"))
        .arg("--data-dir")
        .arg(root.join("tests/fixtures/fmnist-small"))
        .args(["--quiet", "--out"])
        .arg(&out));
    let recs = records(&out);
    assert_eq!(recs.len(), 16);
    check_fixture("every-rule-conv", &recs);
}

/// A record as the fixtures keep it: no wall-clock time, version, revision or environment, and
/// the id without its settings hash (so that renaming a plan key does not orphan the record).
fn normalised(v: &Value) -> (String, Value) {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    for k in ["seconds", "epoch_seconds", "biolearn_version", "git_revision", "schema_version", "env"] {
        o.remove(k);
    }
    let id = o["id"].as_str().unwrap();
    let id = id.rsplit_once("|h=").map_or(id, |(a, _)| a).to_string();
    o.insert("id".into(), Value::String(id.clone()));
    (id, v)
}

/// Every accuracy in a record (curve, budgets, pruning, noise, attacks), by path.
fn accuracies(v: &Value, path: &str, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k.contains("accuracy") {
                    if let Some(f) = x.as_f64() {
                        out.push((format!("{path}.{k}"), f));
                    }
                }
                accuracies(x, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| accuracies(x, &format!("{path}[{i}]"), out)),
        _ => {}
    }
}

/// A record without what training computes (accuracies, losses, angles, spikes, the epoch of
/// stable accuracy, per-epoch multiply-adds, hardware activity): the protocol's own fields (data,
/// network, rule, share, seed, epochs, samples, multiply-adds per step, the conditions evaluated),
/// the same on every CPU.
fn skeleton(v: &Value) -> Value {
    const TRAINED: [&str; 9] =
        ["accuracy", "loss", "angles", "spikes", "epochs_to_stable", "gmacs", "elbo", "recon", "hardware_cost"];
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !TRAINED.iter().any(|t| k.contains(t)) && k.as_str() != "diverged_epoch")
                .map(|(k, x)| (k.clone(), skeleton(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(skeleton).collect()),
        x => x.clone(),
    }
}

/// The records of every rule's digits run (with its preset) are kept in tests/fixtures/NAME.jsonl,
/// made on the machine named in tests/fixtures/every-rule.machine (CPU model / kernel path). On
/// that machine every record must be bit-identical; on another CPU (other kernel path or cache
/// blocking, other rounding) every accuracy must be within 0.10 of the fixture's, the status the
/// same, and everything the protocol fixes (`skeleton`) identical. A deliberate change rewrites them: `BIOLEARN_WRITE_FIXTURES=1 cargo test --release
/// --test compare every_` (and says so, with the figures before and after, in its commit).
fn check_fixture(name: &str, recs: &BTreeMap<String, Value>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let file = dir.join(format!("{name}.jsonl"));
    let got: BTreeMap<String, Value> = recs.values().map(normalised).collect();
    let env = &recs.values().next().unwrap()["env"];
    let here = format!("{} / {}", env["cpu"].as_str().unwrap(), env["kernel"].as_str().unwrap());
    if std::env::var("BIOLEARN_WRITE_FIXTURES").is_ok_and(|v| v == "1") {
        let text: String = got.values().map(|v| serde_json::to_string(v).unwrap() + "\n").collect();
        std::fs::write(&file, text).unwrap();
        std::fs::write(dir.join("every-rule.machine"), here + "\n").unwrap();
        return;
    }
    let want: BTreeMap<String, Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| normalised(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{name}: the runs differ");
    let machine = std::fs::read_to_string(dir.join("every-rule.machine")).unwrap();
    if machine.trim() == here {
        for (id, w) in &want {
            assert_eq!(&got[id], w, "{name}: {id} differs from its fixture on the fixture's machine ({here})");
        }
    } else {
        eprintln!("{name}: fixture made on '{}', running on '{here}': accuracies within 0.10", machine.trim());
        for (id, w) in &want {
            assert_eq!(got[id]["status"], w["status"], "{id}");
            assert_eq!(skeleton(&got[id]), skeleton(w), "{name}: {id}: the protocol's fields differ");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            accuracies(&got[id], "", &mut a);
            accuracies(w, "", &mut b);
            assert_eq!(a.len(), b.len(), "{id}");
            for ((p, x), (_, y)) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 0.10, "{name}: {id}{p}: {x} vs fixture {y}");
            }
        }
    }
}

#[test]
fn a_results_file_has_one_writer_and_is_checked_before_it_is_resumed() {
    let d = tmp("integrity");
    let rest = "fractions = [0.5, 1.0]\nepochs = [1]\n";
    let recs = compare_digits_bp(&d, rest);
    assert_eq!(recs.len(), 2);
    let (p, o) = (d.join("plan.toml"), d.join("o"));
    let file = o.join("results.jsonl");
    let good = std::fs::read_to_string(&file).unwrap();
    let again = || bin().arg("compare").arg(&p).args(["--quiet", "--out"]).arg(&o).output().unwrap();
    let refused = |why: &str| {
        let r = again();
        let e = String::from_utf8_lossy(&r.stderr).into_owned();
        assert!(!r.status.success(), "{why}: accepted");
        e
    };
    // A second writer is refused while the first holds the file, naming its pid.
    {
        let holder = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        holder.try_lock().unwrap();
        std::fs::write(o.join("results.jsonl.pid"), "4242\n").unwrap();
        let e = refused("a second writer");
        assert!(e.contains("being written by another biolearn (pid 4242)"), "{e}");
    }
    // A plain sweep is refused while an array's task holds the directory (and the other way),
    // though their results files differ; the array's tasks share it.
    {
        let holder =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(o.join("sweep.lock")).unwrap();
        holder.try_lock_shared().unwrap();
        let e = refused("a sweep beside an array's task");
        assert!(e.contains("another biolearn sweep is writing"), "{e}");
        let task = bin().arg("compare").arg(&p).args(["--quiet", "--shard", "0/2", "--out"]).arg(&o).output().unwrap();
        assert!(task.status.success(), "{}", String::from_utf8_lossy(&task.stderr));
        let _ = std::fs::remove_file(o.join("results.shard-0-of-2.jsonl"));
    }
    // A record of the wrong schema, junk, or a record made with other settings is refused with
    // its file and line, and the file is left as it was.
    let mut lines: Vec<&str> = good.lines().collect();
    let wrong_type = lines[0].replacen("\"test_accuracy\":", "\"test_accuracy\":\"high\",\"x\":", 1);
    let stale = lines[0].replacen("|h=", "|h=0", 1);
    for (bad, want) in [
        (wrong_type.as_str(), "results.jsonl:1: not a result record"),
        ("{\"id\":\"only-an-id\"}", "results.jsonl:1: not a result record"),
        ("\u{1}\u{2}binary junk", "results.jsonl:1: not a result record"),
        (stale.as_str(), "with other settings"),
    ] {
        let text = format!("{bad}\n{}\n", lines[1]);
        std::fs::write(&file, &text).unwrap();
        let e = refused(want);
        assert!(e.contains(want), "{want}: {e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "{want}: the file was changed");
    }
    // A complete last record without its newline is kept (not cut and run again); the plan's
    // runs are all there, so nothing runs.
    lines.truncate(2);
    std::fs::write(&file, format!("{}\n{}", lines[0], lines[1])).unwrap();
    let r = again();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), good);
    assert_eq!(records(&o).len(), 2);
}

/// Every plan shipped in plans/ loads (its tuned file merged, every table checked) and lays out
/// its grid: a plan a reader is told to run does not fail on its first line.
#[test]
fn every_shipped_plan_loads_and_lays_out_its_runs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let plan = biolearn::protocol::plan::Plan::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let runs = plan.runs().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!runs.is_empty(), "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 10, "{n} plans");
}

/// The conditions run outside plans, end to end: `biolearn online` (its rate searched on a
/// validation split), `continual`, `episodes` and `interference` write their JSON, and `report
/// --conditions` turns each directory into its section with every arm against BP's.
#[test]
fn online_continual_episodes_and_interference_reach_the_report() {
    let d = tmp("conditions");
    compare_digits_bp(&d, "epochs = [1]\n");
    let (on, co, ep, inter) = (d.join("online"), d.join("continual"), d.join("episodes"), d.join("interference"));
    for dir in [&on, &co, &ep] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let common = ["--arch", "mlp:16", "--threads", "1", "--seeds", "2"];
    for rule in ["bp", "fa"] {
        let json = on.join(format!("{rule}.json"));
        let out = ok(bin()
            .args(["online", "--rule", rule, "--samples", "300", "--lrs", "0.001,0.05", "--json"])
            .arg(&json)
            .args(common));
        assert!(out.contains("online (300 samples, batch 1"), "{out}");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["search"]["trials"].as_array().unwrap().len(), 2);
        let curve = v["runs"][0]["curve"].as_array().unwrap();
        assert_eq!(curve.last().unwrap()["samples"], 300);
        ok(bin()
            .args(["continual", "--rule", rule, "--tasks", "split:2", "--epochs-per-task", "1", "--lrs", "1e-6,0.05"])
            .arg("--json")
            .arg(co.join(format!("{rule}.json")))
            .args(common));
        ok(bin()
            .args(["episodes", "--rule", rule, "--arch", "mlp:16", "--threads", "1", "--classes", "0-4"])
            .args(["--ways", "3", "--shots", "5", "--queries", "5", "--episodes", "4", "--json"])
            .arg(ep.join(format!("{rule}.json"))));
    }
    let out = ok(bin()
        .args(["interference", "--rules", "bp,pc:equilibrium", "--iterations", "3", "--depths", "1,3"])
        .args(["--width", "8", "--seeds", "3", "--out"])
        .arg(&inter));
    assert!(out.contains("pc:equilibrium") && out.contains("1-1-2: after one step (0.640, 0.800)"), "{out}");
    assert!(inter.join("example_112.svg").exists() && inter.join("target_alignment.png").exists());
    // The continual search chose on the validation splits: the rate that learns.
    let v: Value = serde_json::from_str(&std::fs::read_to_string(co.join("bp.json")).unwrap()).unwrap();
    assert_eq!(v["search"]["trials"].as_array().unwrap().len(), 2);
    assert_eq!(v["lr"].as_f64().unwrap() as f32, 0.05f32, "{}", v["search"]);
    let mut report = bin();
    report.arg("report").arg(d.join("o")).arg("--out").arg(d.join("r"));
    for dir in [&on, &co, &ep, &inter] {
        report.arg("--conditions").arg(dir);
    }
    ok(&mut report);
    let md = std::fs::read_to_string(d.join("r/report.md")).unwrap();
    for section in ["### Online learning", "### Continual learning", "### Few-shot online episodes", "### Interference"]
    {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    assert!(md.contains("| final accuracy | fa |") && md.contains("| task-IL A | fa |"), "{md}");
    assert!(md.contains("| query accuracy | fa |") && md.contains("alignment x 100, depth 3 | pc:equilibrium"), "{md}");
    let plots: Vec<String> = std::fs::read_dir(d.join("r/plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(plots.iter().any(|p| p.starts_with("interference_112_") && p.ends_with(".png")), "{plots:?}");
    // The conditions alone (DIR without records): their sections only.
    let alone = d.join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    ok(bin().arg("report").arg(&alone).arg("--conditions").arg(&inter));
    let md = std::fs::read_to_string(alone.join("report/report.md")).unwrap();
    assert!(md.contains("### Interference") && !md.contains("records:"), "{md}");
    // A directory with no condition's result is refused, naming it.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = bin().arg("report").arg(d.join("o")).arg("--conditions").arg(&empty).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no result of online"), "{o:?}");
}

/// A diverged run's record holds NaN (its training loss, written as `null`): the sweep records
/// it, resumes past it, and reports it. (Until session 25 `null` could be written but not read
/// back: the next `compare` and `report` both refused the file.)
#[test]
fn a_diverged_run_is_recorded_resumed_past_and_reported() {
    let d = tmp("diverged");
    let p = d.join("div.toml");
    std::fs::write(
        &p,
        "name = 'div'\ndata = 'digits'\narch = 'mlp:16'\nrules = ['bp', 'fa']\nfractions = [1.0]\nepochs = [2]\nseeds = 1\n\
         threads_per_run = 1\n[rule.bp]\nlr = 1e8\n",
    )
    .unwrap();
    let out = d.join("out");
    ok(bin().arg("compare").arg(&p).args(["--quiet", "--out"]).arg(&out));
    let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert!(text.contains(r#""status":"diverged""#) && text.contains(r#""train_loss":null"#), "{text}");
    let again = ok(bin().arg("compare").arg(&p).args(["--out"]).arg(&out));
    assert!(again.contains("2 already done"), "{again}");
    assert_eq!(std::fs::read_to_string(out.join("results.jsonl")).unwrap(), text);
    ok(bin().arg("report").arg(&out).arg("--out").arg(d.join("report")));
    let md = std::fs::read_to_string(d.join("report/report.md")).unwrap();
    assert!(md.contains("1 diverged"), "{md}");
    std::fs::remove_dir_all(&d).unwrap();
}
