//! Tests for [`super::FsIndex`], including agreement with what extraction writes to disk.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::EntryType;

use super::super::extract::tests::Layer;
use super::super::extract::{ApplyOptions, apply_layer};
use super::*;

fn file(mode: u32, mtime: i64) -> Meta {
    Meta { kind: Kind::File, mode, uid: 0, gid: 0, mtime, size: 0, capability: None }
}

fn dir(mode: u32, mtime: i64) -> Meta {
    Meta { kind: Kind::Dir, ..file(mode, mtime) }
}

fn link(target: &str) -> Meta {
    Meta { kind: Kind::Symlink(target.to_string()), ..file(0o777, 0) }
}

fn keys<'a>(it: impl Iterator<Item = (&'a str, &'a Meta)>) -> Vec<&'a str> {
    it.map(|(k, _)| k).collect()
}

fn indexed(layers: &[Vec<u8>]) -> FsIndex {
    let mut idx = FsIndex::new();
    for l in layers {
        idx.apply_tar(&l[..]).unwrap_or_else(|e| panic!("index: {e}"));
    }
    idx
}

#[test]
fn a_new_index_holds_the_root() {
    let idx = FsIndex::new();
    assert_eq!((idx.len(), idx.is_empty()), (0, true));
    for p in ["", "/", ".", "./", "//."] {
        assert_eq!(idx.get(p), Some(&Meta::implicit_dir()), "{p:?}");
    }
    assert_eq!(keys(idx.walk("")), [""]);
    assert_eq!(FsIndex::default().len(), 0);
}

#[test]
fn insert_normalises_and_creates_parents() {
    let mut idx = FsIndex::new();
    idx.insert("/a/b/c/", file(0o644, 5));
    assert_eq!(keys(idx.walk("")), ["", "a", "a/b", "a/b/c"]);
    for p in ["/a/b/c/", "a/b/c", "./a/b/c", "a//b/./c", "a/x/../b/c"] {
        assert_eq!(idx.get(p), Some(&file(0o644, 5)), "{p:?}");
    }
    assert_eq!(idx.get("a/b"), Some(&Meta::implicit_dir()));
    // A file parent becomes a directory.
    idx.insert("a/b/c/d", file(0o600, 1));
    assert_eq!(idx.get("a/b/c"), Some(&Meta::implicit_dir()));
    // Directory over directory keeps the children; a file over a directory drops them.
    idx.insert("a/b", dir(0o700, 9));
    assert_eq!(idx.get("a/b"), Some(&dir(0o700, 9)));
    assert!(idx.get("a/b/c/d").is_some());
    idx.insert("a/b", file(0o644, 0));
    assert_eq!(keys(idx.walk("")), ["", "a", "a/b"]);
    // The root only takes directory metadata.
    idx.insert("/", file(0o644, 0));
    assert_eq!(idx.get("").map(|m| &m.kind), Some(&Kind::Dir));
    idx.insert("/", dir(0o700, 3));
    assert_eq!(idx.get(""), Some(&dir(0o700, 3)));
}

fn sibling_tree() -> FsIndex {
    let mut idx = FsIndex::new();
    for p in ["a/b/c/d", "a/b.txt", "a/bc/x", "a/a", "a/b0", "z"] {
        idx.insert(p, file(0o644, 0));
    }
    idx
}

#[test]
fn children_are_direct_and_sorted_and_never_siblings_sharing_a_prefix() {
    let idx = sibling_tree();
    assert_eq!(keys(idx.children("a")), ["a/a", "a/b", "a/b.txt", "a/b0", "a/bc"]);
    assert_eq!(keys(idx.children("/a/b/")), ["a/b/c"]);
    assert_eq!(keys(idx.children("a/bc")), ["a/bc/x"]);
    assert_eq!(keys(idx.children("")), ["a", "z"]);
    assert_eq!(keys(idx.children("missing")).len(), 0);
    assert_eq!(keys(idx.children("z")).len(), 0);
}

#[test]
fn walk_lists_a_subtree_parents_first() {
    let idx = sibling_tree();
    assert_eq!(keys(idx.walk("a/b")), ["a/b", "a/b/c", "a/b/c/d"]);
    assert_eq!(keys(idx.walk("a/bc")), ["a/bc", "a/bc/x"]);
    assert_eq!(keys(idx.walk("z")), ["z"]);
    assert_eq!(keys(idx.walk("nope")).len(), 0);
    let all = keys(idx.walk("/"));
    assert_eq!(all.len(), idx.len() + 1);
    for (i, k) in all.iter().enumerate().skip(1) {
        let parent = k.rfind('/').map_or("", |j| &k[..j]);
        assert!(all[..i].contains(&parent), "{k} listed before its parent");
    }
}

