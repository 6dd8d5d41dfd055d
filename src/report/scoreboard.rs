//! The scoreboard: every rule against BP on the same network, one row per rule and one column
//! per question the holistic protocol asks (more accurate with all / less data? faster to stable
//! accuracy, in epochs, multiply-adds and seconds? more robust to pruning, noise and attacks?
//! better few-shot?), each cell a difference paired by seed with a family-wise correction over
//! the whole scoreboard of the network.

use super::html::{Block, Table};
use super::stats::{self, Verdict};
use super::{pct_label, same, Group};
use crate::protocol::record::{Record, Status};
use std::collections::BTreeSet;

/// What a question's per-seed value is and how it is compared.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    /// Percentage points, higher is better (accuracy).
    Points,
    /// Percentage points, lower is better (an accuracy drop).
    Drop,
    /// Epochs, lower is better.
    Epochs,
    /// A cost compared as the ratio rule / BP (paired on the log), lower is better.
    Ratio,
}

impl Scale {
    fn higher_is_better(self) -> bool {
        self == Scale::Points
    }
}

/// One question: its column name, what it measures (for the caption), and the value of a run
/// (with the records of the same rule, seed and network for the few-shot and budget questions).
struct Question {
    name: String,
    /// The training fraction of the runs it is asked of.
    fraction: f64,
    scale: Scale,
    value: Box<dyn Fn(&Record, &Lookup) -> Option<f64>>,
}

/// The records a question may need beyond the run itself.
pub(super) struct Lookup<'a> {
    budget_only: Vec<&'a Record>,
    few_shot: Vec<&'a Record>,
    /// Runs of the same network pruned gradually during training (a gradual-pruning plan's
    /// records, `report --with`), paired with this group's unpruned runs.
    gradual: Vec<&'a Record>,
}

impl Lookup<'_> {
    fn budget(&self, r: &Record, e: usize) -> Option<f64> {
        self.budget_only
            .iter()
            .find(|q| q.rule == r.rule && q.seed == r.seed && same(q.fraction, r.fraction) && q.epochs == e)
            .filter(|q| q.status == Status::Ok)
            .map(|q| q.test_accuracy)
            .or_else(|| r.budgets.iter().find(|p| p.epochs == e).map(|p| p.test_accuracy))
    }
    fn shots(&self, r: &Record, k: usize) -> Option<f64> {
        self.few_shot
            .iter()
            .find(|q| {
                q.rule == r.rule && q.arch == r.arch && q.seed == r.seed && q.shots == Some(k) && q.status == Status::Ok
            })
            .map(|q| q.test_accuracy)
    }
    /// The final accuracy of the run like `r` (rule, network, seed, data share, budget) that was
    /// pruned gradually to sparsity `s` during its training.
    fn gradual(&self, r: &Record, s: f64) -> Option<f64> {
        self.gradual
            .iter()
            .find(|q| {
                q.rule == r.rule
                    && q.arch == r.arch
                    && q.seed == r.seed
                    && same(q.fraction, r.fraction)
                    && q.epochs == r.epochs
                    && q.gradual_sparsity.is_some_and(|g| same(g, s))
                    && q.status == Status::Ok
            })
            .map(|q| q.test_accuracy)
    }
}

