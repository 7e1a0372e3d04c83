//! Showing build progress on stderr, as `docker buildx build --progress=…` does:
//!
//! - `plain`: BuildKit's plain format, which people and log scrapers already read: every line of a
//!   step starts with its number (`#5`), numbered in the order steps start; a step's lines form a
//!   block under its name (`#5 [build 2/4] WORKDIR /src`), RUN output carries seconds since the
//!   step started (`#7 0.050 compiling`), and a step ends with `DONE 1.1s`, `CACHED` or
//!   `ERROR: …` (or `CANCELED`, when a signal stops the build). When steps run at the same time
//!   their lines interleave and each change of step repeats the step's name after a blank line,
//!   as BuildKit prints them.
//! - `tty`: the same lines scrolling (so a step's output sits under its name), with a live line
//!   per running step and its elapsed time (indicatif) below them.
//! - `json` (and `rawjson`, the same here): one JSON object per line, each with a `time` (RFC
//!   3339, UTC) and an `event`; nothing else reaches stderr, failures included. Events: `task`
//!   and `step` (`id` = plain's `#N`, `name`; a step adds `stage`, `step`, `total`,
//!   `instruction`), `output` (`id`, `elapsed` seconds, `text`), `status` (`id`, `text`),
//!   `cached`, `done` (`id`, `seconds`), `layer` (`stage`, `digest`, `size`), `warning`
//!   (`message`; a build check adds `rule` and `line`), `note` (`message`), `result` (`digest`,
//!   `config`, `size`, `tags`, `steps_run`, `steps_cached`, `seconds`), and `error`: a step's
//!   (`id`, `name`, `message`; `canceled` for one a signal stopped) or the build's, last
//!   (`message`, `exit_code`).
//! - `quiet`: nothing but errors.
//!
//! Every mode but quiet ends with a summary: steps run and cached, total time, the image's
//! digest and size. `auto` picks `tty` when stderr is a terminal (and `TERM` is not `dumb`),
//! `plain` elsewhere (CI logs, pipes).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Failure, ProgressMode};
use crate::build::{Event, Reporter};

/// The reporter for a `--progress` mode.
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter + Send> {
    let tty = std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    match mode {
        ProgressMode::Json | ProgressMode::Rawjson => Box::new(Json(Mutex::new(Core::new(real_clock())))),
        ProgressMode::Quiet => Box::new(crate::build::progress::Quiet),
        ProgressMode::Tty => Box::new(Tty::new()),
        ProgressMode::Auto if tty => Box::new(Tty::new()),
        _ => Box::new(Plain(Mutex::new(Core::new(real_clock())))),
    }
}

/// Whether `mode` writes JSON (so a failure must be JSON too).
pub fn is_json(mode: ProgressMode) -> bool {
    matches!(mode, ProgressMode::Json | ProgressMode::Rawjson)
}

/// A failure as the one JSON event `--progress=json` prints for it.
pub fn failure_json(f: &Failure) -> String {
    let v = timed(serde_json::json!({
        "event": "error",
        "message": f.text.trim_end().strip_prefix("error: ").unwrap_or(f.text.trim_end()),
        "exit_code": f.code,
    }));
    format!("{v}\n")
}

/// `v`, a JSON event, with its `time`: now.
fn timed(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("time".into(), serde_json::json!(rfc3339(SystemTime::now())));
    }
    v
}

/// A step's `error` event.
fn step_error(id: usize, name: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"event": "error", "id": id, "name": name, "message": message})
}

/// Time since the build started.
type Clock = Box<dyn Fn() -> Duration + Send>;

fn real_clock() -> Clock {
    let start = Instant::now();
    Box::new(move || start.elapsed())
}

/// What is known of a step or task.
struct Vertex {
    /// BuildKit's `#N`.
    id: usize,
    /// `[build 2/4] WORKDIR /src`, `[internal] load build context`.
    name: String,
    started: Duration,
    state: State,
    /// A Dockerfile step after `FROM`: counted in the summary.
    counted: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Ended,
}

/// Steps by stage label and number, tasks by name.
#[derive(Clone, Hash, PartialEq, Eq)]
enum Key {
    Step(String, usize),
    Task(String),
    /// A `FROM` step, by its text: stages on the same base share it.
    From(String),
}

