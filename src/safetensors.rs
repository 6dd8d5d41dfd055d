//! Minimal safetensors writer/reader (the format of huggingface/safetensors): an 8-byte
//! little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
//! {...}}, then the raw little-endian tensor bytes. F32 only, which is all biolearn stores.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub struct Tensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

pub fn save(path: &Path, tensors: &[Tensor], metadata: &BTreeMap<String, String>) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.data.len() * 4;
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&header)?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&(h.len() as u64).to_le_bytes())?;
    f.write_all(&h)?;
    for t in tensors {
        for v in t.data {
            f.write_all(&v.to_le_bytes())?;
        }
    }
    f.flush()
}

/// name -> (shape, data).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// All tensors of a file: name -> (shape, data). Errors name the file and the problem.
pub fn load(path: &Path) -> Result<Tensors, String> {
    Ok(load_with_metadata(path)?.0)
}

/// All tensors of a file and its `__metadata__` (string values).
pub fn load_with_metadata(path: &Path) -> Result<(Tensors, BTreeMap<String, String>), String> {
    let p = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{p}: {e}"))?;
    if bytes.len() < 8 {
        return Err(format!("{p}: too short for a safetensors file"));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let body =
        bytes.get(8..8usize.saturating_add(n)).ok_or_else(|| format!("{p}: header length {n} exceeds the file"))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("{p}: bad header: {e}"))?;
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    let mut meta = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            meta = serde_json::from_value(v).map_err(|e| format!("{p}: bad metadata: {e}"))?;
            continue;
        }
        let bad = || format!("{p}: tensor '{name}' has a malformed entry");
        if v["dtype"] != "F32" {
            return Err(format!("{p}: tensor '{name}' is {} (only F32 is supported)", v["dtype"]));
        }
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).map_err(|_| bad())?;
        let off: [usize; 2] = serde_json::from_value(v["data_offsets"].clone()).map_err(|_| bad())?;
        let raw =
            data.get(off[0]..off[1]).ok_or_else(|| format!("{p}: tensor '{name}' lies past the end of the file"))?;
        let vals: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        if vals.len() != shape.iter().product::<usize>() {
            return Err(format!("{p}: tensor '{name}' has {} values for shape {shape:?}", vals.len()));
        }
        out.insert(name, (shape, vals));
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
}
