//! The dashboard as a picture: drawn into ratatui's `TestBackend`, then each
//! cell painted with its colors and an 8x16 bitmap glyph.

use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

use super::state::DashboardState;
use super::ui::render;
use crate::plot::canvas::{Canvas, Rgb};

const BACKGROUND: Rgb = [24, 24, 27];
const FOREGROUND: Rgb = [220, 220, 220];

fn rgb(color: Color, default: Rgb) -> Rgb {
    match color {
        Color::Reset => default,
        Color::Black => [0, 0, 0],
        Color::Red => [205, 49, 49],
        Color::Green => [13, 188, 121],
        Color::Yellow => [229, 229, 16],
        Color::Blue => [36, 114, 200],
        Color::Magenta => [188, 63, 188],
        Color::Cyan => [17, 168, 205],
        Color::Gray => [160, 160, 160],
        Color::DarkGray => [102, 102, 102],
        Color::LightRed => [241, 76, 76],
        Color::LightGreen => [35, 209, 139],
        Color::LightYellow => [245, 245, 67],
        Color::LightBlue => [59, 142, 234],
        Color::LightMagenta => [214, 112, 214],
        Color::LightCyan => [41, 184, 219],
        Color::White => [229, 229, 229],
        Color::Rgb(r, g, b) => [r, g, b],
        Color::Indexed(_) => default,
    }
}

/// The terminal cells of `state` rendered at `cols` x `rows`.
pub fn render_cells(state: &DashboardState, cols: u16, rows: u16) -> ratatui::buffer::Buffer {
    let mut terminal = Terminal::new(TestBackend::new(cols, rows)).expect("a test terminal");
    terminal
        .draw(|f| render(f, state))
        .expect("drawing into memory");
    terminal.backend().buffer().clone()
}

/// A picture of the dashboard at `cols` x `rows` cells, 8 x 16 pixels each.
pub fn screenshot(state: &DashboardState, cols: u16, rows: u16) -> Canvas {
    let buffer = render_cells(state, cols, rows);
    let mut canvas = Canvas::new(cols as usize * 8, rows as usize * 16, BACKGROUND);
    for y in 0..rows {
        for x in 0..cols {
            let cell = &buffer[(x, y)];
            let (mut fg, mut bg) = (rgb(cell.fg, FOREGROUND), rgb(cell.bg, BACKGROUND));
            if cell.modifier.contains(Modifier::REVERSED) {
                std::mem::swap(&mut fg, &mut bg);
            }
            let (px, py) = (x as i64 * 8, y as i64 * 16);
            canvas.fill(px, py, 8, 16, bg);
            if let Some(c) = cell.symbol().chars().next().filter(|c| *c != ' ') {
                canvas.glyph(c, px, py, (1, 2), fg);
            }
        }
    }
    canvas
}
