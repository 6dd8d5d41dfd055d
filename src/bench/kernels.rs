//! The kernel microbenchmark suite (`biolearn bench --kernels`, `cargo bench --bench kernels`):
//! where a training step's time goes, against what the machine can do.
//!
//! 1. **Peaks**, measured here, per thread count: fused multiply-adds from registers (12
//!    independent chains of the widest vectors the CPU has) and bandwidth (a triad,
//!    `a = b + s c`) twice: on three 1 MiB arrays (cache) and on arrays far larger than the
//!    caches (DRAM).
//! 2. **Layers**: every layer of each network, forward and backward, at the bench's batch, timed
//!    alone on a prepared workspace (convolutions with their im2col and bias passes, pooling,
//!    batch norm, activations, attention, ...).
//! 3. **GEMMs**: each distinct matrix product a BP step of each network calls (traced by
//!    `linalg::trace_products`), timed alone.
//! 4. **Steps**: each rule's whole training step (forward, its own update arithmetic, the
//!    optimiser), and the time its products take when replayed alone: the ratio is how far the
//!    step is from the GEMM time its arithmetic implies.
//!
//! Compute rows (those that multiply-add) carry GFLOP/s and their share of the FMA peak at the
//! same thread count; the others carry GB/s of activations read and written (a lower bound on
//! the traffic: each input and output once) and their share of the measured bandwidth (the
//! cache triad's for rows that move at most `CACHE_BYTES`, else DRAM's). Compute
//! rows also carry the seconds their products take alone, so a layer's non-GEMM work (im2col,
//! transposes, bias, the activation) is their difference.

use super::config_for;
use crate::data::sampling::subset;
use crate::data::Dataset;
use crate::linalg::{self, Product};
use crate::nn::{Network, Workspace};
use crate::optim::OptimizerKind;
use crate::rng::Rng;
use crate::rules::RuleName;
use crate::train::Trainer;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    /// "peak", "layer", "gemm" or "step".
    pub section: &'static str,
    /// What was timed: "fma", "triad", "3 conv forward", "128x1024x784 A B^T", the rule, ...
    pub name: String,
    /// The network ("" for the peaks).
    pub arch: String,
    pub threads: usize,
    /// Best time of one call, seconds.
    pub seconds: f64,
    /// Floating-point operations of one call (2 per multiply-add).
    pub flops: f64,
    /// Bytes of one call: the peaks' own traffic; a layer's activations in and out (lower bound).
    pub bytes: f64,
    pub gflops: f64,
    pub gbs: f64,
    /// "compute" (the share is of the FMA peak), "cache" or "dram" (of that triad's bandwidth).
    pub bound: &'static str,
    /// Share of the machine's measured peak at this thread count (0..1, may exceed 1 when a
    /// memory row's data sits in cache).
    pub peak_share: f64,
    /// Compute rows: seconds the call's matrix products take replayed alone (same shapes, same
    /// `linalg::matmul`, hot buffers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gemm_seconds: Option<f64>,
}

/// How long and how often each kernel is timed.
#[derive(Clone, Debug)]
pub struct Options {
    /// Calls per repetition are doubled until one repetition takes at least this long.
    pub min_seconds: f64,
    /// Repetitions; the best is kept.
    pub repeats: usize,
    /// Training steps per timed epoch of the step rows.
    pub steps: usize,
    /// f32 values per triad array.
    pub triad_len: usize,
    /// Multiply-add rounds per thread of the FMA peak.
    pub fma_rounds: usize,
}

impl Options {
    /// The suite as `cargo bench` runs it (a few minutes on 2 cores for the default networks).
    pub fn full() -> Self {
        Options { min_seconds: 0.05, repeats: 5, steps: 20, triad_len: 1 << 24, fma_rounds: 1 << 24 }
    }
    /// One call of each, tiny peaks: checks that the suite runs (tests), not a measurement.
    pub fn quick() -> Self {
        Options { min_seconds: 0.0, repeats: 1, steps: 2, triad_len: 1 << 16, fma_rounds: 1 << 12 }
    }
}