impl Key {
    fn of(e: &Event<'_>) -> Option<Key> {
        match e {
            Event::Step { stage, n, .. }
            | Event::Cached { stage, n }
            | Event::Output { stage, n, .. }
            | Event::StepStatus { stage, n, .. }
            | Event::Download { stage, n, .. }
            | Event::Done { stage, n }
            | Event::Failed { stage, n, .. } => Some(Key::Step(stage.to_string(), *n)),
            Event::Task { name } | Event::TaskStatus { name, .. } | Event::TaskDone { name } => {
                Some(Key::Task(name.to_string()))
            }
            _ => None,
        }
    }
}

/// The renderers' shared bookkeeping — step numbers, timings, counts — and the text of `plain`.
/// Only the vertices live here, never their output, so memory stays flat however much a step
/// prints.
struct Core {
    clock: Clock,
    vertices: HashMap<Key, Vertex>,
    /// Each stage's `FROM` step → its shared [`Key::From`].
    aliases: HashMap<Key, Key>,
    /// The vertex whose block the last line belongs to.
    open: Option<usize>,
    wrote: bool,
    run: usize,
    cached: usize,
    failed: bool,
    summarized: bool,
    /// Stopped by a signal: later events are not shown.
    canceled: bool,
}

/// What an event did to a vertex, for the TTY's live lines.
enum Change {
    None,
    Started(usize, String),
    Ended(usize),
}

impl Core {
    fn new(clock: Clock) -> Core {
        Core {
            clock,
            vertices: HashMap::new(),
            aliases: HashMap::new(),
            open: None,
            wrote: false,
            run: 0,
            cached: 0,
            failed: false,
            summarized: false,
            canceled: false,
        }
    }

    /// The build is stopped by a signal: every running vertex ends, and is shown `CANCELED` as
    /// BuildKit shows a vertex whose context was canceled (`#7 CANCELED` in its block), in the
    /// order they started. Returns those vertices and the `plain` lines, the summary last.
    fn cancel(&mut self) -> (Vec<(usize, String)>, Vec<String>) {
        let mut running: Vec<(usize, String)> = self
            .vertices
            .values_mut()
            .filter(|v| v.state == State::Running)
            .map(|v| {
                v.state = State::Ended;
                (v.id, v.name.clone())
            })
            .collect();
        running.sort();
        running.dedup_by_key(|(id, _)| *id);
        let mut out = Vec::new();
        for (id, name) in &running {
            self.block_line(*id, name, "CANCELED", &mut out);
        }
        self.canceled = true;
        if !self.summarized {
            self.summarized = true;
            let secs = (self.clock)().as_secs_f64();
            out.extend([String::new(), format!("Canceled after {secs:.1}s: {}", self.steps())]);
        }
        (running, out)
    }

    /// Records `e` and returns the vertex it concerns (as it is now).
    fn track(&mut self, e: &Event<'_>) -> (Option<&Vertex>, Change) {
        let now = (self.clock)();
        let Some(mut key) = Key::of(e) else { return (None, Change::None) };
        let mut change = Change::None;
        if let Some(text) = from_text(e) {
            // Stages FROM the same image share BuildKit's vertex: one number, and the name of the
            // first stage that used it.
            let from = Key::From(text.to_string());
            self.aliases.insert(key, from.clone());
            if let Some(v) = self.vertices.get_mut(&from) {
                (v.started, v.state) = (now, State::Running);
                change = Change::Started(v.id, v.name.clone());
                return (self.vertices.get(&from), change);
            }
            key = from;
        } else if let Some(from) = self.aliases.get(&key) {
            key = from.clone();
        }
        let name = match e {
            Event::Step { shown, n, total, text, .. } => {
                Some((step_name(shown, *n, *total, text), from_text(e).is_none()))
            }
            Event::Task { name } => Some((name.to_string(), false)),
            _ => None,
        };
        if let Some((name, counted)) = name {
            // A step started again (a stage built twice) keeps its number, as BuildKit's vertex
            // does.
            let id = self.vertices.get(&key).map_or(self.vertices.len() + 1, |old| old.id);
            change = Change::Started(id, name.clone());
            self.vertices
                .insert(key.clone(), Vertex { id, name, started: now, state: State::Running, counted });
            return (self.vertices.get(&key), change);
        }
        let Some(v) = self.vertices.get_mut(&key) else { return (None, change) };
        let ends = matches!(
            e,
            Event::Cached { .. } | Event::Done { .. } | Event::Failed { .. } | Event::TaskDone { .. }
        );
        if ends && v.state == State::Running {
            v.state = State::Ended;
            change = Change::Ended(v.id);
            match e {
                Event::Cached { .. } if v.counted => self.cached += 1,
                Event::Done { .. } if v.counted => self.run += 1,
                Event::Failed { .. } => self.failed = true,
                _ => {}
            }
        } else if ends {
            // A step that was already CACHED then reports Done: nothing more to show.
            return (None, change);
        }
        (self.vertices.get(&key), change)
    }

