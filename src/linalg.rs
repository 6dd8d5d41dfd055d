//! Dense f32 kernels: the GEMM wrapper over the `gemm` crate (AVX-512 through its `x86-v4`
//! feature) and the parallel element-wise helpers every layer uses.
//!
//! All matrices are row-major slices. A training step runs inside one rayon pool (see
//! `train::Trainer`); kernels here take their thread count from the current pool, and small
//! products run single-threaded, where splitting costs more than it gains.
//!
//! Determinism: GEMM splits output blocks across threads, never the reduction dimension, and the
//! element-wise helpers use fixed chunk sizes, so results depend on the thread count at most
//! through GEMM's blocking, and never on scheduling.

use gemm::Parallelism;
use rayon::prelude::*;

/// Below this many multiply-adds a product runs on one thread.
const PAR_MIN_FLOPS: usize = 1 << 18;
/// Element-wise loops shorter than this run sequentially.
pub const PAR_MIN_LEN: usize = 1 << 15;
/// Chunk length for parallel element-wise loops (fixed, so results never depend on scheduling).
pub const CHUNK: usize = 1 << 13;

/// The SIMD path the dense kernels take on this CPU (the `gemm` crate and the dot-product kernel
/// dispatch the same way): "avx512", "avx2" or "generic".
pub fn kernel_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2";
        }
    }
    "generic"
}

thread_local! {
    /// Multiply-adds of the GEMMs called on this thread (a run's training loop runs on one
    /// thread of its pool; the products' own worker threads are not counted twice).
    static MACS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

thread_local! {
    /// Products on this thread run on it alone (`serial`).
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with every product it calls on this thread single-threaded: work already split
/// across the pool's threads (layer-parallel blocks) does not split its products again.
/// Products then block as on one thread (deterministic, but not the pool's blocking).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let was = SERIAL.with(|s| s.replace(true));
    let r = f();
    SERIAL.with(|s| s.set(was));
    r
}

/// The threads this thread's products and element-wise helpers may split across: the pool's,
/// or 1 inside `serial`.
fn gemm_threads() -> usize {
    if SERIAL.with(|s| s.get()) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Keeps the pool's other threads from sleeping while it lives (a training epoch): each runs a
/// job that takes the pool's work as it comes and otherwise yields its core, as OpenMP's workers
/// spin between parallel regions. Without it a worker left idle for a few tens of microseconds
/// (a step's serial parts) goes to sleep, and waking it for the next product costs about as long
/// again, several times a step. A spinner idle for `IDLE_LIMIT` returns (its thread then sleeps
/// as before: a long serial stretch, or more threads than cores); `rearm`, once a step, starts
/// it again. Changes no result: which thread runs a block never does. None on one thread or
/// outside a pool.
pub struct Awake {
    owner: usize,
    threads: usize,
    state: std::sync::Arc<AwakeState>,
}

#[derive(Default)]
struct AwakeState {
    stop: std::sync::atomic::AtomicBool,
    spinning: std::sync::atomic::AtomicUsize,
}

/// How long a spinner waits for work before it lets its thread sleep.
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_micros(500);

impl Awake {
    pub fn start() -> Option<Awake> {
        let owner = rayon::current_thread_index()?;
        let threads = rayon::current_num_threads();
        if threads < 2 || SERIAL.with(|s| s.get()) {
            return None;
        }
        let a = Awake { owner, threads, state: Default::default() };
        a.rearm();
        Some(a)
    }

    /// Start spinners where fewer than the pool's other threads spin (those that went idle).
    pub fn rearm(&self) {
        use std::sync::atomic::Ordering;
        let spinning = self.state.spinning.load(Ordering::Relaxed);
        for _ in spinning..self.threads - 1 {
            self.state.spinning.fetch_add(1, Ordering::Relaxed);
            let (state, owner) = (self.state.clone(), self.owner);
            rayon::spawn(move || {
                // Popped by the owner itself (while it waits inside a join): spinning there
                // would wait on the owner, so return at once.
                if rayon::current_thread_index() != Some(owner) {
                    let mut idle_since = None;
                    while !state.stop.load(Ordering::Relaxed) {
                        if matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                            idle_since = None;
                        } else if idle_since.get_or_insert_with(std::time::Instant::now).elapsed() > IDLE_LIMIT {
                            break;
                        } else {
                            std::thread::yield_now();
                        }
                    }
                }
                state.spinning.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        // The spinners see it and return; one not yet started returns when it starts.
        self.state.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether an element-wise pass over `len` values splits across the pool's threads: long
/// enough, and not inside `serial` (work already split across the threads).
pub fn par_elementwise(len: usize) -> bool {
    len >= PAR_MIN_LEN && gemm_threads() > 1
}

/// Multiply-adds (m n k) of every `matmul` this thread has called: a training step's dense and
/// convolution arithmetic (element-wise work is not counted).
pub fn macs() -> u64 {
    MACS.with(|c| c.get())
}

/// The in-memory arrays a training step reads (for the hardware cost model,
/// `protocol::cost`): the parameter buffers registered by `watch_arrays`, each stored
/// `out x inp` row-major as a crossbar holds it (inputs on its rows), and the vectors every
/// `matmul` on this thread read through them: along the inputs (`forward`, y = W x) or the
/// outputs (`transposed`, d = W^T e). Products with no registered operand (weight gradients,
/// a rule's own element arithmetic) are digital and not counted here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArrayReads {
    /// (first address, length) of each registered buffer.
    spans: Vec<(usize, usize)>,
    pub forward: Vec<u64>,
    pub transposed: Vec<u64>,
}

impl ArrayReads {
    fn array_of(&self, v: &[f32]) -> Option<usize> {
        let p = v.as_ptr() as usize;
        self.spans.iter().position(|&(a, len)| p >= a && p < a + len * 4)
    }
    /// Add another step's reads (same arrays).
    pub fn add(&mut self, o: &ArrayReads) {
        for (a, b) in self.forward.iter_mut().zip(&o.forward) {
            *a += b;
        }
        for (a, b) in self.transposed.iter_mut().zip(&o.transposed) {
            *a += b;
        }
    }
}

thread_local! {
    static READS: std::cell::RefCell<Option<ArrayReads>> = const { std::cell::RefCell::new(None) };
}

/// Count the reads of these buffers (a run's weight and feedback arrays) on this thread until
/// `take_reads`.
pub fn watch_arrays(bufs: &[&[f32]]) {
    let spans = bufs.iter().map(|b| (b.as_ptr() as usize, b.len())).collect();
    let n = bufs.len();
    READS.with(|r| *r.borrow_mut() = Some(ArrayReads { spans, forward: vec![0; n], transposed: vec![0; n] }));
}

/// Whether this thread counts array reads (`watch_arrays`).
pub fn watching() -> bool {
    READS.with(|r| r.borrow().is_some())
}

/// Add multiply-adds done for this thread's work on other threads (`macs`).
pub fn add_macs(n: u64) {
    MACS.with(|c| c.set(c.get() + n));
}

/// The reads counted since `watch_arrays`, which stops counting.
pub fn take_reads() -> Option<ArrayReads> {
    READS.with(|r| r.borrow_mut().take())
}

/// A read of array `w` by `vectors` input vectors computed outside `matmul` (the hardware read
/// model's sub-array products, which work on a conductance copy of `w`).
pub fn note_read(w: &[f32], vectors: usize, transposed: bool) {
    READS.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            if let Some(i) = r.array_of(w) {
                let v = if transposed { &mut r.transposed } else { &mut r.forward };
                v[i] += vectors as u64;
            }
        }
    });
}

/// Classify one product for `ArrayReads`: a registered `b` stored n x k (`tb`) is read along
/// its inputs by the m rows of `a`, stored k x n it is read transposed; a registered `a` stored
/// m x k is read along its inputs by the n columns of `b`, stored k x m transposed.
#[allow(clippy::too_many_arguments)]
fn count_reads(m: usize, n: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) {
    READS.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            if let Some(i) = r.array_of(b) {
                let v = if tb { &mut r.forward } else { &mut r.transposed };
                v[i] += m as u64;
            } else if let Some(i) = r.array_of(a) {
                let v = if ta { &mut r.transposed } else { &mut r.forward };
                v[i] += n as u64;
            }
        }
    });
}

