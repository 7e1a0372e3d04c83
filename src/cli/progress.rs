//! Showing build progress on stderr: one line per event (`plain`, also used for `tty` until the
//! live display lands) or one JSON object per line (`json`).

use std::io::Write;

use super::ProgressMode;
use crate::build::{Event, Reporter};

/// The reporter for a `--progress` mode.
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
    match mode {
        ProgressMode::Json => Box::new(Json),
        _ => Box::new(Plain),
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
            Event::Note(n) => format!("note: {n}"),
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
            Event::Note(n) => serde_json::json!({"event": "note", "message": n}),
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