#[test]
fn remove_is_recursive_and_exact() {
    let mut idx = sibling_tree();
    idx.remove("/a/b/");
    assert_eq!(keys(idx.walk("a")), ["a", "a/a", "a/b.txt", "a/b0", "a/bc", "a/bc/x"]);
    idx.remove("missing");
    idx.remove("");
    assert!(idx.is_empty());
    assert!(idx.get("").is_some());
}

#[test]
fn resolve_follows_symlinks_inside_the_root() {
    let mut idx = FsIndex::new();
    idx.insert("usr/lib/libc.so", file(0o755, 0));
    idx.insert("lib", link("usr/lib"));
    idx.insert("abs", link("/usr/lib/libc.so"));
    idx.insert("usr/lib/up", link("../../../../usr"));
    idx.insert("usr/lib/self", link("."));
    idx.insert("loop1", link("loop2"));
    idx.insert("loop2", link("/loop1"));
    idx.insert("dangling", link("/nowhere"));
    assert_eq!(idx.resolve("/lib/libc.so").as_deref(), Some("usr/lib/libc.so"));
    assert_eq!(idx.resolve("abs").as_deref(), Some("usr/lib/libc.so"));
    assert_eq!(idx.resolve("lib/up/lib/self/self/libc.so").as_deref(), Some("usr/lib/libc.so"));
    assert_eq!(idx.resolve("lib/../../..").as_deref(), Some(""));
    assert_eq!(idx.resolve("lib").as_deref(), Some("usr/lib"));
    assert_eq!(idx.resolve("usr/lib/libc.so/x"), None);
    assert_eq!(idx.resolve("loop1"), None);
    assert_eq!(idx.resolve("dangling"), None);
    assert_eq!(idx.resolve("missing"), None);
}

#[test]
fn layers_with_whiteouts_and_opaque_dirs() {
    let l1 = Layer::new()
        .dir("d", 0o755, 1)
        .file("d/old", b"", 0o644, 1)
        .file("d/sub/old2", b"", 0o644, 1)
        .file("b", b"bb", 0o644, 1)
        .file("a/x", b"", 0o644, 1)
        .finish();
    let l2 = Layer::new()
        .file("d/new1", b"", 0o644, 2)
        .file("d/sub/new", b"", 0o644, 2)
        .whiteout("d/.wh..wh..opq")
        .file("d/new2", b"", 0o644, 2)
        .whiteout(".wh.b")
        .whiteout("a/.wh.x")
        .whiteout(".wh.missing")
        .file("f", b"same layer", 0o644, 2)
        .whiteout(".wh.f")
        .finish();
    let idx = indexed(&[l1, l2]);
    assert_eq!(keys(idx.walk("")), ["", "a", "d", "d/new1", "d/new2", "d/sub", "d/sub/new", "f"]);
    assert_eq!(idx.get("d").map(|m| m.mtime), Some(1));
}

#[test]
fn hostile_layers_fail_and_leave_the_index_unchanged() {
    let mut idx = FsIndex::new();
    idx.insert("etc/hosts", file(0o644, 0));
    let before: Vec<(String, Meta)> = idx.walk("").map(|(k, m)| (k.to_string(), m.clone())).collect();
    let cases = [
        Layer::new().file("ok", b"", 0o644, 0).file("../evil", b"", 0o644, 0).finish(),
        Layer::new().file("a/../../x", b"", 0o644, 0).finish(),
        Layer::new().hardlink("h", "../../etc/passwd").finish(),
        Layer::new().hardlink("h", "/etc/passwd").finish(),
        Layer::new().dir("d", 0o755, 0).hardlink("h", "d").finish(),
        Layer::new().symlink("a", "b", 0).symlink("b", "a", 0).file("a/x", b"", 0o644, 0).finish(),
        Layer::new().file("etc/hosts/x", b"", 0o644, 0).finish(),
        Layer::new().whiteout("x/.wh..").finish(),
        Layer::new().file("./", b"", 0o644, 0).finish(),
    ];
    for (i, tar) in cases.iter().enumerate() {
        let err = idx.apply_tar(&tar[..]).expect_err("must fail");
        let after: Vec<(String, Meta)> = idx.walk("").map(|(k, m)| (k.to_string(), m.clone())).collect();
        assert_eq!(after, before, "case {i} ({err}) changed the index");
    }
}

