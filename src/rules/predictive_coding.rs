//! Supervised predictive coding (Whittington & Bogacz 2017; PCX, `pcx/predictive_coding`), with
//! its variants: the fixed-prediction assumption (Millidge et al. 2022) and a nudged output.
//!
//! Value nodes x_k sit at the output of every weight layer (before its nonlinearity); node K is
//! the network's output. Each node is predicted from the one below through the layers between
//! them (activation, pooling, then the next weight layer): mu_k = g_k(x_{k-1}), mu_0 = g_0(input).
//!
//!   energy   F = sum_k 1/2 ||e_k||^2,  e_k = x_k - mu_k            (Gaussian energies; eq. 2)
//!   output   x_K clamped to the target: e_K = y - mu_K, or with the categorical energy
//!            (`--pc-energy ce`, Pinchetti et al. 2022) e_K = onehot(y) - softmax(mu_K);
//!            with a nudge beta < 1 the target is mu_K + beta (y - mu_K) (Gaussian), the
//!            output energy beta x CE (categorical): e_K = beta (onehot(y) - softmax(mu_K))
//!   inference x_k <- x_k - gamma (e_k - J_{k+1}^T e_{k+1})          (SGD with momentum), at most
//!             T steps (`pc_steps`); with a tolerance (`pc_tol` > 0) it stops as soon as a step
//!             changes the energy by at most tol x the relaxation's change so far (the steps
//!             used are reported per epoch)
//!   learning  dW_k = -dF/dW_k at the relaxed nodes / beta = -e_k (x) input of W_k / beta (local);
//!             dividing by the nudge keeps the update at BP's scale as beta -> 0 (the
//!             infinitesimal-inference limit, Millidge et al. 2022), so the learning rate means the
//!             same for every beta
//!
//! A variational autoencoder (`vae:`; Pinchetti et al. 2022's PC VAE): the output node is
//! Bernoulli per pixel (`pc_energy = ce`: beta x the cross-entropy of sigmoid(mu_K) against the
//! pixel, e_K = beta (t - sigmoid(mu_K))), and the latent's KL divergence from its prior is an
//! energy term of the node that holds the posterior's mean and log-variance, beta x KL(x_k); the
//! reparameterisation's eps is drawn once per batch (the feed-forward pass) and kept while the
//! nodes relax. So F = sum_k 1/2 ||e_k||^2 + beta (BCE + KL), whose beta -> 0 / fixed-prediction
//! limit is BP's gradient of the negative ELBO (tested).
//!
//! J_{k+1}^T e_{k+1} and dF/dW_k are computed by the network's own backward pass restricted to
//! one block (the chain rule inside a block is local: the activation's derivative and the
//! weight's transpose at that synapse), so the rule runs on MLPs and conv nets alike.
//!
//! Fixed-prediction assumption (`pc-fpa`): predictions and Jacobians stay at their feed-forward
//! values during inference. With gamma = 1 and T >= number of hidden nodes the errors are then
//! exactly backprop's deltas, and the update is exactly BP's gradient (tested).
//!
//! Incremental PC (`ipc`, Salvatori et al. 2024, "A stable, fast, and fully automatic learning
//! algorithm for predictive coding networks"): the weights take an optimiser step at every
//! inference step, from the errors of that step (x and W descend the same energy together),
//! so a batch makes T weight steps and no separate learning phase.
//!
//! Reported per step (`PcStats`): energy at the feed-forward initialisation and after relaxation.
//!
//! # Shapes
//! x_k, mu_k, e_k: N x (size of weight layer k's output).

use super::{forward_with_error, Rule, Step, StepStats, Updater};
use crate::nn::{loss::Loss, Layer, Network, Workspace};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Energy {
    /// 1/2 ||y - mu_K||^2 at the output.
    Gaussian,
    /// Cross-entropy of softmax(mu_K) against the label (a categorical output node).
    Ce,
}

