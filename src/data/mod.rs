//! Image classification data sets, loaded into flat `f32` buffers.
//!
//! Every data set becomes a [`Dataset`] of two [`Split`]s (train and test).
//! A split holds `n` samples of `dim = channels * height * width` values,
//! sample after sample, each sample laid out `C x H x W` row-major, with
//! pixels scaled to `[0, 1]` (u8 formats by `/255`, UCI digits by `/16`), and
//! one `u32` label in `0..num_classes` per sample:
//!
//! ```text
//! x[(s * C + c) * H * W + row * W + col]   pixel (c, row, col) of sample s
//! y[s]                                    label of sample s
//! ```
//!
//! | name            | module      | C x H x W   | classes | train / test    | files                                    |
//! |-----------------|-------------|-------------|---------|-----------------|------------------------------------------|
//! | `digits`        | [`digits`]  | 1 x 8 x 8   | 10      | 1438 / 359      | embedded in the binary                   |
//! | `fashion-mnist` | [`idx`]     | 1 x 28 x 28 | 10      | 60000 / 10000   | IDX, raw or gzip                         |
//! | `mnist`         | [`idx`]     | 1 x 28 x 28 | 10      | 60000 / 10000   | IDX, raw or gzip                         |
//! | `cifar10`       | [`cifar`]   | 3 x 32 x 32 | 10      | 50000 / 10000   | CIFAR-10 binary batches                  |
//! | `cifar100`      | [`cifar`]   | 3 x 32 x 32 | 100     | 50000 / 10000   | CIFAR-100 binary (fine labels)           |
//! | `stl10`         | [`stl10`]   | 3 x 96 x 96 | 10      | 5000 / 8000     | STL-10 binary (unlabeled part not read)  |
//! | `devil`         | [`text`]    | 1 x 1 x 64 (token ids) | its bytes (64 targets per sample) | 5395 / 599 windows | The Devil's Dictionary, raw or gzip (`dict-devil`) |
//!
//! A text corpus is a sequence data set: each sample is T token ids (the `alphabet`'s indices)
//! with T targets, the next token at each position (`Split::targets`); it is not normalised.
//!
//! [`load`] finds the files (see its docs for the search order), checks them
//! and converts them; every failure is a [`DataError`] naming the file.
//! [`Dataset::normalize`] standardises per channel with train statistics and
//! [`Dataset::checksum`] fingerprints the loaded data.
//!
//! ```
//! use biolearn::data::{load, DataName};
//! let mut ds = load(DataName::Digits, None).unwrap();
//! assert_eq!((ds.train.n, ds.test.n, ds.dim()), (1438, 359, 64));
//! let (_means, _stds) = ds.normalize();
//! ```

mod error;

pub mod arrays;
pub mod cifar;
pub mod digits;
pub mod idx;
pub mod noise;
pub mod sampling;
pub mod stl10;
pub mod text;

pub use error::DataError;

use std::io::Read;
use std::path::{Path, PathBuf};

/// One part of a data set: `n` samples, each `dim` f32 values in `[0, 1]` laid
/// out C x H x W (row-major), sample after sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// `n * dim` pixel values.
    pub x: Vec<f32>,
    /// `n` labels in `0..num_classes`.
    pub y: Vec<u32>,
    pub n: usize,
    pub dim: usize,
}

impl Split {
    /// Labels per sample: 1 for classification, T for a sequence's next-token targets
    /// (`y` holds `n * targets()` labels, sample after sample).
    pub fn targets(&self) -> usize {
        if self.n == 0 {
            1
        } else {
            (self.y.len() / self.n).max(1)
        }
    }

    /// Builds a split from u8 pixels, scaling them by `/255` in one pass.
    pub(crate) fn from_u8(pixels: &[u8], y: Vec<u32>, dim: usize) -> Split {
        let x: Vec<f32> = pixels.iter().map(|&b| f32::from(b) / 255.0).collect();
        Split { n: y.len(), x, y, dim }
    }
}

/// A loaded data set: train and test splits plus their shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `DataName::as_str`: "digits", "fashion-mnist", ...
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    pub train: Split,
    pub test: Split,
    /// Where it was loaded from: a directory path, or "embedded".
    pub source: String,
    /// A token data set (`text`): the byte of every token id. Its inputs are ids, not pixels
    /// (never normalised).
    pub alphabet: Option<Vec<u8>>,
}

/// The data sets [`load`] knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataName {
    Digits,
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
    Stl10,
    Devil,
}

impl DataName {
    /// Every data set, in the order of the table in the module docs.
    pub const ALL: [DataName; 7] = [
        DataName::Digits,
        DataName::FashionMnist,
        DataName::Mnist,
        DataName::Cifar10,
        DataName::Cifar100,
        DataName::Stl10,
        DataName::Devil,
    ];

