//! Pictures without a plotting library: a raster with bitmap text, and line
//! charts on it.

pub mod canvas;
pub mod chart;
