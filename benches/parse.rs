//! Frontend throughput: generates a 10,000-line Dockerfile (multi-stage, continuations, heredocs,
//! ENV/ARG/LABEL, JSON forms, comments) and times parse, typing and planning separately.
//! Run with `scripts/bench-parse.sh` (or `cargo bench --bench parse`); it prints medians.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hako::dockerfile::instructions::from_ast;
use hako::dockerfile::parse;
use hako::plan::{self, Platform};

/// A realistic mix, repeated until `lines` physical lines.
fn generate(lines: usize) -> String {
    let mut out = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:12\nARG VERSION=1.0\n");
    let mut stage = 0;
    while out.lines().count() < lines {
        out.push_str(&format!("\n# stage{stage} builds part {stage}\nFROM ${{BASE}} AS stage{stage}\n"));
        out.push_str("ARG VERSION\nENV APP_HOME=/app PATH=/app/bin:$PATH LANG=C.UTF-8\n");
        out.push_str(
            "LABEL org.opencontainers.image.version=\"${VERSION}\" maintainer=\"someone <a@b.c>\"\n",
        );
        out.push_str("WORKDIR $APP_HOME\n");
        out.push_str("RUN apt-get update \\\n    && apt-get install -y --no-install-recommends \\\n        ca-certificates curl git \\\n    # a comment inside a continuation\n    && rm -rf /var/lib/apt/lists/*\n");
        out.push_str("COPY --chown=1000:1000 --chmod=644 src/ ./src/\n");
        out.push_str("RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=token \\\n    make -j2 build VERSION=${VERSION}\n");
        out.push_str("COPY <<EOF /etc/app.conf\nname = app\nversion = ${VERSION}\nEOF\n");
        out.push_str("RUN <<-SCRIPT bash\n\tset -eux\n\techo building\n\tSCRIPT\n");
        if stage > 0 {
            out.push_str(&format!("COPY --from=stage{} /app/bin/ /app/bin/\n", stage - 1));
        }
        out.push_str("EXPOSE 8080/tcp 9090\nHEALTHCHECK --interval=30s --timeout=3s CMD curl -f http://localhost:8080/ || exit 1\n");
        out.push_str("USER 1000:1000\nENTRYPOINT [\"/app/bin/app\"]\nCMD [\"--help\"]\n");
        stage += 1;
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let text = generate(10_000);
    let lines = text.lines().count();
    let runs = 30;
    let parse_t = time(runs, || parse(&text).expect("parses"));
    let ast = parse(&text).expect("parses");
    let typed_t = time(runs, || from_ast(&ast, &text).expect("valid"));
    let df = from_ast(&ast, &text).expect("valid");
    let opts =
        plan::Options { platform: Some(Platform::host()), build_args: BTreeMap::new(), ..Default::default() };
    let plan_t = time(runs, || plan::plan(&df, &opts, &plan::Unresolved).expect("plans"));
    println!(
        "frontend bench: {lines} lines, {} bytes, {} instructions, {} stages (median of {runs})",
        text.len(),
        ast.nodes.len(),
        df.stages.len()
    );
    println!("  parse:           {:>8.2} ms", parse_t.as_secs_f64() * 1e3);
    println!("  typed:           {:>8.2} ms", typed_t.as_secs_f64() * 1e3);
    println!("  plan (expand):   {:>8.2} ms", plan_t.as_secs_f64() * 1e3);
    println!("  total:           {:>8.2} ms", (parse_t + typed_t + plan_t).as_secs_f64() * 1e3);
}
