//! BuildKit's parse dump (`Node.Dump`), the format of the conformance golden files: one line per
//! instruction, `(keyword ["flags"] "arg" …)`, strings quoted like Go's `strconv.Quote`.

use super::gostr::quote;
use super::parser::{Ast, Node};

/// Dumps the whole tree: each instruction on its own line, with a trailing newline.
pub fn dump(ast: &Ast) -> String {
    let mut out = String::new();
    for node in &ast.nodes {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// Dumps one instruction without the surrounding parentheses.
pub fn dump_node(node: &Node) -> String {
    // Go lower-cases rune by rune (no final-sigma rule), so do the same.
    let mut out: String = node.keyword.chars().flat_map(char::to_lowercase).collect();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| quote(f)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    if let Some(trigger) = &node.onbuild {
        out.push_str(&format!(" ({})", dump_node(trigger)));
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;

    fn d(src: &str) -> String {
        dump(&parse(src).expect("parses"))
    }

    #[test]
    fn dumps_basic_shapes() {
        assert_eq!(d("FROM a AS b\n"), "(from \"a\" \"AS\" \"b\")\n");
        assert_eq!(d("ONBUILD RUN [\"echo\", \"test\"]"), "(onbuild (run \"echo\" \"test\"))\n");
        assert_eq!(d("ONBUILD"), "(onbuild)\n");
        assert_eq!(d("ONBUILD --x RUN a"), "(onbuild [\"--x\"] (run \"a\"))\n");
        assert_eq!(d("CMD []"), "(cmd)\n");
        assert_eq!(d("FOO bar baz"), "(foo \"\")\n");
        assert_eq!(d("HEALTHCHECK   CMD   a b"), "(healthcheck \"CMD\" \"a b\")\n");
        assert_eq!(d("ENV a=b c=\"d e\""), "(env \"a\" \"b\" \"=\" \"c\" \"\\\"d e\\\"\" \"=\")\n");
        assert_eq!(d("ΣΑΣ x"), "(σασ \"\")\n");
    }

    #[test]
    fn heredoc_bodies_do_not_print() {
        let src = "FROM a\nRUN <<EOF\necho hi\nEOF\nCOPY <<a <<b /dest/\n1\na\n2\nb\n";
        assert_eq!(d(src), "(from \"a\")\n(run \"<<EOF\")\n(copy \"<<a\" \"<<b\" \"/dest/\")\n");
    }
}
