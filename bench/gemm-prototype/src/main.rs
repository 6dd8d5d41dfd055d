//! Issue 18's prototype: can a hand-written AVX-512 kernel beat the `gemm` crate on the MLP
//! 784-1024-10 step's two large products at batch 128, on one thread? A measurement, not
//! biolearn code: `cd bench/gemm-prototype && cargo run --release` (AVX-512F needed).
//!
//! The kernel: a 12 x 32 tile of C in 24 zmm accumulators; per reduction index, two 16-wide
//! loads of a B row panel and 12 broadcasts of A (any strides), one FMA chain per entry from
//! zero, in reduction order.
//! - forward Y = X W^T (128 x 1024 x 784): computed as Y^T = W X^T, X^T packed once by gathers
//!   (19 us), each tile's 12 x 32 result stored transposed into Y by masked gathers / stores;
//! - weight gradient dW = delta^T X (1024 x 784 x 128): delta^T packed into 12-wide panels,
//!   X's 32-column panels read in place (each stays in L1 across the 85 tiles).
//! Both skip the tails (the last 4 of 1024 rows, the last 16 of 784 columns); the printed
//! differences are over the rows / columns computed. Intel Xeon model 207 (FMA peak 175
//! GFLOP/s a core), 2026-12-06, two other jobs at nice 19 on the 2 cores, best of 30:
//! - forward: the gemm crate as biolearn calls it (`linalg::matmul_bias_nt`: C^T column-major,
//!   the weights read in place) 1.23-1.24 ms, 166-167 GFLOP/s, 95% of the peak; asked for a
//!   row-major C (it then packs the weights) 1.56-1.58 ms, 130-132 GFLOP/s; this kernel 1.28
//!   ms (161 GFLOP/s) with its packing and transposed stores, 1.21 ms (169, 97%) alone;
//! - weight gradient: the crate 1.33-1.36 ms (151-155 GFLOP/s, 87%), this kernel 1.31-1.32 ms.
//! So the step's two large products are at the machine's arithmetic limit already; the MLP's
//! 1-thread gap to issue 18's 1.3x is elsewhere (SGD's memory-bound pass: 0.39 ms, 12% of the
//! 1-thread step in `biolearn bench --kernels`). Fusing SGD into the weight gradient by blocks
//! of rows (each block's gradient updated while in L2) through gemm calls is slower, not
//! faster: dW alone 1.33 ms, dW then SGD 1.67-1.68 ms, in 256-row blocks 1.81 ms (64-row
//! blocks 1.87: each call packs the batch again). dW's entries are the crate's bit for bit (one chain over the 128 samples
//! either way); the forward's differ in the last bits in 93% of entries (the crate splits the
//! 784-long reduction into blocks).

use std::arch::x86_64::*;
use std::time::Instant;

const M: usize = 128; // batch (i)
const N: usize = 1024; // out (o)
const K: usize = 784;

// C^T tile: 12 rows of W (o) x 32 columns of X^T (i); xt: packed X^T panel [K][32]
#[target_feature(enable = "avx512f")]
unsafe fn kernel12x32(w: *const f32, ldw: usize, xt: *const f32, k: usize, out: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; 12];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(xt.add(kk * 32));
        let b1 = _mm512_loadu_ps(xt.add(kk * 32 + 16));
        for r in 0..12 {
            let a = _mm512_set1_ps(*w.add(r * ldw + kk));
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for r in 0..12 {
        _mm512_storeu_ps(out.add(r * 32), acc[r][0]);
        _mm512_storeu_ps(out.add(r * 32 + 16), acc[r][1]);
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn pack_xt_avx(x: &[f32], xt: &mut [f32]) {
    let idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(K as i32));
    for p in 0..M / 32 {
        for h in 0..2 {
            let base = x.as_ptr().add((p * 32 + h * 16) * K);
            let dst = xt.as_mut_ptr().add(p * K * 32 + h * 16);
            for kk in 0..K {
                let g = _mm512_i32gather_ps::<4>(idx, base.add(kk));
                _mm512_storeu_ps(dst.add(kk * 32), g);
            }
        }
    }
}
fn pack_xt(x: &[f32], xt: &mut [f32]) { unsafe { pack_xt_avx(x, xt) } }

#[target_feature(enable = "avx512f")]
unsafe fn store_t_avx(tmp: &[f32], c: &mut [f32], p: usize, o0: usize) {
    let idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(32));
    let m: __mmask16 = 0x0fff;
    for i in 0..32 {
        let g = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, idx, tmp.as_ptr().add(i));
        _mm512_mask_storeu_ps(c.as_mut_ptr().add((p * 32 + i) * N + o0), m, g);
    }
}
fn store_t(tmp: &[f32], c: &mut [f32], p: usize, o0: usize) { unsafe { store_t_avx(tmp, c, p, o0) } }

