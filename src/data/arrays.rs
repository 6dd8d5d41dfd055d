//! Data sets from plain arrays, for data biolearn has no loader for: build one from vectors
//! ([`from_arrays`]), from CSV files ([`load_csv`]) or from NumPy `.npy` files ([`load_npy`]), and
//! make it known by name with [`super::register`] (then `--data NAME`, plans and `biolearn data
//! info` use it like a built-in one).
//!
//! CSV: `DIR/train.csv` and `DIR/test.csv`, one sample per line, `label,v1,v2,...` with the
//! C x H x W values in C-then-row order (a header line is allowed if its first field is not a
//! number). NumPy: `DIR/x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`; images of shape
//! (N, H, W) or (N, C, H, W) as float32, float64 or uint8 (uint8 is scaled by 1/255), labels as
//! any integer type; C order. Values are used as given otherwise.

use super::{DataError, Dataset, Split};
use std::path::Path;

/// A data set from arrays: `x_*` hold `n * c * h * w` values, `y_*` the labels. Refuses empty
/// splits, sizes that do not match and labels out of `0..classes` (classes = largest label + 1).
#[allow(clippy::too_many_arguments)]
pub fn from_arrays(
    name: &str,
    source: &str,
    shape: [usize; 3],
    x_train: Vec<f32>,
    y_train: Vec<u32>,
    x_test: Vec<f32>,
    y_test: Vec<u32>,
) -> Result<Dataset, DataError> {
    let dim = shape.iter().product::<usize>();
    let bad = |msg: String| DataError::Parse { path: source.into(), line: 0, msg };
    if dim == 0 {
        return Err(bad(format!("{name}: empty sample shape {shape:?}")));
    }
    for (what, x, y) in [("train", &x_train, &y_train), ("test", &x_test, &y_test)] {
        if y.is_empty() {
            return Err(bad(format!("{name}: the {what} split has no samples")));
        }
        if x.len() != y.len() * dim {
            return Err(bad(format!("{name}: {what}: {} values for {} labels of {dim} values each", x.len(), y.len())));
        }
        if let Some(v) = x.iter().find(|v| !v.is_finite()) {
            return Err(bad(format!("{name}: {what}: a value is not finite ({v})")));
        }
    }
    let classes = y_train.iter().chain(&y_test).copied().max().unwrap() as usize + 1;
    let split = |x: Vec<f32>, y: Vec<u32>| Split { n: y.len(), x, y, dim };
    Ok(Dataset {
        alphabet: None,
        name: name.to_string(),
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        num_classes: classes,
        train: split(x_train, y_train),
        test: split(x_test, y_test),
        source: source.to_string(),
    })
}

/// `DIR/train.csv` and `DIR/test.csv` (see the module docs) as a data set of `shape`.
pub fn load_csv(name: &str, dir: &Path, shape: [usize; 3]) -> Result<Dataset, DataError> {
    let dim = shape.iter().product::<usize>();
    let read = |file: &str| -> Result<(Vec<f32>, Vec<u32>), DataError> {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::Io { path: path.clone(), source: e })?;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split(',').map(str::trim);
            let first = fields.next().unwrap_or("");
            let label: u32 = match first.parse() {
                Ok(l) => l,
                Err(_) if i == 0 && first.parse::<f64>().is_err() => continue, // a header
                Err(_) => {
                    let msg = format!("label '{first}' is not a non-negative integer");
                    return Err(DataError::Parse { path: path.clone(), line: i + 1, msg });
                }
            };
            let before = x.len();
            for f in fields {
                let v: f32 = f.parse().map_err(|_| DataError::Parse {
                    path: path.clone(),
                    line: i + 1,
                    msg: format!("value '{f}' is not a number"),
                })?;
                x.push(v);
            }
            if x.len() - before != dim {
                let msg = format!("{} values after the label, the shape {shape:?} needs {dim}", x.len() - before);
                return Err(DataError::Parse { path: path.clone(), line: i + 1, msg });
            }
            y.push(label);
        }
        Ok((x, y))
    };
    let (xt, yt) = read("train.csv")?;
    let (xs, ys) = read("test.csv")?;
    from_arrays(name, &dir.display().to_string(), shape, xt, yt, xs, ys)
}

