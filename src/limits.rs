//! Limits a user can set on what a run may ask of the machine, checked before the work that
//! would exceed them starts (a network's size, a data file's declared size).

/// The memory a training run may plan for, in bytes: `BIOLEARN_MAX_MEMORY_GB` (GiB), default 16.
pub fn memory_cap() -> f64 {
    std::env::var("BIOLEARN_MAX_MEMORY_GB")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|g| g.is_finite() && *g > 0.0)
        .unwrap_or(16.0)
        * (1u64 << 30) as f64
}

/// The most epochs a run (or a plan's budget, or a schedule's step) may name: past it a run
/// would not end in any session; a value this large is a typo, refused rather than run.
pub const MAX_EPOCHS: usize = 1_000_000;

/// The largest batch a run may name (a batch past the training set is the whole set).
pub const MAX_BATCH: usize = 1 << 24;
