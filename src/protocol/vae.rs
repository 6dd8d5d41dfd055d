//! A trained variational autoencoder's pictures (`vae:`): test images beside their
//! reconstructions (decoded from the posterior's mean), and samples from the prior (z ~ N(0, I)
//! decoded), each pixel the decoder's Bernoulli mean sigmoid(logit); saved as PNG grids.

use crate::data::Split;
use crate::nn::{Layer, Network, Workspace};
use crate::rng::Rng;
use std::path::{Path, PathBuf};

/// The latent layer's index and size.
pub fn latent(net: &Network) -> Option<(usize, usize)> {
    net.layers.iter().enumerate().find_map(|(i, l)| if let Layer::Latent { z } = l { Some((i, *z)) } else { None })
}

fn sigmoid_in_place(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp()));
}

/// The decoder's means for the `n` inputs `x` (as the network reads them: normalised),
/// decoded from each posterior's mean: n x (outputs).
pub fn reconstruct(net: &mut Network, x: &[f32], n: usize) -> Vec<f32> {
    let (li, z) = latent(net).expect("a VAE has a latent layer");
    let mut ws = Workspace::default();
    net.prepare_forward(&mut ws, n);
    ws.input_mut().copy_from_slice(&x[..n * net.input_shape().len()]);
    let mut rng = Rng::new(0);
    net.forward_layers(&mut ws, 0, li, false, &mut rng);
    let (below, above) = ws.acts.split_at_mut(li + 1);
    for (zs, x) in above[0].chunks_exact_mut(z).zip(below[li].chunks_exact(2 * z)).take(n) {
        zs.copy_from_slice(&x[..z]);
    }
    net.forward_layers(&mut ws, li + 1, net.num_layers(), false, &mut rng);
    let mut out = ws.output().to_vec();
    sigmoid_in_place(&mut out);
    out
}

/// `n` samples from the prior, decoded: n x (outputs).
pub fn sample(net: &mut Network, n: usize, rng: &mut Rng) -> Vec<f32> {
    let (li, _) = latent(net).expect("a VAE has a latent layer");
    let mut ws = Workspace::default();
    net.prepare_forward(&mut ws, n);
    rng.fill_normal(&mut ws.acts[li + 1], 1.0);
    net.forward_layers(&mut ws, li + 1, net.num_layers(), false, rng);
    let mut out = ws.output().to_vec();
    sigmoid_in_place(&mut out);
    out
}

/// Writes `{stem}-recon.png` (rows of 8 test images, each row followed by their
/// reconstructions: the first 16 of `test`) and `{stem}-samples.png` (32 samples from the prior,
/// drawn with `seed`) into `dir`; returns their paths. `shape`: (channels, height, width).
pub fn save_grids(
    net: &mut Network,
    test: &Split,
    shape: (usize, usize, usize),
    dir: &Path,
    stem: &str,
    seed: u64,
) -> Result<Vec<PathBuf>, String> {
    let (c, h, w) = shape;
    let d = c * h * w;
    if c != 1 && c != 3 {
        return Err(format!("VAE pictures show grey or RGB images, not {c} channels"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let n = test.n.min(16);
    let rec = reconstruct(net, &test.x, n);
    let orig: Vec<f32> = test.y[..n * d].iter().map(|&v| v as f32 / crate::picture::PIXEL_LEVELS).collect();
    let mut tiles: Vec<&[f32]> = Vec::new();
    for row in (0..n).step_by(8) {
        let end = (row + 8).min(n);
        tiles.extend((row..end).map(|s| &orig[s * d..(s + 1) * d]));
        tiles.extend((row..end).map(|s| &rec[s * d..(s + 1) * d]));
    }
    let mut paths = Vec::new();
    let p = dir.join(format!("{stem}-recon.png"));
    let (gw, gh, px) = crate::picture::grid(&tiles, c, h, w, 8.min(n.max(1)));
    crate::picture::write_png(&p, gw, gh, c, &px)?;
    paths.push(p);
    let samples = sample(net, 32, &mut Rng::new(seed));
    let tiles: Vec<&[f32]> = samples.chunks_exact(d).collect();
    let p = dir.join(format!("{stem}-samples.png"));
    let (gw, gh, px) = crate::picture::grid(&tiles, c, h, w, 8);
    crate::picture::write_png(&p, gw, gh, c, &px)?;
    paths.push(p);
    Ok(paths)
}