/// The best time of one call of `f`, seconds (`Options`).
fn best_time(o: &Options, mut f: impl FnMut()) -> f64 {
    f();
    let mut iters = 1usize;
    loop {
        let t0 = Instant::now();
        for _ in 0..iters {
            f();
        }
        let dt = t0.elapsed().as_secs_f64();
        if dt >= o.min_seconds || iters >= 1 << 24 {
            break;
        }
        iters *= 2;
    }
    let mut best = f64::INFINITY;
    for _ in 0..o.repeats.max(1) {
        let t0 = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t0.elapsed().as_secs_f64() / iters as f64);
    }
    best
}

/// Multiply-add chains per thread: enough independent chains to hide the FMA latency on two
/// pipes (latency 4 x 2 pipes = 8 in flight; 12 leaves headroom and fits the registers).
const CHAINS: usize = 12;

/// `rounds` rounds of `CHAINS` vector FMAs; returns (a value that depends on all of them,
/// f32 lanes per vector).
fn fma_chains(rounds: usize) -> (f32, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return (unsafe { fma_avx512(rounds) }, 16);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return (unsafe { fma_avx2(rounds) }, 8);
        }
    }
    let mut acc = [0.0f32; CHAINS];
    for _ in 0..rounds {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    (acc.iter().sum(), 1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(rounds: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    let mut s = _mm512_setzero_ps();
    for x in acc {
        s = _mm512_add_ps(s, x);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(rounds: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut s = _mm256_setzero_ps();
    for x in acc {
        s = _mm256_add_ps(s, x);
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    lanes.iter().sum()
}

/// A memory row moving at most this many bytes is compared with the cache triad.
const CACHE_BYTES: f64 = 8.0 * 1048576.0;

/// The triad's time over arrays of `n` values on `pool`'s threads.
fn triad(pool: &rayon::ThreadPool, o: &Options, n: usize) -> f64 {
    let (b, c) = (vec![1.0f32; n], vec![2.0f32; n]);
    let mut a = vec![0.0f32; n];
    // Timed inside the pool, as a training step's kernels run (no wake-up per call).
    pool.install(|| {
        best_time(o, || {
            use rayon::prelude::*;
            const CH: usize = 1 << 14;
            a.par_chunks_mut(CH).zip(b.par_chunks(CH)).zip(c.par_chunks(CH)).for_each(|((a, b), c)| {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    // (Not mul_add: without FMA in the build's target it is a library call.)
                    *a = b + 0.5 * c;
                }
            });
            std::hint::black_box(&a);
        })
    })
}

/// The FMA peak (GFLOP/s) and the triad's bandwidth (GB/s) in cache and from DRAM, `pool`'s
/// threads all busy at once.
fn peaks(pool: &rayon::ThreadPool, o: &Options) -> [KernelRow; 3] {
    let t = pool.current_num_threads();
    let mut lanes = 1;
    let fma = best_time(o, || {
        let got: Vec<(f32, usize)> = pool.broadcast(|_| fma_chains(o.fma_rounds));
        lanes = got[0].1;
        std::hint::black_box(got);
    });
    let fma_flops = (2 * CHAINS * lanes * o.fma_rounds * t) as f64;
    let cache_len = 1 << 18;
    let cache = triad(pool, o, cache_len);
    let dram = triad(pool, o, o.triad_len);
    let row = |name: &str, seconds: f64, flops: f64, bytes: f64, bound| KernelRow {
        section: "peak",
        name: name.into(),
        arch: String::new(),
        threads: t,
        seconds,
        flops,
        bytes,
        gflops: flops / seconds / 1e9,
        gbs: bytes / seconds / 1e9,
        bound,
        peak_share: 1.0,
        gemm_seconds: None,
    };
    let simd = match lanes {
        16 => "fma (AVX-512)",
        8 => "fma (AVX2)",
        _ => "fma (scalar)",
    };
    [
        row(simd, fma, fma_flops, 0.0, "compute"),
        row("triad a = b + s c, 3 x 1 MiB (cache)", cache, 0.0, (12 * cache_len) as f64, "cache"),
        row(
            &format!("triad, 3 x {} MiB (DRAM)", (o.triad_len * 4) >> 20),
            dram,
            0.0,
            (12 * o.triad_len) as f64,
            "dram",
        ),
    ]
}

/// Seconds the products take when run one after another alone, on hot buffers.
fn replay(products: &[Product], o: &Options) -> f64 {
    if products.is_empty() {
        return 0.0;
    }
    let len = |f: fn(&Product) -> usize| products.iter().map(f).max().unwrap_or(0);
    let mut rng = Rng::new(1);
    let mut fill = |n: usize| (0..n).map(|_| rng.normal()).collect::<Vec<f32>>();
    let a = fill(len(|p| p.m * p.k));
    let b = fill(len(|p| p.k * p.n));
    let mut c = fill(len(|p| p.m * p.n));
    // The pool's threads kept awake, as in the training epoch the step rows time.
    let _awake = linalg::Awake::start();
    best_time(o, || {
        for p in products {
            if p.bias_nt {
                // As the dense layer computed it (its wide products take their own path).
                linalg::matmul_bias_nt(p.m, p.n, p.k, &a, &b, None, &mut c);
            } else {
                linalg::matmul(p.m, p.n, p.k, &a, p.ta, &b, p.tb, &mut c, p.accumulate);
            }
        }
    })
}

fn layer_name(net: &Network, i: usize) -> String {
    let dbg = format!("{:?}", net.layers[i]);
    let kind: String = dbg.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let (a, b) = (net.shapes[i], net.shapes[i + 1]);
    let dims = |s: crate::nn::Shape| {
        if s.h * s.w == 1 {
            format!("{}", s.c)
        } else {
            format!("{}x{}x{}", s.c, s.h, s.w)
        }
    };
    format!("{i} {kind} {} -> {}", dims(a), dims(b))
}

fn product_name(p: &Product) -> String {
    let op = |t: bool, s: &str| if t { format!("{s}^T") } else { s.to_string() };
    let how = match (p.bias_nt, p.accumulate) {
        (true, _) => " + bias (dense forward)",
        (false, true) => " +=",
        (false, false) => "",
    };
    format!("{}x{}x{} {} {}{how}", p.m, p.n, p.k, op(p.ta, "A"), op(p.tb, "B"))
}

/// Rows of one measurement, its share computed against this thread count's peaks.
struct Rows<'a> {
    threads: usize,
    fma_gflops: f64,
    cache_gbs: f64,
    dram_gbs: f64,
    out: &'a mut Vec<KernelRow>,
}

impl Rows<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        section: &'static str,
        name: String,
        arch: &str,
        seconds: f64,
        flops: f64,
        bytes: f64,
        gemm_seconds: Option<f64>,
    ) {
        let (gflops, gbs) = (flops / seconds / 1e9, bytes / seconds / 1e9);
        let compute = flops > 0.0;
        self.out.push(KernelRow {
            section,
            name,
            arch: arch.to_string(),
            threads: self.threads,
            seconds,
            flops,
            bytes,
            gflops,
            gbs,
            bound: if compute {
                "compute"
            } else if bytes <= CACHE_BYTES {
                "cache"
            } else {
                "dram"
            },
            peak_share: if compute {
                gflops / self.fma_gflops
            } else if bytes <= CACHE_BYTES {
                gbs / self.cache_gbs
            } else {
                gbs / self.dram_gbs
            },
            gemm_seconds,
        });
    }
}

/// Every layer of `tr`'s network, forward then backward, at `n` samples of `x`.
fn layers(tr: &mut Trainer, x: &[f32], n: usize, arch: &str, o: &Options, rows: &mut Rows) {
    let net = &mut tr.net;
    let mut ws = Workspace::default();
    net.prepare(&mut ws, n);
    let d = net.shapes[0].len();
    ws.input_mut().copy_from_slice(&x[..n * d]);
    let mut rng = Rng::new(2);
    let layers = net.layers.len();
    net.forward_layers(&mut ws, 0, layers, true, &mut rng);
    // Upstream gradients: small values of both signs in every slot.
    for g in ws.grads.iter_mut() {
        for v in g.iter_mut() {
            *v = 1e-3 * rng.normal();
        }
    }
    let mut grads = net.zero_grads();
    for i in 0..layers {
        let (inp, out) = (net.shapes[i].len() as f64, net.shapes[i + 1].len() as f64);
        let nf = n as f64;
        let name = layer_name(net, i);
        for backward in [false, true] {
            // The timed call: this layer's forward, or its backward from the gradient above.
            let mut call = || {
                if backward {
                    net.backward(&mut ws, &mut grads, i, i + 1, None, i > 0);
                } else {
                    net.forward_layers(&mut ws, i, i + 1, true, &mut rng);
                }
            };
            let m0 = linalg::macs();
            let (_, products) = linalg::trace_products(&mut call);
            let flops = 2.0 * (linalg::macs() - m0) as f64;
            let seconds = best_time(o, &mut call);
            let bytes = 4.0 * nf * if backward { inp + 2.0 * out } else { inp + out };
            let gemm = (flops > 0.0).then(|| replay(&products, o));
            let dir = if backward { "backward" } else { "forward" };
            rows.push("layer", format!("{name} {dir}"), arch, seconds, flops, bytes, gemm);
        }
    }
    // The optimiser's step on every trainable parameter (a copy of the trainer's optimiser, at
    // a learning rate too small to matter): memory-bound, its bytes the streams it reads and
    // writes (weights, update and each moment read; weights and moments written).
    let mut opt = tr.opt.clone();
    let total: usize = net.params.iter().filter(|p| p.trainable()).map(|p| p.data.len()).sum();
    let moments = match opt.cfg.kind {
        OptimizerKind::Sgd if opt.cfg.momentum == 0.0 => 0.0,
        OptimizerKind::Sgd => 1.0,
        OptimizerKind::Rmsprop if opt.cfg.momentum == 0.0 => 1.0,
        _ => 2.0,
    };
    let mut call = || {
        crate::rules::Updater { opt: &mut opt, lr: 1e-12, masks: None, device: None }.apply(net, &grads);
    };
    call();
    let seconds = best_time(o, &mut call);
    let bytes = 4.0 * total as f64 * (2.0 + moments + 1.0 + moments);
    let what = format!("optimiser step ({:?}), {total} parameters", opt.cfg.kind).to_lowercase();
    rows.push("layer", what, arch, seconds, 0.0, bytes, None);
}

/// Run the suite: the peaks at each thread count, then for each network the layers and a BP
/// step's distinct GEMMs, then each rule's step on each network. Each row is passed to `report`
/// as it is measured. Networks and rules are configured like `biolearn bench`'s (`config_for`).
pub fn run(
    ds: &Dataset,
    base: &toml::Table,
    rules: &[RuleName],
    archs: &[String],
    threads: &[usize],
    o: &Options,
    mut report: impl FnMut(&KernelRow),
) -> Result<Vec<KernelRow>, String> {
    let mut all = Vec::new();
    for &t in threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().map_err(|e| e.to_string())?;
        let out_peaks = peaks(&pool, o);
        let (fma, cache, dram) = (out_peaks[0].gflops, out_peaks[1].gbs, out_peaks[2].gbs);
        let mut out = out_peaks.to_vec();
        let mut rows = Rows { threads: t, fma_gflops: fma, cache_gbs: cache, dram_gbs: dram, out: &mut out };
        let mut emitted = 0;
        let mut flush = |rows: &mut Rows, report: &mut dyn FnMut(&KernelRow)| {
            for r in &rows.out[emitted..] {
                report(r);
            }
            emitted = rows.out.len();
        };
        flush(&mut rows, &mut report);
        for arch in archs {
            let cfg = config_for(base, RuleName::named("bp"), arch, t)?;
            let n = cfg.batch.min(ds.train.n);
            let x = &ds.train.x;
            pool.install(|| -> Result<(), String> {
                let mut rng = Rng::new(cfg.seed);
                let mut tr = Trainer::on_data(&cfg, ds, &mut rng)?;
                // The pool's threads kept awake between calls, as in a training epoch.
                let awake = linalg::Awake::start();
                layers(&mut tr, x, n, arch, o, &mut rows);
                drop(awake);
                // The distinct products of one BP step, in the order first called.
                let batch = subset(&ds.train, &(0..n).collect::<Vec<_>>());
                tr.train_epoch(&batch, cfg.lr, |_, _| {});
                let (_, products) = linalg::trace_products(|| tr.train_epoch(&batch, cfg.lr, |_, _| {}));
                let mut seen: Vec<(Product, usize)> = Vec::new();
                for p in products {
                    match seen.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, c)) => *c += 1,
                        None => seen.push((p, 1)),
                    }
                }
                for (p, calls) in seen {
                    let seconds = replay(&[p], o);
                    let flops = 2.0 * (p.m * p.n * p.k) as f64;
                    let name = format!("{} (x{calls} per step)", product_name(&p));
                    rows.push("gemm", name, arch, seconds, flops, 0.0, Some(seconds));
                }
                Ok(())
            })?;
            flush(&mut rows, &mut report);
            for &rule in rules {
                let cfg = config_for(base, rule, arch, t)?;
                let steps = o.steps.max(1);
                let n = (steps * cfg.batch).min(ds.train.n);
                let split = subset(&ds.train, &(0..n).collect::<Vec<_>>());
                let one = subset(&ds.train, &(0..cfg.batch.min(n)).collect::<Vec<_>>());
                pool.install(|| -> Result<(), String> {
                    let mut rng = Rng::new(cfg.seed);
                    let mut tr = Trainer::on_data(&cfg, ds, &mut rng)?;
                    tr.train_epoch(&one, cfg.lr, |_, _| {});
                    tr.epochs_done = 0;
                    let m0 = linalg::macs();
                    let (_, products) = linalg::trace_products(|| tr.train_epoch(&one, cfg.lr, |_, _| {}));
                    let flops = 2.0 * (linalg::macs() - m0) as f64;
                    let batches = n.div_ceil(cfg.batch);
                    let per_epoch = best_time(&Options { min_seconds: 0.0, ..o.clone() }, || {
                        // Always the first epoch's phase (a Hebbian rule's unsupervised pass).
                        tr.epochs_done = 0;
                        tr.train_epoch(&split, cfg.lr, |_, _| {});
                    });
                    let seconds = per_epoch / batches as f64;
                    let gemm = replay(&products, o);
                    rows.push(
                        "step",
                        format!("{rule} step, batch {}", cfg.batch),
                        arch,
                        seconds,
                        flops,
                        0.0,
                        Some(gemm),
                    );
                    Ok(())
                })?;
                flush(&mut rows, &mut report);
            }
        }
        all.extend(out);
    }
    Ok(all)
}

