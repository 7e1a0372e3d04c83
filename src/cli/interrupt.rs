//! Ctrl-C and a CI job's cancel (`SIGINT`, `SIGTERM`) during a build: the running steps are
//! shown `CANCELED` and the build's error says why, as buildx shows a canceled build, then the
//! process ends by the signal's default action, as it would without this (so `$?` is 130 or
//! 143 and a caller sees the signal). The steps die with the process: their helpers, which
//! ignore these signals, see it go and kill them (`crate::sandbox::helper`), and the next build
//! clears what they left.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{Failure, progress};
use crate::build::Reporter;

static CANCELED: AtomicBool = AtomicBool::new(false);

/// Watches for the signals on a thread of its own while the build reports to `reporter`;
/// `json`: the error is a JSON event. Without a handler (it could not be installed) a signal
/// ends the process at once, as before. Showing the cancel may block (on a stderr nobody reads
/// any more): a second signal, or three seconds, ends the process all the same.
pub fn watch(reporter: Arc<dyn Reporter + Send>, json: bool) {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else { return };
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut arriving = signals.forever();
        let Some(signal) = arriving.next() else { return };
        CANCELED.store(true, Ordering::SeqCst);
        let _ = std::thread::Builder::new().name("cancel".into()).spawn(move || {
            reporter.cancel();
            reporter.finish();
            let name = signal_hook::low_level::signal_name(signal).unwrap_or("a signal");
            let text = format!("error: the build was canceled ({name})\n");
            let text =
                if json { progress::failure_json(&Failure { text, code: exit_code(signal) }) } else { text };
            let _ = std::io::stderr().write_all(text.as_bytes());
            end(signal);
        });
        let _ = std::thread::Builder::new().name("cancel deadline".into()).spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(3));
            end(signal);
        });
        if let Some(again) = arriving.next() {
            end(again);
        }
    });
    drop(spawned);
}

/// The status a shell shows for a process `signal` ended: 128 + its number.
fn exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

/// Ends the process by `signal`'s default action (so its parent sees the signal), or with the
/// status a shell would show for it.
fn end(signal: i32) -> ! {
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(i32::from(exit_code(signal)))
}

/// Whether a signal is stopping the build: its thread then ends the process, and the build's own
/// result must not be reported.
pub fn canceled() -> bool {
    CANCELED.load(Ordering::SeqCst)
}

/// Waits for the signal's thread to end the process.
pub fn wait_for_the_end() -> ! {
    loop {
        std::thread::park();
    }
}
