//! Reporting: read `results.jsonl` files and write `report.md`, `index.html` and plots.
//!
//! Records are grouped by (data, arch, train_noise, gradual pruning, hardware); within a group rules are
//! listed BP first, then alphabetically, and every rule keeps one colour in all
//! plots. Accuracies (fractions in the file) are shown as percentages.

pub mod conditions;
mod hardware;
pub mod html;
pub mod plot;
mod scoreboard;
pub mod stats;

use crate::protocol::record::{Record, Status};
use html::{Block, Table};
use plot::{Chart, Legend, Series, Spread, XFormat};
use stats::Summary;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What `write_report` produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportSummary {
    /// Every file written (report.md, index.html, plots/*.png, plots/*.svg).
    pub files: Vec<PathBuf>,
    /// Number of records reported on.
    pub records: usize,
    /// Number of (data, arch, train_noise) groups.
    pub groups: usize,
    /// Number of diverged runs among the records.
    pub diverged: usize,
}

// ---------------------------------------------------------------- reading

/// Read one JSON-lines results file.
///
/// Blank lines are skipped. A line that does not parse is an error naming the
/// file and the (1-based) line number, except a final line without a trailing
/// newline: that is a torn write (a job killed mid-line) and is skipped with a
/// warning on stderr.
pub fn read_records(path: &Path) -> Result<Vec<Record>, String> {
    read_records_noting(path, &mut Vec::new())
}

/// `read_records`, adding a line to `warnings` for a torn last line it skipped.
pub fn read_records_noting(path: &Path, warnings: &mut Vec<String>) -> Result<Vec<Record>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ends_with_newline = bytes.last() == Some(&b'\n');
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let lineno = i + 1;
        let torn = i == last && !ends_with_newline;
        let parsed = std::str::from_utf8(raw).map_err(|e| e.to_string()).and_then(|line| {
            if line.trim().is_empty() {
                Ok(None)
            } else {
                let r = serde_json::from_str::<Record>(line.trim_end_matches('\r')).map_err(|e| e.to_string())?;
                r.check().map(|_| Some(r))
            }
        });
        match parsed {
            Ok(Some(mut r)) => {
                r.restable();
                // Pictures are named relative to the results file's directory.
                let dir = path.parent().unwrap_or(Path::new(""));
                for img in r.images.iter_mut() {
                    *img = dir.join(&*img).to_string_lossy().into_owned();
                }
                out.push(r)
            }
            Ok(None) => {}
            Err(e) if torn => {
                warnings.push(format!("{}:{lineno}: skipped an incomplete last line (torn write): {e}", path.display()))
            }
            Err(e) => return Err(format!("{}:{lineno}: {e}", path.display())),
        }
    }
    Ok(out)
}

/// Read several results files (e.g. the shards of a Slurm array) and merge
/// them, de-duplicating by `id` (the first occurrence wins, in file order).
/// Also returns a warning per torn last line skipped.
pub fn read_records_many(paths: &[PathBuf]) -> Result<(Vec<Record>, Vec<String>), String> {
    let (mut all, mut warnings) = (Vec::new(), Vec::new());
    for p in paths {
        all.extend(read_records_noting(p, &mut warnings)?);
    }
    // In id order: whatever order the runs finished in (parallel sweeps append as runs end), the
    // report reads the same records in the same order.
    let mut all = dedup_by_id(all);
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((all, warnings))
}

/// Keep the first record of each `id`, preserving order.
pub fn dedup_by_id(records: Vec<Record>) -> Vec<Record> {
    let mut seen = HashSet::new();
    records.into_iter().filter(|r| seen.insert(r.id.clone())).collect()
}

// ---------------------------------------------------------------- helpers

/// Rules in report order: `bp` first, then alphabetical.
pub fn rule_order<'a>(rules: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = rules.into_iter().collect();
    let mut v: Vec<String> = set.into_iter().map(String::from).collect();
    v.sort_by_key(|r| (r != "bp", r.clone()));
    v
}

/// Sorted distinct values.
fn distinct(vals: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = vals.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    v
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// `x` as the shortest decimal (0.2 → "0.2", 1.0 → "1").
fn num(x: f64) -> String {
    format!("{x}")
}

/// A fraction as percent, e.g. 0.5 → "50%".
fn pct_label(x: f64) -> String {
    format!("{}%", plot::trim_num(x * 100.0, 2))
}

fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let mut out = String::new();
    for c in s.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_matches('_').to_string()
}

/// `91.00 ± 1.00 (95% CI 88.52–93.48, n=3)`; values are fractions, shown in percent.
fn fmt_ci(s: Option<Summary>, diverged: usize) -> String {
    let div = if diverged > 0 { format!(", {diverged} diverged") } else { String::new() };
    match s.map(|s| s.scaled(100.0)) {
        None => format!("— (n=0{div})"),
        Some(s) => match s.ci95() {
            Some((lo, hi)) => format!("{:.2} ± {:.2} (95% CI {:.2}–{:.2}, n={}{div})", s.mean, s.std, lo, hi, s.n),
            None => format!("{:.2} (n={}{div})", s.mean, s.n),
        },
    }
}

/// `91.00 ± 1.00 (n=3)` with `scale` (100 for accuracies) and `decimals`.
fn fmt_short(s: Option<Summary>, scale: f64, decimals: usize) -> String {
    match s.map(|s| s.scaled(scale)) {
        None => "—".to_string(),
        Some(s) if s.n == 1 => format!("{:.decimals$} (n=1)", s.mean),
        Some(s) => format!("{:.decimals$} ± {:.decimals$} (n={})", s.mean, s.std, s.n),
    }
}

/// Fractions to show in per-fraction sections: all if at most three,
/// otherwise the largest (full data) and the smallest.
fn selected_fractions(fracs: &[f64]) -> Vec<f64> {
    if fracs.len() <= 3 {
        fracs.iter().rev().copied().collect()
    } else {
        vec![fracs[fracs.len() - 1], fracs[0]]
    }
}

struct Group<'a> {
    data: String,
    arch: String,
    train_noise: f64,
    gradual: Option<f64>,
    hardware: Option<String>,
    recs: Vec<&'a Record>,
    /// Budget-only runs (`budgets = "separate"`): read for the epoch budgets only.
    budget_only: Vec<&'a Record>,
}

impl<'a> Group<'a> {
    /// What "accuracy" measures on this group's task where it is not a classification: a VAE's
    /// records carry a negative ELBO (their accuracy is per pixel), a language model's a
    /// cross-entropy per token (their accuracy is the next token's). None: a classifier.
    fn accuracy_meaning(&self) -> Option<&'static str> {
        let any = |f: fn(&crate::protocol::record::EpochPoint) -> bool| self.recs.iter().any(|r| r.curve.iter().any(f));
        if any(|p| p.test_elbo.is_some()) {
            Some(
                "pixel accuracy: the share of pixels whose reconstruction falls on the right side of \
                 1/2, not a classification accuracy; the task's own measure is the negative ELBO \
                 (its section below)",
            )
        } else if any(|p| p.test_loss.is_some()) {
            Some(
                "next-token accuracy: the share of positions whose most probable next token is the \
                 right one; the task's own measure is the perplexity (its section below)",
            )
        } else {
            None
        }
    }

    fn title(&self) -> String {
        let mut t = format!("{} / {}", self.data, self.arch);
        if self.train_noise != 0.0 {
            t.push_str(&format!(" (training noise σ = {})", num(self.train_noise)));
        }
        if let Some(g) = self.gradual {
            t.push_str(&format!(" (gradual pruning to sparsity {})", num(g)));
        }
        if let Some(h) = &self.hardware {
            t.push_str(&format!(" (hardware {h})"));
        }
        t
    }
    fn rules(&self) -> Vec<String> {
        rule_order(self.recs.iter().map(|r| r.rule.as_str()))
    }
    fn fractions(&self) -> Vec<f64> {
        distinct(self.recs.iter().map(|r| r.fraction))
    }
    /// All runs (ok and diverged) of one rule at one fraction.
    fn cell(&self, rule: &str, frac: f64) -> Vec<&'a Record> {
        self.recs.iter().copied().filter(|r| r.rule == rule && same(r.fraction, frac)).collect()
    }
    fn ok(&self, rule: &str, frac: f64) -> Vec<&'a Record> {
        self.cell(rule, frac).into_iter().filter(|r| r.status == Status::Ok).collect()
    }
}

