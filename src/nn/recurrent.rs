//! Recurrent layers unrolled in time: an Elman RNN (tanh) and a GRU (PyTorch's `nn.GRU` cell).
//!
//! A sample's input C x T x W is read as a sequence of T steps, step t holding row t of every
//! channel (C x W values: row-by-row Fashion-MNIST is T = 28 steps of 28 pixels; a recurrent
//! layer's own sequence output is 1 x T x H). Per step, with W_x: G x I, W_h: G x H:
//!
//!   Elman (G = H):  h_t = tanh(W_x x_t + b + W_h h_{t-1})
//!   GRU (G = 3H, gates in PyTorch's order r, z, n; b_x, b_h: 3H):
//!     r = sigma(W_xr x_t + b_xr + W_hr h + b_hr),  z = sigma(W_xz x_t + b_xz + W_hz h + b_hz)
//!     n = tanh(W_xn x_t + b_xn + r (.) (W_hn h + b_hn)),  h_t = (1 - z) (.) n + z (.) h
//!
//! with h = h_{t-1}, h_0 = 0. The layer outputs h_T (a read-out on the last state), or with
//! `seq_out` every h_1..h_T (1 x T x H per sample), which a second recurrent layer reads as its
//! sequence. The input projections of all steps are one GEMM ((N T) x I by I x G); only the
//! recurrent product runs step by step.
//!
//! Backward is backpropagation through time: dL/dh_t collects the output's gradient at step t
//! (with `seq_out`) and the gradient from step t + 1 through W_h, every step's gate gradients go
//! into dW_h step by step and into dW_x, db and dx as one GEMM each at the end. The input gradient
//! goes back through W_x or a feedback matrix of its shape (feedback alignment's B). With
//! `truncate` no gradient crosses W_h between steps: each step's update sees h_{t-1} as a
//! constant input (the one-step, forward-only gradient of a per-step local loss: TPSGD's
//! recurrent form), so it could be computed online, step by step, with nothing kept.
//!
//! # Shapes
//! Input N x (T I) sample-major; `xs`: (N T) x I (row n T + t = step t of sample n); `ax` and
//! `dax`: (N T) x G likewise; `hs`: (T + 1) blocks of N x H, time-major (block t = h_t); `gates`
//! (GRU): T blocks of N x 4H (r, z, n, W_hn h + b_hn).

