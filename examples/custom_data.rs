//! A data set from outside biolearn, registered through the public API from NumPy `.npy` files
//! (`biolearn::data::arrays` also reads CSV). `cargo run --release --example custom_data`.
//!
//! It writes a small synthetic task in the files a researcher would have (`x_train.npy`,
//! `y_train.npy`, `x_test.npy`, `y_test.npy`: 6x6 grey images, three classes, each a bright bar
//! in its own place under noise), registers it as `bars`, and trains BP and DRTP on it through
//! the same configuration as any built-in data set (`data = "bars"`, `data_dir = ...`).

use biolearn::config::TrainConfig;
use biolearn::rng::Rng;
use std::path::Path;

/// `n` images of the bars task: class c has a bright row 2c (and 2c + 1) over uniform noise.
fn bars(n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let c = rng.below(3);
        for r in 0..6 {
            for _ in 0..6 {
                let bar = if r / 2 == c { 0.6 } else { 0.0 };
                x.push(bar + 0.4 * rng.uniform());
            }
        }
        y.push(c as i64);
    }
    (x, y)
}

/// Write the files into `dir`, register `bars`, train BP and DRTP; returns their test accuracy.
pub fn run(dir: &Path) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(7);
    for (split, n) in [("train", 600), ("test", 300)] {
        let (x, y) = bars(n, &mut rng);
        let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let yb: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
        biolearn::data::arrays::write_npy(&dir.join(format!("x_{split}.npy")), "<f4", &[n, 6, 6], &xb)?;
        biolearn::data::arrays::write_npy(&dir.join(format!("y_{split}.npy")), "<i8", &[n], &yb)?;
    }
    if biolearn::data::check_name("bars").is_err() {
        biolearn::data::register("bars", |d| {
            let d = d.ok_or_else(|| biolearn::data::DataError::Parse {
                path: "bars".into(),
                line: 0,
                msg: "give its directory with --data-dir".into(),
            })?;
            biolearn::data::arrays::load_npy("bars", d)
        })?;
    }
    let acc = |rule: &str| -> Result<f64, Box<dyn std::error::Error>> {
        let t: toml::Table = format!(
            "rule = '{rule}'\ndata = 'bars'\ndata_dir = '{}'\narch = 'mlp:64'\nepochs = 5\nbatch = 32\nthreads = 1",
            dir.display()
        )
        .parse()
        .unwrap();
        let cfg = TrainConfig::load(None, t)?;
        Ok(biolearn::train::run(&cfg, &Default::default(), &mut |_| {})?.0.test_accuracy)
    };
    Ok((acc("bp")?, acc("drtp")?))
}

#[allow(dead_code)]
fn main() {
    let dir = std::env::temp_dir().join("biolearn-example-bars");
    match run(&dir) {
        Ok((bp, drtp)) => {
            println!("bars (6x6, 3 classes, from .npy files in {}): bp {bp:.4}, drtp {drtp:.4}", dir.display())
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
