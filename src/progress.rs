//! Progress of long non-training work (evaluation, embedding, teacher
//! vectors, filtering, downloads, LLM requests), drawn by indicatif to one of
//! three places:
//!
//! - a bar on stderr when it is a terminal;
//! - the training dashboard's header while the dashboard owns the terminal
//!   (a bar drawn over it would leave cells the dashboard does not know to
//!   redraw): [`work_line`] is what it shows;
//! - plain lines on stderr when it is not a terminal (batch jobs, logs): one
//!   every [`PLAIN_EVERY`] and the last state when the work ends.

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

/// Set while the training dashboard owns the terminal.
static DASHBOARD: AtomicBool = AtomicBool::new(false);

/// The line of the work in progress while the dashboard owns the terminal.
static WORK: Mutex<Option<String>> = Mutex::new(None);

/// How often a plain progress line is written when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Whether the dashboard owns the terminal: from now on, progress goes to
/// its header (or, with `false`, to stderr again).
pub fn dashboard_owns_terminal(owns: bool) {
    DASHBOARD.store(owns, Ordering::SeqCst);
    if !owns {
        *lock_work() = None;
    }
}

/// Whether the dashboard owns the terminal now.
pub fn dashboard_holds_terminal() -> bool {
    DASHBOARD.load(Ordering::SeqCst)
}

/// The progress line of the work running under the dashboard, if any.
pub fn work_line() -> Option<String> {
    lock_work().clone()
}

fn lock_work() -> std::sync::MutexGuard<'static, Option<String>> {
    WORK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A rate in three significant figures at most: `1520/s`, `152/s`, `15.2/s`,
/// `1.52/s`, `0.152/s`.
pub fn rate(per_sec: f64) -> String {
    let digits = match per_sec.abs() {
        r if !r.is_finite() => return "--/s".into(),
        r if r >= 100.0 => 0,
        r if r >= 10.0 => 1,
        r if r >= 1.0 => 2,
        _ => 3,
    };
    format!("{per_sec:.digits$}/s")
}

/// Where a bar's lines go when it is not drawn on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// The dashboard's header ([`work_line`]).
    Dashboard,
    /// Plain lines on stderr, at most one every [`PLAIN_EVERY`].
    Plain,
}

/// A [`TermLike`] that receives indicatif's frames as text: each frame is
/// the text written between two flushes. Bars drawing here are not rate
/// limited by indicatif, so the last frame is always the bar's last state.
#[derive(Debug)]
struct LineSink {
    sink: Sink,
    state: Mutex<SinkState>,
}

#[derive(Debug)]
struct SinkState {
    frame: String,
    /// The latest frame not yet written (plain lines only).
    pending: Option<String>,
    last_written: Instant,
}

impl LineSink {
    fn new(sink: Sink) -> Self {
        Self {
            sink,
            state: Mutex::new(SinkState {
                frame: String::new(),
                pending: None,
                last_written: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn write_plain(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

impl TermLike for LineSink {
    fn width(&self) -> u16 {
        200
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.lock().frame.push_str(s.trim_start_matches('\r'));
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Ends a frame: an empty one means the bar was cleared (its work ended).
    fn flush(&self) -> std::io::Result<()> {
        let mut state = self.lock();
        let line = std::mem::take(&mut state.frame).trim().to_string();
        match self.sink {
            Sink::Dashboard => *lock_work() = (!line.is_empty()).then_some(line),
            Sink::Plain if line.is_empty() => {
                if let Some(pending) = state.pending.take() {
                    write_plain(&pending);
                }
            }
            Sink::Plain if state.last_written.elapsed() >= PLAIN_EVERY => {
                write_plain(&line);
                state.pending = None;
                state.last_written = Instant::now();
            }
            Sink::Plain => state.pending = Some(line),
        }
        Ok(())
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        match self.sink {
            Sink::Dashboard => *lock_work() = None,
            Sink::Plain => {
                if let Some(line) = self.lock().pending.take() {
                    write_plain(&line);
                }
            }
        }
    }
}

/// A bar of `total` items: `text` is the template of the line without the
/// spinner and bar, which are added on a terminal. `{rate}` is the items per
/// second in three significant figures.
fn bar(total: u64, text: &str) -> ProgressBar {
    let (target, template) = if dashboard_holds_terminal() {
        (
            ProgressDrawTarget::term_like(Box::new(LineSink::new(Sink::Dashboard))),
            text.to_string(),
        )
    } else if std::io::stderr().is_terminal() {
        (
            ProgressDrawTarget::stderr(),
            format!("{{spinner}} [{{bar:30}}] {text}"),
        )
    } else {
        (
            ProgressDrawTarget::term_like(Box::new(LineSink::new(Sink::Plain))),
            text.to_string(),
        )
    };
    ProgressBar::with_draw_target(Some(total), target).with_style(style(&template))
}

/// The style of `template`, with the `{rate}` key.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate(state.per_sec()));
            },
        )
}

/// A bar counting `total` items of `what` (e.g. "sentences"), with a rate.
pub fn items(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        &format!("{{pos}}/{{len}} {what} ({{rate}}, {{eta}} left)"),
    )
}

/// A bar counting downloaded bytes of `name`; `total` when the size is known.
pub fn bytes(total: Option<u64>, name: &str) -> ProgressBar {
    let bar = bar(
        total.unwrap_or(0),
        &format!("{name} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}})"),
    );
    if total.is_none() {
        bar.unset_length();
    }
    bar
}

/// A bar counting LLM requests for `what` (e.g. "extract"), with requests/s
/// and a message slot for tokens/s.
pub fn requests(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        &format!("{what} {{pos}}/{{len}} requests ({{rate}}, {{msg}}, {{eta}} left)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_keep_three_significant_figures() {
        let shown: Vec<String> = [1519.937, 151.9376, 15.19376, 1.519376, 0.1519376, 0.0]
            .into_iter()
            .map(rate)
            .collect();
        assert_eq!(
            shown,
            ["1520/s", "152/s", "15.2/s", "1.52/s", "0.152/s", "0.000/s"]
        );
        assert_eq!(rate(f64::NAN), "--/s");
    }

    #[test]
    fn a_dashboard_sink_fills_the_work_line_and_clears_it_when_done() {
        let target = ProgressDrawTarget::term_like(Box::new(LineSink::new(Sink::Dashboard)));
        let bar = ProgressBar::with_draw_target(Some(10), target)
            .with_style(style("{pos}/{len} sentences ({rate}, {eta} left)"));
        bar.inc(4);
        bar.tick();
        let line = work_line().expect("a work line");
        assert!(line.starts_with("4/10 sentences ("), "{line}");
        assert!(line.ends_with(" left)"), "{line}");
        drop(bar);
        assert_eq!(work_line(), None);
    }

    #[test]
    fn a_line_sink_keeps_the_last_frame_between_flushes() {
        let sink = LineSink::new(Sink::Plain);
        sink.write_str("\r1/2 items").unwrap();
        sink.write_str("   ").unwrap();
        sink.flush().unwrap();
        sink.write_str("2/2 items").unwrap();
        sink.flush().unwrap();
        assert_eq!(sink.lock().pending.as_deref(), Some("2/2 items"));
        sink.flush().unwrap();
        assert_eq!(
            sink.lock().pending,
            None,
            "a cleared bar writes its last line"
        );
    }
}
