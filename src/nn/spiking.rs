//! Spiking neurons: leaky and non-leaky integrate-and-fire populations with reset by
//! subtraction, input spike encodings, presynaptic traces, and event-driven synaptic input.
//!
//! One neuron model serves both spiking rules (desire backpropagation's LIF layers and input
//! neurons, IDE-FSNN's IF and LIF feedback layer), since both papers' code updates a membrane the
//! same way once written with the potential after the reset:
//!
//!   v <- decay * v + I_t;   s_t = [v >= threshold];   v <- v - threshold * s_t
//!
//! (`decay` = 1: IF, no leak). Spike trains are dense `steps x n` arrays of 0/1 bytes, time-major.
//! Synaptic input is event-driven: a spiking input adds its weight row instead of a multiply by a
//! 0/1 vector, input by input, so each row of the transposed weights is read once per sample and
//! only for inputs that spiked at all (`accumulate`).

use crate::rng::Rng;

/// A population's neuron model (see the module doc). `decay` in (0, 1]; 1 is IF.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neuron {
    pub decay: f32,
    pub threshold: f32,
}

impl Neuron {
    /// One time step of a population: `v` the potentials after the last reset, `input` this
    /// step's synaptic input, `spikes` (0/1) written; a neuron with `mask` false never fires
    /// (its potential still integrates). Returns the number of spikes.
    pub fn step(&self, v: &mut [f32], input: &[f32], mask: Option<&[bool]>, spikes: &mut [u8]) -> usize {
        let (d, th) = (self.decay, self.threshold);
        let n = v.len();
        let (input, spikes) = (&input[..n], &mut spikes[..n]);
        let mut count = 0;
        // Branch-free, so the loop vectorises.
        match mask {
            None => {
                for j in 0..n {
                    let u = d * v[j] + input[j];
                    let fire = u >= th;
                    v[j] = u - if fire { th } else { 0.0 };
                    spikes[j] = fire as u8;
                    count += fire as usize;
                }
            }
            Some(m) => {
                let m = &m[..n];
                for j in 0..n {
                    let u = d * v[j] + input[j];
                    let fire = (u >= th) & m[j];
                    v[j] = u - if fire { th } else { 0.0 };
                    spikes[j] = fire as u8;
                    count += fire as usize;
                }
            }
        }
        count
    }

    /// `steps` time steps of a population driven by `current` (`steps x n`, time-major) from
    /// rest (v = 0): the spike train into `spikes` (`steps x n`). Returns the number of spikes.
    pub fn run(&self, current: &[f32], n: usize, mask: Option<&[bool]>, v: &mut Vec<f32>, spikes: &mut [u8]) -> usize {
        v.clear();
        v.resize(n, 0.0);
        let steps = current.len() / n.max(1);
        let mut count = 0;
        for t in 0..steps {
            count += self.step(v, &current[t * n..(t + 1) * n], mask, &mut spikes[t * n..(t + 1) * n]);
        }
        count
    }
}

/// How input values become spike trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Deterministic rate code: each input drives a non-leaky IF neuron with threshold 1 by its
    /// value every step (desire backpropagation's input layer): an input of x fires about
    /// floor(steps * x) times, regularly spaced.
    Rate,
    /// Poisson (Bernoulli per step) code: an input of x fires at each step with probability x.
    Poisson,
}

/// Encode one sample `x` (values read as rates, clamped to [0, 1]) into `spikes` (`steps x n`).
/// `mask` false: the input never fires (input dropout). Returns the number of spikes.
pub fn encode(
    enc: Encoding,
    x: &[f32],
    steps: usize,
    mask: Option<&[bool]>,
    rng: &mut Rng,
    v: &mut Vec<f32>,
    spikes: &mut [u8],
) -> usize {
    let n = x.len();
    let mut count = 0;
    match enc {
        Encoding::Rate => {
            // A non-leaky IF neuron with threshold 1 per input, driven by the clamped value
            // (`v` holds the drives, then the potentials).
            v.clear();
            v.resize(2 * n, 0.0);
            let (drive, pot) = v.split_at_mut(n);
            for (d, x) in drive.iter_mut().zip(x) {
                *d = x.clamp(0.0, 1.0);
            }
            let neuron = Neuron { decay: 1.0, threshold: 1.0 };
            for t in 0..steps {
                count += neuron.step(pot, drive, mask, &mut spikes[t * n..(t + 1) * n]);
            }
        }
        Encoding::Poisson => {
            for t in 0..steps {
                for (j, s) in spikes[t * n..(t + 1) * n].iter_mut().enumerate() {
                    let fire = rng.uniform() < x[j].clamp(0.0, 1.0) && mask.is_none_or(|m| m[j]);
                    *s = fire as u8;
                    count += fire as usize;
                }
            }
        }
    }
    count
}

