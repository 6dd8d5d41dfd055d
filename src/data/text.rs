//! Text corpora as byte-level token sequences, for language models (`--arch gpt:...`).
//!
//! A corpus is one file, raw or gzip-compressed (dictzip's `.dz` is gzip); its bytes are the
//! tokens. The vocabulary is the sorted set of distinct bytes in the whole file (token id i is
//! `alphabet[i]`, so `num_classes` is the alphabet's size). The file is split where it stands:
//! the first 90% of its bytes train, the last 10% test (no window crosses the cut). A sample is
//! a window of T + 1 bytes read at stride T: its input is the first T tokens, its T targets the
//! next token at every position (`Split::targets` = T), so every byte of a region but the last
//! is predicted once per epoch. A validation split, when a run asks for one, is a random set of
//! training windows (`sampling::split_validation`).
//!
//! | name    | corpus | T | vocabulary | train / test windows |
//! |---|---|---|---|---|
//! | `devil` | Ambrose Bierce, *The Devil's Dictionary* (1911, public domain): `apt-get install dict-devil` puts it at `/usr/share/dictd/devil.dict.dz` (383656 bytes) | 64 | its distinct bytes | 5395 / 599 |
//!
//! `--data-dir` for `devil` is the file itself or a directory holding `devil.dict.dz` (or
//! `devil.dict`, or `devil.txt`). [`load_file`] builds the same from any text file.

use super::{read_file_at_most, DataError, Dataset, Split};
use std::path::{Path, PathBuf};

/// The context length of the named corpora.
pub const CONTEXT: usize = 64;

/// Where Debian's `dict-devil` installs The Devil's Dictionary.
pub const DEVIL_FILE: &str = "/usr/share/dictd/devil.dict.dz";

/// The share of a corpus's bytes that trains (the rest tests).
pub const TRAIN_SHARE: f64 = 0.9;

/// The largest corpus read (bytes, decompressed).
const MAX_BYTES: usize = 1 << 30;

/// `devil`: The Devil's Dictionary from `data_dir` (a file, or a directory holding it) or where
/// `dict-devil` installs it.
pub fn load_devil(data_dir: Option<&Path>) -> Result<Dataset, DataError> {
    let names = ["devil.dict.dz", "devil.dict", "devil.txt"];
    let candidates: Vec<PathBuf> = match data_dir {
        Some(d) if d.is_file() => vec![d.to_path_buf()],
        Some(d) => names.iter().map(|n| d.join(n)).collect(),
        None => vec![PathBuf::from(DEVIL_FILE)],
    };
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => load_file(p, "devil", CONTEXT),
        None => Err(DataError::NotFound {
            name: "devil".into(),
            searched: candidates.iter().map(|p| format!("{} (no such file)", p.display())).collect(),
            hint: "apt-get install -y dict-devil (or give --data-dir the text file)".into(),
        }),
    }
}

/// A byte-level language-modelling data set of context `ctx` from the text file `path`.
pub fn load_file(path: &Path, name: &str, ctx: usize) -> Result<Dataset, DataError> {
    let bytes = read_file_at_most(path, MAX_BYTES, "the largest corpus read")?;
    from_bytes(&bytes, name, ctx).map_err(|msg| DataError::Invalid { path: path.to_path_buf(), msg })
}

/// [`load_file`] on bytes already read.
pub fn from_bytes(bytes: &[u8], name: &str, ctx: usize) -> Result<Dataset, String> {
    if ctx == 0 {
        return Err("a context of 0 tokens".into());
    }
    let mut seen = [false; 256];
    bytes.iter().for_each(|&b| seen[b as usize] = true);
    let alphabet: Vec<u8> = (0..=255u8).filter(|&b| seen[b as usize]).collect();
    if alphabet.len() < 2 {
        return Err(format!("{} distinct bytes: nothing to predict", alphabet.len()));
    }
    let mut id = [0u32; 256];
    for (i, &b) in alphabet.iter().enumerate() {
        id[b as usize] = i as u32;
    }
    let ids: Vec<u32> = bytes.iter().map(|&b| id[b as usize]).collect();
    let cut = (bytes.len() as f64 * TRAIN_SHARE) as usize;
    let train = windows(&ids[..cut], ctx);
    let test = windows(&ids[cut..], ctx);
    if train.n == 0 || test.n == 0 {
        return Err(format!(
            "{} bytes: too short for one window of {} bytes in both the training ({:.0}%) and the test part",
            bytes.len(),
            ctx + 1,
            TRAIN_SHARE * 100.0
        ));
    }
    Ok(Dataset {
        alphabet: Some(alphabet.clone()),
        name: name.into(),
        channels: 1,
        height: 1,
        width: ctx,
        num_classes: alphabet.len(),
        train,
        test,
        source: String::new(),
    })
}

/// Windows of ctx + 1 tokens at stride ctx: inputs (ids as f32) and next-token targets.
fn windows(ids: &[u32], ctx: usize) -> Split {
    let n = if ids.len() > ctx { (ids.len() - 1) / ctx } else { 0 };
    let mut x = Vec::with_capacity(n * ctx);
    let mut y = Vec::with_capacity(n * ctx);
    for s in 0..n {
        let w = &ids[s * ctx..s * ctx + ctx + 1];
        x.extend(w[..ctx].iter().map(|&v| v as f32));
        y.extend_from_slice(&w[1..]);
    }
    Split { x, y, n, dim: ctx }
}

/// The text of token ids under `alphabet` (ids out of range as '?').
pub fn decode(alphabet: &[u8], ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids.iter().map(|&i| alphabet.get(i as usize).copied().unwrap_or(b'?')).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_predict_the_next_byte() {
        // "abcabcabcab" (11 bytes), T = 2: train = first 9 bytes -> 4 windows; test = "ab" -> 0.
        let ds = from_bytes(b"abcabcabcabcabcabcabcabca", "t", 2).unwrap();
        assert_eq!(ds.alphabet.as_deref(), Some(&b"abc"[..]));
        assert_eq!(ds.num_classes, 3);
        // 25 bytes: cut at 22; train 22 bytes -> (22 - 1) / 2 = 10 windows; test 3 bytes -> 1.
        assert_eq!((ds.train.n, ds.test.n), (10, 1));
        assert_eq!(ds.train.targets(), 2);
        assert_eq!(&ds.train.x[..4], &[0.0, 1.0, 2.0, 0.0]);
        assert_eq!(&ds.train.y[..4], &[1, 2, 0, 1]);
        // The test window starts right after the cut: bytes 22.. = "bca".
        assert_eq!(decode(ds.alphabet.as_deref().unwrap(), &[ds.test.x[0] as u32, ds.test.x[1] as u32]), "bc");
        assert_eq!(ds.test.y, vec![2, 0]);
    }

    #[test]
    fn too_short_or_one_symbol_is_an_error() {
        assert!(from_bytes(b"aaaaaaaaaaaaaaaa", "t", 2).unwrap_err().contains("1 distinct"));
        assert!(from_bytes(b"abcd", "t", 8).unwrap_err().contains("too short"));
    }
}
