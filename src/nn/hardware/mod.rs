//! Compute-in-memory hardware non-idealities (DNN+NeuroSim V2.1's training model, as used by
//! Wolters et al. 2023 to ask which learning rules survive analog in-memory computing).
//!
//! A `HardwareConfig` names what is not ideal; zero switches a non-ideality off. It acts in
//! three places, for every rule, in training and in inference:
//! - **the forward pass** (`Network::hw`, a `ReadModel`): the inputs of every weight layer are
//!   quantised (`activation_bits`), and a dense layer's product is read as a crossbar would read
//!   it: the weights as conductances in [G_min, G_max] (`on_off_ratio` = G_max / G_min), the
//!   input rows split into sub-arrays of `subarray` rows, every sub-array's column currents and
//!   its reference (dummy) column converted by an ADC of `adc_bits` (NeuroSim's
//!   `LinearQuantizeOut`: 2^bits levels over the tensor's own range, floor), the difference
//!   summed over sub-arrays.
//! - **the backward pass**: the error entering every weight layer is quantised (`error_bits`,
//!   WAGE's QE: scaled by the power of two nearest its largest magnitude, rounded, clipped).
//! - **the update** (`Device`, held by the driver's `Updater`): the gradient is quantised with
//!   stochastic rounding (`gradient_bits`, WAGE's QG); the change the optimiser asks of every
//!   weight is written to its device as a whole number of programming pulses (stochastically
//!   rounded, 2^weight_bits - 1 pulses span the conductance range) along the device's
//!   nonlinear potentiation (LTP) or depression (LTD) curve (NeuroSim's
//!   G(P) = B (1 - exp(-P / A)) form), with cycle-to-cycle variation on every write,
//!   device-to-device variation of the nonlinearity, and stuck-at faults. Feedback matrices
//!   are devices too: fixed or recomputed ones (FA's B, sign symmetry's, DFA's) are programmed to
//!   the nearest level, learned ones (Kolen-Pollack, DTP's inverses) are written like weights.
//!
//! Where biolearn departs from NeuroSim (each said in its place): weights keep the range
//! `range` x their initial largest magnitude per parameter (NeuroSim's WAGE networks are
//! scaled to +-1); activations are quantised over each sample's own range (WAGE: the fixed
//! range +-1); quantised errors and gradients keep their scale (WAGE rescales the learning rate
//! instead); the ADC reads multi-bit inputs at once (NeuroSim streams input bits serially);
//! conv layers get every non-ideality but the ADC; biases and batch-norm parameters stay
//! digital, as in NeuroSim's training model.

pub mod cost;

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// The non-idealities of one hardware condition (zero: ideal). A preset is a TOML file of
/// these keys (`presets/hardware/NAME.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HardwareConfig {
    /// Conductance levels per weight device: 2^weight_bits (NeuroSim: cellBit = wl_weight).
    pub weight_bits: u32,
    /// Bits of every weight layer's input.
    pub activation_bits: u32,
    /// Bits of the error entering every weight layer in the backward pass.
    pub error_bits: u32,
    /// Bits of the weight gradient (stochastic rounding).
    pub gradient_bits: u32,
    /// ADC precision of every sub-array's column readout (dense layers).
    pub adc_bits: u32,
    /// Rows per sub-array (the ADC sums at most this many inputs before converting).
    pub subarray: usize,
    /// Bits per memory cell (the cost model's columns per weight; training keeps one device per
    /// weight, as NeuroSim's training model does).
    pub cell_bits: u32,
    /// G_max / G_min of a device (0: G_min = 0).
    pub on_off_ratio: f64,
    /// Nonlinearity label of potentiation and depression (NeuroSim's, 0 = linear; its sign is
    /// ignored: NeuroSim writes depression's label negative).
    pub nonlinearity_ltp: f64,
    pub nonlinearity_ltd: f64,
    /// Standard deviation of each device's nonlinearity label around the preset's magnitude
    /// (device-to-device variation, drawn once per run; a label's sign is ignored, so draws below
    /// zero fold back: with a label of 0 the devices' labels are |N(0, d2d)|).
    pub d2d: f64,
    /// Standard deviation of the conductance change of every write, as a share of the range
    /// (cycle-to-cycle variation).
    pub c2c: f64,
    /// Share of the devices stuck (half at G_min, half at G_max), drawn once per run.
    pub stuck_at: f64,
    /// A weight parameter's range: +-range x its largest initial magnitude.
    pub range: f64,
}

impl Default for HardwareConfig {
    fn default() -> Self {
        HardwareConfig {
            weight_bits: 0,
            activation_bits: 0,
            error_bits: 0,
            gradient_bits: 0,
            adc_bits: 0,
            subarray: 128,
            cell_bits: 1,
            on_off_ratio: 0.0,
            nonlinearity_ltp: 0.0,
            nonlinearity_ltd: 0.0,
            d2d: 0.0,
            c2c: 0.0,
            stuck_at: 0.0,
            range: 2.0,
        }
    }
}

/// The shipped presets (`presets/hardware/NAME.toml`); each file's header says where it comes
/// from.
pub const PRESETS: &[(&str, &str)] = &[
    ("ideal", include_str!("../../../presets/hardware/ideal.toml")),
    ("int8", include_str!("../../../presets/hardware/int8.toml")),
    ("int4-adc5-var", include_str!("../../../presets/hardware/int4-adc5-var.toml")),
    ("neurosim", include_str!("../../../presets/hardware/neurosim.toml")),
];

