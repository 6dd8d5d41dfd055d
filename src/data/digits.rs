//! UCI "Optical Recognition of Handwritten Digits", 8x8, embedded in the
//! binary.
//!
//! The file `uci-digits-8x8.csv.gz` beside this source file is compiled in
//! with `include_bytes!`, so this data set needs no files at run time. It is
//! the 1797-image part of the UCI data set as shipped by scikit-learn
//! (`load_digits`); licence CC BY 4.0 (UCI ML Repository; E. Alpaydin,
//! C. Kaynak 1998).
//!
//! Format: a gzip-compressed CSV, no header, one image a line, 65
//! comma-separated decimal integers:
//!
//! ```text
//! field   0..=63   pixels 0..=16 of the 8x8 image, row-major (field = row * 8 + col)
//! field   64       label 0..=9
//! ```
//!
//! Pixels are scaled by `/16` into `[0, 1]`; samples are `1 x 8 x 8`.
//!
//! Split (FIXED, no randomness): sample `i` (0-based line index) goes to
//! TEST if `i % 5 == 4`, else to TRAIN, giving 1438 train / 359 test
//! images, in file order (1797 = 5 * 359 + 2, so lines 4, 9, .., 1794 are
//! the 359 test images). Every class is in both splits.
//!
//! A malformed line is a [`DataError::Parse`] giving its 1-based line number.

use super::{gunzip, DataError, Dataset, Split};
use std::path::Path;

/// The gzip-compressed CSV, compiled into the binary.
pub static EMBEDDED_CSV_GZ: &[u8] = include_bytes!("uci-digits-8x8.csv.gz");

/// The name used for the embedded file in error messages.
const EMBEDDED_PATH: &str = "embedded:uci-digits-8x8.csv.gz";

/// Side of an image.
pub const SIDE: usize = 8;
/// Values a line holds: 64 pixels and a label.
const FIELDS: usize = SIDE * SIDE + 1;

/// Loads the embedded data set with the fixed split described in the module
/// docs; `source` is "embedded".
pub fn load() -> Result<Dataset, DataError> {
    let path = Path::new(EMBEDDED_PATH);
    let csv = gunzip(EMBEDDED_CSV_GZ, path)?;
    let mut ds = from_csv(&csv, path)?;
    ds.source = "embedded".to_string();
    Ok(ds)
}

