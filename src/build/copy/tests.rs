//! COPY semantics against a real directory tree.

use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Fixture { dir };
        f.file("a.txt", "a");
        f.file("b.txt", "bb");
        f.file("src/main.rs", "fn main() {}");
        f.file("src/lib/util.rs", "util");
        f.file("src/README.md", "doc");
        f.file("secret/key", "k");
        symlink("/etc", f.dir.path().join("etc-link")).expect("symlink");
        symlink("src/main.rs", f.dir.path().join("main-link")).expect("symlink");
        f
    }

    fn file(&self, rel: &str, body: &str) {
        let p = self.dir.path().join(rel);
        fs_err::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs_err::write(&p, body).expect("write");
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }

    fn collect(&self, sources: &[&str], dest: &str, ignore: Option<&PatternMatcher>) -> Result<Entries> {
        self.collect_with(sources, dest, ignore, &Ownership::default(), false, &[])
    }

    fn collect_with(
        &self,
        sources: &[&str],
        dest: &str,
        ignore: Option<&PatternMatcher>,
        own: &Ownership,
        parents: bool,
        excludes: &[&str],
    ) -> Result<Entries> {
        let root = SourceRoot { dir: self.dir.path(), index: None, ignore, name: "the build context".into() };
        let mut target = FsIndex::new();
        target.insert(
            "existing",
            Meta { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0, capability: None },
        );
        target.insert(
            "owned",
            Meta { kind: Kind::Dir, mode: 0o1770, uid: 7, gid: 8, mtime: 0, size: 0, capability: None },
        );
        // A usr-merged base: `lib` links to `usr/lib`; and a plain file.
        target.insert(
            "usr/lib",
            Meta { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0, capability: None },
        );
        let link = Meta {
            kind: Kind::Symlink("usr/lib".into()),
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            capability: None,
        };
        target.insert("lib", link);
        target.insert(
            "plain",
            Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0, capability: None },
        );
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let excludes: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        collect(&root, &sources, dest, &target, own, parents, &excludes, Some(1_000))
    }
}

fn keys(e: &Entries) -> Vec<&str> {
    e.keys().map(String::as_str).collect()
}

#[test]
fn file_destinations() {
    let f = Fixture::new();
    assert_eq!(keys(&f.collect(&["a.txt"], "/dst/", None).expect("ok")), ["dst/a.txt"]);
    assert_eq!(keys(&f.collect(&["a.txt"], "/dst", None).expect("ok")), ["dst"]);
    assert_eq!(keys(&f.collect(&["a.txt"], "/existing", None).expect("ok")), ["existing/a.txt"]);
    assert_eq!(
        keys(&f.collect(&["/../a.txt"], "/", None).expect("ok")),
        ["a.txt"],
        "sources cannot climb out"
    );
    let e = f.collect(&["a.txt"], "/x", None).expect("ok");
    let entry = &e["x"];
    assert_eq!((entry.meta.uid, entry.meta.gid, entry.meta.mode, entry.meta.size), (0, 0, 0o640, 1));
    assert!(entry.meta.mtime <= 1_000, "mtime clamped to SOURCE_DATE_EPOCH");
}

#[test]
fn directories_copy_their_contents() {
    let f = Fixture::new();
    let e = f.collect(&["src"], "/app", None).expect("ok");
    assert_eq!(keys(&e), ["app", "app/README.md", "app/lib", "app/lib/util.rs", "app/main.rs"]);
    assert_eq!(e["app/lib"].meta.kind, Kind::Dir);
}

