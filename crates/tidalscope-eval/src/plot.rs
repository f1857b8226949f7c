//! Plots written as PNG: mosaics of cutouts with captions, line plots
//! (linear or logarithmic x) and scatter plots. Text uses the embedded
//! DejaVu Sans font, so no system fonts are needed.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

/// Font family name under which the embedded font is registered.
pub const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters (once per process).
pub fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is a valid TTF; registration cannot fail.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Errors of plotting.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed (plotters' error, as text).
    #[error("{path}: drawing failed: {message}")]
    Draw {
        /// Output file.
        path: String,
        /// What plotters said.
        message: String,
    },
    /// Writing the PNG failed.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
}

/// One image of a mosaic.
#[derive(Debug, Clone)]
pub struct Tile {
    /// RGB8 pixels, top row first.
    pub rgb: Vec<u8>,
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// Caption lines under the image.
    pub caption: Vec<String>,
    /// Frame colour (e.g. by label).
    pub frame: [u8; 3],
}

/// Writes a grid of tiles with captions and a title as a PNG. Small tiles
/// are enlarged by an integer factor (nearest neighbour: pixels stay
/// pixels) so features remain visible.
pub fn mosaic(path: &Path, tiles: &[Tile], columns: usize, title: &str) -> Result<(), PlotError> {
    init_fonts();
    let columns = columns.clamp(1, tiles.len().max(1));
    let rows = tiles.len().div_ceil(columns).max(1);
    let tw = tiles.iter().map(|t| t.w).max().unwrap_or(64);
    let th = tiles.iter().map(|t| t.h).max().unwrap_or(64);
    let zoom = 200usize.div_ceil(tw).max(1);
    let lines = tiles.iter().map(|t| t.caption.len()).max().unwrap_or(0);
    let (pad, line_h, title_h) = (6usize, 16usize, 34usize);
    let cell_w = tw * zoom + 2 * pad;
    let cell_h = th * zoom + 2 * pad + lines * line_h + 4;
    let (w, h) = (columns * cell_w, title_h + rows * cell_h);
    let mut buf = vec![24u8; w * h * 3];
    let err = |e: &dyn std::fmt::Display| PlotError::Draw { path: path.display().to_string(), message: e.to_string() };
    for (k, t) in tiles.iter().enumerate() {
        let (cx, cy) = ((k % columns) * cell_w + pad, title_h + (k / columns) * cell_h + pad);
        // frame
        for y in cy.saturating_sub(2)..(cy + t.h * zoom + 2).min(h) {
            for x in cx.saturating_sub(2)..(cx + t.w * zoom + 2).min(w) {
                buf[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&t.frame);
            }
        }
        for y in 0..t.h * zoom {
            for x in 0..t.w * zoom {
                let s = ((y / zoom) * t.w + x / zoom) * 3;
                let d = ((cy + y) * w + cx + x) * 3;
                buf[d..d + 3].copy_from_slice(&t.rgb[s..s + 3]);
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
        let title_style = (FONT, 22).into_font().style(FontStyle::Bold).color(&WHITE);
        root.draw(&Text::new(title.to_string(), (pad as i32, 6), title_style)).map_err(|e| err(&e))?;
        let style = (FONT, 13).into_font().color(&RGBColor(225, 225, 225));
        for (k, t) in tiles.iter().enumerate() {
            let (cx, cy) = ((k % columns) * cell_w + pad, title_h + (k / columns) * cell_h + pad + th * zoom + 4);
            for (l, line) in t.caption.iter().enumerate() {
                root.draw(&Text::new(line.clone(), (cx as i32, (cy + l * line_h) as i32), style.clone()))
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    tidalscope_io::png::write_rgb(path, w, h, &buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_plot_writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roc.png");
        let mut axes = Axes::new("ROC", "contamination", "completeness");
        axes.diagonal = true;
        axes.vlines.push((0.22, "22%".into()));
        let mut s = Series::line("AUC 0.9", vec![0.0, 0.1, 1.0], vec![0.0, 0.8, 1.0], PALETTE[0]);
        s.band = Some((vec![0.0, 0.7, 1.0], vec![0.0, 0.9, 1.0]));
        line_plot(&p, &axes, &[s]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 900);
    }

    #[test]
    fn x_ticks_are_round_numbers_and_labels_carry_no_float_noise() {
        let labels = |lo: f64, hi: f64, log: bool| -> Vec<String> {
            let (lo, hi) = if log { (lo.log10(), hi.log10()) } else { (lo, hi) };
            let t = x_ticks(lo, hi, log);
            t.iter().map(|v| x_tick_label(*v, &t, log)).collect()
        };
        assert_eq!(labels(0.0, 400.0, false), ["0", "50", "100", "150", "200", "250", "300", "350", "400"]);
        assert_eq!(labels(0.0, 1.0, false), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(labels(-2.0, 2.0, false), ["-2", "-1.5", "-1", "-0.5", "0", "0.5", "1", "1.5", "2"]);
        assert_eq!(labels(1e6, 1.05e6, false), ["1e6", "1.01e6", "1.02e6", "1.03e6", "1.04e6", "1.05e6"]);
        assert_eq!(labels(1.20e-4, 1.25e-4, false), ["1.2e-4", "1.21e-4", "1.22e-4", "1.23e-4", "1.24e-4", "1.25e-4"]);
        assert_eq!(labels(25.0, 1000.0, true), ["50", "100", "200", "500", "1000"]);
        assert_eq!(labels(25.0, 45.0, true), ["30", "40"]);
        assert_eq!(labels(120.0, 180.0, true), ["120", "130", "140", "150", "160", "170", "180"]);
        assert_eq!(labels(1e-4, 1e4, true), ["1e-4", "0.001", "0.01", "0.1", "1", "10", "100", "1000", "10000"]);
        // Label-count plots tick the counts measured, the smallest included.
        let counts = [25.0, 50.0, 100.0, 300.0, 1000.0, 50.0, 25.0];
        let t = few_values(counts.iter().map(|c: &f64| c.log10())).unwrap();
        assert_eq!(
            t.iter().map(|v| x_tick_label(*v, &t, true)).collect::<Vec<_>>(),
            ["25", "50", "100", "300", "1000"]
        );
        assert_eq!(few_values([1.0, f64::NAN].into_iter()), None);
        assert_eq!(few_values((0..11).map(f64::from)), None);
        assert_eq!(tick_label(0.1 + 0.2, 0.1), "0.3");
        assert_eq!(tick_label(1e-5, 1e-5), "1e-5");
        assert_eq!(tick_label(f64::NAN, 1.0), "NaN");
    }

    #[test]
    fn a_log_axis_plot_drops_non_positive_x_and_writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.png");
        let mut axes = Axes::new("AUC vs labels", "number of training labels", "AUC");
        axes.x_log = true;
        let mut s = Series::line("probe", vec![0.0, 25.0, 50.0, 1000.0], vec![0.5, 0.6, 0.7, 0.8], PALETTE[0]);
        s.band = Some((vec![0.4, 0.5, 0.6, 0.7], vec![0.6, 0.7, 0.8, 0.9]));
        s.markers = true;
        line_plot(&p, &axes, &[s]).unwrap();
        assert_eq!(&std::fs::read(&p).unwrap()[1..4], b"PNG");
    }

    #[test]
    fn mosaic_writes_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.png");
        let tile = Tile {
            rgb: vec![200; 10 * 10 * 3],
            w: 10,
            h: 10,
            caption: vec!["id 0".into(), "tidal".into()],
            frame: [255, 0, 0],
        };
        mosaic(&p, &[tile.clone(), tile.clone(), tile], 2, "test").unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // IHDR width/height: 2 columns × (10·20 + 12) = 424 wide
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert_eq!(w, 424);
    }
}

/// One curve of a line plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// x values.
    pub x: Vec<f64>,
    /// y values.
    pub y: Vec<f64>,
    /// Colour (RGB).
    pub color: [u8; 3],
    /// Optional shaded band (lower, upper) around the curve, e.g. spread over seeds.
    pub band: Option<(Vec<f64>, Vec<f64>)>,
    /// Draw markers at the points.
    pub markers: bool,
}

impl Series {
    /// A plain line.
    pub fn line(label: impl Into<String>, x: Vec<f64>, y: Vec<f64>, color: [u8; 3]) -> Self {
        Self { label: label.into(), x, y, color, band: None, markers: false }
    }
}

/// Axes and labels of a line plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Axes {
    /// Title above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Fixed x range (default: the data's).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range (default: the data's, padded).
    pub y_range: Option<(f64, f64)>,
    /// Draw the y = x diagonal (chance line of a ROC plot).
    pub diagonal: bool,
    /// Vertical marker lines with labels (e.g. 22% contamination).
    pub vlines: Vec<(f64, String)>,
    /// Draw x on a logarithmic scale (x values, range and markers stay in data
    /// units and must be positive; ticks at the data's x values when the
    /// series have 2 to 10 distinct x values between them and no range is
    /// set, else at 1, 2 and 5 times powers of ten).
    pub x_log: bool,
}

impl Axes {
    /// Axes with a title and axis labels.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_range: None,
            y_range: None,
            diagonal: false,
            vlines: Vec::new(),
            x_log: false,
        }
    }
}

