//! Progress bars for long non-training work (indicatif); they draw on stderr
//! only when it is a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `total` items of `what` (e.g. "sentences"), with a rate.
pub fn items(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// A bar counting downloaded bytes of `name`; `total` when the size is known.
pub fn bytes(total: Option<u64>, name: &str) -> ProgressBar {
    let bar = ProgressBar::new(total.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {name} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// A bar counting LLM requests for `what` (e.g. "extract"), with requests/s
/// and a message slot for tokens/s.
pub fn requests(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} requests ({{per_sec}}, {{msg}}, {{eta}} left)"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