/// One `matmul` call's shape, as `trace_products` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub ta: bool,
    pub tb: bool,
    pub accumulate: bool,
    /// A dense layer's forward product through `matmul_bias_nt`, whose wide products take
    /// another path than `matmul` (a replay calls it again, not `matmul`).
    pub bias_nt: bool,
}

thread_local! {
    static TRACE: std::cell::RefCell<Option<Vec<Product>>> = const { std::cell::RefCell::new(None) };
}

/// Run `f`, recording the shape of every `matmul` it calls on this thread (products run on
/// other threads by the work `f` splits itself, such as layer-parallel blocks, are not seen):
/// the kernel suite (`bench::kernels`) times a step's products alone from this list.
pub fn trace_products<R>(f: impl FnOnce() -> R) -> (R, Vec<Product>) {
    let was = TRACE.with(|t| t.replace(Some(Vec::new())));
    let r = f();
    let got = TRACE.with(|t| t.replace(was)).unwrap_or_default();
    (r, got)
}

/// Whether a product of m x n x k multiply-adds splits across `threads`. Thin products (a conv's
/// few output channels over a whole batch of positions) still split well along their long side.
fn splits(m: usize, n: usize, k: usize, threads: usize) -> bool {
    threads > 1 && m * n * k >= PAR_MIN_FLOPS && m.max(n) >= 256
}

/// How biolearn splits a product's C (mm x nn, as gemm sees it) across the threads, each block a
/// single-threaded product, rather than leave it to gemm: its own split hardly gains on the
/// batch-sized products of a training step (MLP 784-1024-10's forward, 128 x 1024 x 784: 1.24
/// ms at 1 thread and at 2; split by columns here, 0.58 ms; `biolearn bench --kernels`). Rows in
/// blocks of gemm's 64-row micro-panels when each thread gets at least two, else columns in
/// blocks of 16 when each gets at least 32. One rule for every caller, so a product computed
/// another way (`matmul_bias_nt`) blocks, and so sums, as `matmul_unnoted` does.
#[derive(Clone, Copy)]
struct Blocks {
    /// Blocks of columns (else rows).
    cols: bool,
    /// Columns (rows) in all.
    len: usize,
    /// Columns (rows) per block.
    part: usize,
}

impl Blocks {
    fn of(mm: usize, nn: usize, threads: usize) -> Option<Blocks> {
        let (cols, len, align) = if mm >= 2 * 64 * threads {
            (false, mm, 64)
        } else if nn >= 2 * 16 * threads {
            (true, nn, 16)
        } else {
            return None;
        };
        Some(Blocks { cols, len, part: len.div_ceil(threads).div_ceil(align) * align })
    }

    fn count(&self) -> usize {
        self.len.div_ceil(self.part)
    }

    /// Block t's columns (rows) lo..hi.
    fn range(&self, t: usize) -> (usize, usize) {
        (t * self.part, ((t + 1) * self.part).min(self.len))
    }
}

/// `c = op(a) * op(b)` (or `c += ...` when `accumulate`), with `op(a)` of shape m x k and
/// `op(b)` of shape k x n, all row-major. `ta`: `a` is stored k x m (use its transpose);
/// `tb`: `b` is stored n x k.
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool, c: &mut [f32], accumulate: bool) {
    assert!(a.len() >= m * k, "matmul: a has {} < {}x{}", a.len(), m, k);
    assert!(b.len() >= k * n, "matmul: b has {} < {}x{}", b.len(), k, n);
    assert!(c.len() >= m * n, "matmul: c has {} < {}x{}", c.len(), m, n);
    if m == 0 || n == 0 {
        return;
    }
    note_product(m, n, k, a, ta, b, tb, accumulate);
    matmul_unnoted(m, n, k, a, ta, b, tb, c, accumulate);
}