impl HardwareConfig {
    /// A shipped preset by name, or a TOML file of these keys.
    pub fn named(name: &str) -> Result<HardwareConfig, String> {
        let (what, text) = match PRESETS.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => (format!("hardware preset '{name}'"), t.to_string()),
            None if name.ends_with(".toml") => {
                let t = std::fs::read_to_string(name).map_err(|e| format!("hardware file {name}: {e}"))?;
                (format!("hardware file {name}"), t)
            }
            None => {
                let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                return Err(format!("hardware '{name}' is neither a preset ({}) nor a .toml file", names.join(", ")));
            }
        };
        let cfg: HardwareConfig = toml::from_str(&text).map_err(|e| format!("{what}: {e}"))?;
        cfg.validate().map_err(|e| format!("{what}: {e}"))?;
        Ok(cfg)
    }

    /// The text a condition's records depend on (the preset's or file's contents).
    pub fn source(name: &str) -> String {
        match PRESETS.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => t.to_string(),
            None => std::fs::read_to_string(name).unwrap_or_default(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let bits = [
            ("weight_bits", self.weight_bits),
            ("activation_bits", self.activation_bits),
            ("error_bits", self.error_bits),
            ("gradient_bits", self.gradient_bits),
            ("adc_bits", self.adc_bits),
        ];
        for (k, b) in bits {
            if b == 1 || b > 24 {
                return Err(format!("{k} must be 0 (ideal) or in 2..=24, not {b}"));
            }
        }
        let checks: [(bool, &str); 8] = [
            ((1..=1 << 16).contains(&self.subarray), "subarray must be in 1..=65536 rows"),
            ((1..=8).contains(&self.cell_bits), "cell_bits must be in 1..=8"),
            (
                self.on_off_ratio == 0.0 || (self.on_off_ratio > 1.0 && self.on_off_ratio <= 1e9),
                "on_off_ratio must be 0 (infinite) or in (1, 1e9]",
            ),
            (
                self.nonlinearity_ltp.abs() <= 10.0 && self.nonlinearity_ltd.abs() <= 10.0,
                "nonlinearity_ltp and nonlinearity_ltd must be labels in [-10, 10]",
            ),
            ((0.0..=10.0).contains(&self.d2d), "d2d must be in [0, 10]"),
            ((0.0..=1.0).contains(&self.c2c), "c2c must be in [0, 1]"),
            ((0.0..=1.0).contains(&self.stuck_at), "stuck_at must be in [0, 1]"),
            (self.range.is_finite() && self.range > 0.0 && self.range <= 1e6, "range must be in (0, 1e6]"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, m)) => Err(m.to_string()),
            None => Ok(()),
        }
    }

    /// Nothing but digital floats: no device, no read model (no quantised errors).
    pub fn is_ideal(&self) -> bool {
        !self.has_device() && self.read_ideal()
    }

    /// The forward pass is exact.
    fn read_ideal(&self) -> bool {
        self.activation_bits == 0 && self.adc_bits == 0 && self.error_bits == 0
    }

    /// Weights live on devices that change them (levels, nonlinearity, variation, faults) or
    /// gradients are quantised: the update goes through a `Device`.
    pub fn has_device(&self) -> bool {
        self.weight_bits > 0
            || self.gradient_bits > 0
            || self.nonlinearity_ltp != 0.0
            || self.nonlinearity_ltd != 0.0
            || self.c2c > 0.0
            || self.stuck_at > 0.0
            || self.d2d > 0.0
    }
}

/// What the forward and backward passes need (`Network::hw`).
#[derive(Clone, Debug, PartialEq)]
pub struct ReadModel {
    pub activation_bits: u32,
    pub error_bits: u32,
    pub adc_bits: u32,
    pub subarray: usize,
    /// G_min / G_max (0 for an infinite on/off ratio).
    pub g_min: f32,
    /// Per parameter: the weight range r (weights in [-r, r]); 0 for parameters not on devices.
    pub ranges: Vec<f32>,
}

/// WAGE's power of two nearest `m` (its `shift`), 1 for 0.
fn shift(m: f32) -> f32 {
    if m > 0.0 && m.is_finite() {
        2f32.powi(m.log2().round() as i32)
    } else {
        1.0
    }
}

crate::wide_fn! {
    /// Whether `a` and `b` hold equal values (`a == b` on the slices: -0 equals 0, a NaN
    /// equals nothing), compared 16 at a time without stopping inside a block, so it
    /// vectorises (a device update compares whole parameters with their previous values).
    fn same_values(a: &[f32], b: &[f32]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
        for (x, y) in (&mut ca).zip(&mut cb) {
            if !x.iter().zip(y).fold(true, |all, (p, q)| all & (p == q)) {
                return false;
            }
        }
        ca.remainder().iter().zip(cb.remainder()).all(|(p, q)| p == q)
    }
}

crate::wide_fn! {
    /// `Device::count`'s sums: the total of `moves`, and into `rows` (one per array row, the
    /// moves in chunks of its length) each row's largest.
    fn pulse_counts(moves: &[u32], rows: &mut [u32]) -> u64 {
        let mut total = 0u64;
        for chunk in moves.chunks(rows.len()) {
            for (r, &k) in rows.iter_mut().zip(chunk) {
                total += k as u64;
                *r = (*r).max(k);
            }
        }
        total
    }
}

crate::wide_fn! {
    /// max |x| (0 for none; NaNs ignored, as `f32::max` does), in 16 lanes: the same value as
    /// a fold in order, since the maximum of absolute values does not depend on the order.
    fn max_abs(x: &[f32]) -> f32 {
        let mut lanes = [0f32; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for (l, v) in lanes.iter_mut().zip(c) {
                *l = l.max(v.abs());
            }
        }
        let m = chunks.remainder().iter().fold(0f32, |m, v| m.max(v.abs()));
        lanes.iter().fold(m, |m, l| m.max(*l))
    }
}

/// WAGE's error quantiser QE, keeping the scale: x / shift(max |x|), clipped to
/// [-1 + 1/S, 1 - 1/S], rounded to multiples of 1/S (S = 2^(bits-1)), times the shift again.
pub fn quantize_error(x: &mut [f32], bits: u32) {
    if bits == 0 {
        return;
    }
    let m = max_abs(x);
    let s = shift(m);
    let q = 2f32.powi(bits as i32 - 1);
    error_levels(x, s, q, 1.0 - 1.0 / q);
}

crate::wide_fn! {
    /// `quantize_error`'s arithmetic per element (vectorised: its rounding inlined).
    fn error_levels(x: &mut [f32], s: f32, q: f32, lim: f32) {
        for v in x {
            *v = ((*v / s).clamp(-lim, lim) * q).round() / q * s;
        }
    }
}

/// WAGE's gradient quantiser QG, keeping the scale: x / shift(max |x|), stochastically rounded
/// to multiples of 1/S (S = 2^(bits-1)), times the shift again.
pub fn quantize_gradient(x: &mut [f32], bits: u32, rng: &mut Rng) {
    quantize_gradient_with(x, bits, rng, &mut Vec::new());
}

/// `quantize_gradient` with a buffer for its uniforms (one per element, drawn in order first,
/// so the arithmetic after them runs vectorised).
pub fn quantize_gradient_with(x: &mut [f32], bits: u32, rng: &mut Rng, uniforms: &mut Vec<f32>) {
    if bits == 0 {
        return;
    }
    let m = max_abs(x);
    let s = shift(m);
    let q = 2f32.powi(bits as i32 - 1);
    uniforms.clear();
    uniforms.extend((0..x.len()).map(|_| rng.uniform()));
    stochastic_levels(x, uniforms, s, q);
}

crate::wide_fn! {
    /// `quantize_gradient`'s arithmetic per element, its uniforms `u` drawn.
    fn stochastic_levels(x: &mut [f32], u: &[f32], s: f32, q: f32) {
        for (v, u) in x.iter_mut().zip(u) {
            *v = (*v / s * q + u).floor() / q * s;
        }
    }
}