/// x tick positions (in drawing units) for the range `lo..hi`: on a log axis
/// (`lo..hi` are then log10 of the data) the 1-2-5 values of each decade
/// (powers of ten only on wide ranges),
/// else at most eight round steps of 1, 2 or 5 times a power of ten.
fn x_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    let eps = 1e-9 * (hi - lo).abs().max(1e-300);
    if log {
        // Beyond three decades only powers of ten, and beyond eight only every few.
        let decades = hi - lo;
        let mults: &[f64] = if decades <= 3.0 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        let every = (decades / 8.0).ceil().max(1.0) as usize;
        let mut ticks = Vec::new();
        for decade in (lo.floor() as i32..=hi.ceil() as i32).step_by(every) {
            for &m in mults {
                let t = decade as f64 + m.log10();
                if t >= lo - eps && t <= hi + eps {
                    ticks.push(t);
                }
            }
        }
        // Under two ticks says nothing about the scale: all integers 1..9
        // of each decade, and failing that round steps of the values.
        if ticks.len() >= 2 {
            return ticks;
        }
        let ticks: Vec<f64> = (lo.floor() as i32..=hi.ceil() as i32)
            .flat_map(|d| (1..10).map(move |m| d as f64 + (m as f64).log10()))
            .filter(|t| *t >= lo - eps && *t <= hi + eps)
            .collect();
        if ticks.len() >= 2 {
            return ticks;
        }
        return x_ticks(10f64.powf(lo), 10f64.powf(hi), false).into_iter().map(f64::log10).collect();
    }
    let span = hi - lo;
    if !span.is_finite() || span <= 0.0 {
        return vec![lo];
    }
    let raw = span / 8.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * pow).find(|s| span / s <= 8.0).unwrap_or(10.0 * pow);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A linear f64 axis with the ticks given, so that the labels can be