    /// The `plain` lines for `e` (no newlines).
    fn plain(&mut self, e: &Event<'_>) -> (Vec<String>, Change) {
        if self.canceled {
            return (Vec::new(), Change::None);
        }
        let now = (self.clock)();
        let mut out = Vec::new();
        let (vertex, change) = self.track(e);
        let Some(v) = vertex else {
            let line = match e {
                Event::Check { rule, message, line } => Some(check_line(rule, message, *line)),
                Event::Warning(w) => Some(format!("warning: {w}")),
                Event::Note(n) => Some(format!("note: {n}")),
                Event::Result { digest, size, tags, .. } => {
                    self.summarized = true;
                    Some(self.summary(Some((digest, *size, tags))))
                }
                // Output of a step never announced (should not happen): keep it visible.
                Event::Output { text, .. } => Some(text.trim_end_matches('\n').to_string()),
                _ => None,
            };
            if let Some(line) = line {
                if self.wrote {
                    out.push(String::new());
                }
                out.push(line);
                self.wrote = true;
                self.open = None;
            }
            return (out, change);
        };
        let (id, name, since) = (v.id, v.name.clone(), now.saturating_sub(v.started));
        // A vertex started again (a shared base) shows its name again.
        if matches!(change, Change::Started(..)) && self.open == Some(id) {
            self.open = None;
        }
        let mut line = |text: String, out: &mut Vec<String>| self.block_line(id, &name, &text, out);
        match e {
            Event::Step { .. } | Event::Task { .. } => line(String::new(), &mut out),
            Event::Output { text, .. } => {
                line(format!("{:.3} {}", since.as_secs_f64(), text.trim_end_matches('\n')), &mut out)
            }
            Event::TaskStatus { text, .. } | Event::StepStatus { text, .. } => {
                line(text.to_string(), &mut out)
            }
            // As BuildKit shows a finished blob of a pull.
            Event::Download { digest, size, millis, .. } => {
                let size = go_size(*size);
                line(format!("{digest} {size} / {size} {:.1}s done", *millis as f64 / 1000.0), &mut out)
            }
            Event::Cached { .. } => line("CACHED".into(), &mut out),
            Event::Done { .. } | Event::TaskDone { .. } => {
                line(format!("DONE {:.1}s", since.as_secs_f64()), &mut out)
            }
            Event::Failed { message, .. } => {
                line(format!("ERROR: {message}"), &mut out);
                out.extend(["------".to_string(), format!(" > {name}:"), "------".to_string()]);
                self.open = None;
            }
            _ => {}
        }
        (out, change)
    }

    /// Adds `#id text` to `out` (nothing for an empty `text`), under the vertex's name when the
    /// last line belonged to another vertex: its block, as BuildKit's printer repeats it.
    fn block_line(&mut self, id: usize, name: &str, text: &str, out: &mut Vec<String>) {
        if self.open != Some(id) {
            if self.wrote {
                out.push(String::new());
            }
            out.push(format!("#{id} {name}"));
            self.open = Some(id);
            self.wrote = true;
        }
        if !text.is_empty() {
            out.push(format!("#{id} {text}"));
        }
    }