/// Count one product on this thread as `matmul` does (multiply-adds, array reads, the product
/// trace) without computing it: for work that computes a product in parts on other threads
/// (`matmul_unnoted`) but is one product of the step (a convolution run in chunks of the batch).
/// `a` and `b` are only looked at for which registered array they are.
#[allow(clippy::too_many_arguments)]
pub fn note_product(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool, accumulate: bool) {
    note(Product { m, n, k, ta, tb, accumulate, bias_nt: false }, a, b);
}

/// `note_product` of a product described by `p`.
fn note(p: Product, a: &[f32], b: &[f32]) {
    let Product { m, n, k, ta, tb, .. } = p;
    if m == 0 || n == 0 {
        return;
    }
    MACS.with(|c| c.set(c.get() + (m * n * k) as u64));
    count_reads(m, n, a, ta, b, tb);
    TRACE.with(|t| {
        if let Some(v) = t.borrow_mut().as_mut() {
            v.push(p);
        }
    });
}

/// `matmul` without counting it (`note_product`): the same arithmetic.
#[allow(clippy::too_many_arguments)]
pub fn matmul_unnoted(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() >= m * k, "matmul: a has {} < {}x{}", a.len(), m, k);
    assert!(b.len() >= k * n, "matmul: b has {} < {}x{}", b.len(), k, n);
    assert!(c.len() >= m * n, "matmul: c has {} < {}x{}", c.len(), m, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // (row stride, column stride) of each operand as seen by the product.
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let threads = gemm_threads();
    let par = if splits(m, n, k, threads) { Parallelism::Rayon(threads) } else { Parallelism::None };
    // Long reductions into a small output (convolution weight gradients: O x CKK summed over
    // every position of the batch) are dot products; gemm's packing makes them slow.
    if !ta && tb && m * n <= 1 << 14 && k >= 1024 && k >= 8 * m.max(n) {
        dot_products(m, n, k, a, b, c, accumulate);
        return;
    }
    // gemm's micro-kernels are tall (up to 64 rows of AVX-512 lanes by a few columns): a product
    // with few rows and many columns runs far faster as its transpose C^T = B^T A^T, written
    // straight into C through swapped destination strides.
    let swap = m < 64 && n > m;
    let (mm, nn) = if swap { (n, m) } else { (m, n) };
    let (dst_cs, dst_rs) = if swap { (n as isize, 1) } else { (1, n as isize) };
    let (lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs) =
        if swap { (b, b_rs, b_cs, a, a_rs, a_cs) } else { (a, a_cs, a_rs, b, b_cs, b_rs) };
    // Split across the threads here (`Blocks`), else gemm's own split.
    let split = if matches!(par, Parallelism::Rayon(_)) { Blocks::of(mm, nn, threads) } else { None };
    if let Some(bl) = split {
        let cols = bl.cols;
        let (cp, lp, rp) = (c.as_mut_ptr() as usize, lhs.as_ptr() as usize, rhs.as_ptr() as usize);
        (0..bl.count()).into_par_iter().for_each(|t| {
            let (lo, hi) = bl.range(t);
            // Block t: C's rows (columns) lo..hi, from the same rows of lhs (columns of rhs).
            let (rows, cols_n, c_off, l_off, r_off) = if cols {
                (mm, hi - lo, lo as isize * dst_cs, 0, lo as isize * rhs_cs)
            } else {
                (hi - lo, nn, lo as isize * dst_rs, lo as isize * lhs_rs, 0)
            };
            // SAFETY: as below; the blocks write disjoint parts of C, each block's operand
            // pointers offset to its first row (column), inside the asserted bounds.
            unsafe {
                gemm_f32(
                    rows,
                    cols_n,
                    k,
                    (cp as *mut f32).offset(c_off),
                    dst_cs,
                    dst_rs,
                    accumulate,
                    (lp as *const f32).offset(l_off),
                    lhs_cs,
                    lhs_rs,
                    (rp as *const f32).offset(r_off),
                    rhs_cs,
                    rhs_rs,
                    Parallelism::None,
                );
            }
        });
        return;
    }
    // SAFETY: the asserts above guarantee every index the strides reach lies inside the slices;
    // `c` is exclusively borrowed and does not alias `a` or `b`.
    unsafe {
        gemm_f32(
            mm,
            nn,
            k,
            c.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            par,
        );
    }
}

/// `c = bias + a b^T` with the bias added to every row (zero without one): a dense layer's
/// forward pass, `a` the batch (m x k), `b` the weights stored n x k, `c` m x n, all row-major.
/// The same numbers as filling c's rows with the bias and calling `matmul(.., b, true, c, true)`.
///
/// Wide products (a layer of 512 or more outputs over 256 or more inputs) are computed into a
/// column-major scratch that starts as the bias, then transposed into c: asked for a row-major
/// C, gemm transposes the problem and packs the weights (the large operand, read once a product)
/// into panels first; asked for a column-major one it reads them in place and packs only the
/// batch. MLP 784-1024-10's forward product, 128 x 1024 x 784: 1.29 -> 1.03 ms at 1 thread
/// before the transpose. Each entry is summed as the row-major call sums it (bias first, then
/// gemm's blocks of the reduction in order; `dense_bias_product_is_matmul_bit_for_bit`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_bias_nt(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    assert!(c.len() >= m * n, "matmul: c has {} < {}x{}", c.len(), m, n);
    if let Some(bias) = bias {
        assert!(bias.len() >= n, "matmul: bias has {} < {}", bias.len(), n);
    }
    if !(m >= 64 && n >= 512 && k >= 256) {
        match bias {
            Some(bias) => par_rows(&mut c[..m * n], n, |_, row| row.copy_from_slice(&bias[..n])),
            None => c[..m * n].fill(0.0),
        }
        matmul(m, n, k, a, false, b, true, c, true);
        return;
    }
    assert!(a.len() >= m * k, "matmul: a has {} < {}x{}", a.len(), m, k);
    assert!(b.len() >= k * n, "matmul: b has {} < {}x{}", b.len(), k, n);
    note(Product { m, n, k, ta: false, tb: true, accumulate: true, bias_nt: true }, a, b);
    let threads = gemm_threads();
    // Blocked as `matmul_unnoted` blocks the row-major product (each block's sums are then the
    // same); one block covering C when it does not split.
    let split = if splits(m, n, k, threads) { Blocks::of(m, n, threads) } else { None };
    let bl = split.unwrap_or(Blocks { cols: true, len: n, part: n });
    let cp = c.as_mut_ptr() as usize;
    let block = |t: usize| {
        let (lo, hi) = bl.range(t);
        // This block: rows r0..r0 + mb of C, columns c0..c0 + nb.
        let (r0, mb, c0, nb) = if bl.cols { (0, m, lo, hi - lo) } else { (lo, hi - lo, 0, n) };
        // Column-major, each column starting as its bias (zero without one).
        let mut ct = COL_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        ct.clear();
        match bias {
            Some(bias) => bias[c0..c0 + nb].iter().for_each(|&v| ct.extend(std::iter::repeat_n(v, mb))),
            None => ct.resize(mb * nb, 0.0),
        }
        // SAFETY: the asserts above bound every read: rows c0..c0 + nb of b (n x k), rows
        // r0..r0 + mb of a (m x k); ct is this block's own mb x nb buffer, column-major.
        unsafe {
            gemm_f32(
                mb,
                nb,
                k,
                ct.as_mut_ptr(),
                mb as isize,
                1,
                true,
                a.as_ptr().add(r0 * k),
                1,
                k as isize,
                b.as_ptr().add(c0 * k),
                k as isize,
                1,
                Parallelism::None,
            );
        }
        // SAFETY: rows r0..r0 + mb, columns c0..c0 + nb lie inside c (asserted m x n); the
        // blocks write disjoint parts of it.
        unsafe { transpose_into(&ct, mb, nb, (cp as *mut f32).add(r0 * n + c0), n) };
        COL_SCRATCH.with(|s| *s.borrow_mut() = ct);
    };
    if bl.count() > 1 {
        (0..bl.count()).into_par_iter().for_each(block);
    } else {
        block(0);
    }
}