/// Presynaptic traces of a spike train (`steps x n`): trace_t = decay * trace_{t-1} + s_t from
/// trace_{-1} = 0, into `traces` (`steps x n`).
pub fn traces(spikes: &[u8], n: usize, decay: f32, traces: &mut [f32]) {
    let steps = spikes.len() / n.max(1);
    for t in 0..steps {
        for j in 0..n {
            let prev = if t == 0 { 0.0 } else { traces[(t - 1) * n + j] };
            traces[t * n + j] = decay * prev + spikes[t * n + j] as f32;
        }
    }
}

/// Spikes and samples of a spiking rule's evaluation passes since last taken (`Rule::take_activity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub spikes: u64,
    pub samples: u64,
}

impl Activity {
    pub fn add(&mut self, spikes: u64, samples: u64) {
        self.spikes += spikes;
        self.samples += samples;
    }

    /// The counts so far, then zeroed.
    pub fn take(&mut self) -> Option<(u64, u64)> {
        let a = std::mem::take(self);
        Some((a.spikes, a.samples))
    }
}

/// A spike train's events, input-major: input i spiked at `times[start[i]..start[i + 1]]`.
#[derive(Clone, Debug, Default)]
pub struct Events {
    pub start: Vec<u32>,
    pub times: Vec<u16>,
}

impl Events {
    /// The events of `spikes` (`steps x n`, time-major).
    pub fn of(&mut self, spikes: &[u8], n: usize) {
        let steps = spikes.len() / n.max(1);
        self.start.clear();
        self.times.clear();
        self.start.push(0);
        for i in 0..n {
            for t in 0..steps {
                if spikes[t * n + i] != 0 {
                    self.times.push(t as u16);
                }
            }
            self.start.push(self.times.len() as u32);
        }
    }
}

/// Outputs per block of the event-driven accumulation: a block of `steps` rows of currents stays
/// in the first-level cache while every input's events add into it.
const BLOCK: usize = 256;

/// Event-driven synaptic input: for every step t, `current[t] += scale * sum over inputs i that
/// spiked at t of wt[i]`, with `wt` the transposed weights (`n_in x n_out`, row i = input i's
/// outgoing weights) and `spikes` the input train (`steps x n_in`; `ev` is scratch for its
/// events). Blocked over the outputs, input-major within a block: each block of each row of
/// `wt` is read once, and only if its input spiked. Returns the synaptic events (spikes x n_out
/// additions, the count an event-driven chip pays for).
#[allow(clippy::too_many_arguments)]
pub fn accumulate(
    wt: &[f32],
    n_out: usize,
    spikes: &[u8],
    n_in: usize,
    scale: f32,
    ev: &mut Events,
    current: &mut [f32],
) -> u64 {
    ev.of(spikes, n_in);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            unsafe { accumulate_avx512(wt, n_out, ev, scale, current) };
            return ev.times.len() as u64 * n_out as u64;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            unsafe { accumulate_avx2(wt, n_out, ev, scale, current) };
            return ev.times.len() as u64 * n_out as u64;
        }
    }
    accumulate_generic(wt, n_out, ev, scale, current);
    ev.times.len() as u64 * n_out as u64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_avx512(wt: &[f32], n_out: usize, ev: &Events, scale: f32, current: &mut [f32]) {
    accumulate_generic(wt, n_out, ev, scale, current)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn accumulate_avx2(wt: &[f32], n_out: usize, ev: &Events, scale: f32, current: &mut [f32]) {
    accumulate_generic(wt, n_out, ev, scale, current)
}

/// Separate multiply and add (no fused multiply-add): every path gives the same bits.
#[inline(always)]
fn accumulate_generic(wt: &[f32], n_out: usize, ev: &Events, scale: f32, current: &mut [f32]) {
    let n_in = ev.start.len() - 1;
    for b0 in (0..n_out).step_by(BLOCK) {
        let b1 = (b0 + BLOCK).min(n_out);
        for i in 0..n_in {
            let times = &ev.times[ev.start[i] as usize..ev.start[i + 1] as usize];
            if times.is_empty() {
                continue;
            }
            let row = &wt[i * n_out + b0..i * n_out + b1];
            for &t in times {
                let c = &mut current[t as usize * n_out + b0..t as usize * n_out + b1];
                for (c, w) in c.iter_mut().zip(row) {
                    *c += scale * w;
                }
            }
        }
    }
}

/// `w` (`rows x cols`, row-major) transposed into `wt` (`cols x rows`).
pub fn transpose(w: &[f32], rows: usize, cols: usize, wt: &mut Vec<f32>) {
    wt.clear();
    wt.resize(rows * cols, 0.0);
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    wt[c * rows + r] = w[r * cols + c];
                }
            }
        }
    }
}

