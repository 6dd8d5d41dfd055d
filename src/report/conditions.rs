//! Report sections for the conditions that run outside `compare` plans (issue 19): online
//! learning (`biolearn online --json`), continual learning (`biolearn continual --json`),
//! few-shot online episodes (`biolearn episodes --json`) and interference (`biolearn
//! interference`). Each condition directory holds one JSON file per arm (its file stem names
//! the arm; interference: one `interference.json` with every arm). Every arm is compared with
//! BP's arm of the same directory (the one whose rule is `bp`; the stem `bp` if several) with
//! the machinery of the rest of the report: differences paired by seed (online, continual,
//! interference: a seed gives every arm the same stream, task order or sample) or by episode
//! (few-shot: the same episode seeds draw the same examples), their 95% confidence intervals
//! (paired t), two-sided p-values Holm-adjusted over each table, and a verdict.

use super::html::{Block, Table};
use super::plot::{Chart, Legend, Series, Spread, XFormat};
use super::stats::{self, PairedDiff, Summary, Verdict};
use super::{fmt_signed, slug, Ctx};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One arm's result file of a condition directory.
struct Arm {
    name: String,
    rule: String,
    json: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Online,
    Continual,
    Episodes,
    Interference,
}

fn kind_of(v: &Value) -> Option<Kind> {
    let first_run = v.get("runs").and_then(|r| r.get(0));
    if first_run.is_some_and(|r| r.get("curve").is_some()) {
        Some(Kind::Online)
    } else if first_run.is_some_and(|r| r.get("class_il").is_some()) {
        Some(Kind::Continual)
    } else if first_run.is_some_and(|r| r.get("example_112").is_some()) {
        Some(Kind::Interference)
    } else if v.get("accuracies").is_some() && v.get("episodes").is_some() {
        Some(Kind::Episodes)
    } else {
        None
    }
}

/// The arms of one directory, by kind (files that are no condition's result are skipped).
fn read_dir(dir: &Path) -> Result<Vec<(Kind, Arm)>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", f.display()))?;
        let Some(kind) = kind_of(&json) else { continue };
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let rule = json.get("rule").and_then(Value::as_str).unwrap_or("").to_string();
        out.push((kind, Arm { name, rule, json }));
    }
    Ok(out)
}

/// BP's arm among `arms` to compare the others with: the one named `bp`, else the first whose
/// rule is bp; None (no comparison, and a paragraph saying why) when the arms were not run alike,
/// that is when they differ on one of `same` (the fields that make two runs' seeds or episodes
/// the same streams, tasks or examples).
fn baseline(arms: &[&Arm], same: &[&str], b: &mut Vec<Block>) -> Option<usize> {
    for key in same {
        let mut seen: Vec<String> =
            arms.iter().map(|a| a.json.get(*key).map_or("—".into(), |v| v.to_string())).collect();
        seen.sort();
        seen.dedup();
        if seen.len() > 1 {
            b.push(Block::Para(format!(
                "The arms here were not run alike ({key}: {}): no paired comparison with BP.",
                seen.join(" / ")
            )));
            return None;
        }
    }
    arms.iter().position(|a| a.name == "bp").or_else(|| arms.iter().position(|a| a.rule == "bp"))
}

/// The searched setting and the value chosen ("lr 1.2e-3"), else the configured lr.
fn rate_cell(a: &Arm) -> String {
    let search = a.json.get("search");
    let key = search.and_then(|s| s.get("key")).and_then(Value::as_str);
    let chosen = search.and_then(|s| s.get("chosen")).and_then(Value::as_f64);
    match (key, chosen) {
        (Some(k), Some(v)) => format!("{k} {v:.3e}"),
        _ => a
            .json
            .get("lr")
            .or_else(|| a.json.get("config").and_then(|c| c.get("lr")))
            .and_then(Value::as_f64)
            .map_or("—".into(), |l| format!("lr {l:.3e} (not searched here)")),
    }
}