/// Every row (a sample's values) to 2^bits levels over its own range: [0, max] when the row
/// has no negative value (2^bits - 1 steps), else [-max |x|, max |x|] (2^(bits-1) - 1 steps a
/// side), rounding to the nearest level.
pub fn quantize_rows(x: &mut [f32], row: usize, bits: u32) {
    if bits == 0 || row == 0 {
        return;
    }
    for r in x.chunks_mut(row) {
        let (lo, hi) = r.iter().fold((0f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let m = hi.max(-lo);
        if m == 0.0 || !m.is_finite() {
            continue;
        }
        let steps = if lo < 0.0 { 2f32.powi(bits as i32 - 1) - 1.0 } else { 2f32.powi(bits as i32) - 1.0 };
        row_levels(r, steps / m);
    }
}

crate::wide_fn! {
    /// `quantize_rows`'s rounding of one row to multiples of 1 / k.
    fn row_levels(r: &mut [f32], k: f32) {
        for v in r {
            *v = (*v * k).round() / k;
        }
    }
}

/// NeuroSim's ADC (`LinearQuantizeOut`): 2^bits levels spanning the tensor's [min, max],
/// each value floored to its level.
pub fn adc(x: &mut [f32], bits: u32) {
    if bits == 0 || x.is_empty() {
        return;
    }
    let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let step = (hi - lo) * 2f32.powi(-(bits as i32));
    if !(step > 0.0) || !step.is_finite() {
        return;
    }
    adc_levels(x, lo, step, 2f32.powi(bits as i32) - 1.0);
}

crate::wide_fn! {
    /// `adc`'s flooring of every value to its level.
    fn adc_levels(x: &mut [f32], lo: f32, step: f32, top: f32) {
        for v in x {
            *v = ((*v - lo) / step).floor().clamp(0.0, top) * step + lo;
        }
    }
}

impl ReadModel {
    /// y = x W^T + b for a dense layer read from a crossbar: W (out x inp, within [-r, r]) as
    /// conductances g = G_min + (1 - G_min)(w / r + 1) / 2, the input rows in sub-arrays of
    /// `subarray`; every sub-array's column currents x g and its dummy column (every cell at the
    /// conductance of w = 0) through the ADC; y = sum over sub-arrays of (columns - dummy) x
    /// 2r / (1 - G_min). Exact (up to rounding) without ADC.
    #[allow(clippy::too_many_arguments)]
    pub fn dense_forward(
        &self,
        x: &[f32],
        n: usize,
        inp: usize,
        out: usize,
        w: &[f32],
        r: f32,
        b: Option<&[f32]>,
        y: &mut [f32],
    ) {
        crate::linalg::note_read(w, n, false);
        let g0 = self.g_min;
        let span = 1.0 - g0;
        let mid = g0 + span * 0.5;
        let rows = self.subarray.min(inp).max(1);
        let mut xs = vec![0f32; n * rows];
        let mut gs = vec![0f32; out * rows];
        let mut part = vec![0f32; n * out];
        let mut dummy = vec![0f32; n];
        match b {
            Some(bias) => y.chunks_mut(out).for_each(|row| row.copy_from_slice(bias)),
            None => y.fill(0.0),
        }
        let scale = 2.0 * r / span;
        let mut lo = 0;
        while lo < inp {
            let k = rows.min(inp - lo);
            for s in 0..n {
                xs[s * k..(s + 1) * k].copy_from_slice(&x[s * inp + lo..s * inp + lo + k]);
            }
            for o in 0..out {
                for (g, wv) in gs[o * k..(o + 1) * k].iter_mut().zip(&w[o * inp + lo..o * inp + lo + k]) {
                    *g = g0 + span * ((wv / r).clamp(-1.0, 1.0) + 1.0) * 0.5;
                }
            }
            crate::linalg::matmul(n, out, k, &xs[..n * k], false, &gs[..out * k], true, &mut part, false);
            for s in 0..n {
                dummy[s] = mid * xs[s * k..(s + 1) * k].iter().sum::<f32>();
            }
            adc(&mut part, self.adc_bits);
            adc(&mut dummy, self.adc_bits);
            for s in 0..n {
                for (yv, p) in y[s * out..(s + 1) * out].iter_mut().zip(&part[s * out..(s + 1) * out]) {
                    *yv += (p - dummy[s]) * scale;
                }
            }
            lo += k;
        }
    }
}

/// NeuroSim's device model, normalised: a device's conductance g in [0, 1] after a share x in
/// [0, 1] of the full pulse train from the bottom (potentiation) is
/// g = B (1 - exp(-x / A)), B = 1 / (1 - exp(-1 / A)); depression runs the mirrored curve
/// from the top. A = infinity is the linear device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Curve {
    a: f32,
}

impl Curve {
    pub fn new(a: f32) -> Curve {
        Curve { a }
    }
    pub fn linear(&self) -> bool {
        !self.a.is_finite() || self.a > 1e6
    }
    /// Conductance after the share `x` of the pulses.
    pub fn g(&self, x: f32) -> f32 {
        if self.linear() {
            return x;
        }
        let b = 1.0 / (1.0 - (-1.0 / self.a).exp());
        b * (1.0 - (-x / self.a).exp())
    }
    /// The share of the pulses that reaches conductance `g`.
    pub fn x(&self, g: f32) -> f32 {
        if self.linear() {
            return g;
        }
        let b = 1.0 / (1.0 - (-1.0 / self.a).exp());
        (-self.a * (1.0 - g / b).max(1e-30).ln()).clamp(0.0, 1.0)
    }
}

/// The curve of a NeuroSim nonlinearity label (its sign ignored; 0 is linear).
pub fn curve_of_label(label: f64) -> Curve {
    Curve::new(a_of_label(label.abs()))
}

/// Whether parameter kind `k` lives on devices, and how it changes there: `Some(true)`
/// incrementally by pulses (weights, learned feedback), `Some(false)` programmed to a level
/// whenever it changes (fixed or recomputed feedback matrices), `None`: digital.
fn on_device(k: super::ParamKind) -> Option<bool> {
    use super::ParamKind::*;
    match k {
        Weight | LearnedFeedback => Some(true),
        Feedback => Some(false),
        _ => None,
    }
}

/// Each parameter's weight range r: `range` x its largest magnitude (1 / sqrt(fan-in) for one
/// that starts at zero); 0 for parameters not on devices.
pub fn ranges(net: &super::Network, cfg: &HardwareConfig) -> Vec<f32> {
    net.params
        .iter()
        .map(|p| match on_device(p.kind) {
            None => 0.0,
            Some(_) => {
                let m = p.data.iter().fold(0f32, |m, v| m.max(v.abs()));
                let fan_in = p.data.len() / p.shape.first().copied().unwrap_or(1).max(1);
                let m = if m > 0.0 { m } else { 1.0 / (fan_in.max(1) as f32).sqrt() };
                cfg.range as f32 * m
            }
        })
        .collect()
}

/// The forward / backward model of a configuration (None when both are exact).
pub fn read_model(net: &super::Network, cfg: &HardwareConfig) -> Option<ReadModel> {
    (cfg.activation_bits > 0 || cfg.adc_bits > 0 || cfg.error_bits > 0).then(|| ReadModel {
        activation_bits: cfg.activation_bits,
        error_bits: cfg.error_bits,
        adc_bits: cfg.adc_bits,
        subarray: cfg.subarray,
        g_min: if cfg.on_off_ratio > 0.0 { (1.0 / cfg.on_off_ratio) as f32 } else { 0.0 },
        ranges: ranges(net, cfg),
    })
}

/// One parameter's devices.
#[derive(Clone, Debug)]
struct Cells {
    index: usize,
    range: f32,
    /// Written by pulses (weights, learned feedback); else programmed to a level.
    incremental: bool,
    /// Potentiation and depression curves: one for all devices, or one per device (d2d).
    ltp: Vec<Curve>,
    ltd: Vec<Curve>,
    /// (device, conductance) of the stuck ones.
    stuck: Vec<(usize, f32)>,
    /// The values last programmed (programmed parameters only): reprogrammed when they change.
    programmed: Vec<f32>,
    /// Inputs of the array (its rows: the parameter's last dimensions).
    inp: usize,
    /// With one potentiation curve for every device and whole levels: each level's conductance,
    /// `Curve::g(l / steps)` (for reprogramming, `set_levels`); else empty.
    levels: Vec<f32>,
}

/// The programming pulses the devices of one parameter took (the cost model's writes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pulses {
    /// Pulses over all devices.
    pub total: u64,
    /// Sum over updates of sum over array rows of the largest pulse count in the row (rows are
    /// programmed one after another, the devices of a row at once: NeuroSim's write latency).
    pub row_max: u64,
    /// Updates of the parameter: optimiser steps that selected it, and rule changes that moved
    /// it (a frozen layer's take none). Each one's gradient crosses DRAM in the cost model.
    pub updates: u64,
}

