//! Mutation fuzzing of every parser that reads outside input (issue 12): IDX images and labels
//! (raw and gzip), CIFAR-10, STL-10 images and labels, CSV and NumPy data sets, safetensors,
//! a run's TOML configuration, a plan, and results.jsonl records. Each starts from a valid
//! input and applies seeded random mutations (bit flips, byte runs, insertions, deletions,
//! truncations, 32-bit fields set to extremes); every input must give Ok or a clean error: no
//! panic, and no allocation past the memory cap (set to 1 GiB here, so a header declaring more
//! is refused rather than allocated).
//!
//! `cargo test --release --test fuzz` runs a short round per parser (`BIOLEARN_FUZZ_ITERS`,
//! default 300); the long run is `BIOLEARN_FUZZ_ITERS=1000000 cargo test --release --test fuzz
//! -- --nocapture` (it prints the inputs per parser and their outcomes, the slowest input's time
//! and the process's peak resident memory after each parser); `BIOLEARN_FUZZ_ONLY=NAME[,NAME...]` (parts
//! of parsers' names, case-insensitive) runs only the parsers they name, so the long run can be
//! split over processes. Every input goes through a file, so where the temporary directory is
//! matters: `TMPDIR=/dev/shm` (a tmpfs) ran the long run about 7 times faster than a virtual
//! disk here (about 13,000 inputs a second per process against 1,900).

use std::io::Write;
use std::path::{Path, PathBuf};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four random mutations of `seed`.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = rng.next() as u8;
            }
            2 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 => v.truncate(at),
            5 if v.len() >= 4 => {
                // A 32-bit field (a count, a size) set to an extreme.
                let i = (at / 4 * 4).min(v.len() - 4);
                let x: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x0001_0000][rng.below(5)];
                let b = if rng.below(2) == 0 { x.to_be_bytes() } else { x.to_le_bytes() };
                v[i..i + 4].copy_from_slice(&b);
            }
            _ => {
                // A run of one repeated byte (digits, quotes, brackets for the text formats).
                let b = b"0123456789-.eE+[]{}\"',=\n\xff\x00"[rng.below(23)];
                let n = 1 + rng.below(32);
                v.splice(at..at, std::iter::repeat_n(b, n));
            }
        }
    }
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0803u32, n, rows, cols] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend((0..n * rows * cols).map(|i| (i * 37 % 256) as u8));
    v
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0801u32.to_be_bytes());
    v.extend_from_slice(&n.to_be_bytes());
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

