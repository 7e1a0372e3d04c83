//! `hako build`: reads the Dockerfile and context, plans the build, and (for now) prints the plan.

use std::io::Read;

use super::{BuildArgs, Failure};

/// Runs `hako build`.
pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let _ = args;
    Err(Failure::not_supported("building images (use --dry-run to see the plan)"))
}

/// Reads a Dockerfile named on the command line (`-` is stdin). Returns the display name and bytes.
pub fn read_dockerfile_arg(file: &str) -> Result<(String, Vec<u8>), Failure> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::usage(format!("error: reading the Dockerfile from stdin: {e}")))?;
        return Ok(("Dockerfile".to_string(), buf));
    }
    let bytes = fs_err::read(file).map_err(|e| Failure::usage(format!("error: {e}")))?;
    Ok((file.to_string(), bytes))
}