fn group_records(records: &[Record]) -> Vec<Group<'_>> {
    // Runs that share data and conditions form one group; the rules in it may each have their
    // own network (a plan's per-rule `arch`: Hebbian rules), shown in the title. Only when one
    // rule ran on several networks are the networks split into groups of their own.
    let mut map: BTreeMap<(String, u64, Option<u64>, Option<String>), Vec<&Record>> = BTreeMap::new();
    // Few-shot runs have their own section (`section_few_shot`).
    for r in records.iter().filter(|r| r.shots.is_none()) {
        // bit pattern of a non-negative f64 orders like the value
        let noise_key = r.train_noise.abs().to_bits();
        let gradual_key = r.gradual_sparsity.map(|g| g.abs().to_bits());
        map.entry((r.data.clone(), noise_key, gradual_key, r.hardware.clone())).or_default().push(r);
    }
    let mut out = Vec::new();
    for ((data, _, _, hardware), recs) in map {
        let mut archs_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in &recs {
            archs_of.entry(r.rule.as_str()).or_default().insert(r.arch.as_str());
        }
        let split = archs_of.values().any(|a| a.len() > 1);
        let mut parts: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
        for r in &recs {
            let key = if split { r.arch.clone() } else { String::new() };
            parts.entry(key).or_default().push(r);
        }
        for (_, recs) in parts {
            let archs: BTreeSet<&str> = recs.iter().map(|r| r.arch.as_str()).collect();
            let (budget_only, recs): (Vec<&Record>, Vec<&Record>) = recs.into_iter().partition(|r| r.budget_only);
            if recs.is_empty() {
                continue;
            }
            out.push(Group {
                data: data.clone(),
                arch: archs.into_iter().collect::<Vec<_>>().join(", "),
                train_noise: recs[0].train_noise.abs(),
                gradual: recs[0].gradual_sparsity,
                hardware: hardware.clone(),
                recs,
                budget_only,
            });
        }
    }
    out
}

/// Per-report context: where plots go and which colour each rule has.
struct Ctx {
    plots_dir: PathBuf,
    prefix: String,
    rule_colors: BTreeMap<String, usize>,
    files: Vec<PathBuf>,
}

impl Ctx {
    fn color(&self, rule: &str) -> usize {
        self.rule_colors.get(rule).copied().unwrap_or(0)
    }
    fn plot(&mut self, chart: &Chart, name: &str, blocks: &mut Vec<Block>) -> Result<(), String> {
        if chart.series.iter().all(|s| s.points.is_empty()) {
            return Ok(());
        }
        let stem = format!("{}{}", self.prefix, slug(name));
        let (png, svg) = plot::render(chart, &self.plots_dir, &stem)?;
        self.files.push(png);
        self.files.push(svg);
        blocks.push(Block::Image {
            alt: chart.title.clone(),
            png: format!("plots/{stem}.png"),
            svg: format!("plots/{stem}.svg"),
        });
        Ok(())
    }
}

fn acc_summary(recs: &[&Record]) -> Option<Summary> {
    Summary::of(&recs.iter().map(|r| r.test_accuracy).collect::<Vec<_>>())
}

fn diverged_count(recs: &[&Record]) -> usize {
    recs.iter().filter(|r| r.status == Status::Diverged).count()
}

fn fmt_signed(x: f64) -> String {
    format!("{x:+.2}")
}

// ---------------------------------------------------------------- sections

fn section_accuracy(g: &Group, ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    let rules = g.rules();
    let fracs = g.fractions();
    let title = if fracs.len() > 1 { "Accuracy vs training-data fraction" } else { "Final test accuracy" };
    b.push(Block::Heading(3, title.into()));
    b.push(Block::Para(
        "Final test accuracy (%) over seeds: mean ± std (Student-t 95% confidence interval \
         of the mean, n = runs that did not diverge). Diverged runs are excluded from the \
         means and counted separately."
            .into(),
    ));
    let mut t = Table {
        header: std::iter::once("rule".to_string()).chain(fracs.iter().map(|f| format!("f = {}", num(*f)))).collect(),
        rows: vec![],
    };
    for rule in &rules {
        let mut row = vec![rule.clone()];
        for &f in &fracs {
            let cell = g.cell(rule, f);
            row.push(if cell.is_empty() {
                "—".into()
            } else {
                fmt_ci(acc_summary(&g.ok(rule, f)), diverged_count(&cell))
            });
        }
        t.rows.push(row);
    }
    b.push(Block::Table(t));
    if fracs.len() > 1 {
        let series = rules
            .iter()
            .map(|rule| Series {
                label: rule.clone(),
                color: ctx.color(rule),
                points: fracs
                    .iter()
                    .filter_map(|&f| acc_summary(&g.ok(rule, f)).map(|s| (f, s.mean * 100.0, s.std * 100.0)))
                    .collect(),
                dashed: false,
                spread: Spread::ErrorBars,
            })
            .collect();
        let chart = Chart {
            title: format!("Test accuracy vs training data — {}", g.title()),
            x_label: "training data used (%, log scale)".into(),
            y_label: "test accuracy (%)".into(),
            log_x: fracs.iter().all(|f| *f > 0.0),
            x_format: XFormat::Percent,
            legend: Legend::LowerRight,
            series,
        };
        ctx.plot(&chart, "accuracy_vs_fraction", b)?;
    }
    Ok(())
}

/// Each rule at its preset on all the data: validation accuracy (the split carved from the
/// training set, after the last epoch), test accuracy, and what its paper reports.
fn section_presets(g: &Group, b: &mut Vec<Block>) {
    let Some(full) = g.fractions().into_iter().reduce(f64::max) else { return };
    let val = |r: &&Record| r.curve.last().and_then(|p| p.val_accuracy);
    if !g.recs.iter().any(|r| val(r).is_some()) {
        return;
    }
    b.push(Block::Heading(3, "Validation, test and the papers' figures".into()));
    b.push(Block::Para(format!(
        "Each rule at its settings on {} of the training data, after its last epoch: accuracy \
         (%) on the validation split carved from the training set and on the test set, mean ± std \
         over seeds (n), beside the figure its paper reports (`biolearn rules NAME`; other data, \
         networks and budgets where it says so; — where none is given).",
        pct_label(full)
    )));
    let mut t = Table {
        header: ["rule", "network", "validation", "test", "the paper reports"].map(String::from).to_vec(),
        rows: vec![],
    };
    for rule in g.rules() {
        let ok = g.ok(&rule, full);
        if ok.is_empty() {
            continue;
        }
        let v: Vec<f64> = ok.iter().filter_map(val).collect();
        let archs: BTreeSet<&str> = ok.iter().map(|r| r.arch.as_str()).collect();
        // A rule's reported figure is a classification accuracy: not comparable on a generative task.
        let reported = match g.accuracy_meaning() {
            Some(_) => "",
            None => rule.parse::<crate::rules::RuleName>().map_or("", |r| r.entry().reported),
        };
        t.rows.push(vec![
            rule.clone(),
            archs.into_iter().collect::<Vec<_>>().join(", "),
            fmt_short(Summary::of(&v), 100.0, 2),
            fmt_short(acc_summary(&ok), 100.0, 2),
            if reported.is_empty() { "—".into() } else { reported.to_string() },
        ]);
    }
    b.push(Block::Table(t));
}

