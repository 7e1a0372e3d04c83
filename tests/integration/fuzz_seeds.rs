//! Deterministic companions of the `cargo fuzz` targets: every conformance input, and every prefix
//! of it (cutting mid-instruction, mid-quote, mid-heredoc), goes through the same entry points the
//! fuzzer drives. Any input the fuzzer ever crashes on belongs in `REGRESSIONS`.

use crate::common::conformance_dir;

/// Inputs that once crashed or hung a fuzz target (none so far), plus hand-picked nasty shapes.
const REGRESSIONS: &[&[u8]] = &[
    b"FROM a\nRUN <<EOF",
    b"FROM a\nCOPY <<A <<B /\nB\nA\n",
    b"FROM ${a:-${b:-${c:-${d}}}}\n",
    b"\xef\xbb\xbfFROM \xff\xfe\nRUN --x=\xc3\xa9\xc2\x85y z\n",
    b"# escape=`\nFROM a\nRUN x `\n`\n",
    b"FROM a AS b\nCOPY --from=b x y\n",
    b"FROM a\nHEALTHCHECK \xc2\xa0CMD x\n",
    b"FROM a\nEXPOSE ${X:+$X}\n",
    b"ARG A=${A}\nFROM $A\n",
    b"FROM a\nONBUILD ONBUILD\n",
];

#[test]
fn conformance_inputs_and_all_their_prefixes() {
    let mut inputs: Vec<Vec<u8>> = REGRESSIONS.iter().map(|r| r.to_vec()).collect();
    for sub in ["parser/testfiles", "parser/testfiles-negative"] {
        let Some(dir) = conformance_dir(sub) else { return };
        for case in crate::common::cases(&dir) {
            inputs.push(std::fs::read(case.join("Dockerfile")).expect("read"));
        }
    }
    let mut runs = 0;
    for input in &inputs {
        for end in 0..=input.len() {
            hako::fuzzing::frontend(&input[..end]);
            runs += 1;
        }
    }
    println!("fuzz seeds: {runs} frontend runs over {} inputs", inputs.len());
    assert!(runs > 10_000);
}

#[test]
fn shell_and_dockerignore_data_through_their_targets() {
    let Some(dir) = conformance_dir("") else { return };
    let mut runs = 0;
    for file in ["shell/envVarTest", "shell/wordsTest", "dockerignore/README.md"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read");
        for line in text.lines() {
            hako::fuzzing::shell_words(line.as_bytes());
            hako::fuzzing::dockerignore(format!("a/b/c\n{line}").as_bytes());
            runs += 1;
        }
    }
    assert!(runs > 300);
}