/// Spike counts per neuron of a train (`steps x n`) into `counts` (length n).
pub fn counts(spikes: &[u8], n: usize, counts: &mut [u32]) {
    counts[..n].fill(0);
    for row in spikes.chunks_exact(n) {
        for (c, &s) in counts.iter_mut().zip(row) {
            *c += s as u32;
        }
    }
}

/// Pair-based spike-timing-dependent plasticity with traces: the presynaptic trace x_i(t) =
/// decay x_i(t-1) + pre_i(t), the postsynaptic y_j(t) = decay y_j(t-1) + post_j(t). At each step:
/// depression at every pre spike, w_ji -= a_minus y_j(t-1) (post spikes strictly before), then
/// potentiation at every post spike, w_ji += a_plus x_i(t) (pre spikes up to and including this
/// step). Summed over the train and added to the weights at its end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stdp {
    pub a_plus: f32,
    pub a_minus: f32,
    pub decay: f32,
}

/// Scratch for `Stdp::apply` (reused between samples).
#[derive(Clone, Debug, Default)]
pub struct StdpScratch {
    x: Vec<f32>,
    pre: Vec<f32>,
    /// The rows (postsynaptic neurons) the last `apply` changed.
    pub rows: Vec<usize>,
}

impl Stdp {
    /// Add the change of one train (`pre`: steps x n_in, `post`: steps x n_post) to `w`
    /// (n_post x n_in). Only a neuron that fired has a post spike or a nonzero trace, so only its
    /// row changes: those rows are left in `sc.rows`.
    pub fn apply(&self, pre: &[u8], n_in: usize, post: &[u8], n_post: usize, sc: &mut StdpScratch, w: &mut [f32]) {
        let steps = pre.len() / n_in.max(1);
        sc.x.resize(steps * n_in, 0.0);
        traces(pre, n_in, self.decay, &mut sc.x);
        sc.pre.clear();
        sc.pre.extend(pre.iter().map(|&s| s as f32));
        sc.rows.clear();
        for j in 0..n_post {
            if !(0..steps).any(|t| post[t * n_post + j] != 0) {
                continue;
            }
            sc.rows.push(j);
            let row = &mut w[j * n_in..(j + 1) * n_in];
            let mut y = 0.0f32;
            for t in 0..steps {
                if y > 0.0 && self.a_minus != 0.0 {
                    crate::linalg::axpy(-self.a_minus * y, &sc.pre[t * n_in..(t + 1) * n_in], row);
                }
                let fired = post[t * n_post + j] != 0;
                y = self.decay * y + fired as u8 as f32;
                if fired && self.a_plus != 0.0 {
                    crate::linalg::axpy(self.a_plus, &sc.x[t * n_in..(t + 1) * n_in], row);
                }
            }
        }
    }

