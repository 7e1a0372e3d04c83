#!/usr/bin/env python3
"""Build testdata/busybox: a tiny, reproducible OCI image layout (image-spec v1.1) for offline tests.

The root filesystem is Debian's busybox-static (whatever version apt offers; the version used is
recorded in the image config labels and history, and in /etc/hako-testdata), one absolute symlink
per applet, a minimal /etc/passwd and /etc/group, and the usual top-level directories.

Reproducible: given the same .deb, running this twice yields byte-identical output (sorted tar
entries, mtime 0, numeric owners with empty names, ustar format, gzip with mtime 0 and no name,
deterministic JSON). Python 3 standard library only; needs apt-get and dpkg-deb.

Usage: scripts/make-testdata.sh   (or python3 scripts/make-testdata.py [OUTPUT_DIR])
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "testdata", "busybox")

EPOCH = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = (
    "root:x:0:\n"
    "daemon:x:1:\n"
    "app:x:1000:\n"
    "staff:x:50:app\n"
    "nogroup:x:65534:\n"
)

# Explicit directories: path -> (mode, uid, gid). Any other parent directory is 0755 root:root.
DIRS = {
    "root": (0o700, 0, 0),
    "tmp": (0o1777, 0, 0),
    "home": (0o755, 0, 0),
    "home/app": (0o755, 1000, 1000),
    "etc": (0o755, 0, 0),
    "var": (0o755, 0, 0),
    "bin": (0o755, 0, 0),
    "usr": (0o755, 0, 0),
    "usr/bin": (0o755, 0, 0),
    "usr/sbin": (0o755, 0, 0),
    "sbin": (0o755, 0, 0),
    "dev": (0o755, 0, 0),
    "proc": (0o755, 0, 0),
    "sys": (0o755, 0, 0),
}


def die(msg):
    print(f"make-testdata: {msg}", file=sys.stderr)
    sys.exit(1)


def run(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout


def check_arch():
    try:
        arch = run(["dpkg", "--print-architecture"]).strip()
    except (OSError, subprocess.CalledProcessError) as e:
        die(f"cannot determine the Debian architecture (dpkg --print-architecture: {e})")
    if arch != "amd64":
        die(
            f"this machine is {arch!r}, not amd64: apt-get download would fetch the {arch} busybox, "
            "but the image is declared linux/amd64 and tests expect an amd64 binary. "
            "Run this on an amd64 Debian host."
        )


def fetch_busybox(tmp):
    """Download busybox-static into tmp; return (busybox bytes, version, .deb sha256, applet paths)."""
    dl = os.path.join(tmp, "dl")
    os.mkdir(dl)
    # Let apt's unprivileged _apt user write here (avoids the "unsandboxed as root" warning).
    os.chmod(tmp, 0o755)
    os.chmod(dl, 0o777)
    subprocess.run(["apt-get", "download", "-q", "busybox-static"], cwd=dl, check=True)
    debs = [f for f in os.listdir(dl) if f.endswith(".deb")]
    if len(debs) != 1:
        die(f"expected one .deb from apt-get download, got {debs}")
    deb = os.path.join(dl, debs[0])
    version = run(["dpkg-deb", "-f", deb, "Version"]).strip()
    deb_arch = run(["dpkg-deb", "-f", deb, "Architecture"]).strip()
    if deb_arch != "amd64":
        die(f"downloaded busybox-static is {deb_arch}, not amd64")
    with open(deb, "rb") as f:
        deb_sha = hashlib.sha256(f.read()).hexdigest()

    root = os.path.join(tmp, "pkg")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    bb = os.path.join(root, "bin", "busybox")
    with open(bb, "rb") as f:
        data = f.read()
    applets = sorted(set(line.strip() for line in run([bb, "--list-full"]).splitlines() if line.strip()))
    return data, version, deb_sha, applets


def norm(path):
    p = os.path.normpath(path.strip("/"))
    if p in ("", ".") or p.startswith(".."):
        die(f"bad path in rootfs: {path!r}")
    return p


def build_entries(busybox, version, applets):
    """Return {path: TarInfo-ish dict} for the whole rootfs (paths relative, no leading slash)."""
    entries = {}

    def add(path, **e):
        path = norm(path)
        if path in entries:
            die(f"duplicate rootfs path {path!r}")
        entries[path] = e

    for path, (mode, uid, gid) in DIRS.items():
        add(path, type=tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid)

    add("bin/busybox", type=tarfile.REGTYPE, mode=0o755, uid=0, gid=0, data=busybox)
    for applet in applets:
        if norm(applet) == "bin/busybox":
            continue
        add(applet, type=tarfile.SYMTYPE, mode=0o777, uid=0, gid=0, linkname="/bin/busybox")

    add("etc/passwd", type=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, data=PASSWD.encode())
    add("etc/group", type=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, data=GROUP.encode())
    add("etc/hako-testdata", type=tarfile.REGTYPE, mode=0o644, uid=0, gid=0,
        data=f"busybox-static {version}\n".encode())

    # Every parent must be a directory entry; create missing ones as 0755 root:root.
    for path in list(entries):
        parent = os.path.dirname(path)
        while parent:
            if parent not in entries:
                entries[parent] = dict(type=tarfile.DIRTYPE, mode=0o755, uid=0, gid=0)
            elif entries[parent]["type"] != tarfile.DIRTYPE:
                die(f"{parent!r} is both a directory and a non-directory")
            parent = os.path.dirname(parent)
    return entries


def make_tar(entries):
    """Uncompressed layer tar: sorted by path components (parents before children), mtime 0."""
    paths = sorted(entries, key=lambda p: p.split("/"))
    fmt = tarfile.USTAR_FORMAT
    for p in paths:
        e = entries[p]
        name = p + "/" if e["type"] == tarfile.DIRTYPE else p
        if len(name.encode()) > 255 or len(e.get("linkname", "").encode()) > 100:
            fmt = tarfile.GNU_FORMAT
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for p in paths:
            e = entries[p]
            ti = tarfile.TarInfo(p)
            ti.type = e["type"]
            ti.mode = e["mode"]
            ti.uid, ti.gid = e["uid"], e["gid"]
            ti.uname = ti.gname = ""
            ti.mtime = 0
            data = e.get("data")
            if ti.type == tarfile.SYMTYPE:
                ti.linkname = e["linkname"]
            if data is not None:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                ti.size = 0
                tar.addfile(ti)
    return buf.getvalue()


def gzip_bytes(raw):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(raw)
    return buf.getvalue()


def jbytes(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    out = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    check_arch()
    if os.path.lexists(out):
        shutil.rmtree(out)

    with tempfile.TemporaryDirectory(prefix="hako-testdata.") as tmp:
        busybox, version, deb_sha, applets = fetch_busybox(tmp)

    raw = make_tar(build_entries(busybox, version, applets))
    layer = gzip_bytes(raw)

    created_by = f"scripts/make-testdata.sh: busybox-static {version} from Debian"
    config = {
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [PATH_ENV],
            "Cmd": ["sh"],
            "Labels": {
                "org.opencontainers.image.title": "hako busybox test image",
                "dev.hako.testdata.busybox-static.version": version,
                "dev.hako.testdata.busybox-static.deb-sha256": deb_sha,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(raw)]},
        "history": [{"created": EPOCH, "created_by": created_by}],
    }
    config_b = jbytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha(config_b), "size": len(config_b)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha(layer), "size": len(layer)}],
    }
    manifest_b = jbytes(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": sha(manifest_b),
                "size": len(manifest_b),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }

    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    for data in (layer, config_b, manifest_b):
        with open(os.path.join(blobs, sha(data).split(":", 1)[1]), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(jbytes({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(json.dumps(index, sort_keys=True, indent=2).encode() + b"\n")

    print(f"wrote {os.path.relpath(out, REPO_ROOT)}")
    print(f"  busybox-static  {version} (deb sha256:{deb_sha})")
    print(f"  manifest        {sha(manifest_b)} ({len(manifest_b)} bytes)")
    print(f"  config          {sha(config_b)} ({len(config_b)} bytes)")
    print(f"  layer           {sha(layer)} ({len(layer)} bytes gzip, {len(raw)} bytes tar)")
    print(f"  diff_id         {sha(raw)}")


if __name__ == "__main__":
    main()
