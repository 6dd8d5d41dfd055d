//! 2-D convolution as im2col + one GEMM over the whole batch.
//!
//! y[n, o, p] = b[o] + sum_{c, i, j} W[o, (c, i, j)] x[n, c, p_y*s + i - pad, p_x*s + j - pad]
//!
//! # Shapes
//! - input x: N x C x H x W (row-major per sample), output y: N x O x OH x OW,
//!   OH = (H + 2 pad - k) / s + 1 (floor).
//! - W: O x (C k k), b: O.
//! - cols: (C k k) x (N OH OW): one row per kernel tap, each row the whole batch's input
//!   values under that tap (contiguous runs copied straight from input rows), so the forward is
//!   one GEMM `W @ cols` and the backward to the input is `F^T @ g` (F = W for backprop, a
//!   feedback matrix of W's shape for the feedback-alignment family), scattered back by col2im.
//!
//! Zero padding (`reflect: false`) or reflect padding (`reflect: true`, SoftHebb's choice).

use crate::linalg;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub reflect: bool,
}

impl ConvGeom {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output positions per sample.
    pub fn p(&self) -> usize {
        self.oh() * self.ow()
    }
    /// A kernel that covers the whole unpadded input (one output position) is a dense layer
    /// on the flattened C x H x W input: the network runs it as one, skipping im2col.
    pub fn is_dense(&self) -> bool {
        self.k == self.h && self.k == self.w && self.pad == 0
    }

    /// Length of one im2col row.
    pub fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Input coordinate along an axis of length `len` for output index `o` and kernel offset
    /// `i`: None where it falls in zero padding; reflected back inside with reflect padding.
    #[inline]
    fn coord(&self, o: usize, i: usize, len: usize) -> Option<usize> {
        let v = (o * self.stride + i) as isize - self.pad as isize;
        let n = len as isize;
        if self.reflect {
            let v = v.abs();
            Some((if v >= n { 2 * (n - 1) - v } else { v }) as usize)
        } else if v < 0 || v >= n {
            None
        } else {
            Some(v as usize)
        }
    }

    /// For kernel column offset j with stride 1: the output columns [lo, hi) that read the
    /// contiguous input columns [lo + j - pad, hi + j - pad); the rest fall in the padding.
    #[inline]
    fn valid_x(&self, j: usize) -> Option<(usize, usize)> {
        if self.stride != 1 {
            return None;
        }
        let lo = self.pad.saturating_sub(j).min(self.ow());
        let hi = (self.w + self.pad).saturating_sub(j).min(self.ow()).max(lo);
        Some((lo, hi))
    }

    /// Fill `cols` (CKK x (N P), row (c, i, j), column (sample, position)) from `x` (N x C H W).
    pub fn im2col(&self, x: &[f32], n: usize, cols: &mut [f32]) {
        let (p, chw, hw) = (self.p(), self.c * self.h * self.w, self.h * self.w);
        let (oh, ow, k) = (self.oh(), self.ow(), self.k);
        let fill = |r: usize, row: &mut [f32]| {
            let (c, i, j) = (r / (k * k), (r / k) % k, r % k);
            let vx = self.valid_x(j);
            for s in 0..n {
                let plane = &x[s * chw + c * hw..s * chw + (c + 1) * hw];
                let out = &mut row[s * p..(s + 1) * p];
                for oy in 0..oh {
                    let o = &mut out[oy * ow..(oy + 1) * ow];
                    let Some(y) = self.coord(oy, i, self.h) else {
                        o.fill(0.0);
                        continue;
                    };
                    let src = &plane[y * self.w..(y + 1) * self.w];
                    let edge = |ox: usize| self.coord(ox, j, self.w).map_or(0.0, |xx| src[xx]);
                    match vx {
                        Some((lo, hi)) => {
                            for (ox, v) in o[..lo].iter_mut().enumerate() {
                                *v = edge(ox);
                            }
                            let x0 = lo + j - self.pad;
                            for (v, sv) in o[lo..hi].iter_mut().zip(&src[x0..x0 + hi - lo]) {
                                *v = *sv;
                            }
                            for (ox, v) in o.iter_mut().enumerate().skip(hi) {
                                *v = edge(ox);
                            }
                        }
                        None => {
                            for (ox, v) in o.iter_mut().enumerate() {
                                *v = edge(ox);
                            }
                        }
                    }
                }
            }
        };
        let cols = &mut cols[..self.ckk() * n * p];
        linalg::par_rows(cols, n * p, fill);
    }

    /// Scatter-add `dcols` (CKK x (N P)) into `dx` (N x C H W), which is overwritten.
    pub fn col2im(&self, dcols: &[f32], n: usize, dx: &mut [f32]) {
        let (p, chw, hw) = (self.p(), self.c * self.h * self.w, self.h * self.w);
        let (oh, ow, k) = (self.oh(), self.ow(), self.k);
        let np = n * p;
        let scatter = |s: usize, out: &mut [f32]| {
            out.fill(0.0);
            for r in 0..self.ckk() {
                let (c, i, j) = (r / (k * k), (r / k) % k, r % k);
                let vx = self.valid_x(j);
                let src = &dcols[r * np + s * p..r * np + (s + 1) * p];
                let plane = &mut out[c * hw..(c + 1) * hw];
                for oy in 0..oh {
                    let Some(y) = self.coord(oy, i, self.h) else {
                        continue;
                    };
                    let g = &src[oy * ow..(oy + 1) * ow];
                    let row = &mut plane[y * self.w..(y + 1) * self.w];
                    let (lo, hi) = vx.unwrap_or((0, 0));
                    if hi > lo {
                        let x0 = lo + j - self.pad;
                        for (d, v) in row[x0..x0 + hi - lo].iter_mut().zip(&g[lo..hi]) {
                            *d += v;
                        }
                    }
                    for ox in (0..lo).chain(hi.max(lo)..ow) {
                        if let Some(xx) = self.coord(ox, j, self.w) {
                            row[xx] += g[ox];
                        }
                    }
                }
            }
        };
        linalg::par_rows(&mut dx[..n * chw], chw, scatter);
    }

