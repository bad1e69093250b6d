//! The training dashboard: state, drawing and renderers kept apart.

pub mod renderer;
pub mod screenshot;
pub mod state;
pub mod ui;