fn section_vs_bp(g: &Group, b: &mut Vec<Block>) {
    let rules = g.rules();
    if !rules.iter().any(|r| r == "bp") || rules.len() < 2 {
        return;
    }
    // Paired by seed: a seed gives every rule the same data subset, validation split, noise and
    // attack draws (they are forked from the seed's stream independently of the rule), so the
    // per-seed differences cancel the subset's luck.
    struct Row {
        f: f64,
        rule: String,
        rule_mean: (f64, usize),
        bp_mean: (f64, usize),
        d: Option<stats::PairedDiff>,
    }
    let mut rows = Vec::new();
    for &f in g.fractions().iter().rev() {
        let bp = g.ok("bp", f);
        let Some(bps) = acc_summary(&bp) else { continue };
        for rule in rules.iter().filter(|r| *r != "bp") {
            let mine = g.ok(rule, f);
            let Some(s) = acc_summary(&mine) else { continue };
            let diffs: Vec<f64> = mine
                .iter()
                .filter_map(|r| {
                    bp.iter().find(|q| q.seed == r.seed).map(|q| 100.0 * (r.test_accuracy - q.test_accuracy))
                })
                .collect();
            rows.push(Row {
                f,
                rule: rule.clone(),
                rule_mean: (100.0 * s.mean, s.n),
                bp_mean: (100.0 * bps.mean, bps.n),
                d: stats::paired_diff(&diffs),
            });
        }
    }
    if rows.is_empty() {
        return;
    }
    // Holm's correction over every comparison of this table (the family).
    let tested: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].d.is_some()).collect();
    let adjusted = stats::holm(&tested.iter().map(|&i| rows[i].d.unwrap().p).collect::<Vec<_>>());
    b.push(Block::Heading(3, "Comparison with BP".into()));
    b.push(Block::Para(format!(
        "Difference of final test accuracy (rule − BP) in percentage points, paired by seed (a \
         seed gives every rule the same data subset, noise and attack draws): mean of the per-seed \
         differences with its 95% confidence interval (paired t). p: two-sided paired t-test, \
         Holm-adjusted over the {} comparisons of this table. Verdict: \"better\" or \"worse\" \
         where the adjusted p < 0.05, \"no significant difference\" otherwise. Detectable: the \
         smallest true difference these pairs would detect with 80% power at 5% (from the spread \
         of the differences); a \"no significant difference\" says nothing about differences \
         below it. Needs at least 2 seeds with both runs.",
        tested.len()
    )));
    let mut t = Table {
        header: [
            "fraction",
            "rule",
            "rule mean (%)",
            "BP mean (%)",
            "difference (points)",
            "95% CI (paired, unadjusted)",
            "p (Holm)",
            "detectable (points, unadjusted)",
            "verdict",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: vec![],
    };
    let mut findings = vec![];
    for (i, r) in rows.iter().enumerate() {
        let mut row = vec![
            num(r.f),
            r.rule.clone(),
            format!("{:.2} (n={})", r.rule_mean.0, r.rule_mean.1),
            format!("{:.2} (n={})", r.bp_mean.0, r.bp_mean.1),
        ];
        match (r.d, tested.iter().position(|&k| k == i)) {
            (Some(d), Some(k)) => {
                let p = adjusted[k];
                let verdict = if p >= 0.05 {
                    stats::Verdict::NoSignificantDifference
                } else if d.mean > 0.0 {
                    stats::Verdict::Better
                } else {
                    stats::Verdict::Worse
                };
                row.push(fmt_signed(d.mean));
                row.push(format!("[{}, {}]", fmt_signed(d.lo), fmt_signed(d.hi)));
                row.push(if p < 0.001 { "<0.001".into() } else { format!("{p:.3}") });
                row.push(format!("{:.2} (n={})", d.mde, d.n));
                row.push(d.verdict_text(verdict).into());
                if verdict != stats::Verdict::NoSignificantDifference {
                    findings.push(format!(
                        "f = {}: {} is {} than BP by {} points (95% CI {} to {}, Holm-adjusted p {}).",
                        num(r.f),
                        r.rule,
                        verdict.as_str(),
                        plot::trim_num(d.mean.abs(), 2),
                        fmt_signed(d.lo),
                        fmt_signed(d.hi),
                        if p < 0.001 { "< 0.001".to_string() } else { format!("{p:.3}") }
                    ));
                }
            }
            _ => {
                row.push(fmt_signed(r.rule_mean.0 - r.bp_mean.0));
                row.extend(["—".into(), "—".into(), "—".into(), "too few paired runs".into()]);
            }
        }
        t.rows.push(row);
    }
    b.push(Block::Table(t));
    if findings.is_empty() {
        b.push(Block::Para("No rule differs significantly from BP at any fraction.".into()));
    } else {
        b.push(Block::Para("Significant differences:".into()));
        b.push(Block::List(findings));
    }
}

fn section_budgets(g: &Group, b: &mut Vec<Block>) {
    let all = || g.recs.iter().chain(&g.budget_only);
    let budgets: Vec<usize> =
        all().flat_map(|r| r.budgets.iter().map(|p| p.epochs)).collect::<BTreeSet<_>>().into_iter().collect();
    if budgets.len() < 2 {
        return;
    }
    let rules = g.rules();
    b.push(Block::Heading(3, "Epoch budgets".into()));
    b.push(Block::Para(if g.budget_only.is_empty() {
        "Test accuracy (%) after the given number of epochs, read off the longest run's learning \
         curve (mid-schedule for the smaller budgets): mean ± std over non-diverged seeds (n)."
            .into()
    } else {
        "Test accuracy (%) after training for the given number of epochs, each budget a run of its \
         own whose schedule spans it: mean ± std over non-diverged seeds (n)."
            .into()
    }));
    for f in selected_fractions(&g.fractions()) {
        let mut t = Table {
            header: std::iter::once("rule".to_string())
                .chain(budgets.iter().map(|e| format!("{e} epoch{}", if *e == 1 { "" } else { "s" })))
                .collect(),
            rows: vec![],
        };
        for rule in &rules {
            let mut ok = g.ok(rule, f);
            if ok.is_empty() {
                continue;
            }
            ok.extend(g.budget_only.iter().filter(|r| r.rule == *rule && r.fraction == f && r.status == Status::Ok));
            let mut row = vec![rule.clone()];
            for &e in &budgets {
                let v: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| r.budgets.iter().find(|p| p.epochs == e))
                    .map(|p| p.test_accuracy)
                    .collect();
                row.push(fmt_short(Summary::of(&v), 100.0, 2));
            }
            t.rows.push(row);
        }
        if !t.rows.is_empty() {
            b.push(Block::Para(format!("Training-data fraction {} ({}):", num(f), pct_label(f))));
            b.push(Block::Table(t));
        }
    }
}