/// formatted by us (plotters' own f64 axis does not accept a formatter
/// together with chosen ticks).
struct TickedAxis {
    linear: RangedCoordf64,
    ticks: Vec<f64>,
}

impl TickedAxis {
    fn new((lo, hi): (f64, f64), ticks: Vec<f64>) -> Self {
        Self { linear: (lo..hi).into(), ticks }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The light mesh in between stays off: the ticks are the grid.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.linear.range()
    }
}

/// A tick label for `v` on an axis whose ticks are `step` apart, without
/// float noise or a needless ".0": 100 for 100.0, 0.3 for
/// 0.30000000000000004, 1e-5 for 0.00001; as many digits as the step needs,
/// so neighbouring ticks never read alike.
fn tick_label(v: f64, step: f64) -> String {
    let a = v.abs();
    let step = step.abs();
    if !v.is_finite() || !step.is_finite() || step == 0.0 {
        return format!("{v}");
    }
    if a < 1e-6 * step {
        return "0".into();
    }
    let trim = |s: String| -> String {
        match s.split_once('e') {
            Some((m, e)) if m.contains('.') => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
            _ if s.contains('.') && !s.contains('e') => s.trim_end_matches('0').trim_end_matches('.').to_string(),
            _ => s,
        }
    };
    if (1e-3..1e6).contains(&a) {
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        trim(format!("{v:.decimals$}"))
    } else {
        let digits = (a.log10().floor() - step.log10().floor()).max(0.0) as usize;
        trim(format!("{v:.digits$e}"))
    }
}