    /// `e` as a JSON event.
    fn json(&mut self, e: &Event<'_>) -> Option<serde_json::Value> {
        use serde_json::json;
        if self.canceled {
            return None;
        }
        let now = (self.clock)();
        let (vertex, _) = self.track(e);
        let vertex = vertex.map(|v| (v.id, v.name.clone(), now.saturating_sub(v.started).as_secs_f64()));
        let v = match (e, vertex) {
            (Event::Step { stage, n, total, text, .. }, Some((id, name, _))) => json!({
                "event": "step", "id": id, "name": name, "stage": stage, "step": n, "total": total,
                "instruction": text,
            }),
            (Event::Task { .. }, Some((id, name, _))) => json!({"event": "task", "id": id, "name": name}),
            (Event::Output { text, .. }, Some((id, _, t))) => {
                json!({"event": "output", "id": id, "elapsed": round3(t), "text": text})
            }
            (Event::Output { stage, n, text }, None) => {
                json!({"event": "output", "stage": stage, "step": n, "text": text})
            }
            (Event::TaskStatus { text, .. } | Event::StepStatus { text, .. }, Some((id, _, _))) => {
                json!({"event": "status", "id": id, "text": text})
            }
            (Event::Download { digest, size, millis, .. }, Some((id, _, _))) => {
                let seconds = round3(*millis as f64 / 1000.0);
                json!({"event": "download", "id": id, "digest": digest, "size": size, "seconds": seconds})
            }
            (Event::Cached { .. }, Some((id, _, _))) => json!({"event": "cached", "id": id}),
            (Event::Done { .. } | Event::TaskDone { .. }, Some((id, _, t))) => {
                json!({"event": "done", "id": id, "seconds": round3(t)})
            }
            (Event::Failed { message, .. }, Some((id, name, _))) => step_error(id, &name, message),
            (Event::Layer { stage, digest, size, .. }, _) => {
                json!({"event": "layer", "stage": stage, "digest": digest, "size": size})
            }
            (Event::Check { rule, message, line }, _) => {
                json!({"event": "warning", "rule": rule, "message": message, "line": line})
            }
            (Event::Warning(w), _) => json!({"event": "warning", "message": w}),
            (Event::Note(n), _) => json!({"event": "note", "message": n}),
            (Event::Result { digest, config, size, tags }, _) => {
                self.summarized = true;
                json!({
                    "event": "result", "digest": digest, "config": config, "size": size, "tags": tags,
                    "steps_run": self.run, "steps_cached": self.cached,
                    "seconds": round3(now.as_secs_f64()),
                })
            }
            _ => return None,
        };
        Some(timed(v))
    }

    /// The last line: `Built sha256:… (1.09MB) in 2.4s: 3 steps run, 2 cached; named app:1`,
    /// or, without an image, `Failed after 2.4s: …`.
    fn summary(&self, image: Option<(&str, u64, &[String])>) -> String {
        let secs = (self.clock)().as_secs_f64();
        let steps = self.steps();
        match image {
            Some((digest, size, tags)) => {
                let named =
                    if tags.is_empty() { String::new() } else { format!("; named {}", tags.join(", ")) };
                format!("Built {digest} ({}) in {secs:.1}s: {steps}{named}", go_size(size))
            }
            None => format!("Failed after {secs:.1}s: {steps}"),
        }
    }

    /// `3 steps run, 2 cached`.
    fn steps(&self) -> String {
        format!("{} step{} run, {} cached", self.run, if self.run == 1 { "" } else { "s" }, self.cached)
    }

    /// The summary of a build that ended without a result, if it got as far as a step.
    fn failure_summary(&mut self) -> Option<String> {
        let stepped = self.vertices.keys().any(|k| !matches!(k, Key::Task(_)));
        if self.summarized || !stepped {
            return None;
        }
        self.summarized = true;
        Some(self.summary(None))
    }
}

/// The text of a stage's `FROM` step, which pulls rather than runs (not counted as run) and is
/// shared by the stages FROM the same image. It is step 1 when there is one; a stage on scratch or
/// on another stage has none, and its step 1 is a step like the others.
fn from_text<'e>(e: &Event<'e>) -> Option<&'e str> {
    match e {
        Event::Step { n: 1, text, .. } if text.starts_with("FROM ") => Some(text),
        _ => None,
    }
}

/// BuildKit's step name: `[stage n/total] TEXT`, the number padded to the width of the total.
fn step_name(shown: &str, n: usize, total: usize, text: &str) -> String {
    let width = total.to_string().len();
    let stage = if shown.is_empty() { String::new() } else { format!("{shown} ") };
    format!("[{stage}{n:>width$}/{total}] {text}")
}

/// BuildKit's build-check line.
fn check_line(rule: &str, message: &str, line: usize) -> String {
    match line {
        0 => format!("WARN: {rule}: {message}"),
        l => format!("WARN: {rule}: {message} (line {l})"),
    }
}