/// fsutil's copy of a directory's contents: a destination it creates is 0755 and root's (or the
/// `--chown` owner's), an existing one keeps its owner and mode; either way the source
/// directory's owner and mode are not copied onto it (its mtime is).
#[test]
fn destination_directories_do_not_take_the_source_owner() {
    let f = Fixture::new();
    fs_err::set_permissions(f.dir.path().join("src"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let e = f.collect(&["src"], "/app", None).expect("ok");
    let m = &e["app"].meta;
    assert_eq!((m.uid, m.gid, m.mode), (0, 0, 0o755), "a new destination");
    assert_eq!(e["app/lib"].meta.mode & 0o777, 0o755, "directories inside keep their own mode");
    let own = Ownership { chown: Some((5, 6)), chmod: Some("0600".into()) };
    let e = f.collect_with(&["src"], "/app", None, &own, false, &[]).expect("ok");
    let m = &e["app"].meta;
    assert_eq!((m.uid, m.gid, m.mode), (5, 6, 0o755), "--chown owns it, --chmod does not apply");
    let e = f.collect_with(&["src"], "/owned", None, &own, false, &[]).expect("ok");
    let m = &e["owned"].meta;
    assert_eq!((m.uid, m.gid, m.mode), (7, 8, 0o1770), "an existing destination is kept");
}

#[test]
fn wildcards_and_several_sources() {
    let f = Fixture::new();
    assert_eq!(keys(&f.collect(&["*.txt"], "/d/", None).expect("ok")), ["d/a.txt", "d/b.txt"]);
    assert_eq!(
        keys(&f.collect(&["src/*.rs"], "/one", None).expect("ok")),
        ["one"],
        "a single match may name a file"
    );
    let err = f.collect(&["*.txt"], "/d", None).unwrap_err().to_string();
    assert!(err.contains("destination must be a directory and end with a /"), "{err}");
    let err = f.collect(&["a.txt", "b.txt"], "/d", None).unwrap_err().to_string();
    assert!(err.contains("end with a /"), "{err}");
    let err = f.collect(&["missing.txt"], "/d/", None).unwrap_err().to_string();
    assert_eq!(err, "\"missing.txt\" not found in the build context");
}

/// BuildKit's `AllowEmptyWildcard`: a wildcard that matches nothing is no error (a plain path
/// that does not exist still is).
#[test]
fn unmatched_wildcards_copy_nothing() {
    let f = Fixture::new();
    assert_eq!(keys(&f.collect(&["nomatch*", "a.txt"], "/dst/", None).expect("ok")), ["dst/a.txt"]);
    assert!(f.collect(&["*.nope"], "/d/", None).expect("ok").is_empty());
    assert!(f.collect(&["nodir/*.rs"], "/d/", None).expect("ok").is_empty());
    let err = f.collect(&["nomatch*", "missing.txt"], "/d/", None).unwrap_err().to_string();
    assert_eq!(err, "\"missing.txt\" not found in the build context");
}

/// fsutil's `ResolveWildcards`: the segments before the first one with an unescaped wildcard are
/// a literal path (a backslash there is just a character); after it, Go's `filepath.Match`, where
/// `\?` is a literal `?`.
#[test]
fn backslash_escapes_in_patterns() {
    let f = Fixture::new();
    f.file("app/n?pe/file.txt", "q");
    f.file("app/nope/file.txt", "nn");
    let e = f.collect(&["./app/n\\?p*/file.txt"], "/x", None).expect("ok");
    assert_eq!((keys(&e), e["x"].meta.size), (vec!["x"], 1), "only the directory named n?pe");
    let e = f.collect(&["./app/n[?]pe/file.txt"], "/x", None).expect("ok");
    assert_eq!((keys(&e), e["x"].meta.size), (vec!["x"], 1), "a class matches a literal ?");
    let err = f.collect(&["./app/n?pe/file.txt"], "/x", None).unwrap_err().to_string();
    assert!(err.contains("matched 2 files; to match a literal ?, * or [ write it as a class"), "{err}");
    let err = f.collect(&["app/n\\?pe/file.txt"], "/x", None).unwrap_err().to_string();
    assert!(err.contains("not found"), "no wildcard left: a literal path with a backslash: {err}");
    f.file("lit\\dir/f", "b");
    let e = f.collect(&["lit\\dir/*"], "/l/", None).expect("ok");
    assert_eq!(keys(&e), ["l/f"], "a backslash before the wildcard segment is literal");
}

#[test]
fn dockerignore_hides_sources_and_says_so() {
    let f = Fixture::new();
    let ig = PatternMatcher::new(&["secret", "src/*.md", "*.txt", "!b.txt"]).expect("patterns");
    let err = f.collect(&["secret/key"], "/d/", Some(&ig)).unwrap_err().to_string();
    assert!(err.contains("is excluded by .dockerignore"), "{err}");
    let e = f.collect(&["."], "/", Some(&ig)).expect("ok");
    let k = keys(&e);
    assert!(k.contains(&"b.txt") && !k.contains(&"a.txt"), "{k:?}");
    assert!(!k.iter().any(|p| p.starts_with("secret")), "{k:?}");
    assert!(!k.contains(&"src/README.md") && k.contains(&"src/main.rs"), "{k:?}");
}

#[test]
fn unmatchable_dockerignore_patterns_fail_the_copy() {
    let f = Fixture::new();
    let ig = PatternMatcher::new(&["[Local-Only]/"]).expect("accepted when loaded");
    let err = f.collect(&["a.txt"], "/d/", Some(&ig)).unwrap_err().to_string();
    assert!(err.starts_with(".dockerignore: "), "{err}");
    let err = f.collect(&["src"], "/d/", Some(&ig)).unwrap_err().to_string();
    assert!(err.starts_with(".dockerignore: "), "{err}");
}

#[test]
fn symlinks_stay_inside_the_root() {
    let f = Fixture::new();
    // etc-link -> /etc resolves inside the context, where there is no etc/passwd.
    let err = f.collect(&["etc-link/passwd"], "/d/", None).unwrap_err().to_string();
    assert!(err.contains("not found"), "{err}");
    // A top-level symlink source is followed (within the root) and copied as the file it names.
    let e = f.collect(&["main-link"], "/m", None).expect("ok");
    assert_eq!(e["m"].meta.kind, Kind::File);
    // A directory named through an absolute symlink is read inside the root, children
    // included: never the host's /etc/passwd.
    f.file("etc/passwd", "inside the root");
    let e = f.collect(&["etc-link/"], "/d/", None).expect("ok");
    let Content::File(path) = &e["d/passwd"].content else { panic!("not a file: {e:?}") };
    assert!(path.starts_with(f.dir.path()), "{}", path.display());
    assert_eq!(fs_err::read_to_string(path).expect("read"), "inside the root");
    // Symlinks found while walking a directory are copied as symlinks.
    let e = f.collect(&["."], "/all/", None).expect("ok");
    assert_eq!(e["all/etc-link"].meta.kind, Kind::Symlink("/etc".into()));
    assert_eq!(
        resolve_in_root(f.dir.path(), "etc-link/../../../a.txt").expect("resolve"),
        f.dir.path().join("a.txt")
    );
}

#[test]
fn parents_excludes_chown_chmod() {
    let f = Fixture::new();
    let own = Ownership { chown: Some((1000, 50)), chmod: Some("u+x,go-rwx".into()) };
    let e = f.collect_with(&["src/lib/util.rs", "a.txt"], "/out/", None, &own, true, &[]).expect("ok");
    assert_eq!(keys(&e), ["out/a.txt", "out/src/lib/util.rs"]);
    let m = &e["out/a.txt"].meta;
    assert_eq!((m.uid, m.gid, m.mode), (1000, 50, 0o700));
    let e = f.collect_with(&["src"], "/s", None, &Ownership::default(), false, &["*.md", "lib"]).expect("ok");
    assert_eq!(keys(&e), ["s", "s/main.rs"]);
}

/// A layer tar from `(name, kind)` entries: `f:BODY` a file, `d` a directory, `l:TARGET` a
/// symlink, `h:TARGET` a hard link.
fn layer_tar(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, what) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        let (kind, arg) = what.split_once(':').unwrap_or((what, ""));
        match kind {
            "f" => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(arg.len() as u64);
                b.append_data(&mut h, name, arg.as_bytes()).expect("file");
            }
            "d" => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, std::io::empty()).expect("dir");
            }
            "l" | "h" => {
                h.set_entry_type(if kind == "l" { tar::EntryType::Symlink } else { tar::EntryType::Link });
                h.set_size(0);
                b.append_link(&mut h, name, arg).expect("link");
            }
            _ => panic!("unknown kind {kind}"),
        }
    }
    b.into_inner().expect("tar")
}

