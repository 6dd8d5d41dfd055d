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
