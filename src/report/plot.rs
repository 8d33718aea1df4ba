//! PNG plots for run reports: line charts (loss curves) and heatmaps
//! (confusion matrix, W), drawn on a small raster canvas with an 8×8 bitmap
//! font, so plotting needs no system fonts or plotting stack.

use std::path::Path;

use font8x8::legacy::BASIC_LEGACY;
use image::{Rgb, RgbImage};

use crate::error::{Error, Result};

type Colour = [u8; 3];

const WHITE: Colour = [255, 255, 255];
const BLACK: Colour = [20, 20, 20];
const GRID: Colour = [225, 225, 225];
/// Distinct line colours (the Tableau 10 palette).
const PALETTE: [Colour; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// A raster canvas with the few drawing primitives the plots need.
struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        Canvas {
            img: RgbImage::from_pixel(w, h, Rgb(WHITE)),
        }
    }

    fn put(&mut self, x: i64, y: i64, c: Colour) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width() && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Colour) {
        for y in y0.min(y1)..y0.max(y1) {
            for x in x0.min(x1)..x0.max(x1) {
                self.put(x, y, c);
            }
        }
    }

    /// A line `width` pixels thick (Bresenham with a square brush).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Colour, width: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.rect(
                x - width / 2,
                y - width / 2,
                x - width / 2 + width,
                y - width / 2 + width,
                c,
            );
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text at `(x, y)` (top left), each glyph `8·scale` pixels square.
    fn text(&mut self, x: i64, y: i64, s: &str, c: Colour, scale: i64) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = BASIC_LEGACY[(ch as usize).min(127)];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        let px = x + (i as i64 * 8 + col) * scale;
                        let py = y + row as i64 * scale;
                        self.rect(px, py, px + scale, py + scale, c);
                    }
                }
            }
        }
    }

    fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 8 * scale
    }

    /// Encodes the PNG in memory and writes it atomically, so a crash or a
    /// full disk never leaves a torn plot.
    fn save(&self, path: &Path) -> Result<()> {
        let mut png = std::io::Cursor::new(Vec::new());
        self.img
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| Error::Io {
                path: path.display().to_string(),
                detail: format!("cannot encode PNG: {e}"),
            })?;
        crate::atomic_file::write_atomic(path, png.get_ref())
    }
}

/// A short label for an axis tick.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if v.fract() == 0.0 && a < 1e6 {
        format!("{v:.0}")
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// About five round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect()
}

/// One named line of a [`line_chart`].
pub struct Series<'a> {
    /// Legend entry.
    pub name: &'a str,
    /// Points `(x, y)`; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