    /// The canonical name: "digits", "fashion-mnist", "mnist", "cifar10",
    /// "cifar100" or "stl10".
    pub fn as_str(&self) -> &'static str {
        match self {
            DataName::Digits => "digits",
            DataName::FashionMnist => "fashion-mnist",
            DataName::Mnist => "mnist",
            DataName::Cifar10 => "cifar10",
            DataName::Cifar100 => "cifar100",
            DataName::Stl10 => "stl10",
            DataName::Devil => "devil",
        }
    }
}

impl std::fmt::Display for DataName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DataName {
    type Err = String;

    /// Parses a canonical name; case, `-` and `_` are ignored, so
    /// "Fashion_MNIST" and "cifar-10" are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key =
            |t: &str| -> String { t.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_lowercase).collect() };
        let wanted = key(s);
        DataName::ALL.into_iter().find(|d| key(d.as_str()) == wanted).ok_or_else(|| {
            let valid: Vec<&str> = DataName::ALL.iter().map(|d| d.as_str()).collect();
            format!("unknown data set `{s}`; valid names are: {}", valid.join(", "))
        })
    }
}

/// Loads a data set.
///
/// `digits` is embedded in the binary and ignores `data_dir`; its split is
/// fixed: sample `i` (0-based line of the CSV) goes to TEST if `i % 5 == 4`,
/// else to TRAIN (1438 train / 359 test). See [`digits`].
///
/// The other data sets are read from files. The directories searched, in
/// order (the first one holding every file wins):
///
/// * with `data_dir = Some(D)`: `D`, `D/<name>`, and for `mnist` also
///   `D/MNIST/raw`, for `fashion-mnist` also `D/FashionMNIST/raw`
///   (torchvision's layouts);
/// * with `None`: for `fashion-mnist` first `/usr/share/datasets/fashion-mnist`
///   (where `apt-get install -y dataset-fashion-mnist` puts it), then
///   `./data/<name>` (and `./data/MNIST/raw`, `./data/FashionMNIST/raw`).
///
/// For CIFAR-10, CIFAR-100 and STL-10 each of these is also tried with the
/// archive's own folder appended (`cifar-10-batches-bin`, `cifar-100-binary`,
/// `stl10_binary`). The file names are given in each format's module.
/// [`Dataset::source`] is the directory used, or "embedded".
pub fn load(name: DataName, data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    match name {
        DataName::Digits => digits::load(),
        DataName::FashionMnist | DataName::Mnist => idx::load(name, data_dir),
        DataName::Cifar10 => cifar::load(cifar::Variant::Ten, data_dir),
        DataName::Cifar100 => cifar::load(cifar::Variant::Hundred, data_dir),
        DataName::Stl10 => stl10::load(data_dir),
        DataName::Devil => text::load_devil(data_dir).map(|mut d| {
            d.source = data_dir.map_or(text::DEVIL_FILE.into(), |p| p.display().to_string());
            d
        }),
    }
}

/// A loader for a data set registered from outside biolearn: given `--data-dir` (if any).
pub type Loader = dyn Fn(Option<&Path>) -> Result<Dataset, DataError> + Send + Sync;

/// Data sets registered at run time ([`register`]).
static EXTRA: std::sync::RwLock<Vec<(String, std::sync::Arc<Loader>)>> = std::sync::RwLock::new(Vec::new());

/// Make a data set known by `name` (for `--data NAME`, plans and `biolearn data info`), loaded
/// by `loader` (e.g. [`arrays::load_npy`] or [`arrays::load_csv`] on its directory). Fails if
/// the name is a built-in one or already registered.
pub fn register(
    name: &str,
    loader: impl Fn(Option<&Path>) -> Result<Dataset, DataError> + Send + Sync + 'static,
) -> Result<(), String> {
    if name.parse::<DataName>().is_ok() || registered(name).is_some() {
        return Err(format!("data set '{name}' is already known"));
    }
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '|' || c == ',') {
        return Err(format!("data set name '{name}': one word, no commas or '|'"));
    }
    EXTRA.write().unwrap_or_else(|p| p.into_inner()).push((name.to_string(), std::sync::Arc::new(loader)));
    Ok(())
}

fn registered(name: &str) -> Option<std::sync::Arc<Loader>> {
    EXTRA.read().unwrap_or_else(|p| p.into_inner()).iter().find(|(n, _)| n == name).map(|(_, l)| l.clone())
}

/// Whether `name` is a built-in or registered data set (the error lists the known ones).
pub fn check_name(name: &str) -> Result<(), String> {
    if registered(name).is_some() {
        return Ok(());
    }
    name.parse::<DataName>().map(|_| ()).map_err(|e| {
        let extra: Vec<String> =
            EXTRA.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(n, _)| n.clone()).collect();
        if extra.is_empty() {
            e
        } else {
            format!("{e}, {}", extra.join(", "))
        }
    })
}