/// Each feedback matrix's angle to what backprop would use in its place (BioTorch's alignment
/// metric), after the first and the last epoch, on the runs with the most training data.
fn section_alignment(g: &Group, b: &mut Vec<Block>) {
    let Some(&f) = g.fractions().last() else { return };
    let mut t = Table {
        header: ["rule", "feedback matrix", "after epoch 1", "after the last epoch"].map(String::from).to_vec(),
        rows: vec![],
    };
    for rule in g.rules() {
        let ok = g.ok(&rule, f);
        let names: BTreeSet<&str> = ok
            .iter()
            .flat_map(|r| r.curve.iter().flat_map(|p| p.feedback_angles.iter().map(|(n, _)| n.as_str())))
            .collect();
        for name in names {
            let at = |first: bool| {
                let v: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| if first { r.curve.first() } else { r.curve.last() })
                    .filter_map(|p| p.feedback_angles.iter().find(|(n, _)| n == name).map(|(_, a)| *a))
                    .collect();
                fmt_short(Summary::of(&v), 1.0, 1)
            };
            t.rows.push(vec![rule.clone(), format!("`{name}`"), at(true), at(false)]);
        }
    }
    if t.rows.is_empty() {
        return;
    }
    b.push(Block::Heading(3, "Feedback alignment".into()));
    b.push(Block::Para(format!(
        "The angle in degrees (0: backprop's direction; 90: unrelated) between each feedback matrix and \
         what backprop would use in its place: W for `feedback.I.weight` (feedback alignment, sign \
         symmetry, PAL), the network's downstream map taken linear, (W_L ... W_I)^T, for DFA's \
         `feedback.I.dfa` (MLPs). Mean ± std over non-diverged seeds (n), training-data fraction {}. \
         A rule without a row has no such matrix, or its records were made before records carried \
         the angles (each record's `git_revision` names the build that made it).",
        num(f)
    )));
    b.push(Block::Table(t));
}