/// A parser under test: a name, its seed inputs, and how to run it on bytes in `dir` (Ok or Err
/// both count as handled; only a panic fails).
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    run: Box<dyn Fn(&[u8], &Path) -> bool>,
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn targets() -> Vec<Target> {
    use biolearn::data::{arrays, cifar, idx, stl10};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = |p: &str| std::fs::read(root.join(p)).unwrap();
    let records: Vec<u8> = {
        // Whole records (the fixtures' are stripped of their volatile fields, which a results
        // file must have).
        let t = std::fs::read_to_string(root.join("results/conv3-pc/results.jsonl")).unwrap();
        t.lines().take(2).map(|l| format!("{l}\n")).collect::<String>().into_bytes()
    };
    let mut cifar = Vec::new();
    for r in 0..2u8 {
        cifar.push(r % 10);
        cifar.extend((0..3072u32).map(|i| (i % 256) as u8));
    }
    let npy = |descr: &str, shape: &[usize], data: &[u8]| {
        let d = std::env::temp_dir().join(format!("biolearn-fuzz-npy-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("a.npy");
        arrays::write_npy(&p, descr, shape, data).unwrap();
        std::fs::read(&p).unwrap()
    };
    let x_npy = npy("|u1", &[4, 2, 2], &(0..16).collect::<Vec<u8>>());
    let y_npy = npy("|u1", &[4], &[0, 1, 0, 1]);
    let st = {
        let d = std::env::temp_dir().join(format!("biolearn-fuzz-st-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("m.safetensors");
        let t =
            vec![biolearn::safetensors::Tensor { name: "w".into(), shape: vec![2, 2], data: &[1.0, 2.0, 3.0, 4.0] }];
        biolearn::safetensors::save(&p, &t, &Default::default()).unwrap();
        std::fs::read(&p).unwrap()
    };
    vec![
        Target {
            name: "IDX images",
            seeds: vec![idx_images(3, 4, 4), gzip(&idx_images(3, 4, 4))],
            run: Box::new(|b, d| idx::read_images(file(d, "i", b)).is_ok()),
        },
        Target {
            name: "IDX labels",
            seeds: vec![idx_labels(5), gzip(&idx_labels(5))],
            run: Box::new(|b, d| idx::read_labels(file(d, "l", b)).is_ok()),
        },
        Target {
            name: "CIFAR-10 batch",
            seeds: vec![cifar.clone(), gzip(&cifar)],
            run: Box::new(|b, d| cifar::read_batch(file(d, "c", b), cifar::Variant::Ten).is_ok()),
        },
        Target {
            name: "STL-10 images / labels",
            seeds: vec![vec![7u8; 27648], vec![1, 2, 10]],
            run: Box::new(|b, d| {
                let p = file(d, "s", b);
                stl10::read_images(&p).is_ok() | stl10::read_labels(&p).is_ok()
            }),
        },
        Target {
            name: "CSV data set",
            seeds: vec![b"0,0.1,0.2,0.3,0.4\n1,1,2,3,4\n".to_vec()],
            run: Box::new(|b, d| {
                file(d, "train.csv", b);
                file(d, "test.csv", b);
                arrays::load_csv("fz", d, [1, 2, 2]).is_ok()
            }),
        },
        Target {
            name: "NumPy data set",
            // The input as the images (valid labels beside it), then as the labels.
            seeds: vec![x_npy.clone(), y_npy.clone()],
            run: Box::new(move |b, d| {
                let mut any = false;
                for (x, y) in [(b, &y_npy[..]), (&x_npy[..], b)] {
                    for (f, bytes) in [("x_train.npy", x), ("x_test.npy", x), ("y_train.npy", y), ("y_test.npy", y)] {
                        file(d, f, bytes);
                    }
                    any |= arrays::load_npy("fz", d).is_ok();
                }
                any
            }),
        },
        Target {
            name: "safetensors",
            seeds: vec![st],
            run: Box::new(|b, d| biolearn::safetensors::load_with_metadata(&file(d, "m.safetensors", b)).is_ok()),
        },
        Target {
            name: "config TOML",
            // A preset's keys are its rule's: the rule goes first (a preset alone is a config for
            // BP, which refuses them).
            seeds: ["softhebb", "pc"]
                .iter()
                .map(|r| [format!("rule = '{r}'\n").into_bytes(), text(&format!("presets/{r}.toml"))].concat())
                .collect(),
            run: Box::new(|b, d| {
                biolearn::config::TrainConfig::load(Some(&file(d, "c.toml", b)), Default::default()).is_ok()
            }),
        },
        Target {
            name: "plan TOML",
            seeds: vec![text("plans/smoke.toml"), text("plans/holistic-all.toml")],
            run: Box::new(|b, d| biolearn::protocol::plan::Plan::load(&file(d, "p.toml", b)).is_ok()),
        },
        Target {
            name: "results.jsonl",
            seeds: vec![records],
            run: Box::new(|b, d| {
                let p = file(d, "results.jsonl", b);
                biolearn::report::read_records(&p).is_ok() | biolearn::protocol::done_ids(d).is_ok()
            }),
        },
    ]
}

/// The process's peak resident set size (getrusage), in MiB.
fn peak_rss_mib() -> i64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss / 1024
}

#[test]
fn every_parser_survives_mutated_input() {
    // SAFETY: set before any other thread of this test binary reads the environment (this
    // binary has this one test).
    unsafe { std::env::set_var("BIOLEARN_MAX_MEMORY_GB", "1") };
    let iters: usize = std::env::var("BIOLEARN_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let base = std::env::temp_dir().join(format!("biolearn-fuzz-{}", std::process::id()));
    std::panic::set_hook(Box::new(|_| {}));
    let mut report = vec![];
    let only = std::env::var("BIOLEARN_FUZZ_ONLY").unwrap_or_default().to_lowercase();
    for (k, t) in targets().into_iter().enumerate() {
        if !only.split(',').any(|o| t.name.to_lowercase().contains(o.trim())) {
            continue;
        }
        let started = std::time::Instant::now();
        let mut slowest = std::time::Duration::ZERO;
        let dir = base.join(format!("t{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (k as u64 + 1));
        let (mut ok, mut err, mut panics, mut seeds_ok) = (0usize, 0usize, vec![], 0usize);
        for i in 0..iters {
            let seed = &t.seeds[i % t.seeds.len()];
            let input = if i < t.seeds.len() { seed.clone() } else { mutate(seed, &mut rng) };
            let t0 = std::time::Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(&input, &dir)));
            slowest = slowest.max(t0.elapsed());
            match outcome {
                Ok(true) if i < t.seeds.len() => {
                    ok += 1;
                    seeds_ok += 1
                }
                Ok(true) => ok += 1,
                Ok(false) => err += 1,
                Err(_) => panics.push(input),
            }
        }
        report.push(format!(
            "{:<24} {iters:>8} inputs: {ok:>8} ok, {err:>8} clean errors, {} panics; slowest input {:.1} ms, \
             {:.0} s in all, peak resident memory so far {} MiB",
            t.name,
            panics.len(),
            slowest.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64(),
            peak_rss_mib()
        ));
        // As each parser finishes (a long run shows its progress).
        println!("{}", report.last().expect("pushed above"));
        // A harness that rejects everything (a broken file writer, a wrong path) would pass the
        // panic check: the unmutated seeds must get through.
        if seeds_ok == 0 {
            report.push(format!(
                "  {}: none of its {} unmutated seed inputs parsed: the harness is broken",
                t.name,
                t.seeds.len()
            ));
            println!("{}", report.last().expect("pushed above"));
        }
        if let Some(p) = panics.first() {
            let f = base.join(format!("panic-{k}.bin"));
            std::fs::write(&f, p).unwrap();
            report.push(format!("  first panicking input kept in {}", f.display()));
            println!("{}", report.last().expect("pushed above"));
        }
    }
    let _ = std::panic::take_hook();
    assert!(!report.is_empty(), "BIOLEARN_FUZZ_ONLY={only:?} names no target");
    assert!(!report.iter().any(|l| l.contains("kept in") || l.contains("harness is broken")), "{}", report.join("\n"));
    let _ = std::fs::remove_dir_all(&base);
}