/// dst[i * ld + j] = src[j * rows + i] for i < rows, j < cols: a column-major block into a
/// row-major one whose rows are `ld` apart. 16 x 16 tiles through AVX-512 registers where the
/// CPU has it, the edges (and other CPUs) one value at a time.
///
/// # Safety
/// `dst` must be valid for writes at every `i * ld + j` above; `src` holds rows x cols values.
unsafe fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: *mut f32, ld: usize) {
    assert!(src.len() >= rows * cols);
    let (r16, c16) = (rows / 16 * 16, cols / 16 * 16);
    let mut done = (0, 0);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            transpose_tiles_avx512(src, rows, r16, c16, dst, ld);
            done = (r16, c16);
        }
    }
    // Whatever the tiles left: columns past the tiles' (all rows), rows past them (tiled columns).
    for i in 0..rows {
        let j_from = if i < done.0 { done.1 } else { 0 };
        for j in j_from..cols {
            *dst.add(i * ld + j) = src[j * rows + i];
        }
    }
}

/// The full 16 x 16 tiles of `transpose_into` (rows < r16, columns < c16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_tiles_avx512(src: &[f32], rows: usize, r16: usize, c16: usize, dst: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    for j0 in (0..c16).step_by(16) {
        for i0 in (0..r16).step_by(16) {
            // r[q]: rows i0..i0 + 16 of column j0 + q (contiguous in src).
            let r: [__m512; 16] = std::array::from_fn(|q| _mm512_loadu_ps(src.as_ptr().add((j0 + q) * rows + i0)));
            // Pairs interleaved, then pairs of pairs: u[4 p + q] holds, in its 128-bit lane L,
            // element 4 L + q of vectors 4 p .. 4 p + 3.
            let t: [__m512; 16] = std::array::from_fn(|x| {
                let (a, b) = (r[x / 2 * 2], r[x / 2 * 2 + 1]);
                if x % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            let u: [__m512; 16] = std::array::from_fn(|x| {
                let (p, q) = (x / 4, x % 4);
                let (a, b) = (_mm512_castps_pd(t[4 * p + q / 2]), _mm512_castps_pd(t[4 * p + q / 2 + 2]));
                _mm512_castpd_ps(if q % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
            });
            // Element c = 4 L + q of every vector: lane L of u[q], u[4 + q], u[8 + q], u[12 + q].
            for q in 0..4 {
                let ab_even = _mm512_shuffle_f32x4::<0x88>(u[q], u[4 + q]);
                let ab_odd = _mm512_shuffle_f32x4::<0xdd>(u[q], u[4 + q]);
                let cd_even = _mm512_shuffle_f32x4::<0x88>(u[8 + q], u[12 + q]);
                let cd_odd = _mm512_shuffle_f32x4::<0xdd>(u[8 + q], u[12 + q]);
                let out = [
                    _mm512_shuffle_f32x4::<0x88>(ab_even, cd_even),
                    _mm512_shuffle_f32x4::<0x88>(ab_odd, cd_odd),
                    _mm512_shuffle_f32x4::<0xdd>(ab_even, cd_even),
                    _mm512_shuffle_f32x4::<0xdd>(ab_odd, cd_odd),
                ];
                for (l, v) in out.iter().enumerate() {
                    _mm512_storeu_ps(dst.add((i0 + 4 * l + q) * ld + j0), *v);
                }
            }
        }
    }
}

thread_local! {
    /// `matmul_bias_nt`'s column-major block, reused by the next call on this thread.
    static COL_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `gemm::gemm` as every product here calls it: dst = dst (when `read_dst`) + lhs rhs, no
/// conjugation, operands given by pointer and (column, row) strides.
///
/// # Safety
/// As `gemm::gemm`: every index the strides reach lies inside its operand; dst does not alias
/// lhs or rhs.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    par: Parallelism,
) {
    gemm::gemm(
        m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, 1.0, 1.0, false, false,
        false, par,
    )
}

/// c[i][j] (+)= sum_p a[i][p] b[j][p]: a is m x k, b is n x k, both row-major.
///
/// Threads take blocks of b's rows (columns of c); within a block the reduction runs in chunks
/// of `KC`, and each chunk is worked in register tiles of 4 rows of a by 4 rows of b (16
/// accumulators, 8 loads per 16 vector multiply-adds). Every entry is summed the same way
/// whatever the tiling or the thread count: per chunk, 16 lanes each accumulating every 16th
/// product, the lanes added in order, the chunk's tail added one by one; the chunks added in
/// order (`dot_lane_sum`).
fn dot_products(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
    const KC: usize = 2048;
    let threads = gemm_threads();
    let par = threads > 1 && m * n * k >= PAR_MIN_FLOPS;
    // Four blocks per thread for balance, unless that leaves blocks of fewer than 4 columns (an
    // MLP's output layer: 10): then one block per thread.
    let jb = if !par {
        n
    } else if n.div_ceil(4 * threads) < 4 {
        n.div_ceil(threads)
    } else {
        n.div_ceil(4 * threads)
    };
    // c transposed (n x m): each block of j is a contiguous chunk. The buffer is this thread's,
    // kept between calls (a chunked convolution calls this once per chunk of every step).
    let mut ct = DOT_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    ct.clear();
    ct.resize(n * m, 0.0);
    let block = |t: usize, blk: &mut [f32]| {
        let j0 = t * jb;
        let jn = blk.len() / m;
        let mut p0 = 0;
        while p0 < k {
            let len = KC.min(k - p0);
            dot_tiles(&a[p0..], m, &b[j0 * k + p0..], jn, k, len, blk);
            p0 += len;
        }
    };
    if par {
        ct.par_chunks_mut(jb * m).enumerate().for_each(|(t, blk)| block(t, blk));
    } else {
        block(0, &mut ct);
    }
    for i in 0..m {
        for j in 0..n {
            let v = &mut c[i * n + j];
            *v = if accumulate { *v + ct[j * m + i] } else { ct[j * m + i] };
        }
    }
    DOT_SCRATCH.with(|s| *s.borrow_mut() = ct);
}

thread_local! {
    /// `dot_products`' transposed output, reused by the next call on this thread.
    static DOT_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// out[j m + i] += dot(a row i, b row j) over the first `len` values of each row (rows `stride`
/// apart), for i < m, j < n (`dot_lane_sum`).
fn dot_tiles(a: &[f32], m: usize, b: &[f32], n: usize, stride: usize, len: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { dot_tiles_avx512(a, m, b, n, stride, len, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { dot_tiles_avx2(a, m, b, n, stride, len, out) };
        }
    }
    dot_tiles_generic(a, m, b, n, stride, len, out)
}

/// The 4 x 4 tiles in AVX-512 registers (one 16-lane vector per accumulator), the rest one
/// entry at a time; per entry the same arithmetic as `dot_lane_sum`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_tiles_avx512(a: &[f32], m: usize, b: &[f32], n: usize, stride: usize, len: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    let full = len / L * L;
    let (m4, n4) = (m / 4 * 4, n / 4 * 4);
    assert!(m == 0 || a.len() >= (m - 1) * stride + len);
    assert!(n == 0 || b.len() >= (n - 1) * stride + len);
    assert!(out.len() >= n * m);
    for j in (0..n4).step_by(4) {
        for i in (0..m4).step_by(4) {
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            let (pa, pb) = (a.as_ptr().add(i * stride), b.as_ptr().add(j * stride));
            let mut p = 0;
            while p < full {
                // SAFETY: p + 16 <= len, and every row read starts inside the asserted bounds.
                let av: [__m512; 4] = std::array::from_fn(|r| _mm512_loadu_ps(pa.add(r * stride + p)));
                let bv: [__m512; 4] = std::array::from_fn(|c| _mm512_loadu_ps(pb.add(c * stride + p)));
                for r in 0..4 {
                    for c in 0..4 {
                        acc[r][c] = _mm512_fmadd_ps(av[r], bv[c], acc[r][c]);
                    }
                }
                p += L;
            }
            for r in 0..4 {
                for c in 0..4 {
                    let mut lanes = [0.0f32; L];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), acc[r][c]);
                    let ar = &a[(i + r) * stride..(i + r) * stride + len];
                    let br = &b[(j + c) * stride..(j + c) * stride + len];
                    out[(j + c) * m + i + r] += finish_lanes(&lanes, ar, br, full);
                }
            }
        }
        for i in m4..m {
            for c in 0..4 {
                dot_lane_sum(a, i, b, j + c, stride, len, m, out);
            }
        }
    }
    // The last columns (fewer than 4 rows of b) in tiles of 4 rows of a by 1 row of b: four
    // independent accumulators where one entry at a time is one chain of dependent additions.
    for j in n4..n {
        let pb = b.as_ptr().add(j * stride);
        let br = &b[j * stride..j * stride + len];
        for i in (0..m4).step_by(4) {
            let mut acc = [_mm512_setzero_ps(); 4];
            let pa = a.as_ptr().add(i * stride);
            let mut p = 0;
            while p < full {
                // SAFETY: p + 16 <= len, and every row read starts inside the asserted bounds.
                let bv = _mm512_loadu_ps(pb.add(p));
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(r * stride + p)), bv, *acc);
                }
                p += L;
            }
            for (r, acc) in acc.iter().enumerate() {
                let mut lanes = [0.0f32; L];
                _mm512_storeu_ps(lanes.as_mut_ptr(), *acc);
                let ar = &a[(i + r) * stride..(i + r) * stride + len];
                out[j * m + i + r] += finish_lanes(&lanes, ar, br, full);
            }
        }
        for i in m4..m {
            dot_lane_sum(a, i, b, j, stride, len, m, out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_tiles_avx2(a: &[f32], m: usize, b: &[f32], n: usize, stride: usize, len: usize, out: &mut [f32]) {
    dot_tiles_generic(a, m, b, n, stride, len, out)
}

#[inline(always)]
fn dot_tiles_generic(a: &[f32], m: usize, b: &[f32], n: usize, stride: usize, len: usize, out: &mut [f32]) {
    for j in 0..n {
        for i in 0..m {
            dot_lane_sum(a, i, b, j, stride, len, m, out);
        }
    }
}

/// The lanes added in order, then the chunk's tail beyond `full` one product at a time.
#[inline(always)]
fn finish_lanes(lanes: &[f32; 16], ar: &[f32], br: &[f32], full: usize) -> f32 {
    let mut s = lanes.iter().sum::<f32>();
    for (x, y) in ar[full..].iter().zip(&br[full..]) {
        s = x.mul_add(*y, s);
    }
    s
}

/// out[j m + i] += the chunk's dot product of a's row i with b's row j (the first `len` values
/// of rows `stride` apart), summed as 16 lanes (lane l takes products l, l + 16, ...), the
/// lanes added in order, then the tail beyond the last multiple of 16 one by one.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dot_lane_sum(a: &[f32], i: usize, b: &[f32], j: usize, stride: usize, len: usize, m: usize, out: &mut [f32]) {
    const L: usize = 16;
    let full = len / L * L;
    let ar = &a[i * stride..i * stride + len];
    let br = &b[j * stride..j * stride + len];
    let mut acc = [0.0f32; L];
    for (ac, bc) in ar[..full].chunks_exact(L).zip(br[..full].chunks_exact(L)) {
        for l in 0..L {
            acc[l] = ac[l].mul_add(bc[l], acc[l]);
        }
    }
    out[j * m + i] += finish_lanes(&acc, ar, br, full);
}

/// Apply `f` to fixed-size chunks of `v` (with the chunk's start offset), in parallel when long.
pub fn par_chunks_mut<F>(v: &mut [f32], f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if !par_elementwise(v.len()) {
        for (i, c) in v.chunks_mut(CHUNK).enumerate() {
            f(i * CHUNK, c);
        }
    } else {
        v.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| f(i * CHUNK, c));
    }
}