/// Load a built-in data set by name ([`load`]) or a registered one ([`register`]).
pub fn load_by_name(name: &str, data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    let ds = if let Some(l) = registered(name) {
        l(data_dir)?
    } else {
        match name.parse::<DataName>() {
            Ok(DataName::Digits) if data_dir.is_some() => {
                return Err(DataError::Invalid {
                    path: data_dir.unwrap_or(Path::new("")).into(),
                    msg: "--data digits is embedded in biolearn: a data directory does not apply to it".into(),
                })
            }
            Ok(n) => load(n, data_dir)?,
            Err(e) => return Err(DataError::Parse { path: name.into(), line: 0, msg: e }),
        }
    };
    // A data set that cannot train or test anything is an error, not a run with a figure.
    let empty = |what: &str| DataError::Invalid {
        path: data_dir.map_or_else(|| name.into(), Path::to_path_buf),
        msg: format!("data set '{name}' has {what}"),
    };
    if ds.dim() == 0 {
        return Err(empty("samples of size 0 (0x0 pixels or 0 channels)"));
    }
    if ds.train.n == 0 {
        return Err(empty("no training samples"));
    }
    if ds.test.n == 0 {
        return Err(empty("no test samples"));
    }
    if ds.num_classes < 2 {
        return Err(empty("fewer than 2 classes"));
    }
    Ok(ds)
}

impl Dataset {
    /// `channels * height * width`, the length of one sample.
    pub fn dim(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// An error about this data set (its source named).
    fn invalid(&self, msg: String) -> DataError {
        DataError::Invalid { path: self.source.clone().into(), msg }
    }

    /// Refuses a text data set (`text`: what needs images) and a pixel value outside [0, 1]
    /// (`range`: what needs 8-bit images scaled to [0, 1]), naming the data set, the split and
    /// the value.
    fn check_pixels(&self, text: &str, range: &str) -> Result<(), DataError> {
        if self.alphabet.is_some() {
            return Err(self.invalid(format!("{} is a text data set: {text}", self.name)));
        }
        for (which, split) in [("train", &self.train), ("test", &self.test)] {
            if let Some(v) = split.x.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                return Err(self.invalid(format!("{}'s {which} split has the value {v}: {range}", self.name)));
            }
        }
        Ok(())
    }

    /// Resize every image to `h x w` as torchvision's `Resize` does on a PIL image: each channel
    /// as 8-bit pixels (values in [0, 1] times 255, rounded), PIL's bilinear resampling (a
    /// triangle filter of support 1, widened by the shrink factor when shrinking, pixel centres
    /// aligned, coefficients normalised and held in 22-bit fixed point), one pass along rows and
    /// one along columns, each rounded back to bytes, the pass whose intermediate image is
    /// smaller first (rows first on a tie, as PIL 13 does); then / 255 as `ToTensor`. A text
    /// data set, or a value outside [0, 1], is an error naming the data set.
    pub fn resize(&mut self, h: usize, w: usize) -> Result<(), DataError> {
        if h == 0 || w == 0 {
            return Err(self.invalid(format!("{}: cannot resize to {h} x {w}", self.name)));
        }
        self.check_pixels("resize applies to images", "resizing reads 8-bit images, values in [0, 1]")?;
        let (c, ih, iw) = (self.channels, self.height, self.width);
        let (cols, rows) = (pil_coefficients(iw, w), pil_coefficients(ih, h));
        let rows_first = h * iw >= ih * w;
        let mut mid = vec![0u8; if rows_first { ih * w } else { h * iw }];
        let mut plane = vec![0u8; ih * iw];
        let mut done = vec![0u8; h * w];
        for split in [&mut self.train, &mut self.test] {
            let mut out = Vec::with_capacity(split.n * c * h * w);
            for img in split.x.chunks(c * ih * iw) {
                for ch in img.chunks(ih * iw) {
                    for (b, v) in plane.iter_mut().zip(ch) {
                        *b = (v * crate::picture::PIXEL_LEVELS).round() as u8;
                    }
                    if rows_first {
                        for y in 0..ih {
                            pil_pass(&plane[y * iw..], 1, &cols, &mut mid[y * w..], 1);
                        }
                        for x in 0..w {
                            pil_pass(&mid[x..], w, &rows, &mut done[x..], w);
                        }
                    } else {
                        for x in 0..iw {
                            pil_pass(&plane[x..], iw, &rows, &mut mid[x..], iw);
                        }
                        for y in 0..h {
                            pil_pass(&mid[y * iw..], 1, &cols, &mut done[y * w..], 1);
                        }
                    }
                    out.extend(done.iter().map(|&b| f32::from(b) / crate::picture::PIXEL_LEVELS));
                }
            }
            split.x = out;
            split.dim = c * h * w;
        }
        (self.height, self.width) = (h, w);
        Ok(())
    }

