//! STL-10 in its binary version (`stl10_binary`).
//!
//! Files have no header. Images and labels live in separate files:
//!
//! ```text
//! stl10_binary/train_X.bin   5000 images   stl10_binary/train_y.bin   5000 labels
//! stl10_binary/test_X.bin    8000 images   stl10_binary/test_y.bin    8000 labels
//! (unlabeled_X.bin, 100000 images, is not read)
//! ```
//!
//! `*_X.bin` is u8, `N x 3 x 96 x 96`: image after image, each 3 colour
//! planes (red, green, blue) of 96x96 = 9216 bytes, 27648 bytes an image.
//! Each plane is stored COLUMN-major (Fortran order, as written by MATLAB):
//!
//! ```text
//! byte  (s * 3 + c) * 9216 + col * 96 + row   =   pixel (row, col) of channel c of image s
//! ```
//!
//! [`read_images`] transposes every plane to row-major, so samples come out
//! in this crate's `C x H x W` layout (`row * 96 + col`).
//!
//! `*_y.bin` is one u8 per image, labels `1..=10` (1 airplane, 2 bird, 3 car,
//! 4 cat, 5 deer, 6 dog, 7 horse, 8 monkey, 9 ship, 10 truck);
//! [`read_labels`] returns `label - 1`, in `0..10`.
//!
//! Checks: the length of an X file must be a multiple of 27648
//! ([`DataError::BadSize`]), its image count must equal the label count
//! ([`DataError::CountMismatch`]) and every label must be in `1..=10`
//! ([`DataError::LabelOutOfRange`]). Gzip-compressed files are accepted too
//! (detected by their magic bytes).

use super::{check_label, find_files, read_file_at_most, DataError, DataName, Dataset, Split};
use std::path::Path;

/// Side of an STL-10 image.
pub const SIDE: usize = 96;
/// Bytes in one image: 3 planes of 96x96.
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;
/// STL-10 has 10 classes.
pub const NUM_CLASSES: usize = 10;

/// Reads an STL-10 `*_X.bin` file: returns `(n, pixels)` with
/// `pixels.len() == n * 27648`, each image `3 x 96 x 96` ROW-major (the
/// file's column-major planes transposed).
pub fn read_images(path: impl AsRef<Path>) -> Result<(usize, Vec<u8>), DataError> {
    let path = path.as_ref();
    // STL-10's labelled files hold 5000 (train) and 8000 (test) images.
    let bytes = read_file_at_most(path, 20_000 * IMAGE_BYTES, "any labelled STL-10 file: 20000 images")?;
    if bytes.len() % IMAGE_BYTES != 0 {
        return Err(DataError::BadSize {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            record: IMAGE_BYTES as u64,
            what: "STL-10 image: 3 x 96 x 96 bytes",
        });
    }
    Ok((bytes.len() / IMAGE_BYTES, transpose_planes(&bytes, SIDE)))
}

/// Transposes every `side x side` plane of `bytes` (column-major to
/// row-major). `bytes.len()` must be a multiple of `side * side`.
fn transpose_planes(bytes: &[u8], side: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes.len()];
    let plane = side * side;
    for (src, dst) in bytes.chunks_exact(plane).zip(out.chunks_exact_mut(plane)) {
        for (col, column) in src.chunks_exact(side).enumerate() {
            for (row, &v) in column.iter().enumerate() {
                dst[row * side + col] = v;
            }
        }
    }
    out
}

/// Reads an STL-10 `*_y.bin` file: returns the labels shifted to `0..10`
/// (file label minus 1); a file label outside `1..=10` is an error.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u32>, DataError> {
    let path = path.as_ref();
    read_file_at_most(path, 20_000, "any labelled STL-10 file: 20000 labels")?
        .iter()
        .enumerate()
        .map(|(i, &l)| check_label(path, i, u32::from(l), 1, NUM_CLASSES))
        .collect()
}

fn read_split(images: &Path, labels: &Path) -> Result<Split, DataError> {
    let (n, pixels) = read_images(images)?;
    let y = read_labels(labels)?;
    if y.len() != n {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            n_images: n,
            labels: labels.to_path_buf(),
            n_labels: y.len(),
        });
    }
    Ok(Split::from_u8(&pixels, y, IMAGE_BYTES))
}

