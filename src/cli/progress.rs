//! Showing build progress on stderr: a live display on a terminal (`tty`: indicatif, finished steps
//! scroll above a spinner for the running one), one line per event (`plain`), or one JSON object
//! per line (`json`). `auto` picks `tty` when stderr is a terminal (and `TERM` is not `dumb`),
//! `plain` elsewhere (CI logs, pipes).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::ProgressMode;
use crate::build::{Event, Reporter};

/// The reporter for a `--progress` mode.
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
    let tty = std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    match mode {
        ProgressMode::Json => Box::new(Json),
        ProgressMode::Tty => Box::new(Tty::new()),
        ProgressMode::Auto if tty => Box::new(Tty::new()),
        _ => Box::new(Plain),
    }
}

/// A spinner for the running step; finished steps are printed above it with their duration.
struct Tty {
    bar: ProgressBar,
    current: std::cell::RefCell<Option<(String, Instant)>>,
}

impl Tty {
    fn new() -> Tty {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Tty { bar, current: std::cell::RefCell::new(None) }
    }

    fn finish_current(&self) {
        if let Some((line, start)) = self.current.borrow_mut().take() {
            self.bar.println(format!("{line}  ({:.1}s)", start.elapsed().as_secs_f64()));
        }
    }
}

impl Reporter for Tty {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::Step { stage, n, total, text } => {
                self.finish_current();
                let line = format!("[{stage} {n}/{total}] {text}");
                self.bar.set_message(line.clone());
                *self.current.borrow_mut() = Some((line, Instant::now()));
            }
            Event::Base { stage, what } => {
                self.finish_current();
                self.bar.println(format!("[{stage}] FROM {what}"));
            }
            Event::Layer { .. } => {}
            Event::Cached { .. } => {
                if let Some((line, _)) = self.current.borrow_mut().take() {
                    self.bar.println(format!("{line}  CACHED"));
                }
            }
            Event::Output { text, .. } => self.bar.println(format!("  | {}", text.trim_end_matches('\n'))),
            Event::Note(n) => self.bar.println(format!("note: {n}")),
            Event::Warning(w) => self.bar.println(format!("warning: {w}")),
        }
    }

    fn finish(&self) {
        self.finish_current();
        self.bar.finish_and_clear();
    }
}

struct Plain;

impl Reporter for Plain {
    fn event(&self, e: &Event<'_>) {
        let line = match e {
            Event::Base { stage, what } => format!("[{stage}] FROM {what}"),
            Event::Step { stage, n, total, text } => format!("[{stage} {n}/{total}] {text}"),
            Event::Layer { stage, digest, size, .. } => {
                format!("[{stage}] layer {digest} ({})", human(*size))
            }
            Event::Output { stage, n, text } => format!("[{stage} {n}] {}", text.trim_end_matches('\n')),
            Event::Cached { stage, n } => format!("[{stage} {n}] CACHED"),
            Event::Note(n) => format!("note: {n}"),
            Event::Warning(w) => format!("warning: {w}"),
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

struct Json;

impl Reporter for Json {
    fn event(&self, e: &Event<'_>) {
        let v = match e {
            Event::Base { stage, what } => serde_json::json!({"event": "base", "stage": stage, "base": what}),
            Event::Step { stage, n, total, text } => {
                serde_json::json!({"event": "step", "stage": stage, "step": n, "total": total, "instruction": text})
            }
            Event::Layer { stage, digest, size, .. } => {
                serde_json::json!({"event": "layer", "stage": stage, "digest": digest, "size": size})
            }
            Event::Output { stage, n, text } => {
                serde_json::json!({"event": "output", "stage": stage, "step": n, "text": text})
            }
            Event::Cached { stage, n } => serde_json::json!({"event": "cached", "stage": stage, "step": n}),
            Event::Note(n) => serde_json::json!({"event": "note", "message": n}),
            Event::Warning(w) => serde_json::json!({"event": "warning", "message": w}),
        };
        let _ = writeln!(std::io::stderr().lock(), "{v}");
    }
}

/// `1.2 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
