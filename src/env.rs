//! The environment a record was made in: what a reader needs to tell whether two records should
//! agree bit for bit (same CPU and kernel path) or only within rounding (another machine).

use serde::{Deserialize, Serialize};

/// Version of the record formats (`result.json`, `results.jsonl` lines): raised when a field
/// changes meaning or moves. 2: rule settings in `config.settings`, `env` added.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// The CPU's model name (`/proc/cpuinfo`), or the architecture where that is not readable.
    pub cpu: String,
    /// The SIMD path the dense kernels take on this CPU: avx512, avx2 or generic.
    pub kernel: String,
    pub biolearn_version: String,
    pub git_revision: String,
    pub rustc: String,
    pub os: String,
}

impl Environment {
    /// This process's environment.
    pub fn current() -> Environment {
        Environment {
            cpu: cpu_model(),
            kernel: crate::linalg::kernel_path().to_string(),
            biolearn_version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: env!("BIOLEARN_GIT_REVISION").to_string(),
            rustc: env!("BIOLEARN_RUSTC_VERSION").to_string(),
            os: std::env::consts::OS.to_string(),
        }
    }

    /// What must be equal for two runs of the same configuration to give the same bits: the
    /// CPU model and the kernel path (the GEMM's blocking follows the CPU's caches).
    pub fn machine_key(&self) -> String {
        format!("{} / {}", self.cpu, self.kernel)
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
