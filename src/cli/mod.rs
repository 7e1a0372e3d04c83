//! The command-line interface: clap definitions, dispatch, and the mapping from errors to exit
//! codes. Library modules never print; this module owns stdout (data) and stderr (everything else).

mod args;
mod build;
mod buildx;
mod debug;
mod du;
mod images;
mod info;
mod interrupt;
mod login;
mod metadata;
mod progress;
mod prune;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use args::{
    BuildArgs, Cli, Command, DebugCommand, DuArgs, ImagesArgs, InfoArgs, LoginArgs, LogoutArgs, ProgressMode,
    PruneArgs, PushArgs, RmiArgs, SaveArgs, TagArgs,
};

/// Exit status: the build failed because of the user's input (Dockerfile error, failing step).
pub const EXIT_USER: u8 = 1;
/// Exit status: usage error, unsupported option, or internal error.
pub const EXIT_USAGE: u8 = 2;

/// An error that already carries its exit status and fully rendered text.
#[derive(Debug)]
pub struct Failure {
    /// What to print on stderr (already formatted, ends with a newline).
    pub text: String,
    /// The process exit status.
    pub code: u8,
}

impl Failure {
    /// A failure caused by the user's input (exit 1).
    pub fn user(text: impl Into<String>) -> Self {
        Failure { text: ensure_newline(text.into()), code: EXIT_USER }
    }

    /// A usage error or unsupported option (exit 2).
    pub fn usage(text: impl Into<String>) -> Self {
        Failure { text: ensure_newline(text.into()), code: EXIT_USAGE }
    }

    /// A feature that is accepted on the command line but not built yet (exit 2).
    pub fn not_supported(what: &str) -> Self {
        Failure::usage(format!(
            "error: not supported yet: {what}\nhint: this hako build cannot do that yet; it fails instead of silently ignoring it"
        ))
    }
}

fn ensure_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::usage(format!("error: {e:#}"))
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // The sandbox helper is hako re-executed by itself; it must start single-threaded and is not
    // a user-facing command, so it is dispatched before clap.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__sandbox") {
        return crate::sandbox::helper::main(&argv[2..]);
    }
    // SAFETY: nothing has started a thread yet.
    unsafe { crate::registry::roots::use_bundled_if_none() };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Build(args) => build::run(*args),
        Command::Prune(args) => prune::run(args),
        Command::Du(args) => du::run(args),
        Command::Info(args) => info::run(args),
        Command::Images(args) => images::list(args),
        Command::Tag(args) => images::tag(args),
        Command::Push(args) => images::push(args),
        Command::Save(args) => images::save(args),
        Command::Rmi(args) => images::rmi(args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Debug { command } => debug::run(command),
    };
    crate::sandbox::report_peak_rss("builder");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let _ = std::io::stderr().write_all(f.text.as_bytes());
            ExitCode::from(f.code)
        }
    }
}

/// The registry settings: hako's config file (`registry::config`), then the flags on top.
fn registry_config(
    mirrors: &[String],
    insecure: &[String],
) -> Result<crate::registry::config::Config, Failure> {
    crate::registry::config::Config::load()
        .and_then(|c| c.with_flags(mirrors, insecure))
        .map_err(|e| Failure::usage(format!("error: {e}")))
}

/// A registry's refusal as an input failure (exit 1), with its hint (`hako login …`) when it has one.
fn registry_failure(e: &crate::registry::RegistryError) -> Failure {
    match e.hint() {
        Some(hint) => Failure::user(format!("error: {e}\nhint: {hint}")),
        None => Failure::user(format!("error: {e}")),
    }
}

/// Writes data to stdout; a closed pipe (`hako … | head`) is not an error.
fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::usage(format!("error: writing to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
