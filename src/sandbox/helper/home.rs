//! The `HOME` a step gets in every isolation mode.

use std::path::Path;

use crate::sandbox::protocol::Process;

/// `process` with `HOME` set as runc sets it where the image and the Dockerfile leave it unset:
/// the home of the first entry for its uid in the root's `/etc/passwd`, else `/`. Every mode uses
/// it (libcontainer would leave it unset for a uid the passwd does not name). `git config
/// --global`, pip and npm need it.
pub(super) fn with_home(root: &Path, process: &Process) -> Process {
    let mut p = process.clone();
    if p.env.iter().any(|e| e.starts_with("HOME=")) {
        return p;
    }
    let passwd = crate::layer::rootpath::resolve_in_root(root, "etc/passwd")
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .unwrap_or_default();
    let home = home_in(&passwd, p.uid).filter(|h| !h.is_empty()).unwrap_or("/");
    p.env.push(format!("HOME={home}"));
    p
}

/// The home directory field of `uid`'s first line in `passwd`.
fn home_in(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[2].parse() == Ok(uid)).then(|| fields[5])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_the_root_s_passwd_unless_set() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("etc")).expect("mkdir");
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbad line\napp:x:1000:1000::/home/app:/bin/sh\nnohome:x:7:7:::/bin/sh\n",
        )
        .expect("write");
        let process = |uid, env: &[&str]| Process {
            args: vec!["sh".into()],
            env: env.iter().map(|e| e.to_string()).collect(),
            cwd: "/".into(),
            uid,
            gid: 0,
            groups: vec![],
        };
        let home = |p: Process| with_home(t.path(), &p).env;
        assert_eq!(home(process(0, &["PATH=/bin"])), ["PATH=/bin", "HOME=/root"]);
        assert_eq!(home(process(1000, &[])), ["HOME=/home/app"]);
        assert_eq!(home(process(7, &[])), ["HOME=/"], "an empty home");
        assert_eq!(home(process(4242, &[])), ["HOME=/"], "a uid not in passwd");
        assert_eq!(home(process(0, &["HOME=/srv"])), ["HOME=/srv"], "set by ENV");
        assert_eq!(with_home(&t.path().join("none"), &process(0, &[])).env, ["HOME=/"]);
    }
}