/// Zip two equal-length slices chunk by chunk: `f(offset, out_chunk, in_chunk)`.
pub fn par_zip<F>(out: &mut [f32], inp: &[f32], f: F)
where
    F: Fn(usize, &mut [f32], &[f32]) + Sync + Send,
{
    assert_eq!(out.len(), inp.len());
    if !par_elementwise(out.len()) {
        for (i, (o, x)) in out.chunks_mut(CHUNK).zip(inp.chunks(CHUNK)).enumerate() {
            f(i * CHUNK, o, x);
        }
    } else {
        out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).enumerate().for_each(|(i, (o, x))| f(i * CHUNK, o, x));
    }
}

/// Run `f(row_index, row)` over the rows of a row-major matrix, in parallel when large (and not
/// inside `serial`).
pub fn par_rows<F>(v: &mut [f32], row_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if row_len == 0 {
        return;
    }
    if !par_elementwise(v.len()) {
        for (i, r) in v.chunks_mut(row_len).enumerate() {
            f(i, r);
        }
    } else {
        v.par_chunks_mut(row_len).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// v = e^v in place. With AVX-512, 16 lanes at a time: e^x = 2^n e^r, n = round(x log2 e),
/// r = x - n ln 2 (ln 2 in two parts), e^r by Cephes' degree-6 polynomial on |r| <= ln 2 / 2,
/// 2^n applied by `scalef` (exact, into subnormals and 0); x clamped to [-104, 89] (NaN passes
/// through). Within 1.5 ulp of e^x where it is normal (tested); without
/// AVX-512, `f32::exp` per element. Used where the exponentials dominate (SoftHebb's soft WTA);
/// not bit-identical with `f32::exp`.
pub fn exp_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { exp_avx512(v) };
        }
    }
    v.iter_mut().for_each(|a| *a = a.exp());
}

