//! Top-down credit assignment (TDCA; after Chen, Wang & Liu 2022, arXiv 2208.01416, "a
//! Top-Down Credit Assignment Network ... serves as a substitute for the conventional loss
//! function and the back-propagation algorithm", with "a brain-inspired credit diffusion
//! mechanism, significantly reducing the TDCA-network's parameter complexity").
//!
//! Only the paper's abstract could be found (no text of its method, no code): the design below
//! is ours, built to the abstract's three statements, and no paper figure stands beside it.
//!
//! Two networks. The bottom-up network is an MLP; it never computes a loss or a gradient. The
//! top-down TDCA-network sees the bottom-up output p = softmax(o) and the label y* (what a loss
//! would see) and answers with a credit for every layer:
//!
//!   u      = tanh(U [p; y*] + b)                       (m_h top-down units, `tdca_hidden`)
//!   c_L    = V_L u                                     (the output layer's credit, K)
//!   c_l    = D_l (V_l u)                               (hidden layer l, D_l units)
//!
//! V_l u is a code of `tdca_code` = m values per hidden layer; D_l (D_l x m, fixed random) is the
//! credit diffusion: it spreads the code over the layer's units, so the TDCA-network's size does
//! not grow with the layers' widths (m_h (2K + 1 + K) + (L - 1) m m_h parameters, 752 for K = 10,
//! m_h = 16, m = 8 and two hidden layers; without diffusion V_l alone would be D_l x m_h) and the
//! same TDCA-network trains bottom-up networks of any width (the paper's "generalizability
//! across different datasets"). The bottom-up update is the credit in place of the error,
//! through each block's own non-weight layers (DFA's path): dW_l = (c_l (.) f'(a_l)) h_{l-1}^T / N.
//!
//! The TDCA-network's parameters phi are the two-level framework's outer level, learned by
//! `biolearn meta-train` (evolution strategies over episodes of bottom-up training: each
//! candidate phi trains a fresh bottom-up network, scored on held-out queries) and given to the
//! rule as `tdca_phi`: a change from phi_0, the start below (empty: phi_0 itself). phi_0 makes
//! TDCA a low-rank DFA: U_0 = [I, -I] on the first K top-down units, so u = tanh(p - y*), the
//! cross-entropy error squashed; V_L,0 = [I, 0] (c_L = tanh(e): the output layer's delta rule);
//! V_l,0 a fixed random m x K block (from `tdca_seed`), so c_l = D_l V_l,0 tanh(e), DFA's signal
//! with a rank-m random feedback matrix. phi's layout: U (m_h x 2K, row-major), b (m_h), V_L
//! (K x m_h), then V_1 .. V_{L-1} (m x m_h each).
//!
//! # Shapes
//! p, y*: N x K; u: N x m_h; codes: N x m; c_l: N x D_l; D_l: parameter `feedback.I.tdca`
//! (D_l x m, kind `Feedback`) at the input I of the weight layer after hidden layer l.

use super::dfa::DirectFeedback;
use super::{forward_with_error, mlp_layers, Rule, Step, StepStats};
use crate::linalg;
use crate::nn::{loss::softmax_rows, Network, Workspace};
use crate::rng::Rng;

crate::settings! {
    /// TDCA's settings (`tdca`).
    pub struct TdcaSettings {
        /// m_h: the TDCA-network's top-down units (at least the classes K).
        pub tdca_hidden: usize = 16,
        /// m: the credit code per hidden layer, spread over its units by the diffusion matrix.
        pub tdca_code: usize = 8,
        /// The TDCA-network's parameters as a change from phi_0 (its length at most phi's; missing
        /// entries are 0, empty is phi_0): what `biolearn meta-train --keys tdca_phi[0..N]` learns.
        pub tdca_phi: Vec<f32> = Vec::new(),
        /// The seed of phi_0's random feedback codes V_l,0 (fixed, so that a learned change applies
        /// to the same phi_0 whatever the run's seed; the diffusion matrices D_l are the run's own
        /// draw, so a learned phi must work through any random wiring).
        pub tdca_seed: u64 = 0,
    }
    check(s) {
        if s.tdca_hidden == 0 || s.tdca_hidden > 4096 || s.tdca_code == 0 || s.tdca_code > 4096 {
            return Err(format!(
                "tdca_hidden and tdca_code must be between 1 and 4096 (got {} and {})",
                s.tdca_hidden, s.tdca_code
            ));
        }
        if let Some(v) = s.tdca_phi.iter().find(|v| !v.is_finite() || v.abs() > 1e3) {
            return Err(format!("tdca_phi holds {v}: every entry must be finite and at most 1000 in size"));
        }
        Ok(())
    }
}

