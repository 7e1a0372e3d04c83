//! Tests for [`super::apply_layer`]: layers are built in memory (hostile names written straight into
//! the header bytes, since `tar::Builder` refuses them) and applied to `tmp/root`, next to
//! `tmp/outside`, a directory holding one file, `keep`, that no layer may touch.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};
use tempfile::TempDir;

use super::*;

/// An in-memory layer tar.
pub(crate) struct Layer {
    b: tar::Builder<Vec<u8>>,
    owner: (u64, u64),
}

impl Layer {
    pub(crate) fn new() -> Self {
        Layer { b: tar::Builder::new(Vec::new()), owner: (0, 0) }
    }

    /// Owner of the entries added from now on.
    pub(crate) fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.owner = (uid, gid);
        self
    }

    /// Any entry. Names and link names up to 100 bytes go into the header as they are (so `..`
    /// gets through); longer ones use GNU long-name records.
    pub(crate) fn entry(
        self,
        name: &str,
        ty: EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
        mtime: u64,
    ) -> Self {
        self.entry_bytes(name.as_bytes(), ty, link.as_bytes(), data, mode, mtime)
    }

    /// [`Layer::entry`] with names that need not be UTF-8.
    pub(crate) fn entry_bytes(
        mut self,
        name: &[u8],
        ty: EntryType,
        link: &[u8],
        data: &[u8],
        mode: u32,
        mtime: u64,
    ) -> Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_uid(self.owner.0);
        h.set_gid(self.owner.1);
        h.set_size(data.len() as u64);
        if name.len() <= 100 && link.len() <= 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            self.b.append(&h, data).expect("append");
        } else if link.is_empty() {
            self.b.append_data(&mut h, OsStr::from_bytes(name), data).expect("append long name");
        } else {
            let (name, link) = (OsStr::from_bytes(name), OsStr::from_bytes(link));
            self.b.append_link(&mut h, name, link).expect("append long link");
        }
        self
    }

    pub(crate) fn dir(self, name: &str, mode: u32, mtime: u64) -> Self {
        self.entry(name, EntryType::Directory, "", b"", mode, mtime)
    }

    pub(crate) fn file(self, name: &str, data: &[u8], mode: u32, mtime: u64) -> Self {
        self.entry(name, EntryType::Regular, "", data, mode, mtime)
    }

    pub(crate) fn symlink(self, name: &str, target: &str, mtime: u64) -> Self {
        self.entry(name, EntryType::Symlink, target, b"", 0o777, mtime)
    }

    pub(crate) fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Link, target, b"", 0o644, 0)
    }

    pub(crate) fn whiteout(self, name: &str) -> Self {
        self.entry(name, EntryType::Regular, "", b"", 0o644, 0)
    }

    pub(crate) fn device(mut self, name: &str, ty: EntryType, major: u32, minor: u32) -> Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(0o666);
        h.set_uid(self.owner.0);
        h.set_gid(self.owner.1);
        h.set_size(0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.b.append(&h, &[][..]).expect("append");
        self
    }

    /// A PAX local header (`x`) with the given records, applying to the next entry.
    pub(crate) fn pax(self, records: &[(&str, &str)]) -> Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        self.entry("PaxHeader", EntryType::XHeader, "", &data, 0o644, 0)
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish")
    }
}

/// `tmp/root` (empty) and `tmp/outside/keep`.
fn setup() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    fs::create_dir(&root).expect("root");
    fs::create_dir(tmp.path().join("outside")).expect("outside");
    fs::write(tmp.path().join("outside/keep"), b"host").expect("keep");
    (tmp, root)
}

/// The sandbox holds exactly `root` and an untouched `outside/keep`.
fn assert_contained(tmp: &TempDir) {
    let mut names: Vec<_> =
        fs::read_dir(tmp.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names, ["outside", "root"]);
    let outside: Vec<_> = fs::read_dir(tmp.path().join("outside")).expect("ls").collect();
    assert_eq!(outside.len(), 1, "something was written to outside/");
    let keep = tmp.path().join("outside/keep");
    assert_eq!(fs::read(&keep).expect("keep"), b"host");
    assert_eq!(fs::metadata(&keep).expect("keep").nlink(), 1, "outside/keep was hard-linked");
}