#[derive(Clone, Debug)]
pub struct PcConfig {
    /// Inference steps per batch.
    pub steps: usize,
    /// State learning rate and momentum.
    pub gamma: f32,
    pub momentum: f32,
    /// Hold predictions at their feed-forward values (fixed-prediction assumption).
    pub fixed_prediction: bool,
    pub energy: Energy,
    /// Output target = mu_K + beta (y - mu_K); 1 clamps the output to the label.
    pub beta: f32,
    /// Incremental PC: a weight step (the driver's optimiser) at every inference step, from
    /// the same errors as the state step, instead of one after relaxation.
    pub incremental: bool,
    /// Stop inference once a step changes the energy by at most `tol` times the relaxation's
    /// change so far (0: always `steps` steps).
    pub tol: f32,
    /// Curvature-limited inference (0: off): before relaxing, this many power iterations
    /// estimate the largest eigenvalue lambda of the energy's Hessian in the hidden nodes at the
    /// feed-forward nodes (Hessian-vector products by finite differences of the energy's
    /// gradient), and the batch's state rate is min(gamma, 1 / lambda).
    pub curvature_iters: usize,
    /// Curvature-limited inference per node (a rate per value node from its own block of the
    /// Hessian) instead of one rate for all.
    pub curvature_per_node: bool,
    /// Monotone inference: a state step that raises the energy is undone, every node's rate
    /// halved and the momentum dropped, so the energy never rises along the relaxation (the
    /// rejected step counts toward `steps`). Not with incremental PC (its weights move too).
    pub backtrack: bool,
    /// With `backtrack`: after a step that lowered the energy every node's rate grows by this
    /// factor, up to its starting rate (1: a halved rate stays halved for the batch).
    pub backtrack_regrow: f32,
}