/// Spiking rules: spikes per test sample (every layer's, the input's encoding included) beside
/// the accuracy after the last epoch and at the best epoch (selected on the test set: what the
/// spiking papers report, given for comparison with them only).
fn section_spiking(g: &Group, b: &mut Vec<Block>) {
    let Some(&f) = g.fractions().last() else { return };
    let mut t = Table {
        header: [
            "rule",
            "test accuracy %, last epoch",
            "best epoch's test accuracy % (selected on the test set)",
            "spikes per test sample, last epoch",
            "training samples / s",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![],
    };
    for rule in g.rules() {
        let ok = g.ok(&rule, f);
        let spikes: Vec<f64> = ok.iter().filter_map(|r| r.curve.last().and_then(|p| p.spikes_per_sample)).collect();
        if spikes.is_empty() {
            continue;
        }
        let last: Vec<f64> = ok.iter().map(|r| r.test_accuracy).collect();
        let best: Vec<f64> =
            ok.iter().map(|r| r.curve.iter().map(|p| p.test_accuracy).fold(f64::NAN, f64::max)).collect();
        let speed: Vec<f64> = ok
            .iter()
            .filter_map(|r| {
                let s = *r.epoch_seconds.last()?;
                (s > 0.0).then(|| r.train_samples as f64 * r.curve.len() as f64 / s)
            })
            .collect();
        t.rows.push(vec![
            rule.clone(),
            fmt_short(Summary::of(&last), 100.0, 2),
            fmt_short(Summary::of(&best), 100.0, 2),
            fmt_short(Summary::of(&spikes), 1.0, 0),
            fmt_short(Summary::of(&speed), 1.0, 0),
        ]);
    }
    if t.rows.is_empty() {
        return;
    }
    b.push(Block::Heading(3, "Spiking activity".into()));
    b.push(Block::Para(format!(
        "Spiking rules: the mean spikes per test sample in the last epoch's test evaluation (every layer's, \
         the input's encoding included: an energy proxy), beside the test accuracy after the last epoch and at \
         the best epoch. The best epoch is chosen on the test set, as the spiking papers report it: for \
         comparison with them only, never for a ranking. Mean ± std over non-diverged seeds (n), \
         training-data fraction {}.",
        num(f)
    )));
    b.push(Block::Table(t));
}

/// Language models (records with a test cross-entropy per token): the test perplexity after the
/// last epoch and at every epoch, and the next-token accuracy.
fn section_language(g: &Group, b: &mut Vec<Block>) {
    let Some(&f) = g.fractions().last() else { return };
    let rules: Vec<String> = g
        .rules()
        .into_iter()
        .filter(|r| g.ok(r, f).iter().any(|x| x.curve.iter().any(|p| p.test_loss.is_some())))
        .collect();
    if rules.is_empty() {
        return;
    }
    let epochs = rules.iter().flat_map(|r| g.ok(r, f).into_iter().map(|x| x.curve.len())).max().unwrap_or(0);
    let mut t = Table {
        header: ["rule", "test perplexity, last epoch", "next-token test accuracy %", "ratio to bp's perplexity"]
            .map(String::from)
            .into_iter()
            .chain((1..=epochs).map(|e| format!("ppl, epoch {e}")))
            .collect(),
        rows: vec![],
    };
    let ppl = |r: &str| -> Vec<f64> {
        g.ok(r, f).iter().filter_map(|x| x.curve.last().and_then(|p| p.test_loss).map(f64::exp)).collect()
    };
    let bp = Summary::of(&ppl("bp"));
    for rule in &rules {
        let ok = g.ok(rule, f);
        let last = ppl(rule);
        let acc: Vec<f64> = ok.iter().map(|r| r.test_accuracy).collect();
        let ratio = match (bp, Summary::of(&last)) {
            (Some(b), Some(m)) => format!("{:.3}", m.mean / b.mean),
            _ => "-".into(),
        };
        let mut row =
            vec![rule.clone(), fmt_short(Summary::of(&last), 1.0, 3), fmt_short(Summary::of(&acc), 100.0, 2), ratio];
        for e in 0..epochs {
            let v: Vec<f64> =
                ok.iter().filter_map(|r| r.curve.get(e).and_then(|p| p.test_loss).map(f64::exp)).collect();
            row.push(fmt_short(Summary::of(&v), 1.0, 2));
        }
        t.rows.push(row);
    }
    b.push(Block::Heading(3, "Language model: test perplexity".into()));
    b.push(Block::Para(format!(
        "Perplexity = exp(mean cross-entropy per predicted token) on the test split, after the last epoch and \
         after every epoch; the next-token accuracy beside it. Mean ± std over non-diverged seeds (n), \
         training-data fraction {}.",
        num(f)
    )));
    b.push(Block::Table(t));
}

fn section_vae(g: &Group, ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    let Some(&f) = g.fractions().last() else { return Ok(()) };
    let rules: Vec<String> = g
        .rules()
        .into_iter()
        .filter(|r| g.ok(r, f).iter().any(|x| x.curve.iter().any(|p| p.test_elbo.is_some())))
        .collect();
    if rules.is_empty() {
        return Ok(());
    }
    let epochs = rules.iter().flat_map(|r| g.ok(r, f).into_iter().map(|x| x.curve.len())).max().unwrap_or(0);
    let mut t = Table {
        header: [
            "rule",
            "test negative ELBO (nats), last epoch",
            "reconstruction (nats)",
            "KL (nats)",
            "pixel accuracy %",
            "ratio to bp's negative ELBO",
        ]
        .map(String::from)
        .into_iter()
        .chain((1..=epochs).map(|e| format!("-ELBO, epoch {e}")))
        .collect(),
        rows: vec![],
    };
    let last = |r: &str, f2: fn(&crate::protocol::record::EpochPoint) -> Option<f64>| -> Vec<f64> {
        g.ok(r, f).iter().filter_map(|x| x.curve.last().and_then(f2)).collect()
    };
    let bp = Summary::of(&last("bp", |p| p.test_elbo));
    for rule in &rules {
        let ok = g.ok(rule, f);
        let nelbo = last(rule, |p| p.test_elbo);
        let recon = last(rule, |p| p.test_recon);
        let kl: Vec<f64> =
            ok.iter().filter_map(|x| x.curve.last().and_then(|p| Some(p.test_elbo? - p.test_recon?))).collect();
        let acc: Vec<f64> = ok.iter().map(|r| r.test_accuracy).collect();
        let ratio = match (bp, Summary::of(&nelbo)) {
            (Some(b), Some(m)) => format!("{:.3}", m.mean / b.mean),
            _ => "-".into(),
        };
        let mut row = vec![
            rule.clone(),
            fmt_short(Summary::of(&nelbo), 1.0, 2),
            fmt_short(Summary::of(&recon), 1.0, 2),
            fmt_short(Summary::of(&kl), 1.0, 2),
            fmt_short(Summary::of(&acc), 100.0, 2),
            ratio,
        ];
        for e in 0..epochs {
            let v: Vec<f64> = ok.iter().filter_map(|r| r.curve.get(e).and_then(|p| p.test_elbo)).collect();
            row.push(fmt_short(Summary::of(&v), 1.0, 1));
        }
        t.rows.push(row);
    }
    b.push(Block::Heading(3, "Variational autoencoder: negative ELBO".into()));
    b.push(Block::Para(format!(
        "Negative ELBO per test image (nats; lower is better) = the decoder's Bernoulli reconstruction term + the \
         latent's KL divergence from its prior, one latent sample per image (the same draws for every run); pixel \
         accuracy: the share of pixels whose reconstruction falls on the right side of 1/2. After the last epoch and \
         after every epoch; mean ± std over non-diverged seeds (n), training-data fraction {}.",
        num(f)
    )));
    b.push(Block::Table(t));
    // Each rule's pictures from its first seed that saved them.
    for rule in &rules {
        let mut ok = g.ok(rule, f);
        ok.sort_by_key(|r| r.seed);
        let Some(rec) = ok.iter().find(|r| !r.images.is_empty()) else { continue };
        for img in &rec.images {
            let src = Path::new(img);
            if !src.is_file() {
                continue;
            }
            let kind = if img.ends_with("-samples.png") { "samples" } else { "recon" };
            let name = format!("{}vae-{}-s{}-{kind}.png", ctx.prefix, slug(rule), rec.seed);
            let dst = ctx.plots_dir.join(&name);
            fs::create_dir_all(&ctx.plots_dir).map_err(|e| format!("{}: {e}", ctx.plots_dir.display()))?;
            fs::copy(src, &dst).map_err(|e| format!("{} -> {}: {e}", src.display(), dst.display()))?;
            ctx.files.push(dst);
            let alt = match kind {
                "samples" => format!("{rule}, seed {}: 32 samples from the prior, decoded", rec.seed),
                _ => format!(
                    "{rule}, seed {}: test images (rows 1, 3) and their reconstructions (rows 2, 4), decoded from \
                     the posterior mean",
                    rec.seed
                ),
            };
            b.push(Block::Picture { alt, png: format!("plots/{name}") });
        }
    }
    Ok(())
}

fn section_stable(g: &Group, b: &mut Vec<Block>) {
    if !g.recs.iter().any(|r| r.epochs_to_stable.is_some()) {
        return;
    }
    let fracs = g.fractions();
    b.push(Block::Heading(3, "Epochs to stable accuracy".into()));
    b.push(Block::Para(
        "Epochs to stable accuracy: the first epoch after which test accuracy stays within \
         0.5 points of the final value. Mean ± std over non-diverged seeds (n)."
            .into(),
    ));
    let mut t = Table {
        header: std::iter::once("rule".to_string()).chain(fracs.iter().map(|f| format!("f = {}", num(*f)))).collect(),
        rows: vec![],
    };
    for rule in g.rules() {
        let mut row = vec![rule.clone()];
        for &f in &fracs {
            let v: Vec<f64> = g.ok(&rule, f).iter().filter_map(|r| r.epochs_to_stable.map(|e| e as f64)).collect();
            row.push(fmt_short(Summary::of(&v), 1.0, 1));
        }
        t.rows.push(row);
    }
    b.push(Block::Table(t));
    // The same point as compute and time (records that carry their costs).
    let f = fracs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let costed = |r: &&Record| r.macs_per_step > 0.0 && r.epoch_seconds.len() == r.curve.len();
    if !g.recs.iter().any(costed) {
        return;
    }
    b.push(Block::Para(format!(
        "The same as training cost, at fraction {}: multiply-adds of one training step (every GEMM: \
         forward, the rule's backward or relaxation, updates; element-wise work not counted), and \
         the multiply-adds and wall-clock training seconds up to the epoch of stable accuracy \
         (wall clock per epoch: they include whatever else the machine ran meanwhile and any \
         pause of the run, so the multiply-adds are the comparable cost).",
        num(f)
    )));
    let mut t = Table {
        header: ["rule", "MMAC / step", "GMAC to stable", "seconds to stable"].map(String::from).to_vec(),
        rows: vec![],
    };
    for rule in g.rules() {
        let ok: Vec<&Record> = g.ok(&rule, f).into_iter().filter(costed).collect();
        if ok.is_empty() {
            continue;
        }
        let at = |r: &Record, v: &dyn Fn(&Record, usize) -> f64| r.epochs_to_stable.map(|e| v(r, e - 1));
        let step: Vec<f64> = ok.iter().map(|r| r.macs_per_step * 1e-6).collect();
        let gmac: Vec<f64> = ok.iter().filter_map(|r| at(r, &|r, i| r.curve[i].gmacs)).collect();
        let secs: Vec<f64> = ok.iter().filter_map(|r| at(r, &|r, i| r.epoch_seconds[i])).collect();
        t.rows.push(vec![
            rule.clone(),
            fmt_short(Summary::of(&step), 1.0, 2),
            fmt_short(Summary::of(&gmac), 1.0, 1),
            fmt_short(Summary::of(&secs), 1.0, 1),
        ]);
    }
    b.push(Block::Table(t));
}

fn section_curves(g: &Group, ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    if !g.recs.iter().any(|r| !r.curve.is_empty() && r.status == Status::Ok) {
        return Ok(());
    }
    b.push(Block::Heading(3, "Learning curves".into()));
    b.push(Block::Para(
        "Mean test accuracy per epoch over non-diverged seeds; the shaded band is ± one \
         standard deviation."
            .into(),
    ));
    for f in g.fractions().into_iter().rev() {
        let series: Vec<Series> = g
            .rules()
            .iter()
            .map(|rule| {
                let mut by_epoch: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for r in g.ok(rule, f) {
                    for p in &r.curve {
                        by_epoch.entry(p.epoch).or_default().push(p.test_accuracy);
                    }
                }
                Series {
                    label: rule.clone(),
                    color: ctx.color(rule),
                    points: by_epoch
                        .into_iter()
                        .filter_map(|(e, v)| Summary::of(&v).map(|s| (e as f64, s.mean * 100.0, s.std * 100.0)))
                        .collect(),
                    dashed: false,
                    spread: Spread::Band,
                }
            })
            .collect();
        let chart = Chart {
            title: format!("Learning curves, {} of training data — {}", pct_label(f), g.title()),
            x_label: "epoch".into(),
            y_label: "test accuracy (%)".into(),
            log_x: false,
            x_format: XFormat::Plain,
            legend: Legend::LowerRight,
            series,
        };
        ctx.plot(&chart, &format!("learning_curves_f{}", num(f)), b)?;
    }
    Ok(())
}

fn section_pruning(g: &Group, ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    if !g.recs.iter().any(|r| !r.pruning.is_empty()) {
        return Ok(());
    }
    b.push(Block::Heading(3, "Pruning".into()));
    b.push(Block::Para(if g.gradual.is_some() {
        "Test accuracy (%) at the end of training of runs pruned gradually during it (global \
         magnitude pruning after every epoch, sparsity rising on the cubic schedule to the given \
         share of weights set to zero; no fine-tuning after). Mean ± std over non-diverged seeds \
         (n)."
            .into()
    } else {
        "Test accuracy (%) after global magnitude pruning to the given sparsity (share of \
         weights set to zero): one-shot (no retraining) and, where run, after fine-tuning. \
         Mean ± std over non-diverged seeds (n)."
            .into()
    }));
    let rules = g.rules();
    for f in selected_fractions(&g.fractions()) {
        let ok: Vec<&Record> = rules.iter().flat_map(|r| g.ok(r, f)).collect();
        let sparsities = distinct(ok.iter().flat_map(|r| r.pruning.iter().map(|p| p.sparsity)));
        if sparsities.is_empty() {
            continue;
        }
        let has_ft = ok.iter().any(|r| r.pruning.iter().any(|p| p.finetuned_accuracy.is_some()));
        let values = |rule: &str, s: f64, ft: bool| -> Option<Summary> {
            let v: Vec<f64> = g
                .ok(rule, f)
                .iter()
                .filter_map(|r| r.pruning.iter().find(|p| same(p.sparsity, s)))
                .filter_map(|p| if ft { p.finetuned_accuracy } else { Some(p.test_accuracy) })
                .collect();
            Summary::of(&v)
        };
        let mut series = vec![];
        let first = if g.gradual.is_some() { "gradually pruned" } else { "one-shot" };
        for (ft, what) in [(false, first), (true, "fine-tuned")] {
            if ft && !has_ft {
                continue;
            }
            let mut t = Table {
                header: std::iter::once("rule".to_string())
                    .chain(sparsities.iter().map(|s| format!("sparsity {}", pct_label(*s))))
                    .collect(),
                rows: vec![],
            };
            for rule in &rules {
                let row_vals: Vec<Option<Summary>> = sparsities.iter().map(|&s| values(rule, s, ft)).collect();
                if row_vals.iter().all(|v| v.is_none()) {
                    continue;
                }
                let mut row = vec![rule.clone()];
                row.extend(row_vals.iter().map(|v| fmt_short(*v, 100.0, 2)));
                t.rows.push(row);
                series.push(Series {
                    label: if ft { format!("{rule} (fine-tuned)") } else { rule.clone() },
                    color: ctx.color(rule),
                    points: sparsities
                        .iter()
                        .zip(&row_vals)
                        .filter_map(|(s, v)| v.map(|v| (*s, v.mean * 100.0, v.std * 100.0)))
                        .collect(),
                    dashed: ft,
                    spread: Spread::ErrorBars,
                });
            }
            b.push(Block::Para(format!("{what} accuracy, training-data fraction {} ({}):", num(f), pct_label(f))));
            b.push(Block::Table(t));
        }
        let chart = Chart {
            title: format!("Accuracy after pruning, {} of training data — {}", pct_label(f), g.title()),
            x_label: "sparsity (% of weights pruned)".into(),
            y_label: "test accuracy (%)".into(),
            log_x: false,
            x_format: XFormat::Percent,
            legend: Legend::LowerLeft,
            series,
        };
        ctx.plot(&chart, &format!("pruning_f{}", num(f)), b)?;
    }
    Ok(())
}

fn section_noise(g: &Group, ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    let kinds: BTreeSet<String> = g.recs.iter().flat_map(|r| r.noise.iter().map(|p| p.kind.clone())).collect();
    let para = "Test accuracy (%) on test inputs corrupted with noise of the given kind and level \
         (gaussian: standard deviation; salt-pepper: share of pixels flipped). Mean ± std \
         over non-diverged seeds (n).";
    let points = |r: &Record, kind: &str| -> Vec<(f64, f64)> {
        r.noise.iter().filter(|p| p.kind == kind).map(|p| (p.level, p.test_accuracy)).collect()
    };
    section_levels(g, ctx, b, ("Robustness to input noise", para, "noise", "level"), kinds, points)
}

fn section_adversarial(g: &Group, ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    let kinds: BTreeSet<String> = g.recs.iter().flat_map(|r| r.adversarial.iter().map(|p| p.attack.clone())).collect();
    let para = "Test accuracy (%) under L-inf attacks: white-box through each trained network's own \
         input gradient (fgsm: one signed step of eps; pgd: projected signed steps from a random \
         start), and black-box from the answer's scores alone (square: the Square attack, the \
         plan's `square_queries` queries per sample, every rule), eps in pixel units (pixels in \
         [0, 1]), on the plan's `attack_samples` first test samples. A rule that resists fgsm/pgd \
         but not square has an input gradient that misleads the attack (gradient masking: \
         `attack_loss = \"margin\"` or `biolearn eval --attack-loss margin` checks it); one that \
         resists square but not fgsm/pgd answers with few distinct scores (spike counts, clipped \
         states), which give the random search no signal: its square figure overstates its \
         robustness. Mean ± std over non-diverged seeds (n).";
    let points = |r: &Record, kind: &str| -> Vec<(f64, f64)> {
        r.adversarial.iter().filter(|p| p.attack == kind).map(|p| (p.eps, p.test_accuracy)).collect()
    };
    section_levels(g, ctx, b, ("Adversarial robustness", para, "attack", "eps"), kinds, points)?;
    let flagged: Vec<String> = masking_flags(g).into_iter().map(|(_, text)| text).collect();
    if !flagged.is_empty() {
        b.push(Block::Para(format!(
            "Sanity check (Carlini et al. 2019, \"On evaluating adversarial robustness\"): a \
             gradient attack whose accuracy does not fall as eps doubles or more is not finding \
             adversarial examples; the usual cause is a masked gradient (a saturated softmax whose \
             cross-entropy gradient is zero), not robustness. Flagged here (mean over seeds, largest \
             training fraction, accuracy at the smallest and the largest eps): {}. Check them with a \
             black-box attack (`square`) or the margin loss (`attack_loss = \"margin\"`).",
            flagged.join("; ")
        )));
    }
    Ok(())
}

/// Rules whose white-box attack accuracy does not fall (by at least a point) from its smallest
/// to its largest eps, at least twice the smallest, at the group's largest training fraction:
/// (rule, "rule (attack): a% at eps e0, b% at eps e1").
fn masking_flags(g: &Group) -> Vec<(String, String)> {
    let Some(&full) = g.fractions().last() else { return Vec::new() };
    let mut out = Vec::new();
    for rule in g.rules() {
        let ok = g.ok(&rule, full);
        for kind in ["fgsm", "pgd", "fgsm-margin", "pgd-margin"] {
            let mean_at = |eps: f64| -> Option<f64> {
                let v: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| r.adversarial.iter().find(|p| p.attack == kind && same(p.eps, eps)))
                    .map(|p| p.test_accuracy)
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let eps =
                distinct(ok.iter().flat_map(|r| r.adversarial.iter().filter(|p| p.attack == kind).map(|p| p.eps)));
            let (Some(&lo), Some(&hi)) = (eps.iter().find(|&&e| e > 0.0), eps.last()) else { continue };
            if hi < 2.0 * lo {
                continue;
            }
            if let (Some(a), Some(z)) = (mean_at(lo), mean_at(hi)) {
                if z > a - 0.01 {
                    let text = format!("{rule} ({kind}): {:.1}% at eps {lo}, {:.1}% at eps {hi}", 100.0 * a, 100.0 * z);
                    out.push((rule.clone(), text));
                }
            }
        }
    }
    out
}

/// A table and a plot per kind and training fraction of accuracy against a level (noise level,
/// attack eps); `points(record, kind)` gives (level, accuracy) pairs.
fn section_levels(
    g: &Group,
    ctx: &mut Ctx,
    b: &mut Vec<Block>,
    (heading, para, what, level_name): (&str, &str, &str, &str),
    kinds: BTreeSet<String>,
    points: impl Fn(&Record, &str) -> Vec<(f64, f64)>,
) -> Result<(), String> {
    if kinds.is_empty() {
        return Ok(());
    }
    b.push(Block::Heading(3, heading.into()));
    b.push(Block::Para(para.into()));
    let rules = g.rules();
    for kind in &kinds {
        for f in selected_fractions(&g.fractions()) {
            let ok: Vec<&Record> = rules.iter().flat_map(|r| g.ok(r, f)).collect();
            let levels = distinct(ok.iter().flat_map(|r| points(r, kind).into_iter().map(|p| p.0)));
            if levels.is_empty() {
                continue;
            }
            let mut t = Table {
                header: std::iter::once("rule".to_string())
                    .chain(levels.iter().map(|l| format!("{level_name} {}", num(*l))))
                    .collect(),
                rows: vec![],
            };
            let mut series = vec![];
            for rule in &rules {
                let vals: Vec<Option<Summary>> = levels
                    .iter()
                    .map(|&l| {
                        let v: Vec<f64> = g
                            .ok(rule, f)
                            .iter()
                            .filter_map(|r| points(r, kind).into_iter().find(|p| same(p.0, l)))
                            .map(|p| p.1)
                            .collect();
                        Summary::of(&v)
                    })
                    .collect();
                if vals.iter().all(|v| v.is_none()) {
                    continue;
                }
                let mut row = vec![rule.clone()];
                row.extend(vals.iter().map(|v| fmt_short(*v, 100.0, 2)));
                t.rows.push(row);
                series.push(Series {
                    label: rule.clone(),
                    color: ctx.color(rule),
                    points: levels
                        .iter()
                        .zip(&vals)
                        .filter_map(|(l, v)| v.map(|v| (*l, v.mean * 100.0, v.std * 100.0)))
                        .collect(),
                    dashed: false,
                    spread: Spread::ErrorBars,
                });
            }
            b.push(Block::Para(format!("{what} {kind}, training-data fraction {} ({}):", num(f), pct_label(f))));
            b.push(Block::Table(t));
            let chart = Chart {
                title: format!("Accuracy under {what} {kind}, {} of training data — {}", pct_label(f), g.title()),
                x_label: format!("{kind} {level_name}"),
                y_label: "test accuracy (%)".into(),
                log_x: false,
                x_format: XFormat::Plain,
                legend: Legend::LowerLeft,
                series,
            };
            ctx.plot(&chart, &format!("{what}_{kind}_f{}", num(f)), b)?;
        }
    }
    Ok(())
}

/// Few-shot runs (k training samples per class), per (data, arch): accuracy against k.
fn section_few_shot(records: &[Record], ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    // A plan's separate budget runs (`budget_only`, fewer epochs) of the same few-shot draw are
    // not few-shot results of the plan's budget: they stay out.
    let shot: Vec<&Record> = records.iter().filter(|r| r.shots.is_some() && !r.budget_only).collect();
    let datas: BTreeSet<String> = shot.iter().map(|r| r.data.clone()).collect();
    for data in datas {
        let recs: Vec<&Record> = shot.iter().copied().filter(|r| r.data == data).collect();
        let arch =
            recs.iter().map(|r| r.arch.as_str()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ");
        let ks: BTreeSet<usize> = recs.iter().filter_map(|r| r.shots).collect();
        // One row per rule, or per rule and network where a rule ran on several (BP beside
        // each rule on that rule's own network).
        let mut rows: Vec<(String, Option<String>)> = Vec::new();
        for rule in rule_order(recs.iter().map(|r| r.rule.as_str())) {
            let archs: BTreeSet<&str> = recs.iter().filter(|r| r.rule == rule).map(|r| r.arch.as_str()).collect();
            if archs.len() > 1 {
                rows.extend(archs.into_iter().map(|a| (rule.clone(), Some(a.to_string()))));
            } else {
                rows.push((rule, None));
            }
        }
        b.push(Block::Heading(2, format!("Few-shot: {data} / {arch}")));
        b.push(Block::Para(
            "Test accuracy (%) after training on k samples of every class (a seeded draw per seed), \
             mean ± std over non-diverged seeds (n)."
                .into(),
        ));
        let mut t = Table {
            header: std::iter::once("rule".to_string()).chain(ks.iter().map(|k| format!("k = {k}"))).collect(),
            rows: vec![],
        };
        let mut series = vec![];
        for (rule, on) in &rows {
            let vals: Vec<(usize, Option<Summary>, usize)> = ks
                .iter()
                .map(|&k| {
                    let cell: Vec<&Record> = recs
                        .iter()
                        .copied()
                        .filter(|r| &r.rule == rule && r.shots == Some(k) && on.as_ref().is_none_or(|a| &r.arch == a))
                        .collect();
                    let ok: Vec<&Record> = cell.iter().copied().filter(|r| r.status == Status::Ok).collect();
                    (k, acc_summary(&ok), diverged_count(&cell))
                })
                .collect();
            let label = match on {
                Some(a) => format!("{rule} ({a})"),
                None => rule.clone(),
            };
            let mut row = vec![label.clone()];
            row.extend(vals.iter().map(|(_, s, d)| fmt_ci(*s, *d)));
            t.rows.push(row);
            series.push(Series {
                color: ctx.color(rule),
                label,
                points: vals
                    .iter()
                    .filter_map(|(k, v, _)| v.map(|v| (*k as f64, v.mean * 100.0, v.std * 100.0)))
                    .collect(),
                dashed: false,
                spread: Spread::ErrorBars,
            });
        }
        b.push(Block::Table(t));
        let chart = Chart {
            title: format!("Few-shot accuracy — {data} / {arch}"),
            x_label: "training samples per class".into(),
            y_label: "test accuracy (%)".into(),
            log_x: true,
            x_format: XFormat::Plain,
            legend: Legend::LowerLeft,
            series,
        };
        ctx.plot(&chart, &format!("few_shot_{}_{}", slug(&data), slug(&arch)), b)?;
    }
    Ok(())
}

fn section_diverged(g: &Group, b: &mut Vec<Block>) {
    let mut div: Vec<&Record> = g.recs.iter().copied().filter(|r| r.status == Status::Diverged).collect();
    if div.is_empty() {
        return;
    }
    div.sort_by(|a, b| a.id.cmp(&b.id));
    b.push(Block::Heading(3, "Diverged runs".into()));
    b.push(Block::Para(format!(
        "{} run(s) diverged; they are excluded from all means above and counted as \
         \"k diverged\" next to n.",
        div.len()
    )));
    b.push(Block::Table(Table {
        header: ["id", "rule", "fraction", "seed", "diverged at epoch"].iter().map(|s| s.to_string()).collect(),
        rows: div
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.rule.clone(),
                    num(r.fraction),
                    r.seed.to_string(),
                    r.diverged_epoch.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
                ]
            })
            .collect(),
    }));
}

