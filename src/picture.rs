//! Image grids written as PNG files (a VAE's reconstructions and samples): images of c x h x w
//! values in [0, 1] (grey for one channel, RGB for three), laid out in rows of `cols` with a
//! one-pixel white gap.

use std::path::Path;

/// The top intensity level of an 8-bit pixel: a pixel's level y in 0..=255 is the intensity
/// y / PIXEL_LEVELS in [0, 1] (a VAE's Bernoulli target, `nn::loss::Loss::Bernoulli`).
pub const PIXEL_LEVELS: f32 = 255.0;

/// The grid of `images` (each `c * h * w` values, channel-major), `cols` per row: its width,
/// height and 8-bit pixels (grey, or interleaved RGB when `c` is 3).
pub fn grid(images: &[&[f32]], c: usize, h: usize, w: usize, cols: usize) -> (usize, usize, Vec<u8>) {
    assert!(c == 1 || c == 3, "a grid shows grey (1 channel) or RGB (3 channel) images, not {c} channels");
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let mut px = vec![255u8; gw * gh * c];
    for (k, img) in images.iter().enumerate() {
        let (r0, c0) = (1 + (k / cols) * (h + 1), 1 + (k % cols) * (w + 1));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let v = img[ch * h * w + y * w + x].clamp(0.0, 1.0);
                    px[((r0 + y) * gw + c0 + x) * c + ch] = (v * 255.0).round() as u8;
                }
            }
        }
    }
    (gw, gh, px)
}

/// Writes `grid`'s output as a PNG file.
pub fn write_png(path: &Path, width: usize, height: usize, channels: usize, px: &[u8]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    enc.set_color(if channels == 3 { png::ColorType::Rgb } else { png::ColorType::Grayscale });
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| err(&e))?;
    w.write_image_data(px).map_err(|e| err(&e))?;
    w.finish().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_images_with_gaps_and_round_trips_through_png() {
        // Two 1x2 grey images, two per row: width 2*(2+1)+1 = 7, height 1*(1+1)+1 = 3.
        let a = [0.0, 1.0];
        let b = [0.5, 2.0]; // clamped to 1
        let (w, h, px) = grid(&[&a, &b], 1, 1, 2, 2);
        assert_eq!((w, h), (7, 3));
        assert_eq!(&px[7..14], &[255, 0, 255, 255, 128, 255, 255]);
        let dir = std::env::temp_dir().join(format!("biolearn-picture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.png");
        write_png(&p, w, h, 1, &px).unwrap();
        let dec = png::Decoder::new(std::fs::File::open(&p).unwrap());
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (7, 3));
        assert_eq!(&buf[..info.buffer_size()], &px[..]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
