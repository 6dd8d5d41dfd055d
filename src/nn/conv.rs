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

    /// Whether im2col takes the AVX-512 path: stride 1 and a CPU with AVX-512F (the same
    /// values as the scalar path: copies); col2im's also needs zero padding (its sums in the
    /// scalar path's order: reflected edges add theirs after each row's middle).
    fn simd_path(&self, col2im: bool) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.stride == 1 && !(col2im && self.reflect) && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = col2im;
            false
        }
    }

    /// Lane masks of the 16-wide block of output columns starting at `b0` for kernel column
    /// `j` (stride 1): (the lanes inside the row, the lanes that read the input, not padding).
    #[inline(always)]
    fn block_masks(&self, b0: usize, lo: usize, hi: usize) -> (u16, u16) {
        (lane_bits(b0, 0, self.ow()), lane_bits(b0, lo, hi))
    }

    /// One im2col row (kernel tap r, the whole batch) with AVX-512 masked loads and stores:
    /// per output row, 16 columns at a time, padding lanes loaded as zeros.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn im2col_row_avx512(&self, x: &[f32], n: usize, r: usize, row: &mut [f32]) {
        use std::arch::x86_64::*;
        let (p, chw, hw, k) = (self.p(), self.c * self.h * self.w, self.h * self.w, self.k);
        let (oh, ow) = (self.oh(), self.ow());
        let (c, i, j) = (r / (k * k), (r / k) % k, r % k);
        let (lo, hi) = self.valid_x(j).expect("stride 1");
        assert!(x.len() >= n * chw && row.len() >= n * p);
        let zero = _mm512_setzero_ps();
        // A block stores all 16 lanes (a plain store) when they stay inside the row, the lanes
        // past the output row landing where later blocks of this row write; masked at the end.
        let end = n * p;
        // The blocks' load masks, the same for every sample and output row of this tap.
        const MAXB: usize = 32;
        let nb = ow.div_ceil(16);
        let mut masks = [0u16; MAXB];
        for (b, m) in masks.iter_mut().enumerate().take(nb.min(MAXB)) {
            *m = self.block_masks(b * 16, lo, hi).1;
        }
        let shift = j as isize - self.pad as isize;
        for s in 0..n {
            let plane = x.as_ptr().add(s * chw + c * hw);
            for oy in 0..oh {
                let at = s * p + oy * ow;
                let o = row.as_mut_ptr().add(at);
                // The input row (reflected back inside with reflect padding; None: a zero row).
                let y = self.coord(oy, i, self.h);
                let inside = y.is_some();
                let y = y.unwrap_or(0) as isize;
                // Lane l of block b reads input column 16 b + l + j - pad; only the lanes of its
                // load mask, which lie inside the input row, are read.
                let src = plane.wrapping_offset(y * self.w as isize + shift);
                for b in 0..nb {
                    let b0 = b * 16;
                    let load = masks.get(b).copied().unwrap_or_else(|| self.block_masks(b0, lo, hi).1);
                    let v = if inside { _mm512_maskz_loadu_ps(load, src.wrapping_add(b0)) } else { zero };
                    if at + b0 + 16 <= end {
                        _mm512_storeu_ps(o.add(b0), v);
                    } else {
                        _mm512_mask_storeu_ps(o.add(b0), self.block_masks(b0, lo, hi).0, v);
                    }
                }
                if self.reflect {
                    // The columns outside [lo, hi) read reflected input columns, not zeros.
                    let src = plane.add(y as usize * self.w);
                    for ox in (0..lo).chain(hi..ow) {
                        let xx = self.coord(ox, j, self.w).expect("reflect padding stays inside");
                        *o.add(ox) = *src.add(xx);
                    }
                }
            }
        }
    }

    /// col2im for one sample with AVX-512, gathered: each block of 16 input columns sums its
    /// terms in registers, tap by tap in the scalar path's order (c, i, j), and is stored once
    /// (adding into memory tap by tap spent two thirds of col2im's time on its store: each
    /// tap's load reads the previous tap's store one column over, which the store buffer cannot
    /// forward; `perf annotate` on a LeNet epoch).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn col2im_sample_avx512(&self, dcols: &[f32], np: usize, s: usize, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let (p, hw, k, pad) = (self.p(), self.h * self.w, self.k, self.pad);
        let (oh, ow, w) = (self.oh(), self.ow(), self.w);
        let len = self.c * hw;
        assert!(out.len() >= len && dcols.len() >= (self.ckk() - 1) * np + (s + 1) * p);
        let base = dcols.as_ptr().add(s * p);
        // Input column xx takes tap column j from output column xx + pad - j: the lanes of block
        // b0 with xx in [j - pad, ow + j - pad) and xx < w.
        let mask = |b0: usize, j: usize| -> u16 {
            let lo = j.saturating_sub(pad);
            let hi = (ow + j).saturating_sub(pad).min(w);
            lane_bits(b0, lo, hi)
        };
        for c in 0..self.c {
            for y in 0..self.h {
                for b0 in (0..w).step_by(16) {
                    let mut acc = _mm512_setzero_ps();
                    for i in 0..k {
                        let oy = (y + pad) as isize - i as isize;
                        if oy < 0 || oy >= oh as isize {
                            continue;
                        }
                        for j in 0..k {
                            let m = mask(b0, j);
                            if m == 0 {
                                continue;
                            }
                            let r = (c * k + i) * k + j;
                            let g = base
                                .add(r * np + oy as usize * ow)
                                .wrapping_offset(b0 as isize + pad as isize - j as isize);
                            acc = _mm512_mask_add_ps(acc, m, acc, _mm512_maskz_loadu_ps(m, g));
                        }
                    }
                    let at = c * hw + y * w + b0;
                    if at + 16 <= len {
                        // (Lanes past the row land where the next rows' blocks write later.)
                        _mm512_storeu_ps(out.as_mut_ptr().add(at), acc);
                    } else {
                        _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), lane_bits(b0, 0, w), acc);
                    }
                }
            }
        }
    }

    /// Fill `cols` (CKK x (N P), row (c, i, j), column (sample, position)) from `x` (N x C H W).
    pub fn im2col(&self, x: &[f32], n: usize, cols: &mut [f32]) {
        self.im2col_on(x, n, cols, true);
    }

    /// `im2col`, its rows split across the pool's threads when `par`, else on this thread.
    fn im2col_on(&self, x: &[f32], n: usize, cols: &mut [f32], par: bool) {
        let (p, chw, hw) = (self.p(), self.c * self.h * self.w, self.h * self.w);
        let (oh, ow, k) = (self.oh(), self.ow(), self.k);
        let fast = self.simd_path(false);
        // (Reflect padding reflects once: a pad as wide as the input would read outside it,
        // which the AVX-512 path's pointers would not catch. The arch checks sides first.)
        assert!(
            !self.reflect || (self.pad < self.h && self.pad < self.w),
            "reflect padding {} on a {}x{} input",
            self.pad,
            self.h,
            self.w
        );
        let fill = |r: usize, row: &mut [f32]| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: `simd_path` checked the CPU has AVX-512F.
                return unsafe { self.im2col_row_avx512(x, n, r, row) };
            }
            let _ = fast;
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
        if par {
            linalg::par_rows(cols, n * p, fill);
        } else {
            cols.chunks_mut(n * p).enumerate().for_each(|(r, row)| fill(r, row));
        }
    }

    /// Scatter-add `dcols` (CKK x (N P)) into `dx` (N x C H W), which is overwritten.
    pub fn col2im(&self, dcols: &[f32], n: usize, dx: &mut [f32]) {
        self.col2im_on(dcols, n, dx, true);
    }

    /// `col2im`, its samples split across the pool's threads when `par`, else on this thread.
    fn col2im_on(&self, dcols: &[f32], n: usize, dx: &mut [f32], par: bool) {
        let (p, chw, hw) = (self.p(), self.c * self.h * self.w, self.h * self.w);
        let (oh, ow, k) = (self.oh(), self.ow(), self.k);
        let np = n * p;
        let fast = self.simd_path(true);
        let scatter = |s: usize, out: &mut [f32]| {
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: `simd_path` checked the CPU has AVX-512F.
                return unsafe { self.col2im_sample_avx512(dcols, np, s, out) };
            }
            let _ = fast;
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
        let dx = &mut dx[..n * chw];
        if par {
            linalg::par_rows(dx, chw, scatter);
        } else {
            dx.chunks_mut(chw).enumerate().for_each(|(s, d)| scatter(s, d));
        }
    }

    /// `t` (O x (n P), a product's layout) to `y` (n x O x P, sample-major), adding the bias;
    /// samples split across the pool's threads (`linalg::par_rows`: not inside `linalg::serial`).
    fn to_samples(&self, t: &[f32], n: usize, b: Option<&[f32]>, y: &mut [f32]) {
        let (o, p) = (self.o, self.p());
        let np = n * p;
        linalg::par_rows(&mut y[..n * o * p], o * p, |s, ys| {
            for oc in 0..o {
                let bias = b.map_or(0.0, |b| b[oc]);
                for (v, tv) in ys[oc * p..(oc + 1) * p].iter_mut().zip(&t[oc * np + s * p..oc * np + (s + 1) * p]) {
                    *v = tv + bias;
                }
            }
        });
    }

    /// `g` (n x O x P) to `gt` (O x (n P)), the inverse of `to_samples` without the bias;
    /// channels split across the pool's threads as `to_samples`.
    fn to_channels(&self, g: &[f32], n: usize, gt: &mut [f32]) {
        let (o, p) = (self.o, self.p());
        linalg::par_rows(&mut gt[..o * n * p], n * p, |oc, row| {
            for s in 0..n {
                row[s * p..(s + 1) * p].copy_from_slice(&g[(s * o + oc) * p..(s * o + oc + 1) * p]);
            }
        });
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
        self.to_samples(tmp, n, b, y);
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
        self.to_channels(g, n, tmp);
        let gt = &tmp[..o * np];
        // (Skipped under `without_param_grads`: activity gradients only.)
        if super::param_grads_wanted() {
            linalg::matmul(o, ckk, np, gt, false, cols, true, dw, false);
            if let Some(db) = db {
                let sum = |oc: usize, d: &mut f32| *d = gt[oc * np..(oc + 1) * np].iter().sum::<f32>();
                if linalg::par_elementwise(o * np) {
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

/// The lanes of the 16-wide block starting at column `b0` whose columns lie in [a, b).
#[inline(always)]
fn lane_bits(b0: usize, a: usize, b: usize) -> u16 {
    let (a, b) = (a.max(b0).min(b0 + 16), b.max(b0).min(b0 + 16));
    if b <= a {
        0
    } else {
        (((1u32 << (b - a)) - 1) << (a - b0)) as u16
    }
}

/// Bytes of im2col columns one chunk of the batch holds in the chunked convolution
/// (`ConvGeom::forward_chunked`): small enough that a chunk's columns, its products and its
/// input stay in one core's L2 cache between the im2col pass and the product that reads them.
pub const CHUNK_COLS_BYTES: usize = 256 << 10;

/// Columns (positions) a chunk's products have at least, whatever `CHUNK_COLS_BYTES` allows:
/// narrower products run far below the GEMM's speed (conv3's second layer, 100 positions a
/// sample, 360 KB of columns per sample: one sample per chunk made its step 10% slower at 1
/// and 2 threads than chunks of 6; `biolearn bench --kernels --archs conv3`).
pub const CHUNK_MIN_COLS: usize = 512;

/// One part's scratch in the chunked convolution (each part a contiguous run of the batch's
/// chunks, worked by one thread): a chunk's products (or its output gradient laid out O x
/// positions), its column gradients, the part's weight and bias gradient sums, and a chunk's
/// columns when the forward pass does not keep them (`cols`).
#[derive(Clone, Debug, Default)]
pub struct ConvPart {
    pub tmp: Vec<f32>,
    pub dcols: Vec<f32>,
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
    pub cols: Vec<f32>,
}

impl ConvPart {
    pub fn bytes(&self) -> usize {
        [&self.tmp, &self.dcols, &self.dw, &self.db, &self.cols].iter().map(|v| v.capacity() * 4).sum()
    }
}

impl ConvGeom {
    /// Samples per chunk of the chunked convolution: as many as `CHUNK_COLS_BYTES` of columns
    /// hold, but at least `CHUNK_MIN_COLS` positions' worth (and one sample).
    pub fn chunk_samples(&self) -> usize {
        let by_bytes = CHUNK_COLS_BYTES / (4 * self.ckk() * self.p()).max(1);
        by_bytes.max(CHUNK_MIN_COLS.div_ceil(self.p().max(1))).max(1)
    }

    /// How many parts `forward_chunked` splits a batch of `n` into here: one per thread of the
    /// pool, at most one per sample.
    pub fn parts_for(n: usize) -> usize {
        rayon::current_num_threads().min(n).max(1)
    }

    /// The chunks of samples [s0, s1): as few as keep each within `chunk_samples`, of equal
    /// sizes (to a sample): (first sample, samples).
    fn chunks(&self, s0: usize, s1: usize) -> impl Iterator<Item = (usize, usize)> {
        let len = s1 - s0;
        let nc = len.div_ceil(self.chunk_samples()).max(1);
        (0..nc).map(move |j| (s0 + j * len / nc, (j + 1) * len / nc - j * len / nc)).filter(|c| c.1 > 0)
    }

    /// Run `f(part, first sample, end sample, out, out2)` over `t` parts of a batch of `n`
    /// (samples [i n / t, (i + 1) n / t) for part i), each on its own thread with its products
    /// single-threaded; `out` and `out2` (N x `per` and N x `per2` values, sample-major; `per`
    /// 0 for none) split to match. The split depends on `n` and `t` only, never on scheduling.
    #[allow(clippy::too_many_arguments)]
    fn run_parts<F>(
        &self,
        n: usize,
        t: usize,
        parts: &mut Vec<ConvPart>,
        per: usize,
        out: &mut [f32],
        per2: usize,
        out2: &mut [f32],
        f: F,
    ) where
        F: Fn(&mut ConvPart, usize, usize, &mut [f32], &mut [f32]) + Sync,
    {
        let t = t.max(1);
        if parts.len() < t {
            parts.resize_with(t, ConvPart::default);
        }
        let (out, out2) = (&mut out[..n * per], &mut out2[..n * per2]);
        if t == 1 {
            linalg::serial(|| f(&mut parts[0], 0, n, out, out2));
            return;
        }
        let f = &f;
        rayon::scope(|sc| {
            let (mut rest, mut rest2) = (out, out2);
            for (i, part) in parts[..t].iter_mut().enumerate() {
                let (s0, s1) = (i * n / t, (i + 1) * n / t);
                let (mine, r) = std::mem::take(&mut rest).split_at_mut((s1 - s0) * per);
                let (mine2, r2) = std::mem::take(&mut rest2).split_at_mut((s1 - s0) * per2);
                (rest, rest2) = (r, r2);
                sc.spawn(move |_| linalg::serial(|| f(part, s0, s1, mine, mine2)));
            }
        });
    }

    /// The forward pass of `forward`, the batch split into one part per thread
    /// (`parts_for`, `run_parts`), each part worked in chunks of at most `chunk_samples` whose
    /// columns stay in cache while the chunk's product reads them (`CHUNK_COLS_BYTES`). Each
    /// output is the same sum as `forward`'s. `cols` (N P CKK) keeps the columns chunk by
    /// chunk, for `backward_chunked`: the chunk of samples [s0, s0 + m) holds its CKK x (m P)
    /// block at offset s0 P CKK. An empty `cols` keeps nothing (a forward-only pass:
    /// evaluation, a rule's extra forward passes): each part reuses one chunk's columns
    /// (`ConvPart::cols`), the same products, without N P CKK floats (1.4 GB for hebb-conv3's
    /// second layer at evaluation's 1000 samples). Returns the number of parts, which
    /// `backward_chunked` takes (the columns' layout depends on it).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_chunked(
        &self,
        x: &[f32],
        n: usize,
        w: &[f32],
        b: Option<&[f32]>,
        parts: &mut Vec<ConvPart>,
        cols: &mut [f32],
        y: &mut [f32],
    ) -> usize {
        let (p, ckk, o, s) = (self.p(), self.ckk(), self.o, self.chunk_samples());
        let chw = self.c * self.h * self.w;
        linalg::note_product(o, n * p, ckk, w, false, x, false, false);
        let keep = !cols.is_empty();
        let work = |part: &mut ConvPart, s0: usize, s1: usize, y: &mut [f32], cols: &mut [f32]| {
            let ConvPart { tmp, cols: own, .. } = part;
            tmp.resize(o * s * p, 0.0);
            if !keep {
                own.resize(s * p * ckk, 0.0);
            }
            for (c0, m) in self.chunks(s0, s1) {
                let cb = if keep {
                    &mut cols[(c0 - s0) * p * ckk..(c0 - s0 + m) * p * ckk]
                } else {
                    &mut own[..m * p * ckk]
                };
                self.im2col_on(&x[c0 * chw..(c0 + m) * chw], m, cb, false);
                linalg::matmul_unnoted(o, m * p, ckk, w, false, cb, false, tmp, false);
                self.to_samples(tmp, m, b, &mut y[(c0 - s0) * o * p..]);
            }
        };
        let t = Self::parts_for(n);
        self.run_parts(n, t, parts, o * p, y, if keep { p * ckk } else { 0 }, cols, work);
        t
    }

    /// The backward pass of `backward` for `forward_chunked`, from the columns it kept and its
    /// number of parts `t`. dW
    /// and db (overwritten) are summed chunk by chunk within each part and the parts' sums
    /// added in order (a different order of the same sum than `backward`'s: the last bits
    /// differ); dL/dx, when `dx` is given, through `feedback` (W itself for backprop), each
    /// value the same sum as `backward`'s.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_chunked(
        &self,
        g: &[f32],
        n: usize,
        cols: &[f32],
        t: usize,
        parts: &mut Vec<ConvPart>,
        dw: &mut [f32],
        db: Option<&mut [f32]>,
        dx: Option<(&[f32], &mut [f32])>,
    ) {
        let (p, ckk, o, s) = (self.p(), self.ckk(), self.o, self.chunk_samples());
        let chw = self.c * self.h * self.w;
        let wants = super::param_grads_wanted();
        let has_db = db.is_some();
        assert!(
            !wants || cols.len() >= n * p * ckk,
            "backward_chunked: the forward pass kept no columns (a workspace prepared for the forward pass only)"
        );
        if wants {
            linalg::note_product(o, ckk, n * p, g, false, cols, true, false);
        }
        let (feedback, dx) = match dx {
            Some((f, d)) => {
                linalg::note_product(ckk, n * p, o, f, true, g, false, false);
                (Some(f), &mut d[..n * chw])
            }
            None => (None, &mut [][..]),
        };
        let per = if feedback.is_some() { chw } else { 0 };
        let work = |part: &mut ConvPart, s0: usize, s1: usize, dx: &mut [f32], _: &mut [f32]| {
            part.tmp.resize(o * s * p, 0.0);
            if wants {
                part.dw.resize(o * ckk, 0.0);
                part.db.resize(o, 0.0);
            }
            if feedback.is_some() {
                part.dcols.resize(ckk * s * p, 0.0);
            }
            for (ci, (c0, m)) in self.chunks(s0, s1).enumerate() {
                let mp = m * p;
                self.to_channels(&g[c0 * o * p..], m, &mut part.tmp);
                let gt = &part.tmp[..o * mp];
                if wants {
                    let cb = &cols[c0 * p * ckk..(c0 + m) * p * ckk];
                    linalg::matmul_unnoted(o, ckk, mp, gt, false, cb, true, &mut part.dw, ci > 0);
                    if has_db {
                        for (oc, d) in part.db.iter_mut().enumerate() {
                            let start = if ci > 0 { *d } else { 0.0 };
                            *d = gt[oc * mp..(oc + 1) * mp].iter().fold(start, |a, v| a + v);
                        }
                    }
                }
                if let Some(f) = feedback {
                    linalg::matmul_unnoted(ckk, mp, o, f, true, gt, false, &mut part.dcols, false);
                    self.col2im_on(&part.dcols, m, &mut dx[(c0 - s0) * chw..(c0 - s0 + m) * chw], false);
                }
            }
        };
        self.run_parts(n, t, parts, per, dx, 0, &mut [], work);
        if wants {
            dw[..o * ckk].copy_from_slice(&parts[0].dw[..o * ckk]);
            for part in &parts[1..t] {
                for (d, v) in dw[..o * ckk].iter_mut().zip(&part.dw) {
                    *d += v;
                }
            }
            if let Some(db) = db {
                db[..o].copy_from_slice(&parts[0].db[..o]);
                for part in &parts[1..t] {
                    for (d, v) in db[..o].iter_mut().zip(&part.db) {
                        *d += v;
                    }
                }
            }
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

    /// col2im as the adjoint of im2col, written out by loops: dx[x at (c, y, xx)] collects every
    /// column entry im2col copied from it.
    fn naive_col2im(g: &ConvGeom, dcols: &[f32], n: usize) -> Vec<f32> {
        let (p, np, hw) = (g.p(), n * g.p(), g.h * g.w);
        let mut dx = vec![0.0; n * g.c * hw];
        for r in 0..g.ckk() {
            let (c, i, j) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
            for s in 0..n {
                for oy in 0..g.oh() {
                    for ox in 0..g.ow() {
                        if let Some((y, xx)) = g.coord(oy, i, g.h).zip(g.coord(ox, j, g.w)) {
                            dx[s * g.c * hw + c * hw + y * g.w + xx] += dcols[r * np + s * p + oy * g.ow() + ox];
                        }
                    }
                }
            }
        }
        dx
    }

    fn geoms() -> Vec<ConvGeom> {
        let mut v = Vec::new();
        for (reflect, stride, pad, h, w, k) in [
            (false, 1, 0, 6, 5, 3),
            (false, 1, 2, 6, 5, 3),
            (false, 2, 1, 6, 5, 3),
            (true, 1, 1, 6, 5, 3),
            // Rows wider than one 16-lane block, padding on both sides of the blocks.
            (false, 1, 2, 9, 37, 5),
            (false, 1, 0, 7, 19, 3),
            // Reflect padding on wide rows (the AVX-512 im2col patches the reflected edges).
            (true, 1, 1, 9, 37, 3),
            (true, 1, 2, 7, 19, 5),
        ] {
            v.push(ConvGeom { c: 2, h, w, o: 3, k, stride, pad, reflect });
        }
        v
    }

    /// im2col on every path (AVX-512 where the CPU has it) gives the definition's columns
    /// exactly: zeros in zero padding, reflected cells with reflect padding.
    #[test]
    fn im2col_copies_the_definitions_cells() {
        let mut r = crate::rng::Rng::new(4);
        for g in geoms() {
            let n = 2;
            let mut x = vec![0.0; n * g.c * g.h * g.w];
            r.fill_normal(&mut x, 1.0);
            let mut cols = vec![f32::NAN; n * g.p() * g.ckk()];
            g.im2col(&x, n, &mut cols);
            let (p, np) = (g.p(), n * g.p());
            for row in 0..g.ckk() {
                let (c, i, j) = (row / (g.k * g.k), (row / g.k) % g.k, row % g.k);
                for s in 0..n {
                    for oy in 0..g.oh() {
                        for ox in 0..g.ow() {
                            let want = g
                                .coord(oy, i, g.h)
                                .zip(g.coord(ox, j, g.w))
                                .map_or(0.0, |(y, xx)| x[s * g.c * g.h * g.w + (c * g.h + y) * g.w + xx]);
                            let got = cols[row * np + s * p + oy * g.ow() + ox];
                            assert_eq!(got.to_bits(), want.to_bits(), "{g:?} row {row} sample {s} at ({oy}, {ox})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let mut r = crate::rng::Rng::new(2);
        for g in geoms() {
            let n = 3;
            let mut x = vec![0.0; n * g.c * g.h * g.w];
            let mut dcols = vec![0.0; n * g.p() * g.ckk()];
            r.fill_normal(&mut x, 1.0);
            r.fill_normal(&mut dcols, 1.0);
            let mut dx = vec![f32::NAN; x.len()];
            g.col2im(&dcols, n, &mut dx);
            let want = naive_col2im(&g, &dcols, n);
            if g.reflect {
                // (Reflected edges add their terms after the row's middle: another order.)
                for (a, b) in dx.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{g:?}: {a} {b}");
                }
            } else {
                assert_eq!(dx, want, "{g:?}");
            }
            // <im2col(x), dcols> = <x, col2im(dcols)>
            let mut cols = vec![f32::NAN; dcols.len()];
            g.im2col(&x, n, &mut cols);
            let a: f64 = cols.iter().zip(&dcols).map(|(a, b)| (a * b) as f64).sum();
            let b: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
            assert!((a - b).abs() < 1e-3 * (1.0 + a.abs()), "{g:?}: {a} {b}");
        }
    }

    /// The chunked convolution (cache-sized chunks of the batch split across threads) gives the
    /// whole-batch convolution's outputs and input gradients bit for bit, and its weight and
    /// bias gradients up to the order of their sums, at 1, 2 and 3 threads, with a batch that is
    /// not a whole number of chunks; forward only, keeping no columns, the same outputs.
    #[test]
    fn chunked_convolution_matches_the_whole_batch_one() {
        let mut r = crate::rng::Rng::new(3);
        for g in geoms() {
            let n = 2 * g.chunk_samples() + 1;
            let (xl, yl) = (g.c * g.h * g.w, g.o * g.p());
            let mut x = vec![0.0; n * xl];
            let mut w = vec![0.0; g.o * g.ckk()];
            let mut b = vec![0.0; g.o];
            let mut gy = vec![0.0; n * yl];
            for v in [&mut x, &mut w, &mut b, &mut gy] {
                r.fill_normal(v, 1.0);
            }
            let (mut cols, mut tmp, mut dcols) =
                (vec![0.0; n * g.p() * g.ckk()], vec![0.0; n * g.p() * g.o], vec![0.0; n * g.p() * g.ckk()]);
            let mut y = vec![0.0; n * yl];
            g.forward(&x, n, &w, Some(&b), &mut cols, &mut tmp, &mut y);
            let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; g.o], vec![0.0; x.len()]);
            g.backward(&gy, n, &cols, &mut tmp, &mut dw, Some(&mut db), Some((&w, &mut dcols, &mut dx)));
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let (mut parts, mut ccols, mut y2) = (Vec::new(), vec![0.0; cols.len()], vec![0.0; y.len()]);
                    let t = g.forward_chunked(&x, n, &w, Some(&b), &mut parts, &mut ccols, &mut y2);
                    assert_eq!(t, threads);
                    assert_eq!(y2, y, "{g:?} at {threads} threads");
                    // Forward only (no columns kept: each part reuses one chunk's): the same bits.
                    let (mut fparts, mut y4) = (Vec::new(), vec![0.0; y.len()]);
                    g.forward_chunked(&x, n, &w, Some(&b), &mut fparts, &mut [], &mut y4);
                    assert_eq!(y4, y, "{g:?} at {threads} threads, forward only");
                    // Each part held one chunk's columns, not its share of the batch's.
                    assert!(fparts[..t].iter().all(|q| q.cols.len() == g.chunk_samples() * g.p() * g.ckk()));
                    assert!(g.chunk_samples() < n);
                    let (mut dw2, mut db2, mut dx2) = (vec![0.0; w.len()], vec![0.0; g.o], vec![0.0; x.len()]);
                    g.backward_chunked(&gy, n, &ccols, t, &mut parts, &mut dw2, Some(&mut db2), Some((&w, &mut dx2)));
                    assert_eq!(dx2, dx, "{g:?} at {threads} threads");
                    for (a, e) in dw2.iter().zip(&dw).chain(db2.iter().zip(&db)) {
                        assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g:?} at {threads} threads: {a} vs {e}");
                    }
                    // The same thread count twice: the same bits.
                    let (mut dw3, mut db3) = (vec![0.0; w.len()], vec![0.0; g.o]);
                    g.backward_chunked(&gy, n, &ccols, t, &mut parts, &mut dw3, Some(&mut db3), None);
                    assert_eq!((dw3, db3), (dw2, db2));
                });
            }
        }
    }

    /// The backward pass of a forward pass that kept no columns is refused, not run on stale
    /// or missing columns.
    #[test]
    #[should_panic(expected = "kept no columns")]
    fn backward_after_a_forward_only_pass_is_refused() {
        let g = geoms().swap_remove(0);
        let n = 3;
        let x = vec![0.5; n * g.c * g.h * g.w];
        let w = vec![0.1; g.o * g.ckk()];
        let (mut parts, mut y) = (Vec::new(), vec![0.0; n * g.o * g.p()]);
        let t = g.forward_chunked(&x, n, &w, None, &mut parts, &mut [], &mut y);
        let gy = vec![1.0; y.len()];
        let mut dw = vec![0.0; w.len()];
        g.backward_chunked(&gy, n, &[], t, &mut parts, &mut dw, None, None);
    }

    #[test]
    fn reflect_padding_indices() {
        let g = ConvGeom { c: 1, h: 4, w: 4, o: 1, k: 3, stride: 1, pad: 1, reflect: true };
        // Row -1 reflects to row 1, row 4 to row 2 (no edge repeat), as torch's 'reflect'.
        assert_eq!((g.coord(0, 0, 4), g.coord(0, 0, 4)), (Some(1), Some(1)));
        assert_eq!(g.coord(3, 2, 4), Some(2));
    }
}
