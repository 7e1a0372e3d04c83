//! `hako login` and `hako logout`, as `docker login`/`docker logout`: the password from a
//! terminal prompt, `--password-stdin` or `-p` (with docker's warning), checked with the registry
//! (`registry::login`) before it is kept where docker and podman read it (`registry::authfile`).

use std::io::{BufRead, IsTerminal, Read, Write};

use super::{Failure, LoginArgs, LogoutArgs, print_stdout};
use crate::registry::authfile::{self, HUB_KEY, Kept};

/// The registry a login or logout is for: its `auths` key, and its name for messages.
fn server(arg: Option<&str>) -> (String, String) {
    let key = authfile::key_for(arg.unwrap_or("docker.io"));
    let name = if key == HUB_KEY { "docker.io".to_string() } else { key.clone() };
    (key, name)
}

/// Runs `hako login`.
pub fn login(args: LoginArgs) -> Result<(), Failure> {
    let (key, registry) = server(args.server.as_deref());
    let config = super::registry_config(&[], &args.insecure_registries)?;
    let (user, password) = credentials(&args)?;
    crate::registry::login::verify(&config, &registry, &user, &password).map_err(|e| match e.hint() {
        Some(hint) => Failure::user(format!("error: {e}\nhint: {hint}")),
        None => Failure::user(format!("error: {e}")),
    })?;
    let path = authfile::location().map_err(|e| Failure::usage(format!("error: {e}")))?;
    let kept = authfile::store(&path, &key, &user, &password)
        .map_err(|e| Failure::usage(format!("error: keeping the login: {e}")))?;
    if let Kept::File(file) = kept {
        eprintln!(
            "WARNING! Your password is stored unencrypted in {}.\nConfigure a credential helper (credsStore in docker's config.json) to keep it elsewhere.",
            file.display()
        );
    }
    print_stdout("Login Succeeded\n")
}

/// Runs `hako logout`.
pub fn logout(args: LogoutArgs) -> Result<(), Failure> {
    let (key, _) = server(args.server.as_deref());
    let path = authfile::location().map_err(|e| Failure::usage(format!("error: {e}")))?;
    let removed = authfile::erase(&path, &key)
        .map_err(|e| Failure::usage(format!("error: removing the login: {e}")))?;
    if removed {
        print_stdout(&format!("Removing login credentials for {key}\n"))
    } else {
        print_stdout(&format!("Not logged in to {key}\n"))
    }
}

/// The user and password: from the flags, stdin (`--password-stdin`), or asked for on the
/// terminal.
fn credentials(args: &LoginArgs) -> Result<(String, String), Failure> {
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::usage(format!("error: reading the password from stdin: {e}")))?;
        // As docker: one trailing newline (`echo "$TOKEN" |`) is not part of the password.
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Some(text.strip_suffix('\r').unwrap_or(text).to_string())
    } else {
        if args.password.is_some() {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        }
        args.password.clone()
    };
    let user = match &args.username {
        Some(u) => u.clone(),
        None => ask("Username: ", false)?,
    };
    let password = match password {
        Some(p) => p,
        None => ask("Password: ", true)?,
    };
    if user.trim().is_empty() {
        return Err(Failure::usage("error: the user name is empty"));
    }
    if password.is_empty() {
        return Err(Failure::usage("error: the password is empty"));
    }
    Ok((user.trim().to_string(), password))
}

/// Asks on the terminal (the question on stderr; stdout is for data), without echo for a password.
fn ask(question: &str, secret: bool) -> Result<String, Failure> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage(
            "error: cannot ask for the login: stdin is not a terminal\nhint: give the user with -u and pipe the password in: echo \"$PASSWORD\" | hako login -u USER --password-stdin SERVER",
        ));
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let saved = if secret {
        let saved = tcgetattr(&stdin).map_err(|e| Failure::usage(format!("error: the terminal: {e}")))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
            .map_err(|e| Failure::usage(format!("error: the terminal: {e}")))?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.map_err(|e| Failure::usage(format!("error: reading the terminal: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_keyed_as_docker_login_keys_them() {
        assert_eq!(server(None), (HUB_KEY.to_string(), "docker.io".to_string()));
        assert_eq!(server(Some("index.docker.io")).1, "docker.io");
        assert_eq!(
            server(Some("https://reg.example:5000/")),
            ("reg.example:5000".into(), "reg.example:5000".into())
        );
    }
}
