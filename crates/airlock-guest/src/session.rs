//! What the host configures for every command after binding: CA certificates to trust (the
//! sandbox's egress CA, and extra roots the policy names) and variables holding credential
//! placeholders. Certificates go into the system bundle and `/etc/airlock/ca.pem`; the
//! variables that node, python, pip, git and curl read point at them.

use std::io;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// The system bundle (Debian layout); created when the image has none.
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// airlock's certificates alone (node adds these to its own set).
const OWN: &str = "/etc/airlock/ca.pem";
/// Longest PEM text accepted.
const MAX_PEM: usize = 4 * 1024 * 1024;
/// Most variables accepted.
const MAX_VARS: usize = 256;

#[derive(Default)]
struct Session {
    trusted: bool,
    env: Vec<(String, String)>,
}

static SESSION: Mutex<Session> = Mutex::new(Session {
    trusted: false,
    env: Vec::new(),
});

/// Installs `ca_pem` (if any) and keeps `env` for every later command.
pub fn configure(ca_pem: &str, env: Vec<(String, String)>) -> io::Result<()> {
    if env.len() > MAX_VARS {
        return Err(io::Error::other("too many variables"));
    }
    for (k, v) in &env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(io::Error::other(format!("invalid variable {k:?}")));
        }
    }
    let trusted = !ca_pem.is_empty();
    if trusted {
        if ca_pem.len() > MAX_PEM || !ca_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(io::Error::other("not PEM certificates"));
        }
        write_atomic(Path::new(OWN), ca_pem.as_bytes())?;
        let mut bundle = match std::fs::read(BUNDLE) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(ca_pem.as_bytes());
        write_atomic(Path::new(BUNDLE), &bundle)?;
    }
    let mut s = SESSION.lock().unwrap_or_else(PoisonError::into_inner);
    s.trusted |= trusted;
    s.env = env;
    Ok(())
}

/// Variables every command gets: where the trusted certificates are, and the placeholders.
pub fn env() -> Vec<(String, String)> {
    let s = SESSION.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Vec::new();
    if s.trusted {
        out.push(("NODE_EXTRA_CA_CERTS".to_owned(), OWN.to_owned()));
        for var in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
            "PIP_CERT",
        ] {
            out.push((var.to_owned(), BUNDLE.to_owned()));
        }
    }
    out.extend(s.env.iter().cloned());
    out
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().ok_or_else(|| io::Error::other("no parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("airlock-tmp");
    std::fs::write(&tmp, data)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}