pub struct Tdca {
    /// phi = phi_0 + tdca_phi, laid out as the module doc says.
    phi: Vec<f32>,
    k: usize,
    mh: usize,
    m: usize,
    /// The diffusion matrices D_l (D_l x m), entering where DFA's B_l would: the credit takes
    /// DFA's path (`DirectFeedback`).
    fb: DirectFeedback,
    /// Scratch: [p; y*] (N x 2K), u (N x m_h), a code (N x m).
    py: Vec<f32>,
    u: Vec<f32>,
    code: Vec<f32>,
}

impl Tdca {
    /// phi's length for K classes, m_h top-down units, codes of m and `hidden` hidden layers.
    pub fn phi_len(k: usize, mh: usize, m: usize, hidden: usize) -> usize {
        mh * 2 * k + mh + k * mh + hidden * m * mh
    }

    /// phi_0: U = [I, -I] and V_L = [I, 0] on the first K top-down units, b = 0, V_l random
    /// N(0, 1/m) on those units (from `seed`).
    pub fn phi0(k: usize, mh: usize, m: usize, hidden: usize, seed: u64) -> Vec<f32> {
        let mut phi = vec![0.0; Self::phi_len(k, mh, m, hidden)];
        let (u_len, v_off) = (mh * 2 * k, mh * 2 * k + mh);
        for j in 0..k.min(mh) {
            phi[j * 2 * k + j] = 1.0;
            phi[j * 2 * k + k + j] = -1.0;
            phi[v_off + j * mh + j] = 1.0;
        }
        debug_assert!(u_len <= v_off);
        let mut rng = Rng::new(seed);
        let base = v_off + k * mh;
        for l in 0..hidden {
            for r in 0..m {
                for j in 0..k.min(mh) {
                    phi[base + l * m * mh + r * mh + j] = rng.normal() / (m as f32).sqrt();
                }
            }
        }
        phi
    }

    pub fn new(net: &mut Network, s: &TdcaSettings, rng: &mut Rng) -> Result<Self, String> {
        let (dense, _) = mlp_layers(net, "tdca")?;
        let k = net.output_len();
        let (mh, m) = (s.tdca_hidden, s.tdca_code);
        if mh < k {
            return Err(format!("tdca_hidden ({mh}) must be at least the number of classes ({k})"));
        }
        let hidden = dense.len() - 1;
        let mut phi = Self::phi0(k, mh, m, hidden, s.tdca_seed);
        if s.tdca_phi.len() > phi.len() {
            return Err(format!(
                "tdca_phi has {} entries, more than the {} of this TDCA-network (K {k}, tdca_hidden {mh}, tdca_code {m}, {hidden} hidden layers)",
                s.tdca_phi.len(),
                phi.len()
            ));
        }
        for (p, d) in phi.iter_mut().zip(&s.tdca_phi) {
            *p += d;
        }
        // Credit diffusion: D_l ~ U(+-sqrt(6 / (D_l + m))), Xavier-scaled as DFA's B.
        let fb = DirectFeedback::drawn_wide(net, rng, "tdca", m, |_, d, m, rng| {
            let bound = (6.0 / (d + m) as f32).sqrt();
            let mut b = vec![0.0; d * m];
            rng.fill_uniform(&mut b, -bound, bound);
            b
        });
        Ok(Tdca { phi, k, mh, m, fb, py: Vec::new(), u: Vec::new(), code: Vec::new() })
    }

    /// u = tanh(U [p; y*] + b) for the batch whose output is in `ws` (N x m_h into `self.u`).
    fn top_down(&mut self, ws: &Workspace, y: &[u32]) {
        let (n, k, mh) = (ws.n, self.k, self.mh);
        self.py.resize(n * 2 * k, 0.0);
        self.u.resize(n * mh, 0.0);
        let out = ws.output();
        for (r, &label) in y.iter().enumerate() {
            let row = &mut self.py[r * 2 * k..(r + 1) * 2 * k];
            row[..k].copy_from_slice(&out[r * k..(r + 1) * k]);
            softmax_rows(&mut row[..k], k);
            row[k..].fill(0.0);
            row[k + label as usize] = 1.0;
        }
        let (uw, rest) = self.phi.split_at(mh * 2 * k);
        let b = &rest[..mh];
        for r in 0..n {
            self.u[r * mh..(r + 1) * mh].copy_from_slice(b);
        }
        linalg::matmul(n, mh, 2 * k, &self.py, false, uw, true, &mut self.u, true);
        self.u.iter_mut().for_each(|v| *v = v.tanh());
    }
}