/// Parses a digits CSV (uncompressed, format as in the module docs) and
/// splits it (`i % 5 == 4` to test). `path` names the data in errors and
/// becomes [`Dataset::source`]. Blank lines are skipped (line numbers still
/// count them).
pub fn from_csv(csv: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let parse_err = |line: usize, msg: String| DataError::Parse { path: path.to_path_buf(), line, msg };
    let text = std::str::from_utf8(csv).map_err(|e| {
        let line = csv[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        parse_err(line, format!("not UTF-8 text ({e})"))
    })?;
    let dim = SIDE * SIDE;
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut i = 0usize;
    let mut values = [0u8; FIELDS];
    for (k, line) in text.lines().enumerate() {
        let line_no = k + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut count = 0;
        for field in line.split(',') {
            if count == FIELDS {
                return Err(parse_err(line_no, format!("more than {FIELDS} fields (64 pixels + label)")));
            }
            let field = field.trim();
            let max = if count < dim { 16 } else { 9 };
            let what = if count < dim { "pixel" } else { "label" };
            values[count] = match field.parse::<u8>() {
                Ok(v) if v <= max => v,
                _ => {
                    return Err(parse_err(
                        line_no,
                        format!("field {} ({what}) is `{field}`, expected an integer 0..={max}", count + 1),
                    ));
                }
            };
            count += 1;
        }
        if count != FIELDS {
            return Err(parse_err(line_no, format!("{count} fields, expected {FIELDS} (64 pixels + label)")));
        }
        let (x, y) = if i % 5 == 4 { (&mut test_x, &mut test_y) } else { (&mut train_x, &mut train_y) };
        x.extend(values[..dim].iter().map(|&v| f32::from(v) / 16.0));
        y.push(u32::from(values[dim]));
        i += 1;
    }
    Ok(Dataset {
        alphabet: None,
        name: "digits".to_string(),
        channels: 1,
        height: SIDE,
        width: SIDE,
        num_classes: 10,
        train: Split { n: train_y.len(), x: train_x, y: train_y, dim },
        test: Split { n: test_y.len(), x: test_x, y: test_y, dim },
        source: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{load as load_any, DataName};
    use super::*;

    fn first_lines(k: usize) -> Vec<Vec<u8>> {
        let csv = gunzip(EMBEDDED_CSV_GZ, Path::new("x")).unwrap();
        let text = String::from_utf8(csv).unwrap();
        text.lines().take(k).map(|l| l.split(',').map(|f| f.parse().unwrap()).collect()).collect()
    }

    #[test]
    fn embedded_sizes_and_split() {
        let ds = load_any(DataName::Digits, None).unwrap();
        assert_eq!(ds.name, "digits");
        assert_eq!(ds.source, "embedded");
        assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes, ds.dim()), (1, 8, 8, 10, 64));
        assert_eq!(ds.train.n + ds.test.n, 1797);
        assert_eq!((ds.train.n, ds.test.n), (1438, 359));
        assert_eq!((ds.train.x.len(), ds.test.x.len()), (1438 * 64, 359 * 64));
        assert_eq!(ds.train.y.len(), 1438);
        let max = ds.train.x.iter().chain(&ds.test.x).cloned().fold(f32::MIN, f32::max);
        let min = ds.train.x.iter().chain(&ds.test.x).cloned().fold(f32::MAX, f32::min);
        assert_eq!((min, max), (0.0, 1.0));
        for split in [&ds.train, &ds.test] {
            let counts = ds.class_counts(split);
            assert_eq!(counts.len(), 10);
            assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        }
        // data_dir is ignored for the embedded set.
        let again = load_any(DataName::Digits, Some(Path::new("/nonexistent"))).unwrap();
        assert_eq!(again.checksum(), ds.checksum());
    }

    #[test]
    fn known_values_from_the_csv() {
        // Lines 0..=3 are train samples 0..=3, line 4 is test sample 0,
        // line 5 is train sample 4.
        let lines = first_lines(6);
        let ds = load().unwrap();
        // First line: 0,0,5,13,9,1,0,0,... label 0.
        assert_eq!(&lines[0][..4], &[0, 0, 5, 13]);
        assert_eq!(ds.train.x[2], 5.0 / 16.0);
        assert_eq!(ds.train.x[3], 13.0 / 16.0);
        assert_eq!(ds.train.y[0], 0);
        for (sample, line) in [(0, 0), (1, 1), (3, 3), (4, 5)] {
            let want: Vec<f32> = lines[line][..64].iter().map(|&v| f32::from(v) / 16.0).collect();
            assert_eq!(&ds.train.x[sample * 64..(sample + 1) * 64], &want[..]);
            assert_eq!(ds.train.y[sample], u32::from(lines[line][64]));
        }
        let want: Vec<f32> = lines[4][..64].iter().map(|&v| f32::from(v) / 16.0).collect();
        assert_eq!(&ds.test.x[..64], &want[..]);
        assert_eq!(ds.test.y[0], u32::from(lines[4][64]));
    }

    #[test]
    fn normalize_gives_zero_mean_unit_std_on_train() {
        let mut ds = load().unwrap();
        let before = ds.checksum();
        let (means, stds) = ds.normalize();
        assert_eq!((means.len(), stds.len()), (1, 1));
        assert!(means[0] > 0.0 && stds[0] > 0.0);
        let n = ds.train.x.len() as f64;
        let mean = ds.train.x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = ds.train.x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-5, "{mean}");
        assert!((var.sqrt() - 1.0).abs() < 1e-4, "{var}");
        assert_ne!(ds.checksum(), before);
    }

    #[test]
    fn checksum_stable_and_changes_with_one_pixel() {
        let a = load().unwrap();
        let b = load().unwrap();
        assert_eq!(a.checksum(), b.checksum());
        let mut c = load().unwrap();
        c.test.x[100] += 1.0 / 16.0;
        assert_ne!(c.checksum(), a.checksum());
    }

    #[test]
    fn parse_errors_give_line_numbers() {
        let p = Path::new("/tmp/my-digits.csv");
        let good = ["0,"; 64].concat() + "3";
        let cases = [
            (format!("{good}\n{}", ["0,"; 64].concat()), 2, "field 65 (label)"),
            (format!("{good}\n\n{}", ["0,"; 63].concat() + "17,1"), 3, "field 64 (pixel) is `17`"),
            (format!("{good}\n{}", ["0,"; 64].concat() + "10"), 2, "field 65 (label) is `10`"),
            (["1,"; 20].concat() + "1", 1, "21 fields, expected 65"),
            (format!("{good},4"), 1, "more than 65 fields"),
            (["x,"; 64].concat() + "1", 1, "field 1 (pixel) is `x`"),
        ];
        for (csv, line, what) in cases {
            let err = from_csv(csv.as_bytes(), p).unwrap_err();
            assert!(matches!(err, DataError::Parse { line: l, .. } if l == line), "{err:?}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("/tmp/my-digits.csv: line {line}: ")), "{msg}");
            assert!(msg.contains(what), "{msg}");
        }
        let ds = from_csv(format!("{good}\r\n{good}\n").as_bytes(), p).unwrap();
        assert_eq!((ds.train.n, ds.test.n, ds.train.y.clone()), (2, 0, vec![3, 3]));
    }
}
