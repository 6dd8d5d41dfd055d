//! Transformer layers for sequence models (Pinchetti et al. 2022's conditional language model;
//! nanoGPT's block): token + learned position embedding, layer norm, and a pre-norm block of
//! multi-head causal self-attention and a GELU MLP, each with its residual connection.
//!
//! A sample is a sequence of T tokens; its activations are T rows of d values (row t = position
//! t), so a batch of N samples is an (N T) x d row-major matrix and every projection is one GEMM
//! over all N T rows. The embedding reads token ids (stored as f32 in the input, as the data
//! set's `alphabet` gives them).
//!
//!   embed      h_t = E[id_t] + P[t]
//!   layer norm LN(x) = g (.) (x - mean(x)) / sqrt(var(x) + 1e-5) + b          (per row)
//!   block      a = x + W_o Attn(LN_1(x)) + b_o,     y = a + W_2 gelu(W_1 LN_2(a) + b_1) + b_2
//!   attention  [q k v] = W_qkv h + b_qkv;  per head: P = softmax(q k^T / sqrt(d_h) + causal mask);
//!              o = P v; the heads' o side by side
//!   gelu       0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))   (PyTorch's approximate = "tanh")
//!
//! Backward is the exact gradient of each (checked against finite differences in the tests);
//! the block's input gradient and every parameter's gradient come from one call.
//!
//! # Shapes
//! R = N T rows. Block scratch (`BlockAux`): h1, h2 (LN outputs, R x d), their x-hat and
//! 1/std per row, qkv (R x 3d), the attention probabilities (N x H x T x T, only j <= i used),
//! o (R x d), a (R x d), u and gelu(u) (R x 4d).

use crate::linalg;
use rayon::prelude::*;

/// The embedding: vocabulary, context length T, width d.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbedGeom {
    pub vocab: usize,
    pub ctx: usize,
    pub d: usize,
}

impl EmbedGeom {
    /// y[s, t] = tok[id] + pos[t] for the ids in `x` (N x T, ids as f32, clamped to the
    /// vocabulary).
    pub fn forward(&self, x: &[f32], n: usize, tok: &[f32], pos: &[f32], y: &mut [f32]) {
        let (t, d) = (self.ctx, self.d);
        y[..n * t * d].par_chunks_mut(d).enumerate().for_each(|(r, row)| {
            let id = self.id(x[r]);
            let p = r % t;
            for ((o, e), q) in row.iter_mut().zip(&tok[id * d..(id + 1) * d]).zip(&pos[p * d..(p + 1) * d]) {
                *o = e + q;
            }
        });
    }

    pub fn id(&self, v: f32) -> usize {
        (v.max(0.0) as usize).min(self.vocab - 1)
    }

    /// dtok (vocab x d) and dpos (T x d), overwritten, from g (R x d).
    pub fn backward(&self, x: &[f32], g: &[f32], n: usize, dtok: &mut [f32], dpos: &mut [f32]) {
        let (t, d) = (self.ctx, self.d);
        dtok.fill(0.0);
        dpos.fill(0.0);
        for r in 0..n * t {
            let id = self.id(x[r]);
            let gr = &g[r * d..(r + 1) * d];
            linalg::axpy(1.0, gr, &mut dtok[id * d..(id + 1) * d]);
            // (Fixed sinusoidal positions are a buffer: no gradient slot.)
            if !dpos.is_empty() {
                let p = r % t;
                linalg::axpy(1.0, gr, &mut dpos[p * d..(p + 1) * d]);
            }
        }
    }
}

pub const LN_EPS: f32 = 1e-5;

/// Layer norm over rows of `d`: y = g xhat + b; keeps xhat and 1/std per row.
pub fn ln_forward(x: &[f32], d: usize, g: &[f32], b: &[f32], y: &mut [f32], xhat: &mut [f32], rstd: &mut [f32]) {
    y.par_chunks_mut(d).zip(xhat.par_chunks_mut(d)).zip(rstd.par_iter_mut()).enumerate().for_each(
        |(r, ((yr, hr), rs))| {
            let xr = &x[r * d..(r + 1) * d];
            let mean = xr.iter().sum::<f32>() / d as f32;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let s = 1.0 / (var + LN_EPS).sqrt();
            *rs = s;
            for j in 0..d {
                hr[j] = (xr[j] - mean) * s;
                yr[j] = g[j] * hr[j] + b[j];
            }
        },
    );
}