fn f64s(v: Option<&Value>) -> Vec<f64> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// "mean (lo to hi)" in percent from fractions.
fn pct_ci(values: &[f64]) -> String {
    match Summary::of(values) {
        None => "—".into(),
        Some(s) => match s.scaled(100.0).ci95() {
            Some((lo, hi)) => format!("{:.2} [{lo:.2}, {hi:.2}]", 100.0 * s.mean),
            None => format!("{:.2} (n=1)", 100.0 * s.mean),
        },
    }
}

/// A comparison with BP: the metric's name, the arm and its paired differences (points).
struct Cmp {
    metric: String,
    arm: String,
    d: Option<PairedDiff>,
}

/// The comparisons' table (Holm over all of them) and the significant findings.
fn comparison_table(cmps: &[Cmp], pairing: &str, b: &mut Vec<Block>) {
    if cmps.is_empty() {
        return;
    }
    let tested: Vec<usize> = (0..cmps.len()).filter(|&i| cmps[i].d.is_some()).collect();
    let adjusted = stats::holm(&tested.iter().map(|&i| cmps[i].d.unwrap().p).collect::<Vec<_>>());
    b.push(Block::Para(format!(
        "Differences from BP (arm − BP, percentage points), paired by {pairing}: the mean difference, \
         its 95% CI (paired t), the two-sided p-value Holm-adjusted over the {} comparisons of this \
         table; \"better\" / \"worse\" where the adjusted p < 0.05.",
        tested.len()
    )));
    let mut t = Table {
        header: [
            "metric",
            "arm",
            "difference",
            "95% CI (unadjusted)",
            "p (Holm)",
            "detectable (unadjusted)",
            "verdict",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: vec![],
    };
    let mut findings = Vec::new();
    for (i, c) in cmps.iter().enumerate() {
        let mut row = vec![c.metric.clone(), c.arm.clone()];
        match (c.d, tested.iter().position(|&k| k == i)) {
            (Some(d), Some(k)) => {
                let p = adjusted[k];
                let v = if p >= 0.05 {
                    Verdict::NoSignificantDifference
                } else if d.mean > 0.0 {
                    Verdict::Better
                } else {
                    Verdict::Worse
                };
                row.push(fmt_signed(d.mean));
                row.push(format!("[{}, {}]", fmt_signed(d.lo), fmt_signed(d.hi)));
                row.push(if p < 0.001 { "<0.001".into() } else { format!("{p:.3}") });
                row.push(format!("{:.2} (n={})", d.mde, d.n));
                row.push(d.verdict_text(v).into());
                if v != Verdict::NoSignificantDifference {
                    findings.push(format!(
                        "{}: {} is {} than BP by {:.2} points (95% CI {} to {}).",
                        c.metric,
                        c.arm,
                        v.as_str(),
                        d.mean.abs(),
                        fmt_signed(d.lo),
                        fmt_signed(d.hi)
                    ));
                }
            }
            _ => row.extend(["—", "—", "—", "—", "too few pairs"].map(String::from)),
        }
        t.rows.push(row);
    }
    b.push(Block::Table(t));
    if findings.is_empty() {
        b.push(Block::Para("No arm differs significantly from BP here.".into()));
    } else {
        b.push(Block::List(findings));
    }
}

/// Per-seed values of `metric` (a fraction) keyed by seed, from `runs`.
fn by_seed(arm: &Arm, metric: impl Fn(&Value) -> Option<f64>) -> Vec<(u64, f64)> {
    arm.json
        .get("runs")
        .and_then(Value::as_array)
        .map(|runs| runs.iter().filter_map(|r| Some((r.get("seed")?.as_u64()?, metric(r)?))).collect())
        .unwrap_or_default()
}

/// Every arm but BP's (`arms[bi]`) against it on one metric, `values` keyed by seed or episode.
fn against_bp(arms: &[&Arm], bi: usize, metric: &str, values: impl Fn(&Arm) -> Vec<(u64, f64)>) -> Vec<Cmp> {
    let bp = values(arms[bi]);
    arms.iter()
        .enumerate()
        .filter(|(i, _)| *i != bi)
        .map(|(_, a)| Cmp { metric: metric.to_string(), arm: a.name.clone(), d: paired(&values(a), &bp) })
        .collect()
}

/// Differences (points) of `mine` against `bp`, paired by key.
fn paired(mine: &[(u64, f64)], bp: &[(u64, f64)]) -> Option<PairedDiff> {
    let d: Vec<f64> =
        mine.iter().filter_map(|(k, v)| bp.iter().find(|(q, _)| q == k).map(|(_, w)| 100.0 * (v - w))).collect();
    stats::paired_diff(&d)
}

fn online(dir: &Path, arms: &[&Arm], ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    let a0 = &arms[0].json;
    b.push(Block::Heading(3, format!("Online learning ({})", dir.display())));
    b.push(Block::Para(format!(
        "One pass over a stream of {} training samples of {}, batch {}, no epochs, a constant rate \
         (searched: chosen per arm among the same grid of candidates on a validation split carved \
         from the training set, by the mean below); {} held-out samples scored at 0, 1, 2, 5, 10, \
         ... samples seen. Mean: the curve's mean over those checkpoints (log-spaced: the first \
         thousand samples weigh as much as the rest); final: after the stream; stream: the share \
         of stream samples classified right just before the step that trained on them. 95% CIs \
         over seeds.",
        a0.get("samples").and_then(Value::as_u64).unwrap_or(0),
        a0.get("data").and_then(Value::as_str).unwrap_or("?"),
        a0.get("batch").and_then(Value::as_u64).unwrap_or(1),
        a0.get("eval_samples").and_then(Value::as_u64).unwrap_or(0),
    )));
    let mut t = Table {
        header: ["arm", "rate", "mean accuracy %", "final %", "stream %", "diverged"].map(String::from).to_vec(),
        rows: vec![],
    };
    let metric = |k: &'static str| move |r: &Value| r.get(k).and_then(Value::as_f64);
    for a in arms {
        let runs = a.json.get("runs").and_then(Value::as_array).cloned().unwrap_or_default();
        let col = |k: &str| runs.iter().filter_map(|r| r.get(k).and_then(Value::as_f64)).collect::<Vec<_>>();
        t.rows.push(vec![
            a.name.clone(),
            rate_cell(a),
            pct_ci(&col("mean_accuracy")),
            pct_ci(&col("final_accuracy")),
            pct_ci(&col("stream_accuracy")),
            runs.iter().filter(|r| !r.get("diverged_at").is_none_or(Value::is_null)).count().to_string(),
        ]);
    }
    b.push(Block::Table(t));
    if let Some(bi) = baseline(arms, &["data", "samples", "batch", "eval_samples"], b) {
        let cmps: Vec<Cmp> = ["mean_accuracy", "final_accuracy"]
            .into_iter()
            .flat_map(|key| against_bp(arms, bi, &key.replace('_', " "), |a| by_seed(a, metric(key))))
            .collect();
        comparison_table(&cmps, "seed (the same stream order)", b);
    }
    let series = arms
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let runs = a.json.get("runs").and_then(Value::as_array).cloned().unwrap_or_default();
            let curves: Vec<Vec<(f64, f64)>> = runs
                .iter()
                .map(|r| {
                    r.get("curve")
                        .and_then(Value::as_array)
                        .map(|c| {
                            c.iter()
                                .filter_map(|p| Some((p.get("samples")?.as_f64()?, p.get("accuracy")?.as_f64()?)))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect();
            let points = (0..curves.first().map_or(0, Vec::len))
                .filter_map(|k| {
                    let x = curves[0][k].0;
                    let s = Summary::of(&curves.iter().filter_map(|c| c.get(k).map(|p| p.1)).collect::<Vec<_>>())?;
                    (x > 0.0).then(|| (x, 100.0 * s.mean, 100.0 * s.ci95_half_width().unwrap_or(0.0)))
                })
                .collect();
            Series { label: a.name.clone(), color: i, points, dashed: false, spread: Spread::Band }
        })
        .collect();
    let chart = Chart {
        title: format!("Online learning: held-out accuracy against samples seen ({})", dir.display()),
        x_label: "samples seen (log scale)".into(),
        y_label: "held-out accuracy (%, mean and 95% CI)".into(),
        log_x: true,
        x_format: XFormat::Plain,
        legend: Legend::LowerRight,
        series,
    };
    ctx.plot(&chart, &format!("online_{}", slug(&dir.display().to_string())), b)
}

fn continual(dir: &Path, arms: &[&Arm], b: &mut Vec<Block>) {
    let a0 = &arms[0].json;
    b.push(Block::Heading(3, format!("Continual learning ({})", dir.display())));
    b.push(Block::Para(format!(
        "Tasks {} of {}, {} epochs per task, learned one after another by one network; after the \
         last, A: the mean test accuracy over the tasks; F: forgetting (the drop from each earlier \
         task's best); BWT: backward transfer. Class-incremental: the answer among all classes; \
         task-incremental: among the task's own. 95% CIs over seeds; a run that diverged counts at \
         chance from there.",
        a0.get("tasks").and_then(Value::as_str).unwrap_or("?"),
        a0.get("data").and_then(Value::as_str).unwrap_or("?"),
        a0.get("epochs_per_task").and_then(Value::as_u64).unwrap_or(0),
    )));
    let m =
        |form: &'static str, key: &'static str| move |r: &Value| r.get(format!("{form}_metrics"))?.get(key)?.as_f64();
    let mut t = Table {
        header: [
            "arm",
            "rate",
            "class-IL A %",
            "class-IL F %",
            "task-IL A %",
            "task-IL F %",
            "task-IL BWT %",
            "diverged",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![],
    };
    for a in arms {
        let col = |f: &dyn Fn(&Value) -> Option<f64>| by_seed(a, f).into_iter().map(|p| p.1).collect::<Vec<_>>();
        let div = a.json.get("summary").and_then(|s| s.get("diverged")).and_then(Value::as_u64).unwrap_or(0);
        t.rows.push(vec![
            a.name.clone(),
            rate_cell(a),
            pct_ci(&col(&m("class_il", "average_accuracy"))),
            pct_ci(&col(&m("class_il", "forgetting"))),
            pct_ci(&col(&m("task_il", "average_accuracy"))),
            pct_ci(&col(&m("task_il", "forgetting"))),
            pct_ci(&col(&m("task_il", "backward_transfer"))),
            div.to_string(),
        ]);
    }
    b.push(Block::Table(t));
    if let Some(bi) = baseline(arms, &["data", "tasks", "epochs_per_task"], b) {
        let cmps: Vec<Cmp> = [("task_il", "task-IL A"), ("class_il", "class-IL A")]
            .into_iter()
            .flat_map(|(form, label)| against_bp(arms, bi, label, |a| by_seed(a, m(form, "average_accuracy"))))
            .collect();
        comparison_table(&cmps, "seed (the same task sequence)", b);
    }
}

fn episodes(dir: &Path, arms: &[&Arm], b: &mut Vec<Block>) {
    b.push(Block::Heading(3, format!("Few-shot online episodes ({})", dir.display())));
    b.push(Block::Para(
        "Episodes of a few classes x a few examples, each seen once (one pass) by a freshly \
         initialised network, scored on held-out query examples of the same classes; mean query \
         accuracy over the episodes with its 95% CI."
            .into(),
    ));
    let mut t =
        Table { header: ["arm", "rule", "episodes", "query accuracy %"].map(String::from).to_vec(), rows: vec![] };
    for a in arms {
        let acc = f64s(a.json.get("accuracies"));
        t.rows.push(vec![a.name.clone(), a.rule.clone(), acc.len().to_string(), pct_ci(&acc)]);
    }
    b.push(Block::Table(t));
    let same = ["data", "split", "episode_seed", "classes", "ways", "shots", "queries", "passes", "episodes"];
    if let Some(bi) = baseline(arms, &same, b) {
        let by_episode = |a: &Arm| {
            f64s(a.json.get("accuracies")).into_iter().enumerate().map(|(i, v)| (i as u64, v)).collect::<Vec<_>>()
        };
        let cmps = against_bp(arms, bi, "query accuracy", by_episode);
        comparison_table(&cmps, "episode (the same episode seeds draw the same examples)", b);
    }
}

/// One arm's target alignments at `depth`, keyed by seed.
fn alignment(r: &Value, depth: u64) -> Vec<(u64, f64)> {
    r.get("alignment")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|e| e.get(0).and_then(Value::as_u64) == Some(depth)))
        .and_then(|e| e.get(1))
        .and_then(Value::as_array)
        .map(|s| s.iter().enumerate().filter_map(|(i, x)| Some((i as u64, x.as_f64()?))).collect())
        .unwrap_or_default()
}

fn interference(dir: &Path, v: &Value, ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    let runs = v.get("runs").and_then(Value::as_array).cloned().unwrap_or_default();
    b.push(Block::Heading(3, format!("Interference ({})", dir.display())));
    b.push(Block::Para(format!(
        "Prospective configuration's demonstration (Song et al. 2024). The 1-1-2 example: one input, \
         one linear hidden unit, two linear outputs, every weight 1; the target (0, 1) asks only \
         output 1 to move; plain SGD at rate 0.2 on this sample; how far output 2 moves is the \
         interference. Target alignment: one SGD step (rate 0.001) on one random sample by a linear \
         MLP of width {} and the given depth; cos(output change, target − output), 1 when the \
         outputs move straight towards their targets. Mean ± sd over {} seeds; differences from BP \
         paired by seed (the same network draw and sample).",
        v.get("width").and_then(Value::as_u64).unwrap_or(0),
        v.get("seeds").and_then(Value::as_u64).unwrap_or(0),
    )));
    let depths: Vec<u64> = v
        .get("depths")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let deepest = depths.iter().copied().max().unwrap_or(0);
    let mut header =
        vec!["arm".to_string(), "1-1-2: output 2 after one step".into(), "1-1-2: output 2's largest move".into()];
    header.extend(depths.iter().map(|d| format!("alignment, depth {d}")));
    let mut t = Table { header, rows: vec![] };
    for r in &runs {
        let arm = r.get("arm").and_then(Value::as_str).unwrap_or("?").to_string();
        let path = r.get("example_112").and_then(Value::as_array).cloned().unwrap_or_default();
        let y2 = path.get(1).and_then(|p| p.get(1)).and_then(Value::as_f64);
        let mut row = vec![
            arm,
            y2.map_or("—".into(), |y| format!("{y:.3}")),
            r.get("max_disturbance").and_then(Value::as_f64).map_or("—".into(), |m| format!("{m:.3}")),
        ];
        for &d in &depths {
            let s = Summary::of(&alignment(r, d).into_iter().map(|p| p.1).collect::<Vec<_>>());
            row.push(s.map_or("—".into(), |s| format!("{:.3} ± {:.3}", s.mean, s.std)));
        }
        t.rows.push(row);
    }
    b.push(Block::Table(t));
    let bp = runs.iter().find(|r| {
        r.get("rule").and_then(Value::as_str) == Some("bp") && r.get("preset").and_then(Value::as_str) == Some("")
    });
    if let Some(bp) = bp {
        let bp_a = alignment(bp, deepest);
        let cmps: Vec<Cmp> = runs
            .iter()
            .filter(|r| !std::ptr::eq(*r, bp))
            .map(|r| Cmp {
                metric: format!("alignment x 100, depth {deepest}"),
                arm: r.get("arm").and_then(Value::as_str).unwrap_or("?").to_string(),
                d: paired(&alignment(r, deepest), &bp_a),
            })
            .collect();
        comparison_table(&cmps, "seed (the same network draw and sample)", b);
    }
    let (path, align) = interference_charts(v);
    let stem = slug(&dir.display().to_string());
    ctx.plot(&path, &format!("interference_112_{stem}"), b)?;
    ctx.plot(&align, &format!("interference_alignment_{stem}"), b)
}

/// The interference experiments' two charts from `interference.json` (`biolearn interference`
/// renders them too): output 2 of the 1-1-2 example against the step, and the target alignment
/// (mean and sd over seeds) against depth, one line per arm.
pub fn interference_charts(v: &Value) -> (Chart, Chart) {
    let runs = v.get("runs").and_then(Value::as_array).cloned().unwrap_or_default();
    let depths: Vec<u64> = v
        .get("depths")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let path_series = runs
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            label: r.get("arm").and_then(Value::as_str).unwrap_or("?").to_string(),
            color: i,
            points: r
                .get("example_112")
                .and_then(Value::as_array)
                .map(|p| p.iter().enumerate().filter_map(|(t, y)| Some((t as f64, y.get(1)?.as_f64()?, 0.0))).collect())
                .unwrap_or_default(),
            dashed: false,
            spread: Spread::None,
        })
        .collect();
    let path = Chart {
        title: "1-1-2 example: output 2 (target 1, already met) while output 1 learns its target 0".into(),
        x_label: "step".into(),
        y_label: "output 2".into(),
        log_x: false,
        x_format: XFormat::Plain,
        legend: Legend::LowerRight,
        series: path_series,
    };
    let align_series = runs
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            label: r.get("arm").and_then(Value::as_str).unwrap_or("?").to_string(),
            color: i,
            points: depths
                .iter()
                .filter_map(|&d| {
                    let s = Summary::of(&alignment(r, d).into_iter().map(|p| p.1).collect::<Vec<_>>())?;
                    Some((d as f64, s.mean, s.std))
                })
                .collect(),
            dashed: false,
            spread: Spread::ErrorBars,
        })
        .collect();
    let align = Chart {
        title: format!(
            "Target alignment of one step against depth (linear MLPs of width {}, mean ± sd over {} seeds)",
            v.get("width").and_then(Value::as_u64).unwrap_or(0),
            v.get("seeds").and_then(Value::as_u64).unwrap_or(0)
        ),
        x_label: "depth (weight layers)".into(),
        y_label: "cos(output change, target − output)".into(),
        log_x: false,
        x_format: XFormat::Plain,
        legend: Legend::LowerLeft,
        series: align_series,
    };
    (path, align)
}

/// The conditions' sections for the result directories `dirs` (each read whole; a directory
/// with no condition's JSON is an error naming it).
pub(super) fn section(dirs: &[PathBuf], ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    if dirs.is_empty() {
        return Ok(());
    }
    b.push(Block::Heading(2, "Online, continual and few-shot learning; interference".into()));
    for dir in dirs {
        let found = read_dir(dir)?;
        if found.is_empty() {
            return Err(format!(
                "{}: no result of online, continual, episodes or interference (*.json) in it",
                dir.display()
            ));
        }
        for kind in [Kind::Online, Kind::Continual, Kind::Episodes, Kind::Interference] {
            let arms: Vec<&Arm> = found.iter().filter(|(k, _)| *k == kind).map(|(_, a)| a).collect();
            if arms.is_empty() {
                continue;
            }
            match kind {
                Kind::Online => online(dir, &arms, ctx, b)?,
                Kind::Continual => continual(dir, &arms, b),
                Kind::Episodes => episodes(dir, &arms, b),
                Kind::Interference => {
                    for a in arms {
                        interference(dir, &a.json, ctx, b)?;
                    }
                }
            }
        }
    }
    Ok(())
}