// ---------------------------------------------------------------- entry point

/// Write `report.md`, `index.html` and `plots/*.png|svg` into `out_dir` (created if needed).
/// `DIR/trials.png` and `.svg` of a `biolearn tune` search: each trial's validation accuracy
/// (in trial order) and the best so far.
pub fn tune_plot(trials: &[crate::protocol::tune::Trial], dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let pts: Vec<(f64, f64, f64)> = trials.iter().map(|t| (t.trial as f64, 100.0 * t.val_accuracy, 0.0)).collect();
    let mut best = f64::NEG_INFINITY;
    let so_far: Vec<(f64, f64, f64)> = pts
        .iter()
        .map(|&(x, y, _)| {
            best = best.max(y);
            (x, best, 0.0)
        })
        .collect();
    let series = |label: &str, color, points, dashed| Series {
        label: label.into(),
        color,
        points,
        dashed,
        spread: Spread::None,
    };
    let chart = Chart {
        title: "validation accuracy per trial".into(),
        x_label: "trial".into(),
        y_label: "validation accuracy (%)".into(),
        log_x: false,
        x_format: XFormat::Plain,
        legend: Legend::LowerRight,
        series: vec![series("trial", 0, pts, false), series("best so far", 1, so_far, true)],
    };
    plot::render(&chart, dir, "trials")
}

