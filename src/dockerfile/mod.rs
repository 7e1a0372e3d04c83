//! The Dockerfile frontend: bytes → raw instruction tree ([`parser`]) → typed, validated
//! instructions ([`instructions`]). Word expansion ([`shell`]) is applied later, by the planner,
//! when the ARG/ENV scope of each instruction is known.

pub mod checks;
pub mod dump;
pub mod error;
pub mod gostr;
pub mod instructions;
pub mod json;
pub mod lexer;
pub mod parser;
pub mod shell;

pub use error::{Diagnostic, Pos, Warning};
pub use parser::{Ast, Heredoc, Node, parse, parse_bytes};
