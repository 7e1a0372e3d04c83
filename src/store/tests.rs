//! Store tests: atomic, verified blob writes; tagging; concurrent writers.

use std::io::Write;

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).expect("open");
    (dir, s)
}

#[test]
fn blobs_are_verified_and_atomic() {
    let (_d, s) = store();
    let (d, n) = s.put_bytes(b"hello").expect("put");
    assert_eq!(n, 5);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs_err::metadata(s.blob_path(&d)).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "blobs are world-readable like any layout blob");
    assert_eq!(s.read_blob(&d).expect("read"), b"hello");
    // A wrong expectation leaves nothing behind, neither under the final name nor in tmp/.
    let mut w = s.blob_writer().expect("writer");
    w.write_all(b"other").expect("write");
    let err = w.commit(Some(&d)).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!s.has_blob(&Digest::of(b"other")));
    assert_eq!(fs_err::read_dir(s.root().join("tmp")).expect("tmp").count(), 0);
    // A dropped writer is discarded too.
    let mut w = s.blob_writer().expect("writer");
    w.write_all(b"dropped").expect("write");
    drop(w);
    assert_eq!(fs_err::read_dir(s.root().join("tmp")).expect("tmp").count(), 0);
    let size_err = s.put_reader(&mut &b"abc"[..], Some((&Digest::of(b"abc"), 4))).unwrap_err();
    assert!(matches!(size_err, StoreError::SizeMismatch { .. }));
}

#[test]
fn corrupted_blobs_are_detected_on_read() {
    let (_d, s) = store();
    let (d, _) = s.put_bytes(b"{}").expect("put");
    fs_err::write(s.blob_path(&d), b"{ }").expect("corrupt");
    assert!(matches!(s.read_blob(&d), Err(StoreError::DigestMismatch { .. })));
    assert!(matches!(s.read_blob(&Digest::of(b"nope")), Err(StoreError::Missing(_))));
}

#[test]
fn tags_replace_and_resolve() {
    let (_d, s) = store();
    let desc = |bytes: &[u8]| {
        let (d, n) = s.put_bytes(bytes).expect("put");
        Descriptor::new(
            MediaType::ImageManifest,
            n,
            oci_spec::image::Digest::try_from(d.to_string()).expect("digest"),
        )
    };
    let a = desc(b"a");
    let b = desc(b"b");
    s.tag("app:1", &a).expect("tag");
    s.tag("app:2", &a).expect("tag");
    s.tag("app:1", &b).expect("retag");
    assert_eq!(s.index().expect("index").manifests().len(), 2);
    assert_eq!(
        s.resolve("app:1").expect("resolve").map(|d| d.digest().to_string()),
        Some(b.digest().to_string())
    );
    assert!(s.resolve("nope").expect("resolve").is_none());
    assert!(s.root().join("oci-layout").is_file());
}

#[test]
fn concurrent_taggers_do_not_lose_updates() {
    let (_d, s) = store();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let (d, n) = s.put_bytes(format!("m{i}").as_bytes()).expect("put");
                let desc = Descriptor::new(
                    MediaType::ImageManifest,
                    n,
                    oci_spec::image::Digest::try_from(d.to_string()).expect("digest"),
                );
                s.tag(&format!("t{i}"), &desc).expect("tag");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    assert_eq!(s.index().expect("index").manifests().len(), 8);
}

#[test]
fn blobs_written_here_are_fresh_for_this_store_only() {
    let (_d, s) = store();
    let (_e, other) = store();
    let (d, _) = s.put_bytes(b"fresh").expect("put");
    assert!(s.is_fresh(&d), "hashed as this process wrote it");
    assert!(!other.is_fresh(&d), "another store's file of that name was not");
    s.forget_written();
    assert!(!s.is_fresh(&d));
}

/// Blobs of every size around the chunk and writeback boundaries, written in odd pieces,
/// come out whole and named by their digest.
#[test]
fn any_size_in_any_pieces_is_stored_whole() {
    let (_d, s) = store();
    let mut x: u32 = 7;
    let data: Vec<u8> = (0..(pagecache::WINDOW as usize + 3 * writer::CHUNK + 11))
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    for len in [0, 1, writer::CHUNK - 1, writer::CHUNK, writer::CHUNK + 1, 5 * writer::CHUNK, data.len()] {
        for piece in [1000, writer::CHUNK, 3 * writer::CHUNK] {
            let mut w = s.blob_writer().expect("writer");
            for part in data[..len].chunks(piece) {
                w.write_all(part).expect("write");
            }
            assert_eq!(w.len(), len as u64);
            let (d, n) = w.commit(Some(&Digest::of(&data[..len]))).expect("commit");
            assert_eq!(n, len as u64);
            assert_eq!(fs_err::read(s.blob_path(&d)).expect("read"), &data[..len], "{len} in {piece}");
        }
    }
}

/// A writer dropped after its thread started leaves nothing behind.
#[test]
fn a_dropped_big_writer_leaves_nothing() {
    let (_d, s) = store();
    let mut w = s.blob_writer().expect("writer");
    w.write_all(&vec![1u8; 3 * writer::CHUNK + 5]).expect("write");
    drop(w);
    assert_eq!(fs_err::read_dir(s.root().join("tmp")).expect("tmp").count(), 0);
    assert_eq!(fs_err::read_dir(s.root().join("blobs/sha256")).expect("blobs").count(), 0);
}
