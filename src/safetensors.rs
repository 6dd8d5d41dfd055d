//! Models and checkpoints in the safetensors format (an 8-byte little-endian header length, a
//! JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw
//! little-endian tensor bytes), written and read by the `safetensors` crate. F32 only, which is
//! all biolearn stores; metadata holds the run's configuration and, in checkpoints, its state.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub struct Tensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// The crate's view of a tensor: its bytes made one tensor at a time, while the file is
/// assembled (no second copy of the whole model).
impl ::safetensors::View for &Tensor<'_> {
    fn dtype(&self) -> ::safetensors::Dtype {
        ::safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// Write `tensors` (F32, little-endian) and `metadata` to `path` with the `safetensors` crate.
pub fn save(path: &Path, tensors: &[Tensor], metadata: &BTreeMap<String, String>) -> std::io::Result<()> {
    if let Some(t) = tensors.iter().find(|t| t.shape.iter().product::<usize>() != t.data.len()) {
        return Err(std::io::Error::other(format!(
            "tensor '{}': shape {:?} does not hold {} values",
            t.name,
            t.shape,
            t.data.len()
        )));
    }
    let meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let meta = (!meta.is_empty()).then_some(meta);
    let views = tensors.iter().map(|t| (t.name.as_str(), t));
    let file = ::safetensors::serialize(views, meta).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let file = sorted_header(file)?;
    // Atomic: written whole to `PATH.tmp` (a name the caller knows, so a process killed
    // mid-write leaves nothing it cannot clean up; the crate's own writer uses a random
    // temporary name), synced, then renamed over `path`.
    let tmp = tmp_path(path);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&file)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The file with its JSON header's keys in sorted order (the crate writes its metadata from a
/// `HashMap`, whose order differs from process to process: two identical runs' model files
/// would differ byte for byte). The header is padded with spaces to a multiple of 8 bytes, as
/// the format asks; the tensors' bytes and their offsets (relative to the data) are unchanged.
fn sorted_header(file: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::other(format!("safetensors header: {what}"));
    let n = u64::from_le_bytes(file.get(..8).ok_or_else(|| bad("short"))?.try_into().unwrap()) as usize;
    let header = file.get(8..8 + n).ok_or_else(|| bad("length"))?;
    // serde_json's map is ordered by key (a BTreeMap), at every level.
    let v: serde_json::Value = serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    let mut h = serde_json::to_vec(&v).map_err(|e| bad(&e.to_string()))?;
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + h.len() + file.len() - 8 - n);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&file[8 + n..]);
    Ok(out)
}

/// Where `save` writes `path` before renaming it into place: `path` with `.tmp` appended.
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// name -> (shape, data).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// All tensors of a file: name -> (shape, data). Errors name the file and the problem.
pub fn load(path: &Path) -> Result<Tensors, String> {
    Ok(load_with_metadata(path)?.0)
}

/// All tensors of a file and its `__metadata__` (string values), read and checked by the
/// `safetensors` crate (header size, offsets, overlaps, lengths); only F32 tensors are accepted.
pub fn load_with_metadata(path: &Path) -> Result<(Tensors, BTreeMap<String, String>), String> {
    let p = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{p}: {e}"))?;
    let bad = |e: ::safetensors::SafeTensorError| format!("{p}: not a valid safetensors file: {e:?}");
    let (_, header) = ::safetensors::SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let meta: BTreeMap<String, String> = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).map_err(bad)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != ::safetensors::Dtype::F32 {
            return Err(format!("{p}: tensor '{name}' is {:?} (only F32 is supported)", view.dtype()));
        }
        let vals: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        out.insert(name, (view.shape().to_vec(), vals));
    }
    Ok((out, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let dir = std::env::temp_dir().join(format!("biolearn-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.safetensors");
        let a = [1.0f32, -2.5, 3.0, 4.0, 5.0, 6.0];
        let b = [0.5f32];
        let meta = BTreeMap::from([("config".to_string(), "{}".to_string())]);
        save(
            &f,
            &[
                Tensor { name: "w".into(), shape: vec![2, 3], data: &a },
                Tensor { name: "b".into(), shape: vec![1], data: &b },
            ],
            &meta,
        )
        .unwrap();
        let m = load(&f).unwrap();
        assert_eq!(m["w"], (vec![2, 3], a.to_vec()));
        assert_eq!(m["b"], (vec![1], b.to_vec()));
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() - 4]).unwrap();
        assert!(load(&f).unwrap_err().contains("m.safetensors"));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The same tensors and metadata give the same bytes (the header's keys sorted, whatever
    /// order the crate's HashMap had), and the file reads back.
    #[test]
    fn same_content_same_bytes() {
        let dir = std::env::temp_dir().join(format!("biolearn-st-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = [1.0f32, 2.0, 3.0];
        let meta: BTreeMap<String, String> = (0..24).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
        let tensors: Vec<Tensor> = (0..6).map(|i| Tensor { name: format!("t{i}"), shape: vec![3], data: &a }).collect();
        let bytes: Vec<Vec<u8>> = (0..4)
            .map(|k| {
                let f = dir.join(format!("m{k}.safetensors"));
                save(&f, &tensors, &meta).unwrap();
                let (m, md) = load_with_metadata(&f).unwrap();
                assert_eq!(md, meta);
                assert_eq!(m["t5"], (vec![3], a.to_vec()));
                std::fs::read(&f).unwrap()
            })
            .collect();
        assert!(bytes.iter().all(|b| *b == bytes[0]));
        assert_eq!(u64::from_le_bytes(bytes[0][..8].try_into().unwrap()) % 8, 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