use crate::linalg;
use crate::nn::activation::sigmoid;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cell {
    Elman,
    Gru,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RnnGeom {
    pub cell: Cell,
    /// The input's channels and row length (step t = row t of every channel: I = c w).
    pub c: usize,
    pub w: usize,
    /// T: the number of steps (the input's rows).
    pub steps: usize,
    pub hidden: usize,
    /// Output every state h_1..h_T (1 x T x H) instead of h_T alone.
    pub seq_out: bool,
}

/// What a recurrent layer keeps from its forward pass for the backward pass.
#[derive(Debug, Default)]
pub struct RnnAux {
    pub xs: Vec<f32>,
    pub ax: Vec<f32>,
    pub hs: Vec<f32>,
    pub gates: Vec<f32>,
    /// Per-step scratch: W_h h_{t-1} (N x G), dL/dh (N x H), the gate gradients on the
    /// recurrent side (N x G).
    gh: Vec<f32>,
    dh: Vec<f32>,
    dgh: Vec<f32>,
    /// Backward: dL/d(ax), (N T) x G, and dL/d(xs), (N T) x I.
    dax: Vec<f32>,
    dxs: Vec<f32>,
}

impl RnnAux {
    /// Bytes held (capacities).
    pub fn bytes(&self) -> usize {
        [&self.xs, &self.ax, &self.hs, &self.gates, &self.gh, &self.dh, &self.dgh, &self.dax, &self.dxs]
            .iter()
            .map(|v| v.capacity() * 4)
            .sum()
    }
}

impl RnnGeom {
    /// I: the values of one step.
    pub fn inp(&self) -> usize {
        self.c * self.w
    }
    /// G: the gate pre-activations per unit (1 for Elman, 3 for GRU) times H.
    pub fn gates(&self) -> usize {
        match self.cell {
            Cell::Elman => self.hidden,
            Cell::Gru => 3 * self.hidden,
        }
    }
    pub fn out_len(&self) -> usize {
        if self.seq_out {
            self.steps * self.hidden
        } else {
            self.hidden
        }
    }

    /// Size the scratch for a batch of `n` (no allocation when it fits).
    pub fn prepare(&self, aux: &mut RnnAux, n: usize, backward: bool) {
        let (t, i, g, h) = (self.steps, self.inp(), self.gates(), self.hidden);
        aux.xs.resize(n * t * i, 0.0);
        aux.ax.resize(n * t * g, 0.0);
        aux.hs.resize((t + 1) * n * h, 0.0);
        aux.gates.resize(if self.cell == Cell::Gru { t * n * 4 * h } else { 0 }, 0.0);
        aux.gh.resize(n * g, 0.0);
        if backward {
            aux.dh.resize(n * h, 0.0);
            aux.dgh.resize(n * g, 0.0);
            aux.dax.resize(n * t * g, 0.0);
            aux.dxs.resize(n * t * i, 0.0);
        }
    }

    /// Step t of sample n: row t of every channel, side by side.
    fn gather(&self, x: &[f32], n: usize, xs: &mut [f32]) {
        let (t_len, c, w, i) = (self.steps, self.c, self.w, self.inp());
        for s in 0..n {
            let xin = &x[s * c * t_len * w..(s + 1) * c * t_len * w];
            for t in 0..t_len {
                let row = &mut xs[(s * t_len + t) * i..(s * t_len + t + 1) * i];
                for ch in 0..c {
                    row[ch * w..(ch + 1) * w].copy_from_slice(&xin[(ch * t_len + t) * w..(ch * t_len + t + 1) * w]);
                }
            }
        }
    }

    /// The inverse of `gather`: step gradients back to the input's C x T x W layout.
    fn scatter(&self, xs: &[f32], n: usize, x: &mut [f32]) {
        let (t_len, c, w, i) = (self.steps, self.c, self.w, self.inp());
        for s in 0..n {
            let xin = &mut x[s * c * t_len * w..(s + 1) * c * t_len * w];
            for t in 0..t_len {
                let row = &xs[(s * t_len + t) * i..(s * t_len + t + 1) * i];
                for ch in 0..c {
                    xin[(ch * t_len + t) * w..(ch * t_len + t + 1) * w].copy_from_slice(&row[ch * w..(ch + 1) * w]);
                }
            }
        }
    }

    /// The forward pass: `y` gets h_T (or h_1..h_T with `seq_out`); `aux` keeps every state.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        wx: &[f32],
        wh: &[f32],
        b: Option<&[f32]>,
        bh: Option<&[f32]>,
        aux: &mut RnnAux,
        y: &mut [f32],
    ) {
        let (t_len, i, g, h) = (self.steps, self.inp(), self.gates(), self.hidden);
        self.gather(x, n, &mut aux.xs);
        let ax = &mut aux.ax[..n * t_len * g];
        match b {
            Some(b) => ax.chunks_exact_mut(g).for_each(|r| r.copy_from_slice(b)),
            None => ax.fill(0.0),
        }
        linalg::matmul(n * t_len, g, i, &aux.xs, false, wx, true, ax, true);
        aux.hs[..n * h].fill(0.0);
        for t in 0..t_len {
            let (prev, next) = aux.hs.split_at_mut((t + 1) * n * h);
            let hp = &prev[t * n * h..];
            let hn = &mut next[..n * h];
            let gh = &mut aux.gh[..n * g];
            match bh {
                Some(bh) => gh.chunks_exact_mut(g).for_each(|r| r.copy_from_slice(bh)),
                None => gh.fill(0.0),
            }
            linalg::matmul(n, g, h, hp, false, wh, true, gh, true);
            for s in 0..n {
                let a = &ax[(s * t_len + t) * g..(s * t_len + t + 1) * g];
                let ghs = &gh[s * g..(s + 1) * g];
                let out = &mut hn[s * h..(s + 1) * h];
                match self.cell {
                    Cell::Elman => {
                        for j in 0..h {
                            out[j] = (a[j] + ghs[j]).tanh();
                        }
                    }
                    Cell::Gru => {
                        let gt = &mut aux.gates[(t * n + s) * 4 * h..(t * n + s + 1) * 4 * h];
                        let hps = &hp[s * h..(s + 1) * h];
                        for j in 0..h {
                            let r = sigmoid(a[j] + ghs[j]);
                            let z = sigmoid(a[h + j] + ghs[h + j]);
                            let hnj = ghs[2 * h + j];
                            let nv = (a[2 * h + j] + r * hnj).tanh();
                            out[j] = (1.0 - z) * nv + z * hps[j];
                            gt[j] = r;
                            gt[h + j] = z;
                            gt[2 * h + j] = nv;
                            gt[3 * h + j] = hnj;
                        }
                    }
                }
            }
        }
        self.output(&aux.hs, n, y);
    }

    /// Copy the states the layer outputs from `hs` (laid out as `RnnAux::hs`) into `y`.
    fn output(&self, hs: &[f32], n: usize, y: &mut [f32]) {
        let (t_len, h) = (self.steps, self.hidden);
        if self.seq_out {
            for s in 0..n {
                for t in 0..t_len {
                    let src = &hs[((t + 1) * n + s) * h..((t + 1) * n + s + 1) * h];
                    y[(s * t_len + t) * h..(s * t_len + t + 1) * h].copy_from_slice(src);
                }
            }
        } else {
            y[..n * h].copy_from_slice(&hs[t_len * n * h..(t_len + 1) * n * h]);
        }
    }

    /// Scratch lengths for `jvp`: (tangents of the steps' inputs and input projections, of the
    /// states and recurrent products).
    pub fn jvp_scratch(&self, n: usize) -> (usize, usize) {
        let (t, i, g, h) = (self.steps, self.inp(), self.gates(), self.hidden);
        (n * t * (i + g), (t + 1) * n * h + n * g)
    }

    /// Forward mode: the tangent `dy` of the output along the input tangent `v`, at the last
    /// forward pass's point (weights held fixed). Per step, with v_a = W_x v_x + W_h v_h:
    /// Elman v_h' = (1 - h'^2) (.) v_a; GRU v_r = r(1 - r) v_a,r, v_z = z(1 - z) v_a,z,
    /// v_n = (1 - n^2) (.) (v_a,n(x) + v_r (.) (W_hn h + b_hn) + r (.) W_hn v_h),
    /// v_h' = (1 - z) (.) v_n + z (.) v_h + (h - n) (.) v_z.
    #[allow(clippy::too_many_arguments)]
    pub fn jvp(
        &self,
        v: &[f32],
        n: usize,
        wx: &[f32],
        wh: &[f32],
        aux: &RnnAux,
        s1: &mut [f32],
        s2: &mut [f32],
        dy: &mut [f32],
    ) {
        let (t_len, i, g, h) = (self.steps, self.inp(), self.gates(), self.hidden);
        let (vxs, rest) = s1.split_at_mut(n * t_len * i);
        let vax = &mut rest[..n * t_len * g];
        self.gather(v, n, vxs);
        linalg::matmul(n * t_len, g, i, vxs, false, wx, true, vax, false);
        let (vhs, rest) = s2.split_at_mut((t_len + 1) * n * h);
        let vgh = &mut rest[..n * g];
        vhs[..n * h].fill(0.0);
        for t in 0..t_len {
            let (prev, next) = vhs.split_at_mut((t + 1) * n * h);
            let vhp = &prev[t * n * h..];
            let vhn = &mut next[..n * h];
            linalg::matmul(n, g, h, vhp, false, wh, true, vgh, false);
            let hp = &aux.hs[t * n * h..(t + 1) * n * h];
            let hn = &aux.hs[(t + 1) * n * h..(t + 2) * n * h];
            for s in 0..n {
                let va = &vax[(s * t_len + t) * g..(s * t_len + t + 1) * g];
                let vg = &vgh[s * g..(s + 1) * g];
                let out = &mut vhn[s * h..(s + 1) * h];
                match self.cell {
                    Cell::Elman => {
                        for j in 0..h {
                            let hv = hn[s * h + j];
                            out[j] = (1.0 - hv * hv) * (va[j] + vg[j]);
                        }
                    }
                    Cell::Gru => {
                        let gt = &aux.gates[(t * n + s) * 4 * h..(t * n + s + 1) * 4 * h];
                        for j in 0..h {
                            let (r, z, nv, hnj) = (gt[j], gt[h + j], gt[2 * h + j], gt[3 * h + j]);
                            let vr = r * (1.0 - r) * (va[j] + vg[j]);
                            let vz = z * (1.0 - z) * (va[h + j] + vg[h + j]);
                            let vn = (1.0 - nv * nv) * (va[2 * h + j] + vr * hnj + r * vg[2 * h + j]);
                            out[j] = (1.0 - z) * vn + z * vhp[s * h + j] + (hp[s * h + j] - nv) * vz;
                        }
                    }
                }
            }
        }
        self.output(vhs, n, dy);
    }

    /// State h_t (t = 1..T) of every sample: N x H.
    pub fn state<'a>(&self, aux: &'a RnnAux, n: usize, t: usize) -> &'a [f32] {
        let h = self.hidden;
        &aux.hs[t * n * h..(t + 1) * n * h]
    }

    /// Backpropagation through time from `gy` (dL/dy, y as `forward` wrote it), or with
    /// `truncate` the sum of every step's one-step gradient from `gy` laid out as a sequence
    /// output (N x T x H: dL/dh_t of each step's own loss). Overwrites dW_x, dW_h, db, db_h; `dx`
    /// gets dL/dx through `fx` (W_x, or a feedback matrix of its shape) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gy: &[f32],
        n: usize,
        wh: &[f32],
        aux: &mut RnnAux,
        truncate: bool,
        dwx: &mut [f32],
        dwh: &mut [f32],
        db: Option<&mut [f32]>,
        mut dbh: Option<&mut [f32]>,
        dx: Option<(&[f32], &mut [f32])>,
    ) {
        let (t_len, i, g, h) = (self.steps, self.inp(), self.gates(), self.hidden);
        let seq = self.seq_out || truncate;
        debug_assert_eq!(gy.len(), n * if seq { t_len * h } else { h });
        dwh.fill(0.0);
        if let Some(d) = dbh.as_deref_mut() {
            d.fill(0.0);
        }
        let dh = &mut aux.dh[..n * h];
        dh.fill(0.0);
        for t in (0..t_len).rev() {
            // dL/dh_{t+1}: the output's gradient at this step (plus, untruncated, what came back
            // from the later steps).
            if truncate {
                dh.fill(0.0);
            }
            if seq {
                for s in 0..n {
                    let src = &gy[(s * t_len + t) * h..(s * t_len + t + 1) * h];
                    for (d, v) in dh[s * h..(s + 1) * h].iter_mut().zip(src) {
                        *d += v;
                    }
                }
            } else if t == t_len - 1 {
                dh.copy_from_slice(&gy[..n * h]);
            }
            let hp = &aux.hs[t * n * h..(t + 1) * n * h];
            let hn = &aux.hs[(t + 1) * n * h..(t + 2) * n * h];
            let dgh = &mut aux.dgh[..n * g];
            for s in 0..n {
                let dax = &mut aux.dax[(s * t_len + t) * g..(s * t_len + t + 1) * g];
                let dghs = &mut dgh[s * g..(s + 1) * g];
                let dhs = &mut dh[s * h..(s + 1) * h];
                match self.cell {
                    Cell::Elman => {
                        for j in 0..h {
                            let hv = hn[s * h + j];
                            let da = dhs[j] * (1.0 - hv * hv);
                            dax[j] = da;
                            dghs[j] = da;
                        }
                    }
                    Cell::Gru => {
                        let gt = &aux.gates[(t * n + s) * 4 * h..(t * n + s + 1) * 4 * h];
                        for j in 0..h {
                            let (r, z, nv, hnj) = (gt[j], gt[h + j], gt[2 * h + j], gt[3 * h + j]);
                            let d = dhs[j];
                            let dan = d * (1.0 - z) * (1.0 - nv * nv);
                            let daz = d * (hp[s * h + j] - nv) * z * (1.0 - z);
                            let dar = dan * hnj * r * (1.0 - r);
                            dax[j] = dar;
                            dax[h + j] = daz;
                            dax[2 * h + j] = dan;
                            dghs[j] = dar;
                            dghs[h + j] = daz;
                            dghs[2 * h + j] = dan * r;
                            // The direct path h_t = ... + z h_{t-1}.
                            dhs[j] = d * z;
                        }
                    }
                }
            }
            linalg::matmul(g, h, n, dgh, true, hp, false, dwh, true);
            if let Some(d) = dbh.as_deref_mut() {
                linalg::add_col_sums(dgh, n, g, d);
            }
            if !truncate && t > 0 {
                // dL/dh_t += dgh W_h (Elman: replaces, the direct path is GRU's only).
                let acc = self.cell == Cell::Gru;
                linalg::matmul(n, h, g, dgh, false, wh, false, dh, acc);
            }
        }
        let dax = &aux.dax[..n * t_len * g];
        linalg::matmul(g, i, n * t_len, dax, true, &aux.xs, false, dwx, false);
        if let Some(db) = db {
            db.fill(0.0);
            linalg::add_col_sums(dax, n * t_len, g, db);
        }
        if let Some((fx, dx)) = dx {
            let dxs = &mut aux.dxs[..n * t_len * i];
            linalg::matmul(n * t_len, i, g, dax, false, fx, false, dxs, false);
            self.scatter(dxs, n, dx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn geom(cell: Cell, seq_out: bool) -> RnnGeom {
        RnnGeom { cell, c: 2, w: 3, steps: 4, hidden: 5, seq_out }
    }

    #[derive(Clone)]
    struct P {
        wx: Vec<f32>,
        wh: Vec<f32>,
        b: Vec<f32>,
        bh: Vec<f32>,
    }

    fn field(p: &mut P, which: usize) -> &mut Vec<f32> {
        match which {
            0 => &mut p.wx,
            1 => &mut p.wh,
            2 => &mut p.b,
            _ => &mut p.bh,
        }
    }

    fn params(g: &RnnGeom, rng: &mut Rng) -> P {
        let (i, gg, h) = (g.inp(), g.gates(), g.hidden);
        let mut draw = |len: usize, s: f32| {
            let mut v = vec![0.0; len];
            rng.fill_normal(&mut v, s);
            v
        };
        P { wx: draw(gg * i, 0.5), wh: draw(gg * h, 0.5), b: draw(gg, 0.3), bh: draw(gg, 0.3) }
    }

    fn run(g: &RnnGeom, p: &P, x: &[f32], n: usize) -> Vec<f32> {
        let mut aux = RnnAux::default();
        g.prepare(&mut aux, n, false);
        let mut y = vec![0.0; n * g.out_len()];
        let bh = (g.cell == Cell::Gru).then_some(p.bh.as_slice());
        g.forward(x, n, &p.wx, &p.wh, Some(&p.b), bh, &mut aux, &mut y);
        y
    }

    /// Every parameter's and the input's gradient of L = sum(c (.) y) against central finite
    /// differences (f64 would be exact; f32 with eps 1e-2 agrees to a few 1e-3).
    #[test]
    fn bptt_matches_finite_differences() {
        for cell in [Cell::Elman, Cell::Gru] {
            for seq_out in [false, true] {
                let g = geom(cell, seq_out);
                let n = 3;
                let mut rng = Rng::new(7);
                let p = params(&g, &mut rng);
                let mut x = vec![0.0; n * g.c * g.steps * g.w];
                rng.fill_normal(&mut x, 1.0);
                let mut c = vec![0.0; n * g.out_len()];
                rng.fill_normal(&mut c, 1.0);
                let loss = |p: &P, x: &[f32]| -> f64 {
                    run(&g, p, x, n).iter().zip(&c).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
                };
                let mut aux = RnnAux::default();
                g.prepare(&mut aux, n, true);
                let mut y = vec![0.0; n * g.out_len()];
                let gru = cell == Cell::Gru;
                g.forward(&x, n, &p.wx, &p.wh, Some(&p.b), gru.then_some(&p.bh[..]), &mut aux, &mut y);
                let (mut dwx, mut dwh, mut db, mut dbh) =
                    (vec![0.0; p.wx.len()], vec![0.0; p.wh.len()], vec![0.0; p.b.len()], vec![0.0; p.bh.len()]);
                let mut dx = vec![0.0; x.len()];
                g.backward(
                    &c,
                    n,
                    &p.wh,
                    &mut aux,
                    false,
                    &mut dwx,
                    &mut dwh,
                    Some(&mut db),
                    gru.then_some(&mut dbh[..]),
                    Some((&p.wx, &mut dx)),
                );
                let eps = 1e-2f32;
                let check = |name: &str, got: &[f32], fd: &dyn Fn(usize) -> f64| {
                    for (j, gv) in got.iter().enumerate() {
                        let want = fd(j);
                        assert!(
                            (*gv as f64 - want).abs() < 5e-3 + 5e-3 * want.abs(),
                            "{cell:?} seq_out {seq_out} {name}[{j}]: {gv} vs finite difference {want}"
                        );
                    }
                };
                let fd = |which: usize, j: usize| -> f64 {
                    let mut q = p.clone();
                    let v = field(&mut q, which)[j];
                    field(&mut q, which)[j] = v + eps;
                    let a = loss(&q, &x);
                    field(&mut q, which)[j] = v - eps;
                    let b = loss(&q, &x);
                    (a - b) / (2.0 * eps as f64)
                };
                check("wx", &dwx, &|j| fd(0, j));
                check("wh", &dwh, &|j| fd(1, j));
                check("b", &db, &|j| fd(2, j));
                if gru {
                    check("bh", &dbh, &|j| fd(3, j));
                }
                check("x", &dx, &|j| {
                    let mut xp = x.clone();
                    xp[j] += eps;
                    let a = loss(&p, &xp);
                    xp[j] -= 2.0 * eps;
                    let b = loss(&p, &xp);
                    (a - b) / (2.0 * eps as f64)
                });
            }
        }
    }

    /// Truncated: each step's gradient of its own loss c_t . h_t with h_{t-1} held fixed; on an
    /// Elman cell, step t's share of dW_x is (c_t (.) (1 - h_t^2)) x_t^T by hand.
    #[test]
    fn truncated_gradient_is_the_sum_of_one_step_gradients() {
        let g = RnnGeom { cell: Cell::Elman, c: 1, w: 2, steps: 3, hidden: 2, seq_out: false };
        let n = 1;
        let mut rng = Rng::new(3);
        let p = params(&g, &mut rng);
        let x = [0.5, -1.0, 2.0, 0.25, -0.5, 1.5];
        let c = [1.0, -2.0, 0.5, 0.5, -1.0, 3.0];
        let mut aux = RnnAux::default();
        g.prepare(&mut aux, n, true);
        let mut y = vec![0.0; 2];
        g.forward(&x, n, &p.wx, &p.wh, Some(&p.b), None, &mut aux, &mut y);
        let (mut dwx, mut dwh, mut db) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 2]);
        g.backward(&c, n, &p.wh, &mut aux, true, &mut dwx, &mut dwh, Some(&mut db), None, None);
        let mut want = [0.0f32; 4];
        let mut want_h = [0.0f32; 4];
        for t in 0..3 {
            let ht = g.state(&aux, n, t + 1);
            let hp = if t == 0 { vec![0.0, 0.0] } else { g.state(&aux, n, t).to_vec() };
            for j in 0..2 {
                let da = c[t * 2 + j] * (1.0 - ht[j] * ht[j]);
                for k in 0..2 {
                    want[j * 2 + k] += da * x[t * 2 + k];
                    want_h[j * 2 + k] += da * hp[k];
                }
            }
        }
        for (a, b) in dwx.iter().zip(&want).chain(dwh.iter().zip(&want_h)) {
            assert!((a - b).abs() < 1e-5, "{dwx:?} {dwh:?} vs {want:?} {want_h:?}");
        }
    }

    /// GRU, truncated: the sum over steps of the gradient of each step's own loss c_t . h_t with
    /// h_{t-1} held at its forward value, against central finite differences of a reference GRU
    /// cell written here from PyTorch's equations (in f64), which also reproduces the forward's
    /// states (the gate layout r, z, n).
    #[test]
    fn truncated_gru_gradient_matches_finite_differences_of_the_one_step_losses() {
        let g = RnnGeom { cell: Cell::Gru, c: 1, w: 3, steps: 4, hidden: 3, seq_out: false };
        let (n, t_len, h, i) = (2, g.steps, g.hidden, g.w);
        let mut rng = Rng::new(11);
        let p = params(&g, &mut rng);
        let mut x = vec![0.0; n * t_len * i];
        rng.fill_normal(&mut x, 1.0);
        let mut c = vec![0.0; n * t_len * h];
        rng.fill_normal(&mut c, 1.0);
        let mut aux = RnnAux::default();
        g.prepare(&mut aux, n, true);
        let mut y = vec![0.0; n * g.out_len()];
        g.forward(&x, n, &p.wx, &p.wh, Some(&p.b), Some(&p.bh), &mut aux, &mut y);
        let (mut dwx, mut dwh, mut db, mut dbh) =
            (vec![0.0; p.wx.len()], vec![0.0; p.wh.len()], vec![0.0; p.b.len()], vec![0.0; p.bh.len()]);
        g.backward(&c, n, &p.wh, &mut aux, true, &mut dwx, &mut dwh, Some(&mut db), Some(&mut dbh), None);
        // h_t of sample s (t = 0: the zero initial state).
        let state = |t: usize, s: usize| g.state(&aux, n, t)[s * h..(s + 1) * h].to_vec();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let cell = |q: &P, xt: &[f32], hp: &[f32]| -> Vec<f64> {
            let dot = |w: &[f32], row: usize, v: &[f32]| -> f64 {
                (0..v.len()).map(|k| w[row * v.len() + k] as f64 * v[k] as f64).sum::<f64>()
            };
            let ax = |row: usize| dot(&q.wx, row, xt) + q.b[row] as f64;
            let ah = |row: usize| dot(&q.wh, row, hp) + q.bh[row] as f64;
            (0..h)
                .map(|j| {
                    let r = sig(ax(j) + ah(j));
                    let z = sig(ax(h + j) + ah(h + j));
                    let nv = (ax(2 * h + j) + r * ah(2 * h + j)).tanh();
                    (1.0 - z) * nv + z * hp[j] as f64
                })
                .collect()
        };
        for s in 0..n {
            for t in 0..t_len {
                let want = cell(&p, &x[(s * t_len + t) * i..(s * t_len + t + 1) * i], &state(t, s));
                for (a, b) in state(t + 1, s).iter().zip(&want) {
                    assert!((*a as f64 - b).abs() < 1e-5, "the reference cell differs from the forward: {a} vs {b}");
                }
            }
        }
        let loss = |q: &P| -> f64 {
            let mut l = 0.0;
            for s in 0..n {
                for t in 0..t_len {
                    let ht = cell(q, &x[(s * t_len + t) * i..(s * t_len + t + 1) * i], &state(t, s));
                    l += (0..h).map(|j| c[(s * t_len + t) * h + j] as f64 * ht[j]).sum::<f64>();
                }
            }
            l
        };
        let eps = 1e-3f32;
        for (which, name, got) in [(0, "wx", &dwx), (1, "wh", &dwh), (2, "b", &db), (3, "bh", &dbh)] {
            for (j, gv) in got.iter().enumerate() {
                let mut q = p.clone();
                let v = field(&mut q, which)[j];
                field(&mut q, which)[j] = v + eps;
                let a = loss(&q);
                field(&mut q, which)[j] = v - eps;
                let want = (a - loss(&q)) / (2.0 * eps as f64);
                assert!((*gv as f64 - want).abs() < 2e-3 + 2e-3 * want.abs(), "{name}[{j}]: {gv} vs {want}");
            }
        }
    }

    /// Multi-channel inputs: step t is row t of every channel (gather and scatter are inverse).
    #[test]
    fn steps_are_rows_of_every_channel() {
        let g = geom(Cell::Elman, false);
        let n = 2;
        let x: Vec<f32> = (0..n * g.c * g.steps * g.w).map(|v| v as f32).collect();
        let mut xs = vec![0.0; x.len()];
        g.gather(&x, n, &mut xs);
        // Sample 1, step 2: channel 0 row 2 = 24 + 6..9, channel 1 row 2 = 24 + 18..21.
        assert_eq!(&xs[(4 + 2) * 6..(4 + 3) * 6], &[30.0, 31.0, 32.0, 42.0, 43.0, 44.0]);
        let mut back = vec![0.0; x.len()];
        g.scatter(&xs, n, &mut back);
        assert_eq!(back, x);
    }
}
