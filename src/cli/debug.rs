//! `hako debug …`: developer views of the frontend (the BuildKit-compatible parse dump).

use super::{DebugCommand, Failure, print_stdout};
use crate::dockerfile::{dump::dump, parse_bytes};

/// Runs a `hako debug` subcommand.
pub fn run(cmd: DebugCommand) -> Result<(), Failure> {
    match cmd {
        DebugCommand::Dump { file } => {
            let (name, bytes) = super::build::read_dockerfile_arg(&file)?;
            let ast = parse_bytes(&bytes).map_err(|d| {
                Failure::user(format!("error: {}", d.render(&name, &String::from_utf8_lossy(&bytes))))
            })?;
            print_stdout(&dump(&ast))
        }
    }
}