/// The rows as Markdown tables, one per section.
pub fn markdown(rows: &[KernelRow]) -> String {
    let mut s = String::new();
    let sections = [
        ("peak", "Measured peaks"),
        ("layer", "Layers (one call at the batch; backward writes the weight gradients and, past the first layer, the input gradient)"),
        ("gemm", "Matrix products of one BP step (m x n x k; ^T: stored transposed)"),
        ("step", "Training steps: the whole step against its products replayed alone"),
    ];
    for (key, title) in sections {
        let rs: Vec<&KernelRow> = rows.iter().filter(|r| r.section == key).collect();
        if rs.is_empty() {
            continue;
        }
        s.push_str(&format!("\n### {title}\n\n"));
        s.push_str("| network | what | threads | ms per call | GFLOP/s | GB/s | % of peak | GEMMs alone, ms | call / GEMMs |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for r in rs {
            let of = match r.bound {
                "compute" => "FMA",
                "cache" => "cache BW",
                _ => "DRAM BW",
            };
            let share = format!("{:.0}% {of}", 100.0 * r.peak_share);
            let (gemm, ratio) = match r.gemm_seconds {
                Some(g) if g > 0.0 => (format!("{:.3}", 1e3 * g), format!("{:.2}", r.seconds / g)),
                _ => ("-".into(), "-".into()),
            };
            let num = |v: f64| if v > 0.0 { format!("{v:.1}") } else { "-".into() };
            s.push_str(&format!(
                "| {} | {} | {} | {:.3} | {} | {} | {} | {} | {} |\n",
                if r.arch.is_empty() { "-" } else { &r.arch },
                r.name,
                r.threads,
                1e3 * r.seconds,
                num(r.gflops),
                num(r.gbs),
                share,
                gemm,
                ratio
            ));
        }
    }
    s
}