/// Loads STL-10's labelled train and test parts; see [`super::load`] for
/// where files are looked for.
pub(crate) fn load(data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    let files: [&[&str]; 4] = [&["train_X.bin"], &["train_y.bin"], &["test_X.bin"], &["test_y.bin"]];
    let (dir, p) = find_files(DataName::Stl10, data_dir, Some("stl10_binary"), &files)?;
    Ok(Dataset {
        alphabet: None,
        name: DataName::Stl10.as_str().to_string(),
        channels: 3,
        height: SIDE,
        width: SIDE,
        num_classes: NUM_CLASSES,
        train: read_split(&p[0], &p[1])?,
        test: read_split(&p[2], &p[3])?,
        source: dir.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{load as load_any, TempDir};
    use super::*;

    /// Value of pixel (c, row, col) of image s in the test files. Swapping
    /// row and col changes it by 95 * (row - col), never 0 mod 256 for
    /// row != col < 96, so a missing transpose cannot go unseen.
    fn value(s: usize, c: usize, row: usize, col: usize) -> u8 {
        ((s * 50 + c * 17 + row * SIDE + col) % 256) as u8
    }

    /// An X file in STL-10's column-major layout.
    fn x_file(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n * IMAGE_BYTES);
        for s in 0..n {
            for c in 0..3 {
                for col in 0..SIDE {
                    for row in 0..SIDE {
                        v.push(value(s, c, row, col));
                    }
                }
            }
        }
        v
    }

    #[test]
    fn transpose_small_plane() {
        // Two 3x3 planes, column-major: the first column is 1, 4, 7.
        let cm: Vec<u8> = vec![1, 4, 7, 2, 5, 8, 3, 6, 9, 10, 13, 16, 11, 14, 17, 12, 15, 18];
        let rm: Vec<u8> = (1..=18).collect();
        assert_eq!(transpose_planes(&cm, 3), rm);
    }

    #[test]
    fn reads_and_transposes_to_row_major() {
        let t = TempDir::new("stl-read");
        let p = t.write("train_X.bin", &x_file(2));
        let (n, px) = read_images(&p).unwrap();
        assert_eq!((n, px.len()), (2, 2 * IMAGE_BYTES));
        for (s, c, row, col) in [(0, 0, 0, 1), (0, 0, 1, 0), (1, 2, 5, 90), (1, 1, 95, 0), (0, 2, 95, 94)] {
            let i = s * IMAGE_BYTES + c * SIDE * SIDE + row * SIDE + col;
            assert_eq!(px[i], value(s, c, row, col), "s{s} c{c} row{row} col{col}");
        }
    }

    #[test]
    fn load_through_stl10_binary_folder() {
        let t = TempDir::new("stl-load");
        t.write("stl10_binary/train_X.bin", &x_file(2));
        t.write("stl10_binary/train_y.bin", &[1, 10]);
        t.write("stl10_binary/test_X.bin", &x_file(1));
        t.write("stl10_binary/test_y.bin", &[4]);
        let ds = load_any(DataName::Stl10, Some(&t.0)).unwrap();
        assert_eq!(ds.name, "stl10");
        assert_eq!(ds.source, t.0.join("stl10_binary").display().to_string());
        assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes), (3, 96, 96, 10));
        assert_eq!((ds.train.n, ds.test.n, ds.dim()), (2, 1, 27648));
        assert_eq!(ds.train.y, vec![0, 9]);
        assert_eq!(ds.test.y, vec![3]);
        // Pixel (c=1, row=2, col=40) of train sample 1, row-major index.
        let i = IMAGE_BYTES + SIDE * SIDE + 2 * SIDE + 40;
        assert_eq!(ds.train.x[i], f32::from(value(1, 1, 2, 40)) / 255.0);
        assert_ne!(value(1, 1, 2, 40), value(1, 1, 40, 2));
        assert_eq!(ds.test.x[SIDE], f32::from(value(0, 0, 1, 0)) / 255.0);
    }

    #[test]
    fn label_zero_and_eleven_out_of_range() {
        let t = TempDir::new("stl-label");
        for (bad, idx) in [(0u8, 1usize), (11, 2)] {
            let mut y = vec![5u8, 5, 5];
            y[idx] = bad;
            let p = t.write(&format!("y{bad}.bin"), &y);
            let err = read_labels(&p).unwrap_err();
            assert!(
                matches!(err, DataError::LabelOutOfRange { index, label, first: 1, num_classes: 10, .. }
                    if index == idx && label == u32::from(bad)),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&*p.to_string_lossy()), "{msg}");
            assert!(msg.contains("1..=10"), "{msg}");
        }
    }

    #[test]
    fn bad_size() {
        let t = TempDir::new("stl-size");
        let mut x = x_file(1);
        x.push(0);
        let p = t.write("train_X.bin", &x);
        let err = read_images(&p).unwrap_err();
        assert!(matches!(err, DataError::BadSize { len: 27649, record: 27648, .. }), "{err:?}");
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
    }

    #[test]
    fn count_mismatch() {
        let t = TempDir::new("stl-count");
        t.write("train_X.bin", &x_file(2));
        let y = t.write("train_y.bin", &[1, 2, 3]);
        t.write("test_X.bin", &x_file(1));
        t.write("test_y.bin", &[1]);
        let err = load_any(DataName::Stl10, Some(&t.0)).unwrap_err();
        assert!(matches!(err, DataError::CountMismatch { n_images: 2, n_labels: 3, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*y.to_string_lossy()), "{msg}");
        assert!(msg.contains(&*t.0.join("train_X.bin").to_string_lossy()), "{msg}");
    }

    #[test]
    fn missing_files_not_found() {
        let t = TempDir::new("stl-missing");
        t.write("stl10_binary/train_X.bin", &x_file(1));
        let err = load_any(DataName::Stl10, Some(&t.0)).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("missing train_y.bin, test_X.bin, test_y.bin"), "{msg}");
        assert!(msg.contains(&*t.0.join("stl10").to_string_lossy()), "{msg}");
    }
}
