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
    let data: Vec<u8> = (0..(pagecache::WINDOW as usize + 3 * direct::CHUNK + 11))
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    for len in [0, 1, direct::CHUNK - 1, direct::CHUNK, direct::CHUNK + 1, 5 * direct::CHUNK, data.len()] {
        for piece in [1000, direct::CHUNK, 3 * direct::CHUNK] {
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
    w.write_all(&vec![1u8; 3 * direct::CHUNK + 5]).expect("write");
    drop(w);
    assert_eq!(fs_err::read_dir(s.root().join("tmp")).expect("tmp").count(), 0);
    assert_eq!(fs_err::read_dir(s.root().join("blobs/sha256")).expect("blobs").count(), 0);
}

/// A teed blob's bytes land in the tee file at its offset, whole, whether the blob is small
/// (written in place) or big (on the writing threads); what is around them is left alone.
#[test]
fn a_teed_blob_is_copied_at_its_offset() {
    let (dir, s) = store();
    for size in [100, 3 * direct::CHUNK + 12_345] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
        let path = dir.path().join(format!("tee-{size}"));
        fs_err::write(&path, vec![b'x'; 700]).expect("tee file");
        let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
        let mut w = s.teed_blob_writer(Tee { file, offset: 600 }).expect("writer");
        for piece in data.chunks(70_001) {
            w.write_all(piece).expect("write");
        }
        let (d, n, teed) = w.commit_teed(None).expect("commit");
        assert_eq!((d.clone(), n, teed), (Digest::of(&data), size as u64, true), "{size}");
        assert_eq!(s.read_blob(&d).expect("blob"), data);
        let tee = fs_err::read(&path).expect("read tee");
        assert_eq!(&tee[..600], &[b'x'; 600][..], "{size}: before the offset");
        assert!(tee[600..] == data[..], "{size}: the copy");
    }
}

/// A tee that cannot be written is given up; the blob is still stored, and says it was not teed.
#[test]
fn a_failing_tee_leaves_the_blob_whole() {
    let (dir, s) = store();
    let path = dir.path().join("read-only");
    fs_err::write(&path, b"").expect("file");
    for size in [10, 2 * direct::CHUNK + 1] {
        let data = vec![7u8; size];
        // Opened for reading only: every write to it fails.
        let file = std::fs::File::open(&path).expect("open");
        let mut w = s.teed_blob_writer(Tee { file, offset: 0 }).expect("writer");
        w.write_all(&data).expect("write");
        let (d, n, teed) = w.commit_teed(None).expect("commit");
        assert_eq!((n, teed), (size as u64, false), "{size}");
        assert_eq!(s.read_blob(&d).expect("blob"), data);
    }
}