/// The weights' devices: their curves and faults (drawn once, from the run's seed), the update's
/// randomness (stochastic rounding, cycle-to-cycle variation; its own stream, checkpointed), and
/// the buffers of one update.
#[derive(Clone, Debug)]
pub struct Device {
    cfg: HardwareConfig,
    cells: Vec<Cells>,
    pub rng: Rng,
    before: Vec<Vec<f32>>,
    qgrads: Vec<Vec<f32>>,
    /// Per device parameter (by parameter index), the pulses written since `take_pulses`.
    pulses: Vec<(usize, Pulses)>,
    /// One update's pulses per device, and per array row the largest (reused buffers).
    moves: Vec<u32>,
    rows: Vec<u32>,
    /// The gradient quantiser's uniforms (a reused buffer).
    uniforms: Vec<f32>,
}

impl Device {
    /// The devices of every weight and feedback parameter of `net`, which are programmed to
    /// their nearest levels (and the stuck devices to their faults) at once.
    pub fn new(cfg: &HardwareConfig, net: &mut super::Network, rng: &mut Rng) -> Device {
        let ranges = ranges(net, cfg);
        let mut cells = Vec::new();
        for (i, p) in net.params.iter().enumerate() {
            let Some(incremental) = on_device(p.kind) else { continue };
            let n = p.data.len();
            let curves = |label: f64, rng: &mut Rng| -> Vec<Curve> {
                if cfg.d2d > 0.0 {
                    (0..n).map(|_| curve_of_label(label.abs() + cfg.d2d * rng.normal() as f64)).collect()
                } else {
                    vec![curve_of_label(label)]
                }
            };
            let ltp = curves(cfg.nonlinearity_ltp, rng);
            let ltd = curves(cfg.nonlinearity_ltd, rng);
            let mut stuck = Vec::new();
            if cfg.stuck_at > 0.0 {
                for j in 0..n {
                    if (rng.uniform() as f64) < cfg.stuck_at {
                        stuck.push((j, if rng.uniform() < 0.5 { 0.0 } else { 1.0 }));
                    }
                }
            }
            let inp = n / p.shape.first().copied().unwrap_or(1).max(1);
            let steps = level_steps(cfg.weight_bits);
            let levels = match ltp.as_slice() {
                [k] if !incremental && steps > 0.0 && steps <= 65535.0 => {
                    (0..=steps as u32).map(|l| k.g(l as f32 / steps)).collect()
                }
                _ => Vec::new(),
            };
            cells.push(Cells {
                index: i,
                range: ranges[i],
                incremental,
                ltp,
                ltd,
                stuck,
                programmed: Vec::new(),
                inp,
                levels,
            });
        }
        let pulses = cells.iter().map(|c| (c.index, Pulses::default())).collect();
        let mut d = Device {
            cfg: cfg.clone(),
            cells,
            rng: rng.fork(),
            before: Vec::new(),
            qgrads: Vec::new(),
            pulses,
            moves: Vec::new(),
            rows: Vec::new(),
            uniforms: Vec::new(),
        };
        for c in 0..d.cells.len() {
            d.program(net, c);
        }
        d.take_pulses();
        d
    }

    /// The pulses written since the last call, per device parameter (by parameter index).
    pub fn take_pulses(&mut self) -> Vec<(usize, Pulses)> {
        let fresh = self.pulses.iter().map(|(i, _)| (*i, Pulses::default())).collect();
        std::mem::replace(&mut self.pulses, fresh)
    }

    /// Count one update of `cells[c]` whose device j took `moves[j]` pulses.
    fn count(&mut self, c: usize) {
        let inp = self.cells[c].inp.max(1);
        self.rows.clear();
        self.rows.resize(inp, 0);
        let total = pulse_counts(&self.moves, &mut self.rows);
        let p = &mut self.pulses[c].1;
        p.total += total;
        p.row_max += self.rows.iter().map(|&k| k as u64).sum::<u64>();
    }

    /// Pulses spanning the conductance range (0: continuous).
    fn steps(&self) -> f32 {
        level_steps(self.cfg.weight_bits)
    }

    /// Set every device of `cells[c]` to the level nearest its parameter's value (a whole number
    /// of potentiation pulses from G_min), then the stuck ones to their faults.
    fn program(&mut self, net: &mut super::Network, c: usize) {
        let steps = self.steps();
        // A reprogrammed matrix: its devices move by the levels between the old values and the new.
        if !self.cells[c].programmed.is_empty() && steps > 0.0 {
            let (cl, data) = (&self.cells[c], &net.params[self.cells[c].index].data);
            self.moves.clear();
            self.moves.resize(data.len(), 0);
            level_moves(data, &cl.programmed, cl.range, steps, &mut self.moves);
            self.count(c);
        }
        let cl = &mut self.cells[c];
        let data = &mut net.params[cl.index].data;
        let r = cl.range;
        set_levels(data, &cl.ltp, &cl.levels, r, steps);
        for &(j, g) in &cl.stuck {
            data[j] = r * (2.0 * g - 1.0);
        }
        if !cl.incremental {
            cl.programmed.clear();
            cl.programmed.extend_from_slice(data);
        }
    }

    /// Before an update: remember the weights the devices hold.
    pub fn before_update(&mut self, net: &super::Network) {
        self.before.resize(self.cells.len(), Vec::new());
        for (b, c) in self.before.iter_mut().zip(&self.cells) {
            if c.incremental {
                b.clear();
                b.extend_from_slice(&net.params[c.index].data);
            }
        }
    }

    /// The update's gradients with the device parameters' quantised (`gradient_bits`), or None
    /// when they are not. Give the buffers back with `return_gradients`.
    pub fn quantized_gradients(&mut self, grads: &[Vec<f32>], which: &dyn Fn(usize) -> bool) -> Option<Vec<Vec<f32>>> {
        if self.cfg.gradient_bits == 0 {
            return None;
        }
        let mut q = std::mem::take(&mut self.qgrads);
        q.resize(grads.len(), Vec::new());
        for (i, (qi, g)) in q.iter_mut().zip(grads).enumerate() {
            qi.clear();
            qi.extend_from_slice(g);
            if which(i) && self.cells.iter().any(|c| c.index == i && c.incremental) {
                quantize_gradient_with(qi, self.cfg.gradient_bits, &mut self.rng, &mut self.uniforms);
            }
        }
        Some(q)
    }