fn apply(tar: &[u8], root: &Path) -> Result<ApplyReport, ExtractError> {
    apply_layer(tar, root, ApplyOptions::default())
}

fn ok(tar: &[u8], root: &Path) -> ApplyReport {
    apply(tar, root).unwrap_or_else(|e| panic!("apply failed: {e}"))
}

fn lst(p: impl AsRef<Path>) -> Option<fs::Metadata> {
    fs::symlink_metadata(p).ok()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn dotdot_names_are_refused_and_write_nothing() {
    let names =
        ["../evil", "/abs/../../evil", "a/../../x", "./../outside/evil", "a/b/../../../evil", "..", "a/.."];
    for name in names {
        for ty in [EntryType::Regular, EntryType::Directory, EntryType::Symlink] {
            let (tmp, root) = setup();
            let tar = Layer::new().entry(name, ty, "target", b"", 0o644, 0).finish();
            let err = apply(&tar, &root).expect_err(name);
            assert!(matches!(&err, ExtractError::UnsafePath { path, .. } if path == name), "{name}: {err}");
            assert_contained(&tmp);
            assert_eq!(fs::read_dir(&root).expect("ls").count(), 0, "{name}");
        }
    }
}

#[test]
fn meaningless_names_are_refused() {
    for name in ["", "a/.wh..", "a/.wh...", ".wh.", "x/.wh."] {
        let (tmp, root) = setup();
        let err = apply(&Layer::new().whiteout(name).finish(), &root).expect_err(name);
        assert!(matches!(err, ExtractError::UnsafePath { .. }), "{name:?}: {err}");
        assert_contained(&tmp);
    }
    let (_tmp, root) = setup();
    let err = apply(&Layer::new().file("./", b"x", 0o644, 0).finish(), &root).expect_err("root as file");
    assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err}");
}

#[test]
fn symlink_parents_resolve_inside_the_root() {
    for target in ["/", "../../..", "..", "/../..", "./../../."] {
        let (tmp, root) = setup();
        let tar = Layer::new().symlink("link", target, 0).file("link/evil", b"in", 0o644, 0).finish();
        ok(&tar, &root);
        assert_eq!(fs::read(root.join("evil")).expect(target), b"in", "link -> {target}");
        assert!(lst(root.join("link")).expect("link").file_type().is_symlink());
        assert_contained(&tmp);
    }
}

#[test]
fn symlinks_from_earlier_layers_to_host_paths_stay_inside() {
    let (tmp, root) = setup();
    let outside = tmp.path().join("outside");
    let out = outside.to_str().expect("utf-8 tempdir");
    let l1 = Layer::new()
        .symlink("to_dir", out, 0)
        .symlink("to_keep", &format!("{out}/keep"), 0)
        .symlink("replace_me", &format!("{out}/pwned"), 0)
        .symlink("dir_me", out, 0)
        .finish();
    ok(&l1, &root);
    let l2 = Layer::new()
        .file("to_dir/evil", b"in", 0o644, 0)
        .whiteout("to_dir/.wh.keep")
        .whiteout("to_dir/.wh..wh..opq")
        .hardlink("hl", "to_keep")
        .file("replace_me", b"file", 0o644, 0)
        .dir("dir_me", 0o755, 0)
        .file("dir_me/x", b"x", 0o644, 0)
        .finish();
    ok(&l2, &root);
    // `to_dir/evil` resolved as `root/<outside path>/evil`.
    let inside = root.join(outside.strip_prefix("/").expect("absolute"));
    assert_eq!(fs::read(inside.join("evil")).expect("redirected"), b"in");
    // The hard link is to the symlink itself (not followed), which is inside the root.
    assert!(lst(root.join("hl")).expect("hl").file_type().is_symlink());
    assert!(lst(root.join("replace_me")).expect("file").is_file());
    assert!(lst(root.join("dir_me")).expect("dir").is_dir());
    assert_contained(&tmp);
}