/// Layer norm's backward: dg, db overwritten (summed over rows in order); dx (when given)
/// overwritten, or added to when `add`.
#[allow(clippy::too_many_arguments)]
pub fn ln_backward(
    gy: &[f32],
    d: usize,
    g: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    dg: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    add: bool,
) {
    dg.fill(0.0);
    db.fill(0.0);
    for (gr, hr) in gy.chunks_exact(d).zip(xhat.chunks_exact(d)) {
        for j in 0..d {
            dg[j] += gr[j] * hr[j];
            db[j] += gr[j];
        }
    }
    let Some(dx) = dx else { return };
    dx.par_chunks_mut(d).enumerate().for_each(|(r, dr)| {
        let (gr, hr) = (&gy[r * d..(r + 1) * d], &xhat[r * d..(r + 1) * d]);
        let (mut m1, mut m2) = (0.0f32, 0.0f32);
        for j in 0..d {
            let dh = gr[j] * g[j];
            m1 += dh;
            m2 += dh * hr[j];
        }
        let (m1, m2) = (m1 / d as f32, m2 / d as f32);
        for j in 0..d {
            let v = rstd[r] * (gr[j] * g[j] - m1 - hr[j] * m2);
            if add {
                dr[j] += v;
            } else {
                dr[j] = v;
            }
        }
    });
}

const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)

/// tanh in f32 as a branch-free rational function that vectorises (libm's `tanhf` is a scalar
/// call, a third of a language model's training time): Eigen's `ptanh_float` (the input clamped
/// to +-7.9053, where tanh is 1 in f32; a 13/6-degree odd/even rational fit), within 4e-7 of tanh
/// everywhere (about 3 ulp near +-1; tested against f64).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_187_9e-13;
    p = p * x2 + -8.604_671_5e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    p *= x;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    if x.abs() < 4e-4 {
        x
    } else {
        p / q
    }
}

pub fn gelu(u: f32) -> f32 {
    0.5 * u * (1.0 + tanh(GELU_C * (u + 0.044715 * u * u * u)))
}

pub fn gelu_grad(u: f32) -> f32 {
    let t = tanh(GELU_C * (u + 0.044715 * u * u * u));
    0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * u * u)
}

/// The parameters of one block (indices into the network's parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockParams {
    pub ln1: (usize, usize),
    pub qkv: (usize, usize),
    pub proj: (usize, usize),
    pub ln2: (usize, usize),
    pub fc1: (usize, usize),
    pub fc2: (usize, usize),
}

impl BlockParams {
    pub fn ids(&self) -> [usize; 12] {
        let p = self;
        [p.ln1.0, p.ln1.1, p.qkv.0, p.qkv.1, p.proj.0, p.proj.1, p.ln2.0, p.ln2.1, p.fc1.0, p.fc1.1, p.fc2.0, p.fc2.1]
    }
}

/// One pre-norm block: context T, width d, heads H (d_h = d / H), MLP width `hidden`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGeom {
    pub ctx: usize,
    pub d: usize,
    pub heads: usize,
    pub hidden: usize,
}

/// What a block keeps from its forward pass for the backward pass (and scratch).
#[derive(Debug, Default)]
pub struct BlockAux {
    h1: Vec<f32>,
    xh1: Vec<f32>,
    rs1: Vec<f32>,
    qkv: Vec<f32>,
    p: Vec<f32>,
    o: Vec<f32>,
    a: Vec<f32>,
    h2: Vec<f32>,
    xh2: Vec<f32>,
    rs2: Vec<f32>,
    u: Vec<f32>,
    m: Vec<f32>,
    // Backward scratch.
    gu: Vec<f32>,
    gh: Vec<f32>,
    ga: Vec<f32>,
    go: Vec<f32>,
    gqkv: Vec<f32>,
}