    pub fn return_gradients(&mut self, q: Vec<Vec<f32>>) {
        self.qgrads = q;
    }

    /// After an update: write the change asked of every weight device as pulses along its
    /// curve (`before_update` holds where each started), reprogram changed feedback matrices,
    /// hold the stuck devices. `updated(i)`: whether the update was for parameter `i` (an
    /// optimiser step's selection; None: a rule's own change, for the parameters it moved).
    pub fn after_update(&mut self, net: &mut super::Network, updated: Option<&dyn Fn(usize) -> bool>) {
        let steps = self.steps();
        let c2c = self.cfg.c2c as f32;
        let exact = steps == 0.0 && c2c == 0.0;
        for c in 0..self.cells.len() {
            let cl = &self.cells[c];
            // An optimiser step counts for the parameters it selected, a rule's change for those
            // it moved.
            let selected = updated.map(|f| f(cl.index) && net.params[cl.index].trainable());
            if !cl.incremental {
                let changed = !same_values(&net.params[cl.index].data, &cl.programmed);
                if selected.unwrap_or(changed) {
                    self.pulses[c].1.updates += 1;
                }
                if changed {
                    self.program(net, c);
                }
                continue;
            }
            if selected.unwrap_or_else(|| !same_values(&net.params[cl.index].data, &self.before[c])) {
                self.pulses[c].1.updates += 1;
            }
            let data = &mut net.params[cl.index].data;
            let nonlinear = cl.ltp.iter().chain(&cl.ltd).any(|k| !k.linear());
            self.moves.clear();
            self.moves.resize(data.len(), 0);
            let pulse = Pulse { r: cl.range, steps, c2c, skip_in_range: exact && !nonlinear };
            write_pulses(data, &self.before[c], &mut self.moves, &pulse, &cl.ltp, &cl.ltd, &mut self.rng);
            for &(j, g) in &cl.stuck {
                data[j] = cl.range * (2.0 * g - 1.0);
                self.moves[j] = 0;
            }
            if steps > 0.0 {
                self.count(c);
            }
        }
    }
}

/// Pulses spanning a device's conductance range at `weight_bits` (0: continuous).
fn level_steps(weight_bits: u32) -> f32 {
    if weight_bits > 0 {
        (2f64.powi(weight_bits as i32) - 1.0) as f32
    } else {
        0.0
    }
}

crate::wide_fn! {
    /// The pulses between the levels of `old` and those of `new` (`Device::program`, a
    /// reprogrammed matrix), per device.
    fn level_moves(new: &[f32], old: &[f32], r: f32, steps: f32, moves: &mut [u32]) {
        let level = |w: f32| (((w / r).clamp(-1.0, 1.0) + 1.0) * 0.5 * steps).round();
        for ((m, w), o) in moves.iter_mut().zip(new).zip(old) {
            *m = (level(*w) - level(*o)).abs() as u32;
        }
    }
}

crate::wide_fn! {
    /// Every value of `data` to the conductance level nearest it on its device's curve (`ltp`:
    /// one, or one per device), within [-r, r]; `steps` levels (0: continuous). `table`, when
    /// not empty, holds the one curve's conductance at each level (the same values `Curve::g`
    /// gives there).
    fn set_levels(data: &mut [f32], ltp: &[Curve], table: &[f32], r: f32, steps: f32) {
        for (j, w) in data.iter_mut().enumerate() {
            let curve = ltp[j.min(ltp.len() - 1)];
            if steps == 0.0 && curve.linear() {
                *w = w.clamp(-r, r);
                continue;
            }
            let g = ((*w / r).clamp(-1.0, 1.0) + 1.0) * 0.5;
            let g = if steps > 0.0 {
                let level = (curve.x(g) * steps).round();
                if table.is_empty() || level.is_nan() { curve.g(level / steps) } else { table[level as usize] }
            } else {
                g
            };
            *w = r * (2.0 * g - 1.0);
        }
    }
}

/// One parameter's update as device pulses (`Device::after_update`): its range `r`, the pulses
/// spanning the range (`steps`, 0: continuous), cycle-to-cycle variation `c2c`, and whether a
/// change within the range is written exactly (`skip_in_range`: ideal linear devices).
struct Pulse {
    r: f32,
    steps: f32,
    c2c: f32,
    skip_in_range: bool,
}

crate::wide_fn! {
    /// The change from `before` to `data` asked of every device, written as a whole number of
    /// pulses (stochastically rounded) along its curve (`ltp` up, `ltd` down; one curve, or one
    /// per device); `moves` gets each device's pulse count. Compiled per instruction set so its
    /// rounding is inlined; the same bits and the same draws of `rng` on every path.
    fn write_pulses(
        data: &mut [f32],
        before: &[f32],
        moves: &mut [u32],
        p: &Pulse,
        ltp: &[Curve],
        ltd: &[Curve],
        rng: &mut Rng,
    ) {
        let (r, steps, c2c) = (p.r, p.steps, p.c2c);
        for (j, (w, &w0)) in data.iter_mut().zip(before).enumerate() {
            if *w == w0 || (p.skip_in_range && w.abs() <= r) {
                continue;
            }
            let g0 = ((w0 / r).clamp(-1.0, 1.0) + 1.0) * 0.5;
            let dg = (*w - w0) / (2.0 * r);
            let share = if steps > 0.0 { (dg * steps + rng.uniform()).floor() / steps } else { dg };
            if share == 0.0 {
                *w = w0;
                continue;
            }
            moves[j] = (share * steps).abs().round() as u32;
            let mut g1 = if share > 0.0 {
                let k = ltp[j.min(ltp.len() - 1)];
                k.g((k.x(g0) + share).min(1.0))
            } else {
                let k = ltd[j.min(ltd.len() - 1)];
                1.0 - k.g((k.x(1.0 - g0) - share).min(1.0))
            };
            if c2c > 0.0 {
                g1 += c2c * rng.normal();
            }
            *w = r * (2.0 * g1.clamp(0.0, 1.0) - 1.0);
        }
    }
}

/// NeuroSim's label of a curve's nonlinearity is 10.1015 times its largest excess over the
/// linear device, max over x of g(x) - x (the ratio holds to 1e-6 across the whole table of
/// NeuroSim V2.1's `GetParamA`, labels 0.01 to 9; tested below on entries of it).
const LABEL_PER_EXCESS: f64 = 10.101_525;

/// max over x in [0, 1] of g(x) - x for the curve of parameter a (at g'(x) = 1).
fn excess(a: f64) -> f64 {
    let b = 1.0 / (1.0 - (-1.0 / a).exp());
    let x = (-a * (a / b).ln()).clamp(0.0, 1.0);
    b * (1.0 - (-x / a).exp()) - x
}