/// v = v^p where v > 0, else 0 (a triangle's relu(z)^p), in place: e^(p ln v) with AVX-512
/// (ln v = ln m + e ln 2 from `getexp` / `getmant`, m in [sqrt(1/2), sqrt(2)), Cephes' logf
/// polynomial; p ln v carried in two parts into `exp_in_place`'s exponential), within 2 ulp of
/// v^p for v in [1e-30, 1e30] and p in [0.25, 2] (tested); without AVX-512, `f32::powf` per
/// element. Not bit-identical with `f32::powf`.
pub fn relu_pow_in_place(v: &mut [f32], p: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { relu_pow_avx512(v, p) };
        }
    }
    v.iter_mut().for_each(|a| *a = if *a > 0.0 { a.powf(p) } else { 0.0 });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    exp16_parts(x, std::arch::x86_64::_mm512_setzero_ps())
}

/// e^(x + lo) for a small correction `lo` (|lo| well below 1) carried outside x's rounding.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp16_parts(x: std::arch::x86_64::__m512, lo: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // max/min return their second operand when either is NaN: NaN passes through.
    let x = _mm512_min_ps(_mm512_set1_ps(89.0), _mm512_max_ps(_mm512_set1_ps(-104.0), x));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_add_ps(_mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r), lo);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_scalef_ps(p, n)
}

