//! Line charts rendered with plotters to PNG and SVG, using the embedded DejaVu Sans.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// DejaVu Sans, embedded so plots render on machines without any system font
/// (plotters' `ab_glyph` text backend never looks at fontconfig).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Font family name used for every text in the charts.
pub const FONT: &str = "sans-serif";

/// Plot size in pixels.
pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 500;

/// Register the embedded font with plotters (once per process) under the
/// generic family names, so that plotters' defaults resolve to it too.
pub fn ensure_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for family in ["sans-serif", "serif", "monospace", "DejaVu Sans"] {
                plotters::style::register_font(family, FontStyle::Normal, DEJAVU_SANS)
                    .map_err(|_| "the embedded DejaVuSans.ttf is not a valid font".to_string())?;
            }
            Ok(())
        })
        .clone()
}

/// Tableau-10 palette; rule `i` in the global rule order gets colour `i % 10`.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

pub fn color(index: usize) -> RGBColor {
    let (r, g, b) = PALETTE[index % PALETTE.len()];
    RGBColor(r, g, b)
}

/// How the spread of a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    None,
    ErrorBars,
    Band,
}

/// One line of a chart. `points` are `(x, mean, std)` with y in percent.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: usize,
    pub points: Vec<(f64, f64, f64)>,
    pub dashed: bool,
    pub spread: Spread,
}

/// How x tick labels are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XFormat {
    /// The value times 100 (fractions shown as percent).
    Percent,
    /// The value as is.
    Plain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legend {
    UpperRight,
    LowerRight,
    LowerLeft,
}

#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub x_format: XFormat,
    pub legend: Legend,
    pub series: Vec<Series>,
}

