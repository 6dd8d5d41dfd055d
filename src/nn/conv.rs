//! 2-D convolution as im2col + one GEMM over the whole batch.
//!
//! y[n, o, p] = b[o] + sum_{c, i, j} W[o, (c, i, j)] x[n, c, p_y*s + i - pad, p_x*s + j - pad]
//!
//! # Shapes
//! - input x: N x C x H x W (row-major per sample), output y: N x O x OH x OW,
//!   OH = (H + 2 pad - k) / s + 1 (floor).
//! - W: O x (C k k), b: O.
//! - cols: (N OH OW) x (C k k): one row per output position, so the forward is
//!   `cols @ W^T` and the backward to the input is `g @ F` (F = W for backprop, a feedback
//!   matrix of W's shape for the feedback-alignment family), scattered back by col2im.
//!
//! Zero padding (`reflect: false`) or reflect padding (`reflect: true`, SoftHebb's choice).

use crate::linalg;
use rayon::prelude::*;

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
    /// Length of one im2col row.
    pub fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Source pixel (row, col) for output (oy, ox) and kernel offset (i, j), or None where it
    /// falls in zero padding.
    #[inline]
    fn src(&self, oy: usize, ox: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let y = (oy * self.stride + i) as isize - self.pad as isize;
        let x = (ox * self.stride + j) as isize - self.pad as isize;
        let (h, w) = (self.h as isize, self.w as isize);
        if self.reflect {
            let r = |v: isize, n: isize| -> usize {
                let v = if v < 0 { -v } else { v };
                (if v >= n { 2 * (n - 1) - v } else { v }) as usize
            };
            Some((r(y, h), r(x, w)))
        } else if y < 0 || x < 0 || y >= h || x >= w {
            None
        } else {
            Some((y as usize, x as usize))
        }
    }

    /// Fill `cols` ((N P) x CKK) from `x` (N x C H W).
    pub fn im2col(&self, x: &[f32], n: usize, cols: &mut [f32]) {
        let (p, ckk, chw) = (self.p(), self.ckk(), self.c * self.h * self.w);
        let ow = self.ow();
        let per_sample = p * ckk;
        let fill = |s: usize, out: &mut [f32]| {
            let xs = &x[s * chw..(s + 1) * chw];
            for pos in 0..p {
                let (oy, ox) = (pos / ow, pos % ow);
                let row = &mut out[pos * ckk..(pos + 1) * ckk];
                let mut idx = 0;
                for c in 0..self.c {
                    let plane = &xs[c * self.h * self.w..(c + 1) * self.h * self.w];
                    for i in 0..self.k {
                        for j in 0..self.k {
                            row[idx] = match self.src(oy, ox, i, j) {
                                Some((y, xx)) => plane[y * self.w + xx],
                                None => 0.0,
                            };
                            idx += 1;
                        }
                    }
                }
            }
        };
        let cols = &mut cols[..n * per_sample];
        if rayon::current_num_threads() > 1 && n > 1 {
            cols.par_chunks_mut(per_sample)
                .enumerate()
                .for_each(|(s, out)| fill(s, out));
        } else {
            for (s, out) in cols.chunks_mut(per_sample).enumerate() {
                fill(s, out);
            }
        }
    }

    /// Scatter-add `dcols` ((N P) x CKK) into `dx` (N x C H W), which is overwritten.
    pub fn col2im(&self, dcols: &[f32], n: usize, dx: &mut [f32]) {
        let (p, ckk, chw) = (self.p(), self.ckk(), self.c * self.h * self.w);
        let ow = self.ow();
        let per_sample = p * ckk;
        let scatter = |s: usize, out: &mut [f32]| {
            out.fill(0.0);
            let dc = &dcols[s * per_sample..(s + 1) * per_sample];
            for pos in 0..p {
                let (oy, ox) = (pos / ow, pos % ow);
                let row = &dc[pos * ckk..(pos + 1) * ckk];
                let mut idx = 0;
                for c in 0..self.c {
                    let base = c * self.h * self.w;
                    for i in 0..self.k {
                        for j in 0..self.k {
                            if let Some((y, xx)) = self.src(oy, ox, i, j) {
                                out[base + y * self.w + xx] += row[idx];
                            }
                            idx += 1;
                        }
                    }
                }
            }
        };
        let dx = &mut dx[..n * chw];
        if rayon::current_num_threads() > 1 && n > 1 {
            dx.par_chunks_mut(chw)
                .enumerate()
                .for_each(|(s, out)| scatter(s, out));
        } else {
            for (s, out) in dx.chunks_mut(chw).enumerate() {
                scatter(s, out);
            }
        }
    }

    /// y (N x O x P) = conv(x); `cols` and `tmp` ((N P) x O) are scratch.
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
        self.im2col(x, n, cols);
        linalg::matmul(n * p, o, ckk, cols, false, w, true, tmp, false);
        // (N P) x O -> N x O x P, adding the bias.
        linalg::par_rows(&mut y[..n * o * p], o * p, |s, ys| {
            let t = &tmp[s * p * o..(s + 1) * p * o];
            for oc in 0..o {
                let bias = b.map_or(0.0, |b| b[oc]);
                let yo = &mut ys[oc * p..(oc + 1) * p];
                for (pos, v) in yo.iter_mut().enumerate() {
                    *v = t[pos * o + oc] + bias;
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
        // N x O x P -> (N P) x O
        linalg::par_rows(&mut tmp[..n * p * o], p * o, |s, ts| {
            let gs = &g[s * o * p..(s + 1) * o * p];
            for oc in 0..o {
                for pos in 0..p {
                    ts[pos * o + oc] = gs[oc * p + pos];
                }
            }
        });
        let gt = &tmp[..n * p * o];
        linalg::matmul(o, ckk, n * p, gt, true, cols, false, dw, false);
        if let Some(db) = db {
            db.fill(0.0);
            for s in 0..n {
                for oc in 0..o {
                    db[oc] += g[(s * o + oc) * p..(s * o + oc + 1) * p]
                        .iter()
                        .sum::<f32>();
                }
            }
        }
        if let Some((feedback, dcols, dx)) = dx {
            linalg::matmul(n * p, ckk, o, gt, false, feedback, false, dcols, false);
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
                                if let Some((yy, xx)) = g.src(oy, ox, i, j) {
                                    s += w[((o * g.c + c) * g.k + i) * g.k + j]
                                        * x[(c * g.h + yy) * g.w + xx];
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
        for reflect in [false, true] {
            let g = ConvGeom {
                c: 2,
                h: 6,
                w: 5,
                o: 3,
                k: 3,
                stride: 2,
                pad: 1,
                reflect,
            };
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
                    assert!((a - b).abs() < 1e-4, "{a} {b}");
                }
            }
        }
    }

    #[test]
    fn reflect_padding_indices() {
        let g = ConvGeom {
            c: 1,
            h: 4,
            w: 4,
            o: 1,
            k: 3,
            stride: 1,
            pad: 1,
            reflect: true,
        };
        // Row -1 reflects to row 1, row 4 to row 2 (no edge repeat), as torch's 'reflect'.
        assert_eq!(g.src(0, 0, 0, 0), Some((1, 1)));
        assert_eq!(g.src(3, 3, 2, 2), Some((2, 2)));
    }
}