/// Draws the series as lines on shared axes and writes a PNG.
pub fn line_chart(path: &Path, title: &str, x_label: &str, series: &[Series<'_>]) -> Result<()> {
    let (w, h) = (900i64, 520i64);
    let (left, right, top, bottom) = (90i64, 230i64, 50i64, 60i64);
    let mut c = Canvas::new(w as u32, h as u32);
    c.text((w - Canvas::text_width(title, 2)) / 2, 12, title, BLACK, 2);
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in &finite {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if finite.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let pad = 0.05 * (y1 - y0);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * pw as f64).round() as i64;
    let py = |y: f64| top + ph - ((y - y0) / (y1 - y0) * ph as f64).round() as i64;
    for t in ticks(y0, y1) {
        c.line((left, py(t)), (left + pw, py(t)), GRID, 1);
        let label = tick_label(t);
        c.text(
            left - 8 - Canvas::text_width(&label, 1),
            py(t) - 4,
            &label,
            BLACK,
            1,
        );
    }
    for t in ticks(x0, x1) {
        c.line((px(t), top), (px(t), top + ph), GRID, 1);
        let label = tick_label(t);
        c.text(
            px(t) - Canvas::text_width(&label, 1) / 2,
            top + ph + 8,
            &label,
            BLACK,
            1,
        );
    }
    c.line((left, top + ph), (left + pw, top + ph), BLACK, 2);
    c.line((left, top), (left, top + ph), BLACK, 2);
    c.text(
        left + (pw - Canvas::text_width(x_label, 1)) / 2,
        h - 24,
        x_label,
        BLACK,
        1,
    );
    for (i, s) in series.iter().enumerate() {
        let col = PALETTE[i % PALETTE.len()];
        let pts: Vec<(i64, i64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (px(x), py(y)))
            .collect();
        for pair in pts.windows(2) {
            c.line(pair[0], pair[1], col, 2);
        }
        if pts.len() == 1 {
            c.rect(pts[0].0 - 3, pts[0].1 - 3, pts[0].0 + 3, pts[0].1 + 3, col);
        }
        let ly = top + 10 + i as i64 * 20;
        c.rect(w - right + 16, ly, w - right + 36, ly + 8, col);
        c.text(w - right + 42, ly, s.name, BLACK, 1);
    }
    c.save(path)
}

/// Maps `t ∈ [0, 1]` to a perceptually ordered colour (viridis, 5 stops).
fn viridis(t: f64) -> Colour {
    const STOPS: [[f64; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let mut out = [0u8; 3];
    for (k, o) in out.iter_mut().enumerate() {
        *o = (STOPS[i][k] * (1.0 - f) + STOPS[i + 1][k] * f).round() as u8;
    }
    out
}

/// Draws a `rows × cols` matrix (row-major) as coloured cells with a colour
/// bar, row/column indices, and the value in each cell when the grid is
/// small enough to read. `labels` names the rows and columns in a key.
pub fn heatmap(
    path: &Path,
    title: &str,
    matrix: &[f64],
    rows: usize,
    cols: usize,
    labels: &[String],
) -> Result<()> {
    if matrix.len() != rows * cols || rows == 0 || cols == 0 {
        return Err(Error::invalid(
            "heatmap",
            format!("{} values for a {rows}×{cols} matrix", matrix.len()),
        ));
    }
    let cell = (560 / rows.max(cols) as i64).clamp(8, 64);
    let (left, top) = (60i64, 56i64);
    let key_w = if labels.is_empty() { 0 } else { 300 };
    let w = left + cell * cols as i64 + 110 + key_w;
    let h = (top + cell * rows as i64 + 40).max(top + 14 * labels.len() as i64 + 40);
    let mut c = Canvas::new(w as u32, h as u32);
    c.text(16, 16, title, BLACK, 2);
    let finite = matrix.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (lo, hi.max(lo + 1e-12))
    } else {
        (0.0, 1.0)
    };
    for r in 0..rows {
        for k in 0..cols {
            let v = matrix[r * cols + k];
            let col = viridis((v - lo) / (hi - lo));
            let (x, y) = (left + k as i64 * cell, top + r as i64 * cell);
            c.rect(x, y, x + cell - 1, y + cell - 1, col);
            if cell >= 40 {
                let s = tick_label(v);
                let ink = if (v - lo) / (hi - lo) > 0.6 {
                    BLACK
                } else {
                    WHITE
                };
                c.text(
                    x + (cell - Canvas::text_width(&s, 1)) / 2,
                    y + cell / 2 - 4,
                    &s,
                    ink,
                    1,
                );
            }
        }
        let s = r.to_string();
        c.text(
            left - 8 - Canvas::text_width(&s, 1),
            top + r as i64 * cell + cell / 2 - 4,
            &s,
            BLACK,
            1,
        );
    }
    for k in 0..cols {
        let s = k.to_string();
        c.text(
            left + k as i64 * cell + (cell - Canvas::text_width(&s, 1)) / 2,
            top - 12,
            &s,
            BLACK,
            1,
        );
    }
    // Colour bar.
    let bx = left + cell * cols as i64 + 20;
    let bh = cell * rows as i64;
    for i in 0..bh {
        c.rect(
            bx,
            top + i,
            bx + 16,
            top + i + 1,
            viridis(1.0 - i as f64 / bh as f64),
        );
    }
    c.text(bx + 20, top, &tick_label(hi), BLACK, 1);
    c.text(bx + 20, top + bh - 8, &tick_label(lo), BLACK, 1);
    for (i, l) in labels.iter().enumerate() {
        c.text(bx + 90, top + i as i64 * 14, &format!("{i}: {l}"), BLACK, 1);
    }
    c.save(path)
}