/// v = f(v) 16 lanes at a time, the last partial block through masked loads and stores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn map16(v: &mut [f32], f: impl Fn(std::arch::x86_64::__m512) -> std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let mut chunks = v.chunks_exact_mut(16);
    for c in &mut chunks {
        _mm512_storeu_ps(c.as_mut_ptr(), f(_mm512_loadu_ps(c.as_ptr())));
    }
    let rest = chunks.into_remainder();
    let m: __mmask16 = ((1u32 << rest.len()) - 1) as u16;
    _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, f(_mm512_maskz_loadu_ps(m, rest.as_ptr())));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(v: &mut [f32]) {
    map16(v, |x| exp16(x))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn relu_pow16(z: std::arch::x86_64::__m512, p: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, _mm512_setzero_ps());
    let one = _mm512_set1_ps(1.0);
    // z = m 2^e, m in [1, 2); then m in [sqrt(1/2), sqrt(2)).
    let mut e = _mm512_getexp_ps(z);
    let mut m = _mm512_getmant_ps::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_SRC>(z);
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, _mm512_set1_ps(std::f32::consts::SQRT_2));
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5));
    e = _mm512_mask_add_ps(e, big, e, one);
    let f = _mm512_sub_ps(m, one);
    let mut q = _mm512_set1_ps(7.037_683_6e-2);
    for c in [
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ] {
        q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(c));
    }
    let f2 = _mm512_mul_ps(f, f);
    // ln m = f - f^2 / 2 + f^3 q; ln z = ln m + e ln 2 (ln 2 in two parts).
    let lnm = _mm512_add_ps(f, _mm512_fmadd_ps(_mm512_mul_ps(f2, f), q, _mm512_mul_ps(_mm512_set1_ps(-0.5), f2)));
    // ln z = e ln2_hi (exact: ln2_hi has 9 bits, |e| <= 150) + lo; p ln z as t + t_lo with
    // the product's rounding error kept (an FMA), so the exponential's argument is exact to
    // the ulp of its reduced part, not of p ln z.
    let hi = _mm512_mul_ps(e, _mm512_set1_ps(0.693_359_4));
    let lo = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.121_944_4e-4), lnm);
    let t = _mm512_mul_ps(p, hi);
    let t_lo = _mm512_fmadd_ps(p, lo, _mm512_fmsub_ps(p, hi, t));
    let hi_part = _mm512_add_ps(t, t_lo);
    let lo_part = _mm512_sub_ps(t_lo, _mm512_sub_ps(hi_part, t));
    _mm512_maskz_mov_ps(pos, exp16_parts(hi_part, lo_part))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn relu_pow_avx512(v: &mut [f32], p: f32) {
    let pv = std::arch::x86_64::_mm512_set1_ps(p);
    map16(v, |z| relu_pow16(z, pv))
}

