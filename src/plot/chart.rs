//! Line charts as PNG images: axes with round-number ticks, a grid, a legend,
//! and labelled markers (the best checkpoint, say).

use super::canvas::{Canvas, Rgb};

/// One curve.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend text.
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
    /// Line color.
    pub color: Rgb,
    /// Line width in pixels.
    pub width: i64,
}

/// A labelled point drawn on top of the curves.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Where.
    pub at: (f64, f64),
    /// Text beside it.
    pub label: String,
}

/// Colors for curves, in order.
pub const PALETTE: [Rgb; 5] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
    [255, 127, 14],
];

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [30, 30, 30];
const GRID: Rgb = [225, 225, 225];

/// Round tick values covering `[lo, hi]`: about `n` of them.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / n.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect()
}

/// `v` with as many decimals as the tick step has (2.5 → one).
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..9)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
        })
        .unwrap_or(9) as usize;
    format!("{v:.decimals$}")
}

/// Draws `curves` and `markers` in a `width` x `height` image.
pub fn line_chart(
    title: &str,
    x_label: &str,
    curves: &[Curve],
    markers: &[Marker],
    width: usize,
    height: usize,
) -> Canvas {
    let mut c = Canvas::new(width, height, WHITE);
    let (left, right, top, bottom) = (80i64, 20i64, 50i64, 50i64);
    let (w, h) = (width as i64 - left - right, height as i64 - top - bottom);
    let points: Vec<(f64, f64)> = curves
        .iter()
        .flat_map(|c| c.points.iter().copied())
        .chain(markers.iter().map(|m| m.at))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    c.text(title, left, 16, 2, INK);
    if points.is_empty() {
        c.text("no data", left + w / 2 - 28, top + h / 2, 1, INK);
        return c;
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        points.iter().map(pick).fold(init, f)
    };
    let (mut x0, mut x1) = (
        fold(f64::min, f64::MAX, |p| p.0),
        fold(f64::max, f64::MIN, |p| p.0),
    );
    let (mut y0, mut y1) = (
        fold(f64::min, f64::MAX, |p| p.1),
        fold(f64::max, f64::MIN, |p| p.1),
    );
    if x1 <= x0 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(y1.abs() * 1e-3).max(1e-9);
    (y0, y1) = (y0 - pad, y1 + pad);
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * w as f64).round() as i64;
    let py = |y: f64| top + h - ((y - y0) / (y1 - y0) * h as f64).round() as i64;
    let yt = ticks(y0, y1, 5);
    let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
    for &v in &yt {
        c.line((left, py(v)), (left + w, py(v)), GRID, 1);
        let label = tick_label(v, ystep);
        c.text(&label, left - 8 - 8 * label.len() as i64, py(v) - 4, 1, INK);
    }
    let xt = ticks(x0, x1, 6);
    let xstep = if xt.len() > 1 { xt[1] - xt[0] } else { 1.0 };
    for &v in &xt {
        c.line((px(v), top), (px(v), top + h), GRID, 1);
        let label = tick_label(v, xstep);
        c.text(&label, px(v) - 4 * label.len() as i64, top + h + 8, 1, INK);
    }
    c.line((left, top), (left, top + h), INK, 1);
    c.line((left, top + h), (left + w, top + h), INK, 1);
    c.text(
        x_label,
        left + w / 2 - 4 * x_label.len() as i64,
        top + h + 26,
        1,
        INK,
    );
    for curve in curves {
        let pts: Vec<(i64, i64)> = curve
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (px(x), py(y)))
            .collect();
        for pair in pts.windows(2) {
            c.line(pair[0], pair[1], curve.color, curve.width);
        }
        if let [only] = pts.as_slice() {
            c.fill(only.0 - 2, only.1 - 2, 5, 5, curve.color);
        }
    }
    for m in markers {
        let (x, y) = (px(m.at.0), py(m.at.1));
        c.fill(x - 4, y - 4, 9, 9, INK);
        c.fill(x - 2, y - 2, 5, 5, [255, 200, 0]);
        let tx = (x + 8).min(left + w - 8 * m.label.len() as i64);
        c.text(&m.label, tx, y - 16, 1, INK);
    }
    // The legend sits in the top margin below the title's line, right-aligned,
    // one entry after another.
    let mut x = left + w;
    for curve in curves.iter().rev() {
        x -= 8 * curve.name.len() as i64 + 26;
        c.fill(x, top - 11, 20, 4, curve.color);
        c.text(&curve.name, x + 26, top - 13, 1, INK);
        x -= 16;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_show_the_step_s_decimals() {
        assert_eq!(tick_label(77.5, 2.5), "77.5");
        assert_eq!(tick_label(80.0, 2.5), "80.0");
        assert_eq!(tick_label(80.0, 2.0), "80");
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(0.0003, 0.0001), "0.0003");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1.0, 5);
        let expected = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), expected.len());
        assert!(
            t.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
        assert_eq!(ticks(3.0, 97.0, 4), vec![25.0, 50.0, 75.0]);
        let t = ticks(71.3, 74.9, 5);
        assert!(
            t.first().unwrap() >= &71.3 && t.last().unwrap() <= &74.9 && t.len() >= 3,
            "{t:?}"
        );
    }

    #[test]
    fn curves_land_inside_the_plot_area() {
        let curve = Curve {
            name: "loss".into(),
            points: vec![(0.0, 1.0), (10.0, 0.0)],
            color: PALETTE[1],
            width: 2,
        };
        let c = line_chart("t", "step", &[curve], &[], 300, 200);
        // The line runs from (80, top-ish) to (280, bottom-ish): its middle is red.
        let (mx, my) = (80 + 100, 50 + 50);
        let red = (my - 3..=my + 3).any(|y| c.get(mx as usize, y as usize) == PALETTE[1]);
        assert!(red);
    }
}