#[test]
fn hostile_hardlinks_fail_without_linking_anything() {
    let (tmp, root) = setup();
    let keep = tmp.path().join("outside/keep");
    let keep = keep.to_str().expect("utf-8");
    let up = format!("../{}", keep.trim_start_matches('/'));
    let cases: Vec<(Vec<u8>, bool)> = vec![
        (Layer::new().hardlink("h", "../../etc/passwd").finish(), true),
        (Layer::new().hardlink("h", &up).finish(), true),
        (Layer::new().hardlink("h", "/etc/passwd").finish(), false),
        (Layer::new().hardlink("h", keep).finish(), false),
        (Layer::new().symlink("l", "/../../../../etc", 0).hardlink("h", "l/passwd").finish(), false),
        (Layer::new().dir("d", 0o755, 0).hardlink("h", "d").finish(), false),
        (Layer::new().hardlink("h", "/").finish(), false),
    ];
    for (i, (tar, unsafe_name)) in cases.iter().enumerate() {
        let err = apply(tar, &root).expect_err("must fail");
        match err {
            ExtractError::UnsafePath { .. } if *unsafe_name => {}
            ExtractError::BadHardlink { .. } if !unsafe_name => {}
            e => panic!("case {i}: unexpected {e}"),
        }
        assert!(lst(root.join("h")).is_none(), "case {i}");
        assert_contained(&tmp);
    }
}

#[test]
fn hardlinks_inside_the_root_work() {
    let (_tmp, root) = setup();
    let tar = Layer::new()
        .dir("etc", 0o755, 0)
        .file("etc/passwd", b"root:x:0:0", 0o644, 0)
        .hardlink("abs", "/etc/passwd")
        .hardlink("rel", "./etc/passwd")
        .symlink("s", "etc", 0)
        .hardlink("via", "s/passwd")
        .hardlink("etc/passwd", "etc/passwd")
        .finish();
    let report = ok(&tar, &root);
    assert_eq!(report.entries, 7);
    let ino = fs::metadata(root.join("etc/passwd")).expect("passwd").ino();
    for l in ["abs", "rel", "via"] {
        assert_eq!(fs::metadata(root.join(l)).expect(l).ino(), ino, "{l}");
    }
    assert_eq!(fs::metadata(root.join("etc/passwd")).expect("passwd").nlink(), 4);
}

#[test]
fn symlink_loops_are_errors() {
    let (tmp, root) = setup();
    let tar = Layer::new().symlink("a", "b", 0).symlink("b", "a", 0).file("a/x", b"", 0o644, 0).finish();
    assert!(matches!(apply(&tar, &root), Err(ExtractError::SymlinkLoop { .. })));
    let tar = Layer::new().symlink("s", "s/x", 0).file("s/f", b"", 0o644, 0).finish();
    assert!(matches!(apply(&tar, &root), Err(ExtractError::SymlinkLoop { .. })));
    assert_contained(&tmp);
}

#[test]
fn symlink_hop_limit_is_forty() {
    let chain = |n: usize| {
        let mut l = Layer::new().dir("d", 0o755, 0);
        for i in 0..n {
            let next = if i + 1 == n { "d".to_string() } else { format!("l{}", i + 1) };
            l = l.symlink(&format!("l{i}"), &next, 0);
        }
        l.file("l0/f", b"", 0o644, 0).finish()
    };
    let (_tmp, root) = setup();
    ok(&chain(40), &root);
    assert!(root.join("d/f").is_file());
    let (_tmp, root) = setup();
    assert!(matches!(apply(&chain(41), &root), Err(ExtractError::SymlinkLoop { .. })));
}