/// The label of x tick `t` (drawing units) of a line plot whose ticks are
/// `ticks`: on a log axis the data value 10^t to three significant digits.
fn x_tick_label(t: f64, ticks: &[f64], log: bool) -> String {
    if log {
        let v = 10f64.powf(t);
        return tick_label(v, v * 1e-3);
    }
    let step = ticks.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
    tick_label(t, if step.is_finite() { step } else { t.abs().max(1.0) * 1e-3 })
}

/// Colours for successive series (colour-blind friendly, Okabe–Ito).
pub const PALETTE: [[u8; 3]; 7] =
    [[0, 114, 178], [213, 94, 0], [0, 158, 115], [204, 121, 167], [230, 159, 0], [86, 180, 233], [0, 0, 0]];

fn finite_range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) =
        vals.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    (lo <= hi).then_some((lo, hi))
}

/// The distinct finite values, sorted, when there are 2 to 10 of them.
fn few_values(vals: impl Iterator<Item = f64>) -> Option<Vec<f64>> {
    let mut v: Vec<f64> = vals.filter(|v| v.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| (*a - *b).abs() <= 1e-9 * b.abs().max(1.0));
    (2..=10).contains(&v.len()).then_some(v)
}

/// Writes a line plot as a 900×650 PNG.
pub fn line_plot(path: &Path, axes: &Axes, series: &[Series]) -> Result<(), PlotError> {
    init_fonts();
    let (w, h) = (900usize, 650usize);
    let mut buf = vec![255u8; w * h * 3];
    let err = |e: &dyn std::fmt::Display| PlotError::Draw { path: path.display().to_string(), message: e.to_string() };
    // On a log axis everything is drawn in log10 units; non-positive x are dropped.
    let tx = |x: f64| {
        if !axes.x_log {
            x
        } else if x > 0.0 {
            x.log10()
        } else {
            f64::NAN
        }
    };
    let xr = axes
        .x_range
        .map(|(a, b)| (tx(a), tx(b)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .or_else(|| finite_range(series.iter().flat_map(|s| s.x.iter().map(|&x| tx(x)))))
        .unwrap_or((0.0, 1.0));
    let yr = axes.y_range.unwrap_or_else(|| {
        let ys = series
            .iter()
            .flat_map(|s| s.y.iter().copied().chain(s.band.iter().flat_map(|(a, b)| a.iter().chain(b).copied())));
        let (lo, hi) = finite_range(ys).unwrap_or((0.0, 1.0));
        let pad = ((hi - lo) * 0.05).max(1e-9);
        (lo - pad, hi + pad)
    });
    let xr = if xr.0 == xr.1 { (xr.0 - 0.5, xr.1 + 0.5) } else { xr };
    // A log axis over a few measured counts (labels per run) is read at
    // those counts: tick each one, and keep the end points off the frame.
    let data_ticks = if axes.x_log && axes.x_range.is_none() {
        few_values(series.iter().flat_map(|s| s.x.iter().map(|&x| tx(x))))
    } else {
        None
    };
    let (xr, ticks) = match data_ticks {
        Some(t) => {
            let pad = 0.04 * (xr.1 - xr.0);
            ((xr.0 - pad, xr.1 + pad), t)
        }
        None => (xr, x_ticks(xr.0, xr.1, axes.x_log)),
    };
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(&axes.title, (FONT, 22))
            .margin(18)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(TickedAxis::new(xr, ticks.clone()), yr.0..yr.1)
            .map_err(|e| err(&e))?;
        let x_label = |t: &f64| x_tick_label(*t, &ticks, axes.x_log);
        chart
            .configure_mesh()
            .x_label_formatter(&x_label)
            .x_desc(axes.x_label.as_str())
            .y_desc(axes.y_label.as_str())
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| err(&e))?;
        if axes.diagonal && !axes.x_log {
            let lo = xr.0.max(yr.0);
            let hi = xr.1.min(yr.1);
            chart
                .draw_series(LineSeries::new(
                    [(lo, lo), (hi, hi)],
                    ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
        }
        for (x, label) in &axes.vlines {
            let x = &tx(*x);
            if !x.is_finite() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    [(*x, yr.0), (*x, yr.1)],
                    ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x, yr.0 + 0.04 * (yr.1 - yr.0)),
                    (FONT, 14).into_font().color(&RGBColor(90, 90, 90)),
                )))
                .map_err(|e| err(&e))?;
        }
        for s in series {
            let color = RGBColor(s.color[0], s.color[1], s.color[2]);
            if let Some((lo, hi)) = &s.band {
                let poly: Vec<(f64, f64)> =
                    s.x.iter()
                        .zip(hi)
                        .map(|(&x, &y)| (tx(x), y))
                        .chain(s.x.iter().zip(lo).rev().map(|(&x, &y)| (tx(x), y)))
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                        .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18).filled())))
                    .map_err(|e| err(&e))?;
            }
            let pts: Vec<(f64, f64)> =
                s.x.iter()
                    .map(|&x| tx(x))
                    .zip(s.y.iter().copied())
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), ShapeStyle::from(&color).stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], ShapeStyle::from(&color).stroke_width(3))
                });
            if s.markers {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
            }
        }
        if series.iter().any(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                .label_font((FONT, 15))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    tidalscope_io::png::write_rgb(path, w, h, &buf)?;
    Ok(())
}