    /// Makes an autoencoder's data set (a VAE reconstructs its input): every sample's targets
    /// become its own pixels, one per input value, as intensity levels y = round(255 x) of the
    /// pixels in [0, 1] (`Loss::Bernoulli` reads t = y / 255; exact for 8-bit images); the
    /// classes become the 256 levels. Call it before `normalize` (the inputs stay as they are).
    /// A value outside [0, 1] is an error naming the data set.
    pub fn autoencoding(&mut self) -> Result<(), DataError> {
        self.check_pixels("a VAE models pixels", "a VAE's Bernoulli pixels need inputs in [0, 1]")?;
        for split in [&mut self.train, &mut self.test] {
            split.y = split.x.iter().map(|v| (v * crate::picture::PIXEL_LEVELS).round() as u32).collect();
        }
        self.num_classes = crate::picture::PIXEL_LEVELS as usize + 1;
        Ok(())
    }

    /// Per-channel mean/std from the TRAIN split; applies `(x - mean) / std`
    /// to train and test; returns `(means, stds)`, one entry per channel.
    ///
    /// The std is the population one (divide by the count). A channel that is
    /// constant over the train split (std below `1e-12`) gets std 1, so it is
    /// only centred. Sums are accumulated in f64.
    pub fn normalize(&mut self) -> (Vec<f32>, Vec<f32>) {
        let c = self.channels;
        let plane = self.height * self.width;
        let mut sum = vec![0f64; c];
        let mut sum_sq = vec![0f64; c];
        for sample in self.train.x.chunks_exact(self.train.dim.max(1)) {
            for (ch, values) in sample.chunks_exact(plane.max(1)).take(c).enumerate() {
                for &v in values {
                    let v = f64::from(v);
                    sum[ch] += v;
                    sum_sq[ch] += v * v;
                }
            }
        }
        let count = (self.train.n * plane) as f64;
        let mut means = Vec::with_capacity(c);
        let mut stds = Vec::with_capacity(c);
        for ch in 0..c {
            let (mean, std) = if count > 0.0 {
                let mean = sum[ch] / count;
                let var = (sum_sq[ch] / count - mean * mean).max(0.0);
                (mean, var.sqrt())
            } else {
                (0.0, 1.0)
            };
            means.push(mean as f32);
            stds.push(if std < 1e-12 { 1.0 } else { std as f32 });
        }
        for split in [&mut self.train, &mut self.test] {
            for sample in split.x.chunks_exact_mut(split.dim.max(1)) {
                for (ch, values) in sample.chunks_exact_mut(plane.max(1)).take(c).enumerate() {
                    let (m, inv) = (means[ch], 1.0 / stds[ch]);
                    for v in values {
                        *v = (*v - m) * inv;
                    }
                }
            }
        }
        (means, stds)
    }

    /// 16-hex-digit FNV-1a 64 over the train pixels, train labels, test
    /// pixels and test labels, in that order; pixels as the little-endian
    /// bytes of their f32 bit patterns, labels as little-endian u32. It hashes
    /// whatever `x` holds now: call it before [`Dataset::normalize`] to
    /// fingerprint the raw data.
    pub fn checksum(&self) -> String {
        let mut h = crate::hash::OFFSET;
        for split in [&self.train, &self.test] {
            h = crate::hash::bytes(h, split.x.iter().flat_map(|v| v.to_bits().to_le_bytes()));
            h = crate::hash::bytes(h, split.y.iter().flat_map(|y| y.to_le_bytes()));
        }
        format!("{h:016x}")
    }

    /// How many samples of each class `split` holds; the vector has
    /// `num_classes` entries (more if a label is out of range, never panics).
    pub fn class_counts(&self, split: &Split) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes];
        for &y in &split.y {
            let y = y as usize;
            if y >= counts.len() {
                counts.resize(y + 1, 0);
            }
            counts[y] += 1;
        }
        counts
    }
}

