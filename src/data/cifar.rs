//! CIFAR-10 and CIFAR-100 in their binary ("for C programs") versions.
//!
//! Files have no header: they are a plain sequence of fixed-size records.
//! A CIFAR-10 record is 3073 bytes, a CIFAR-100 record 3074 bytes:
//!
//! ```text
//! CIFAR-10                          CIFAR-100
//! offset  size  field               offset  size  field
//! 0       1     label 0..=9         0       1     coarse label 0..=19 (ignored)
//!                                   1       1     fine label 0..=99   (used)
//! 1       1024  red   32x32         2       1024  red   32x32
//! 1025    1024  green 32x32         1026    1024  green 32x32
//! 2049    1024  blue  32x32         2050    1024  blue  32x32
//! ```
//!
//! Each colour plane is row-major (the first 32 bytes are the top row), so
//! the 3072 pixel bytes already are one `3 x 32 x 32` sample in this crate's
//! `C x H x W` layout; [`load`](super::load) only scales them by `/255`.
//!
//! Files, directly in the data directory or in the archive's folder:
//!
//! ```text
//! CIFAR-10:  cifar-10-batches-bin/data_batch_1.bin .. data_batch_5.bin   10000 records each (train)
//!            cifar-10-batches-bin/test_batch.bin                         10000 records      (test)
//! CIFAR-100: cifar-100-binary/train.bin                                  50000 records      (train)
//!            cifar-100-binary/test.bin                                   10000 records      (test)
//! ```
//!
//! A file whose length is not a whole number of records is rejected
//! ([`DataError::BadSize`]), as is a label outside the classes
//! ([`DataError::LabelOutOfRange`]). Gzip-compressed files are accepted too
//! (detected by their magic bytes).

use super::{check_label, find_files, read_file_at_most, DataError, DataName, Dataset, Split};
use std::path::Path;

/// Pixel bytes in one record: 3 planes of 32x32.
pub const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR: 10 classes (1 label byte) or 100 (coarse + fine label bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Ten,
    Hundred,
}

impl Variant {
    /// Label bytes at the start of a record (1 or 2).
    pub fn label_bytes(self) -> usize {
        match self {
            Variant::Ten => 1,
            Variant::Hundred => 2,
        }
    }

    /// Bytes in one record (3073 or 3074).
    pub fn record_size(self) -> usize {
        self.label_bytes() + PIXELS
    }

    /// 10 or 100 (CIFAR-100's fine labels).
    pub fn num_classes(self) -> usize {
        match self {
            Variant::Ten => 10,
            Variant::Hundred => 100,
        }
    }

    fn data_name(self) -> DataName {
        match self {
            Variant::Ten => DataName::Cifar10,
            Variant::Hundred => DataName::Cifar100,
        }
    }

    fn record_what(self) -> &'static str {
        match self {
            Variant::Ten => "CIFAR-10: 1 label byte + 3072 pixel bytes",
            Variant::Hundred => "CIFAR-100: 2 label bytes + 3072 pixel bytes",
        }
    }
}

/// Reads one CIFAR binary file: returns `(pixels, labels)`, with
/// `pixels.len() == 3072 * labels.len()` (`3 x 32 x 32` per record, as
/// stored) and labels in `0..num_classes` (CIFAR-100: the fine label).
pub fn read_batch(path: impl AsRef<Path>, variant: Variant) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let path = path.as_ref();
    let rec = variant.record_size();
    // The largest CIFAR file holds 50000 records (CIFAR-100's train.bin).
    let bytes = read_file_at_most(path, 60_000 * rec, "any CIFAR file: 60000 records")?;
    if bytes.len() % rec != 0 {
        return Err(DataError::BadSize {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            record: rec as u64,
            what: variant.record_what(),
        });
    }
    let n = bytes.len() / rec;
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    let lb = variant.label_bytes();
    for (i, record) in bytes.chunks_exact(rec).enumerate() {
        let label = u32::from(record[lb - 1]);
        labels.push(check_label(path, i, label, 0, variant.num_classes())?);
        pixels.extend_from_slice(&record[lb..]);
    }
    Ok((pixels, labels))
}

