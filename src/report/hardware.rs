//! The compute-in-memory section: every rule under every hardware condition of the records
//! (`nn::hardware`), its accuracy beside the energy, latency and area its training step costs
//! there (`nn::hardware::cost`), and accuracy against energy per training sample in one plot.

use super::html::{Block, Table};
use super::plot::{Chart, Legend, Series, Spread, XFormat};
use super::{acc_summary, diverged_count, fmt_ci, rule_order, Ctx};
use crate::nn::hardware::cost::Cost;
use crate::protocol::record::{Record, Status};
use crate::report::stats::Summary;
use std::collections::BTreeSet;

/// The condition's name ("ideal" for records without one).
fn condition(r: &Record) -> &str {
    r.hardware.as_deref().unwrap_or("ideal")
}

/// The record's cost, priced afresh from its measured activity by today's model (so a change
/// to the model reaches every record; the price stored in the record is the model's of the day
/// it ran), on the condition the record stored, or for records before session 26 the
/// condition's preset or file as it reads now. Those records carry no sample count either: a
/// step's samples are then the run's training samples times its epochs over its metered steps,
/// which holds for a run trained in one go (none of those records is a Hebbian phase's) and is
/// not assumed for a resumed one: that has no price (None), nor has a record whose condition
/// cannot be read.
pub(super) fn priced(r: &Record) -> Option<Cost> {
    use crate::nn::hardware::{cost, HardwareConfig};
    let h = r.hardware_cost.as_ref()?;
    let hw = match &h.config {
        Some(c) => c.clone(),
        None => HardwareConfig::named(r.hardware.as_deref().unwrap_or("ideal")).ok()?,
    };
    let mut act = h.activity.clone();
    if act.samples <= 0.0 {
        if act.steps == 0 || !r.trained_before_resume_by.is_empty() {
            return None;
        }
        act.samples = (r.train_samples * r.curve.len()) as f64 / act.steps as f64;
    }
    Some(cost::estimate(&act, &hw, &cost::Constants::neurosim()))
}

/// A step's energy over the samples it trained on (rules differ in batch size).
fn per_sample(c: &Cost) -> f64 {
    if c.samples > 0.0 {
        c.step_energy_j / c.samples
    } else {
        f64::NAN
    }
}

fn mean_of(costs: &[Cost], f: impl Fn(&Cost) -> f64) -> Option<f64> {
    let v: Vec<f64> = costs.iter().map(f).filter(|v| v.is_finite()).collect();
    Summary::of(&v).map(|s| s.mean)
}

/// Nothing unless some record ran on non-ideal hardware.
pub fn section(records: &[Record], ctx: &mut Ctx, b: &mut Vec<Block>) -> Result<(), String> {
    if records.iter().all(|r| r.hardware.is_none()) {
        return Ok(());
    }
    let full: Vec<&Record> = records.iter().filter(|r| r.shots.is_none() && !r.budget_only).collect();
    let datas: BTreeSet<&str> = full.iter().filter(|r| r.hardware.is_some()).map(|r| r.data.as_str()).collect();
    for data in datas {
        let recs: Vec<&Record> = full.iter().copied().filter(|r| r.data == data).collect();
        let conds: Vec<String> = {
            let mut c: Vec<String> =
                recs.iter().map(|r| condition(r).to_string()).collect::<BTreeSet<_>>().into_iter().collect();
            // ideal first, then the others as named.
            c.sort_by_key(|x| (x != "ideal", x.clone()));
            c
        };
        let rules = rule_order(recs.iter().map(|r| r.rule.as_str()));
        b.push(Block::Heading(2, format!("Compute-in-memory hardware: {data}")));
        b.push(Block::Para(
            "Every rule trained and tested on each hardware condition (presets/hardware/): test accuracy (%) after \
             the last epoch, mean ± std over seeds with its 95% CI; and, priced by the cost model from the arrays' \
             measured activity (nn/hardware/cost.rs: NeuroSim V2.1's circuit constants), the mean energy and latency \
             of one training step, the part of that energy spent on the arrays (reads, ADC conversions, device \
             writes; the rest is DRAM traffic, almost all of it every sample's weight gradients, written and read \
             back as NeuroSim charges them, which every rule with the same learned weights pays alike), the energy \
             per training sample (a step's over the samples it trained on: rules differ in batch size), the energy \
             and latency of one inference, the arrays' cell area and ADC count. Ideal hardware is digital: no array \
             cost."
                .into(),
        ));
        let mut t = Table {
            header: [
                "rule",
                "hardware",
                "test accuracy %",
                "energy / step (µJ)",
                "of which on the arrays (µJ)",
                "energy / training sample (µJ)",
                "latency / step (µs)",
                "energy / inference (nJ)",
                "latency / inference (µs)",
                "array area (mm²)",
                "ADCs",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            rows: vec![],
        };
        let mut series = vec![];
        for rule in &rules {
            let mut points = vec![];
            for c in &conds {
                let cell: Vec<&Record> =
                    recs.iter().copied().filter(|r| &r.rule == rule && condition(r) == c).collect();
                if cell.is_empty() {
                    continue;
                }
                let ok: Vec<&Record> = cell.iter().copied().filter(|r| r.status == Status::Ok).collect();
                let acc = acc_summary(&ok);
                let costs: Vec<Cost> = ok.iter().filter_map(|r| priced(r)).collect();
                let cost = |f: fn(&Cost) -> f64, scale: f64, d: usize| {
                    mean_of(&costs, f).map_or("—".to_string(), |v| format!("{:.d$}", v * scale))
                };
                let first = costs.first();
                t.rows.push(vec![
                    rule.clone(),
                    c.clone(),
                    fmt_ci(acc, diverged_count(&cell)),
                    cost(|c| c.step_energy_j, 1e6, 3),
                    cost(|c| c.read_j + c.adc_j + c.write_j, 1e6, 3),
                    cost(per_sample, 1e6, 3),
                    cost(|c| c.step_latency_s, 1e6, 2),
                    cost(|c| c.inference_energy_j, 1e9, 3),
                    cost(|c| c.inference_latency_s, 1e6, 3),
                    first.map_or("—".into(), |c| format!("{:.4}", c.array_mm2)),
                    first.map_or("—".into(), |c| c.adcs.to_string()),
                ]);
                if let (Some(e), Some(a)) = (mean_of(&costs, per_sample), acc) {
                    points.push((e * 1e6, a.mean * 100.0, a.std * 100.0));
                }
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(Series {
                label: rule.clone(),
                color: ctx.color(rule),
                points,
                dashed: false,
                spread: Spread::ErrorBars,
            });
        }
        b.push(Block::Table(t));
        // A log axis only where the energies span a decade (a narrower range has no decade
        // ticks to label).
        let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((f64::INFINITY, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let chart = Chart {
            title: format!("Accuracy against energy per training sample — {data} (non-ideal conditions)"),
            x_label: "energy per training sample (µJ; a step's energy over its samples)".into(),
            y_label: "test accuracy (%)".into(),
            log_x: lo > 0.0 && hi / lo >= 10.0,
            x_format: XFormat::Plain,
            legend: Legend::LowerRight,
            series,
        };
        ctx.plot(&chart, &format!("hardware_{}", super::slug(data)), b)?;
    }
    Ok(())
}