#[test]
fn symlinked_parents_are_resolved_like_extraction() {
    let l1 = Layer::new().symlink("link", "/", 0).symlink("up", "../../..", 0).finish();
    let l2 = Layer::new().file("link/evil", b"", 0o644, 0).file("up/usr/bin/x", b"", 0o755, 0).finish();
    let idx = indexed(&[l1, l2]);
    assert!(idx.get("evil").is_some());
    assert_eq!(idx.get("usr/bin"), Some(&Meta::implicit_dir()));
    assert_eq!(idx.get("usr/bin/x").map(|m| m.mode), Some(0o755));
}

#[test]
fn hard_links_carry_their_targets_metadata() {
    let tar = Layer::new()
        .owner(7, 8)
        .file("bin/busybox", b"12345", 0o4755, 99)
        .hardlink("bin/sh", "/bin/busybox")
        .finish();
    let idx = indexed(&[tar]);
    let meta = idx.get("bin/sh").expect("sh");
    assert_eq!(meta.kind, Kind::Hardlink("bin/busybox".to_string()));
    assert_eq!((meta.mode, meta.uid, meta.gid, meta.mtime, meta.size), (0o4755, 7, 8, 99, 5));
}

#[test]
fn devices_and_long_names_are_recorded() {
    let long = format!("usr/{}/{}", "d".repeat(120), "f".repeat(150));
    let target = format!("/{}", "t".repeat(200));
    let tar = Layer::new()
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/sda", EntryType::Block, 8, 0)
        .entry("run/fifo", EntryType::Fifo, "", b"", 0o600, 0)
        .file(&long, b"x", 0o644, 0)
        .symlink("s", &target, 0)
        .finish();
    let idx = indexed(&[tar]);
    assert_eq!(idx.get("dev/null").map(|m| &m.kind), Some(&Kind::Char(1, 3)));
    assert_eq!(idx.get("dev/sda").map(|m| &m.kind), Some(&Kind::Block(8, 0)));
    assert_eq!(idx.get("run/fifo").map(|m| &m.kind), Some(&Kind::Fifo));
    assert_eq!(idx.get(&long).map(|m| m.size), Some(1));
    assert_eq!(idx.get("s").map(|m| &m.kind), Some(&Kind::Symlink(target)));
}

#[test]
fn names_that_are_not_utf8_are_stored_lossily() {
    let tar = Layer::new().entry_bytes(b"caf\xe9/\xff", EntryType::Regular, b"", b"", 0o644, 0).finish();
    let idx = indexed(&[tar]);
    assert_eq!(keys(idx.walk("")), ["", "caf\u{FFFD}", "caf\u{FFFD}/\u{FFFD}"]);
}