/// Mean accuracy drop (points) from the run's clean accuracy over the levels above 0 of one
/// robustness axis, `points` giving (level, accuracy) pairs; None when it has none.
fn mean_drop(clean: f64, points: &[(f64, f64)]) -> Option<f64> {
    let d: Vec<f64> = points.iter().filter(|p| p.0 > 0.0).map(|p| 100.0 * (clean - p.1)).collect();
    (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
}

/// The questions a group's records can answer, at its largest training fraction `full`.
fn questions(g: &Group, few_shot: &[&Record], gradual: &[&Record], full: f64) -> Vec<Question> {
    let mut q: Vec<Question> = Vec::new();
    let acc = |r: &Record, _: &Lookup| Some(100.0 * r.test_accuracy);
    for f in g.fractions().into_iter().rev() {
        q.push(Question {
            name: format!("accuracy, {} of the data", pct_label(f)),
            fraction: f,
            scale: Scale::Points,
            value: Box::new(acc),
        });
    }
    let full_recs = || g.recs.iter().filter(move |r| same(r.fraction, full));
    let max_epochs = full_recs().map(|r| r.epochs).max().unwrap_or(0);
    let budgets: BTreeSet<usize> = g
        .budget_only
        .iter()
        .map(|r| r.epochs)
        .chain(full_recs().flat_map(|r| r.budgets.iter().map(|p| p.epochs)))
        .filter(|&e| e < max_epochs)
        .collect();
    for e in budgets {
        q.push(Question {
            name: format!("accuracy after {e} epoch{}", if e == 1 { "" } else { "s" }),
            fraction: full,
            scale: Scale::Points,
            value: Box::new(move |r: &Record, l: &Lookup| l.budget(r, e).map(|a| 100.0 * a)),
        });
    }
    if full_recs().any(|r| r.epochs_to_stable.is_some()) {
        q.push(Question {
            name: "epochs to stable accuracy".into(),
            fraction: full,
            scale: Scale::Epochs,
            value: Box::new(|r: &Record, _: &Lookup| r.epochs_to_stable.map(|e| e as f64)),
        });
    }
    let costed = |r: &Record| r.macs_per_step > 0.0;
    if full_recs().any(|r| costed(r)) {
        let at = move |r: &Record, v: fn(&Record, usize) -> f64| {
            r.epochs_to_stable.filter(|_| costed(r)).map(|e| v(r, e - 1)).filter(|x| *x > 0.0)
        };
        q.push(Question {
            name: "multiply-adds to stable accuracy".into(),
            fraction: full,
            scale: Scale::Ratio,
            value: Box::new(move |r: &Record, _: &Lookup| at(r, |r, i| r.curve[i].gmacs)),
        });
        // (Not seconds: a study's runs ran in different sessions, builds and machine loads, so
        // wall-clock time paired by seed measures those, not the rules; the per-network tables
        // show the seconds.)
    }
    // One-shot pruning against the same network unpruned (a fine-tuned point would add training
    // the unpruned reference did not get); only where the records prune after training (a
    // gradually pruned run's only point is its own final accuracy).
    if full_recs().any(|r| r.pruning.iter().any(|p| p.sparsity > 0.0) && r.pruning.iter().any(|p| p.sparsity == 0.0)) {
        q.push(Question {
            name: "accuracy lost to pruning (one-shot)".into(),
            fraction: full,
            scale: Scale::Drop,
            value: Box::new(|r: &Record, _: &Lookup| {
                let clean = r.pruning.iter().find(|p| p.sparsity == 0.0)?.test_accuracy;
                mean_drop(clean, &r.pruning.iter().map(|p| (p.sparsity, p.test_accuracy)).collect::<Vec<_>>())
            }),
        });
    }
    // Gradual pruning (a separate plan's runs, same rule, network and seed, pruned during
    // training): the accuracy it costs against the unpruned run, one question per sparsity.
    let gradual_levels: BTreeSet<u64> = gradual.iter().filter_map(|r| r.gradual_sparsity).map(f64::to_bits).collect();
    for s in gradual_levels.into_iter().map(f64::from_bits) {
        q.push(Question {
            name: format!("accuracy lost to pruning (gradual, {})", pct_label(s)),
            fraction: full,
            scale: Scale::Drop,
            value: Box::new(move |r: &Record, l: &Lookup| l.gradual(r, s).map(|a| 100.0 * (r.test_accuracy - a))),
        });
    }
    let kinds: BTreeSet<String> = full_recs().flat_map(|r| r.noise.iter().map(|p| p.kind.clone())).collect();
    for kind in kinds {
        let k = kind.clone();
        q.push(Question {
            name: format!("accuracy lost to {kind} noise"),
            fraction: full,
            scale: Scale::Drop,
            value: Box::new(move |r: &Record, _: &Lookup| {
                let pts: Vec<(f64, f64)> =
                    r.noise.iter().filter(|p| p.kind == k).map(|p| (p.level, p.test_accuracy)).collect();
                mean_drop(r.test_accuracy, &pts)
            }),
        });
    }
    // White-box (gradient) attacks, then the black-box Square attack apart: a rule whose input
    // gradient misleads FGSM/PGD (gradient masking) shows it as a gap between the two.
    for (name, square) in
        [("accuracy lost to attacks", false), ("accuracy lost to the square attack (black-box)", true)]
    {
        let of = move |p: &&crate::protocol::record::AttackPoint| (p.attack == "square") == square;
        if full_recs().any(|r| r.adversarial.iter().any(|p| of(&p))) {
            q.push(Question {
                name: name.into(),
                fraction: full,
                scale: Scale::Drop,
                value: Box::new(move |r: &Record, _: &Lookup| {
                    let pts: Vec<(f64, f64)> =
                        r.adversarial.iter().filter(of).map(|p| (p.eps, p.test_accuracy)).collect();
                    mean_drop(r.attacked_clean_accuracy.unwrap_or(r.test_accuracy), &pts)
                }),
            });
        }
    }
    let shots: BTreeSet<usize> = few_shot.iter().filter_map(|r| r.shots).collect();
    for k in shots {
        q.push(Question {
            name: format!("few-shot accuracy, {k} per class"),
            fraction: full,
            scale: Scale::Points,
            value: Box::new(move |r: &Record, l: &Lookup| l.shots(r, k).map(|a| 100.0 * a)),
        });
    }
    q
}

struct Cell {
    rule: String,
    question: usize,
    /// Per-seed differences rule − BP (of the logs for a ratio question).
    diffs: Vec<f64>,
    /// The rule's and BP's mean values over the paired seeds, and the pairs.
    means: (f64, f64, usize),
}

/// A cell's test: its verdict, Holm-adjusted p and the difference with its Bonferroni CI.
struct Tested {
    verdict: Verdict,
    p: f64,
    d: stats::PairedDiff,
}

/// The scoreboard of one group (a network), if it has BP and another rule.
pub(super) fn section(g: &Group, records: &[Record], b: &mut Vec<Block>) {
    let rules = g.rules();
    if !rules.iter().any(|r| r == "bp") || rules.len() < 2 {
        return;
    }
    let Some(full) = g.fractions().into_iter().reduce(f64::max) else { return };
    let archs: BTreeSet<&str> = g.recs.iter().map(|r| r.arch.as_str()).collect();
    // Records of another run kind (few-shot, gradually pruned) under this group's data, networks,
    // training noise and hardware: where each question's partner runs are looked up.
    let same_setting = |r: &&Record| {
        !r.budget_only
            && r.data == g.data
            && archs.contains(r.arch.as_str())
            && same(r.train_noise.abs(), g.train_noise)
            && r.hardware == g.hardware
    };
    // The plan's few-shot runs at its budget, not their separate shorter budget runs.
    let few_shot: Vec<&Record> =
        records.iter().filter(same_setting).filter(|r| r.shots.is_some() && r.gradual_sparsity == g.gradual).collect();
    // A gradually pruned group's runs have no unpruned partner among themselves; an unpruned
    // group's have theirs in a gradual-pruning plan's records, when the report was given them.
    let gradual: Vec<&Record> = if g.gradual.is_some() {
        Vec::new()
    } else {
        records.iter().filter(same_setting).filter(|r| r.gradual_sparsity.is_some() && r.shots.is_none()).collect()
    };
    let qs = questions(g, &few_shot, &gradual, full);
    let lookup = Lookup { budget_only: g.budget_only.clone(), few_shot, gradual };
    let mut cells = Vec::new();
    for rule in rules.iter().filter(|r| *r != "bp") {
        for (qi, q) in qs.iter().enumerate() {
            // A question is asked of the runs at its fraction, each paired with BP's run of the
            // same seed.
            let values = |rule: &str| -> Vec<(u64, f64)> {
                g.ok(rule, q.fraction).into_iter().filter_map(|r| (q.value)(r, &lookup).map(|x| (r.seed, x))).collect()
            };
            let (mine, bp) = (values(rule), values("bp"));
            let pairs: Vec<(f64, f64)> =
                mine.iter().filter_map(|(s, x)| bp.iter().find(|(t, _)| t == s).map(|(_, y)| (*x, *y))).collect();
            if pairs.is_empty() {
                continue;
            }
            let diffs =
                pairs.iter().map(|(x, y)| if q.scale == Scale::Ratio { x.ln() - y.ln() } else { x - y }).collect();
            let n = pairs.len() as f64;
            let means =
                (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n, pairs.len());
            cells.push(Cell { rule: rule.clone(), question: qi, diffs, means });
        }
    }
    if cells.is_empty() {
        return;
    }
    // One family: every testable cell (2 or more pairs) of this network's scoreboard.
    let tested: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].diffs.len() >= 2).collect();
    let m = tested.len().max(1);
    let ps: Vec<f64> = tested.iter().map(|&i| stats::paired_diff(&cells[i].diffs).map_or(1.0, |d| d.p)).collect();
    let adjusted = stats::holm(&ps);
    let results: Vec<Option<Tested>> = (0..cells.len())
        .map(|i| {
            let k = tested.iter().position(|&t| t == i)?;
            let d = stats::paired_diff_at(&cells[i].diffs, 0.05 / m as f64)?;
            let p = adjusted[k];
            let better = (d.mean > 0.0) == qs[cells[i].question].scale.higher_is_better();
            let verdict = match (p < 0.05, better) {
                (false, _) => Verdict::NoSignificantDifference,
                (true, true) => Verdict::Better,
                (true, false) => Verdict::Worse,
            };
            Some(Tested { verdict, p, d })
        })
        .collect();
    let show = |q: &Question, x: f64| match q.scale {
        Scale::Ratio => ratio(x.exp()),
        Scale::Epochs => format!("{x:+.1}"),
        _ => format!("{x:+.2}"),
    };
    let fmt_p = |p: f64| if p < 0.001 { "< 0.001".to_string() } else { format!("{p:.3}") };

    let pruned = g.gradual.map(|s| format!(" (gradual pruning to {})", pct_label(s))).unwrap_or_default();
    b.push(Block::Heading(3, format!("Scoreboard: every rule against BP on {}{pruned}", g.arch)));
    b.push(Block::Para(format!(
        "Each cell compares a rule with BP on this network, paired by seed (a seed gives every \
         rule the same data subset, validation split, noise and attack draws): the mean per-seed \
         difference rule − BP, on the runs with {} of the training data unless the column names \
         another share. ▲: the rule is significantly better than BP; ▼: significantly worse \
         (two-sided paired t-test, Holm-adjusted over all {m} cells of this scoreboard, family-wise \
         5%); no mark: no significant difference at these seeds. Better means higher for \
         accuracies, lower for epochs, costs and accuracy lost. Costs (multiply-adds) \
         are ratios rule / BP (geometric mean of the per-seed ratios) up to the epoch of stable \
         accuracy (the first epoch after which test accuracy stays within 0.5 points of the final \
         value). Accuracy lost: the run's clean accuracy minus its accuracy under the condition, \
         averaged over the condition's levels above 0 (pruning: one-shot, before any fine-tuning, \
         against the same unpruned network{}; attacks: against the clean accuracy of the attacked \
         test images where the record has it, else of the whole test set). The table after it \
         gives every cell's means, its Bonferroni 95% interval (over the {m} cells: \
         conservative, so a cell Holm finds significant may still have an interval containing \
         0) and the smallest difference its seeds could detect at that level with 80% power \
         ((t at the level + t at 80%) x the standard error of the observed spread, the usual \
         approximation to the noncentral t: optimistic at 3 seeds). A cell \
         whose per-seed differences are all equal has no spread to test: it is not marked. \
         This scoreboard is the study's family of tests; the per-network comparison tables \
         below test their own smaller families and can mark a difference this one does not.",
        pct_label(full),
        if lookup.gradual.is_empty() {
            ""
        } else {
            "; gradual pruning: the final accuracy of a run of the same rule, network and seed \
             pruned during its training, against this unpruned run"
        }
    )));
    if let Some(m) = g.accuracy_meaning() {
        b.push(Block::Para(format!("Accuracy on this network is the {m}.")));
    }
    if archs.len() > 1 {
        let bp: BTreeSet<&str> = g.recs.iter().filter(|r| r.rule == "bp").map(|r| r.arch.as_str()).collect();
        b.push(Block::Para(format!(
            "The rules here ran on networks of their own; BP on {}. A difference is of a rule with \
             its network against BP with its own, not of the rules alone (a plan's `[arm.NAME]` \
             runs BP on a rule's network).",
            bp.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut t = Table {
        header: std::iter::once("rule".to_string()).chain(qs.iter().map(|q| q.name.clone())).collect(),
        rows: vec![],
    };
    for rule in rules.iter().filter(|r| *r != "bp") {
        let mut row = vec![rule.clone()];
        for (qi, q) in qs.iter().enumerate() {
            let Some(i) = cells.iter().position(|c| &c.rule == rule && c.question == qi) else {
                row.push("—".into());
                continue;
            };
            row.push(match &results[i] {
                Some(r) => {
                    let mark = match r.verdict {
                        Verdict::Better => " ▲",
                        Verdict::Worse => " ▼",
                        Verdict::NoSignificantDifference => "",
                    };
                    format!("{}{mark}", show(q, r.d.mean))
                }
                None => format!("{} (n=1)", show(q, cells[i].diffs[0])),
            });
        }
        t.rows.push(row);
    }
    b.push(Block::Table(t));
    // Rules whose gradient attacks do not bite as eps grows (the attack section's sanity check):
    // their "better against attacks" is likely a masked gradient, and the finding says so.
    let masked: BTreeSet<String> = super::masking_flags(g).into_iter().map(|(rule, _)| rule).collect();
    let findings: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r.as_ref().filter(|r| r.verdict != Verdict::NoSignificantDifference)?;
            let q = &qs[cells[i].question];
            let caveat = if q.name == "accuracy lost to attacks" && masked.contains(&cells[i].rule) {
                " Its gradient attacks do not lower its accuracy as eps doubles: likely a masked \
                 gradient, not robustness (see the attack section's sanity check)."
            } else {
                ""
            };
            Some(format!(
                "{} is {} than BP in {}: {} (Bonferroni 95% CI {} to {}, Holm-adjusted p {}).{caveat}",
                cells[i].rule,
                r.verdict.as_str(),
                q.name,
                show(q, r.d.mean),
                show(q, r.d.lo),
                show(q, r.d.hi),
                fmt_p(r.p)
            ))
        })
        .collect();
    if findings.is_empty() {
        b.push(Block::Para(format!(
            "No rule differs significantly from BP on any question at these seeds ({m} cells, family-wise 5%)."
        )));
    } else {
        b.push(Block::Para("Significant differences:".into()));
        b.push(Block::List(findings));
    }
    let mut t = Table {
        header: [
            "question",
            "rule",
            "rule mean",
            "BP mean",
            "difference",
            "Bonferroni 95% CI",
            "p (Holm)",
            "detectable",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![],
    };
    for (qi, q) in qs.iter().enumerate() {
        for (i, c) in cells.iter().enumerate().filter(|(_, c)| c.question == qi) {
            let unit = |x: f64| match q.scale {
                Scale::Ratio => format!("{x:.3e}"),
                Scale::Epochs => format!("{x:.1}"),
                _ => format!("{x:.2}"),
            };
            let mut row =
                vec![q.name.clone(), c.rule.clone(), unit(c.means.0), format!("{} (n={})", unit(c.means.1), c.means.2)];
            match &results[i] {
                Some(r) => row.extend([
                    show(q, r.d.mean),
                    format!("[{}, {}]", show(q, r.d.lo), show(q, r.d.hi)),
                    fmt_p(r.p),
                    match q.scale {
                        Scale::Ratio => ratio(r.d.mde.exp()),
                        _ => format!("{:.2}", r.d.mde),
                    },
                    r.d.verdict_text(r.verdict).into(),
                ]),
                None => row.extend(["—", "—", "—", "—", "too few paired runs"].map(String::from)),
            }
            t.rows.push(row);
        }
    }
    b.push(Block::Table(t));
}

/// A ratio as "×1.23"; one too large or too small for two decimals to say anything (a
/// confidence bound from two seeds can be 10^50) in scientific notation, "×1.2e52".
fn ratio(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-2..1e4).contains(&x.abs()) {
        format!("×{x:.1e}")
    } else {
        format!("×{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::ratio;

    #[test]
    fn ratios_print_in_two_decimals_or_scientific_notation() {
        assert_eq!(ratio(1.2345), "×1.23");
        assert_eq!(ratio(0.5), "×0.50");
        assert_eq!(ratio(8.566e51), "×8.6e51");
        assert_eq!(ratio(1.3e-7), "×1.3e-7");
        assert_eq!(ratio(0.0), "×0.00");
    }
}