pub fn write_report(records: &[Record], out_dir: &Path) -> Result<ReportSummary, String> {
    write_report_with(records, &[], out_dir)
}

/// Every comparison pairs one run of a rule with BP's of the same seed: two records of the same
/// condition (data, network, rule, share or shots, seed, training noise, pruning schedule,
/// hardware, budget) under different ids (other settings: merged plans, a rerun with changed
/// settings) would be counted twice. Refused, naming both.
fn one_run_per_condition(records: &[Record]) -> Result<(), String> {
    // A run's id is its condition and its settings' hash (`h=`): the condition is the rest.
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for r in records {
        let key: Vec<&str> = r.id.split('|').filter(|part| !part.starts_with("h=")).collect();
        if let Some(other) = seen.insert(key.join("|"), &r.id) {
            return Err(format!(
                "records {other} and {} are the same condition with different settings: a report pairs one \
                 run per rule and seed (report them from separate directories)",
                r.id
            ));
        }
    }
    Ok(())
}

/// `write_report` with the sections of the conditions run outside plans (online, continual,
/// few-shot episodes, interference: `conditions`, one result directory each) after the records'.
pub fn write_report_with(records: &[Record], conditions: &[PathBuf], out_dir: &Path) -> Result<ReportSummary, String> {
    if records.is_empty() && conditions.is_empty() {
        return Err("no records to report".into());
    }
    one_run_per_condition(records)?;
    let plots_dir = out_dir.join("plots");
    fs::create_dir_all(&plots_dir).map_err(|e| format!("{}: {e}", plots_dir.display()))?;

    let groups = group_records(records);
    let all_rules = rule_order(records.iter().map(|r| r.rule.as_str()));
    let mut ctx = Ctx {
        plots_dir,
        prefix: String::new(),
        rule_colors: all_rules.iter().enumerate().map(|(i, r)| (r.clone(), i)).collect(),
        files: vec![],
    };

    let diverged = records.iter().filter(|r| r.status == Status::Diverged).count();
    let join = |v: BTreeSet<&str>| v.into_iter().collect::<Vec<_>>().join(", ");
    let plans = join(records.iter().map(|r| r.plan.as_str()).collect());
    let versions = join(records.iter().map(|r| r.biolearn_version.as_str()).collect());
    let revisions = join(records.iter().map(|r| r.git_revision.as_str()).collect());
    let seconds: f64 = records.iter().map(|r| r.seconds).sum();

    let mut facts = vec![];
    if !records.is_empty() {
        facts.extend([
            format!("records: {} ({} diverged)", records.len(), diverged),
            format!("plan(s): {plans}"),
            format!("biolearn version(s): {versions}; git revision(s): {revisions}"),
            format!("total training time: {:.1} h", seconds / 3600.0),
            format!("rules: {}", all_rules.join(", ")),
        ]);
        let resumed: Vec<&Record> = records.iter().filter(|r| !r.trained_before_resume_by.is_empty()).collect();
        if !resumed.is_empty() {
            let by = join(resumed.iter().flat_map(|r| r.trained_before_resume_by.iter().map(String::as_str)).collect());
            facts.push(format!(
                "resumed across builds: {} record(s) continued a checkpoint another build or CPU path wrote ({by})",
                resumed.len()
            ));
        }
    }
    if !conditions.is_empty() {
        let dirs: Vec<String> = conditions.iter().map(|d| d.display().to_string()).collect();
        facts.push(format!("conditions: {}", dirs.join(", ")));
    }
    let mut b = vec![Block::Heading(1, "biolearn report".into()), Block::List(facts)];

    // The scoreboards first: the study's answers, one per network with BP on it.
    let n_blocks = b.len();
    for g in &groups {
        scoreboard::section(g, records, &mut b);
    }
    if b.len() > n_blocks {
        b.insert(n_blocks, Block::Heading(2, "Scoreboard".into()));
    }
    for g in &groups {
        ctx.prefix = if groups.len() > 1 { format!("{}_", slug(&g.title())) } else { String::new() };
        let seeds: BTreeSet<u64> = g.recs.iter().map(|r| r.seed).collect();
        let fracs = g.fractions();
        b.push(Block::Heading(2, g.title()));
        b.push(Block::Para(format!(
            "{} runs: rules {}; training-data fractions {}; {} seed(s); {} epochs at most.",
            g.recs.len(),
            g.rules().join(", "),
            fracs.iter().map(|f| num(*f)).collect::<Vec<_>>().join(", "),
            seeds.len(),
            g.recs.iter().map(|r| r.epochs).max().unwrap_or(0)
        )));
        if let Some(m) = g.accuracy_meaning() {
            b.push(Block::Para(format!("Accuracy in this section's tables and plots is the {m}.")));
        }
        section_accuracy(g, &mut ctx, &mut b)?;
        section_presets(g, &mut b);
        section_vs_bp(g, &mut b);
        section_budgets(g, &mut b);
        section_stable(g, &mut b);
        section_alignment(g, &mut b);
        section_spiking(g, &mut b);
        section_language(g, &mut b);
        section_vae(g, &mut ctx, &mut b)?;
        section_curves(g, &mut ctx, &mut b)?;
        section_pruning(g, &mut ctx, &mut b)?;
        section_noise(g, &mut ctx, &mut b)?;
        section_adversarial(g, &mut ctx, &mut b)?;
        section_diverged(g, &mut b);
    }
    ctx.prefix = String::new();
    section_few_shot(records, &mut ctx, &mut b)?;
    hardware::section(records, &mut ctx, &mut b)?;
    conditions::section(conditions, &mut ctx, &mut b)?;

    let md_path = out_dir.join("report.md");
    fs::write(&md_path, html::to_markdown(&b)).map_err(|e| format!("{}: {e}", md_path.display()))?;
    let html_path = out_dir.join("index.html");
    fs::write(&html_path, html::to_html("biolearn report", &b)).map_err(|e| format!("{}: {e}", html_path.display()))?;

    let mut files = vec![md_path, html_path];
    files.append(&mut ctx.files);
    Ok(ReportSummary { files, records: records.len(), groups: groups.len(), diverged })
}

#[cfg(test)]
mod tests;
