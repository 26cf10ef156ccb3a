//! Asking a kit's registry for the newest version, with the registry's own client (`npm view`,
//! `pip index versions`), so proxies, mirrors and CA settings the host already configured for
//! them apply. Used by `airlock agent ls`, `image check` and `image update`.

use super::{Kit, Registry};
use crate::ImageError;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a registry query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The newest version of the kit's package the registry offers.
pub fn latest_version(kit: &Kit) -> Result<String, ImageError> {
    let package = &kit.install.package;
    let (what, mut cmd) = match kit.install.registry {
        Registry::Npm => {
            let mut c = Command::new("npm");
            c.args(["view", "--json", package, "version"]);
            ("npm view", c)
        }
        Registry::Pypi => {
            let mut c = Command::new("python3");
            c.args([
                "-m",
                "pip",
                "index",
                "versions",
                "--disable-pip-version-check",
                package,
            ]);
            ("pip index versions", c)
        }
    };
    let fail = |message: String| ImageError::Fetch {
        url: format!("{} ({what} {package})", kit.install.registry),
        message,
    };
    let out = run_with_timeout(&mut cmd, QUERY_TIMEOUT).map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(fail(format!("{}: {last}", out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = match kit.install.registry {
        Registry::Npm => parse_npm_view(&text),
        Registry::Pypi => parse_pip_index(&text, package),
    };
    version.ok_or_else(|| fail(format!("no version in the answer: {:?}", text.trim())))
}

/// [`latest_version`] of each kit, asked in parallel.
pub fn latest_versions(kits: &[Kit]) -> Vec<Result<String, ImageError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = kits
            .iter()
            .map(|k| s.spawn(move || latest_version(k)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ImageError::Fetch {
                        url: "registry".into(),
                        message: "the query thread failed".into(),
                    })
                })
            })
            .collect()
    })
}

/// `npm view --json PKG version` prints a JSON string.
fn parse_npm_view(text: &str) -> Option<String> {
    let v: String = serde_json::from_str(text.trim()).ok()?;
    valid(&v).then_some(v)
}

/// `pip index versions PKG` prints `PKG (VERSION)` first.
fn parse_pip_index(text: &str, package: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty())?.trim();
    let rest = line.strip_prefix(package)?.trim();
    let v = rest.strip_prefix('(')?.strip_suffix(')')?;
    valid(v).then(|| v.to_string())
}

/// A version string safe to put in a path and a command line.
fn valid(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.+_".contains(&b))
}

/// Runs `cmd` with stdin closed, killing it after `limit`.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> std::io::Result<std::process::Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer in {} s", limit.as_secs()),
            ))
        }
    }
}

/// Whether `latest` is newer than `installed` (Debian's ordering, which sorts dotted numeric
/// versions as npm and PyPI do for releases).
pub fn is_newer(latest: &str, installed: &str) -> bool {
    crate::debian::debver::compare(latest, installed) == std::cmp::Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_answers_are_parsed_and_checked() {
        assert_eq!(parse_npm_view("\"2.1.340\"\n").as_deref(), Some("2.1.340"));
        assert_eq!(parse_npm_view("\"1; rm -rf /\""), None);
        assert_eq!(parse_npm_view("{}"), None);
        let pip = "aider-chat (0.86.2)\nAvailable versions: 0.86.2, 0.86.1\n";
        assert_eq!(
            parse_pip_index(pip, "aider-chat").as_deref(),
            Some("0.86.2")
        );
        assert_eq!(parse_pip_index("other (1.0)", "aider-chat"), None);
        assert!(is_newer("2.1.340", "2.1.332"));
        assert!(is_newer("0.10.0", "0.9.9"));
        assert!(!is_newer("2.1.332", "2.1.332"));
    }
}
