//! The `hako` binary: everything lives in the library; see `hako::cli`.

fn main() -> std::process::ExitCode {
    hako::cli::main()
}
