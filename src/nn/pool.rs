//! Max and average pooling over k x k windows with stride s and zero-width padding `pad` on
//! every side (PyTorch's semantics: max pooling pads with -inf, so a padded cell never wins;
//! average pooling counts the padded cells, `count_include_pad = True`).
//!
//! # Shapes
//! input N x C x H x W, output N x C x OH x OW with OH = (H + 2 pad - k) / s + 1.
//! Max pooling keeps the arg-max index of each window for the backward pass (ties: the first).

use crate::linalg;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    #[serde(default)]
    pub pad: usize,
}

impl PoolGeom {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_len(&self) -> usize {
        self.c * self.oh() * self.ow()
    }
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// The input rows (or columns, with `w`) the window at output index `o` covers: the
    /// window's k cells clipped to [0, n).
    fn span(&self, o: usize, n: usize) -> std::ops::Range<usize> {
        let lo = (o * self.stride).saturating_sub(self.pad);
        let hi = (o * self.stride + self.k).saturating_sub(self.pad).min(n);
        lo..hi
    }

    /// y = maxpool(x); `arg[i]` = index (within the sample) of the max feeding y[i].
    pub fn max_forward(&self, x: &[f32], n: usize, y: &mut [f32], arg: &mut [u32]) {
        let (ol, il) = (self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        let one = |s: usize, ys: &mut [f32], a: &mut [u32]| {
            let xs = &x[s * il..(s + 1) * il];
            if self.pad == 0 && self.k == 2 && self.stride == 2 {
                return self.max_2x2(xs, ys, a);
            }
            // Each window clipped to the input (a padded cell is -inf and never wins), its first
            // cell taken, then the others compared in row order as selects (random data
            // mispredicts branches); the first of equal values kept.
            for c in 0..self.c {
                for oy in 0..oh {
                    let rows = self.span(oy, self.h);
                    for ox in 0..ow {
                        let cols = self.span(ox, self.w);
                        debug_assert!(!rows.is_empty() && !cols.is_empty(), "a pooling window inside the padding");
                        let first = (c * self.h + rows.start) * self.w + cols.start;
                        let o = (c * oh + oy) * ow + ox;
                        let full = rows.len() == self.k && cols.len() == self.k;
                        if full && (self.k == 3 || self.k == 4) {
                            let (best, bi) = match self.k {
                                3 => max_window::<3>(xs, first, self.w),
                                _ => max_window::<4>(xs, first, self.w),
                            };
                            ys[o] = best;
                            a[o] = bi as u32;
                            continue;
                        }
                        let (mut best, mut bi) = (xs[first], first);
                        for iy in rows.clone() {
                            let row = (c * self.h + iy) * self.w;
                            for ix in cols.clone() {
                                let v = xs[row + ix];
                                let take = v > best;
                                best = if take { v } else { best };
                                bi = if take { row + ix } else { bi };
                            }
                        }
                        ys[o] = best;
                        a[o] = bi as u32;
                    }
                }
            }
        };
        let (y, arg) = (&mut y[..n * ol], &mut arg[..n * ol]);
        if linalg::par_elementwise(n * il) {
            use rayon::prelude::*;
            y.par_chunks_mut(ol).zip(arg.par_chunks_mut(ol)).enumerate().for_each(|(s, (ys, a))| one(s, ys, a));
        } else {
            for (s, (ys, a)) in y.chunks_mut(ol).zip(arg.chunks_mut(ol)).enumerate() {
                one(s, ys, a);
            }
        }
    }

    /// `max_forward` of one sample for 2 x 2 windows at stride 2 without padding (LeNet's and
    /// the Hebbian nets' pools): the general path's comparisons in the same order (row by row,
    /// the first of equal values kept, NaN propagating from a window's first cell), unrolled.
    fn max_2x2(&self, xs: &[f32], ys: &mut [f32], a: &mut [u32]) {
        let (oh, ow, w) = (self.oh(), self.ow(), self.w);
        for c in 0..self.c {
            for oy in 0..oh {
                let o0 = (c * oh + oy) * ow;
                let (yr, ar) = (&mut ys[o0..o0 + ow], &mut a[o0..o0 + ow]);
                let top = (c * self.h + 2 * oy) * w;
                let (r0, r1) = (&xs[top..top + w], &xs[top + w..top + 2 * w]);
                for (ox, (yv, av)) in yr.iter_mut().zip(ar.iter_mut()).enumerate() {
                    let j = 2 * ox;
                    let (mut best, mut bi) = (r0[j], top + j);
                    for (v, idx) in [(r0[j + 1], top + j + 1), (r1[j], top + w + j), (r1[j + 1], top + w + j + 1)] {
                        let take = v > best;
                        best = if take { v } else { best };
                        bi = if take { idx } else { bi };
                    }
                    *yv = best;
                    *av = bi as u32;
                }
            }
        }
    }

    /// `avg_forward` of one sample for 2 x 2 windows at stride 2 without padding (LeNet's and
    /// conv3's pools): the general path's arithmetic in the same order (each window row summed
    /// from -0.0, as `Iterator::sum`, the row sums added to 0.0, then scaled), unrolled.
    fn avg_2x2(&self, xs: &[f32], ys: &mut [f32], scale: f32) {
        let (oh, ow, w) = (self.oh(), self.ow(), self.w);
        for c in 0..self.c {
            for oy in 0..oh {
                let top = (c * self.h + 2 * oy) * w;
                let (r0, r1) = (&xs[top..top + w], &xs[top + w..top + 2 * w]);
                for (ox, yv) in ys[(c * oh + oy) * ow..][..ow].iter_mut().enumerate() {
                    let j = 2 * ox;
                    *yv = ((0.0 + (-0.0 + r0[j] + r0[j + 1])) + (-0.0 + r1[j] + r1[j + 1])) * scale;
                }
            }
        }
    }

    /// `avg_backward` of one sample whose windows tile the input (no padding, stride = k): each
    /// covered input cell is written once, 0 + its window's g / k^2 (the general path's sum
    /// from 0, signed zeros included); the cells no window covers (the right and bottom
    /// margins) are 0.
    fn avg_back_tiled(&self, gs: &[f32], d: &mut [f32], scale: f32) {
        let (h, oh, ow, k, w) = (self.h, self.oh(), self.ow(), self.k, self.w);
        for c in 0..self.c {
            for oy in 0..oh {
                let gr = &gs[(c * oh + oy) * ow..][..ow];
                // The window row's first input row, then its copies (the same values).
                let (first, rest) = d[(c * h + oy * k) * w..][..k * w].split_at_mut(w);
                spread_row(gr, &mut first[..ow * k], k, scale);
                first[ow * k..].fill(0.0);
                rest.chunks_exact_mut(w).for_each(|r| r.copy_from_slice(first));
            }
            d[(c * h + oh * k) * w..(c + 1) * h * w].fill(0.0);
        }
    }

    pub fn max_backward(&self, g: &[f32], n: usize, arg: &[u32], dx: &mut [f32]) {
        let (ol, il) = (self.out_len(), self.in_len());
        linalg::par_rows(&mut dx[..n * il], il, |s, d| {
            d.fill(0.0);
            for (gv, &a) in g[s * ol..(s + 1) * ol].iter().zip(&arg[s * ol..(s + 1) * ol]) {
                d[a as usize] += gv;
            }
        });
    }

    pub fn avg_forward(&self, x: &[f32], n: usize, y: &mut [f32]) {
        let (ol, il) = (self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        let scale = 1.0 / (self.k * self.k) as f32;
        linalg::par_rows(&mut y[..n * ol], ol, |s, ys| {
            let xs = &x[s * il..(s + 1) * il];
            if self.pad == 0 && self.k == 2 && self.stride == 2 {
                return self.avg_2x2(xs, ys, scale);
            }
            for c in 0..self.c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for iy in self.span(oy, self.h) {
                            let row = (c * self.h + iy) * self.w;
                            let cols = self.span(ox, self.w);
                            acc += xs[row + cols.start..row + cols.end].iter().sum::<f32>();
                        }
                        ys[(c * oh + oy) * ow + ox] = acc * scale;
                    }
                }
            }
        });
    }

    pub fn avg_backward(&self, g: &[f32], n: usize, dx: &mut [f32]) {
        let (ol, il) = (self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        let scale = 1.0 / (self.k * self.k) as f32;
        linalg::par_rows(&mut dx[..n * il], il, |s, d| {
            let gs = &g[s * ol..(s + 1) * ol];
            if self.pad == 0 && self.stride == self.k {
                return self.avg_back_tiled(gs, d, scale);
            }
            d.fill(0.0);
            for c in 0..self.c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let gv = gs[(c * oh + oy) * ow + ox] * scale;
                        for iy in self.span(oy, self.h) {
                            let row = (c * self.h + iy) * self.w;
                            let cols = self.span(ox, self.w);
                            for v in &mut d[row + cols.start..row + cols.end] {
                                *v += gv;
                            }
                        }
                    }
                }
            }
        });
    }
}