/// Reads a file (raw or gzip, by its magic bytes) without reading more than it declares: the
/// first `header` bytes, then at most `declared(header bytes)` bytes in all (what the format's
/// header says the file holds, or a fixed bound for formats without one). A declared size past
/// the memory cap (`BIOLEARN_MAX_MEMORY_GB`) is an error before anything more is read; bytes
/// after the declared size are not read (a gzip that inflates past it is not inflated).
pub(crate) fn read_file_bounded(
    path: &Path,
    header: usize,
    declared: impl Fn(&[u8]) -> Result<u128, DataError>,
) -> Result<Vec<u8>, DataError> {
    use std::io::BufRead;
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    if f.metadata().map_err(io)?.is_dir() {
        return Err(DataError::Invalid { path: path.to_path_buf(), msg: "is a directory, not a data file".into() });
    }
    let mut raw = std::io::BufReader::new(f);
    let gz = raw.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    let mut r: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(raw)) } else { Box::new(raw) };
    let bad = |source: std::io::Error| {
        if gz {
            DataError::BadGzip { path: path.to_path_buf(), source }
        } else {
            DataError::Io { path: path.to_path_buf(), source }
        }
    };
    let mut out = Vec::new();
    (&mut r).take(header as u64).read_to_end(&mut out).map_err(bad)?;
    if out.len() < header {
        return Ok(out);
    }
    let total = declared(&out)?;
    let cap = crate::limits::memory_cap();
    if total as f64 > cap {
        return Err(DataError::Invalid {
            path: path.to_path_buf(),
            msg: format!(
                "declares {total} bytes of data, more than the memory cap of {:.1} GiB (BIOLEARN_MAX_MEMORY_GB)",
                cap / (1u64 << 30) as f64
            ),
        });
    }
    let rest = (total as u64).saturating_sub(header as u64);
    (&mut r).take(rest).read_to_end(&mut out).map_err(bad)?;
    // All its header declares was there: the file must end here (a gzip's trailer is read and
    // its checksum checked; more data is refused, not inflated). Without a header (`header`
    // 0) the size is a bound, checked by `read_file_at_most`.
    if header > 0 && out.len() as u128 == total {
        let mut one = [0u8; 1];
        if r.read(&mut one).map_err(bad)? > 0 {
            return Err(DataError::Invalid {
                path: path.to_path_buf(),
                msg: format!("holds more data than the {total} bytes its header declares"),
            });
        }
    }
    Ok(out)
}

/// A file of a format without a header (CIFAR, STL-10) of at most `max` bytes: reads up to
/// `max` + 1 and refuses a larger one (`what` says what the bound is).
pub(crate) fn read_file_at_most(path: &Path, max: usize, what: &str) -> Result<Vec<u8>, DataError> {
    let bytes = read_file_bounded(path, 0, |_| Ok(max as u128 + 1))?;
    if bytes.len() > max {
        return Err(DataError::Invalid { path: path.to_path_buf(), msg: format!("larger than {what} ({max} bytes)") });
    }
    Ok(bytes)
}

/// Decompresses a whole gzip stream (all members); `path` names it in errors.
pub(crate) fn gunzip(raw: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    // The gzip trailer's ISIZE (last 4 bytes, LE) is the decompressed size mod
    // 2^32: a good capacity hint for one-member files. Capped so a corrupt
    // trailer cannot ask for an absurd allocation.
    let hint = match raw.len() {
        len if len >= 18 => {
            let t = &raw[len - 4..];
            u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize
        }
        _ => 0,
    };
    let mut out = Vec::with_capacity(hint.min(raw.len().saturating_mul(64)).min(1 << 31));
    flate2::read::MultiGzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|source| DataError::BadGzip { path: path.to_path_buf(), source })?;
    Ok(out)
}

/// Checks a label as stored in `path` (valid: `first..first + num_classes`)
/// and returns it shifted to `0..num_classes`.
pub(crate) fn check_label(
    path: &Path,
    index: usize,
    label: u32,
    first: u32,
    num_classes: usize,
) -> Result<u32, DataError> {
    match label.checked_sub(first) {
        Some(y) if (y as usize) < num_classes => Ok(y),
        _ => Err(DataError::LabelOutOfRange { path: path.to_path_buf(), index, label, first, num_classes }),
    }
}

/// Reads the big-endian u32 at `offset` (caller checks the length).
pub(crate) fn be_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}