impl Default for PcConfig {
    /// PCX's F-MNIST MLP settings: T = 5, state SGD lr 0.026 (here 0.1 per sample with the
    /// batch-mean energy scaled away), momentum 0.1.
    fn default() -> Self {
        PcConfig {
            steps: 5,
            gamma: 0.1,
            momentum: 0.1,
            fixed_prediction: false,
            energy: Energy::Gaussian,
            beta: 1.0,
            incremental: false,
            tol: 0.0,
            curvature_iters: 0,
            curvature_per_node: false,
            backtrack: false,
            backtrack_regrow: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PcStats {
    pub energy_start: f64,
    pub energy_end: f64,
    pub steps: usize,
    /// The state rate the last batch relaxed at (gamma, or 1 / lambda when curvature-limited
    /// inference found a larger curvature).
    pub gamma: f32,
    /// The curvature estimate lambda of the last batch (0 when not estimated).
    pub curvature: f64,
    /// Steps undone in the last batch (monotone inference, `backtrack`).
    pub backtracks: usize,
}

pub struct PredictiveCoding {
    pub cfg: PcConfig,
    /// Node positions in the activation list: pos[k] = index into ws.acts of node k.
    pos: Vec<usize>,
    x: Vec<Vec<f32>>,
    mu: Vec<Vec<f32>>,
    vel: Vec<Vec<f32>>,
    /// -J^T e of the node above, per hidden node.
    back: Vec<Vec<f32>>,
    /// The hidden nodes before the last state step (monotone inference undoes it from here).
    saved: Vec<Vec<f32>>,
    errs: Vec<Vec<f32>>,
    pub last: PcStats,
    /// Energies after each inference step of the last batch (for tests and reports).
    pub trace: Vec<f64>,
    /// The state rate of every hidden node in the last batch (curvature-limited inference; else
    /// gamma for all).
    pub node_rates: Vec<f32>,
    /// The driver's loss of the batch (its output node's distribution: categorical, or a VAE's
    /// Bernoulli pixels).
    loss: Loss,
    /// The first `fresh` blocks' predictions mu_k (and the activations inside them) are those of
    /// the current nodes and weights, so `predict` starts after them: all of them after the
    /// feed-forward pass, block 0 alone once the nodes move (its input is the data), none once
    /// the weights change (incremental PC).
    fresh: usize,
}

impl PredictiveCoding {
    /// The value nodes x_k after the last batch's relaxation (N x node size each; the last is the
    /// output node), for tests and reports.
    pub fn value_nodes(&self) -> &[Vec<f32>] {
        &self.x
    }

    pub fn new(net: &Network, cfg: PcConfig) -> Result<Self, String> {
        if net.layers.iter().any(|l| matches!(l, Layer::BatchNorm { .. } | Layer::Dropout(_))) {
            return Err("predictive coding runs on networks without batch norm or dropout (their batch statistics and masks would change at every inference step)".into());
        }
        let wl = net.weight_layers();
        if wl.is_empty() {
            return Err("predictive coding needs at least one weight layer".into());
        }
        let l = net.num_layers();
        let mut pos: Vec<usize> = wl[..wl.len() - 1].iter().map(|&w| w + 1).collect();
        pos.push(l);
        let k = pos.len();
        Ok(PredictiveCoding {
            cfg,
            pos,
            x: vec![Vec::new(); k],
            mu: vec![Vec::new(); k],
            vel: vec![Vec::new(); k],
            back: vec![Vec::new(); k],
            saved: vec![Vec::new(); k],
            errs: vec![Vec::new(); k],
            last: PcStats::default(),
            trace: Vec::new(),
            node_rates: Vec::new(),
            loss: Loss::Ce,
            fresh: 0,
        })
    }

    fn start(&self, k: usize) -> usize {
        if k == 0 {
            0
        } else {
            self.pos[k - 1]
        }
    }

    /// mu_k for every node from the current x (the input feeds node 0), replaying the
    /// feed-forward pass's randomness (a VAE latent's eps; PC refuses dropout and batch norm).
    /// Blocks whose prediction is still current (`fresh`) are not recomputed: node 0's depends
    /// on the data and the weights alone, so it is computed once per batch (standard PC), and
    /// the first refresh after the feed-forward pass computes nothing.
    fn predict(&mut self, net: &mut Network, ws: &mut Workspace) {
        for k in self.fresh..self.pos.len() {
            let (s, e) = (self.start(k), self.pos[k]);
            if k > 0 {
                let len = self.x[k - 1].len();
                ws.acts[s][..len].copy_from_slice(&self.x[k - 1]);
            }
            if k + 1 < self.pos.len() {
                // A hidden node's prediction is written straight into mu_k (its buffer stands in
                // for the block's output slot), not copied out: the slot's own content is
                // overwritten by x_k as the next block's input in this same loop.
                std::mem::swap(&mut ws.acts[e], &mut self.mu[k]);
                net.forward_replay_layers(ws, s, e);
                std::mem::swap(&mut ws.acts[e], &mut self.mu[k]);
            } else {
                net.forward_replay_layers(ws, s, e);
                let len = self.mu[k].len();
                self.mu[k].copy_from_slice(&ws.acts[e][..len]);
            }
        }
        self.fresh = self.pos.len();
    }

    /// Errors e_k = x_k - mu_k (hidden) and the output error; returns the energy (batch sum).
    fn errors(&self, errs: &mut [Vec<f32>], y: &[u32], classes: usize) -> f64 {
        let kk = self.pos.len() - 1;
        let mut energy = 0.0f64;
        for ((e, x), mu) in errs[..kk].iter_mut().zip(&self.x).zip(&self.mu) {
            energy += gaussian_errors(e, x, mu);
        }
        let mu = &self.mu[kk];
        let e = &mut errs[kk];
        for (s, &label) in y.iter().enumerate() {
            let z = &mu[s * classes..(s + 1) * classes];
            let es = &mut e[s * classes..(s + 1) * classes];
            match self.cfg.energy {
                Energy::Ce if self.loss == Loss::Bernoulli => {
                    // A Bernoulli node per pixel (one logit per label): beta x its cross-entropy.
                    let (l, d) = crate::nn::loss::bernoulli_pixel(z[0], label);
                    es[0] = -self.cfg.beta * d;
                    energy += self.cfg.beta as f64 * f64::from(l);
                }
                Energy::Gaussian => {
                    for (j, ev) in es.iter_mut().enumerate() {
                        let t = if j == label as usize { 1.0 } else { 0.0 };
                        *ev = self.cfg.beta * (t - z[j]);
                        energy += 0.5 * (*ev as f64) * (*ev as f64);
                    }
                }
                Energy::Ce => {
                    let mx = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    // Each exponential once: kept in the error slots until the sum is known.
                    for (ev, v) in es.iter_mut().zip(z) {
                        *ev = (v - mx).exp();
                    }
                    let sum: f32 = es.iter().sum();
                    for (j, ev) in es.iter_mut().enumerate() {
                        let p = *ev / sum;
                        let t = if j == label as usize { 1.0 } else { 0.0 };
                        *ev = self.cfg.beta * (t - p);
                    }
                    // beta x cross-entropy: the energy whose gradient in mu is -e.
                    energy += self.cfg.beta as f64 * (sum.ln() + mx - z[label as usize]) as f64;
                }
            }
        }
        energy
    }
}

crate::wide_fn! {
    /// e = x - mu, element by element; returns sum e^2 / 2 in f64, summed in 32 interleaved
    /// partial sums (element i into sum i mod 32) added at the end, so the sum vectorises and
    /// four vector additions run at once (one running sum is a chain of dependent additions, as
    /// long as the node).
    fn gaussian_errors(e: &mut [f32], x: &[f32], mu: &[f32]) -> f64 {
        const L: usize = 32;
        let mut acc = [0.0f64; L];
        let n = e.len() / L * L;
        for ((ec, xc), mc) in e[..n].chunks_exact_mut(L).zip(x[..n].chunks_exact(L)).zip(mu[..n].chunks_exact(L)) {
            for i in 0..L {
                ec[i] = xc[i] - mc[i];
                acc[i] += 0.5 * f64::from(ec[i]) * f64::from(ec[i]);
            }
        }
        for (i, ((ev, xv), mv)) in e[n..].iter_mut().zip(&x[n..]).zip(&mu[n..]).enumerate() {
            *ev = xv - mv;
            acc[i] += 0.5 * f64::from(*ev) * f64::from(*ev);
        }
        acc.iter().sum()
    }
}

crate::wide_fn! {
    /// One state step of a node: v = momentum v + (e + b), x -= gamma v, element by element.
    fn node_step(x: &mut [f32], v: &mut [f32], e: &[f32], b: &[f32], mom: f32, gamma: f32) {
        for (((x, v), ev), b) in x.iter_mut().zip(v.iter_mut()).zip(e).zip(b) {
            *v = mom * *v + (ev + b);
            *x -= gamma * *v;
        }
    }
}

impl PredictiveCoding {
    /// Feed-forward initialisation of every node; returns the driver's loss stats.
    fn init_nodes(&mut self, net: &mut Network, ws: &mut Workspace, y: &[u32], loss: Loss, rng: &mut Rng) -> StepStats {
        let stats = forward_with_error(net, ws, y, loss, rng);
        self.loss = loss;
        let n = ws.n;
        for k in 0..self.pos.len() {
            let len = n * net.shapes[self.pos[k]].len();
            let src = &ws.acts[self.pos[k]][..len];
            for buf in [&mut self.x[k], &mut self.mu[k]] {
                buf.clear();
                buf.extend_from_slice(src);
            }
            for buf in [&mut self.vel[k], &mut self.back[k], &mut self.errs[k]] {
                buf.clear();
                buf.resize(len, 0.0);
            }
        }
        self.trace.clear();
        self.fresh = self.pos.len();
        stats
    }

    /// Errors at the current nodes (predictions refreshed unless they are fixed); the energy.
    fn refresh(&mut self, net: &mut Network, ws: &mut Workspace, y: &[u32], errs: &mut [Vec<f32>]) -> f64 {
        if !self.cfg.fixed_prediction {
            self.predict(net, ws);
        }
        self.errors(errs, y, net.output_len() * ws.n / y.len().max(1)) + self.kl_energy(net, ws)
    }

    /// A VAE latent's energy term at the current nodes: beta x KL (0 without a latent).
    fn kl_energy(&self, net: &Network, ws: &Workspace) -> f64 {
        self.cfg.beta as f64 * net.latent_kl(ws)
    }

    /// -J^T e of each node's block, top down (ws.grads[pos] is dF/dmu = -e); leaves it in `back`.
    fn backproject(&mut self, net: &mut Network, ws: &mut Workspace, errs: &[Vec<f32>], grads: &mut [Vec<f32>]) {
        // A latent's KL term on the energy's scale (errors are not divided by the batch).
        net.set_kl_weight(ws, self.cfg.beta);
        for k in (1..self.pos.len()).rev() {
            let (s, e) = (self.start(k), self.pos[k]);
            for (g, ev) in ws.grads[e].iter_mut().zip(&errs[k]) {
                *g = -ev;
            }
            // Only J^T e: the blocks' weight gradients would be thrown away (`weight_grads`
            // computes them, overwriting, from the errors it is given).
            crate::nn::without_param_grads(|| net.backward(ws, grads, s, e, None, true));
            // Taken, not copied: the next block down (k - 1) starts by overwriting grads[s], its
            // output gradient, with its own errors.
            let len = self.back[k - 1].len();
            ws.grads[s].truncate(len);
            std::mem::swap(&mut self.back[k - 1], &mut ws.grads[s]);
        }
    }

    /// One state step on every hidden node (SGD with momentum on the energy), node k at rate
    /// `rates[k]`.
    fn move_nodes(&mut self, errs: &[Vec<f32>], rates: &[f32]) {
        let mom = self.cfg.momentum;
        for k in 0..self.pos.len() - 1 {
            let gamma = rates[k];
            node_step(&mut self.x[k], &mut self.vel[k], &errs[k], &self.back[k], mom, gamma);
        }
        self.fresh = self.fresh.min(1);
    }

    /// dF/dW of every block at the current nodes and errors, mean over the batch's `labels`
    /// (its samples; a sequence's every position), into `grads`.
    fn weight_grads(&self, net: &mut Network, ws: &mut Workspace, errs: &[Vec<f32>], grads: &mut [Vec<f32>], labels: usize) {
        // The labels' mean (BP's loss is), and back to BP's scale from the nudged output's (1 / beta).
        let scale = 1.0 / labels.max(1) as f32 / self.cfg.beta;
        for k in 0..self.pos.len() {
            let (s, e) = (self.start(k), self.pos[k]);
            for (g, ev) in ws.grads[e].iter_mut().zip(&errs[k]) {
                *g = -ev * scale;
            }
            net.backward(ws, grads, s, e, None, false);
        }
    }
}

impl PredictiveCoding {
    /// Whether inference stops at energy `now` after `done` steps: the cap is reached, or the last
    /// step changed the energy by at most tol x the change of the whole relaxation so far
    /// (`start`: the energy before it; `prev`: before the last step). Relative to the
    /// relaxation's own change, the test means the same for every output nudge and batch size.
    fn settled(&self, done: usize, start: f64, prev: f64, now: f64) -> bool {
        done >= self.cfg.steps || (self.cfg.tol > 0.0 && done > 0 && (prev - now).abs() <= self.cfg.tol as f64 * (now - start).abs())
    }

    /// Monotone inference's rejection: the hidden nodes back to their values before the last
    /// state step, the momentum dropped, every rate halved.
    fn undo_step(&mut self, rates: &mut [f32]) {
        for ((x, saved), v) in self.x.iter_mut().zip(&self.saved).zip(&mut self.vel).take(self.pos.len() - 1) {
            x.copy_from_slice(saved);
            v.fill(0.0);
        }
        rates.iter_mut().for_each(|r| *r *= 0.5);
        self.fresh = self.fresh.min(1);
        self.last.backtracks += 1;
    }

    /// After an accepted step, every rate grows by `backtrack_regrow`, up to the batch's
    /// starting rate (`node_rates`).
    fn regrow(&self, rates: &mut [f32]) {
        let g = self.cfg.backtrack_regrow;
        if g != 1.0 {
            for (r, r0) in rates.iter_mut().zip(&self.node_rates) {
                *r = (*r * g).min(*r0);
            }
        }
    }

    /// The energy's gradient in the hidden nodes at the current nodes (refreshed), flattened
    /// node after node into `out`: dF/dx_k = e_k - J_{k+1}^T e_{k+1}.
    fn node_gradient(&mut self, net: &mut Network, ws: &mut Workspace, y: &[u32], errs: &mut [Vec<f32>], grads: &mut [Vec<f32>], out: &mut Vec<f32>) {
        self.refresh(net, ws, y, errs);
        self.backproject(net, ws, errs, grads);
        out.clear();
        for k in 0..self.pos.len() - 1 {
            out.extend(errs[k].iter().zip(&self.back[k]).map(|(e, b)| e + b));
        }
    }

    /// Curvature-limited inference's rates for this batch, one per hidden node
    /// (`curvature_iters` > 0): power iterations on the energy's Hessian H in the hidden nodes at
    /// the current (feed-forward) nodes, H v by the finite difference (g(x + eps v) - g(x)) / eps
    /// of the node gradient g, starting from g itself (the direction inference moves first;
    /// per node, plus the node's values).
    ///
    /// Global (`curvature_per_node` off): lambda is the last Rayleigh quotient's magnitude over
    /// all nodes, every node's rate min(gamma, 1 / lambda): a step that cannot overshoot along the
    /// stiffest direction (gamma lambda <= 1; a fixed gamma with gamma lambda > 1 flips the sign
    /// of the error there at every step, and diverges past 2).
    ///
    /// Per node: node k's own block H_kk (its energy and the one above it), lambda_k its largest
    /// eigenvalue, its rate min(gamma, 1 / (2 lambda_k)). A node's energy couples only to its
    /// neighbours', so H is block-tridiagonal and H <= 2 blockdiag(H_kk) (flipping the sign of
    /// every other node is a congruence that negates the off-diagonal blocks): with these rates
    /// R H <= I, no direction overshoots, while the nodes below a stiff one keep their own
    /// faster rate. Even and odd nodes are probed in separate passes (a probe on even nodes
    /// only sees H_kk there), so it costs twice the global estimate. Returns the rates and the
    /// largest lambda. The nodes are left as they were.
    fn limited_rates(&mut self, net: &mut Network, ws: &mut Workspace, y: &[u32], errs: &mut [Vec<f32>], grads: &mut [Vec<f32>]) -> (Vec<f32>, f64) {
        let (gamma, hidden) = (self.cfg.gamma, self.pos.len() - 1);
        if self.cfg.curvature_iters == 0 || self.cfg.fixed_prediction || hidden == 0 {
            return (vec![gamma; hidden], 0.0);
        }
        let saved: Vec<Vec<f32>> = self.x[..hidden].to_vec();
        let norm = |v: &[f32]| v.iter().map(|a| (*a as f64) * (*a as f64)).sum::<f64>().sqrt();
        let (mut g0, mut g1) = (Vec::new(), Vec::new());
        self.node_gradient(net, ws, y, errs, grads, &mut g0);
        // The nodes' joint norm, summed in node order (no joined copy).
        let xn = saved.iter().flatten().map(|a| (*a as f64) * (*a as f64)).sum::<f64>().sqrt();
        // Node k's coordinates in the flattened vector.
        let mut spans = Vec::with_capacity(hidden);
        let mut off = 0;
        for x in &saved {
            spans.push(off..off + x.len());
            off += x.len();
        }
        let per_node = self.cfg.curvature_per_node;
        let probes: Vec<Vec<bool>> = if per_node {
            (0..2).map(|p| (0..hidden).map(|k| k % 2 == p).collect()).collect()
        } else {
            vec![vec![true; hidden]]
        };
        let mut lambdas = vec![0.0f64; hidden];
        for on in probes.iter().filter(|on| on.iter().any(|b| *b)) {
            // Per node, the start also holds the nodes' own values: at the feed-forward nodes
            // only the top hidden node has a gradient, and a probe must reach every node.
            let mut v = g0.clone();
            for (k, span) in spans.iter().enumerate() {
                if !on[k] {
                    v[span.clone()].fill(0.0);
                } else if per_node {
                    for (a, b) in v[span.clone()].iter_mut().zip(&saved[k]) {
                        *a += b;
                    }
                }
            }
            for _ in 0..self.cfg.curvature_iters {
                let vn = norm(&v);
                if !(vn > 0.0 && vn.is_finite()) {
                    break;
                }
                // A move of 1e-3 of the nodes' norm (at least 1e-3): large against f32 rounding,
                // small against the energy's nonlinearity.
                let eps = 1e-3 * xn.max(1.0) / vn;
                self.fresh = self.fresh.min(1);
                for (k, (x, x0)) in self.x.iter_mut().zip(&saved).enumerate() {
                    for (a, (b, d)) in x.iter_mut().zip(x0.iter().zip(&v[spans[k].clone()])) {
                        *a = b + (eps * *d as f64) as f32;
                    }
                }
                self.node_gradient(net, ws, y, errs, grads, &mut g1);
                // H v, with v scaled to unit length, on the probed nodes; each probed node's
                // (global: the whole vector's) Rayleigh quotient.
                for (a, b) in g1.iter_mut().zip(&g0) {
                    *a = ((*a - *b) as f64 / (eps * vn)) as f32;
                }
                let hv = &mut g1;
                let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(u, w)| (*u as f64) * (*w as f64)).sum::<f64>();
                if per_node {
                    for (k, span) in spans.iter().enumerate() {
                        if on[k] {
                            let vk = dot(&v[span.clone()], &v[span.clone()]);
                            if vk > 0.0 {
                                lambdas[k] = (vn * dot(&hv[span.clone()], &v[span.clone()]) / vk).abs();
                            }
                        } else {
                            hv[span.clone()].fill(0.0);
                        }
                    }
                } else {
                    let l = (dot(&hv, &v) / vn).abs();
                    lambdas.iter_mut().for_each(|x| *x = l);
                }
                std::mem::swap(&mut v, hv);
            }
        }
        for (x, x0) in self.x.iter_mut().zip(&saved) {
            x.copy_from_slice(x0);
        }
        self.fresh = self.fresh.min(1);
        let c = if per_node { 0.5 } else { 1.0 };
        let rates = lambdas
            .iter()
            .map(|&l| if l.is_finite() && l * gamma as f64 > c { (c / l) as f32 } else { gamma })
            .collect();
        (rates, lambdas.iter().cloned().fold(0.0, f64::max))
    }

    /// Relax the nodes (and, incrementally, the weights); returns the final energy and the
    /// steps used, leaving the errors at the final nodes in `errs`.
    fn relax(&mut self, s: &mut Step, errs: &mut [Vec<f32>], mut upd: Option<&mut Updater>) -> (f64, usize) {
        let (net, ws, y, _, grads, _) = s.parts();
        let (rates, curvature) = self.limited_rates(net, ws, y, errs, grads);
        self.last.gamma = rates.iter().cloned().fold(self.cfg.gamma, f32::min);
        self.last.curvature = curvature;
        self.node_rates.clone_from(&rates);
        let mut rates = rates;
        let backtrack = self.cfg.backtrack && upd.is_none();
        self.last.backtracks = 0;
        let (mut start, mut prev) = (f64::NAN, f64::NAN);
        let mut done = 0;
        loop {
            let mut energy = self.refresh(net, ws, y, errs);
            if backtrack && done > 0 && !(energy <= prev) {
                // The step raised the energy (or made it NaN): undo it; the errors are
                // recomputed at the restored nodes.
                self.undo_step(&mut rates);
                energy = self.refresh(net, ws, y, errs);
                self.trace.push(energy);
                if done >= self.cfg.steps {
                    return (energy, done);
                }
            } else {
                self.trace.push(energy);
                if done == 0 {
                    start = energy;
                }
                if self.settled(done, start, prev, energy) {
                    return (energy, done);
                }
                if backtrack && done > 0 {
                    self.regrow(&mut rates);
                }
            }
            if backtrack {
                for (saved, x) in self.saved.iter_mut().zip(&self.x[..self.pos.len() - 1]) {
                    saved.clone_from(x);
                }
            }
            self.backproject(net, ws, errs, grads);
            if let Some(u) = upd.as_deref_mut() {
                // Both gradients from the same errors, then both steps.
                self.weight_grads(net, ws, errs, grads, y.len());
                u.apply(net, grads);
                self.fresh = 0;
            }
            self.move_nodes(errs, &rates);
            prev = energy;
            done += 1;
        }
    }
}

impl PredictiveCoding {
    /// One batch: nodes from the feed-forward pass, relaxation, and the weight update. With `upd`
    /// (incremental PC) the weights step at every inference step; without, the update at the
    /// relaxed nodes is left in `s.grads` for the driver.
    fn infer(&mut self, s: &mut Step, upd: Option<&mut Updater>) -> StepStats {
        let stats = {
            let (net, ws, y, loss, _, rng) = s.parts();
            self.init_nodes(net, ws, y, loss, rng)
        };
        if upd.is_some() && !stats.loss_sum.is_finite() {
            return stats;
        }
        let incremental = upd.is_some();
        let mut errs = std::mem::take(&mut self.errs);
        let e0 = self.errors(&mut errs, s.y, s.net.output_len() * s.ws.n / s.y.len().max(1))
            + self.kl_energy(s.net, s.ws);
        let (e_end, used) = self.relax(s, &mut errs, upd);
        if !incremental {
            let (net, ws, y, _, grads, _) = s.parts();
            self.weight_grads(net, ws, &errs, grads, y.len());
        }
        self.errs = errs;
        self.last = PcStats { energy_start: e0, energy_end: e_end, steps: used, ..self.last };
        StepStats { energy: Some((e0, e_end, used)), ..stats }
    }
}

impl Rule for PredictiveCoding {
    fn step(&mut self, s: &mut Step) -> StepStats {
        self.infer(s, None)
    }

    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        if self.cfg.incremental {
            self.infer(s, Some(upd))
        } else {
            super::step_then_apply(self, s, upd)
        }
    }
}

crate::settings! {
    /// Predictive coding's settings (`pc`, `ipc`, `pc-fpa`).
    pub struct PcSettings {
        /// Inference steps T per batch (value-node relaxation; iPC: weight steps per batch); with
        /// `pc_tol` > 0, the most it may take.
        pub pc_steps: usize = 5,
        /// Stop inference when a step changes the energy by at most pc_tol x the relaxation's
        /// change so far (0: always pc_steps steps). The mean steps used are reported per epoch
        /// (`inference_steps`).
        pub pc_tol: f32 = 0.0,
        /// State learning rate per sample (PCX's F-MNIST setting: 0.1).
        pub pc_gamma: f32 = 0.1,
        /// Momentum of the state updates, in [0, 1).
        pub pc_momentum: f32 = 0.1,
        /// Output energy: gaussian (output clamped to the one-hot label) or ce (categorical node).
        pub pc_energy: Energy = Energy::Gaussian,
        /// Output nudge beta in (0, 1]: the output's target is mu + beta (y - mu) (1: clamped to
        /// the label); the weight update is divided by beta (small beta: near BP's gradient).
        pub pc_beta: f32 = 1.0,
        /// Curvature-limited inference (0: off): power iterations per batch estimating the
        /// energy Hessian's largest eigenvalue lambda in the hidden nodes; the batch relaxes at
        /// rate min(pc_gamma, 1 / lambda), so a stiff network (a transformer trained by Adam)
        /// cannot make inference overshoot and diverge. Each iteration costs one inference step.
        pub pc_curvature_iters: usize = 0,
        /// With pc_curvature_iters: a rate per value node, min(pc_gamma, 1 / (2 lambda_k)) from
        /// the largest eigenvalue of its own block of the Hessian, instead of one rate for all
        /// (twice the estimate's cost; nodes below a stiff one keep a faster rate).
        pub pc_curvature_per_node: bool = false,
        /// Monotone inference: a state step that raises the energy is undone and every node's
        /// rate halved (the momentum dropped), so the energy never rises along the relaxation;
        /// a guard for stiff networks where a rate estimate can still overshoot. Not for ipc.
        pub pc_backtrack: bool = false,
        /// With pc_backtrack: after a step that lowered the energy every node's rate grows by
        /// this factor, up to its starting rate (1: a halved rate stays halved for the batch).
        pub pc_backtrack_regrow: f32 = 1.0,
    }
    check(s) {
        use super::settings::{count, in_unit, non_negative, positive};
        count("pc_steps", s.pc_steps, 100_000)?;
        if s.pc_curvature_iters > 1000 {
            return Err(format!("pc_curvature_iters must be at most 1000, got {}", s.pc_curvature_iters));
        }
        positive("pc_gamma", s.pc_gamma)?;
        non_negative("pc_tol", s.pc_tol)?;
        if !(s.pc_beta > 0.0 && s.pc_beta <= 1.0) {
            return Err(format!("pc_beta must be in (0, 1], got {}", s.pc_beta));
        }
        if !(s.pc_backtrack_regrow >= 1.0 && s.pc_backtrack_regrow <= 10.0) {
            return Err(format!("pc_backtrack_regrow must be in [1, 10], got {}", s.pc_backtrack_regrow));
        }
        in_unit("pc_momentum", s.pc_momentum)
    }
}

fn build_pc(
    net: &Network,
    cx: &super::BuildContext,
    fixed_prediction: bool,
    incremental: bool,
) -> Result<Box<dyn super::Rule>, String> {
    let s: PcSettings = cx.settings()?;
    if cx.loss == Loss::Bernoulli && s.pc_energy != Energy::Ce {
        return Err("a VAE's output node is Bernoulli per pixel: set pc_energy = \"ce\" (its cross-entropy)".into());
    }
    if incremental && s.pc_backtrack {
        return Err("pc_backtrack is not for incremental PC: its weights move at every inference step, so the energies of two steps do not compare".into());
    }
    let c = PcConfig {
        steps: s.pc_steps,
        gamma: s.pc_gamma,
        momentum: s.pc_momentum,
        fixed_prediction,
        energy: s.pc_energy,
        beta: s.pc_beta,
        incremental,
        tol: s.pc_tol,
        curvature_iters: s.pc_curvature_iters,
        curvature_per_node: s.pc_curvature_per_node,
        backtrack: s.pc_backtrack,
        backtrack_regrow: s.pc_backtrack_regrow,
    };
    Ok(Box::new(PredictiveCoding::new(net, c)?))
}

pub static PC: super::RuleEntry = super::RuleEntry {
    name: "pc",
    summary: "predictive coding: value nodes relax on a local energy (T steps), then local weight updates (pc_steps, pc_gamma, pc_energy gaussian|ce)",
    paper: "Whittington & Bogacz 2017, Neural Comput.; Pinchetti et al. 2022 (ce energy)",
    reported: "",
    preset: include_str!("../../presets/pc.toml"),
    presets: &[("pcx", include_str!("../../presets/pc/pcx.toml")), ("equilibrium", include_str!("../../presets/pc/equilibrium.toml"))],
    settings: super::SettingsKind::of::<PcSettings>(),
    build: |net, cx, _| build_pc(net, cx, false, false),
};

pub static IPC: super::RuleEntry = super::RuleEntry {
    name: "ipc",
    summary:
        "incremental predictive coding: a weight step at every inference step (T weight steps per batch, pc_steps)",
    paper: "Salvatori et al. 2024, ICLR (iPC)",
    reported: "",
    preset: include_str!("../../presets/ipc.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<PcSettings>(),
    build: |net, cx, _| build_pc(net, cx, false, true),
};

pub static PC_FPA: super::RuleEntry = super::RuleEntry {
    name: "pc-fpa",
    summary: "predictive coding with the fixed-prediction assumption: equals backprop's gradient at equilibrium",
    paper: "Millidge, Tschantz & Buckley 2022, Neural Comput.",
    reported: "",
    preset: include_str!("../../presets/pc-fpa.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<PcSettings>(),
    build: |net, cx, _| build_pc(net, cx, true, false),
};
