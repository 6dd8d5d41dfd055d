//! IDE-FSNN (Xiao, Meng, Zhang, Wang & Lin 2021, NeurIPS, "Training feedback spiking neural
//! networks by implicit differentiation on the equilibrium state"; `pkuxmq/IDE-FSNN`,
//! `models/snn_ide_fc.py`, `modules/snn_modules.py`, `modules/snnide_module.py`, read for this
//! file): a feedback spiking layer whose average firing rate settles at the fixed point of a
//! clamped linear map, trained by implicit differentiation there, without backpropagation
//! through time.
//!
//! Network: `mlp:H/bn` as the reference's F-MNIST model: F = dense (bias) -> batch norm, whose
//! output x is the constant input current of H spiking neurons; the network's activation layer is
//! not used; the last dense layer reads the neurons' rate out. The rule adds the feedback weight
//! W_s (H x H, parameter `ide.ws`, a weight: trained, decayed, pruned) and the scalar `ide.g`.
//! Effective feedback: W = clamp(g, -1, 1) W_s / sigma, sigma = u^T W_s v with u, v the
//! persistent power-iteration vectors (one iteration per training step, as the reference's
//! spectral restriction), so ||W|| <= 1.
//!
//! Forward (T = `ide_steps` steps from rest): v <- leak v + W s_{t-1} + x, spike at v >= V_th,
//! reset by subtraction (`nn::spiking::Neuron`; leak 1 is IF); the rate a = sum_t s_t / T (IF) or
//! the leak-weighted sum_t leak^(T-1-t) s_t / sum_k leak^k (LIF). Variational dropout
//! (`ide_dropout`): one mask on x and one on W s per batch, held over the steps.
//!
//! Backward: a is taken as the fixed point a* = f(a*) of f(a) = clamp((m_s (.) W a + m_x (.) x)
//! / V_th, 0, 1) (the same f for IF and LIF, as the reference). With D = 1[0 <= h <= V_th] / V_th
//! at h = m_s (.) W a + m_x (.) x, beta solves beta = J^T beta + dL/da, J = diag(D m_s) W, by
//! fixed-point iteration (at most `ide_iters`, stopped when no entry moves more than `ide_tol`
//! times the largest |dL/da|; ||J|| <= 1.25 / V_th < 1 contracts; the reference uses Broyden's
//! method for the same system). Then delta = D (.) beta: dL/dW = sum_batch (delta m_s) a^T,
//! carried through the spectral scaling to W_s and g; dL/dx = delta m_x goes back through batch
//! norm and F by the network's backward pass; the read-out's gradient is the ordinary one.
//!
//! Deviations from the reference, all small: g starts at 1 (the reference starts it at the
//! initial sigma, about 2, where its clamp passes no gradient until weight decay brings it to 1,
//! about 6 epochs); biolearn's weight decay acts on weight matrices only (the reference's on every
//! parameter); the running batch-norm statistics are updated once per step (the reference's
//! twice); evaluation reuses the power-iteration vectors without iterating.
//!
//! # Shapes
//! x, a, h, beta: N x H (sample-major); W_s: H x H (out x in).

use super::{output_error, Prediction, Rule, Step, StepStats};
use crate::linalg;
use crate::nn::spiking::{self, Neuron};
use crate::nn::{Layer, Network, ParamKind, Workspace};
use crate::rng::Rng;

