//! Progress bars for long non-training work (indicatif); they draw on stderr
//! only when it is a terminal, and not at all while the training dashboard
//! owns the terminal (a bar drawn over it would leave cells the dashboard
//! does not know to redraw).

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// Set while the training dashboard owns the terminal.
static DASHBOARD: AtomicBool = AtomicBool::new(false);

/// Whether the dashboard owns the terminal: from now on, bars are hidden
/// (or, with `false`, drawn again).
pub fn dashboard_owns_terminal(owns: bool) {
    DASHBOARD.store(owns, Ordering::SeqCst);
}

/// Whether the dashboard owns the terminal now.
pub fn dashboard_holds_terminal() -> bool {
    DASHBOARD.load(Ordering::SeqCst)
}

/// A bar of `total` with `template`, hidden while the dashboard is up.
fn bar(total: u64, template: &str) -> ProgressBar {
    if dashboard_holds_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A bar counting `total` items of `what` (e.g. "sentences"), with a rate.
pub fn items(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        &format!("{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"),
    )
}

/// A bar counting downloaded bytes of `name`; `total` when the size is known.
pub fn bytes(total: Option<u64>, name: &str) -> ProgressBar {
    bar(
        total.unwrap_or(0),
        &format!("{{spinner}} {name} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}})"),
    )
}

/// A bar counting LLM requests for `what` (e.g. "extract"), with requests/s
/// and a message slot for tokens/s.
pub fn requests(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        &format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} requests ({{per_sec}}, {{msg}}, {{eta}} left)"
        ),
    )
}