/// One `.npy` array: its shape and values as f64 (u8 scaled by 1/255 when `scale_u8`).
fn read_npy(path: &Path, scale_u8: bool) -> Result<(Vec<usize>, Vec<f64>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
    let bad = |msg: &str| DataError::Parse { path: path.into(), line: 0, msg: msg.to_string() };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a NumPy .npy file (no \\x93NUMPY magic)"));
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes.get(start..start.saturating_add(hlen)).ok_or_else(|| bad("header runs past the end"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(header[i + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported (save with C order)"));
    }
    let descr = field("descr").and_then(|v| v.strip_prefix('\'')).and_then(|v| v.split('\'').next());
    let descr = descr.ok_or_else(|| bad("no 'descr' in the header"))?;
    let shape_text = field("shape").and_then(|v| v.strip_prefix('(')).and_then(|v| v.split(')').next());
    let shape: Vec<usize> = shape_text
        .ok_or_else(|| bad("no 'shape' in the header"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let data = &bytes[start + hlen..];
    let (size, conv): (usize, fn(&[u8]) -> f64) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes(b.try_into().unwrap()) as f64),
        "<f8" => (8, |b| f64::from_le_bytes(b.try_into().unwrap())),
        "|u1" => (1, |b| b[0] as f64),
        "|i1" => (1, |b| b[0] as i8 as f64),
        "<i4" => (4, |b| i32::from_le_bytes(b.try_into().unwrap()) as f64),
        "<i8" => (8, |b| i64::from_le_bytes(b.try_into().unwrap()) as f64),
        "<u4" => (4, |b| u32::from_le_bytes(b.try_into().unwrap()) as f64),
        "<u8" => (8, |b| u64::from_le_bytes(b.try_into().unwrap()) as f64),
        other => return Err(bad(&format!("dtype {other} is not supported (float32/64, uint8, int32/64)"))),
    };
    let need = count.checked_mul(size).ok_or_else(|| bad("shape overflows"))?;
    if data.len() != need {
        return Err(DataError::Truncated {
            path: path.into(),
            expected: need as u64,
            actual: data.len() as u64,
            what: format!("{count} values of {descr}"),
        });
    }
    let k = if scale_u8 && descr == "|u1" { 1.0 / 255.0 } else { 1.0 };
    Ok((shape, data.chunks_exact(size).map(|b| conv(b) * k).collect()))
}

/// `DIR/x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy` (see the module docs).
pub fn load_npy(name: &str, dir: &Path) -> Result<Dataset, DataError> {
    let images = |file: &str| -> Result<([usize; 3], Vec<f32>), DataError> {
        let path = dir.join(file);
        let (shape, v) = read_npy(&path, true)?;
        let s = match shape[..] {
            [_, h, w] => [1, h, w],
            [_, c, h, w] => [c, h, w],
            _ => {
                let msg = format!("images of shape {shape:?}: expected (N, H, W) or (N, C, H, W)");
                return Err(DataError::Parse { path, line: 0, msg });
            }
        };
        Ok((s, v.into_iter().map(|x| x as f32).collect()))
    };
    let labels = |file: &str| -> Result<Vec<u32>, DataError> {
        let path = dir.join(file);
        let (shape, v) = read_npy(&path, false)?;
        if shape.len() != 1 || v.iter().any(|&l| l < 0.0 || l.fract() != 0.0 || l > u32::MAX as f64) {
            let msg = "labels must be a 1-d array of non-negative integers".to_string();
            return Err(DataError::Parse { path, line: 0, msg });
        }
        Ok(v.into_iter().map(|l| l as u32).collect())
    };
    let (s1, xt) = images("x_train.npy")?;
    let (s2, xs) = images("x_test.npy")?;
    if s1 != s2 {
        let msg = format!("test images are {s2:?}, training images {s1:?}");
        return Err(DataError::Parse { path: dir.join("x_test.npy"), line: 0, msg });
    }
    from_arrays(name, &dir.display().to_string(), s1, xt, labels("y_train.npy")?, xs, labels("y_test.npy")?)
}

/// Write a `.npy` file (format 1.0, C order) of `shape` holding the raw little-endian `data`
/// of dtype `descr` (`<f4`, `<f8`, `|u1`, `<i8`, ...): what [`load_npy`] reads.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_and_csv_files_load_and_bad_ones_are_refused() {
        let d = std::env::temp_dir().join(format!("biolearn-arrays-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        // Two 2x2 uint8 images per split, labels as int64.
        write_npy(&d.join("x_train.npy"), "|u1", &[2, 2, 2], &[0, 255, 51, 102, 255, 0, 0, 0]).unwrap();
        write_npy(&d.join("x_test.npy"), "|u1", &[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let lab = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        write_npy(&d.join("y_train.npy"), "<i8", &[2], &lab(&[0, 2])).unwrap();
        write_npy(&d.join("y_test.npy"), "<i8", &[2], &lab(&[1, 0])).unwrap();
        let ds = load_npy("mine", &d).unwrap();
        assert_eq!((ds.channels, ds.height, ds.width, ds.num_classes), (1, 2, 2, 3));
        assert_eq!(ds.train.x[..4], [0.0, 1.0, 0.2, 0.4]);
        assert_eq!(ds.train.y, vec![0, 2]);
        write_npy(&d.join("y_test.npy"), "<i8", &[3], &lab(&[1, 0, 1])).unwrap();
        assert!(load_npy("mine", &d).unwrap_err().to_string().contains("3 labels"));
        std::fs::write(d.join("x_test.npy"), b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'").unwrap();
        assert!(load_npy("mine", &d).unwrap_err().to_string().contains("x_test.npy"));
        // CSV with a header line.
        std::fs::write(d.join("train.csv"), "label,a,b\n1,0.5,0.25\n0,1,0\n").unwrap();
        std::fs::write(d.join("test.csv"), "0,0,1\n").unwrap();
        let ds = load_csv("c", &d, [1, 1, 2]).unwrap();
        assert_eq!((ds.train.n, ds.test.n, ds.num_classes), (2, 1, 2));
        assert_eq!(ds.train.x, vec![0.5, 0.25, 1.0, 0.0]);
        std::fs::write(d.join("test.csv"), "0,0,1,2\n").unwrap();
        let e = load_csv("c", &d, [1, 1, 2]).unwrap_err().to_string();
        assert!(e.contains("test.csv") && e.contains("line 1"), "{e}");
        std::fs::write(d.join("test.csv"), "").unwrap();
        assert!(load_csv("c", &d, [1, 1, 2]).unwrap_err().to_string().contains("no samples"));
        std::fs::remove_dir_all(&d).ok();
    }
}