impl Rule for Tdca {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        // The loss is computed for the record only: no update reads it.
        let stats = forward_with_error(net, ws, y, loss, rng);
        self.top_down(ws, y);
        let (n, k, mh, m) = (ws.n, self.k, self.mh, self.m);
        let scale = 1.0 / n as f32;
        let v_off = mh * 2 * k + mh;
        let l = net.num_layers();
        // Output layer: c_L = V_L u, averaged over the batch as a loss's gradient would be.
        let vl = &self.phi[v_off..v_off + k * mh];
        linalg::matmul(n, k, mh, &self.u, false, vl, true, &mut ws.grads[l][..n * k], false);
        ws.grads[l][..n * k].iter_mut().for_each(|g| *g *= scale);
        // Hidden layers: c_l = D_l (V_l u), into the next dense layer's input, back through the
        // block's activation to its own dense layer.
        self.code.resize(n * m, 0.0);
        let (u, phi, code) = (&self.u, &self.phi, &mut self.code);
        self.fb.backward_blocks(net, ws, grads, |net, ws, grads, b| {
            let off = v_off + k * mh + b.index * m * mh;
            linalg::matmul(n, m, mh, u, false, &phi[off..off + m * mh], true, code, false);
            let d = net.shapes[b.at].len();
            let g = &mut ws.grads[b.at][..n * d];
            linalg::matmul(n, d, m, code, false, b.feedback, true, g, false);
            g.iter_mut().for_each(|v| *v *= scale);
            net.backward(ws, grads, b.weight, b.at, None, false);
        });
        stats
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "tdca",
    summary: "top-down credit assignment: a top-down network turns the output and the label into a credit for every layer (diffused over its units by fixed random wiring), meta-learned by evolution strategies; our design from the paper's abstract",
    paper: "Chen, Wang & Liu 2022 (TDCA; arXiv 2208.01416, abstract only)",
    reported: "\"outperforms back-propagation across various settings\" (abstract; no figure found)",
    preset: include_str!("../../presets/tdca.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<TdcaSettings>(),
    build: |net, cx, rng| {
        let s: TdcaSettings = cx.settings()?;
        Ok(Box::new(Tdca::new(net, &s, rng)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Activation, Init, Shape};
    use crate::rules::tests::grads_of;

    fn net(rng: &mut Rng) -> Network {
        Builder::new(Shape::flat(4), Init::Torch, rng)
            .dense(6, true)
            .act(Activation::Tanh)
            .dense(5, true)
            .act(Activation::Tanh)
            .dense(3, true)
            .build()
    }

    /// At phi_0 the output layer's update is the cross-entropy delta rule with the error squashed
    /// by tanh, and each hidden layer's is DFA's with B_l = D_l V_l,0 (restricted to the first K
    /// top-down units): checked against a DFA step given that B.
    #[test]
    fn start_is_a_squashed_error_low_rank_dfa() {
        let mut rng = Rng::new(1);
        let mut a = net(&mut rng);
        let mut b = a.clone();
        let s = TdcaSettings { tdca_hidden: 4, tdca_code: 2, ..Default::default() };
        let mut t = Tdca::new(&mut a, &s, &mut Rng::new(2)).unwrap();
        assert_eq!(t.phi.len(), Tdca::phi_len(3, 4, 2, 2));
        let mut x = vec![0.0; 5 * 4];
        rng.fill_normal(&mut x, 1.0);
        let y = [0, 2, 1, 1, 0];
        let g = grads_of(&mut t, &mut a, &x, &y);
        // The same step by hand: a DFA whose error is tanh(p - y*) and whose B_l = D_l V_l,0[:, :K].
        let d = crate::rules::dfa::Dfa::new(&mut b, &mut Rng::new(3));
        let (k, mh, m) = (3, 4, 2);
        let v_off = mh * 2 * k + mh + k * mh;
        for (j, &(at, dp)) in t.fb.feedback.iter().enumerate() {
            let dd = &a.params[dp].data;
            let dim = a.shapes[at].len();
            let mut bl = vec![0.0; dim * k];
            for r in 0..dim {
                for c in 0..k {
                    bl[r * k + c] = (0..m).map(|q| dd[r * m + q] * t.phi[v_off + j * m * mh + q * mh + c]).sum();
                }
            }
            let (at2, bp) = d.fb.feedback[j];
            assert_eq!(at, at2);
            b.params[bp].data = bl;
        }
        let mut ws = Workspace::default();
        b.prepare(&mut ws, 5);
        ws.input_mut().copy_from_slice(&x);
        let mut gb = b.zero_grads();
        let mut r = Rng::new(0);
        super::forward_with_error(&mut b, &mut ws, &y, crate::nn::Loss::Ce, &mut r);
        let l = b.num_layers();
        for v in ws.grads[l].iter_mut() {
            // dL/do = (p - y*) / N; TDCA's credit is tanh(p - y*) / N.
            *v = (*v * 5.0).tanh() / 5.0;
        }
        d.fb.backward(&b, &mut ws, &mut gb, crate::rules::dfa::project_error);
        for (p, (ga, gbb)) in g.iter().zip(&gb).enumerate() {
            for (u, v) in ga.iter().zip(gbb) {
                assert!((u - v).abs() < 1e-5, "parameter {p}: {u} vs {v}");
            }
        }
    }

    /// A change in tdca_phi reaches the update; one longer than phi is refused; with a wide
    /// bottom-up network phi keeps its size (the diffusion grows instead).
    #[test]
    fn phi_change_applies_and_its_size_does_not_grow_with_width() {
        let mut rng = Rng::new(4);
        let mut a = net(&mut rng);
        let len = Tdca::phi_len(3, 16, 8, 2);
        let bad = TdcaSettings { tdca_phi: vec![0.1; len + 1], ..Default::default() };
        assert!(Tdca::new(&mut a.clone(), &bad, &mut Rng::new(1)).is_err());
        let wide = Builder::new(Shape::flat(4), Init::Torch, &mut rng)
            .dense(600, true)
            .act(Activation::Tanh)
            .dense(500, true)
            .act(Activation::Tanh)
            .dense(3, true)
            .build();
        let t = Tdca::new(&mut wide.clone(), &TdcaSettings::default(), &mut Rng::new(1)).unwrap();
        assert_eq!(t.phi.len(), len);
        let mut x = vec![0.0; 3 * 4];
        rng.fill_normal(&mut x, 1.0);
        let y = [0, 1, 2];
        let mut a0 = a.clone();
        let mut t0 = Tdca::new(&mut a0, &TdcaSettings::default(), &mut Rng::new(1)).unwrap();
        let g0 = grads_of(&mut t0, &mut a0, &x, &y);
        let mut phi = vec![0.0; len];
        phi[3 * 16 * 2 + 16] = 0.5; // V_L[0][0]: the output credit of class 0
        let moved = TdcaSettings { tdca_phi: phi, ..Default::default() };
        let mut t1 = Tdca::new(&mut a, &moved, &mut Rng::new(1)).unwrap();
        let g1 = grads_of(&mut t1, &mut a, &x, &y);
        // V_L[0][0] goes from 1 to 1.5: class 0's output credit is 1.5 u_0, so the output
        // layer's row 0 and bias 0 scale by 1.5, its other rows stay, and the hidden layers'
        // credits (other blocks of phi) are bit for bit the same.
        let last = *a.weight_layers().last().unwrap();
        let (w_out, b_out) = (a.layers[last].weight().unwrap(), a.layers[last].bias().unwrap());
        let row = 5; // the output layer's inputs
        let rel = |x: f32, y: f32| (x - y).abs() <= 1e-6 * y.abs().max(1e-6);
        assert!(g0[w_out][..row].iter().any(|v| v.abs() > 1e-4));
        for (i, (u, v)) in g1[w_out].iter().zip(&g0[w_out]).enumerate() {
            if i < row {
                assert!(rel(*u, 1.5 * v), "row 0: {u} vs 1.5 x {v}");
            } else {
                assert_eq!(u, v, "rows 1-2 move");
            }
        }
        assert!(rel(g1[b_out][0], 1.5 * g0[b_out][0]) && g1[b_out][1..] == g0[b_out][1..]);
        for p in (0..a.params.len()).filter(|&p| p != w_out && p != b_out) {
            assert_eq!(g1[p], g0[p], "parameter {p}");
        }
    }
}