/// Points of one colour in a scatter plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Legend entry.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: [u8; 3],
}

/// Writes a scatter plot (e.g. a 2-D projection of representations) as a
/// 900×750 PNG.
pub fn scatter(path: &Path, title: &str, x_label: &str, y_label: &str, groups: &[Group]) -> Result<(), PlotError> {
    init_fonts();
    let (w, h) = (900usize, 750usize);
    let mut buf = vec![255u8; w * h * 3];
    let err = |e: &dyn std::fmt::Display| PlotError::Draw { path: path.display().to_string(), message: e.to_string() };
    let pad = |(lo, hi): (f64, f64)| {
        let p = ((hi - lo) * 0.05).max(1e-9);
        (lo - p, hi + p)
    };
    let xr = pad(finite_range(groups.iter().flat_map(|g| g.points.iter().map(|p| p.0))).unwrap_or((0.0, 1.0)));
    let yr = pad(finite_range(groups.iter().flat_map(|g| g.points.iter().map(|p| p.1))).unwrap_or((0.0, 1.0)));
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(18)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(&e))?;
        for g in groups {
            let color = RGBColor(g.color[0], g.color[1], g.color[2]);
            chart
                .draw_series(
                    g.points
                        .iter()
                        .filter(|p| p.0.is_finite() && p.1.is_finite())
                        .map(|&p| Circle::new(p, 3, color.mix(0.7).filled())),
                )
                .map_err(|e| err(&e))?
                .label(format!("{} ({})", g.label, g.points.len()))
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    tidalscope_io::png::write_rgb(path, w, h, &buf)?;
    Ok(())
}