crate::settings! {
    /// IDE-FSNN's settings (`ide-fsnn`).
    pub struct IdeSettings {
        /// Time steps of the spiking simulation (T).
        pub ide_steps: usize = 5,
        /// Firing threshold V_th.
        pub ide_vth: f32 = 2.0,
        /// Membrane leak per step: 1 is IF, below 1 LIF (the reference's default 0.95).
        pub ide_leak: f32 = 0.95,
        /// Variational dropout on the input current and on the feedback (one mask per batch).
        pub ide_dropout: f32 = 0.2,
        /// Most fixed-point iterations of the implicit backward solve.
        pub ide_iters: usize = 30,
        /// The solve stops when no entry of beta moves more than this times max |dL/da|.
        pub ide_tol: f32 = 1e-5,
    }
    check(s) {
        use super::settings::{count, positive};
        count("ide_steps", s.ide_steps, 10_000)?;
        count("ide_iters", s.ide_iters, 100_000)?;
        positive("ide_vth", s.ide_vth)?;
        positive("ide_tol", s.ide_tol)?;
        if !(s.ide_leak > 0.0 && s.ide_leak <= 1.0) {
            return Err(format!("ide_leak must be in (0, 1] (got {})", s.ide_leak));
        }
        if !(0.0..1.0).contains(&s.ide_dropout) {
            return Err(format!("ide_dropout must be in [0, 1) (got {})", s.ide_dropout));
        }
        Ok(())
    }
}

pub struct IdeFsnn {
    s: IdeSettings,
    /// The workspace slot holding the input current x (after F and batch norm) and the read-out
    /// layer's index (its input slot receives the rate).
    x_slot: usize,
    readout: usize,
    h: usize,
    ws_param: usize,
    g_param: usize,
    /// Power-iteration vectors of W_s.
    u: Vec<f32>,
    v: Vec<f32>,
    /// Effective feedback W and its sigma, scale c = clamp(g).
    w_eff: Vec<f32>,
    sigma: f32,
    mask_x: Vec<f32>,
    mask_s: Vec<f32>,
    x: Vec<f32>,
    rate: Vec<f32>,
    cur: Vec<f32>,
    pot: Vec<f32>,
    spikes: Vec<u8>,
    fb: Vec<f32>,
    d: Vec<f32>,
    beta: Vec<f32>,
    g0: Vec<f32>,
    tmp: Vec<f32>,
    gw: Vec<f32>,
    /// Evaluation passes' spikes since the driver last asked.
    activity: spiking::Activity,
    /// Solver iterations of the last training step (tests, diagnostics).
    pub last_iters: usize,
}

