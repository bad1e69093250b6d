//! A small RGB raster: pixels, lines, rectangles, 8x8 bitmap text (font8x8),
//! and PNG output. Enough for training curves and terminal screenshots
//! without a font file or a plotting library.

use std::path::Path;

use font8x8::{UnicodeFonts, BASIC_FONTS, BLOCK_FONTS, BOX_FONTS, LATIN_FONTS};

use crate::atomic::write_atomic;
use crate::error::Result;

/// An RGB color.
pub type Rgb = [u8; 3];

/// A width x height RGB image.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Self {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    /// The color at (x, y).
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Colors one pixel; outside the canvas nothing happens.
    pub fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&color);
    }

    /// Fills the rectangle `[x, x + w) x [y, y + h)`.
    pub fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, color);
            }
        }
    }

    /// A line `thickness` pixels wide (Bresenham, thickened with squares).
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: Rgb, thickness: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let half = thickness / 2;
        loop {
            self.fill(x - half, y - half, thickness, thickness, color);
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

    /// Draws one 8x8 glyph scaled by `sx` across and `sy` down, top-left at
    /// (x, y). Braille patterns are drawn as dots; characters font8x8 lacks
    /// as an outlined box.
    pub fn glyph(&mut self, c: char, x: i64, y: i64, (sx, sy): (i64, i64), color: Rgb) {
        if let Some(dots) = braille(c) {
            for (i, &(col, row)) in BRAILLE_DOTS.iter().enumerate() {
                if dots & (1 << i) != 0 {
                    self.fill(
                        x + col * 4 * sx + sx,
                        y + row * 2 * sy,
                        2 * sx,
                        2 * sy,
                        color,
                    );
                }
            }
            return;
        }
        let bitmap = BASIC_FONTS
            .get(c)
            .or_else(|| BOX_FONTS.get(c))
            .or_else(|| BLOCK_FONTS.get(c))
            .or_else(|| LATIN_FONTS.get(c))
            .unwrap_or([0xFF, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0xFF]);
        for (row, bits) in bitmap.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    self.fill(x + col * sx, y + row as i64 * sy, sx, sy, color);
                }
            }
        }
    }

    /// Writes `text` from (x, y), 8 * `scale` pixels per character.
    pub fn text(&mut self, text: &str, x: i64, y: i64, scale: i64, color: Rgb) {
        for (i, c) in text.chars().enumerate() {
            self.glyph(c, x + i as i64 * 8 * scale, y, (scale, scale), color);
        }
    }

    /// Saves as an 8-bit RGB PNG, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        write_atomic(path, |w| {
            let mut encoder = png::Encoder::new(w, self.width as u32, self.height as u32);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
            writer
                .write_image_data(&self.pixels)
                .map_err(std::io::Error::other)?;
            writer.finish().map_err(std::io::Error::other)
        })
    }
}

/// Dot positions (column, row) of the eight bits of a braille pattern.
const BRAILLE_DOTS: [(i64, i64); 8] = [
    (0, 0),
    (0, 1),
    (0, 2),
    (1, 0),
    (1, 1),
    (1, 2),
    (0, 3),
    (1, 3),
];

/// The dot bits of a braille pattern character (U+2800..U+28FF).
fn braille(c: char) -> Option<u8> {
    let code = c as u32;
    (0x2800..=0x28FF)
        .contains(&code)
        .then(|| (code - 0x2800) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_lines_and_png_round_trip() {
        let mut c = Canvas::new(40, 20, [255, 255, 255]);
        c.text("A", 0, 0, 1, [0, 0, 0]);
        // 'A' in font8x8 has its top row 0x0C: columns 2 and 3 lit.
        assert_eq!(c.get(2, 0), [0, 0, 0]);
        assert_eq!(c.get(0, 0), [255, 255, 255]);
        c.line((10, 10), (30, 10), [255, 0, 0], 1);
        assert_eq!(c.get(20, 10), [255, 0, 0]);
        c.glyph('\u{2801}', 32, 0, (1, 1), [0, 0, 255]);
        assert_eq!(c.get(33, 0), [0, 0, 255]);
        let path = std::env::temp_dir().join(format!("gcse-canvas-{}.png", std::process::id()));
        c.save_png(&path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (40, 20));
        assert_eq!(
            &buf[(10 * 40 + 20) * 3..(10 * 40 + 20) * 3 + 3],
            &[255, 0, 0]
        );
        std::fs::remove_file(path).unwrap();
    }
}
