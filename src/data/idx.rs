//! MNIST and Fashion-MNIST in the IDX format.
//!
//! Four files, each raw or gzip-compressed (detected by the gzip magic bytes
//! `1f 8b`, not by the name; `.gz` is optional):
//!
//! ```text
//! train-images-idx3-ubyte[.gz]   60000 images      t10k-images-idx3-ubyte[.gz]   10000 images
//! train-labels-idx1-ubyte[.gz]   60000 labels      t10k-labels-idx1-ubyte[.gz]   10000 labels
//! ```
//!
//! All integers in the header are big-endian u32.
//!
//! Images file (`idx3-ubyte`):
//!
//! ```text
//! offset  size            field
//! 0       4               magic 0x00000803 (u8 data, 3 dimensions)
//! 4       4               n     number of images
//! 8       4               rows  (28)
//! 12      4               cols  (28)
//! 16      n*rows*cols     pixels, u8 0..=255, image after image, each row-major
//! ```
//!
//! Labels file (`idx1-ubyte`):
//!
//! ```text
//! offset  size  field
//! 0       4     magic 0x00000801 (u8 data, 1 dimension)
//! 4       4     n     number of labels
//! 8       n     labels, u8 0..=9
//! ```
//!
//! [`load`](super::load) scales pixels by `/255` into `1 x rows x cols`
//! samples and checks that image and label counts agree, that labels are
//! below 10 and that the test images have the train images' shape. Bytes
//! after the data the header announces are ignored. Fashion-MNIST is the
//! same format as MNIST with clothing classes (0 T-shirt/top, 1 Trouser,
//! 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
//! 9 Ankle boot).

use super::{be_u32, check_label, find_files, read_file_bounded, DataError, DataName, Dataset, Split};
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of u8 data with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 data with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// MNIST and Fashion-MNIST have 10 classes.
pub const NUM_CLASSES: usize = 10;

/// Reads an IDX images file (raw or gzip): returns `(n, rows, cols, pixels)`
/// with `pixels.len() == n * rows * cols`, image after image, row-major.
pub fn read_images(path: impl AsRef<Path>) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let path = path.as_ref();
    // What the header declares, and no more, is read.
    let mut bytes = read_file_bounded(path, 16, |h| {
        check_magic(path, h, IMAGES_MAGIC, "an IDX image file")?;
        Ok(16 + be_u32(h, 4) as u128 * be_u32(h, 8) as u128 * be_u32(h, 12) as u128)
    })?;
    check_magic(path, &bytes, IMAGES_MAGIC, "an IDX image file")?;
    check_len(path, &bytes, 16, "16-byte IDX image header".to_string())?;
    let (n, rows, cols) = (be_u32(&bytes, 4) as usize, be_u32(&bytes, 8) as usize, be_u32(&bytes, 12) as usize);
    // u32 * u32 * u32 fits in u128; a size past usize cannot be in memory.
    let pixels = n as u128 * rows as u128 * cols as u128;
    let expected = 16 + pixels;
    if (bytes.len() as u128) < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: u64::try_from(expected).unwrap_or(u64::MAX),
            actual: bytes.len() as u64,
            what: format!("16-byte header + {n} images of {rows}x{cols}"),
        });
    }
    let pixels = pixels as usize; // <= bytes.len(), so it fits
    bytes.truncate(16 + pixels);
    bytes.drain(..16);
    Ok((n, rows, cols, bytes))
}

/// Reads an IDX labels file (raw or gzip): returns the `n` label bytes as
/// stored (not range-checked; [`load`](super::load) checks them).
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>, DataError> {
    let path = path.as_ref();
    let mut bytes = read_file_bounded(path, 8, |h| {
        check_magic(path, h, LABELS_MAGIC, "an IDX label file")?;
        Ok(8 + be_u32(h, 4) as u128)
    })?;
    check_magic(path, &bytes, LABELS_MAGIC, "an IDX label file")?;
    check_len(path, &bytes, 8, "8-byte IDX label header".to_string())?;
    let n = be_u32(&bytes, 4) as usize;
    check_len(path, &bytes, 8 + n, format!("8-byte header + {n} labels"))?;
    bytes.truncate(8 + n);
    bytes.drain(..8);
    Ok(bytes)
}