/// A dropout mask's value at i (no mask: 1).
fn ms(m: &[f32], i: usize) -> f32 {
    if m.is_empty() {
        1.0
    } else {
        m[i]
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

impl IdeFsnn {
    pub fn new(net: &mut Network, s: IdeSettings, rng: &mut Rng) -> Result<Self, String> {
        let bad = || {
            "ide-fsnn runs on mlp:H or mlp:H/bn (dense F with bias, optional batch norm, the activation unused, dense read-out)"
                .to_string()
        };
        let layers = &net.layers;
        let (h, mut x_slot) = match layers.first() {
            Some(Layer::Dense { out, b: Some(_), .. }) => (*out, 1),
            _ => return Err(bad()),
        };
        if matches!(layers.get(1), Some(Layer::BatchNorm { .. })) {
            x_slot = 2;
        }
        let mut readout = x_slot;
        while matches!(layers.get(readout), Some(Layer::Act(_)) | Some(Layer::Dropout(_))) {
            readout += 1;
        }
        match layers.get(readout) {
            Some(Layer::Dense { inp, .. }) if *inp == h && readout + 1 == layers.len() => {}
            _ => return Err(bad()),
        }
        // The reference's init: U(-1, 1), each row scaled to unit norm.
        let mut w = vec![0.0; h * h];
        rng.fill_uniform(&mut w, -1.0, 1.0);
        for r in w.chunks_mut(h) {
            normalize(r);
        }
        let ws_param = net.add_param("ide.ws".into(), vec![h, h], w, ParamKind::Weight);
        let g_param = net.add_param("ide.g".into(), vec![1], vec![1.0], ParamKind::Bias);
        let mut u = vec![0.0; h];
        let mut v = vec![0.0; h];
        rng.fill_normal(&mut u, 1.0);
        rng.fill_normal(&mut v, 1.0);
        normalize(&mut u);
        normalize(&mut v);
        Ok(IdeFsnn {
            s,
            x_slot,
            readout,
            h,
            ws_param,
            g_param,
            u,
            v,
            w_eff: Vec::new(),
            sigma: 1.0,
            mask_x: Vec::new(),
            mask_s: Vec::new(),
            x: Vec::new(),
            rate: Vec::new(),
            cur: Vec::new(),
            pot: Vec::new(),
            spikes: Vec::new(),
            fb: Vec::new(),
            d: Vec::new(),
            beta: Vec::new(),
            g0: Vec::new(),
            tmp: Vec::new(),
            gw: Vec::new(),
            activity: spiking::Activity::default(),
            last_iters: 0,
        })
    }

    fn scale(&self, net: &Network) -> f32 {
        net.params[self.g_param].data[0].clamp(-1.0, 1.0)
    }

    /// The effective feedback W = clamp(g) W_s / sigma; `iterate`: one power iteration first.
    fn effective(&mut self, net: &Network, iterate: bool) {
        let h = self.h;
        let w = &net.params[self.ws_param].data;
        if iterate {
            // v = normalize(W_s^T u), u = normalize(W_s v).
            linalg::matmul(1, h, h, &self.u, false, w, false, &mut self.v, false);
            normalize(&mut self.v);
            linalg::matmul(1, h, h, &self.v, false, w, true, &mut self.u, false);
            normalize(&mut self.u);
        }
        self.tmp.resize(h, 0.0);
        linalg::matmul(1, h, h, &self.v, false, w, true, &mut self.tmp, false);
        self.sigma = self.u.iter().zip(&self.tmp).map(|(a, b)| a * b).sum::<f32>().max(1e-12);
        let c = self.scale(net) / self.sigma;
        self.w_eff.clear();
        self.w_eff.extend(w.iter().map(|x| c * x));
    }

    /// Dropout masks for `n` samples (training, p > 0), else none.
    fn masks(&mut self, n: usize, train: bool, rng: &mut Rng) {
        let p = self.s.ide_dropout;
        let len = n * self.h;
        for m in [&mut self.mask_x, &mut self.mask_s] {
            m.clear();
            if train && p > 0.0 {
                m.extend((0..len).map(|_| if rng.uniform() >= p { 1.0 / (1.0 - p) } else { 0.0 }));
            }
        }
    }

    /// The spiking simulation of `n` samples from x (masks drawn): the rate into `self.rate`.
    /// Returns the spikes.
    fn simulate(&mut self, n: usize) -> u64 {
        let h = self.h;
        let len = n * h;
        let neuron = Neuron { decay: self.s.ide_leak, threshold: self.s.ide_vth };
        let leak = self.s.ide_leak;
        self.pot.clear();
        self.pot.resize(len, 0.0);
        self.rate.clear();
        self.rate.resize(len, 0.0);
        self.spikes.clear();
        self.spikes.resize(len, 0);
        self.fb.resize(len, 0.0);
        self.cur.resize(len, 0.0);
        let mut total = 0u64;
        for t in 0..self.s.ide_steps {
            // Current: x, plus the feedback of the last step's spikes (none at the first step).
            self.cur.copy_from_slice(&self.x[..len]);
            if t > 0 {
                for (f, &s) in self.fb.iter_mut().zip(&self.spikes) {
                    *f = s as f32;
                }
                self.tmp.resize(len, 0.0);
                linalg::matmul(n, h, h, &self.fb, false, &self.w_eff, true, &mut self.tmp[..len], false);
                if self.mask_s.is_empty() {
                    linalg::axpy(1.0, &self.tmp[..len], &mut self.cur);
                } else {
                    for ((c, f), m) in self.cur.iter_mut().zip(&self.tmp).zip(&self.mask_s) {
                        *c += f * m;
                    }
                }
            }
            total += neuron.step(&mut self.pot, &self.cur, None, &mut self.spikes) as u64;
            for (a, &s) in self.rate.iter_mut().zip(&self.spikes) {
                *a = leak * *a + s as f32;
            }
        }
        // IF: the mean; LIF: the leak-weighted mean (sum_k leak^k = T for leak 1).
        let norm: f32 = (0..self.s.ide_steps).map(|k| leak.powi(k as i32)).sum();
        self.rate.iter_mut().for_each(|a| *a /= norm);
        total
    }

    /// The rate of the `n` samples: `rate` as given (a fixed point, for tests), else simulated.
    fn rate_of(&mut self, n: usize, rate: Option<&[f32]>) {
        match rate {
            Some(a) => {
                self.rate.clear();
                self.rate.extend_from_slice(&a[..n * self.h]);
            }
            None => {
                self.simulate(n);
            }
        }
    }

    /// The input current x = m_x (.) (batch-norm output) of the `n` samples in `ws`.
    fn input_current(&mut self, ws: &Workspace, n: usize) {
        let len = n * self.h;
        self.x.clear();
        self.x.extend_from_slice(&ws.acts[self.x_slot][..len]);
        if !self.mask_x.is_empty() {
            self.x.iter_mut().zip(&self.mask_x).for_each(|(x, m)| *x *= m);
        }
    }

    /// D = 1[0 <= h <= V_th] / V_th at h = m_s (.) W a + x, and beta solving beta = J^T beta +
    /// g0 (g0 = dL/da of the `n` samples), J = diag(D m_s) W, by fixed-point iteration.
    fn solve(&mut self, n: usize, g0: &[f32]) {
        let (h, len) = (self.h, n * self.h);
        // h = m_s (.) W a + x and D = 1[0 <= h <= V_th] / V_th.
        let vth = self.s.ide_vth;
        self.tmp.resize(len, 0.0);
        linalg::matmul(n, h, h, &self.rate, false, &self.w_eff, true, &mut self.tmp, false);
        self.d.clear();
        for i in 0..len {
            let hv = ms(&self.mask_s, i) * self.tmp[i] + self.x[i];
            self.d.push(if (0.0..=vth).contains(&hv) { 1.0 / vth } else { 0.0 });
        }
        // beta = g0 + J^T beta with J = diag(D m_s) W: J^T beta = (D m_s (.) beta) W per sample
        // (row vectors).
        self.g0.clear();
        self.g0.extend_from_slice(g0);
        let scale = self.g0.iter().fold(0.0f32, |m, g| m.max(g.abs())).max(1e-30);
        self.beta.clone_from(&self.g0);
        self.fb.resize(len, 0.0);
        self.last_iters = 0;
        for _ in 0..self.s.ide_iters {
            for i in 0..len {
                self.fb[i] = self.beta[i] * self.d[i] * ms(&self.mask_s, i);
            }
            linalg::matmul(n, h, h, &self.fb, false, &self.w_eff, false, &mut self.tmp, false);
            let mut moved = 0.0f32;
            for ((b, t), g) in self.beta.iter_mut().zip(&self.tmp).zip(&self.g0) {
                let nb = g + t;
                moved = moved.max((nb - *b).abs());
                *b = nb;
            }
            self.last_iters += 1;
            if moved <= self.s.ide_tol * scale {
                break;
            }
        }
    }

    /// `Rule::input_gradient` with the rate given (`rate`: a fixed point, for tests) or simulated.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn input_gradient_at(
        &mut self,
        net: &mut Network,
        ws: &mut Workspace,
        pg: &mut [Vec<f32>],
        x: &[f32],
        y: &[u32],
        g: &mut [f32],
        rate: Option<&[f32]>,
        loss: crate::nn::AttackLoss,
    ) {
        let n = y.len();
        let (l, len) = (net.num_layers(), n * self.h);
        net.prepare(ws, n);
        ws.input_mut().copy_from_slice(x);
        net.forward(ws, false, &mut Rng::new(0));
        self.mask_x.clear();
        self.mask_s.clear();
        self.input_current(ws, n);
        self.effective(net, false);
        self.rate_of(n, rate);
        ws.acts[self.readout][..len].copy_from_slice(&self.rate);
        net.forward_range(ws, self.readout, l);
        let k = net.output_len();
        let last = ws.acts.len() - 1;
        loss.output_grad(&ws.acts[last][..n * k], y, k, &mut ws.grads[last][..n * k]);
        // Input gradients only: `pg` is scratch.
        crate::nn::without_param_grads(|| net.backward(ws, pg, self.readout, l, None, true));
        let g0 = std::mem::take(&mut ws.grads[self.readout]);
        self.solve(n, &g0[..len]);
        ws.grads[self.readout] = g0;
        let gx = &mut ws.grads[self.x_slot];
        for i in 0..len {
            gx[i] = self.beta[i] * self.d[i];
        }
        crate::nn::without_param_grads(|| net.backward(ws, pg, 0, self.x_slot, None, true));
        g.copy_from_slice(&ws.grads[0][..x.len()]);
    }

    /// Training step with the rate given (`rate`: a fixed point for tests) or simulated.
    pub(crate) fn step_at(&mut self, s: &mut Step, rate: Option<&[f32]>) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let (n, h) = (ws.n, self.h);
        let len = n * h;
        let l = net.num_layers();
        net.forward_layers(ws, 0, self.x_slot, true, rng);
        self.masks(n, true, rng);
        self.input_current(ws, n);
        self.effective(net, rate.is_none());
        self.rate_of(n, rate);
        // Read-out and its gradient; dL/da lands in ws.grads[readout].
        ws.acts[self.readout][..len].copy_from_slice(&self.rate);
        net.forward_layers(ws, self.readout, l, true, rng);
        let stats = output_error(net, ws, y, loss);
        net.backward(ws, grads, self.readout, l, None, true);
        self.solve(n, &ws.grads[self.readout][..len]);
        // delta = D (.) beta: dL/dW = (delta m_s)^T a (H x H, summed over the batch).
        for i in 0..len {
            self.fb[i] = self.beta[i] * self.d[i] * ms(&self.mask_s, i);
        }
        self.gw.resize(h * h, 0.0);
        linalg::matmul(h, h, n, &self.fb, true, &self.rate, false, &mut self.gw, false);
        // Through W = c W_s / sigma (sigma = u^T W_s v, u and v held):
        // dL/dW_s = c / sigma (G - <G, W_s> / sigma u v^T); dL/dg = <G, W_s> / sigma where |g| <= 1.
        let c = self.scale(net);
        let ws_data = &net.params[self.ws_param].data;
        let inner: f32 = self.gw.iter().zip(ws_data).map(|(a, b)| a * b).sum();
        let sg = self.sigma;
        let gws = &mut grads[self.ws_param];
        for i in 0..h {
            for j in 0..h {
                gws[i * h + j] = c / sg * (self.gw[i * h + j] - inner / sg * self.u[i] * self.v[j]);
            }
        }
        let g = net.params[self.g_param].data[0];
        grads[self.g_param][0] = if (-1.0..=1.0).contains(&g) { inner / sg } else { 0.0 };
        // dL/d(batch-norm output) = delta m_x, back through batch norm and F.
        let gx = &mut ws.grads[self.x_slot];
        for i in 0..len {
            gx[i] = self.beta[i] * self.d[i] * ms(&self.mask_x, i);
        }
        net.backward(ws, grads, 0, self.x_slot, None, false);
        stats
    }
}

