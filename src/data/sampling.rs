//! Seeded subsets of a split: stratified fractions, k samples per class, the validation split
//! carved from the training set, and plain index subsets. Every draw comes from the caller's RNG.

use super::Split;
use crate::rng::Rng;

/// Sample indices of every class.
pub fn class_indices(s: &Split, classes: usize) -> Vec<Vec<usize>> {
    // A sequence's class is its first target's.
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    let t = s.targets();
    for i in 0..s.n {
        by_class[s.y[i * t] as usize].push(i);
    }
    by_class
}

/// A stratified, seeded subset: `fraction` of every class (at least one sample per class).
pub fn stratified_fraction(s: &Split, classes: usize, fraction: f64, rng: &mut Rng) -> Split {
    if fraction >= 1.0 {
        return s.clone();
    }
    let mut by_class = class_indices(s, classes);
    let mut keep = Vec::new();
    for idx in by_class.iter_mut() {
        rng.shuffle(idx);
        let k = ((idx.len() as f64 * fraction).round() as usize).clamp(1.min(idx.len()), idx.len());
        keep.extend_from_slice(&idx[..k]);
    }
    keep.sort_unstable();
    subset(s, &keep)
}

/// A seeded subset of `k` samples of every class (all of a class when it has fewer).
pub fn per_class(s: &Split, classes: usize, k: usize, rng: &mut Rng) -> Split {
    let mut by_class = class_indices(s, classes);
    let mut keep = Vec::new();
    for idx in by_class.iter_mut() {
        rng.shuffle(idx);
        keep.extend_from_slice(&idx[..k.min(idx.len())]);
    }
    keep.sort_unstable();
    subset(s, &keep)
}

/// Move a stratified, seeded `fraction` of `train` into a validation split.
pub fn split_validation(train: &Split, classes: usize, fraction: f32, rng: &mut Rng) -> (Split, Split) {
    let mut by_class = class_indices(train, classes);
    let mut val_idx = Vec::new();
    let mut train_idx = Vec::new();
    for idx in by_class.iter_mut() {
        rng.shuffle(idx);
        let k = (idx.len() as f32 * fraction).round() as usize;
        val_idx.extend_from_slice(&idx[..k]);
        train_idx.extend_from_slice(&idx[k..]);
    }
    train_idx.sort_unstable();
    val_idx.sort_unstable();
    (subset(train, &train_idx), subset(train, &val_idx))
}

/// Refuse splits that leave nothing to train on (or, with a validation share, nothing to
/// validate on): `what` says which setting made them.
pub fn check_nonempty(train: &Split, val: Option<&Split>, what: &str) -> Result<(), String> {
    if train.n == 0 {
        return Err(format!("{what} leaves no training samples"));
    }
    if val.is_some_and(|v| v.n == 0) {
        return Err(format!("{what} leaves an empty validation split"));
    }
    Ok(())
}

/// The samples `idx` of `s`, copied once.
pub fn subset(s: &Split, idx: &[usize]) -> Split {
    let d = s.dim;
    let mut x = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        x.extend_from_slice(&s.x[i * d..(i + 1) * d]);
    }
    let t = s.targets();
    Split { x, y: idx.iter().flat_map(|&i| s.y[i * t..(i + 1) * t].iter().copied()).collect(), n: idx.len(), dim: d }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_split_is_stratified_disjoint_and_complete() {
        // Every sample tagged by its index in its pixels: the two parts must partition the
        // training set, and each class must give round(fraction * count) to validation.
        let (n, classes) = (1000, 7);
        let mut rng = Rng::new(5);
        let y: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
        let x: Vec<f32> = (0..n).flat_map(|i| [i as f32, 0.5]).collect();
        let train = Split { x, y, n, dim: 2 };
        for fraction in [0.1f32, 0.25, 0.5] {
            let (t, v) = split_validation(&train, classes, fraction, &mut Rng::new(9));
            let ids = |s: &Split| -> Vec<usize> { (0..s.n).map(|i| s.x[i * 2] as usize).collect() };
            let (ti, vi) = (ids(&t), ids(&v));
            let mut all: Vec<usize> = ti.iter().chain(&vi).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "not a partition of the training set");
            for (s, idx) in [(&t, &ti), (&v, &vi)] {
                for (k, &i) in idx.iter().enumerate() {
                    assert_eq!(s.y[k], train.y[i], "a sample lost its label");
                }
            }
            for c in 0..classes as u32 {
                let total = train.y.iter().filter(|&&l| l == c).count();
                let in_val = v.y.iter().filter(|&&l| l == c).count();
                assert_eq!(in_val, (total as f32 * fraction).round() as usize, "class {c} at {fraction}");
            }
            let (_, v2) = split_validation(&train, classes, fraction, &mut Rng::new(10));
            assert_ne!(ids(&v2), vi, "the split must depend on the seed");
        }
    }

    #[test]
    fn stratified_fraction_keeps_class_shares() {
        let ds = crate::data::load(crate::data::DataName::Digits, None).unwrap();
        let s = stratified_fraction(&ds.train, 10, 0.2, &mut Rng::new(1));
        let full = ds.class_counts(&ds.train);
        let part = ds.class_counts(&s);
        for (f, p) in full.iter().zip(&part) {
            assert_eq!(*p, ((*f as f64) * 0.2).round() as usize);
        }
        let s2 = stratified_fraction(&ds.train, 10, 0.2, &mut Rng::new(2));
        assert_ne!(s.x, s2.x, "another seed draws another subset");
    }
}