/// The normalised curve parameter A of a nonlinearity label (bisection on the label's
/// definition; infinity for 0, the linear device).
pub fn a_of_label(label: f64) -> f32 {
    if label <= 0.0 {
        return f32::INFINITY;
    }
    let target = (label / LABEL_PER_EXCESS).min(0.999);
    // excess falls as a grows: bisect on log a.
    let (mut lo, mut hi) = (1e-4f64.ln(), 1e7f64.ln());
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if excess(mid.exp()) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Activation, Init, Network, Shape, Workspace};

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    /// WAGE's QE by hand: max 0.3 -> shift 2^round(log2 0.3) = 1/4; x / shift = 1.2, -0.4, 0.08;
    /// clipped to +-7/8 (4 bits: S = 8); rounded to eighths: 7/8, -3/8, 1/8; times 1/4.
    #[test]
    fn error_quantiser_by_hand() {
        let mut x = [0.3f32, -0.1, 0.02];
        quantize_error(&mut x, 4);
        assert_eq!(x, [0.21875, -0.09375, 0.03125]);
        let mut z = [0.3f32, -0.1];
        quantize_error(&mut z, 0);
        assert_eq!(z, [0.3, -0.1], "0 bits is exact");
    }

    /// Stochastic rounding: every value lands on one of its two neighbouring multiples of
    /// shift / S, and the mean over many draws is the value.
    #[test]
    fn gradient_quantiser_rounds_stochastically_without_bias() {
        let mut rng = Rng::new(3);
        // max 1.0 -> shift 1; 3 bits: S = 4, steps of 1/4.
        let v = [1.0f32, 0.3, -0.55];
        let mut mean = [0f64; 3];
        for _ in 0..20000 {
            let mut x = v;
            quantize_gradient(&mut x, 3, &mut rng);
            for (i, q) in x.iter().enumerate() {
                assert_eq!((q * 4.0).fract(), 0.0, "{q} is not a multiple of 1/4");
                assert!((q - v[i]).abs() < 0.25, "{q} is not a neighbour of {}", v[i]);
                mean[i] += *q as f64 / 20000.0;
            }
        }
        for (m, v) in mean.iter().zip(v) {
            assert!((m - v as f64).abs() < 0.01, "mean {m} for {v}");
        }
    }

    /// Rows by hand: a non-negative row on 2^2 - 1 = 3 steps of max / 3; a signed row with 3 bits on
    /// 3 steps a side of max / 3.
    #[test]
    fn activation_quantiser_by_hand() {
        let mut x = [0.4f32, 1.6, 3.0, -1.0, 0.4, 2.0];
        quantize_rows(&mut x[..3], 3, 2);
        assert_eq!(&x[..3], &[0.0, 2.0, 3.0]);
        quantize_rows(&mut x[3..], 3, 3);
        assert!(close(&x[3..], &[-4.0 / 3.0, 2.0 / 3.0, 2.0], 1e-6), "{x:?}");
    }

    /// NeuroSim's ADC by hand: 2 bits over [0, 4] are steps of 1, values floored, the top
    /// clamped to the 4th level.
    #[test]
    fn adc_by_hand() {
        let mut x = [0.0f32, 1.0, 2.0, 3.0, 4.0, 2.5];
        adc(&mut x, 2);
        assert_eq!(x, [0.0, 1.0, 2.0, 3.0, 3.0, 2.0]);
    }

    /// The labels' curve parameters against NeuroSim V2.1's own table (`GetParamA` in
    /// Training_pytorch/utee/wage_quantizer.py: entries for labels 0.01, 0.1, 1, 1.46, 1.75, 9).
    #[test]
    fn nonlinearity_labels_match_neurosims_table() {
        for (label, a) in
            [(0.01, 126.268958), (0.1, 12.625807), (1.0, 1.251653), (1.46, 0.848677), (1.75, 0.702081), (9.0, 0.022810)]
        {
            let got = a_of_label(label) as f64;
            assert!((got / a - 1.0).abs() < 1e-4, "label {label}: A {got}, NeuroSim {a}");
        }
        assert!(curve_of_label(0.0).linear());
        let k = curve_of_label(1.75);
        assert_eq!((k.g(0.0), k.g(1.0)), (0.0, 1.0));
        for x in [0.1f32, 0.5, 0.9] {
            assert!((k.x(k.g(x)) - x).abs() < 1e-5);
            assert!(k.g(x) > x, "potentiation rises fastest at first");
        }
    }

    /// A crossbar read without ADC is the dense product, whatever the on/off ratio and the
    /// sub-array split; with a 2-bit ADC by hand (below).
    #[test]
    fn crossbar_read_is_exact_without_adc_and_by_hand_with_it() {
        let mut rng = Rng::new(1);
        let (n, inp, out) = (3, 7, 4);
        let mut x = vec![0f32; n * inp];
        let mut w = vec![0f32; out * inp];
        rng.fill_normal(&mut x, 1.0);
        rng.fill_uniform(&mut w, -0.5, 0.5);
        let b = [0.1f32, -0.2, 0.3, 0.0];
        let mut want = vec![0f32; n * out];
        crate::nn::dense_forward(&x, n, inp, out, &w, Some(&b), &mut want);
        for (g_min, rows) in [(0.0, 128), (0.1, 3), (0.01, 1)] {
            let m = ReadModel { activation_bits: 0, error_bits: 0, adc_bits: 0, subarray: rows, g_min, ranges: vec![] };
            let mut y = vec![0f32; n * out];
            m.dense_forward(&x, n, inp, out, &w, 0.5, Some(&b), &mut y);
            assert!(close(&y, &want, 1e-5), "g_min {g_min}, rows {rows}: {y:?} vs {want:?}");
        }
        // w = (1, -1) on r = 1 -> conductances (1, 0); inputs (1, 0) and (0, 1): columns 1 and 0,
        // dummy (w = 0: conductance 1/2) 0.5 and 0.5. A 2-bit ADC over [0, 1] floors 1 to 3/4; the
        // dummies (one value) pass. y = 2 (column - dummy) = 0.5 and -1 (exact: 1 and -1).
        let m = ReadModel { activation_bits: 0, error_bits: 0, adc_bits: 2, subarray: 2, g_min: 0.0, ranges: vec![] };
        let mut y = [0f32; 2];
        m.dense_forward(&[1.0, 0.0, 0.0, 1.0], 2, 2, 1, &[1.0, -1.0], 1.0, None, &mut y);
        assert_eq!(y, [0.5, -1.0]);
    }

    fn net(seed: u64) -> Network {
        crate::nn::arch::Builder::new(Shape::flat(6), Init::Xavier, &mut Rng::new(seed))
            .dense(5, true)
            .act(Activation::Relu)
            .dense(3, true)
            .build()
    }

    fn cfg(text: &str) -> HardwareConfig {
        let c: HardwareConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        c
    }

    /// 2-bit linear devices hold one of 4 levels (-r, -r/3, r/3, r) after programming and after
    /// any update; biases stay digital; a change of exactly one pulse moves one level.
    #[test]
    fn devices_hold_their_levels_and_move_by_whole_pulses() {
        let mut n = net(0);
        let c = cfg("weight_bits = 2");
        let mut d = Device::new(&c, &mut n, &mut Rng::new(5));
        let ranges: Vec<Option<f32>> =
            (0..n.params.len()).map(|i| d.cells.iter().find(|c| c.index == i).map(|c| c.range)).collect();
        let levels = |n: &Network| {
            for (i, p) in n.params.iter().enumerate() {
                let r = ranges[i];
                match r {
                    Some(r) => assert!(
                        p.data
                            .iter()
                            .all(|w| [-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0].iter().any(|l| (w / r - l).abs() < 1e-5)),
                        "{}: {:?}",
                        p.name,
                        p.data
                    ),
                    None => assert!(p.data.iter().all(|b| *b == 0.0), "biases untouched (zero at init)"),
                }
            }
        };
        levels(&n);
        let mut rng = Rng::new(9);
        for _ in 0..5 {
            d.before_update(&n);
            for p in n.params.iter_mut() {
                for w in p.data.iter_mut() {
                    *w += 0.1 * rng.normal();
                }
            }
            d.after_update(&mut n, None);
            for (i, p) in n.params.iter_mut().enumerate() {
                if ranges[i].is_none() {
                    p.data.fill(0.0);
                }
            }
            levels(&n);
        }
        // One pulse exactly: from -r/3 up by 2r/3 lands on r/3 (stochastic rounding of a whole
        // number is that number).
        let (w, r) = (d.cells[0].index, d.cells[0].range);
        n.params[w].data[0] = -r / 3.0;
        d.before_update(&n);
        n.params[w].data[0] = r / 3.0;
        d.after_update(&mut n, None);
        assert!((n.params[w].data[0] - r / 3.0).abs() < 1e-6);
    }

    /// An update counts for the parameters it was for: an optimiser step's selection (a frozen
    /// layer's weights take none), or a rule's own change for the weights it moved.
    #[test]
    fn updates_count_the_parameters_updated() {
        let mut n = net(0);
        let mut d = Device::new(&cfg("weight_bits = 4"), &mut n, &mut Rng::new(5));
        let (w0, w1) = (d.cells[0].index, d.cells[1].index);
        d.before_update(&n);
        d.after_update(&mut n, Some(&|i| i == w1));
        d.before_update(&n);
        n.params[w0].data[0] += 1.0;
        d.after_update(&mut n, None);
        d.before_update(&n);
        d.after_update(&mut n, None);
        let p = d.take_pulses();
        let of = |i: usize| p.iter().find(|(j, _)| *j == i).unwrap().1.updates;
        assert_eq!((of(w0), of(w1)), (1, 1));
    }

    /// The gradient quantiser (its uniforms now drawn before its arithmetic) against the plain
    /// loop it replaced (each uniform drawn inside the loop), and the device writes on the CPU's
    /// widest path against their baseline path (the code as it was compiled before `wide_fn!`;
    /// uniforms interleaved with cycle-to-cycle variation's normals): the same bits, the same
    /// pulse counts and the generator left in the same state.
    #[test]
    fn vectorised_quantiser_and_writes_match_the_plain_loops() {
        let mut rng = Rng::new(11);
        let x: Vec<f32> = (0..1037).map(|_| 0.3 * rng.normal()).collect();
        for bits in [3, 8] {
            let (mut a, mut b) = (x.clone(), x.clone());
            let (mut ra, mut rb) = (Rng::new(4), Rng::new(4));
            quantize_gradient(&mut a, bits, &mut ra);
            let s = shift(b.iter().fold(0f32, |m, v| m.max(v.abs())));
            let q = 2f32.powi(bits as i32 - 1);
            for v in b.iter_mut() {
                *v = (*v / s * q + rb.uniform()).floor() / q * s;
            }
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{bits} bits");
            assert_eq!(ra.next_u64(), rb.next_u64());
        }
        let r = 0.7f32;
        let before: Vec<f32> = x.iter().map(|v| v.clamp(-r, r)).collect();
        let after: Vec<f32> =
            before.iter().enumerate().map(|(j, v)| if j % 7 == 0 { *v } else { v + 0.05 * rng.normal() }).collect();
        for (up, down, c2c, bits) in [(0.0, 0.0, 0.0, 8), (2.4, -4.88, 0.0, 2), (1.0, 1.0, 0.02, 4), (0.0, 0.0, 0.0, 0)]
        {
            let (ltp, ltd) = ([curve_of_label(up)], [curve_of_label(down)]);
            let steps = level_steps(bits);
            let nonlinear = !ltp[0].linear() || !ltd[0].linear();
            let p = Pulse { r, steps, c2c, skip_in_range: steps == 0.0 && c2c == 0.0 && !nonlinear };
            let (mut a, mut b) = (after.clone(), after.clone());
            let (mut ma, mut mb) = (vec![0u32; a.len()], vec![0u32; a.len()]);
            let (mut ra, mut rb) = (Rng::new(9), Rng::new(9));
            write_pulses(&mut a, &before, &mut ma, &p, &ltp, &ltd, &mut ra);
            crate::linalg::on_baseline(|| write_pulses(&mut b, &before, &mut mb, &p, &ltp, &ltd, &mut rb));
            let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same && ma == mb, "curves {up} / {down}, c2c {c2c}, {bits} bits");
            assert_eq!(ra.next_u64(), rb.next_u64());
        }
    }

    /// The block-wise comparison and pulse counts give what the plain slice comparison and
    /// loop give: a difference anywhere (a block, the tail), -0 against 0, NaNs, lengths.
    #[test]
    fn blockwise_comparison_and_counts_match_the_plain_loops() {
        let mut rng = Rng::new(6);
        let a: Vec<f32> = (0..1037).map(|_| rng.normal()).collect();
        assert!(same_values(&a, &a.clone()) && same_values(&[], &[]));
        for at in [0, 15, 16, 500, 1023, 1024, 1036] {
            let mut b = a.clone();
            b[at] += 1.0;
            assert!(!same_values(&a, &b) && !same_values(&b, &a), "difference at {at}");
            b[at] = -0.0;
            let mut z = a.clone();
            z[at] = 0.0;
            assert_eq!(same_values(&z, &b), z == b, "zeros at {at}");
            b[at] = f32::NAN;
            assert_eq!(same_values(&b, &b.clone()), b == b.clone(), "NaN at {at}");
        }
        assert!(!same_values(&a, &a[1..]));
        let moves: Vec<u32> = (0..1037).map(|_| rng.below(300) as u32).collect();
        for inp in [1, 7, 16, 128, 2000] {
            let mut rows = vec![0u32; inp];
            let total = pulse_counts(&moves, &mut rows);
            let mut want = vec![0u32; inp];
            for (j, &k) in moves.iter().enumerate() {
                want[j % inp] = want[j % inp].max(k);
            }
            assert_eq!((total, rows), (moves.iter().map(|&k| k as u64).sum(), want), "rows of {inp}");
        }
    }

    #[test]
    fn level_table_and_lane_maximum_agree_with_the_plain_arithmetic() {
        // Device::program's table of a shared curve's levels gives the bits Curve::g gives,
        // and max_abs (16 lanes) the in-order fold's value, NaNs and zeros included.
        let mut rng = Rng::new(5);
        let mut x: Vec<f32> = (0..1003).map(|_| 3.0 * rng.normal()).collect();
        x[7] = f32::NAN;
        x[500] = -0.0;
        assert_eq!(max_abs(&x), x.iter().fold(0f32, |m, v| m.max(v.abs())));
        assert_eq!(max_abs(&[]), 0.0);
        for label in [0.0, 1.0, 2.4, -4.88] {
            let k = curve_of_label(label);
            let steps = 15.0;
            let table: Vec<f32> = (0..=15).map(|l| k.g(l as f32 / steps)).collect();
            let (mut a, mut b) = (x.clone(), x.clone());
            set_levels(&mut a, &[k], &table, 2.0, steps);
            set_levels(&mut b, &[k], &[], 2.0, steps);
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "label {label}");
            assert!(a.iter().enumerate().all(|(j, v)| j == 7 || v.abs() <= 2.0));
        }
    }

    /// A nonlinear device's first potentiation pulse from G_min climbs along its curve.
    #[test]
    fn a_nonlinear_device_climbs_its_curve() {
        let mut n = net(0);
        let c = cfg("weight_bits = 2\nnonlinearity_ltp = 1.75\nnonlinearity_ltd = -1.46");
        let mut d = Device::new(&c, &mut n, &mut Rng::new(5));
        let (w, r) = (d.cells[0].index, d.cells[0].range);
        n.params[w].data[0] = -r;
        d.before_update(&n);
        n.params[w].data[0] = -r + 2.0 * r / 3.0; // one pulse
        d.after_update(&mut n, None);
        let g = curve_of_label(1.75).g(1.0 / 3.0);
        assert!((n.params[w].data[0] - r * (2.0 * g - 1.0)).abs() < 1e-5);
        assert!(g > 1.0 / 3.0 + 0.05, "the curve rises faster than the linear device: {g}");
        // And one depression pulse from G_max falls along the depression curve.
        n.params[w].data[1] = r;
        d.before_update(&n);
        n.params[w].data[1] = r - 2.0 * r / 3.0;
        d.after_update(&mut n, None);
        let g = 1.0 - curve_of_label(1.46).g(1.0 / 3.0);
        assert!((n.params[w].data[1] - r * (2.0 * g - 1.0)).abs() < 1e-5);
    }

    /// Variation and faults are drawn from the seed: the same seed gives the same devices and
    /// the same writes, another seed others; stuck devices never move.
    #[test]
    fn variation_is_reproducible_for_a_seed_and_stuck_devices_stay() {
        let c =
            cfg("weight_bits = 4\nnonlinearity_ltp = 1\nnonlinearity_ltd = 1\nd2d = 0.5\nc2c = 0.01\nstuck_at = 0.2");
        let run = |seed: u64| {
            let mut n = net(0);
            let mut d = Device::new(&c, &mut n, &mut Rng::new(seed));
            let stuck: Vec<(usize, f32)> = d.cells[0].stuck.clone();
            let mut rng = Rng::new(1);
            for _ in 0..3 {
                d.before_update(&n);
                for w in n.params[0].data.iter_mut() {
                    *w += 0.05 * rng.normal();
                }
                d.after_update(&mut n, None);
            }
            let r = d.cells[0].range;
            for &(j, g) in &stuck {
                assert_eq!(n.params[0].data[j], r * (2.0 * g - 1.0));
            }
            (n.params[0].data.clone(), stuck.len())
        };
        let (a, stuck) = run(7);
        assert!(stuck > 0 && stuck < 30, "{stuck} of 30 stuck at 0.2");
        assert_eq!(a, run(7).0);
        assert_ne!(a, run(8).0);
    }

    /// The forward pass of a network with a read model quantises its layers' inputs and reads
    /// its dense layers through the ADC; with every bit count 0 it is the exact pass.
    #[test]
    fn a_networks_read_model_acts_in_its_forward_pass() {
        let mut n = net(2);
        let mut ws = Workspace::default();
        n.prepare(&mut ws, 4);
        Rng::new(4).fill_normal(ws.input_mut(), 1.0);
        let x0 = ws.acts[0].clone();
        n.forward(&mut ws, false, &mut Rng::new(0));
        let exact = ws.output().to_vec();
        let c = cfg("activation_bits = 3\nadc_bits = 3\non_off_ratio = 10");
        n.hw = read_model(&n, &c).map(std::sync::Arc::new);
        ws.acts[0].copy_from_slice(&x0);
        n.forward(&mut ws, false, &mut Rng::new(0));
        let hw = ws.output().to_vec();
        assert!(!close(&hw, &exact, 1e-3), "3-bit reads changed nothing");
        let distinct: std::collections::BTreeSet<u32> = ws.acts[0][..6].iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() <= 7, "a 3-bit signed row has at most 7 levels: {:?}", &ws.acts[0][..6]);
        // Fine enough, the reads approach the exact pass (the floor of a 16-bit ADC is a bias
        // of at most a step per sub-array read).
        n.hw = read_model(&n, &cfg("activation_bits = 16\nadc_bits = 16\non_off_ratio = 10")).map(std::sync::Arc::new);
        ws.acts[0].copy_from_slice(&x0);
        n.forward(&mut ws, false, &mut Rng::new(0));
        assert!(close(ws.output(), &exact, 2e-3), "{:?} vs {exact:?}", ws.output());
        assert!(read_model(&n, &cfg("error_bits = 0")).is_none());
    }

    #[test]
    fn presets_load_and_bad_settings_are_refused() {
        for (name, _) in PRESETS {
            HardwareConfig::named(name).unwrap();
        }
        assert!(HardwareConfig::named("ideal").unwrap().is_ideal());
        // Every non-ideality on its own makes a condition non-ideal.
        for one in [
            "weight_bits = 4",
            "activation_bits = 4",
            "error_bits = 4",
            "gradient_bits = 4",
            "adc_bits = 4",
            "nonlinearity_ltp = 1",
            "d2d = 0.5",
            "c2c = 0.01",
            "stuck_at = 0.1",
        ] {
            let c: HardwareConfig = toml::from_str(one).unwrap();
            assert!(!c.is_ideal(), "{one}");
        }
        assert!(!HardwareConfig::named("neurosim").unwrap().is_ideal());
        let e = HardwareConfig::named("nosuch").unwrap_err();
        assert!(e.contains("neurosim") && e.contains("nosuch"), "{e}");
        for (bad, key) in [
            ("weight_bits = 1", "weight_bits"),
            ("on_off_ratio = 0.5", "on_off_ratio"),
            ("c2c = 2", "c2c"),
            ("subarray = 0", "subarray"),
        ] {
            let c: HardwareConfig = toml::from_str(bad).unwrap();
            assert!(c.validate().unwrap_err().contains(key), "{bad}");
        }
        assert!(toml::from_str::<HardwareConfig>("weight_bit = 4").is_err(), "unknown keys are errors");
    }
}