impl Rule for IdeFsnn {
    fn step(&mut self, s: &mut Step) -> StepStats {
        self.step_at(s, None)
    }

    fn prediction(&self) -> Prediction {
        Prediction::Own
    }

    /// The rate of an evaluation-mode simulation (batch norm's running statistics, no dropout)
    /// through the read-out.
    fn predict(&mut self, net: &mut Network, ws: &mut Workspace) {
        let n = ws.n;
        let l = net.num_layers();
        self.mask_x.clear();
        self.mask_s.clear();
        self.input_current(ws, n);
        self.effective(net, false);
        let spikes = self.simulate(n);
        self.activity.add(spikes, n as u64);
        ws.acts[self.readout][..n * self.h].copy_from_slice(&self.rate);
        net.forward_range(ws, self.readout, l);
    }

    fn take_activity(&mut self) -> Option<(u64, u64)> {
        self.activity.take()
    }

    /// The answer is the read-out of the fixed point a*(x): differentiable in the input by the
    /// same implicit differentiation as training (evaluation mode: batch norm's running
    /// statistics, no dropout).
    fn has_input_gradient(&self) -> bool {
        true
    }

    fn input_gradient(
        &mut self,
        net: &mut Network,
        ws: &mut Workspace,
        pg: &mut [Vec<f32>],
        x: &[f32],
        y: &[u32],
        g: &mut [f32],
        loss: crate::nn::AttackLoss,
    ) {
        self.input_gradient_at(net, ws, pg, x, y, g, None, loss)
    }