/// Finds the first candidate directory that holds every required file.
///
/// `required` lists, per file, the names it may have (e.g. raw then `.gz`);
/// the first that exists is used. `subdir` is the archive's own folder, tried
/// under every candidate. Returns the directory and one path per required
/// file, or `NotFound` listing every directory and why it did not do.
pub(crate) fn find_files(
    name: DataName,
    data_dir: Option<&Path>,
    subdir: Option<&str>,
    required: &[&[&str]],
) -> Result<(PathBuf, Vec<PathBuf>), DataError> {
    let mut bases: Vec<PathBuf> = Vec::new();
    let torchvision = match name {
        DataName::Mnist => Some("MNIST"),
        DataName::FashionMnist => Some("FashionMNIST"),
        _ => None,
    };
    let root = match data_dir {
        Some(d) => {
            bases.push(d.to_path_buf());
            d.to_path_buf()
        }
        None => {
            if name == DataName::FashionMnist {
                bases.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
            }
            PathBuf::from("./data")
        }
    };
    bases.push(root.join(name.as_str()));
    if let Some(t) = torchvision {
        bases.push(root.join(t).join("raw"));
    }
    let mut dirs = Vec::new();
    for b in bases {
        let sub = subdir.map(|s| b.join(s));
        dirs.push(b);
        dirs.extend(sub);
    }

    let mut searched = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            searched.push(format!("{} (no such directory)", dir.display()));
            continue;
        }
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for names in required {
            match names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
                Some(p) => found.push(p),
                None => {
                    let shown = match names {
                        [raw, gz] if *gz == format!("{raw}.gz") => format!("{raw}[.gz]"),
                        _ => names.join(" or "),
                    };
                    // A directory where the file should be is said so, not called missing.
                    match names.iter().find(|n| dir.join(n).is_dir()) {
                        Some(n) => missing.push(format!("{shown}: {n} is a directory, not a file")),
                        None => missing.push(shown),
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok((dir, found));
        }
        searched.push(format!("{} (missing {})", dir.display(), missing.join(", ")));
    }
    let hint = match name {
        DataName::FashionMnist => "run `apt-get install -y dataset-fashion-mnist` (installs it in \
             /usr/share/datasets/fashion-mnist), or pass --data-dir DIR"
            .to_string(),
        _ => format!("pass --data-dir DIR with DIR holding the {name} files"),
    };
    Err(DataError::NotFound { name: name.as_str().to_string(), searched, hint })
}

/// A fresh, empty directory under the system temp dir, removed on drop.
#[cfg(test)]
pub(crate) struct TempDir(pub PathBuf);