fn check_magic(path: &Path, bytes: &[u8], expected: u32, what: &'static str) -> Result<(), DataError> {
    check_len(path, bytes, 4, "4-byte IDX magic number".to_string())?;
    let found = be_u32(bytes, 0);
    if found != expected {
        return Err(DataError::BadMagic { path: path.to_path_buf(), found, expected, what });
    }
    Ok(())
}

fn check_len(path: &Path, bytes: &[u8], expected: usize, what: String) -> Result<(), DataError> {
    if bytes.len() < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: expected as u64,
            actual: bytes.len() as u64,
            what,
        });
    }
    Ok(())
}

/// Reads one images/labels pair into a split; checks counts, labels, shape.
fn read_split(images: &Path, labels: &Path, shape: Option<(usize, usize)>) -> Result<(Split, usize, usize), DataError> {
    let (n, rows, cols, pixels) = read_images(images)?;
    if let Some(expected) = shape.filter(|&e| e != (rows, cols)) {
        return Err(DataError::ShapeMismatch { path: images.to_path_buf(), expected, found: (rows, cols) });
    }
    let raw = read_labels(labels)?;
    if raw.len() != n {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            n_images: n,
            labels: labels.to_path_buf(),
            n_labels: raw.len(),
        });
    }
    let y = raw
        .iter()
        .enumerate()
        .map(|(i, &l)| check_label(labels, i, u32::from(l), 0, NUM_CLASSES))
        .collect::<Result<Vec<u32>, DataError>>()?;
    Ok((Split::from_u8(&pixels, y, rows * cols), rows, cols))
}

const FILES: [&[&str]; 4] = [
    &["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"],
    &["train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"],
    &["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"],
    &["t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"],
];

/// Loads MNIST or Fashion-MNIST (`name` picks the search paths and the
/// data set's name); see [`super::load`] for where files are looked for.
pub(crate) fn load(name: DataName, data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    let (dir, files) = find_files(name, data_dir, None, &FILES)?;
    load_files(name, &dir, &files)
}

