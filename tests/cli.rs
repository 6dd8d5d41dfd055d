//! The command line, end to end: exit statuses, result.json contents, reproducibility, and clear
//! errors on bad input. Every test checks the exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_biolearn"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("biolearn-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("cannot start biolearn")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "biolearn {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn fail(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "biolearn {args:?} should exit 1; stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn result(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap()
}

/// The history without wall-clock fields.
fn history(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("seconds");
            e
        })
        .collect()
}

#[test]
fn train_writes_result_json_with_config_history_and_accuracy() {
    let d = tmp("train");
    let out = d.join("run");
    let o =
        ok(&["train", "--epochs", "3", "--arch", "mlp:64", "--out", out.to_str().unwrap(), "--save", "--threads", "1"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("test accuracy"), "{stdout}");
    let r = result(&out);
    assert_eq!(r["config"]["rule"], "bp");
    assert_eq!(r["config"]["data"], "digits");
    assert_eq!(r["config"]["epochs"], 3);
    assert_eq!(r["epochs"].as_array().unwrap().len(), 3);
    let acc = r["test_accuracy"].as_f64().unwrap();
    assert!((0.8..=1.0).contains(&acc), "digits after 3 epochs: {acc}");
    assert_eq!(r["data"]["train"], 1438);
    assert!(r["git_revision"].as_str().is_some() && r["biolearn_version"].as_str().is_some());
    assert!(out.join("model.safetensors").exists());
    let m = biolearn::safetensors::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(m["layers.0.weight"].0, vec![64, 64]);
}

#[test]
fn same_seed_and_threads_give_identical_histories() {
    let d = tmp("repro");
    for rule in ["bp", "brsf", "dfa"] {
        let mut hs = Vec::new();
        for k in 0..2 {
            let out = d.join(format!("{rule}{k}"));
            ok(&[
                "train",
                "--rule",
                rule,
                "--epochs",
                "2",
                "--arch",
                "mlp:32,32",
                "--seed",
                "7",
                "--threads",
                "2",
                "--out",
                out.to_str().unwrap(),
                "-q",
            ]);
            hs.push(history(&result(&out)));
        }
        assert_eq!(hs[0], hs[1], "{rule}: two runs with seed 7 differ");
        let out = d.join(format!("{rule}-other"));
        ok(&[
            "train",
            "--rule",
            rule,
            "--epochs",
            "2",
            "--arch",
            "mlp:32,32",
            "--seed",
            "8",
            "--threads",
            "2",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ]);
        assert_ne!(history(&result(&out)), hs[0], "{rule}: seed 8 gave seed 7's run");
    }
}

#[test]
fn config_file_and_flags() {
    let d = tmp("config");
    let f = d.join("run.toml");
    std::fs::write(&f, "rule = \"fa\"\nepochs = 2\narch = \"mlp:16\"\nlr = 0.02\n").unwrap();
    let out = d.join("run");
    ok(&["train", "--config", f.to_str().unwrap(), "--lr", "0.03", "--out", out.to_str().unwrap(), "-q"]);
    let r = result(&out);
    assert_eq!(r["config"]["rule"], "fa");
    assert_eq!(r["config"]["arch"], "mlp:16");
    assert!((r["config"]["lr"].as_f64().unwrap() - 0.03).abs() < 1e-6);
    std::fs::write(&f, "epocs = 2\n").unwrap();
    let e = fail(&["train", "--config", f.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(e.contains("run.toml") && e.contains("epocs"), "{e}");
    let e = fail(&["train", "--config", d.join("missing.toml").to_str().unwrap()]);
    assert!(e.contains("missing.toml"), "{e}");
}

#[test]
fn bad_input_gives_clear_errors_and_exit_1() {
    let d = tmp("bad");
    let e =
        fail(&["train", "--data", "mnist", "--data-dir", d.to_str().unwrap(), "--out", d.join("o").to_str().unwrap()]);
    assert!(e.contains(d.to_str().unwrap()), "{e}");
    // A corrupt IDX file: the error names it.
    std::fs::write(d.join("train-images-idx3-ubyte"), [0u8, 0, 8, 1, 0, 0, 0, 1]).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte"), [0u8, 0, 8, 1, 0, 0, 0, 1, 3]).unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte"), [0u8, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28]).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), [0u8, 0, 8, 1, 0, 0, 0, 0]).unwrap();
    let e =
        fail(&["train", "--data", "mnist", "--data-dir", d.to_str().unwrap(), "--out", d.join("o").to_str().unwrap()]);
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("magic"), "{e}");
    let e = fail(&["train", "--arch", "lenet", "--out", d.join("o").to_str().unwrap()]);
    assert!(e.contains("lenet") && e.contains("8x8"), "{e}");
    let e = fail(&["train", "--arch", "mlp:abc"]);
    assert!(e.contains("mlp:abc"), "{e}");
    let e = fail(&["train", "--epochs", "0"]);
    assert!(e.contains("epochs"), "{e}");
    let e = fail(&["data", "info", "imagenet"]);
    assert!(e.contains("imagenet"), "{e}");
    // clap's own usage errors exit 2.
    let o = run(&["train", "--rule", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn diverging_run_is_recorded_not_a_crash() {
    let d = tmp("diverge");
    let out = d.join("run");
    let o = ok(&["train", "--lr", "1e30", "--epochs", "3", "--arch", "mlp:32", "--out", out.to_str().unwrap(), "-q"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("diverged"));
    let r = result(&out);
    assert_eq!(r["diverged"]["epoch"], 1);
}

#[test]
fn rules_and_data_info_and_bench() {
    let o = ok(&["rules"]);
    let s = String::from_utf8_lossy(&o.stdout);
    for r in ["bp", "fa", "usf", "brsf", "frsf", "dfa"] {
        assert!(s.lines().any(|l| l.starts_with(r)), "rules lacks {r}");
    }
    let o = ok(&["data", "info", "digits"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("1438") && s.contains("359") && s.contains("checksum"), "{s}");
    let o = ok(&[
        "bench",
        "--data",
        "digits",
        "--rules",
        "bp,dfa",
        "--archs",
        "mlp:32",
        "--threads",
        "1,2",
        "--warmup-steps",
        "2",
    ]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert_eq!(s.lines().count(), 5, "{s}");
}

/// The kernel suite runs end to end on a small conv net: the three peaks per thread count, a
/// forward and a backward row for every layer, the BP step's products, each rule's step with
/// the time of its products alone; rates positive and finite, shares against the peaks.
#[test]
fn bench_kernels_suite_rows() {
    let d = tmp("kernels");
    let mut rng = biolearn::rng::Rng::new(2);
    write_halves(&d, "train", 300, &mut rng);
    write_halves(&d, "t10k", 10, &mut rng);
    let json = d.join("k.jsonl");
    let o = ok(&[
        "bench",
        "--kernels",
        "--quick",
        "--data",
        "mnist",
        "--data-dir",
        d.to_str().unwrap(),
        "--rules",
        "bp,pc",
        "--archs",
        "lenet;mlp:16",
        "--threads",
        "1,2",
        "--json",
        json.to_str().unwrap(),
    ]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("### Measured peaks") && md.contains("### Training steps"), "{md}");
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&json).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let count = |section: &str, arch: &str, threads: u64| {
        rows.iter().filter(|r| r["section"] == section && r["arch"] == arch && r["threads"] == threads).count()
    };
    for t in [1, 2] {
        assert_eq!(count("peak", "", t), 3);
        // mlp:16: dense, act, dense = 3 layers, forward and backward each; LeNet 11; and
        // each network's optimiser step.
        assert_eq!(count("layer", "mlp:16", t), 7);
        assert_eq!(count("layer", "lenet", t), 23);
        // The optimiser's row: SGD over mlp:16's 784 x 16 + 16 + 16 x 10 + 10 parameters.
        let opt = rows
            .iter()
            .find(|r| {
                r["arch"] == "mlp:16"
                    && r["threads"] == t
                    && r["section"] == "layer"
                    && r["name"].as_str().unwrap().starts_with("optimiser step")
            })
            .unwrap();
        assert!(opt["name"].as_str().unwrap().contains("12730 parameters"), "{opt}");
        assert_eq!(opt["bound"], "cache", "{opt}");
        assert_eq!(count("step", "mlp:16", t), 2);
        assert!(count("gemm", "mlp:16", t) >= 3);
    }
    for r in &rows {
        let secs = r["seconds"].as_f64().unwrap();
        assert!(secs > 0.0 && secs.is_finite(), "{r}");
        let share = r["peak_share"].as_f64().unwrap();
        assert!(share > 0.0 && share.is_finite(), "{r}");
        let compute = r["bound"] == "compute";
        assert_eq!(compute, r["flops"].as_f64().unwrap() > 0.0, "{r}");
        if r["section"] == "step" {
            assert!(r["gemm_seconds"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
}

/// A 28x28 two-class MNIST-format file pair NAME-{images,labels}-idx*-ubyte in `d`: class 0
/// has a bright left half, class 1 a bright right half, plus noise.
fn write_halves(d: &std::path::Path, name: &str, n: usize, rng: &mut biolearn::rng::Rng) {
    let mut img = vec![0u8, 0, 8, 3];
    img.extend((n as u32).to_be_bytes());
    img.extend(28u32.to_be_bytes());
    img.extend(28u32.to_be_bytes());
    let mut lab = vec![0u8, 0, 8, 1];
    lab.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let c = (i % 2) as u8;
        lab.push(c);
        for _ in 0..28 {
            for x in 0..28 {
                let bright = (x < 14) == (c == 0);
                let v = if bright { 160.0 } else { 60.0 } + 60.0 * rng.normal();
                img.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    std::fs::write(d.join(format!("{name}-images-idx3-ubyte")), img).unwrap();
    std::fs::write(d.join(format!("{name}-labels-idx1-ubyte")), lab).unwrap();
}

#[test]
fn conv_nets_train_on_idx_files_written_here() {
    // LeNet must learn the two halves (`write_halves`) with every rule of the family.
    let d = tmp("conv");
    let mut rng = biolearn::rng::Rng::new(1);
    write_halves(&d, "train", 256, &mut rng);
    write_halves(&d, "t10k", 64, &mut rng);
    for rule in ["bp", "fa", "usf", "dfa"] {
        let out = d.join(rule);
        ok(&[
            "train",
            "--data",
            "mnist",
            "--data-dir",
            d.to_str().unwrap(),
            "--arch",
            "lenet",
            "--rule",
            rule,
            "--epochs",
            "4",
            "--batch",
            "32",
            "--lr",
            "0.02",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ]);
        let acc = result(&out)["test_accuracy"].as_f64().unwrap();
        assert!(acc >= 0.9, "{rule} lenet on the two-halves task: {acc}");
    }
}

#[test]
fn set_reaches_any_field_and_presets_fill_the_rest() {
    // --set takes TOML values (lists included) and bare words; the rule's preset fills what is
    // left unset (pc-positive: sigmoid 300-300 MLP), and flags win over the preset.
    let d = tmp("set");
    let out = d.join("r");
    let out_s = out.to_str().unwrap();
    ok(&[
        "train",
        "--rule",
        "pc-positive",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--set",
        "pc_feedback=random",
        "--set",
        "pc_steps=3",
        "-q",
        "--out",
        out_s,
    ]);
    let c = &result(&out)["config"];
    // The rule's own settings, resolved: the ones given, and its defaults for the rest.
    assert_eq!(c["settings"]["pc_feedback"], "random");
    assert_eq!(c["settings"]["pc_steps"], 3);
    assert_eq!(c["settings"]["pc_gamma"], 0.025);
    assert_eq!(c["settings"]["pc_relu"], true);
    assert_eq!(c["arch"], "mlp:300,300");
    assert_eq!(c["activation"], "sigmoid");
    assert_eq!(c["batch"], 32);
    // An unknown key names itself and lists the rule's own settings.
    let e = fail(&["train", "--rule", "pc-positive", "--set", "pc_feedbak=random", "-q", "--out", out_s]);
    assert!(e.contains("pc_feedbak") && e.contains("pc_steps, pc_gamma, pc_feedback, pc_relu"), "{e}");
    // Another rule's setting is not this rule's.
    let e = fail(&["train", "--rule", "pc-positive", "--set", "hebb_lr=[0.1]", "-q", "--out", out_s]);
    assert!(e.contains("hebb_lr"), "{e}");
    // Values that cannot work are refused before training, naming the field.
    for (rule, kv, field) in [
        ("ep", "ep_beta=0", "ep_beta"),
        ("dtp", "tp_beta=0", "tp_beta"),
        ("pc", "pc_steps=0", "pc_steps"),
        ("pc", "pc_steps=4000000000", "pc_steps"),
        ("ep", "ep_free_steps=4000000000", "ep_free_steps"),
        ("softhebb", "hebb_t_inv=[-1]", "hebb_t_inv"),
        ("softhebb", "hebb_t_inv=[]", "hebb_t_inv"),
        ("pc", "pc_momentum=1", "pc_momentum"),
        ("pc", "pc_energy=bogus", "pc_energy"),
    ] {
        let e = fail(&["train", "--rule", rule, "--set", kv, "-q", "--out", out_s]);
        assert!(e.contains(field), "{rule} {kv}: {e}");
    }
    // A config file's [settings] table reaches the rule's settings; flags win over it.
    let f = d.join("run.toml");
    std::fs::write(&f, "rule = 'pc'\nepochs = 1\n[settings]\npc_steps = 2\npc_energy = 'ce'\n").unwrap();
    ok(&["train", "--config", f.to_str().unwrap(), "--set", "pc_steps=4", "-q", "--out", out_s]);
    let c = &result(&out)["config"];
    assert_eq!((c["settings"]["pc_steps"].as_i64(), c["settings"]["pc_energy"].as_str()), (Some(4), Some("ce")));
}

/// Every rule (on the digits; the two conv-net rules need larger images) stopped after one
/// epoch, resumed for one, then resumed to the end, gives exactly the records of an
/// uninterrupted run: weights, rule state (learned feedback, inverses, adaptive rates, a
/// private optimiser), optimiser moments, RNG and schedule all come back from the checkpoint.
/// Each rule's own phases are crossed (Hebbian: 2 unsupervised epochs of 3).
#[test]
fn a_stopped_run_resumes_to_the_uninterrupted_records_for_every_rule() {
    let d = tmp("resume");
    for rule in biolearn::rules::RuleName::all() {
        let rule = rule.as_str();
        let preset = biolearn::config::TrainConfig::load(None, format!("rule = '{rule}'").parse().unwrap()).unwrap();
        if preset.arch_spec().unwrap().min_side() > 8 {
            continue; // its network needs larger images than the digits'
        }
        let extra: &[&str] = match rule {
            "softhebb" => &["--arch", "softhebb-mlp:100", "--set", "hebb_epochs=2"],
            "activation-learning" => &["--arch", "al-mlp:40,20", "--set", "hebb_epochs=2"],
            "pc-positive" => &["--batch", "16", "--arch", "mlp:64,64"],
            "desire" => &["--arch", "mlp:64/nobias"],
            _ => &["--arch", "mlp:64"],
        };
        let (whole, parts) = (d.join(format!("{rule}-whole")), d.join(format!("{rule}-parts")));
        let base = ["train", "--rule", rule, "--epochs", "3", "--threads", "1", "-q"];
        let with =
            |more: &[&str]| -> Vec<String> { base.iter().chain(extra).chain(more).map(|s| s.to_string()).collect() };
        let args = with(&["--out", whole.to_str().unwrap()]);
        ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let args = with(&["--stop-after", "1", "--out", parts.to_str().unwrap()]);
        let o = ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert!(String::from_utf8_lossy(&o.stdout).contains("stopped after epoch 1 of 3"), "{rule}");
        assert_eq!(result(&parts)["complete"], false);
        ok(&["train", "--resume", parts.to_str().unwrap(), "--stop-after", "1", "-q"]);
        ok(&["train", "--resume", parts.to_str().unwrap(), "-q"]);
        let (a, b) = (result(&whole), result(&parts));
        assert_eq!(history(&a), history(&b), "{rule}: resumed records differ");
        assert_eq!(
            (&a["config"], &b["config"], &b["complete"]),
            (&b["config"], &a["config"], &serde_json::json!(true))
        );
    }
    // A resumed run takes no new settings; a corrupt or foreign checkpoint is a clear error.
    let parts = d.join("bp-parts");
    let e = fail(&["train", "--resume", parts.to_str().unwrap(), "--lr", "0.1", "-q"]);
    assert!(e.contains("--resume"), "{e}");
    let ck = parts.join("checkpoint.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() / 2]).unwrap();
    let e = fail(&["train", "--resume", parts.to_str().unwrap(), "-q"]);
    assert!(e.contains("checkpoint.safetensors"), "{e}");
    let e = fail(&["train", "--resume", d.join("nowhere").to_str().unwrap(), "-q"]);
    assert!(e.contains("nowhere"), "{e}");
}

/// `biolearn eval` on a saved model reproduces the test accuracy of its result.json exactly, for
/// a feed-forward rule, a rule that answers by its own relaxation (EP), one that answers by its
/// class scores (Activation Learning) and a recurrent net (W_h saved and pruned with W_x);
/// `--init-from` starts a run from a model's weights.
#[test]
fn eval_reproduces_the_recorded_accuracy_and_init_from_starts_from_a_model() {
    let d = tmp("eval");
    for (rule, arch) in
        [("dfa", "mlp:64"), ("ep", "mlp:64"), ("activation-learning", "al-mlp:40,20"), ("tpsgd", "gru:16")]
    {
        let out = d.join(rule);
        let o = out.to_str().unwrap();
        ok(&["train", "--rule", rule, "--arch", arch, "--epochs", "2", "--threads", "1", "--save", "-q", "--out", o]);
        let want = result(&out)["test_accuracy"].as_f64().unwrap();
        let text = String::from_utf8(ok(&["eval", o, "--noise", "0.2", "--sparsity", "0.5"]).stdout).unwrap();
        let line = text.lines().find(|l| l.starts_with("test ")).unwrap();
        let got: f64 = line.rsplit_once('(').unwrap().1.trim_end_matches(')').parse().unwrap();
        assert_eq!(got, want, "{rule}: {text}");
        assert!(text.contains("gaussian noise 0.2") && text.contains("sparsity 0.5"), "{text}");
    }
    // Starting from the DFA model: its first epoch starts where the model ended (accuracy well
    // above a fresh net's first epoch), and a model of another network is refused.
    let dfa = d.join("dfa");
    let again = d.join("again");
    ok(&["train", "--rule", "bp", "--arch", "mlp:64", "--epochs", "1", "--lr", "1e-4", "--threads", "1", "-q"]
        .iter()
        .copied()
        .chain(["--init-from", dfa.to_str().unwrap(), "--out", again.to_str().unwrap()])
        .collect::<Vec<_>>());
    let start = result(&again)["test_accuracy"].as_f64().unwrap();
    assert!(start > 0.8, "{start}");
    let e = fail(&[
        "train",
        "--arch",
        "mlp:32",
        "--init-from",
        dfa.to_str().unwrap(),
        "-q",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(e.contains("shape"), "{e}");
    let e = fail(&["eval", d.join("missing").to_str().unwrap()]);
    assert!(e.contains("missing"), "{e}");
    // --per-layer: each weight tensor's share kept by the global mask (together the asked
    // sparsity, up to ties and the per-layer minimum) and the accuracy with only it pruned.
    let text =
        String::from_utf8(ok(&["eval", dfa.to_str().unwrap(), "--sparsity", "0,0.9", "--per-layer"]).stdout).unwrap();
    let only: Vec<(usize, f64, f64)> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("only "))
        .map(|l| {
            let (_, rest) = l.split_once('(').unwrap();
            let (size, rest) = rest.split_once(" weights, ").unwrap();
            let (kept, _) = rest.split_once("% kept").unwrap();
            let acc: f64 = l.rsplit_once('(').unwrap().1.trim_end_matches(')').parse().unwrap();
            (size.parse().unwrap(), kept.parse::<f64>().unwrap() / 100.0, acc)
        })
        .collect();
    // mlp:64 on the digits: 64x64 and 64x10 weights, listed once (sparsity 0 has no such lines).
    assert_eq!(only.iter().map(|o| o.0).collect::<Vec<_>>(), [64 * 64, 64 * 10], "{text}");
    let kept: f64 = only.iter().map(|o| o.0 as f64 * o.1).sum::<f64>() / (64.0 * 74.0);
    assert!((kept - 0.1).abs() < 0.002, "{kept}: {text}");
    assert!(only.iter().all(|o| (0.0..=1.0).contains(&o.2)), "{text}");
    assert!(fail(&["eval", dfa.to_str().unwrap(), "--per-layer"]).contains("--sparsity"));
    // Attacks: white-box through the model's own input gradient equals a transfer attack from
    // the same model; EP has no input gradient (refused, with what to do instead) but is attacked
    // by the black-box Square attack and by a transfer attack from the DFA model.
    let acc = |text: &str, what: &str| -> f64 {
        let l = text.lines().find(|l| l.starts_with(what)).unwrap_or_else(|| panic!("{what}: {text}"));
        l.rsplit_once('(').unwrap().1.trim_end_matches(')').parse().unwrap()
    };
    let (dfa_s, ep_s) = (dfa.to_str().unwrap(), d.join("ep"));
    let ep_s = ep_s.to_str().unwrap();
    let atk = ["--fgsm", "0.1", "--pgd", "0.1", "--pgd-steps", "3", "--attack-samples", "100"];
    let own = String::from_utf8(ok(&[&["eval", dfa_s][..], &atk].concat()).stdout).unwrap();
    let from = String::from_utf8(ok(&[&["eval", dfa_s, "--attack-from", dfa_s][..], &atk].concat()).stdout).unwrap();
    for what in ["fgsm 0.1", "pgd 0.1"] {
        assert_eq!(acc(&own, what), acc(&from, what), "{own}\n{from}");
        assert!(acc(&own, what) < acc(&own, "(clean"), "{own}");
    }
    let e = fail(&["eval", ep_s, "--fgsm", "0.1"]);
    assert!(e.contains("no input gradient") && e.contains("--square"), "{e}");
    let text = String::from_utf8(
        ok(&[&["eval", ep_s, "--square", "0.1", "--square-queries", "20", "--attack-from", dfa_s][..], &atk].concat())
            .stdout,
    )
    .unwrap();
    // Each attack lowers EP's accuracy: Square by its own queries, the transfer attacks by the
    // DFA model's gradients.
    let clean = acc(&text, "(clean");
    for what in ["square 0.1", "fgsm 0.1 from", "pgd 0.1 from"] {
        assert!(acc(&text, what) < clean, "{what}: {text}");
    }
    assert!(fail(&["eval", dfa_s, "--square", "2"]).contains("eps must be in [0, 1]"));
    assert!(fail(&["eval", dfa_s, "--attack-from", ep_s]).contains("--fgsm or --pgd"));
    assert!(fail(&["eval", dfa_s, "--square", "0.1", "--attack-from", ep_s]).contains("--fgsm or --pgd"));
}

#[test]
fn tune_searches_on_validation_resumes_and_writes_a_loadable_preset() {
    let d = tmp("tune");
    let out = d.join("t");
    let o = out.to_str().unwrap();
    let args = ["tune", "--rule", "bp", "--arch", "mlp:32", "--epochs", "1", "--subset", "0.5", "--quiet", "--out", o];
    let s = String::from_utf8_lossy(&ok(&[&args[..], &["--trials", "3"]].concat()).stdout).into_owned();
    assert!(s.contains("3 trials (3 run now)"), "{s}");
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().map(String::from).collect::<Vec<_>>();
    let trials = lines(&out.join("trials.jsonl"));
    assert_eq!(trials.len(), 3);
    for t in &trials {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        assert!(v["val_accuracy"].as_f64().unwrap() > 0.0, "{t}");
        assert!(!t.contains("test"), "a trial must not carry a test figure: {t}");
        let lr = v["params"]["lr"].as_f64().unwrap();
        assert!((1e-4..=1.0).contains(&lr), "{lr}");
    }
    // More trials: the first three are read back, not rerun, and keep their lines.
    let s = String::from_utf8_lossy(&ok(&[&args[..], &["--trials", "5"]].concat()).stdout).into_owned();
    assert!(s.contains("5 trials (2 run now)"), "{s}");
    assert_eq!(lines(&out.join("trials.jsonl"))[..3], trials[..]);
    let preset = std::fs::read_to_string(out.join("preset.toml")).unwrap();
    assert!(
        preset.contains("validation split, never on the test set") && preset.contains("5 trials x 1 epochs"),
        "{preset}"
    );
    assert!(out.join("trials.png").is_file());
    train_from_preset(&out.join("preset.toml"), 1, &d.join("run"));
    // Two trials at a time: the same trials (by index) and the same preset as one at a time.
    let args2 = ["tune", "--rule", "bp", "--arch", "mlp:32", "--epochs", "1", "--subset", "0.5", "--threads", "1"];
    let (p1, p2) = (d.join("p1"), d.join("p2"));
    for (dir, n) in [(&p1, "1"), (&p2, "2")] {
        ok(&[&args2[..], &["--trials", "4", "--parallel", n, "--quiet", "--out", dir.to_str().unwrap()]].concat());
    }
    let sorted = |p: &Path| {
        let mut v: Vec<serde_json::Value> =
            lines(&p.join("trials.jsonl")).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        v.iter_mut().for_each(|t| {
            t.as_object_mut().unwrap().remove("seconds");
        });
        v.sort_by_key(|t| t["trial"].as_u64());
        v
    };
    assert_eq!(sorted(&p1), sorted(&p2));
    assert_eq!(
        std::fs::read_to_string(p1.join("preset.toml")).unwrap(),
        std::fs::read_to_string(p2.join("preset.toml")).unwrap()
    );
    // A space key that is not a setting of the rule is refused, naming it.
    let e = fail(&["tune", "--rule", "bp", "--space", "pc_gamma=log:0.01:0.5", "--trials", "1", "--quiet", "--out", o]);
    assert!(e.contains("pc_gamma"), "{e}");
}

#[test]
fn tune_searches_a_per_layer_list_setting_as_one_value() {
    // hebb_t_inv is a list (one temperature per Hebbian layer, the last repeating): a draw goes
    // in as [v], and the preset holds it so, loadable by `train --config`.
    let d = tmp("tune-list");
    let out = d.join("t");
    ok(&[
        "tune",
        "--rule",
        "softhebb",
        "--arch",
        "softhebb-mlp:16",
        "--set",
        "hebb_updates=20",
        "--space",
        "hebb_t_inv=log:5:100",
        "--trials",
        "2",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let preset = std::fs::read_to_string(out.join("preset.toml")).unwrap();
    assert!(preset.lines().any(|l| l.starts_with("hebb_t_inv = [")), "{preset}");
    train_from_preset(&out.join("preset.toml"), 2, &d.join("run"));
}

/// `train --config PRESET --epochs N --out OUT` succeeds (a tuned preset loads and trains).
fn train_from_preset(preset: &Path, epochs: usize, out: &Path) {
    let e = epochs.to_string();
    ok(&["train", "--config", preset.to_str().unwrap(), "--epochs", &e, "--quiet", "--out", out.to_str().unwrap()]);
}

/// `DIR/p.toml`: a plan of `rules` on an MLP 16 (digits, one seed, one epoch), `tables` (TOML
/// tables) and a search of 2 one-epoch trials on half the training set.
fn small_tuned_plan(d: &Path, rules: &str, tables: &str) -> PathBuf {
    let plan = d.join("p.toml");
    let head = format!("name = \"p\"\narch = \"mlp:16\"\nrules = {rules}\nseeds = 1\nepochs = [1]\n");
    std::fs::write(&plan, format!("{head}{tables}[tune]\ntrials = 2\nepochs = 1\nsubset = 0.5\n")).unwrap();
    plan
}

#[test]
fn tune_over_a_plan_gives_every_entry_the_same_budget_and_the_plan_loads_the_result() {
    let d = tmp("tune-plan");
    let plan = small_tuned_plan(&d, "[\"bp\", \"dfa\"]", "[arm.bp-wide]\nrule = \"bp\"\narch = \"mlp:32\"\n");
    let text = std::fs::read_to_string(&plan).unwrap() + "[tune.space]\ndfa = \"lr=log:1e-3:1e-1\"\n";
    std::fs::write(&plan, text).unwrap();
    let out = d.join("t");
    let o = out.to_str().unwrap();
    let s = String::from_utf8_lossy(&ok(&["tune", "--plan", plan.to_str().unwrap(), "--quiet", "--out", o]).stdout)
        .into_owned();
    assert!(s.contains("bp-wide") && s.contains("mlp:32"), "{s}");
    for e in ["bp", "dfa", "bp-wide"] {
        let n = std::fs::read_to_string(out.join(e).join("trials.jsonl")).unwrap().lines().count();
        assert_eq!(n, 2, "{e}: the plan's budget");
    }
    let tuned = std::fs::read_to_string(out.join("tuned.toml")).unwrap();
    assert!(tuned.contains("[rule.bp]") && tuned.contains("[rule.dfa]") && tuned.contains("[arm.bp-wide]"), "{tuned}");
    assert!(tuned.contains("never the test set") || tuned.contains("Never the test set"), "{tuned}");
    // dfa searched its own space (lr only); bp the default (lr and weight decay).
    let dfa = tuned.split("[rule.dfa]").nth(1).unwrap().split("\n\n").next().unwrap();
    assert!(dfa.contains("lr = ") && !dfa.contains("weight_decay"), "{dfa}");
    // The plan with `tuned = ...` runs with the chosen settings (its run ids change with them).
    std::fs::copy(out.join("tuned.toml"), d.join("tuned.toml")).unwrap();
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(d.join("q.toml"), format!("tuned = \"tuned.toml\"\n{text}")).unwrap();
    let q = d.join("q.toml");
    let est = String::from_utf8_lossy(&ok(&["compare", q.to_str().unwrap(), "--estimate"]).stdout).into_owned();
    assert!(est.contains("arm bp-wide (bp)"), "{est}");
    // A tuned file naming an entry the plan lacks is refused; flags do not mix with --plan.
    std::fs::write(d.join("bad.toml"), "[rule.fa]\nlr = 0.1\n").unwrap();
    std::fs::write(d.join("r.toml"), format!("tuned = \"bad.toml\"\n{text}")).unwrap();
    let e = fail(&["compare", d.join("r.toml").to_str().unwrap(), "--estimate"]);
    assert!(e.contains("[rule.fa] is not an entry of this plan"), "{e}");
    // A tuned file that leaves an entry unsearched is refused too (it would run untuned beside
    // tuned ones): here the search's result without dfa's table.
    let mut partial: toml::Table = tuned.parse().unwrap();
    partial["rule"].as_table_mut().unwrap().remove("dfa");
    std::fs::write(d.join("partial.toml"), toml::to_string(&partial).unwrap()).unwrap();
    std::fs::write(d.join("s.toml"), format!("tuned = \"partial.toml\"\n{text}")).unwrap();
    let e = fail(&["compare", d.join("s.toml").to_str().unwrap(), "--estimate"]);
    assert!(e.contains("no searched settings for [rule.dfa]"), "{e}");
    let e = fail(&["tune", "--plan", plan.to_str().unwrap(), "--lr", "0.1", "--out", o]);
    assert!(e.contains("takes every setting from the plan") && e.contains("lr"), "{e}");
    // A directory that holds another search is not resumed into.
    let e = fail(&[
        "tune",
        "--rule",
        "dfa",
        "--arch",
        "mlp:16",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out.join("bp").to_str().unwrap(),
    ]);
    assert!(e.contains("holds another search"), "{e}");
}

#[test]
fn a_closed_output_pipe_ends_the_process_without_a_panic() {
    // `biolearn rules | head -1`: the reader goes away; the writer must not panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_biolearn"))
        .arg("rules")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_plans_search_shards_and_the_last_shard_writes_the_result() {
    let d = tmp("tune-shard");
    let plan = small_tuned_plan(&d, "[\"bp\", \"fa\", \"dfa\"]", "");
    let out = d.join("t");
    let o = out.to_str().unwrap();
    let p = plan.to_str().unwrap();
    let s = String::from_utf8_lossy(&ok(&["tune", "--plan", p, "--shard", "0/2", "--quiet", "--out", o]).stdout)
        .into_owned();
    assert!(s.contains("shard 0/2 searched") && !out.join("tuned.toml").exists(), "{s}");
    assert!(out.join("bp").is_dir() && out.join("dfa").is_dir() && !out.join("fa").exists());
    ok(&["tune", "--plan", p, "--shard", "1/2", "--quiet", "--out", o]);
    let tuned = std::fs::read_to_string(out.join("tuned.toml")).unwrap();
    assert!(["[rule.bp]", "[rule.fa]", "[rule.dfa]"].iter().all(|t| tuned.contains(t)), "{tuned}");
    // The array script runs the search.
    let script = d.join("s.sbatch");
    ok(&["slurm", p, "--tasks", "2", "--tune", "--out", o, "--script", script.to_str().unwrap()]);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("tune --plan '") && text.contains("--out '"), "{text}");
}

/// A checkpoint written before its rule gained a setting (its settings lack the key) resumes:
/// resolved with the rule's defaults it is the same configuration. Here FA's checkpoint with
/// `fa_constrain_weights` removed from its stored settings, as FA's checkpoints were before the
/// setting existed.
#[test]
fn a_checkpoint_from_before_a_rule_gained_a_setting_resumes() {
    let d = tmp("old-checkpoint");
    let out = d.join("run");
    let o = out.to_str().unwrap();
    ok(&["train", "--rule", "fa", "--epochs", "2", "--stop-after", "1", "-q", "--threads", "1", "--out", o]);
    let ck = out.join("checkpoint.safetensors");
    let (tensors, mut meta) = biolearn::safetensors::load_with_metadata(&ck).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    assert!(cfg["settings"].as_object_mut().unwrap().remove("fa_constrain_weights").is_some(), "{cfg}");
    meta.insert("config".into(), cfg.to_string());
    let list: Vec<biolearn::safetensors::Tensor> = tensors
        .iter()
        .map(|(name, (shape, data))| biolearn::safetensors::Tensor { name: name.clone(), shape: shape.clone(), data })
        .collect();
    biolearn::safetensors::save(&ck, &list, &meta).unwrap();
    // As a plan resumes it: the run's configuration built afresh (the rule's settings resolved,
    // the new key present) must take the old checkpoint.
    let t: toml::Table = "rule = 'fa'\nepochs = 2\nthreads = 1".parse().unwrap();
    let cfg = biolearn::config::TrainConfig::load(None, t).unwrap();
    assert!(cfg.settings.contains_key("fa_constrain_weights"));
    let l = biolearn::train::load_data(&cfg).unwrap();
    let input = biolearn::nn::Shape::new(l.ds.channels, l.ds.height, l.ds.width);
    let mut tr =
        biolearn::train::Trainer::new(&cfg, input, l.ds.num_classes, &mut biolearn::rng::Rng::new(cfg.seed)).unwrap();
    tr.load_checkpoint(&ck).unwrap();
    // And as `--resume` does, from the checkpoint's own configuration.
    ok(&["train", "-q", "--resume", o]);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    assert_eq!(r["epochs"].as_array().unwrap().len(), 2);
}

/// Few-shot online episodes for any rule, and meta-training whose theta.toml is a config file
/// the episodes take; bad class lists and episode sizes are clear errors.
#[test]
fn episodes_and_meta_train_end_to_end() {
    let d = tmp("episodes");
    let out = d.join("mt");
    let ep = ["--data", "digits", "--arch", "mlp:16", "--shots", "5", "--queries", "5", "--threads", "1"];
    let o = ok(&[
        &["episodes", "--rule", "bp", "--classes", "5-9", "--episodes", "3", "--json"],
        &[d.join("bp.json").to_str().unwrap()][..],
        &ep[..],
    ]
    .concat());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("query accuracy"), "{text}");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("bp.json")).unwrap()).unwrap();
    assert_eq!(s["accuracies"].as_array().unwrap().len(), 3);
    ok(&[
        &[
            "meta-train",
            "--rule",
            "meta-plasticity",
            "--classes",
            "0-4",
            "--split",
            "train",
            "--iterations",
            "2",
            "--pairs",
            "2",
        ],
        &["--out", out.to_str().unwrap()][..],
        &ep[..],
    ]
    .concat());
    let theta = std::fs::read_to_string(out.join("theta.toml")).unwrap();
    assert!(theta.contains("mp_pseudo_grad = ") && theta.contains("mp_oja = "), "{theta}");
    assert_eq!(std::fs::read_to_string(out.join("steps.jsonl")).unwrap().lines().count(), 2);
    let cfg = out.join("theta.toml");
    ok(&[
        &["episodes", "--rule", "meta-plasticity", "--classes", "5,6,7", "--ways", "3", "--episodes", "2", "--config"],
        &[cfg.to_str().unwrap()][..],
        &ep[..],
    ]
    .concat());
    assert!(fail(&["episodes", "--rule", "bp", "--data", "digits", "--classes", "5-12"]).contains("classes are 0..9"));
    assert!(fail(&["episodes", "--rule", "bp", "--data", "digits", "--classes", "1,2", "--ways", "3"])
        .contains("2 classes given"));
    assert!(fail(&["episodes", "--rule", "bp", "--data", "digits", "--classes", "0-4", "--shots", "5000"])
        .contains("fewer than"));
    let huge = u64::MAX.to_string();
    assert!(fail(&["episodes", "--rule", "bp", "--data", "digits", "--classes", "0-4", "--shots", &huge])
        .contains("at most"));
    let many = [
        "episodes",
        "--rule",
        "bp",
        "--data",
        "digits",
        "--classes",
        "0-4",
        "--shots",
        "5",
        "--queries",
        "5",
        "--episodes",
        &huge,
    ];
    assert!(fail(&many).contains("between 1 and"));
}

/// `biolearn continual`: the accuracy matrices and the summary in JSON, for split and permuted
/// sequences; a sequence the data set cannot make is refused.
#[test]
fn continual_end_to_end() {
    let d = tmp("continual");
    let common =
        ["continual", "--rule", "bp", "--arch", "mlp:16", "--epochs-per-task", "2", "--seeds", "2", "--threads", "1"];
    for (tasks, t) in [("split:5", 5), ("permuted:3", 3)] {
        let json = d.join(format!("{}.json", tasks.replace(':', "-")));
        let o = ok(&[&common[..], &["--tasks", tasks, "--json", json.to_str().unwrap()]].concat());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("class-incremental A") && text.contains("task-incremental A"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        let m = runs[0]["class_il"].as_array().unwrap();
        assert_eq!(m.len(), t);
        assert_eq!(m[t - 1].as_array().unwrap().len(), t, "row i holds tasks 0..=i");
        assert!(v["summary"]["class_il"]["forgetting"][0].is_number());
    }
    let e = fail(&[&common[..], &["--tasks", "split:20"]].concat());
    assert!(e.contains("fewer than 20 tasks"), "{e}");
    let e = fail(&[&common[..], &["--tasks", "rotated:3"]].concat());
    assert!(e.contains("split:T or permuted:T"), "{e}");
}

/// `biolearn online` and `biolearn interference` refuse what no run can mean, naming the flag.
#[test]
fn online_and_interference_refuse_bad_flags() {
    let d = tmp("online-bad");
    let on = ["online", "--rule", "bp", "--arch", "mlp:8", "--threads", "1"];
    for (extra, want) in [
        (&["--seeds", "0"][..], "--seeds"),
        (&["--stream-batch", "0"][..], "--stream-batch"),
        (&["--lrs", "0.1,x"][..], "'x' is not a positive number"),
        (&["--lr-factors=-1"][..], "'-1' is not a positive number"),
        (&["--samples", "100000"][..], "a stream of 1 to"),
        (&["--lrs", "0.1", "--search-val-fraction", "1.5"][..], "validation share"),
        (&["--eval-samples", "0"][..], "--eval-samples"),
    ] {
        let e = fail(&[&on[..], extra].concat());
        assert!(e.contains(want), "{extra:?}: {e}");
    }
    let out = d.join("i");
    let o = out.to_str().unwrap();
    for (extra, want) in [
        (&["--depths", "0"][..], "--depths"),
        (&["--depths", "2,x"][..], "--depths"),
        (&["--seeds", "0"][..], "--seeds"),
        (&["--width", "0"][..], "--width"),
        (&["--rules", "nosuchrule"][..], "nosuchrule"),
    ] {
        let e = fail(&[&["interference", "--out", o][..], extra].concat());
        assert!(e.contains(want), "{extra:?}: {e}");
    }
}

/// Hardware conditions end to end: a DFA run on NeuroSim's defaults stopped and resumed gives the
/// uninterrupted records (the devices' write randomness comes back from the checkpoint); `eval`
/// of its saved model reproduces its accuracy on the same hardware; a plan's `hardware` axis is
/// one training run per condition, recorded with its condition, and refused where it makes no
/// sense.
#[test]
fn hardware_runs_resume_evaluate_and_form_a_plan_axis() {
    let d = tmp("hardware");
    let (whole, parts) = (d.join("whole"), d.join("parts"));
    let base = ["train", "--rule", "dfa", "--arch", "mlp:64,32", "--epochs", "3", "--threads", "1", "-q"];
    let with = |more: &[&str]| -> Vec<String> {
        base.iter().chain(["--hardware", "neurosim"].iter()).chain(more).map(|s| s.to_string()).collect()
    };
    let run = |a: Vec<String>| ok(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    run(with(&["--save", "--out", whole.to_str().unwrap()]));
    run(with(&["--stop-after", "1", "--out", parts.to_str().unwrap()]));
    ok(&["train", "--resume", parts.to_str().unwrap(), "-q"]);
    let (a, b) = (result(&whole), result(&parts));
    assert_eq!(history(&a), history(&b), "resumed records differ");
    // The cost covers every epoch of the resumed run, as of the uninterrupted one (the meter's
    // activity travels in the checkpoint).
    assert!(a["hardware_cost"].is_object());
    assert_eq!(a["hardware_cost"], b["hardware_cost"], "resumed hardware cost differs");
    assert_eq!(a["config"]["hardware"], "neurosim");
    // The ideal run differs (the hardware acted) and its config has no hardware key.
    let ideal = d.join("ideal");
    ok(&base.iter().copied().chain(["--out", ideal.to_str().unwrap()]).collect::<Vec<_>>());
    let i = result(&ideal);
    assert_ne!(history(&i), history(&a));
    assert!(i["config"].get("hardware").is_none(), "{}", i["config"]);
    let want = a["test_accuracy"].as_f64().unwrap();
    let text = String::from_utf8(ok(&["eval", whole.to_str().unwrap()]).stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("test ")).unwrap();
    let got: f64 = line.rsplit_once('(').unwrap().1.trim_end_matches(')').parse().unwrap();
    assert_eq!(got, want, "{text}");
    // Bad conditions are clear errors.
    let e = fail(&["train", "--hardware", "quantum", "-q"]);
    assert!(e.contains("quantum") && e.contains("neurosim"), "{e}");
    let e = fail(&["train", "--arch", "lenet", "--data", "digits", "--hardware", "neurosim", "--epochs", "1", "-q"]);
    assert!(e.contains("adc_bits") || e.contains("lenet"), "{e}");
    // A plan axis: two conditions, one run each, ids and records naming the condition.
    let plan = d.join("hw.toml");
    std::fs::write(
        &plan,
        "name = \"hw\"\ndata = \"digits\"\narch = \"mlp:32\"\nrules = [\"bp\"]\nepochs = [2]\nseeds = 1\n\
         hardware = [\"ideal\", \"int4-adc5-var\"]\n[train]\nthreads = 1\n",
    )
    .unwrap();
    let out = d.join("hw-out");
    ok(&["compare", plan.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    let hw: Vec<&serde_json::Value> = recs.iter().filter(|r| r.get("hardware").is_some()).collect();
    assert_eq!(hw.len(), 1);
    assert_eq!(hw[0]["hardware"], "int4-adc5-var");
    assert!(hw[0]["id"].as_str().unwrap().contains("|hw=int4-adc5-var"));
    ok(&["report", out.to_str().unwrap()]);
    let md = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(md.contains("hardware int4-adc5-var"), "{md}");
    // The hardware section: both conditions, the non-ideal one priced.
    let hw_md = md.split("## Compute-in-memory hardware").nth(1).expect("a hardware section");
    let row = hw_md.lines().find(|l| l.starts_with("| bp | int4-adc5-var")).expect("bp's int4 row");
    assert!(!row.contains("| — |"), "{row}");
    assert!(hw_md.lines().any(|l| l.starts_with("| bp | ideal") && l.contains("| — |")), "{hw_md}");
    assert!(hw[0]["hardware_cost"]["cost"]["step_energy_j"].as_f64().unwrap() > 0.0);
    std::fs::write(&plan, "rules = [\"bp\"]\nhardware = [\"neurosim\", \"neurosim\"]\n").unwrap();
    let e = fail(&["compare", plan.to_str().unwrap(), "--estimate"]);
    assert!(e.contains("hardware"), "{e}");
    std::fs::write(&plan, "rules = [\"bp\"]\n[train]\nhardware = \"neurosim\"\n").unwrap();
    let e = fail(&["compare", plan.to_str().unwrap(), "--estimate"]);
    assert!(e.contains("condition of the plan"), "{e}");
}

#[test]
fn a_language_model_trains_on_a_text_file_samples_and_refuses_what_it_cannot_do() {
    // A small text written here (the `devil` loader reads any text file given as --data-dir).
    let d = tmp("lm");
    let text: String = (0..60).map(|i| format!("the {} cat sat on the mat. ", ["red", "big", "old"][i % 3])).collect();
    let file = d.join("corpus.txt");
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    let run_dir = d.join("bp");
    let base = ["train", "--data", "devil", "--data-dir", f, "--arch", "gpt:1,16,2", "--epochs", "2", "--batch", "8"];
    let mut args = base.to_vec();
    args.extend([
        "--optimizer",
        "adamw",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--save",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    let o = ok(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("test_ppl"), "{stderr}");
    let r = result(&run_dir);
    let e = &r["epochs"].as_array().unwrap()[1];
    let (first, last) = (r["epochs"][0]["test_loss"].as_f64().unwrap(), e["test_loss"].as_f64().unwrap());
    // The alphabet has 19 symbols: a model that learnt nothing has perplexity ~19.
    assert!(last < first && last.exp() < 12.0, "test perplexity {} -> {}", first.exp(), last.exp());
    // Sampling: the prompt, then exactly --tokens bytes; the same seed gives the same text.
    let m = run_dir.to_str().unwrap();
    let s1 = ok(&["sample", m, "--prompt", "the ", "--tokens", "30", "--seed", "4"]);
    let s2 = ok(&["sample", m, "--prompt", "the ", "--tokens", "30", "--seed", "4"]);
    let out = String::from_utf8_lossy(&s1.stdout).trim_end_matches('\n').to_string();
    assert_eq!(s1.stdout, s2.stdout);
    assert!(out.starts_with("the ") && out.len() == 34, "{out:?}");
    // A byte outside the alphabet, a rule that cannot train a transformer, a model of images.
    assert!(fail(&["sample", m, "--prompt", "XYZ"]).contains("not in"));
    let fa_dir = d.join("fa");
    let mut fa = base.to_vec();
    fa.extend(["--rule", "fa", "--out", fa_dir.to_str().unwrap()]);
    assert!(fail(&fa).contains("does not train transformer networks"));
    let img = d.join("img");
    ok(&["train", "--epochs", "1", "--arch", "mlp:8", "--save", "--out", img.to_str().unwrap()]);
    assert!(fail(&["sample", img.to_str().unwrap()]).contains("not a text data set"));
}

/// A VAE end to end on the embedded digits: BP and PC train on the negative ELBO, the records
/// carry it per epoch, the run saves its pictures as PNG files, the compare path saves them beside
/// the checkpoints and the report shows them; rules and losses that do not apply are refused.
#[test]
fn a_vae_trains_records_its_elbo_and_saves_pictures() {
    let d = tmp("vae");
    for rule in ["bp", "pc"] {
        let out = d.join(rule);
        let mut args = vec![
            "train",
            "--arch",
            "vae:32,4",
            "--rule",
            rule,
            "--epochs",
            "2",
            "--optimizer",
            "adam",
            "--lr",
            "1e-3",
            "--val-fraction",
            "0.1",
            "--threads",
            "1",
            "--out",
        ];
        args.push(out.to_str().unwrap());
        if rule == "pc" {
            args.extend(["--set", "pc_energy=ce", "--set", "pc_gamma=0.05"]);
        }
        let o = ok(&args);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("test negative ELBO"), "{stdout}");
        let v = result(&out);
        for e in v["epochs"].as_array().unwrap() {
            let (nelbo, recon) = (e["test_elbo"].as_f64().unwrap(), e["test_recon"].as_f64().unwrap());
            // 64 pixels: between a perfect model (0) and an ignorant one (64 ln 2 = 44.4 at worst
            // for a coin per pixel, more for a bad one); the KL is the difference, >= 0.
            assert!(nelbo > 0.0 && nelbo >= recon && recon > 0.0, "{e}");
            assert!(e["val_elbo"].as_f64().is_some() && e.get("test_loss").is_none(), "{e}");
        }
        // Both rules train: the negative ELBO falls from epoch 1 to 2 (43.3 -> 42.4 here for
        // either) and ends below a coin per pixel's 64 ln 2.
        let nelbo = |i: usize| v["epochs"][i]["test_elbo"].as_f64().unwrap();
        assert!(
            nelbo(1) < nelbo(0) - 0.3 && nelbo(1) < 64.0 * std::f64::consts::LN_2,
            "{rule}: {} -> {}",
            nelbo(0),
            nelbo(1)
        );
        for f in ["vae-recon.png", "vae-samples.png"] {
            let bytes = std::fs::read(out.join(f)).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{f}");
        }
    }
    for cmd in [&["online"][..], &["continual"], &["episodes", "--classes", "0-4"]] {
        let e = fail(&[cmd, &["--arch", "vae:32,4"]].concat());
        assert!(e.contains("works on classes") && e.contains("autoencoder"), "{cmd:?}: {e}");
    }
    let e = fail(&["train", "--arch", "vae:32,4", "--rule", "fa", "--epochs", "1"]);
    assert!(e.contains("does not train variational autoencoders"), "{e}");
    let e = fail(&["train", "--arch", "vae:32,4", "--loss", "mse", "--epochs", "1"]);
    assert!(e.contains("Bernoulli"), "{e}");
    let e = fail(&["train", "--arch", "vae:32,4", "--rule", "pc", "--set", "pc_energy=gaussian", "--epochs", "1"]);
    assert!(e.contains("pc_energy"), "{e}");
    // The compare path: pictures beside the checkpoints, named in the record, shown by the report.
    let plan = d.join("vae.toml");
    std::fs::write(
        &plan,
        "name = \"vae\"\ndata = \"digits\"\narch = \"vae:32,4\"\nrules = [\"bp\"]\nfractions = [1.0]\nepochs = [2]\n\
         seeds = 1\n[train]\noptimizer = \"adam\"\nlr = 1e-3\nthreads = 1\n",
    )
    .unwrap();
    let res = d.join("cmp");
    ok(&["compare", plan.to_str().unwrap(), "--out", res.to_str().unwrap()]);
    let line = std::fs::read_to_string(res.join("results.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let images: Vec<&str> = rec["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(images.len(), 2, "{rec}");
    assert!(images.iter().all(|i| res.join(i).is_file()), "{images:?}");
    ok(&["report", res.to_str().unwrap()]);
    let md = std::fs::read_to_string(res.join("report/report.md")).unwrap();
    assert!(md.contains("Variational autoencoder") && md.contains("plots/vae-bp-s0-samples.png"), "{md}");
    assert!(res.join("report/plots/vae-bp-s0-samples.png").is_file());
    // Noise and attacks act on classes, not on an autoencoder's pixels: refused.
    let noisy = d.join("noisy.toml");
    std::fs::write(&noisy, std::fs::read_to_string(&plan).unwrap().replace("seeds = 1\n", "seeds = 1\nfgsm = [0.1]\n"))
        .unwrap();
    let e = fail(&["compare", noisy.to_str().unwrap(), "--out", d.join("noisy").to_str().unwrap()]);
    assert!(e.contains("does not apply to a VAE"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}