    /// y (N x O x P) = conv(x); `cols` (CKK x N P) and `tmp` (O x N P) are scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        w: &[f32],
        b: Option<&[f32]>,
        cols: &mut [f32],
        tmp: &mut [f32],
        y: &mut [f32],
    ) {
        let (p, ckk, o) = (self.p(), self.ckk(), self.o);
        let np = n * p;
        self.im2col(x, n, cols);
        linalg::matmul(o, np, ckk, w, false, cols, false, tmp, false);
        // O x (N P) -> N x O x P, adding the bias.
        let tmp = &tmp[..o * np];
        linalg::par_rows(&mut y[..n * o * p], o * p, |s, ys| {
            for oc in 0..o {
                let bias = b.map_or(0.0, |b| b[oc]);
                let t = &tmp[oc * np + s * p..oc * np + (s + 1) * p];
                for (v, tv) in ys[oc * p..(oc + 1) * p].iter_mut().zip(t) {
                    *v = tv + bias;
                }
            }
        });
    }

    /// Given dL/dy (N x O x P) and the forward's `cols`: dW (overwritten), db (overwritten),
    /// and, when `dx` is given, dL/dx through `feedback` (W itself for backprop).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        g: &[f32],
        n: usize,
        cols: &[f32],
        tmp: &mut [f32],
        dw: &mut [f32],
        db: Option<&mut [f32]>,
        dx: Option<(&[f32], &mut [f32], &mut [f32])>,
    ) {
        let (p, ckk, o) = (self.p(), self.ckk(), self.o);
        let np = n * p;
        // N x O x P -> O x (N P)
        linalg::par_rows(&mut tmp[..o * np], np, |oc, row| {
            for s in 0..n {
                row[s * p..(s + 1) * p].copy_from_slice(&g[(s * o + oc) * p..(s * o + oc + 1) * p]);
            }
        });
        let gt = &tmp[..o * np];
        // (Skipped under `without_param_grads`: activity gradients only.)
        if super::param_grads_wanted() {
            linalg::matmul(o, ckk, np, gt, false, cols, true, dw, false);
            if let Some(db) = db {
                let sum = |oc: usize, d: &mut f32| *d = gt[oc * np..(oc + 1) * np].iter().sum::<f32>();
                if o * np >= linalg::PAR_MIN_LEN && rayon::current_num_threads() > 1 {
                    use rayon::prelude::*;
                    db.par_iter_mut().enumerate().for_each(|(oc, d)| sum(oc, d));
                } else {
                    db.iter_mut().enumerate().for_each(|(oc, d)| sum(oc, d));
                }
            }
        }
        if let Some((feedback, dcols, dx)) = dx {
            linalg::matmul(ckk, np, o, feedback, true, gt, false, dcols, false);
            self.col2im(dcols, n, dx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct_conv(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut y = vec![0.0; g.o * oh * ow];
        for o in 0..g.o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0;
                    for c in 0..g.c {
                        for i in 0..g.k {
                            for j in 0..g.k {
                                if let Some((yy, xx)) = g.coord(oy, i, g.h).zip(g.coord(ox, j, g.w)) {
                                    s += w[((o * g.c + c) * g.k + i) * g.k + j] * x[(c * g.h + yy) * g.w + xx];
                                }
                            }
                        }
                    }
                    y[(o * oh + oy) * ow + ox] = s;
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_direct_convolution() {
        let mut r = crate::rng::Rng::new(1);
        for (reflect, stride, pad) in [(false, 2, 1), (true, 2, 1), (false, 1, 0), (false, 1, 2), (true, 1, 1)] {
            let g = ConvGeom { c: 2, h: 6, w: 5, o: 3, k: 3, stride, pad, reflect };
            let mut x = vec![0.0; 2 * 2 * 30];
            let mut w = vec![0.0; 3 * g.ckk()];
            r.fill_normal(&mut x, 1.0);
            r.fill_normal(&mut w, 1.0);
            let mut cols = vec![0.0; 2 * g.p() * g.ckk()];
            let mut tmp = vec![0.0; 2 * g.p() * 3];
            let mut y = vec![0.0; 2 * 3 * g.p()];
            g.forward(&x, 2, &w, None, &mut cols, &mut tmp, &mut y);
            for s in 0..2 {
                let want = direct_conv(&g, &x[s * 60..(s + 1) * 60], &w);
                for (a, b) in y[s * 3 * g.p()..(s + 1) * 3 * g.p()].iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{reflect} {stride} {pad}: {a} {b}");
                }
            }
        }
    }

    #[test]
    fn reflect_padding_indices() {
        let g = ConvGeom { c: 1, h: 4, w: 4, o: 1, k: 3, stride: 1, pad: 1, reflect: true };
        // Row -1 reflects to row 1, row 4 to row 2 (no edge repeat), as torch's 'reflect'.
        assert_eq!((g.coord(0, 0, 4), g.coord(0, 0, 4)), (Some(1), Some(1)));
        assert_eq!(g.coord(3, 2, 4), Some(2));
    }
}
