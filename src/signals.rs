//! SIGINT and SIGTERM (Ctrl-C, a cluster's pre-emption) while a training
//! loop runs: the first asks the loop to stop as the dashboard's stop key
//! does (the step ends, a checkpoint is written, the command returns and
//! the process exits with 128 + the signal's number); a second one, or one
//! while no loop runs, ends the process at once, as without gcse's handler
//! (the terminal given back first when the dashboard holds it).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

use burn::train::Interrupter;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};

/// The loop a first signal stops, while one runs.
static ARMED: Mutex<Option<Interrupter>> = Mutex::new(None);

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Whether the handling thread started (or why it could not).
static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// While alive, a first SIGINT or SIGTERM stops the loop `interrupter`
/// belongs to (see the module docs).
#[must_use = "signals stop the loop only while the guard lives"]
pub struct StopOnSignal(());

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        *ARMED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Lets SIGINT and SIGTERM stop the loop of `interrupter` until the guard
/// is dropped.
pub fn stop_on_signals(interrupter: &Interrupter) -> Result<StopOnSignal> {
    INSTALLED
        .get_or_init(install)
        .clone()
        .map_err(|e| Error::Backend(format!("cannot handle SIGINT and SIGTERM: {e}")))?;
    *ARMED.lock().unwrap_or_else(|e| e.into_inner()) = Some(interrupter.clone());
    Ok(StopOnSignal(()))
}

/// The signal that stopped the loop, if one did.
pub fn received() -> Option<i32> {
    Some(RECEIVED.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// The usual name of `signal`.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

fn install() -> std::result::Result<(), String> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("gcse-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let armed = ARMED.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let first = RECEIVED
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                match armed {
                    Some(interrupter) if first => {
                        interrupter.stop(Some("stopped by a signal"));
                        // The dashboard says so itself; a line would land on it.
                        if !crate::progress::dashboard_holds_terminal() {
                            eprintln!(
                                "{}: stopping after this step (a checkpoint is written first); \
                             a second signal ends gcse at once",
                                name(signal)
                            );
                        }
                    }
                    _ => {
                        if crate::progress::dashboard_holds_terminal() {
                            ratatui::restore();
                        }
                        eprintln!("{}: ending at once", name(signal));
                        std::process::exit(128 + signal);
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| e.to_string())
}