/// Loads CIFAR-10 or CIFAR-100; see [`super::load`] for where files are
/// looked for.
pub(crate) fn load(variant: Variant, data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    let (subdir, files): (&str, &[&[&str]]) = match variant {
        Variant::Ten => (
            "cifar-10-batches-bin",
            &[
                &["data_batch_1.bin"],
                &["data_batch_2.bin"],
                &["data_batch_3.bin"],
                &["data_batch_4.bin"],
                &["data_batch_5.bin"],
                &["test_batch.bin"],
            ],
        ),
        Variant::Hundred => ("cifar-100-binary", &[&["train.bin"], &["test.bin"]]),
    };
    let name = variant.data_name();
    let (dir, paths) = find_files(name, data_dir, Some(subdir), files)?;
    let (test_path, train_paths) = paths.split_last().expect("at least two files");
    let mut train_px = Vec::new();
    let mut train_y = Vec::new();
    for p in train_paths {
        let (px, y) = read_batch(p, variant)?;
        if train_px.is_empty() {
            train_px = px;
        } else {
            train_px.extend_from_slice(&px);
        }
        train_y.extend_from_slice(&y);
    }
    let (test_px, test_y) = read_batch(test_path, variant)?;
    Ok(Dataset {
        alphabet: None,
        name: name.as_str().to_string(),
        channels: 3,
        height: 32,
        width: 32,
        num_classes: variant.num_classes(),
        train: Split::from_u8(&train_px, train_y, PIXELS),
        test: Split::from_u8(&test_px, test_y, PIXELS),
        source: dir.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{gzip, load as load_any, TempDir};
    use super::*;

    /// A record whose pixel k is `(seed + k) % 256`.
    fn record(variant: Variant, coarse: u8, label: u8, seed: usize) -> Vec<u8> {
        let mut r = match variant {
            Variant::Ten => vec![label],
            Variant::Hundred => vec![coarse, label],
        };
        r.extend((0..PIXELS).map(|k| ((seed + k) % 256) as u8));
        r
    }

    fn pixel(seed: usize, k: usize) -> f32 {
        ((seed + k) % 256) as f32 / 255.0
    }

    #[test]
    fn cifar10_loads_all_batches_in_order() {
        let t = TempDir::new("cifar10");
        for b in 1..=5 {
            let mut f = record(Variant::Ten, 0, b as u8, b * 10);
            f.extend(record(Variant::Ten, 0, 9, b * 10 + 1));
            t.write(&format!("cifar-10-batches-bin/data_batch_{b}.bin"), &f);
        }
        t.write("cifar-10-batches-bin/test_batch.bin", &record(Variant::Ten, 0, 0, 200));
        let ds = load_any(DataName::Cifar10, Some(&t.0)).unwrap();
        assert_eq!(ds.name, "cifar10");
        assert_eq!(ds.source, t.0.join("cifar-10-batches-bin").display().to_string());
        assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes), (3, 32, 32, 10));
        assert_eq!((ds.train.n, ds.test.n, ds.train.dim), (10, 1, 3072));
        assert_eq!(ds.train.y, vec![1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
        assert_eq!(ds.test.y, vec![0]);
        // Sample 3 is batch 2's second record (seed 21): red (0,0), green
        // (0,0), blue (31,31).
        let s = &ds.train.x[3 * 3072..4 * 3072];
        assert_eq!(s[0], pixel(21, 0));
        assert_eq!(s[1024], pixel(21, 1024));
        assert_eq!(s[3071], pixel(21, 3071));
        assert_eq!(ds.test.x[5], pixel(200, 5));
        assert_eq!(ds.class_counts(&ds.train), vec![0, 1, 1, 1, 1, 1, 0, 0, 0, 5]);
    }

    #[test]
    fn cifar100_uses_fine_label() {
        let t = TempDir::new("cifar100");
        let mut train = record(Variant::Hundred, 19, 99, 3);
        train.extend(record(Variant::Hundred, 4, 42, 7));
        t.write("train.bin", &train);
        t.write("test.bin", &gzip(&record(Variant::Hundred, 0, 5, 9)));
        let (px, y) = read_batch(t.0.join("train.bin"), Variant::Hundred).unwrap();
        assert_eq!(y, vec![99, 42]);
        assert_eq!(px.len(), 2 * 3072);
        assert_eq!(px[3072], 7);
        let ds = load_any(DataName::Cifar100, Some(&t.0)).unwrap();
        assert_eq!((ds.num_classes, ds.train.n, ds.test.n), (100, 2, 1));
        assert_eq!(ds.train.y, vec![99, 42]);
        assert_eq!(ds.test.y, vec![5]);
        assert_eq!(ds.train.x[3072 + 2], pixel(7, 2));
        assert_eq!(ds.test.x[1], pixel(9, 1));
        assert_eq!(ds.source, t.0.display().to_string());
    }

    #[test]
    fn cifar10_label_out_of_range() {
        let t = TempDir::new("cifar10-label");
        let mut f = record(Variant::Ten, 0, 3, 0);
        f.extend(record(Variant::Ten, 0, 10, 0));
        let p = t.write("b.bin", &f);
        let err = read_batch(&p, Variant::Ten).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { index: 1, label: 10, num_classes: 10, .. }), "{err:?}");
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
    }

    #[test]
    fn cifar100_fine_label_out_of_range() {
        let t = TempDir::new("cifar100-label");
        let p = t.write("train.bin", &record(Variant::Hundred, 1, 100, 0));
        let err = read_batch(&p, Variant::Hundred).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { index: 0, label: 100, num_classes: 100, .. }), "{err:?}");
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
    }

    #[test]
    fn bad_size() {
        let t = TempDir::new("cifar-size");
        let mut f = record(Variant::Ten, 0, 1, 0);
        f.pop();
        let p = t.write("data_batch_1.bin", &f);
        let err = read_batch(&p, Variant::Ten).unwrap_err();
        assert!(matches!(err, DataError::BadSize { len: 3072, record: 3073, .. }), "{err:?}");
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
        // A CIFAR-10 file read as CIFAR-100 has the wrong record size too.
        let p = t.write("ten.bin", &record(Variant::Ten, 0, 1, 0));
        let err = read_batch(&p, Variant::Hundred).unwrap_err();
        assert!(matches!(err, DataError::BadSize { record: 3074, .. }), "{err:?}");
    }

    #[test]
    fn missing_batch_is_not_found() {
        let t = TempDir::new("cifar-missing");
        for b in [1, 2, 4, 5] {
            t.write(&format!("data_batch_{b}.bin"), &record(Variant::Ten, 0, 1, 0));
        }
        let err = load_any(DataName::Cifar10, Some(&t.0)).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("missing data_batch_3.bin, test_batch.bin"), "{msg}");
        assert!(msg.contains(&*t.0.join("cifar-10-batches-bin").to_string_lossy()), "{msg}");
    }
}