#[cfg(test)]
thread_local! {
    static BASELINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `wide_fn!` may take its AVX-512 / AVX2 paths: always, but in a unit test inside
/// `on_baseline`.
#[doc(hidden)]
#[inline(always)]
pub fn wide_paths() -> bool {
    #[cfg(test)]
    return !BASELINE_ONLY.with(|b| b.get());
    #[cfg(not(test))]
    true
}

/// Tests only: `f` with every `wide_fn!` on this thread run on its baseline path (the body as
/// the crate's target compiles it), to check that the wider paths give the same bits.
#[cfg(test)]
pub fn on_baseline<R>(f: impl FnOnce() -> R) -> R {
    BASELINE_ONLY.with(|b| b.set(true));
    let r = f();
    BASELINE_ONLY.with(|b| b.set(false));
    r
}

/// `wide_fn! { fn name(args) -> R { body } }`: the function `name`, its body compiled three
/// times (for AVX-512, for AVX2, and for the baseline) and the widest the CPU has chosen at run
/// time, so its element-wise loops vectorise at that width instead of the baseline's SSE2. For
/// loops whose every lane computes the scalar expression (Rust never fuses a multiply and an
/// add, and never reorders a sum), so every path gives the same bits.
#[macro_export]
macro_rules! wide_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if !$crate::linalg::wide_paths() {
                    return body($($arg),*);
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

wide_fn! {
    /// y += alpha x, element by element (the lengths must match), with a separate multiply and
    /// add (no fused multiply-add), so every path of `wide_fn!` gives the same bits.
    pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        debug_assert_eq!(x.len(), y.len());
        for (y, x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    }
}

/// Column sums of a row-major `rows x cols` matrix, added into `out` (len `cols`).
/// Summed row by row in order, so the result does not depend on threads.
pub fn add_col_sums(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    debug_assert_eq!(x.len(), rows * cols);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    /// The vectorised e^x and relu(z)^p against f64 references over dense sweeps: e^x within 1.5
    /// ulp where normal (and 0 far below; 0.98 measured), z^p within 2 ulp of its size (1.3
    /// measured), 0 where z <= 0, NaN kept.
    #[test]
    fn vector_exp_and_power_are_within_a_few_ulp() {
        let ulp = |a: f32, want: f64| {
            ((a as f64 - want) / (want.abs() as f32).max(f32::MIN_POSITIVE) as f64 * (1u32 << 23) as f64).abs()
        };
        let xs: Vec<f32> =
            (0..200_001).map(|i| -100.0 + 188.0 * i as f32 / 200_000.0).chain([0.0, -0.0, -1e-8, 1e-8]).collect();
        let mut v = xs.clone();
        exp_in_place(&mut v);
        let mut worst = 0.0f64;
        for (&x, &e) in xs.iter().zip(&v) {
            let want = (x as f64).exp();
            if want >= f32::MIN_POSITIVE as f64 && want < f32::MAX as f64 {
                worst = worst.max(ulp(e, want));
            }
        }
        assert!(worst <= 1.5, "e^x: worst {worst} ulp");
        let mut far = [-110.0f32, -200.0, f32::NAN];
        exp_in_place(&mut far);
        assert!(far[0] == 0.0 && far[1] == 0.0 && far[2].is_nan(), "{far:?}");
        for p in [0.7f32, 1.4, 0.25, 2.0] {
            let zs: Vec<f32> = (0..100_001)
                .map(|i| 10f32.powf(-30.0 + 60.0 * i as f32 / 100_000.0))
                .chain([-1.0, 0.0, -0.0, f32::NAN])
                .collect();
            let mut v = zs.clone();
            relu_pow_in_place(&mut v, p);
            let mut worst = 0.0f64;
            for (&z, &y) in zs.iter().zip(&v) {
                if z > 0.0 {
                    let want = (z as f64).powf(p as f64);
                    if want >= f32::MIN_POSITIVE as f64 && want < f32::MAX as f64 {
                        worst = worst.max(ulp(y, want));
                    }
                } else {
                    assert_eq!(y, 0.0, "relu(z)^p at z = {z}");
                }
            }
            assert!(worst <= 2.0, "z^{p}: worst {worst} ulp");
        }
    }

    use super::*;
    use crate::rng::Rng;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_for_all_transpositions() {
        let mut r = Rng::new(5);
        for &(m, n, k) in &[
            (3, 5, 7),
            (70, 65, 90),
            (1, 1, 1),
            (128, 40, 33),
            (6, 300, 25),
            (16, 150, 700),
            (5, 3, 9),
            (6, 25, 5000),
            (16, 150, 2000),
        ] {
            let mut a = vec![0.0; m * k];
            let mut b = vec![0.0; k * n];
            r.fill_normal(&mut a, 1.0);
            r.fill_normal(&mut b, 1.0);
            for ta in [false, true] {
                for tb in [false, true] {
                    let want = naive(m, n, k, &a, ta, &b, tb);
                    let mut c = vec![1.0; m * n];
                    matmul(m, n, k, &a, ta, &b, tb, &mut c, false);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()), "{ta} {tb} {x} {y}");
                    }
                    let mut c2 = vec![1.0; m * n];
                    matmul(m, n, k, &a, ta, &b, tb, &mut c2, true);
                    for (x, y) in c2.iter().zip(&want) {
                        assert!((x - 1.0 - y).abs() < 1e-3 * (1.0 + y.abs()));
                    }
                }
            }
        }
    }

    /// Products split across threads here (by rows, by columns, the transposed orientation
    /// too) give the single-threaded values, every transposition, accumulating or not.
    #[test]
    fn split_products_match_naive_at_2_and_3_threads() {
        let mut r = Rng::new(11);
        for &(m, n, k) in &[(128, 1024, 40), (600, 40, 30), (10, 700, 50), (150, 300, 16), (70, 97, 300)] {
            let mut a = vec![0.0; m * k];
            let mut b = vec![0.0; k * n];
            r.fill_normal(&mut a, 1.0);
            r.fill_normal(&mut b, 1.0);
            for threads in [2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    let want = naive(m, n, k, &a, ta, &b, tb);
                    for acc in [false, true] {
                        let mut c = vec![1.0; m * n];
                        pool.install(|| matmul(m, n, k, &a, ta, &b, tb, &mut c, acc));
                        for (x, y) in c.iter().zip(&want) {
                            let y = if acc { y + 1.0 } else { *y };
                            assert!(
                                (x - y).abs() < 1e-3 * (1.0 + y.abs()),
                                "{m}x{n}x{k} {ta} {tb} {acc} {threads}: {x} {y}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The dense forward product (`matmul_bias_nt`, column-major then transposed where wide) is
    /// bit for bit the bias-filled row-major `matmul`, with and without bias, for shapes split by
    /// rows, by columns and not at all, at 1 and 2 threads.
    #[test]
    fn dense_bias_product_is_matmul_bit_for_bit() {
        let mut r = Rng::new(4);
        for &(m, n, k) in &[(128, 1024, 784), (64, 512, 256), (300, 600, 300), (65, 513, 257), (20, 600, 300)] {
            let mut a = vec![0.0; m * k];
            let mut b = vec![0.0; n * k];
            let mut bias = vec![0.0; n];
            r.fill_normal(&mut a, 1.0);
            r.fill_normal(&mut b, 0.05);
            r.fill_normal(&mut bias, 1.0);
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for with_bias in [true, false] {
                    let bias = with_bias.then_some(&bias[..]);
                    let mut want = vec![0.0f32; m * n];
                    if let Some(bias) = bias {
                        want.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias));
                    }
                    pool.install(|| matmul(m, n, k, &a, false, &b, true, &mut want, true));
                    let mut got = vec![f32::NAN; m * n];
                    pool.install(|| matmul_bias_nt(m, n, k, &a, &b, bias, &mut got));
                    assert!(
                        got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m}x{n}x{k}, bias {with_bias}, {threads} threads"
                    );
                }
            }
        }
    }

    /// The product trace tells a dense layer's forward product (`matmul_bias_nt`) from a
    /// `matmul` of the same shape, so the kernel suite replays each through its own path.
    #[test]
    fn trace_marks_the_dense_forward_path() {
        let (m, n, k) = (64, 512, 256);
        let (a, b) = (vec![0.5f32; m * k], vec![0.25f32; n * k]);
        let mut c = vec![0.0f32; m * n];
        let ((), got) = trace_products(|| {
            matmul_bias_nt(m, n, k, &a, &b, None, &mut c);
            matmul(m, n, k, &a, false, &b, true, &mut c, true);
            matmul_bias_nt(2, 3, 4, &a, &b, None, &mut c);
        });
        let p = |bias_nt: bool, (m, n, k): (usize, usize, usize)| Product {
            m,
            n,
            k,
            ta: false,
            tb: true,
            accumulate: true,
            bias_nt,
        };
        // The small one goes through matmul, which notes it plainly.
        assert_eq!(got, vec![p(true, (m, n, k)), p(false, (m, n, k)), p(false, (2, 3, 4))]);
    }

    /// The long-reduction path sums every entry one fixed way (16 lanes per chunk of 2048,
    /// lanes in order, the tail one by one, chunks in order): bit for bit the value of this
    /// scalar reading of it, for any tiling remainder and at 1 and 2 threads.
    #[test]
    fn dot_products_sum_each_entry_one_fixed_way() {
        let mut r = Rng::new(9);
        for &(m, n, k) in &[(6, 25, 5000), (16, 150, 4111), (5, 7, 1030), (9, 6, 2048), (12, 10, 1030), (13, 10, 2100)]
        {
            let mut a = vec![0.0; m * k];
            let mut b = vec![0.0; n * k];
            r.fill_normal(&mut a, 1.0);
            r.fill_normal(&mut b, 1.0);
            let mut want = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut total = 0.0f32;
                    for p0 in (0..k).step_by(2048) {
                        let len = 2048.min(k - p0);
                        let full = len / 16 * 16;
                        let mut lanes = [0.0f32; 16];
                        for p in 0..full {
                            lanes[p % 16] = a[i * k + p0 + p].mul_add(b[j * k + p0 + p], lanes[p % 16]);
                        }
                        let mut s = lanes.iter().sum::<f32>();
                        for p in full..len {
                            s = a[i * k + p0 + p].mul_add(b[j * k + p0 + p], s);
                        }
                        total += s;
                    }
                    want[i * n + j] = total;
                }
            }
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut c = vec![0.0; m * n];
                pool.install(|| dot_products(m, n, k, &a, &b, &mut c, false));
                assert!(
                    c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{n}x{k} at {threads} threads"
                );
            }
        }
    }
}