#[test]
fn whiteouts_across_layers() {
    let (_tmp, root) = setup();
    let l1 = Layer::new()
        .dir("a", 0o755, 0)
        .file("a/x", b"x", 0o644, 0)
        .file("a/y", b"y", 0o644, 0)
        .file("b", b"b", 0o644, 0)
        .dir("c/deep", 0o755, 0)
        .file("c/deep/f", b"f", 0o644, 0)
        .finish();
    ok(&l1, &root);
    let l2 = Layer::new()
        .whiteout("a/.wh.x")
        .whiteout(".wh.b")
        .whiteout("./.wh.c")
        .whiteout(".wh.missing")
        .whiteout("nothere/.wh.z")
        .whiteout("a/y/.wh.z")
        .finish();
    let report = ok(&l2, &root);
    assert_eq!(report, ApplyReport { entries: 0, whiteouts: 6, ..Default::default() });
    assert!(root.join("a/y").is_file());
    for gone in ["a/x", "b", "c", "nothere"] {
        assert!(lst(root.join(gone)).is_none(), "{gone}");
    }
    let mut names: Vec<_> = fs::read_dir(&root).expect("ls").map(|e| e.expect("e").file_name()).collect();
    names.sort();
    assert_eq!(names, ["a"]);
}

#[test]
fn opaque_dirs_keep_this_layers_entries() {
    let (_tmp, root) = setup();
    let l1 = Layer::new()
        .dir("d", 0o755, 0)
        .file("d/old", b"", 0o644, 0)
        .dir("d/sub", 0o755, 0)
        .file("d/sub/old2", b"", 0o644, 0)
        .dir("d/gone", 0o755, 0)
        .file("d/gone/f", b"", 0o644, 0)
        .file("e/keep", b"", 0o644, 0)
        .finish();
    ok(&l1, &root);
    let l2 = Layer::new()
        .dir("d", 0o700, 0)
        .file("d/new1", b"", 0o644, 0)
        .file("d/sub/new", b"", 0o644, 0)
        .whiteout("d/.wh..wh..opq")
        .file("d/new2", b"", 0o644, 0)
        .finish();
    assert_eq!(ok(&l2, &root).whiteouts, 1);
    let ls = |d: &str| {
        let mut v: Vec<_> = fs::read_dir(root.join(d))
            .expect("ls")
            .map(|e| e.expect("e").file_name().into_string().expect("utf-8"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ls("d"), ["new1", "new2", "sub"]);
    assert_eq!(ls("d/sub"), ["new"]);
    assert_eq!(ls("e"), ["keep"]);
    assert_eq!(fs::metadata(root.join("d")).expect("d").mode() & 0o7777, 0o700);
    // An opaque root keeps only what its own layer wrote.
    ok(&Layer::new().file("top", b"", 0o644, 0).whiteout(".wh..wh..opq").finish(), &root);
    assert_eq!(ls(""), ["top"]);
}

#[test]
fn whiteouts_do_not_hide_same_layer_entries() {
    let (_tmp, root) = setup();
    ok(&Layer::new().file("f", b"lower", 0o644, 0).finish(), &root);
    let tar = Layer::new().file("f", b"upper", 0o644, 0).whiteout(".wh.f").finish();
    ok(&tar, &root);
    assert_eq!(fs::read(root.join("f")).expect("f"), b"upper");
    // A whiteout of a directory this layer wrote into removes only what the lower layers put there.
    ok(&Layer::new().file("w/old", b"", 0o644, 0).file("w/sub/old", b"", 0o644, 0).finish(), &root);
    ok(&Layer::new().file("w/new", b"", 0o644, 0).whiteout(".wh.w").finish(), &root);
    let names: Vec<_> =
        fs::read_dir(root.join("w")).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(names, ["new"]);
}

#[test]
fn names_need_not_be_utf8() {
    let (_tmp, root) = setup();
    let tar = Layer::new()
        .entry_bytes(b"caf\xe9/\xff", EntryType::Regular, b"", b"bytes", 0o644, 0)
        .entry_bytes(b"l\xfe", EntryType::Symlink, b"caf\xe9", b"", 0o777, 0)
        .entry_bytes(b"l\xfe/h", EntryType::Link, b"caf\xe9/\xff", b"", 0o644, 0)
        .finish();
    ok(&tar, &root);
    let f = root.join(OsStr::from_bytes(b"caf\xe9/\xff"));
    assert_eq!(fs::read(&f).expect("file"), b"bytes");
    assert_eq!(fs::metadata(&f).expect("f").nlink(), 2);
    assert!(root.join(OsStr::from_bytes(b"caf\xe9/h")).is_file());
}

#[test]
fn truncated_archives_fail_naming_the_entry() {
    let tar = Layer::new().file("a", b"x", 0o644, 0).file("big", &[7u8; 5000], 0o644, 0).finish();
    let (_tmp, root) = setup();
    let err = apply(&tar[..512 * 3 + 1000], &root).expect_err("truncated");
    assert!(matches!(&err, ExtractError::Tar { path, .. } if path == "big"), "{err}");
    let err = apply(&tar[..1200], &root).expect_err("truncated header");
    assert!(matches!(&err, ExtractError::Tar { path, .. } if path == "a"), "{err}");
}

#[test]
fn entries_replace_what_is_there() {
    let (_tmp, root) = setup();
    let l1 = Layer::new()
        .file("p", b"file", 0o644, 0)
        .dir("q", 0o755, 0)
        .file("q/inner", b"", 0o644, 0)
        .dir("keep", 0o755, 0)
        .file("keep/inner", b"i", 0o644, 0)
        .symlink("s", "keep", 0)
        .finish();
    ok(&l1, &root);
    let l2 = Layer::new()
        .dir("p", 0o755, 0)
        .file("p/child", b"c", 0o644, 0)
        .file("q", b"now a file", 0o600, 0)
        .dir("keep", 0o711, 0)
        .file("s", b"was a symlink", 0o644, 0)
        .finish();
    ok(&l2, &root);
    assert_eq!(fs::read(root.join("p/child")).expect("child"), b"c");
    assert_eq!(fs::read(root.join("q")).expect("q"), b"now a file");
    assert_eq!(fs::read(root.join("keep/inner")).expect("inner"), b"i");
    assert_eq!(fs::metadata(root.join("keep")).expect("keep").mode() & 0o7777, 0o711);
    assert!(lst(root.join("s")).expect("s").is_file());
    // A parent that is a plain file is an error, not a replacement.
    let err = apply(&Layer::new().file("q/x", b"", 0o644, 0).finish(), &root).expect_err("q is a file");
    assert!(matches!(err, ExtractError::NotADirectory { .. }), "{err}");
}

#[test]
fn long_names_and_long_link_names() {
    let (_tmp, root) = setup();
    let name = format!("long/{}/{}", "d".repeat(120), "f".repeat(200));
    let target = format!("/{}", "t".repeat(250));
    let link = format!("l{}", "k".repeat(150));
    let tar = Layer::new()
        .file(&name, b"long", 0o644, 0)
        .symlink("sym", &target, 0)
        .hardlink(&link, &name)
        .symlink(&format!("s{}", "y".repeat(140)), &target, 0)
        .finish();
    ok(&tar, &root);
    assert_eq!(fs::read(root.join(&name)).expect("long file"), b"long");
    assert_eq!(fs::read_link(root.join("sym")).expect("sym"), Path::new(&target));
    assert_eq!(fs::read_link(root.join(format!("s{}", "y".repeat(140)))).expect("sym"), Path::new(&target));
    assert_eq!(
        fs::metadata(root.join(&link)).expect("l").ino(),
        fs::metadata(root.join(&name)).expect("f").ino()
    );
}

#[test]
fn modes_times_and_owners_follow_the_headers() {
    let (_tmp, root) = setup();
    let chown = is_root();
    let tar = Layer::new()
        .owner(1234, 5678)
        .dir("./", 0o750, 1_300_000_000)
        .dir("d", 0o1777, 1_200_000_000)
        .file("d/suid", b"#!", 0o4755, 1_000_000_000)
        .file("d/sgid", b"#!", 0o2711, 1_000_000_001)
        .symlink("d/link", "suid", 1_100_000_000)
        .file("d/later", b"", 0o444, 5)
        .pax(&[("mtime", "1500000000.25")])
        .file("d/pax", b"", 0o644, 7)
        .entry("d/fifo", EntryType::Fifo, "", b"", 0o640, 42)
        .file("x/y/implicit", b"", 0o644, 0)
        .finish();
    apply_layer(&tar[..], &root, ApplyOptions { chown, devices: false, times: None }).expect("apply");
    let m = |p: &str| lst(root.join(p)).unwrap_or_else(|| panic!("{p} missing"));
    let check = |p: &str, mode: u32, mtime: i64| {
        let md = m(p);
        assert_eq!(md.mode() & 0o7777, mode, "mode of {p:?}");
        assert_eq!(md.mtime(), mtime, "mtime of {p:?}");
        if chown && !p.starts_with('x') {
            assert_eq!((md.uid(), md.gid()), (1234, 5678), "owner of {p:?}");
        }
    };
    check("", 0o750, 1_300_000_000);
    check("d", 0o1777, 1_200_000_000);
    check("d/suid", 0o4755, 1_000_000_000);
    check("d/sgid", 0o2711, 1_000_000_001);
    check("d/later", 0o444, 5);
    check("d/fifo", 0o640, 42);
    check("x", 0o755, 0);
    check("x/y", 0o755, 0);
    assert!(m("d/fifo").file_type().is_fifo());
    let link = m("d/link");
    assert!(link.file_type().is_symlink());
    assert_eq!(link.mtime(), 1_100_000_000);
    assert_eq!(link.atime(), 1_100_000_000);
    if chown {
        assert_eq!((link.uid(), link.gid()), (1234, 5678));
    }
    let pax = m("d/pax");
    assert_eq!((pax.mtime(), pax.mtime_nsec()), (1_500_000_000, 250_000_000));
}

/// A layer's kept real times ([`Times`]) go to its regular files, not to other entries or to
/// files they do not name.
#[test]
fn kept_times_go_to_the_files_they_name() {
    let (_tmp, root) = setup();
    let tar = Layer::new()
        .dir("./app", 0o755, 315_532_800)
        .file("app/main.rs", b"fn main() {}", 0o644, 315_532_800)
        .file("app/other.rs", b"", 0o644, 315_532_800)
        .symlink("app/link", "main.rs", 315_532_800)
        .finish();
    let mut times = Times::new();
    times.insert("app/main.rs", (1_700_000_000, 123));
    times.insert("app", (1_700_000_001, 0));
    times.insert("app/link", (1_700_000_002, 0));
    let opts = ApplyOptions { times: Some(&times), ..ApplyOptions::default() };
    apply_layer(&tar[..], &root, opts).expect("apply");
    let t = |p: &str| lst(root.join(p)).map(|m| (m.mtime(), m.mtime_nsec()));
    assert_eq!(t("app/main.rs"), Some((1_700_000_000, 123)));
    assert_eq!(t("app/other.rs"), Some((315_532_800, 0)));
    assert_eq!(t("app/link"), Some((315_532_800, 0)));
    assert_eq!(t("app"), Some((315_532_800, 0)));
}

#[test]
fn pax_times_parse() {
    assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
    assert_eq!(parse_pax_time(b"12.5"), Some((12, 500_000_000)));
    assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
    assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
    assert_eq!(parse_pax_time(b"1.1234567899"), Some((1, 123_456_789)));
    for bad in [&b""[..], b"-", b"1e3", b".5", b"1.2.3", b"99999999999999999999"] {
        assert_eq!(parse_pax_time(bad), None, "{bad:?}");
    }
}

#[test]
fn devices_are_skipped_and_counted_unless_enabled() {
    let tar = Layer::new()
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/zero0", EntryType::Char, 0, 0)
        .device("dev/sda", EntryType::Block, 8, 0)
        .finish();
    let (_tmp, root) = setup();
    let report = ok(&tar, &root);
    assert_eq!(report.skipped_devices, 3);
    assert_eq!(report.entries, 0);
    assert!(lst(root.join("dev/null")).is_none());
    let (_tmp, root) = setup();
    match apply_layer(&tar[..], &root, ApplyOptions { chown: false, devices: true, times: None }) {
        Ok(report) => {
            assert_eq!((report.entries, report.skipped_devices), (3, 0));
            let null = m_dev(&root.join("dev/null"));
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), makedev(1, 3));
            assert!(m_dev(&root.join("dev/sda")).file_type().is_block_device());
        }
        Err(ExtractError::Io { source, .. }) if source.raw_os_error() == Some(nix::libc::EPERM) => {
            eprintln!("mknod not permitted here; device creation not checked");
        }
        Err(e) => panic!("{e}"),
    }
}