/// The extracted tree, described with the index's types (hard links show as files).
fn tree_on_disk(root: &Path, owners: bool) -> BTreeMap<String, Meta> {
    fn visit(root: &Path, rel: &str, owners: bool, out: &mut BTreeMap<String, Meta>) {
        let path = root.join(rel);
        let md = fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&path).expect("readlink").to_string_lossy().into_owned())
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_file() {
            Kind::File
        } else {
            panic!("unexpected file type at {rel}")
        };
        let size = if kind == Kind::File { md.len() } else { 0 };
        let mode = if ft.is_symlink() { 0 } else { md.mode() & 0o7777 };
        let (uid, gid) = if owners { (md.uid(), md.gid()) } else { (0, 0) };
        out.insert(
            rel.to_string(),
            Meta { kind: kind.clone(), mode, uid, gid, mtime: md.mtime(), size, capability: None },
        );
        if kind == Kind::Dir {
            for e in fs::read_dir(&path).expect("ls") {
                let name = e.expect("entry").file_name().into_string().expect("utf-8");
                visit(root, &join(rel, &name), owners, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, "", owners, &mut out);
    out
}

fn index_as_disk(idx: &FsIndex, owners: bool) -> BTreeMap<String, Meta> {
    idx.walk("")
        .map(|(k, m)| {
            let mut m = m.clone();
            if let Kind::Hardlink(_) = m.kind {
                m.kind = Kind::File;
            }
            if let Kind::Symlink(_) = m.kind {
                m.mode = 0;
            }
            if !owners {
                (m.uid, m.gid) = (0, 0);
            }
            (k.to_string(), m)
        })
        .collect()
}

#[test]
fn the_index_agrees_with_extraction() {
    let l1 = Layer::new()
        .owner(0, 0)
        .dir("./", 0o755, 100)
        .dir("etc", 0o755, 101)
        .owner(1000, 1001)
        .file("etc/passwd", b"root:x:0:0", 0o644, 102)
        .file("etc/shadow", b"secret", 0o640, 103)
        .dir("usr", 0o755, 104)
        .dir("usr/bin", 0o755, 105)
        .file("usr/bin/su", b"elf", 0o4755, 106)
        .file("usr/bin/wall", b"elf", 0o2755, 107)
        .hardlink("usr/bin/su2", "usr/bin/su")
        .symlink("bin", "usr/bin", 108)
        .symlink("abs", "/usr", 109)
        .file("bin/viasym", b"v", 0o755, 110)
        .file("abs/lib/implicit/f", b"", 0o600, 111)
        .dir("tmp", 0o1777, 112)
        .entry("tmp/fifo", EntryType::Fifo, "", b"", 0o620, 113)
        .dir("opq", 0o755, 114)
        .file("opq/old", b"", 0o644, 115)
        .dir("opq/sub", 0o755, 116)
        .file("opq/sub/old", b"", 0o644, 117)
        .file("becomes_dir", b"f", 0o644, 118)
        .dir("becomes_file", 0o755, 119)
        .file("becomes_file/x", b"", 0o644, 120)
        .file(&format!("long/{}", "n".repeat(150)), b"long", 0o644, 121)
        .pax(&[("mtime", "1500000000.75"), ("uid", "4000000"), ("gid", "4000001")])
        .file("pax", b"", 0o644, 122)
        .finish();
    let l2 = Layer::new()
        .owner(0, 0)
        .dir("./", 0o750, 200)
        .dir("etc", 0o700, 201)
        .whiteout("etc/.wh.shadow")
        .dir("opq", 0o755, 202)
        .whiteout("opq/.wh..wh..opq")
        .dir("opq/sub", 0o711, 203)
        .file("opq/sub/new", b"n", 0o644, 204)
        .file("opq/new", b"n", 0o644, 205)
        .dir("becomes_dir", 0o755, 206)
        .file("becomes_dir/child", b"c", 0o644, 207)
        .file("becomes_file", b"ff", 0o600, 208)
        .dir("usr", 0o755, 209)
        .dir("usr/bin", 0o755, 210)
        .file("usr/bin/new", b"new", 0o755, 211)
        .hardlink("usr/bin/new2", "bin/new")
        .symlink("usr/bin/rel", "../../etc/passwd", 212)
        .finish();
    let layers = [l1, l2];
    let owners = nix::unistd::geteuid().is_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    fs::create_dir(&root).expect("root");
    for l in &layers {
        apply_layer(&l[..], &root, ApplyOptions { chown: owners, devices: false, times: None })
            .expect("extract");
    }
    let idx = indexed(&layers);
    let disk = tree_on_disk(&root, owners);
    let mine = index_as_disk(&idx, owners);
    for (k, m) in &disk {
        assert_eq!(mine.get(k), Some(m), "{k:?} differs (left: index, right: disk)");
    }
    assert_eq!(mine.keys().collect::<Vec<_>>(), disk.keys().collect::<Vec<_>>());
    assert!(idx.get("etc/shadow").is_none());
    assert_eq!(idx.resolve("bin/rel").as_deref(), Some("etc/passwd"));
}

#[test]
fn remove_takes_exactly_the_subtree() {
    let mut idx = FsIndex::new();
    for p in ["a/b/c", "a.txt", "a0", "ab", "a/x"] {
        idx.insert(p, file(0o644, 0));
    }
    idx.remove("a");
    let left: Vec<&str> = keys(idx.walk("")).into_iter().collect();
    assert_eq!(left, vec!["", "a.txt", "a0", "ab"], "siblings that sort next to `a/` stay");
    // Replacing a directory with a file drops what was below it.
    idx.insert("d/e", file(0o644, 0));
    idx.insert("d", file(0o600, 0));
    assert!(idx.get("d/e").is_none());
}