fn load_files(name: DataName, dir: &Path, files: &[PathBuf]) -> Result<Dataset, DataError> {
    let (train, rows, cols) = read_split(&files[0], &files[1], None)?;
    let (test, _, _) = read_split(&files[2], &files[3], Some((rows, cols)))?;
    Ok(Dataset {
        alphabet: None,
        name: name.as_str().to_string(),
        channels: 1,
        height: rows,
        width: cols,
        num_classes: NUM_CLASSES,
        train,
        test,
        source: dir.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{gzip, load as load_any, TempDir};
    use super::*;

    fn images_file(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [IMAGES_MAGIC, n, rows, cols] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v.extend_from_slice(pixels);
        v
    }

    fn labels_file(labels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    /// 3 train images of 2x3 with pixels 0..18 * 10, 2 test images.
    fn write_set(t: &TempDir, sub: &str, gz: bool) {
        let train_px: Vec<u8> = (0..18u8).map(|i| i * 10).collect();
        let test_px: Vec<u8> = (0..12u8).map(|i| 255 - i).collect();
        let files = [
            ("train-images-idx3-ubyte", images_file(3, 2, 3, &train_px)),
            ("train-labels-idx1-ubyte", labels_file(&[7, 0, 9])),
            ("t10k-images-idx3-ubyte", images_file(2, 2, 3, &test_px)),
            ("t10k-labels-idx1-ubyte", labels_file(&[3, 1])),
        ];
        for (name, bytes) in files {
            if gz {
                t.write(&format!("{sub}{name}.gz"), &gzip(&bytes));
            } else {
                t.write(&format!("{sub}{name}"), &bytes);
            }
        }
    }

    fn check_set(ds: &Dataset) {
        assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes), (1, 2, 3, 10));
        assert_eq!((ds.train.n, ds.train.dim, ds.test.n, ds.test.dim), (3, 6, 2, 6));
        assert_eq!(ds.train.y, vec![7, 0, 9]);
        assert_eq!(ds.test.y, vec![3, 1]);
        let want: Vec<f32> = (0..18u8).map(|i| f32::from(i * 10) / 255.0).collect();
        assert_eq!(ds.train.x, want);
        assert_eq!(ds.test.x[0], 1.0);
        assert_eq!(ds.test.x[11], 244.0 / 255.0);
    }

    #[test]
    fn reads_raw_files_exactly() {
        let t = TempDir::new("idx-raw");
        write_set(&t, "", false);
        let (n, r, c, px) = read_images(t.0.join("train-images-idx3-ubyte")).unwrap();
        assert_eq!((n, r, c), (3, 2, 3));
        assert_eq!(px, (0..18u8).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(read_labels(t.0.join("t10k-labels-idx1-ubyte")).unwrap(), vec![3, 1]);
        let ds = load_any(DataName::Mnist, Some(&t.0)).unwrap();
        check_set(&ds);
        assert_eq!(ds.name, "mnist");
        assert_eq!(ds.source, t.0.display().to_string());
    }

    #[test]
    fn reads_gzip_files_and_subfolders() {
        let t = TempDir::new("idx-gz");
        write_set(&t, "fashion-mnist/", true);
        let ds = load_any(DataName::FashionMnist, Some(&t.0)).unwrap();
        check_set(&ds);
        assert_eq!(ds.name, "fashion-mnist");
        assert_eq!(ds.source, t.0.join("fashion-mnist").display().to_string());
        // torchvision layout for MNIST.
        let t = TempDir::new("idx-tv");
        write_set(&t, "MNIST/raw/", true);
        check_set(&load_any(DataName::Mnist, Some(&t.0)).unwrap());
    }

    #[test]
    fn gzip_detected_by_magic_even_without_gz_name() {
        let t = TempDir::new("idx-gzname");
        let p = t.write("train-images-idx3-ubyte", &gzip(&images_file(1, 1, 2, &[5, 6])));
        assert_eq!(read_images(&p).unwrap(), (1, 1, 2, vec![5, 6]));
    }

    #[test]
    fn missing_file_is_not_found_with_paths() {
        let t = TempDir::new("idx-missing");
        write_set(&t, "", false);
        std::fs::remove_file(t.0.join("t10k-labels-idx1-ubyte")).unwrap();
        let err = load_any(DataName::Mnist, Some(&t.0)).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("{} (missing t10k-labels-idx1-ubyte", t.0.display())), "{msg}");
        assert!(msg.contains(&*t.0.join("mnist").to_string_lossy()), "{msg}");
        assert!(msg.contains(&*t.0.join("MNIST").join("raw").to_string_lossy()), "{msg}");
        assert!(msg.contains("--data-dir"), "{msg}");
    }

    #[test]
    fn wrong_magic() {
        let t = TempDir::new("idx-magic");
        let p = t.write("train-images-idx3-ubyte", &labels_file(&[1, 2]));
        let err = read_images(&p).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { found: 0x801, expected: 0x803, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("{}: wrong magic number 0x00000801 (expected 0x00000803, an IDX image file)", p.display())
        );
        let p = t.write("labels", &images_file(0, 1, 1, &[]));
        let err = read_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { found: 0x803, .. }), "{err:?}");
        assert!(err.to_string().contains(&*p.to_string_lossy()));
    }

    #[test]
    fn truncated_images_file() {
        let t = TempDir::new("idx-trunc");
        // Header promises 2 images of 2x2 (16 + 8 bytes); only 5 pixels.
        let p = t.write("imgs", &images_file(2, 2, 2, &[1, 2, 3, 4, 5]));
        let err = read_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 24, actual: 21, .. }), "{err:?}");
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
        // Same through gzip: sizes are the decompressed ones.
        let p = t.write("imgs.gz", &gzip(&images_file(2, 2, 2, &[1, 2, 3, 4, 5])));
        let err = read_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 24, actual: 21, .. }), "{err:?}");
        // Shorter than the header.
        let p = t.write("short", &IMAGES_MAGIC.to_be_bytes()[..]);
        let err = read_images(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 16, actual: 4, .. }), "{err:?}");
        // Labels file shorter than its count.
        let mut l = labels_file(&[1, 2, 3]);
        l.pop();
        let p = t.write("labels", &l);
        let err = read_labels(&p).unwrap_err();
        assert!(matches!(err, DataError::Truncated { expected: 11, actual: 10, .. }), "{err:?}");
    }

    #[test]
    fn truncated_or_corrupt_gzip_is_an_error_not_a_panic() {
        let t = TempDir::new("idx-badgz");
        let px: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
        let gz = gzip(&images_file(10, 20, 20, &px));
        for cut in [gz.len() - 1, gz.len() - 9, gz.len() / 2, 11] {
            let p = t.write(&format!("cut{cut}.gz"), &gz[..cut]);
            let err = read_images(&p).unwrap_err();
            assert!(matches!(err, DataError::BadGzip { .. } | DataError::Truncated { .. }), "cut {cut}: {err:?}");
            assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
        }
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let p = t.write("flipped.gz", &bad);
        let err = read_images(&p).unwrap_err();
        // (A flipped byte may inflate to more than the header declares: refused before the
        // trailer's checksum is reached.)
        assert!(matches!(err, DataError::BadGzip { .. } | DataError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let t = TempDir::new("idx-count");
        write_set(&t, "", false);
        let labels = t.write("train-labels-idx1-ubyte", &labels_file(&[1, 2]));
        let err = load_any(DataName::Mnist, Some(&t.0)).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { n_images: 3, n_labels: 2, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*labels.to_string_lossy()), "{msg}");
        assert!(msg.contains(&*t.0.join("train-images-idx3-ubyte").to_string_lossy()), "{msg}");
    }

    #[test]
    fn label_out_of_range() {
        let t = TempDir::new("idx-label");
        write_set(&t, "", false);
        let labels = t.write("t10k-labels-idx1-ubyte", &labels_file(&[3, 10]));
        let err = load_any(DataName::FashionMnist, Some(&t.0)).unwrap_err();
        assert!(matches!(err, DataError::LabelOutOfRange { index: 1, label: 10, num_classes: 10, .. }), "{err:?}");
        assert!(err.to_string().contains(&*labels.to_string_lossy()), "{err}");
    }

    #[test]
    fn test_shape_must_match_train() {
        let t = TempDir::new("idx-shape");
        write_set(&t, "", false);
        let p = t.write("t10k-images-idx3-ubyte", &images_file(2, 3, 2, &[0; 12]));
        let err = load_any(DataName::Mnist, Some(&t.0)).unwrap_err();
        assert!(matches!(err, DataError::ShapeMismatch { expected: (2, 3), found: (3, 2), .. }), "{err:?}");
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
    }

    /// The real Fashion-MNIST, when `apt-get install -y dataset-fashion-mnist`
    /// has put it on this machine; skipped otherwise.
    #[test]
    fn real_fashion_mnist_if_installed() {
        let dir = Path::new("/usr/share/datasets/fashion-mnist");
        if !dir.join("train-images-idx3-ubyte.gz").exists() {
            // CI installs the data and sets BIOLEARN_REQUIRE_DATA: there a missing set fails.
            assert!(
                std::env::var("BIOLEARN_REQUIRE_DATA").as_deref() != Ok("1"),
                "Fashion-MNIST is not installed in {} and BIOLEARN_REQUIRE_DATA=1",
                dir.display()
            );
            eprintln!("skipping: Fashion-MNIST not installed in {}", dir.display());
            return;
        }
        let start = std::time::Instant::now();
        let ds = load_any(DataName::FashionMnist, Some(dir)).unwrap();
        eprintln!("loaded Fashion-MNIST in {:?}", start.elapsed());
        assert_eq!((ds.train.n, ds.test.n), (60000, 10000));
        assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes), (1, 28, 28, 10));
        assert_eq!(ds.train.x.len(), 60000 * 784);
        assert_eq!(ds.test.x.len(), 10000 * 784);
        assert_eq!(ds.class_counts(&ds.train), vec![6000; 10]);
        assert_eq!(ds.class_counts(&ds.test), vec![1000; 10]);
        assert!(ds.train.x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(ds.train.x.iter().cloned().fold(0.0, f32::max), 1.0);
    }
}