/// The max of a K x K window wholly inside the input (first cell at `first`, rows `w` apart) and
/// its index: the general path's comparisons in its order (row by row, the first of equal values
/// kept, NaN propagating from the first cell), unrolled for a K known at compile time.
#[inline(always)]
fn max_window<const K: usize>(xs: &[f32], first: usize, w: usize) -> (f32, usize) {
    let (mut best, mut bi) = (xs[first], first);
    for dy in 0..K {
        let row = &xs[first + dy * w..][..K];
        for (dx, &v) in row.iter().enumerate() {
            let take = v > best;
            best = if take { v } else { best };
            bi = if take { first + dy * w + dx } else { bi };
        }
    }
    (best, bi)
}

crate::wide_fn! {
    /// cells[k o + i] = 0 + g[o] scale for i < k: one output row's gradient spread over its
    /// windows' input cells (k = 2 written out, so it vectorises).
    fn spread_row(g: &[f32], cells: &mut [f32], k: usize, scale: f32) {
        if k == 2 {
            for (pair, gv) in cells.chunks_exact_mut(2).zip(g) {
                let v = 0.0 + gv * scale;
                pair[0] = v;
                pair[1] = v;
            }
        } else {
            for (win, gv) in cells.chunks_exact_mut(k).zip(g) {
                win.fill(0.0 + gv * scale);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_avg_pool_2x2_by_hand() {
        let g = PoolGeom { c: 1, h: 2, w: 4, k: 2, stride: 2, pad: 0 };
        let x = [1.0, 5.0, -1.0, -2.0, 3.0, 2.0, -3.0, -4.0];
        let mut y = [0.0; 2];
        let mut arg = [0u32; 2];
        g.max_forward(&x, 1, &mut y, &mut arg);
        assert_eq!(y, [5.0, -1.0]);
        assert_eq!(arg, [1, 2]);
        let mut dx = [9.0; 8];
        g.max_backward(&[10.0, 20.0], 1, &arg, &mut dx);
        assert_eq!(dx, [0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        g.avg_forward(&x, 1, &mut y);
        assert_eq!(y, [2.75, -2.5]);
        g.avg_backward(&[4.0, 8.0], 1, &mut dx);
        assert_eq!(dx, [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
    }

    /// PyTorch's MaxPool2d(4, 2, padding=1) and AvgPool2d(3, 2, padding=1) (count_include_pad)
    /// on a 1 x 4 x 4 ramp, values from torch.
    #[test]
    fn padded_pools_match_torch() {
        let g = PoolGeom { c: 1, h: 4, w: 4, k: 4, stride: 2, pad: 1 };
        assert_eq!((g.oh(), g.ow()), (2, 2));
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let (mut y, mut arg) = ([0.0; 4], [0u32; 4]);
        g.max_forward(&x, 1, &mut y, &mut arg);
        assert_eq!(y, [10.0, 11.0, 14.0, 15.0]);
        assert_eq!(arg, [10, 11, 14, 15]);
        // All-negative input: the -inf padding never wins.
        let neg: Vec<f32> = x.iter().map(|v| -v - 1.0).collect();
        g.max_forward(&neg, 1, &mut y, &mut arg);
        assert_eq!(y, [-1.0, -2.0, -5.0, -6.0]);
        let a = PoolGeom { c: 1, h: 4, w: 4, k: 3, stride: 2, pad: 1 };
        assert_eq!((a.oh(), a.ow()), (2, 2));
        a.avg_forward(&x, 1, &mut y);
        // torch.nn.AvgPool2d(3, 2, 1)(torch.arange(16.).view(1, 1, 4, 4))
        let want = [10.0 / 9.0, 24.0 / 9.0, 51.0 / 9.0, 90.0 / 9.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
        let mut dx = [0.0; 16];
        a.avg_backward(&[9.0, 9.0, 9.0, 9.0], 1, &mut dx);
        // Each input cell receives 1 per window covering it.
        assert_eq!(dx[0], 1.0);
        assert_eq!(dx[1], 2.0);
        assert_eq!(dx[5], 4.0);
    }

    /// Average pooling's fast paths (2 x 2 at stride 2 written out, the tiled backward) and its
    /// general path give a plain reading of the definition's bits, signed zeros included.
    #[test]
    fn unpadded_avg_pool_paths_match_the_general_one() {
        let mut rng = crate::rng::Rng::new(9);
        for (h, w, k, stride) in [(6, 8, 2, 2), (7, 7, 2, 2), (7, 9, 3, 2), (6, 6, 3, 3), (7, 8, 3, 3), (5, 6, 3, 1)] {
            let g = PoolGeom { c: 3, h, w, k, stride, pad: 0 };
            let n = 2;
            let vals = [0.0f32, -0.0, 1.5, -2.25, 3.0e-3];
            let x: Vec<f32> = (0..n * g.in_len()).map(|_| vals[rng.below(5)] * (1.0 + rng.uniform())).collect();
            let (mut fast, mut slow) = (vec![0.0; n * g.out_len()], vec![0.0; n * g.out_len()]);
            g.avg_forward(&x, n, &mut fast);
            let general = |x: &[f32], s: usize, ys: &mut [f32]| {
                let xs = &x[s * g.in_len()..(s + 1) * g.in_len()];
                for c in 0..g.c {
                    for oy in 0..g.oh() {
                        for ox in 0..g.ow() {
                            let mut acc = 0.0;
                            for iy in g.span(oy, h) {
                                let cols = g.span(ox, w);
                                acc +=
                                    xs[(c * h + iy) * w + cols.start..(c * h + iy) * w + cols.end].iter().sum::<f32>();
                            }
                            ys[(c * g.oh() + oy) * g.ow() + ox] = acc * (1.0 / (k * k) as f32);
                        }
                    }
                }
            };
            for s in 0..n {
                general(&x, s, &mut slow[s * g.out_len()..(s + 1) * g.out_len()]);
            }
            let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "forward {h}x{w} k{k} s{stride}");
            let gy: Vec<f32> = (0..n * g.out_len()).map(|_| vals[rng.below(5)]).collect();
            let mut dx = vec![7.0; n * g.in_len()];
            g.avg_backward(&gy, n, &mut dx);
            let mut want = vec![0.0f32; n * g.in_len()];
            for s in 0..n {
                for c in 0..g.c {
                    for oy in 0..g.oh() {
                        for ox in 0..g.ow() {
                            let gv = gy[s * g.out_len() + (c * g.oh() + oy) * g.ow() + ox] * (1.0 / (k * k) as f32);
                            for iy in g.span(oy, h) {
                                for ix in g.span(ox, w) {
                                    want[s * g.in_len() + (c * h + iy) * w + ix] += gv;
                                }
                            }
                        }
                    }
                }
            }
            assert_eq!(bits(&dx), bits(&want), "backward {h}x{w} k{k} s{stride}");
        }
    }

    /// The 2 x 2 fast path and the general one against a plain reading of the definition (the
    /// first maximum of each window's cells inside the input, in row order; a window whose first
    /// such cell is NaN gives NaN), on values with many ties, for the 2x2 stride-2 case, the
    /// general one, and padded windows (SoftHebb's 4/2/1).
    #[test]
    fn max_pool_matches_the_definition() {
        let mut rng = crate::rng::Rng::new(7);
        for (h, w, k, stride, pad) in [
            (6, 8, 2, 2, 0),
            (7, 7, 2, 2, 0),
            (7, 9, 3, 2, 0),
            (5, 6, 3, 1, 0),
            (4, 4, 4, 1, 0),
            (8, 8, 4, 2, 1),
            (7, 9, 4, 2, 1),
            (6, 5, 3, 1, 1),
            (9, 9, 5, 3, 2),
            (5, 70, 3, 2, 1),
            (6, 40, 4, 2, 1),
        ] {
            let g = PoolGeom { c: 3, h, w, k, stride, pad };
            let n = 2;
            let mut x: Vec<f32> = (0..n * g.in_len()).map(|_| rng.below(4) as f32).collect();
            x[0] = f32::NAN;
            x[5] = f32::NAN;
            // NaNs anywhere in later windows too (a window's first cell or not, alone or paired).
            for i in (9..x.len()).step_by(13) {
                x[i] = f32::NAN;
            }
            let l = x.len();
            x[l - 2] = f32::NAN;
            let (mut y, mut arg) = (vec![0.0; n * g.out_len()], vec![0u32; n * g.out_len()]);
            g.max_forward(&x, n, &mut y, &mut arg);
            for s in 0..n {
                let xs = &x[s * g.in_len()..(s + 1) * g.in_len()];
                for c in 0..g.c {
                    for oy in 0..g.oh() {
                        for ox in 0..g.ow() {
                            let mut best: Option<(f32, usize)> = None;
                            for iy in (oy * stride).saturating_sub(pad)..(oy * stride + k - pad).min(h) {
                                for ix in (ox * stride).saturating_sub(pad)..(ox * stride + k - pad).min(w) {
                                    let i = (c * h + iy) * w + ix;
                                    if best.is_none_or(|(b, _)| xs[i] > b) {
                                        best = Some((xs[i], i));
                                    }
                                }
                            }
                            let (b, bi) = best.unwrap();
                            let o = s * g.out_len() + (c * g.oh() + oy) * g.ow() + ox;
                            assert_eq!(arg[o] as usize, bi, "{h}x{w} k{k} s{stride} p{pad} at {o}");
                            assert!(y[o] == b || (y[o].is_nan() && b.is_nan()), "{h}x{w} k{k} s{stride} p{pad} at {o}");
                        }
                    }
                }
            }
        }
    }
}