#[cfg(test)]
impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("biolearn-data-test-{}-{tag}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `bytes` to `name` inside the directory (creating subfolders).
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create subdir");
        }
        std::fs::write(&p, bytes).expect("write test file");
        p
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Gzips `bytes` (for tests).
#[cfg(test)]
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// PIL's resampling coefficients (`Resample.c`, `precompute_coeffs` and
/// `normalize_coeffs_8bpc`) for the bilinear filter from `inp` to `out` pixels: for each output
/// pixel its first input pixel and its weights in 22-bit fixed point.
fn pil_coefficients(inp: usize, out: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = inp as f64 / out as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support, 1, times the filter scale
    (0..out)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64) as usize).min(inp);
            let k: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) / filterscale).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let sum: f64 = k.iter().sum();
            let fixed = k
                .iter()
                .map(|&v| {
                    let v = if sum != 0.0 { v / sum } else { v };
                    let f = v * f64::from(1u32 << PIL_PRECISION);
                    (if f < 0.0 { f - 0.5 } else { f + 0.5 }) as i64
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

const PIL_PRECISION: u32 = 22;

/// One resampling pass of PIL's over a line of bytes `src` (stride `ss`) into `dst` (stride
/// `ds`), rounded and clipped to a byte as PIL's `clip8`.
fn pil_pass(src: &[u8], ss: usize, coeffs: &[(usize, Vec<i64>)], dst: &mut [u8], ds: usize) {
    for (i, (xmin, k)) in coeffs.iter().enumerate() {
        let mut acc: i64 = 1 << (PIL_PRECISION - 1);
        for (j, &kk) in k.iter().enumerate() {
            acc += i64::from(src[(xmin + j) * ss]) * kk;
        }
        dst[i * ds] = (acc >> PIL_PRECISION).clamp(0, 255) as u8;
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        // 2 channels of 1x2, 3 train samples, 1 test sample.
        Dataset {
            alphabet: None,
            name: "tiny".into(),
            channels: 2,
            height: 1,
            width: 2,
            num_classes: 3,
            train: Split {
                x: vec![
                    0.0, 1.0, 10.0, 10.0, //
                    2.0, 3.0, 10.0, 10.0, //
                    4.0, 5.0, 10.0, 10.0,
                ],
                y: vec![0, 2, 2],
                n: 3,
                dim: 4,
            },
            test: Split { x: vec![2.5, 2.5, 11.0, 9.0], y: vec![1], n: 1, dim: 4 },
            source: "test".into(),
        }
    }

    /// `resize` against PIL 13's `Image.resize(..., BILINEAR)` on 8-bit images of a fixed
    /// pattern (the bytes' FNV-1a hash, their sum and first values, computed with PIL), growing
    /// (BioTorch's 28 -> 32), shrinking (28 -> 14, the filter widened) and mixed (5 x 7 -> 3 x 9);
    /// 2 x 2 -> 4 x 4 by hand; two channels resized alike; text and out-of-range values refused.
    #[test]
    fn resize_matches_pils_bilinear_resampling() {
        let pat = |h: usize, w: usize| -> Vec<f32> {
            (0..h * w).map(|k| ((k / w * 37 + k % w * 91 + (k / w * (k % w)) % 17 * 11) % 256) as f32 / 255.0).collect()
        };
        let image = |c: usize, h: usize, w: usize, x: Vec<f32>| Dataset {
            alphabet: None,
            name: "pattern".into(),
            channels: c,
            height: h,
            width: w,
            num_classes: 2,
            train: Split { dim: x.len(), x: x.clone(), y: vec![0], n: 1 },
            test: Split { dim: x.len(), x, y: vec![1], n: 1 },
            source: "test".into(),
        };
        let bytes = |d: &Dataset| -> Vec<u8> { d.test.x.iter().map(|v| (v * 255.0).round() as u8).collect() };
        let fnv = |b: &[u8]| {
            b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &v| (h ^ u64::from(v)).wrapping_mul(0x100_0000_01b3))
        };
        for (ih, iw, oh, ow, sum, hash, first) in [
            (28, 28, 32, 32, 131257u64, 0x7d47_24dd_8c97_ddd0u64, [0u8, 74, 154, 89, 57, 136, 168, 40]),
            (28, 28, 14, 14, 25193, 0xe7bc_221c_ce98_e45e, [92, 128, 115, 139, 140, 142, 152, 135]),
            (2, 2, 4, 4, 1071, 0x5abe_c0fb_cf1e_b060, [0, 23, 68, 91, 9, 33, 80, 103]),
            (5, 7, 3, 9, 3223, 0xcf1c_e611_b98d_7c92, [16, 80, 154, 171, 47, 122, 135, 112]),
        ] {
            let mut d = image(1, ih, iw, pat(ih, iw));
            d.resize(oh, ow).unwrap();
            let b = bytes(&d);
            assert_eq!((d.height, d.width, d.test.dim, b.len()), (oh, ow, oh * ow, oh * ow));
            assert_eq!(b[..8], first, "{ih}x{iw} -> {oh}x{ow}");
            assert_eq!(b.iter().map(|&v| u64::from(v)).sum::<u64>(), sum);
            assert_eq!(fnv(&b), hash, "{ih}x{iw} -> {oh}x{ow}");
            assert_eq!(d.train.x, d.test.x);
        }
        // By hand: a row [0, 200] grows to [0, 50, 150, 200] (weights 3/4 and 1/4 between the
        // pixel centres), and so does every column.
        let mut d = image(1, 2, 2, vec![0.0, 200.0 / 255.0, 0.0, 200.0 / 255.0]);
        d.resize(4, 4).unwrap();
        assert_eq!(bytes(&d)[..4], [0, 50, 150, 200]);
        // Two channels: each as it would be alone.
        let two: Vec<f32> = pat(28, 28).into_iter().chain(pat(28, 28).into_iter().rev()).collect();
        let mut d = image(2, 28, 28, two);
        d.resize(32, 32).unwrap();
        let mut alone = image(1, 28, 28, pat(28, 28));
        alone.resize(32, 32).unwrap();
        assert_eq!(d.test.x[..1024], alone.test.x[..]);
        let mut d = image(1, 2, 2, vec![0.0, 1.5, 0.0, 0.0]);
        assert!(d.resize(4, 4).unwrap_err().to_string().contains("value 1.5"));
        let mut t = image(1, 2, 2, vec![0.0; 4]);
        t.alphabet = Some(vec![b'a']);
        assert!(t.resize(4, 4).unwrap_err().to_string().contains("text data set"));
    }

    #[test]
    fn names_round_trip_and_errors_list_valid_names() {
        for d in DataName::ALL {
            assert_eq!(d.as_str().parse::<DataName>(), Ok(d));
            assert_eq!(d.to_string(), d.as_str());
        }
        assert_eq!("Fashion_MNIST".parse(), Ok(DataName::FashionMnist));
        assert_eq!("cifar-10".parse(), Ok(DataName::Cifar10));
        let err = "imagenet".parse::<DataName>().unwrap_err();
        assert!(err.contains("imagenet"), "{err}");
        for d in DataName::ALL {
            assert!(err.contains(d.as_str()), "{err}");
        }
    }

    #[test]
    fn autoencoding_targets_are_the_pixels_and_values_outside_the_unit_range_are_refused() {
        let mut ds = tiny();
        let err = ds.clone().autoencoding().unwrap_err().to_string();
        assert!(err.contains("tiny's train split has the value 10") && err.contains("[0, 1]"), "{err}");
        for split in [&mut ds.train, &mut ds.test] {
            split.x.iter_mut().for_each(|v| *v /= 20.0);
        }
        ds.autoencoding().unwrap();
        // 0.25 * 255 = 63.75 -> 64; every pixel its own target, 4 per sample.
        assert_eq!(ds.num_classes, 256);
        assert_eq!(ds.train.targets(), 4);
        assert_eq!(ds.train.y[..4], [0, 13, 128, 128]);
        assert_eq!(ds.test.y, [32, 32, 140, 115]);
    }

    #[test]
    fn normalize_uses_train_stats_per_channel() {
        let mut ds = tiny();
        let (means, stds) = ds.normalize();
        // Channel 0 train values 0..=5: mean 2.5, population var 35/12.
        assert_eq!(means, vec![2.5, 10.0]);
        assert!((stds[0] - (35.0f32 / 12.0).sqrt()).abs() < 1e-6);
        // Channel 1 is constant: std forced to 1, values only centred.
        assert_eq!(stds[1], 1.0);
        // Train channel 0 now has mean 0 and std 1.
        let ch0: Vec<f32> = ds.train.x.chunks(4).flat_map(|s| s[..2].to_vec()).collect();
        let mean = ch0.iter().sum::<f32>() / 6.0;
        let var = ch0.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 6.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{mean} {var}");
        // Test split uses the TRAIN statistics.
        assert_eq!(ds.test.x[0], 0.0);
        assert_eq!(ds.test.x[2], 1.0);
        assert_eq!(ds.test.x[3], -1.0);
    }

    #[test]
    fn checksum_is_stable_and_sensitive() {
        let a = tiny();
        let c = a.checksum();
        assert_eq!(c.len(), 16);
        assert!(c.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_eq!(c, tiny().checksum());
        let mut b = tiny();
        b.test.x[1] = 2.5000002;
        assert_ne!(b.checksum(), c);
        let mut b = tiny();
        b.train.y[0] = 1;
        assert_ne!(b.checksum(), c);
        // FNV-1a 64 of no bytes is the offset basis.
        let mut e = tiny();
        e.train = Split { x: vec![], y: vec![], n: 0, dim: 4 };
        e.test = e.train.clone();
        assert_eq!(e.checksum(), "cbf29ce484222325");
    }

    #[test]
    fn class_counts_counts_labels() {
        let ds = tiny();
        assert_eq!(ds.class_counts(&ds.train), vec![1, 0, 2]);
        assert_eq!(ds.class_counts(&ds.test), vec![0, 1, 0]);
        assert_eq!(ds.dim(), 4);
    }

    #[test]
    fn read_file_detects_gzip_by_magic_not_name() {
        let t = TempDir::new("readfile");
        let data = b"hello IDX".to_vec();
        let p = t.write("plain.gz", &data); // .gz name, raw content
        let read = |p: &Path| read_file_at_most(p, 100, "the test's bound");
        assert_eq!(read(&p).unwrap(), data);
        let p = t.write("packed.bin", &gzip(&data)); // gzip content, odd name
        assert_eq!(read(&p).unwrap(), data);
        let missing = t.0.join("nope");
        let err = read(&missing).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&*missing.to_string_lossy()), "{err}");
        // A directory is named as one; past the bound is an error, and a gzip that inflates
        // past what is declared is not inflated further (a 1 MB bomb of zeros stays bounded).
        assert!(read(&t.0).unwrap_err().to_string().contains("is a directory"));
        let p = t.write("big.gz", &gzip(&[0u8; 1000]));
        assert!(read(&p).unwrap_err().to_string().contains("larger than the test's bound (100 bytes)"));
        let bomb = gzip(&vec![0u8; 1 << 26]);
        let p = t.write("bomb.gz", &bomb);
        let err = read_file_bounded(&p, 4, |_| Ok(1000)).unwrap_err(); // 64 MiB of zeros
        assert!(err.to_string().contains("more data than the 1000 bytes"), "{err}");
        let err = read_file_bounded(&p, 4, |_| Ok(u128::MAX)).unwrap_err();
        assert!(err.to_string().contains("more than the memory cap"), "{err}");
    }

    #[test]
    fn not_found_lists_every_directory_and_hint() {
        let t = TempDir::new("notfound");
        let err = load(DataName::Cifar10, Some(&t.0)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
        assert!(msg.contains(&*t.0.to_string_lossy()), "{msg}");
        assert!(msg.contains("cifar-10-batches-bin"), "{msg}");
        assert!(msg.contains(&*t.0.join("cifar10").to_string_lossy()), "{msg}");
        assert!(msg.contains("--data-dir"), "{msg}");
        let err = load(DataName::FashionMnist, Some(&t.0.join("absent"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("apt-get install -y dataset-fashion-mnist"), "{msg}");
        assert!(msg.contains("absent (no such directory)"), "{msg}");
    }
}
