//! Memory accounting for `biolearn bench`: the heap a training step holds and the process's
//! peak resident set.
//!
//! `Counting` wraps the system allocator and keeps the bytes allocated now and their high-water
//! mark (two relaxed atomics per allocation; biolearn's hot loops allocate nothing). The
//! `biolearn` binary installs it as the global allocator; a program that links the library
//! without installing it gets `None` from `current` and `peak`.
//!
//! The peak resident set is Linux's VmHWM (/proc/self/status), reset by writing 5 to
//! /proc/self/clear_refs, so that one process can measure one configuration after another.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting (`#[global_allocator] static A: Counting = Counting;`).
pub struct Counting;

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            INSTALLED.store(true, Relaxed);
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            INSTALLED.store(true, Relaxed);
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

/// Heap bytes allocated now (None unless `Counting` is the global allocator).
pub fn current() -> Option<usize> {
    INSTALLED.load(Relaxed).then(|| CURRENT.load(Relaxed))
}

/// The most heap bytes allocated at once since the last `reset_peak`.
pub fn peak() -> Option<usize> {
    INSTALLED.load(Relaxed).then(|| PEAK.load(Relaxed))
}

/// Start a new high-water mark from what is allocated now.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Relaxed), Relaxed);
}

/// The process's peak resident set in bytes (Linux's VmHWM; None elsewhere).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reset the peak resident set to the current one (Linux: /proc/self/clear_refs); false where
/// that is not possible (then `peak_rss` is the process's lifetime peak).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