    /// Clamp a row of weights to [0, w_max], then scale it to sum to `norm` (Diehl & Cook's
    /// normalisation; a row of zeros stays zero).
    pub fn normalize_row(row: &mut [f32], norm: f32, w_max: f32) {
        row.iter_mut().for_each(|v| *v = v.clamp(0.0, w_max));
        let sum: f32 = row.iter().sum();
        if sum > 0.0 {
            let k = norm / sum;
            row.iter_mut().for_each(|v| *v *= k);
        }
    }

    /// `normalize_row` on every row of a rows x cols matrix.
    pub fn normalize_rows(w: &mut [f32], rows: usize, cols: usize, norm: f32, w_max: f32) {
        for r in w[..rows * cols].chunks_mut(cols) {
            Self::normalize_row(r, norm, w_max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LIF by hand: decay 0.5, threshold 1, inputs 0.8, 0.8, 0.1 for one neuron.
    /// t0: v = 0.8, no spike. t1: v = 0.4 + 0.8 = 1.2 >= 1, spike, v = 0.2.
    /// t2: v = 0.1 + 0.1 = 0.2, no spike.
    #[test]
    fn lif_three_steps_by_hand() {
        let n = Neuron { decay: 0.5, threshold: 1.0 };
        let mut v = Vec::new();
        let mut s = vec![9u8; 3];
        let count = n.run(&[0.8, 0.8, 0.1], 1, None, &mut v, &mut s);
        assert_eq!(s, vec![0, 1, 0]);
        assert_eq!(count, 1);
        assert!((v[0] - 0.2).abs() < 1e-6, "{}", v[0]);
        // The same with a second neuron driven hard enough to fire every step (reset by
        // subtraction keeps the excess: 1.5 -> 0.5; 0.25 + 1.5 = 1.75 -> 0.75; 0.375 + 1.5 ->
        // 0.875), and the first masked off: it integrates but never fires.
        let mut s = vec![0u8; 6];
        let cur = [0.8, 1.5, 0.8, 1.5, 0.1, 1.5];
        n.run(&cur, 2, Some(&[false, true]), &mut v, &mut s);
        assert_eq!(s, vec![0, 1, 0, 1, 0, 1]);
        assert!((v[0] - (0.5 * (0.5 * 0.8 + 0.8) + 0.1)).abs() < 1e-6);
        assert!((v[1] - 0.875).abs() < 1e-6);
    }

    /// The IF neuron (decay 1) keeps its whole potential.
    #[test]
    fn if_neuron_does_not_leak() {
        let n = Neuron { decay: 1.0, threshold: 2.0 };
        let mut v = Vec::new();
        let mut s = vec![0u8; 3];
        n.run(&[0.9, 0.9, 0.9], 1, None, &mut v, &mut s);
        assert_eq!(s, vec![0, 0, 1]);
        assert!((v[0] - 0.7).abs() < 1e-6);
    }

    #[test]
    fn rate_code_fires_floor_steps_times_x() {
        let mut rng = Rng::new(0);
        let mut v = Vec::new();
        let x = [0.0, 0.25, 0.5, 1.0, 1.7, -0.3];
        let steps = 20;
        let mut s = vec![0u8; steps * x.len()];
        encode(Encoding::Rate, &x, steps, None, &mut rng, &mut v, &mut s);
        let mut c = vec![0u32; x.len()];
        counts(&s, x.len(), &mut c);
        assert_eq!(c, vec![0, 5, 10, 20, 20, 0]);
        // x = 0.5 fires on every second step, starting at the second (0.5, 1.0 -> spike).
        let first: Vec<u8> = (0..4).map(|t| s[t * x.len() + 2]).collect();
        assert_eq!(first, vec![0, 1, 0, 1]);
        // A masked input never fires.
        encode(Encoding::Rate, &x, steps, Some(&[true, true, true, false, true, true]), &mut rng, &mut v, &mut s);
        counts(&s, x.len(), &mut c);
        assert_eq!(c[3], 0);
    }

    #[test]
    fn poisson_code_is_reproducible_and_at_rate() {
        let x = vec![0.3f32; 1000];
        let steps = 50;
        let (mut a, mut b) = (vec![0u8; steps * 1000], vec![0u8; steps * 1000]);
        let mut v = Vec::new();
        let na = encode(Encoding::Poisson, &x, steps, None, &mut Rng::new(7), &mut v, &mut a);
        encode(Encoding::Poisson, &x, steps, None, &mut Rng::new(7), &mut v, &mut b);
        assert_eq!(a, b);
        let rate = na as f64 / (steps * 1000) as f64;
        assert!((rate - 0.3).abs() < 0.01, "{rate}");
    }

    #[test]
    fn traces_by_hand() {
        // One input spiking at t0 and t2, decay 0.75: 1, 0.75, 1.5625.
        let mut tr = vec![0.0; 3];
        traces(&[1, 0, 1], 1, 0.75, &mut tr);
        assert_eq!(tr, vec![1.0, 0.75, 1.5625]);
    }

    /// Event-driven input equals the dense product of the 0/1 spike matrix with W^T.
    #[test]
    fn events_equal_dense_product() {
        let mut rng = Rng::new(3);
        let (n_in, n_out, steps) = (7, 5, 4);
        let mut w = vec![0.0; n_out * n_in];
        rng.fill_normal(&mut w, 1.0);
        let spikes: Vec<u8> = (0..steps * n_in).map(|_| (rng.uniform() < 0.4) as u8).collect();
        let mut wt = Vec::new();
        transpose(&w, n_out, n_in, &mut wt);
        let mut cur = vec![0.0; steps * n_out];
        let events = accumulate(&wt, n_out, &spikes, n_in, 2.0, &mut Events::default(), &mut cur);
        let nspikes: u64 = spikes.iter().map(|&s| s as u64).sum();
        assert_eq!(events, nspikes * n_out as u64);
        for t in 0..steps {
            for j in 0..n_out {
                let dense: f32 = (0..n_in).map(|i| 2.0 * w[j * n_in + i] * spikes[t * n_in + i] as f32).sum();
                assert!((cur[t * n_out + j] - dense).abs() < 1e-5);
            }
        }
    }

    /// Pre at t0, post at t2 (decay 0.5, a+ 0.1): potentiation a+ x(2) = 0.1 * 0.25; no
    /// depression (no post spike before the pre spike).
    #[test]
    fn stdp_potentiates_pre_before_post() {
        let stdp = Stdp { a_plus: 0.1, a_minus: 0.2, decay: 0.5 };
        let mut w = vec![0.5];
        let mut sc = StdpScratch::default();
        stdp.apply(&[1, 0, 0], 1, &[0, 0, 1], 1, &mut sc, &mut w);
        assert!((w[0] - (0.5 + 0.025)).abs() < 1e-7, "{}", w[0]);
        assert_eq!(sc.rows, vec![0]);
        // A pre and a post spike in the same step count as causal: + a+ x(0) = 0.1.
        let mut w = vec![0.5];
        stdp.apply(&[1], 1, &[1], 1, &mut sc, &mut w);
        assert!((w[0] - 0.6).abs() < 1e-7);
    }

    /// Post at t0, pre at t2 (decay 0.5, a- 0.2): depression a- y(1) = 0.2 * 0.5; no
    /// potentiation (the post spike saw no presynaptic trace). A neuron that never fires is
    /// not touched.
    #[test]
    fn stdp_depresses_post_before_pre() {
        let stdp = Stdp { a_plus: 0.1, a_minus: 0.2, decay: 0.5 };
        // Two postsynaptic neurons: the first fires at t0, the second never.
        let mut w = vec![0.5, 0.5];
        let mut sc = StdpScratch::default();
        stdp.apply(&[0, 0, 1], 1, &[1, 0, 0, 0, 0, 0], 2, &mut sc, &mut w);
        assert!((w[0] - (0.5 - 0.1)).abs() < 1e-7, "{}", w[0]);
        assert_eq!(w[1], 0.5);
        assert_eq!(sc.rows, vec![0]);
    }

    #[test]
    fn stdp_normalisation_clamps_then_scales() {
        let mut row = vec![-1.0, 0.5, 3.0];
        Stdp::normalize_row(&mut row, 3.0, 2.0);
        // Clamped to [0, 0.5, 2], sum 2.5, scaled by 1.2.
        assert_eq!(row, vec![0.0, 0.6, 2.4]);
    }
}