impl BlockAux {
    pub fn bytes(&self) -> usize {
        [
            &self.h1, &self.xh1, &self.rs1, &self.qkv, &self.p, &self.o, &self.a, &self.h2, &self.xh2, &self.rs2,
            &self.u, &self.m, &self.gu, &self.gh, &self.ga, &self.go, &self.gqkv,
        ]
        .iter()
        .map(|v| v.capacity() * 4)
        .sum()
    }
}

/// Borrow several distinct parameter gradients at once (taken out, then put back).
fn with_grads<const K: usize>(grads: &mut [Vec<f32>], ids: [usize; K], f: impl FnOnce(&mut [Vec<f32>; K])) {
    let mut taken: [Vec<f32>; K] = ids.map(|i| std::mem::take(&mut grads[i]));
    f(&mut taken);
    for (i, v) in ids.into_iter().zip(taken) {
        grads[i] = v;
    }
}

impl BlockGeom {
    pub fn dh(&self) -> usize {
        self.d / self.heads
    }

    pub fn prepare(&self, a: &mut BlockAux, n: usize, backward: bool) {
        let (r, d, h, t) = (n * self.ctx, self.d, self.hidden, self.ctx);
        for (v, len) in [
            (&mut a.h1, r * d),
            (&mut a.xh1, r * d),
            (&mut a.rs1, r),
            (&mut a.qkv, r * 3 * d),
            (&mut a.p, n * self.heads * t * t),
            (&mut a.o, r * d),
            (&mut a.a, r * d),
            (&mut a.h2, r * d),
            (&mut a.xh2, r * d),
            (&mut a.rs2, r),
            (&mut a.u, r * h),
            (&mut a.m, r * h),
        ] {
            v.resize(len, 0.0);
        }
        if backward {
            for (v, len) in [
                (&mut a.gu, r * h),
                (&mut a.gh, r * d),
                (&mut a.ga, r * d),
                (&mut a.go, r * d),
                (&mut a.gqkv, r * 3 * d),
            ] {
                v.resize(len, 0.0);
            }
        }
    }