/// Write `<dir>/<stem>.png` and `<dir>/<stem>.svg`; returns both paths.
pub fn render(chart: &Chart, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), String> {
    ensure_font()?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    {
        let root = BitMapBackend::new(&png, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart).map_err(|e| format!("{}: {e}", png.display()))?;
        root.present().map_err(|e| format!("{}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, chart).map_err(|e| format!("{}: {e}", svg.display()))?;
        root.present().map_err(|e| format!("{}: {e}", svg.display()))?;
    }
    Ok((png, svg))
}

/// Format `v` with at most `decimals` decimals, without trailing zeros.
pub fn trim_num(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// "Nice" tick positions covering `lo..=hi` (about 6–10 of them).
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 10.0).unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = vec![];
    while v <= hi + step * 1e-9 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// A linear f64 axis whose ticks are exactly `keys` (plotters' own
/// `WithKeyPoints<RangedCoordf64>` cannot be used with `configure_mesh`).
#[derive(Clone)]
struct KeyedAxis {
    inner: RangedCoordf64,
    keys: Vec<f64>,
}

impl Ranged for KeyedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }
    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            vec![]
        } else {
            self.keys.clone()
        }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Chart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let tx = |x: f64| if c.log_x { x.max(1e-12).log10() } else { x };
    let inv = |x: f64| if c.log_x { 10f64.powf(x) } else { x };

    // x: distinct data positions, used as ticks when there are few of them
    let mut xs: Vec<f64> = c.series.iter().flat_map(|s| s.points.iter().map(|p| tx(p.0))).collect();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    let (xmin, xmax) = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) => (*a, *b),
        _ => (0.0, 1.0),
    };
    let span = if xmax > xmin { xmax - xmin } else { 1.0 };
    let (x0, x1) = if xmax > xmin { (xmin - 0.05 * span, xmax + 0.05 * span) } else { (xmin - 0.5, xmax + 0.5) };
    let keys = if xs.len() <= 12 && !xs.is_empty() {
        xs.clone()
    } else if c.log_x {
        // decades
        let mut k = vec![];
        let mut d = x0.ceil();
        while d <= x1 {
            k.push(d);
            d += 1.0;
        }
        k
    } else {
        nice_ticks(x0, x1)
    };

    // y: means ± std, padded, kept inside 0..100 unless the data leave it
    let mut ylo = f64::INFINITY;
    let mut yhi = f64::NEG_INFINITY;
    for s in &c.series {
        for &(_, m, sd) in &s.points {
            let sd = if s.spread == Spread::None { 0.0 } else { sd };
            ylo = ylo.min(m - sd);
            yhi = yhi.max(m + sd);
        }
    }
    if !ylo.is_finite() {
        ylo = 0.0;
        yhi = 100.0;
    }
    // 8% of the span, at least 1% of the values' size (percent and unit-scale charts alike).
    let pad = ((yhi - ylo) * 0.08).max(0.01 * ylo.abs().max(yhi.abs())).max(1e-6);
    let y0 = (ylo - pad).max(0.0_f64.min(ylo));
    let y1 = (yhi + pad).min(100.0_f64.max(yhi));
    let (y0, y1) = if y1 - y0 < 1e-9 { (y0 - 1.0, y1 + 1.0) } else { (y0, y1) };

    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        // Long titles (groups of several networks) get a smaller font so they fit the width.
        .caption(
            &c.title,
            (FONT, if c.title.chars().count() > 70 { (22 * 70 / c.title.chars().count()).max(12) as u32 } else { 22 }),
        )
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(62)
        .build_cartesian_2d(KeyedAxis { inner: (x0..x1).into(), keys }, y0..y1)
        .map_err(err)?;

    let x_fmt = |v: &f64| {
        let x = inv(*v);
        match c.x_format {
            XFormat::Percent => trim_num(x * 100.0, 2),
            XFormat::Plain => trim_num(x, 3),
        }
    };
    // Enough decimals to tell the ticks apart (one on percent charts, more on unit-scale ones).
    let y_decimals = (-((y1 - y0) / 10.0).log10().floor()).clamp(1.0, 6.0) as usize;
    let y_fmt = |v: &f64| trim_num(*v, y_decimals);
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()
        .map_err(err)?;

    let n_bar_series = c.series.iter().filter(|s| s.spread == Spread::ErrorBars).count();
    // bands first, so that no band covers another series' line
    for s in &c.series {
        let col = color(s.color);
        if s.spread == Spread::Band && s.points.len() > 1 {
            let mut poly: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0), (p.1 + p.2).min(y1))).collect();
            poly.extend(s.points.iter().rev().map(|p| (tx(p.0), (p.1 - p.2).max(y0))));
            chart.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.15).filled()))).map_err(err)?;
        }
    }
    let mut bar_index = 0usize;
    for s in &c.series {
        let col = color(s.color);
        let line_style = ShapeStyle::from(&col).stroke_width(2);
        // small horizontal offset so error bars of different rules do not overlap
        let dodge = if s.spread == Spread::ErrorBars && n_bar_series > 1 {
            let d = (bar_index as f64 - (n_bar_series as f64 - 1.0) / 2.0) * 0.01 * span;
            bar_index += 1;
            d
        } else {
            0.0
        };
        let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0) + dodge, p.1)).collect();

        if s.spread == Spread::ErrorBars {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .zip(&pts)
                        .map(|(p, q)| ErrorBar::new_vertical(q.0, p.1 - p.2, p.1, p.1 + p.2, line_style, 8)),
                )
                .map_err(err)?;
        }
        let (a, b) = if s.dashed { (8, 12) } else { (10, 10) };
        let legend_style = line_style;
        let anno = if s.dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, line_style)).map_err(err)?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), line_style)).map_err(err)?
        };
        anno.label(s.label.clone()).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (a, 0)], legend_style)
                + PathElement::new(vec![(b, 0), (20, 0)], legend_style)
        });
        if s.points.len() <= 40 {
            let marker = if s.dashed { ShapeStyle::from(&WHITE).filled() } else { ShapeStyle::from(&col).filled() };
            chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, marker))).map_err(err)?;
            if s.dashed {
                chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, line_style))).map_err(err)?;
            }
        }
    }

    chart
        .configure_series_labels()
        .position(match c.legend {
            Legend::UpperRight => SeriesLabelPosition::UpperRight,
            Legend::LowerRight => SeriesLabelPosition::LowerRight,
            Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
        })
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_registers_and_number_formatting() {
        assert!(DEJAVU_SANS.len() > 100_000);
        assert_eq!(&DEJAVU_SANS[..4], &[0, 1, 0, 0]); // TrueType magic
        ensure_font().unwrap();
        ensure_font().unwrap(); // idempotent
        assert_eq!(trim_num(20.000000000000004, 2), "20");
        assert_eq!(trim_num(7.5, 2), "7.5");
        assert_eq!(trim_num(-0.0001, 2), "0");
        let t = nice_ticks(0.0, 100.0);
        assert_eq!(t.first(), Some(&0.0));
        assert_eq!(t.last(), Some(&100.0));
        assert!(t.len() >= 5 && t.len() <= 11);
    }
}