fn round3(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// Sizes as BuildKit prints them (go-units `HumanSizeWithPrecision(n, 3)`): `38B`, `1.5kB`,
/// `1.09MB`.
pub fn go_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    // `%.3g`: three significant digits, trailing zeros dropped.
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

/// `2026-12-05T15:20:01.123Z`: the image config's RFC 3339 form, with milliseconds.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = crate::image::config::rfc3339(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), d.subsec_millis())
}

/// Writes `lines` to stderr in one call: stderr is unbuffered, and `writeln!` would make a system
/// call per piece (a JSON event was ~100), and one write keeps a line whole beside other writers.
fn write_lines(lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `--progress=plain`.
struct Plain(Mutex<Core>);

impl Reporter for Plain {
    fn event(&self, e: &Event<'_>) {
        let Ok(mut core) = self.0.lock() else { return };
        write_lines(&core.plain(e).0);
    }

    fn finish(&self) {
        let Ok(mut core) = self.0.lock() else { return };
        if let Some(line) = core.failure_summary() {
            write_lines(&[String::new(), line]);
        }
    }

    fn cancel(&self) {
        let Ok(mut core) = self.0.lock() else { return };
        write_lines(&core.cancel().1);
    }
}

/// `--progress=json`.
struct Json(Mutex<Core>);

impl Reporter for Json {
    fn event(&self, e: &Event<'_>) {
        let Ok(mut core) = self.0.lock() else { return };
        if let Some(v) = core.json(e) {
            write_lines(&[v.to_string()]);
        }
    }

    fn cancel(&self) {
        let Ok(mut core) = self.0.lock() else { return };
        let lines: Vec<String> = core
            .cancel()
            .0
            .into_iter()
            .map(|(id, name)| timed(step_error(id, &name, "canceled")).to_string())
            .collect();
        write_lines(&lines);
    }
}

/// `--progress=tty`: the plain lines scroll above one live line per running step.
struct Tty {
    multi: MultiProgress,
    core: Mutex<Core>,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Tty {
    fn new() -> Tty {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        Tty { multi, core: Mutex::new(Core::new(real_clock())), bars: Mutex::new(HashMap::new()) }
    }

    fn println(&self, lines: &[String]) {
        for l in lines {
            let _ = self.multi.println(l);
        }
    }
}

impl Reporter for Tty {
    fn event(&self, e: &Event<'_>) {
        let Ok(mut core) = self.core.lock() else { return };
        let (lines, change) = core.plain(e);
        self.println(&lines);
        let Ok(mut bars) = self.bars.lock() else { return };
        match change {
            Change::Started(id, name) => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed:>}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("#{id} {name}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(id, bar);
            }
            Change::Ended(id) => {
                if let Some(bar) = bars.remove(&id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            Change::None => {}
        }
    }

    fn finish(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
            }
        }
        let Ok(mut core) = self.core.lock() else { return };
        if let Some(line) = core.failure_summary() {
            self.println(&[String::new(), line]);
        }
        let _ = self.multi.clear();
    }

    fn cancel(&self) {
        let Ok(mut core) = self.core.lock() else { return };
        let lines = core.cancel().1;
        if let Ok(mut bars) = self.bars.lock() {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        self.println(&lines);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A core whose clock reads the returned counter (milliseconds), so timings are fixed.
    fn core() -> (Core, Arc<AtomicU64>) {
        let ms = Arc::new(AtomicU64::new(0));
        let clock = ms.clone();
        (Core::new(Box::new(move || Duration::from_millis(clock.load(Ordering::SeqCst)))), ms)
    }

    /// Feeds events (a `None` advances the clock by 100 ms) and returns the plain text.
    fn plain(events: &[Option<Event<'_>>]) -> String {
        let (mut core, ms) = core();
        let mut out = String::new();
        for e in events {
            match e {
                Some(e) => core.plain(e).0.iter().for_each(|l| out.push_str(&format!("{l}\n"))),
                None => {
                    ms.fetch_add(100, Ordering::SeqCst);
                }
            }
        }
        out
    }

    fn step<'a>(stage: &'a str, n: usize, total: usize, text: &'a str) -> Option<Event<'a>> {
        Some(Event::Step { stage, shown: stage, n, total, text })
    }

    fn task(name: &str) -> [Option<Event<'_>>; 2] {
        [Some(Event::Task { name }), Some(Event::TaskDone { name })]
    }

    #[test]
    fn plain_is_buildkits_format() {
        let mut events = vec![Some(Event::Task { name: "[internal] load build definition from Dockerfile" })];
        events.push(Some(Event::TaskStatus {
            name: "[internal] load build definition from Dockerfile",
            text: "transferring dockerfile: 385B done",
        }));
        events.push(Some(Event::TaskDone { name: "[internal] load build definition from Dockerfile" }));
        events.extend(task("[internal] load build context"));
        events.extend([
            step("build", 1, 3, "FROM busybox"),
            Some(Event::StepStatus {
                stage: "build",
                n: 1,
                text: "resolve docker.io/library/busybox:latest done",
            }),
            None,
            Some(Event::Download {
                stage: "build",
                n: 1,
                digest: "sha256:f2ab",
                size: 1_090_000,
                millis: 70,
            }),
            Some(Event::Done { stage: "build", n: 1 }),
            step("build", 2, 3, "COPY a.txt ."),
            Some(Event::Cached { stage: "build", n: 2 }),
            Some(Event::Done { stage: "build", n: 2 }),
            step("build", 3, 3, "RUN make"),
            None,
            Some(Event::Output { stage: "build", n: 3, text: "compiling\n" }),
            None,
            None,
            Some(Event::Done { stage: "build", n: 3 }),
            Some(Event::Note("kept")),
            Some(Event::Result { digest: "sha256:abc", config: "sha256:def", size: 1_090_000, tags: &[] }),
        ]);
        let want = "\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 385B done
#1 DONE 0.0s

#2 [internal] load build context
#2 DONE 0.0s

#3 [build 1/3] FROM busybox
#3 resolve docker.io/library/busybox:latest done
#3 sha256:f2ab 1.09MB / 1.09MB 0.1s done
#3 DONE 0.1s

#4 [build 2/3] COPY a.txt .
#4 CACHED

#5 [build 3/3] RUN make
#5 0.100 compiling
#5 DONE 0.3s

note: kept

Built sha256:abc (1.09MB) in 0.4s: 1 step run, 1 cached
";
        assert_eq!(plain(&events), want);
    }

    /// Steps running at the same time: every line carries its step's number, and each switch
    /// repeats the step's name after a blank line, as BuildKit's plain printer does.
    #[test]
    fn plain_interleaves_concurrent_steps() {
        let events = [
            step("a", 2, 2, "RUN x"),
            step("b", 2, 2, "RUN y"),
            Some(Event::Output { stage: "a", n: 2, text: "from a\n" }),
            Some(Event::Output { stage: "b", n: 2, text: "from b\n" }),
            Some(Event::Done { stage: "a", n: 2 }),
            Some(Event::Failed { stage: "b", n: 2, message: "RUN failed (exit 3): y" }),
        ];
        let want = "\
#1 [a 2/2] RUN x

#2 [b 2/2] RUN y

#1 [a 2/2] RUN x
#1 0.000 from a

#2 [b 2/2] RUN y
#2 0.000 from b

#1 [a 2/2] RUN x
#1 DONE 0.0s

#2 [b 2/2] RUN y
#2 ERROR: RUN failed (exit 3): y
------
 > [b 2/2] RUN y:
------
";
        assert_eq!(plain(&events), want);
    }

    /// As BuildKit shows a canceled build: the running steps `CANCELED`, then nothing.
    #[test]
    fn a_signal_shows_the_running_steps_canceled_and_nothing_after() {
        let (mut core, ms) = core();
        for e in [
            step("a", 2, 2, "RUN x"),
            step("b", 2, 2, "RUN y"),
            step("c", 2, 2, "RUN z"),
            Some(Event::Done { stage: "a", n: 2 }),
            Some(Event::Output { stage: "c", n: 2, text: "from c\n" }),
        ]
        .into_iter()
        .flatten()
        {
            core.plain(&e);
        }
        ms.fetch_add(1500, Ordering::SeqCst);
        let (canceled, lines) = core.cancel();
        assert_eq!(canceled, [(2, "[b 2/2] RUN y".to_string()), (3, "[c 2/2] RUN z".to_string())]);
        let want = "\n#2 [b 2/2] RUN y\n#2 CANCELED\n\n#3 [c 2/2] RUN z\n#3 CANCELED\n\n\
            Canceled after 1.5s: 1 step run, 0 cached";
        assert_eq!(lines.join("\n"), want);
        // The steps then fail (their processes got the signal too): nothing more is shown.
        let failed = Event::Failed { stage: "b", n: 2, message: "RUN failed (exit 130): y" };
        assert!(core.plain(&failed).0.is_empty());
        assert_eq!(core.json(&failed), None);
        assert_eq!(core.failure_summary(), None);
    }

    /// As BuildKit: stages on the same base share its `FROM` vertex, under the first stage's name.
    #[test]
    fn stages_share_their_base_vertex() {
        let events = [
            step("a", 1, 2, "FROM busybox"),
            Some(Event::Done { stage: "a", n: 1 }),
            step("b", 1, 2, "FROM busybox"),
            Some(Event::Done { stage: "b", n: 1 }),
            step("b", 2, 2, "RUN x"),
        ];
        let want = "\
#1 [a 1/2] FROM busybox
#1 DONE 0.0s

#1 [a 1/2] FROM busybox
#1 DONE 0.0s

#2 [b 2/2] RUN x
";
        assert_eq!(plain(&events), want);
    }

    #[test]
    fn failure_summary_once_a_step_started() {
        let (mut core, _) = core();
        core.plain(&Event::Task { name: "[internal] load build definition from Dockerfile" });
        assert_eq!(core.failure_summary(), None, "no step ran: no summary");
        core.plain(&Event::Step { stage: "s", shown: "", n: 2, total: 2, text: "RUN x" });
        core.plain(&Event::Failed { stage: "s", n: 2, message: "no" });
        assert_eq!(core.failure_summary().as_deref(), Some("Failed after 0.0s: 0 steps run, 0 cached"));
        assert_eq!(core.failure_summary(), None, "printed once");
    }

    #[test]
    fn json_events_parse_and_carry_ids_and_times() {
        let (mut core, ms) = core();
        let events = [
            Event::Task { name: "[internal] load build context" },
            Event::TaskDone { name: "[internal] load build context" },
            Event::Step { stage: "s", shown: "", n: 2, total: 2, text: "RUN x" },
            Event::Output { stage: "s", n: 2, text: "out\n" },
            Event::Cached { stage: "s", n: 9 },
            Event::Failed { stage: "s", n: 2, message: "RUN failed" },
            Event::Check { rule: "FromAsCasing", message: "casing", line: 3 },
            Event::Warning("w"),
            Event::Result { digest: "sha256:abc", config: "sha256:def", size: 5, tags: &["a:1".to_string()] },
        ];
        let mut lines = Vec::new();
        for e in &events {
            ms.fetch_add(50, Ordering::SeqCst);
            lines.extend(core.json(e).map(|v| v.to_string()));
        }
        let parsed: Vec<serde_json::Value> =
            lines.iter().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        let kinds: Vec<&str> = parsed.iter().map(|v| v["event"].as_str().unwrap_or_default()).collect();
        assert_eq!(kinds, ["task", "done", "step", "output", "error", "warning", "warning", "result"]);
        assert!(parsed.iter().all(|v| v["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
        assert_eq!(parsed[2]["id"], 2);
        assert_eq!(parsed[2]["name"], "[2/2] RUN x");
        assert_eq!(parsed[3]["elapsed"], 0.05);
        assert_eq!(parsed[4]["id"], 2);
        assert_eq!(parsed[7]["tags"][0], "a:1");
        let f = Failure::user("error: Dockerfile:1:1: unknown instruction: FORM");
        let v: serde_json::Value = serde_json::from_str(&failure_json(&f)).expect("JSON");
        assert_eq!((v["event"].as_str(), v["exit_code"].as_u64()), (Some("error"), Some(1)));
        assert_eq!(v["message"], "Dockerfile:1:1: unknown instruction: FORM");
    }

    #[test]
    fn step_names_pad_as_buildkit() {
        assert_eq!(step_name("", 2, 3, "RUN x"), "[2/3] RUN x");
        assert_eq!(step_name("build", 2, 12, "RUN x"), "[build  2/12] RUN x");
    }

    #[test]
    fn sizes_as_go_units() {
        let got: Vec<String> = [0, 38, 385, 1500, 12_345, 123_456, 1_090_000].map(go_size).into();
        assert_eq!(got, ["0B", "38B", "385B", "1.5kB", "12.3kB", "123kB", "1.09MB"]);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_483_201_123);
        assert_eq!(rfc3339(t), "2026-12-05T15:06:41.123Z");
    }
}