    /// The block's forward pass over x (R x d) into y (R x d).
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        params: &[super::Param],
        p: &BlockParams,
        a: &mut BlockAux,
        y: &mut [f32],
    ) {
        let (r, d, hid) = (n * self.ctx, self.d, self.hidden);
        let w = |i: usize| params[i].data.as_slice();
        ln_forward(x, d, w(p.ln1.0), w(p.ln1.1), &mut a.h1[..r * d], &mut a.xh1[..r * d], &mut a.rs1[..r]);
        super::dense_forward(&a.h1[..r * d], r, d, 3 * d, w(p.qkv.0), Some(w(p.qkv.1)), &mut a.qkv[..r * 3 * d]);
        self.attention(n, &a.qkv, &mut a.p, &mut a.o);
        super::dense_forward(&a.o[..r * d], r, d, d, w(p.proj.0), Some(w(p.proj.1)), &mut a.a[..r * d]);
        for (av, xv) in a.a[..r * d].iter_mut().zip(x) {
            *av += xv;
        }
        ln_forward(&a.a[..r * d], d, w(p.ln2.0), w(p.ln2.1), &mut a.h2[..r * d], &mut a.xh2[..r * d], &mut a.rs2[..r]);
        super::dense_forward(&a.h2[..r * d], r, d, hid, w(p.fc1.0), Some(w(p.fc1.1)), &mut a.u[..r * hid]);
        a.m[..r * hid].par_iter_mut().zip(&a.u[..r * hid]).for_each(|(m, &u)| *m = gelu(u));
        super::dense_forward(&a.m[..r * hid], r, hid, d, w(p.fc2.0), Some(w(p.fc2.1)), &mut y[..r * d]);
        for (yv, av) in y[..r * d].iter_mut().zip(&a.a[..r * d]) {
            *yv += av;
        }
    }

    /// Causal multi-head attention: probabilities into `p` (N x H x T x T), outputs into `o`.
    fn attention(&self, n: usize, qkv: &[f32], p: &mut [f32], o: &mut [f32]) {
        let (t, d, dh, hh) = (self.ctx, self.d, self.dh(), self.heads);
        let scale = 1.0 / (dh as f32).sqrt();
        linalg::add_macs((n * hh * t * (t + 1) * dh) as u64);
        // One task per sample: its heads' probabilities and its T rows of o.
        p[..n * hh * t * t].par_chunks_mut(hh * t * t).zip(o[..n * t * d].par_chunks_mut(t * d)).enumerate().for_each(
            |(s, (ps, os))| {
                let q = &qkv[s * t * 3 * d..(s + 1) * t * 3 * d];
                os.fill(0.0);
                for h in 0..hh {
                    let (qo, ko, vo) = (h * dh, d + h * dh, 2 * d + h * dh);
                    for i in 0..t {
                        let prow = &mut ps[(h * t + i) * t..(h * t + i + 1) * t];
                        let qi = &q[i * 3 * d + qo..i * 3 * d + qo + dh];
                        let mut mx = f32::NEG_INFINITY;
                        for j in 0..=i {
                            let kj = &q[j * 3 * d + ko..j * 3 * d + ko + dh];
                            let sv = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
                            prow[j] = sv;
                            mx = mx.max(sv);
                        }
                        let mut sum = 0.0f32;
                        for pv in prow[..=i].iter_mut() {
                            *pv = (*pv - mx).exp();
                            sum += *pv;
                        }
                        let inv = 1.0 / sum;
                        prow[..=i].iter_mut().for_each(|v| *v *= inv);
                        prow[i + 1..].fill(0.0);
                        let orow = &mut os[i * d + h * dh..i * d + (h + 1) * dh];
                        for j in 0..=i {
                            let vj = &q[j * 3 * d + vo..j * 3 * d + vo + dh];
                            let pj = prow[j];
                            for (ov, vv) in orow.iter_mut().zip(vj) {
                                *ov += pj * vv;
                            }
                        }
                    }
                }
            },
        );
    }

    /// The block's backward pass from gy (R x d): every parameter gradient (overwritten) and,
    /// when `dx` is given, the input gradient (overwritten).
    pub fn backward(
        &self,
        gy: &[f32],
        n: usize,
        params: &[super::Param],
        p: &BlockParams,
        a: &mut BlockAux,
        grads: &mut [Vec<f32>],
        dx: Option<&mut [f32]>,
    ) {
        let (r, d, hid) = (n * self.ctx, self.d, self.hidden);
        let w = |i: usize| params[i].data.as_slice();
        let gy = &gy[..r * d];
        // MLP: y = a + W2 m + b2, m = gelu(u), u = W1 h2 + b1.
        with_grads(grads, [p.fc2.0, p.fc2.1], |[dw, db]| {
            super::dense_grads(gy, &a.m[..r * hid], r, hid, d, dw, db);
        });
        linalg::matmul(r, hid, d, gy, false, w(p.fc2.0), false, &mut a.gu[..r * hid], false);
        a.gu[..r * hid].par_iter_mut().zip(&a.u[..r * hid]).for_each(|(g, &u)| *g *= gelu_grad(u));
        with_grads(grads, [p.fc1.0, p.fc1.1], |[dw, db]| {
            super::dense_grads(&a.gu[..r * hid], &a.h2[..r * d], r, d, hid, dw, db);
        });
        linalg::matmul(r, d, hid, &a.gu[..r * hid], false, w(p.fc1.0), false, &mut a.gh[..r * d], false);
        // da = gy + LN2'(gh).
        a.ga[..r * d].copy_from_slice(gy);
        with_grads(grads, [p.ln2.0, p.ln2.1], |[dg, db]| {
            ln_backward(
                &a.gh[..r * d],
                d,
                w(p.ln2.0),
                &a.xh2[..r * d],
                &a.rs2[..r],
                dg,
                db,
                Some(&mut a.ga[..r * d]),
                true,
            );
        });
        // Attention: a = x + W_o o + b_o.
        with_grads(grads, [p.proj.0, p.proj.1], |[dw, db]| {
            super::dense_grads(&a.ga[..r * d], &a.o[..r * d], r, d, d, dw, db);
        });
        linalg::matmul(r, d, d, &a.ga[..r * d], false, w(p.proj.0), false, &mut a.go[..r * d], false);
        self.attention_backward(n, &a.qkv, &a.p, &a.go, &mut a.gqkv);
        with_grads(grads, [p.qkv.0, p.qkv.1], |[dw, db]| {
            super::dense_grads(&a.gqkv[..r * 3 * d], &a.h1[..r * d], r, d, 3 * d, dw, db);
        });
        linalg::matmul(r, d, 3 * d, &a.gqkv[..r * 3 * d], false, w(p.qkv.0), false, &mut a.gh[..r * d], false);
        // dx = da + LN1'(gh); without dx, the parameters' gradients only.
        let dx = dx.map(|dx| {
            dx[..r * d].copy_from_slice(&a.ga[..r * d]);
            &mut dx[..r * d]
        });
        with_grads(grads, [p.ln1.0, p.ln1.1], |[dg, db]| {
            ln_backward(&a.gh[..r * d], d, w(p.ln1.0), &a.xh1[..r * d], &a.rs1[..r], dg, db, dx, true);
        });
    }

    fn attention_backward(&self, n: usize, qkv: &[f32], p: &[f32], go: &[f32], gqkv: &mut [f32]) {
        let (t, d, dh, hh) = (self.ctx, self.d, self.dh(), self.heads);
        let scale = 1.0 / (dh as f32).sqrt();
        linalg::add_macs((2 * n * hh * t * (t + 1) * dh) as u64);
        gqkv[..n * t * 3 * d].par_chunks_mut(t * 3 * d).enumerate().for_each(|(s, gs)| {
            let q = &qkv[s * t * 3 * d..(s + 1) * t * 3 * d];
            let gos = &go[s * t * d..(s + 1) * t * d];
            let ps = &p[s * hh * t * t..(s + 1) * hh * t * t];
            gs.fill(0.0);
            let mut ds = vec![0.0f32; t];
            for h in 0..hh {
                let (qo, ko, vo) = (h * dh, d + h * dh, 2 * d + h * dh);
                for i in 0..t {
                    let prow = &ps[(h * t + i) * t..(h * t + i + 1) * t];
                    let goi = &gos[i * d + h * dh..i * d + (h + 1) * dh];
                    // dP_ij = go_i . v_j; dv_j += P_ij go_i.
                    let mut dot = 0.0f32;
                    for j in 0..=i {
                        let vj = &q[j * 3 * d + vo..j * 3 * d + vo + dh];
                        let dp = goi.iter().zip(vj).map(|(a, b)| a * b).sum::<f32>();
                        ds[j] = dp;
                        dot += dp * prow[j];
                        let gv = &mut gs[j * 3 * d + vo..j * 3 * d + vo + dh];
                        for (g, o) in gv.iter_mut().zip(goi) {
                            *g += prow[j] * o;
                        }
                    }
                    // dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik); dq_i += dS_ij k_j s; dk_j += dS_ij q_i s.
                    for j in 0..=i {
                        let dsv = prow[j] * (ds[j] - dot) * scale;
                        if dsv == 0.0 {
                            continue;
                        }
                        for c in 0..dh {
                            let kj = q[j * 3 * d + ko + c];
                            let qi = q[i * 3 * d + qo + c];
                            gs[i * 3 * d + qo + c] += dsv * kj;
                            gs[j * 3 * d + ko + c] += dsv * qi;
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Param, ParamKind};
    use crate::rng::Rng;

    fn param(rng: &mut Rng, len: usize, std: f32, base: f32) -> Param {
        let mut data = vec![0.0; len];
        rng.fill_normal(&mut data, std);
        data.iter_mut().for_each(|v| *v += base);
        Param { name: String::new(), shape: vec![len], data, kind: ParamKind::Weight }
    }

    fn block(rng: &mut Rng, g: BlockGeom) -> (Vec<Param>, BlockParams) {
        let (d, h) = (g.d, g.hidden);
        let sizes =
            [(d, 0.1, 1.0), (d, 0.1, 0.0), (3 * d * d, 0.4, 0.0), (3 * d, 0.1, 0.0), (d * d, 0.4, 0.0), (d, 0.1, 0.0)];
        let more = [(d, 0.1, 1.0), (d, 0.1, 0.0), (h * d, 0.4, 0.0), (h, 0.1, 0.0), (d * h, 0.4, 0.0), (d, 0.1, 0.0)];
        let params: Vec<Param> = sizes.iter().chain(&more).map(|&(l, s, b)| param(rng, l, s, b)).collect();
        let bp = BlockParams { ln1: (0, 1), qkv: (2, 3), proj: (4, 5), ln2: (6, 7), fc1: (8, 9), fc2: (10, 11) };
        (params, bp)
    }

    /// L = sum(c (.) y) for a fixed random c: dL/dy = c.
    fn loss(g: &BlockGeom, x: &[f32], n: usize, params: &[Param], bp: &BlockParams, c: &[f32]) -> f64 {
        let mut a = BlockAux::default();
        g.prepare(&mut a, n, false);
        let mut y = vec![0.0; x.len()];
        g.forward(x, n, params, bp, &mut a, &mut y);
        y.iter().zip(c).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
    }

    #[test]
    fn block_gradients_match_finite_differences() {
        let g = BlockGeom { ctx: 4, d: 6, heads: 2, hidden: 8 };
        let n = 2;
        let mut rng = Rng::new(3);
        let (mut params, bp) = block(&mut rng, g);
        let mut x = vec![0.0; n * g.ctx * g.d];
        rng.fill_normal(&mut x, 1.0);
        let mut c = vec![0.0; x.len()];
        rng.fill_normal(&mut c, 1.0);
        let mut a = BlockAux::default();
        g.prepare(&mut a, n, true);
        let mut y = vec![0.0; x.len()];
        g.forward(&x, n, &params, &bp, &mut a, &mut y);
        let mut grads: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.data.len()]).collect();
        let mut dx = vec![0.0; x.len()];
        g.backward(&c, n, &params, &bp, &mut a, &mut grads, Some(&mut dx));
        let h = 1e-2f32;
        // f32 rounding of the loss (|loss| ~ 5) over 2h is ~6e-5; truncation O(h^2) ~ 1e-4.
        let check = |num: f64, ana: f32, what: &str| {
            assert!((num - ana as f64).abs() < 1e-3 + 2e-2 * num.abs(), "{what}: finite difference {num} vs {ana}");
        };
        // Every tensor's gradient must be well above the absolute floor somewhere, or its check
        // proves nothing (attention's query and key weights included).
        for (pi, gp) in grads.iter().enumerate() {
            let big = gp.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(big > 1e-2, "param {pi}: largest gradient {big}");
        }
        for i in 0..x.len() {
            let mut xp = x.clone();
            xp[i] += h;
            let mut xm = x.clone();
            xm[i] -= h;
            let num = (loss(&g, &xp, n, &params, &bp, &c) - loss(&g, &xm, n, &params, &bp, &c)) / (2.0 * h as f64);
            check(num, dx[i], &format!("dx[{i}]"));
        }
        for pi in 0..params.len() {
            for j in (0..params[pi].data.len()).step_by(3) {
                let v = params[pi].data[j];
                params[pi].data[j] = v + h;
                let lp = loss(&g, &x, n, &params, &bp, &c);
                params[pi].data[j] = v - h;
                let lm = loss(&g, &x, n, &params, &bp, &c);
                params[pi].data[j] = v;
                check((lp - lm) / (2.0 * h as f64), grads[pi][j], &format!("param {pi}[{j}]"));
            }
        }
    }

    #[test]
    fn attention_is_causal() {
        // Changing the last token's input changes no earlier position's output.
        let g = BlockGeom { ctx: 5, d: 4, heads: 2, hidden: 4 };
        let mut rng = Rng::new(1);
        let (params, bp) = block(&mut rng, g);
        let mut x = vec![0.0; g.ctx * g.d];
        rng.fill_normal(&mut x, 1.0);
        let run = |x: &[f32]| {
            let mut a = BlockAux::default();
            g.prepare(&mut a, 1, false);
            let mut y = vec![0.0; x.len()];
            g.forward(x, 1, &params, &bp, &mut a, &mut y);
            y
        };
        let y0 = run(&x);
        x[(g.ctx - 1) * g.d] += 1.0;
        let y1 = run(&x);
        let cut = (g.ctx - 1) * g.d;
        assert_eq!(y0[..cut], y1[..cut]);
        assert_ne!(y0[cut..], y1[cut..]);
    }

    #[test]
    fn layer_norm_by_hand_and_gradient() {
        // x = [1, 2, 3]: mean 2, var 2/3: xhat = [-1.2247, 0, 1.2247].
        let (mut y, mut xh, mut rs) = (vec![0.0; 3], vec![0.0; 3], vec![0.0; 1]);
        ln_forward(&[1.0, 2.0, 3.0], 3, &[1.0, 2.0, 1.0], &[0.0, 0.5, 0.0], &mut y, &mut xh, &mut rs);
        let k = 1.0 / (2.0f32 / 3.0 + LN_EPS).sqrt();
        assert!((y[0] + k).abs() < 1e-5 && (y[1] - 0.5).abs() < 1e-6 && (y[2] - k).abs() < 1e-5, "{y:?}");
        // Gradient of sum(c y) in x against finite differences.
        let (x, g, b, c) = ([0.3f32, -1.0, 2.0, 0.7], [1.5f32, 0.5, -1.0, 2.0], [0.1f32; 4], [1.0f32, -2.0, 0.5, 3.0]);
        let f = |x: &[f32]| {
            let (mut y, mut xh, mut rs) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 1]);
            ln_forward(x, 4, &g, &b, &mut y, &mut xh, &mut rs);
            y.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum::<f64>()
        };
        let (mut y, mut xh, mut rs) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 1]);
        ln_forward(&x, 4, &g, &b, &mut y, &mut xh, &mut rs);
        let (mut dg, mut db, mut dx) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 4]);
        ln_backward(&c, 4, &g, &xh, &rs, &mut dg, &mut db, Some(&mut dx), false);
        for i in 0..4 {
            let (mut p, mut m) = (x, x);
            p[i] += 1e-3;
            m[i] -= 1e-3;
            let num = (f(&p) - f(&m)) / 2e-3;
            assert!((num - dx[i] as f64).abs() < 1e-2, "dx[{i}] {num} vs {}", dx[i]);
            assert!((dg[i] - c[i] * xh[i]).abs() < 1e-6 && db[i] == c[i]);
        }
    }

    #[test]
    fn fast_tanh_is_within_5e7_of_tanh() {
        let mut worst = 0.0f64;
        for k in -200_000..=200_000 {
            let x = k as f32 * 1e-4;
            worst = worst.max((f64::from(tanh(x)) - f64::from(x).tanh()).abs());
        }
        for x in [-1e30f32, -50.0, 50.0, 1e30] {
            assert_eq!(tanh(x), x.signum());
        }
        assert!(worst < 5e-7, "{worst}");
    }

    #[test]
    fn gelu_matches_its_derivative() {
        for u in [-3.0f32, -0.5, 0.0, 0.4, 2.5] {
            let num = (gelu(u + 1e-3) - gelu(u - 1e-3)) / 2e-3;
            assert!((num - gelu_grad(u)).abs() < 1e-3, "{u}: {num} vs {}", gelu_grad(u));
        }
        // PyTorch's gelu(1.0, approximate="tanh") = 0.8411920.
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-6);
    }
}