fn m_dev(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).expect("device")
}

#[test]
fn odd_entries_are_reported_not_written() {
    let (_tmp, root) = setup();
    let tar = Layer::new()
        .entry("label", EntryType::new(b'V'), "", b"", 0o644, 0)
        .file(".wh..wh.plnk/123", b"", 0o644, 0)
        .file(".wh..wh.aufs", b"", 0o644, 0)
        .file("ok", b"", 0o644, 0)
        .finish();
    let report = ok(&tar, &root);
    assert_eq!(report.skipped_unsafe, ["label", ".wh..wh.plnk/123", ".wh..wh.aufs"]);
    assert_eq!(report.entries, 1);
    let names: Vec<_> = fs::read_dir(&root).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(names, ["ok"]);
}

#[test]
fn root_must_be_a_directory() {
    let (tmp, _root) = setup();
    let err = apply(&Layer::new().finish(), &tmp.path().join("outside/keep")).expect_err("file root");
    assert!(matches!(err, ExtractError::Io { .. }));
    assert!(apply(&Layer::new().finish(), &tmp.path().join("missing")).is_err());
}

/// A small layer using every feature, for the mutation test.
pub(crate) fn sample_layer() -> Vec<u8> {
    Layer::new()
        .owner(1, 2)
        .dir("./", 0o755, 10)
        .dir("etc", 0o755, 11)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, 12)
        .symlink("abs", "/etc", 13)
        .symlink("up", "../../..", 14)
        .file("abs/through", b"t", 0o4755, 15)
        .hardlink("hl", "etc/passwd")
        .file(&format!("long/{}", "n".repeat(130)), b"long", 0o600, 16)
        .whiteout("etc/.wh.shadow")
        .whiteout("opq/.wh..wh..opq")
        .entry("fifo", EntryType::Fifo, "", b"", 0o644, 17)
        .device("null", EntryType::Char, 1, 3)
        .finish()
}