#[target_feature(enable = "avx512f")]
unsafe fn kernel_s(a: *const f32, ars: usize, acs: usize, b: *const f32, brs: usize, k: usize, c: *mut f32, ldc: usize) {
    let mut acc = [[_mm512_setzero_ps(); 2]; 12];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(b.add(kk * brs));
        let b1 = _mm512_loadu_ps(b.add(kk * brs + 16));
        let ak = a.add(kk * acs);
        for r in 0..12 {
            let av = _mm512_set1_ps(*ak.add(r * ars));
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    for r in 0..12 {
        _mm512_storeu_ps(c.add(r * ldc), acc[r][0]);
        _mm512_storeu_ps(c.add(r * ldc + 16), acc[r][1]);
    }
}

fn main() {
    let x: Vec<f32> = (0..M * K).map(|i| ((i * 7919) % 1000) as f32 * 1e-3).collect();
    let w: Vec<f32> = (0..N * K).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
    let mut c = vec![0f32; M * N];
    let flops = 2.0 * (M * N * K) as f64;
    // gemm crate: C = X W^T
    let run_gemm = |c: &mut [f32]| unsafe {
        gemm::gemm(M, N, K, c.as_mut_ptr(), 1, N as isize, false, x.as_ptr(), 1, K as isize, w.as_ptr(), K as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
    };
    // packed X^T panels: 4 panels of 32
    let mut xt = vec![0f32; K * M];
    let mut tmp = vec![0f32; 12 * 32];
    let run_mine = |c: &mut [f32], xt: &mut [f32], tmp: &mut [f32]| unsafe {
        pack_xt(&x, xt);
        let mut o0 = 0;
        while o0 + 12 <= N {
            for p in 0..M / 32 {
                kernel12x32(w.as_ptr().add(o0 * K), K, xt.as_ptr().add(p * K * 32), K, tmp.as_mut_ptr());
                store_t(tmp, c, p, o0);
            }
            o0 += 12;
        }
    };
    // The gemm crate as biolearn's matmul_bias_nt calls it: C^T column-major (ct[o * M + i]),
    // the weights read in place.
    let mut ct = vec![0f32; M * N];
    let mut best_gc = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        unsafe {
            gemm::gemm(M, N, K, ct.as_mut_ptr(), M as isize, 1, false, x.as_ptr(), 1, K as isize, w.as_ptr(), K as isize, 1, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
        }
        best_gc = best_gc.min(t.elapsed().as_secs_f64());
    }
    // The weight gradient then SGD (momentum 0.9, weight decay 1e-4), as a step does it (the
    // whole gradient, then one pass over weights, momenta and gradients), against the same in
    // blocks of rows (each block's gradient updated while it is in L2).
    {
        let delta: Vec<f32> = (0..M * N).map(|i| ((i * 31) % 997) as f32 * 1e-5).collect();
        let mut wv = w.clone();
        let mut v = vec![0f32; N * K];
        let mut g = vec![0f32; N * K];
        let sgd = |w: &mut [f32], v: &mut [f32], g: &[f32]| {
            for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                *v = 0.9 * *v + (*g + 1e-4 * *w);
                *w -= 0.01 * *v;
            }
        };
        let dw = |rows: std::ops::Range<usize>, g: &mut [f32]| unsafe {
            let n = rows.len();
            gemm::gemm(n, K, M, g.as_mut_ptr().add(rows.start * K), 1, K as isize, false, delta.as_ptr().add(rows.start), N as isize, 1, x.as_ptr(), 1, K as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
        };
        let (mut whole, mut blocked, mut alone) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..30 {
            let t = Instant::now();
            dw(0..N, &mut g);
            sgd(&mut wv, &mut v, &g);
            whole = whole.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for b in (0..N).step_by(256) {
                dw(b..b + 256, &mut g);
                sgd(&mut wv[b * K..(b + 256) * K], &mut v[b * K..(b + 256) * K], &g[b * K..(b + 256) * K]);
            }
            blocked = blocked.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            dw(0..N, &mut g);
            alone = alone.min(t.elapsed().as_secs_f64());
        }
        println!("dW alone {:.3} ms; dW then SGD {:.3} ms; in 256-row blocks {:.3} ms", alone * 1e3, whole * 1e3, blocked * 1e3);
    }
    println!("gemm crate, column-major C (biolearn's call) {:.3} ms {:.1} GFLOP/s", best_gc * 1e3, flops / best_gc * 1e-9);
    let mut best_g = f64::MAX;
    let mut best_m = f64::MAX;
    let mut best_k = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        run_gemm(&mut c);
        best_g = best_g.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        run_mine(&mut c, &mut xt, &mut tmp);
        best_m = best_m.min(t.elapsed().as_secs_f64());
        // kernel only
        let t = Instant::now();
        unsafe {
            let mut o0 = 0;
            while o0 + 12 <= N {
                for p in 0..M / 32 {
                    kernel12x32(w.as_ptr().add(o0 * K), K, xt.as_ptr().add(p * K * 32), K, tmp.as_mut_ptr());
                }
                o0 += 12;
            }
        }
        best_k = best_k.min(t.elapsed().as_secs_f64() * (N as f64) / (1020.0));
    }
    let mut bp = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        pack_xt(&x, &mut xt);
        bp = bp.min(t.elapsed().as_secs_f64());
    }
    println!("pack {:.3} ms", bp * 1e3);
    // correctness of forward vs gemm (rows o < 1020)
    let mut c1 = vec![0f32; M * N];
    let mut c2 = vec![0f32; M * N];
    run_gemm(&mut c1);
    run_mine(&mut c2, &mut xt, &mut tmp);
    let mut md = 0f32; let mut same = 0usize;
    for i in 0..M { for o in 0..1020 { let d = (c1[i*N+o]-c2[i*N+o]).abs(); md = md.max(d); if c1[i*N+o].to_bits()==c2[i*N+o].to_bits() { same += 1; } } }
    println!("forward max diff {md:e}, bit-identical {same} of {}", M*1020);
    // dW = delta^T X : (N x K) = sum_i delta[i][o] X[i][k]
    let delta: Vec<f32> = (0..M * N).map(|i| ((i * 31) % 997) as f32 * 1e-3 - 0.5).collect();
    let mut dw1 = vec![0f32; N * K];
    let mut dw2 = vec![0f32; N * K];
    let f2 = 2.0 * (M * N * K) as f64;
    let (mut bg, mut bm) = (f64::MAX, f64::MAX);
    let mut ap = vec![0f32; N * M];
    for _ in 0..30 {
        let t = Instant::now();
        unsafe { gemm::gemm(N, K, M, dw1.as_mut_ptr(), 1, K as isize, false, delta.as_ptr(), N as isize, 1, x.as_ptr(), 1, K as isize, 0.0, 1.0, false, false, false, gemm::Parallelism::None); }
        bg = bg.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        unsafe {
            let tiles = N / 12;
            for kk in 0..M {
                for t in 0..tiles {
                    ap[(t * M + kk) * 12..(t * M + kk) * 12 + 12].copy_from_slice(&delta[kk * N + t * 12..kk * N + t * 12 + 12]);
                }
            }
            let mut k0 = 0;
            while k0 + 32 <= K {
                for t in 0..tiles {
                    kernel_s(ap.as_ptr().add(t * M * 12), 1, 12, x.as_ptr().add(k0), K, M, dw2.as_mut_ptr().add(t * 12 * K + k0), K);
                }
                k0 += 32;
            }
        }
        bm = bm.min(t.elapsed().as_secs_f64());
    }
    let mut md = 0f32; let mut same = 0usize; let mut n = 0;
    for o in 0..1020 { for k in 0..768 { n += 1; let d = (dw1[o*K+k]-dw2[o*K+k]).abs(); md = md.max(d); if dw1[o*K+k].to_bits()==dw2[o*K+k].to_bits() { same += 1; } } }
    println!("dW gemm {:.3} ms {:.1} GFLOP/s; mine {:.3} ms {:.1} GFLOP/s (tails missing); max diff {md:e}, identical {same}/{n}", bg*1e3, f2/bg*1e-9, bm*1e3, f2/bm*1e-9);
    println!("gemm crate {:.3} ms {:.1} GFLOP/s", best_g * 1e3, flops / best_g * 1e-9);
    println!("mine       {:.3} ms {:.1} GFLOP/s (o tail missing)", best_m * 1e3, flops / best_m * 1e-9);
    println!("kernel     {:.3} ms {:.1} GFLOP/s", best_k * 1e3, flops / best_k * 1e-9);
}
