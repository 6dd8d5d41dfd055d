//! Errors raised while finding, reading and decoding data set files.
//!
//! Every variant names the file (or, for [`DataError::NotFound`], every path
//! searched) and says what is wrong in plain words, so that a message such as
//!
//! ```text
//! /x/train-images-idx3-ubyte: wrong magic number 0x00000801 (expected 0x00000803, an IDX image file)
//! ```
//!
//! is enough to fix the problem without reading the source. Loaders never
//! panic on bad input: they return one of these.

use std::path::PathBuf;

/// Why a data set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No searched directory held all of the data set's files.
    #[error("data set `{name}` not found; searched: {}; hint: {hint}", searched.join("; "))]
    NotFound {
        /// The data set's name (`DataName::as_str`).
        name: String,
        /// Each directory looked in, with why it did not do (e.g.
        /// `"/data/mnist (no such directory)"`).
        searched: Vec<String>,
        /// What the user can do about it.
        hint: String,
    },

    /// The data set (or the directory given for it) cannot be used as asked.
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },

    /// The operating system refused to read a file.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file does not start with the magic number of the expected format.
    #[error("{}: wrong magic number {found:#010x} (expected {expected:#010x}, {what})", path.display())]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        /// What the expected magic number stands for, e.g. "an IDX image file".
        what: &'static str,
    },

    /// The file is shorter than its header (or its format) says it must be.
    /// For gzip files, the sizes are those of the decompressed data.
    #[error("{}: truncated: expected {expected} bytes ({what}), found {actual}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
        /// What the expected size covers, e.g. "16-byte header + 3 images of 28x28".
        what: String,
    },

    /// An images file and its labels file disagree on the number of samples.
    #[error(
        "count mismatch: {} holds {n_images} images but {} holds {n_labels} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch { images: PathBuf, n_images: usize, labels: PathBuf, n_labels: usize },

    /// A label is outside the data set's classes.
    #[error(
        "{}: record {index} has label {label}, outside the valid labels {first}..={} ({num_classes} classes)",
        path.display(),
        (*first as usize + num_classes).saturating_sub(1)
    )]
    LabelOutOfRange {
        path: PathBuf,
        /// 0-based index of the record (sample) in the file.
        index: usize,
        /// The label as stored in the file.
        label: u32,
        /// The smallest valid label as stored in the file (0, or 1 for STL-10).
        first: u32,
        num_classes: usize,
    },

    /// A file's images have another shape than those of the train file.
    #[error(
        "{}: images are {}x{} but the train images are {}x{}",
        path.display(), found.0, found.1, expected.0, expected.1
    )]
    ShapeMismatch {
        path: PathBuf,
        /// (rows, cols) of the train images.
        expected: (usize, usize),
        /// (rows, cols) found in this file.
        found: (usize, usize),
    },

    /// A headerless file whose length is not a whole number of records.
    #[error(
        "{}: file length {len} bytes is not a multiple of the {record}-byte record size ({what})",
        path.display()
    )]
    BadSize {
        path: PathBuf,
        len: u64,
        record: u64,
        /// What one record is, e.g. "1 label byte + 3072 pixel bytes".
        what: &'static str,
    },

    /// A text (CSV) file has a malformed line. `line` is 1-based.
    #[error("{}: line {line}: {msg}", path.display())]
    Parse { path: PathBuf, line: usize, msg: String },

    /// The file starts with the gzip magic bytes but does not decompress
    /// (corrupt or truncated stream).
    #[error("{}: corrupt or truncated gzip stream: {source}", path.display())]
    BadGzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