/// COPY --from of a few paths reads a tree holding only what [`selection`] names (plus every
/// directory and symlink) and gets exactly what the whole tree gives: through symlinked
/// directories, absolute and chained links, wildcards matching symlinks, hard links, whiteouts.
#[test]
fn a_selected_tree_copies_as_the_whole_tree() {
    use crate::layer::extract::{ApplyOptions, Selection, apply_layer, apply_layer_selected};
    let layers = [
        layer_tar(&[
            ("app/", "d"),
            ("app/bin/", "d"),
            ("app/bin/x", "f:x-binary"),
            ("app/bin/y", "h:app/bin/x"),
            ("app/lib/", "d"),
            ("app/lib/a.so", "f:a"),
            ("app/lib/old.so", "f:old"),
            ("app/current", "l:lib"),
            ("usr/local/bin/tool", "f:tool-1"),
            ("bin", "l:usr/local/bin"),
            ("abs", "l:/app"),
            ("data/a.txt", "f:a"),
            ("data/b.md", "f:b"),
            ("data/link.txt", "l:/app/bin/x"),
            ("chain1", "l:chain2"),
            ("chain2", "l:/data"),
            ("big/unrelated", "f:never read"),
            ("swap/", "d"),
            ("swap/inner", "f:gone later"),
        ]),
        layer_tar(&[
            ("app/lib/.wh.old.so", "f:"),
            ("usr/local/bin/tool", "f:tool-2"),
            ("app/lib/new.so", "f:new"),
            ("swap", "f:a file now"),
        ]),
    ];
    let mut index = FsIndex::new();
    for l in &layers {
        index.apply_tar(&l[..]).expect("index");
    }
    let whole = tempfile::tempdir().expect("tempdir");
    for l in &layers {
        apply_layer(&l[..], whole.path(), ApplyOptions::default()).expect("extract");
    }
    let target = FsIndex::new();
    let run = |dir: &Path, sources: &[String]| {
        let root = SourceRoot { dir, index: Some(&index), ignore: None, name: "stage s".into() };
        let entries = collect(&root, sources, "/out/", &target, &Ownership::default(), false, &[], None)?;
        // The same entries, whichever tree their content is read from.
        Ok::<_, CopyError>(
            entries
                .into_iter()
                .map(|(k, e)| {
                    let content = match e.content {
                        Content::File(p) => fs_err::read_to_string(p).expect("read"),
                        _ => String::new(),
                    };
                    (k, e.meta, content)
                })
                .collect::<Vec<_>>(),
        )
    };
    let cases: &[&[&str]] = &[
        &["/app/bin/x"],
        &["/bin/tool"],
        &["/abs/current/"],
        &["/app/bin/y"],
        &["/chain1"],
        &["/data/*.txt"],
        &["/chain1/*.md", "/app/lib"],
        &["/app/../abs/bin/./x"],
    ];
    for sources in cases {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let keys = selection(&index, &sources).expect("some paths");
        assert!(!keys.contains("big/unrelated"), "{sources:?} selects only what it reads: {keys:?}");
        let part = tempfile::tempdir().expect("tempdir");
        let keep = |rel: &Path| rel.to_str().is_some_and(|r| keys.contains(r));
        let mut chosen = Selection::new(&keep);
        for l in &layers {
            apply_layer_selected(&l[..], part.path(), ApplyOptions::default(), &mut chosen).expect("extract");
        }
        assert!(!part.path().join("big/unrelated").exists());
        // A directory a lower layer made, replaced by a file that is not selected, is gone.
        assert!(!part.path().join("swap").exists());
        let expected = run(whole.path(), &sources).unwrap_or_else(|e| panic!("{sources:?}: {e}"));
        assert!(!expected.is_empty(), "{sources:?}");
        assert_eq!(run(part.path(), &sources).expect("the selected tree copies"), expected, "{sources:?}");
    }
    // A missing source selects nothing for it; the copy fails as it would on the whole tree.
    let missing = vec!["/nope".to_string()];
    let keys = selection(&index, &missing).expect("a path");
    let part = tempfile::tempdir().expect("tempdir");
    let keep = |rel: &Path| rel.to_str().is_some_and(|r| keys.contains(r));
    let mut chosen = Selection::new(&keep);
    for l in &layers {
        apply_layer_selected(&l[..], part.path(), ApplyOptions::default(), &mut chosen).expect("extract");
    }
    assert!(matches!(run(part.path(), &missing), Err(CopyError::NotFound(_))));
    // A layer writing through a symlink the selection left out cannot be extracted in part:
    // the caller is told, and extracts the whole tree instead.
    let through =
        [layer_tar(&[("usr/lib/", "d"), ("lib", "l:usr/lib")]), layer_tar(&[("lib/foo.so", "f:foo")])];
    let mut index = FsIndex::new();
    for l in &through {
        index.apply_tar(&l[..]).expect("index");
    }
    let keys = selection(&index, &["/usr/lib/foo.so".to_string()]).expect("a path");
    assert!(keys.contains("usr/lib/foo.so") && !keys.contains("lib"), "{keys:?}");
    let part = tempfile::tempdir().expect("tempdir");
    let keep = |rel: &Path| rel.to_str().is_some_and(|r| keys.contains(r));
    let mut chosen = Selection::new(&keep);
    apply_layer_selected(&through[0][..], part.path(), ApplyOptions::default(), &mut chosen)
        .expect("extract");
    let err = apply_layer_selected(&through[1][..], part.path(), ApplyOptions::default(), &mut chosen)
        .expect_err("a path through a symlink left out");
    assert!(matches!(err, crate::layer::extract::ExtractError::Unselected { .. }), "{err}");
    // The root is the whole tree.
    assert_eq!(selection(&index, &["/".to_string()]), None);
    assert_eq!(selection(&index, &["/app".to_string(), ".".to_string()]), None);
}

/// A directory lands only on a directory (not on a symlink to one) and anything else only where
/// no directory is, as fsutil's copy allows; BuildKit fails the step otherwise.
#[test]
fn a_directory_never_replaces_a_non_directory_nor_a_file_a_directory() {
    let f = Fixture::new();
    f.file("l/lib/libx.so", "x");
    f.file("p/plain/inner", "i");
    f.file("e/existing", "a file over a directory");
    let err = |src: &str| match f.collect(&[src], "/", None) {
        Err(CopyError::Invalid(msg)) => msg,
        other => panic!("{src}: {other:?}"),
    };
    let msg = err("l/");
    assert!(msg.starts_with("cannot copy to non-directory: /lib (a symbolic link to usr/lib"), "{msg}");
    assert_eq!(err("p/"), "cannot copy to non-directory: /plain");
    assert_eq!(err("e/"), "cannot replace to directory /existing with file");
    // Into the directory the link names, or a file onto a file, is fine.
    assert_eq!(keys(&f.collect(&["l/lib/"], "/usr/lib/", None).expect("ok")), ["usr/lib", "usr/lib/libx.so"]);
    assert_eq!(keys(&f.collect(&["a.txt"], "/plain", None).expect("ok")), ["plain"]);
}