    fn tensors(&self) -> Vec<(String, Vec<usize>, &[f32])> {
        vec![("ide.u".into(), vec![self.h], &self.u[..]), ("ide.v".into(), vec![self.h], &self.v[..])]
    }

    fn tensors_mut(&mut self) -> Vec<(String, &mut [f32])> {
        vec![("ide.u".into(), &mut self.u[..]), ("ide.v".into(), &mut self.v[..])]
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "ide-fsnn",
    summary: "IDE-FSNN: a feedback spiking layer (IF / LIF) whose firing rate settles at a fixed point, trained by implicit differentiation there (mlp:H/bn; ide_steps, ide_leak)",
    paper: "Xiao, Meng, Zhang, Wang & Lin 2021, NeurIPS",
    reported: "Fashion-MNIST, 400 feedback neurons, T = 5: 90.04% (IF), 90.07% (LIF)",
    preset: include_str!("../../presets/ide-fsnn.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<IdeSettings>(),
    build: |net, cx, rng| {
        let s: IdeSettings = cx.settings()?;
        Ok(Box::new(IdeFsnn::new(net, s, rng)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Loss, Shape};

    /// The loss of the exact fixed point in f64: x = F x_in + b, W = c W_s / (u^T W_s v),
    /// a* = clamp((W a* + x) / V_th, 0, 1) iterated to convergence, cross-entropy of R a* + r
    /// (batch mean). `p` is every parameter's data.
    fn loss_f64(p: &[Vec<f64>], rule: &IdeFsnn, xin: &[f64], y: &[u32], dims: (usize, usize, usize)) -> (f64, Vec<f64>) {
        let (d, h, k) = dims;
        let n = y.len();
        let (fw, fb, rw, rb, ws, g) = (&p[0], &p[1], &p[2], &p[3], &p[rule.ws_param], p[rule.g_param][0]);
        let (u, v): (Vec<f64>, Vec<f64>) =
            (rule.u.iter().map(|&x| x as f64).collect(), rule.v.iter().map(|&x| x as f64).collect());
        let mut sigma = 0.0;
        for i in 0..h {
            for j in 0..h {
                sigma += u[i] * ws[i * h + j] * v[j];
            }
        }
        let c = g.clamp(-1.0, 1.0) / sigma;
        let vth = rule.s.ide_vth as f64;
        let (mut loss, mut all) = (0.0, Vec::new());
        for s in 0..n {
            let x: Vec<f64> =
                (0..h).map(|i| fb[i] + (0..d).map(|j| fw[i * d + j] * xin[s * d + j]).sum::<f64>()).collect();
            let mut a = vec![0.0; h];
            for _ in 0..400 {
                a = (0..h)
                    .map(|i| ((c * (0..h).map(|j| ws[i * h + j] * a[j]).sum::<f64>() + x[i]) / vth).clamp(0.0, 1.0))
                    .collect();
            }
            let z: Vec<f64> = (0..k).map(|o| rb[o] + (0..h).map(|i| rw[o * h + i] * a[i]).sum::<f64>()).collect();
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            loss += lse - z[y[s] as usize];
            all.extend(a);
        }
        (loss / n as f64, all)
    }

    /// The finite-difference tests' case: 3 inputs, 5 feedback units (V_th 1, no dropout, an
    /// exact solve), 2 classes, 3 samples; a larger input weight (most units strictly inside
    /// (0, V_th)), g inside (-1, 1), converged power-iteration vectors (held fixed, as the
    /// gradient holds them). Returns the net, the rule, x, y, every parameter in f64 and the
    /// exact fixed point.
    #[allow(clippy::type_complexity)]
    fn fd_case() -> (Network, IdeFsnn, Vec<f32>, [u32; 3], Vec<Vec<f64>>, Vec<f64>) {
        let (d, h, k) = DIMS;
        let mut rng = Rng::new(11);
        let mut net = Builder::new(Shape::flat(d), Init::Torch, &mut rng)
            .dense(h, true)
            .act(Activation::Relu)
            .dense(k, true)
            .build();
        let s = IdeSettings { ide_dropout: 0.0, ide_iters: 500, ide_tol: 1e-9, ide_vth: 1.0, ..Default::default() };
        let mut rule = IdeFsnn::new(&mut net, s, &mut rng).unwrap();
        net.params[0].data.iter_mut().for_each(|w| *w *= 2.0);
        net.params[1].data.iter_mut().for_each(|b| *b = 0.4);
        net.params[rule.g_param].data[0] = 0.8;
        for _ in 0..50 {
            rule.effective(&net, true);
        }
        let xin: Vec<f32> = (0..3 * d).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.3).collect();
        let xin64: Vec<f64> = xin.iter().map(|&x| x as f64).collect();
        let y = [0u32, 1, 1];
        let p64: Vec<Vec<f64>> = net.params.iter().map(|p| p.data.iter().map(|&x| x as f64).collect()).collect();
        let (_, a) = loss_f64(&p64, &rule, &xin64, &y, DIMS);
        (net, rule, xin, y, p64, a)
    }

    const DIMS: (usize, usize, usize) = (3, 5, 2);

    /// At the fixed point, the rule's implicit gradient of every parameter (F and its bias, the
    /// feedback W_s through the spectral scaling, g, the read-out) equals the finite-difference
    /// derivative of the loss of the exact fixed point.
    #[test]
    fn implicit_gradient_matches_finite_differences() {
        let (d, h, k) = DIMS;
        let (mut net, mut rule, xin, y, p64, a) = fd_case();
        let xin64: Vec<f64> = xin.iter().map(|&x| x as f64).collect();
        // No unit at a kink of the clamp.
        assert!(a.iter().all(|&a| a > 1e-3 && a < 1.0 - 1e-3 || a == 0.0 || a == 1.0), "{a:?}");
        let inside = a.iter().filter(|&&a| a > 0.0 && a < 1.0).count();
        assert!(inside >= 8, "too few units inside the clamp: {a:?}");
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        let mut ws = Workspace::default();
        net.prepare(&mut ws, 3);
        ws.input_mut().copy_from_slice(&xin);
        let mut grads = net.zero_grads();
        let mut srng = Rng::new(0);
        {
            let mut step = Step::new(&mut net, &mut ws, &y, Loss::Ce, &mut grads, &mut srng);
            rule.step_at(&mut step, Some(&a32));
        }
        assert!(rule.last_iters > 1);
        let eps = 1e-5;
        let mut worst = 0.0f64;
        for (pi, g) in grads.iter().enumerate() {
            for (e, &gv) in g.iter().enumerate() {
                let mut hi = p64.clone();
                hi[pi][e] += eps;
                let mut lo = p64.clone();
                lo[pi][e] -= eps;
                let fd = (loss_f64(&hi, &rule, &xin64, &y, (d, h, k)).0 - loss_f64(&lo, &rule, &xin64, &y, (d, h, k)).0)
                    / (2.0 * eps);
                let err = (gv as f64 - fd).abs() / (fd.abs() + 1e-3);
                worst = worst.max(err);
                assert!(err < 2e-3, "parameter {} [{e}]: implicit {gv} vs finite difference {fd}", net.params[pi].name);
            }
        }
        assert!(worst < 2e-3);
    }

    /// The simulated rate of a feedback IF layer approaches the fixed point as T grows.
    #[test]
    fn simulated_rate_approaches_the_fixed_point() {
        let (d, h, k) = (4, 6, 2);
        let mut rng = Rng::new(5);
        let mut net = Builder::new(Shape::flat(d), Init::Torch, &mut rng)
            .dense(h, true)
            .act(Activation::Relu)
            .dense(k, true)
            .build();
        let s = IdeSettings { ide_dropout: 0.0, ide_leak: 1.0, ide_steps: 2000, ..Default::default() };
        let mut rule = IdeFsnn::new(&mut net, s, &mut rng).unwrap();
        net.params[0].data.iter_mut().for_each(|w| *w *= 4.0);
        rule.effective(&net, true);
        let xin: Vec<f32> = (0..d).map(|i| 0.5 - 0.3 * i as f32).collect();
        let mut ws = Workspace::default();
        net.prepare(&mut ws, 1);
        ws.input_mut().copy_from_slice(&xin);
        net.forward(&mut ws, false, &mut Rng::new(0));
        rule.input_current(&ws, 1);
        rule.simulate(1);
        // The fixed point of f by iteration.
        let vth = rule.s.ide_vth;
        let mut a = vec![0.0f32; h];
        for _ in 0..500 {
            let mut wa = vec![0.0; h];
            linalg::matmul(1, h, h, &a, false, &rule.w_eff, true, &mut wa, false);
            a = (0..h).map(|i| ((wa[i] + rule.x[i]) / vth).clamp(0.0, 1.0)).collect();
        }
        for (r, f) in rule.rate.iter().zip(&a) {
            assert!((r - f).abs() < 5e-3, "rate {:?} vs fixed point {a:?}", rule.rate);
        }
    }

    /// The input gradient the attacks follow equals the finite-difference derivative of the
    /// exact fixed point's loss in the input.
    #[test]
    fn input_gradient_matches_finite_differences() {
        let (d, h, k) = DIMS;
        let (mut net, mut rule, xin, y, p64, a) = fd_case();
        let xin64: Vec<f64> = xin.iter().map(|&x| x as f64).collect();
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        let mut ws = Workspace::default();
        let mut pg = net.zero_grads();
        let mut g = vec![0.0; xin.len()];
        rule.input_gradient_at(&mut net, &mut ws, &mut pg, &xin, &y, &mut g, Some(&a32), crate::nn::AttackLoss::Ce);
        let eps = 1e-5;
        for e in 0..xin.len() {
            let (mut hi, mut lo) = (xin64.clone(), xin64.clone());
            hi[e] += eps;
            lo[e] -= eps;
            let fd = (loss_f64(&p64, &rule, &hi, &y, (d, h, k)).0 - loss_f64(&p64, &rule, &lo, &y, (d, h, k)).0)
                / (2.0 * eps);
            let err = (g[e] as f64 - fd).abs() / (fd.abs() + 1e-3);
            assert!(err < 2e-3, "input {e}: implicit {} vs finite difference {fd}", g[e]);
        }
        assert!(g.iter().any(|v| v.abs() > 1e-3));
    }
}