/// xorshift64: deterministic, dependency-free.
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sample_layer_applies_cleanly() {
    let (tmp, root) = setup();
    let report = ok(&sample_layer(), &root);
    assert_eq!((report.entries, report.whiteouts, report.skipped_devices), (9, 2, 1));
    assert!(root.join("etc/through").is_file());
    assert_contained(&tmp);
}

#[test]
fn mutated_layers_never_panic_or_escape() {
    let base = sample_layer();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..2000 {
        let mut tar = base.clone();
        let n = 1 + xorshift(&mut rng) % 8;
        for _ in 0..n {
            let pos = (xorshift(&mut rng) % tar.len() as u64) as usize;
            tar[pos] = match xorshift(&mut rng) % 4 {
                0 => b'/',
                1 => b'.',
                2 => 0,
                _ => xorshift(&mut rng) as u8,
            };
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        fs::create_dir(&root).expect("root");
        let opts = ApplyOptions { chown: i % 2 == 0 && is_root(), devices: false, times: None };
        let _ = apply_layer(&tar[..], &root, opts);
        let names: Vec<_> =
            fs::read_dir(tmp.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names, ["root"], "mutation {i} wrote outside the root");
        let _ = super::super::index::FsIndex::new().apply_tar(&tar[..]);
        make_removable(&root);
    }
}

/// Gives the owner full access to every directory below `dir`, so a tempdir whose layer set odd
/// modes (as a non-root user) can still be deleted.
fn make_removable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            make_removable(&e.path());
        }
    }
}
