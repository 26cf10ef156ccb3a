//! Signed checkpoints and the host key that signs them. The chain appender signs
//! `(seq, hash, ts, sandbox, final)` of its latest record every N records or T seconds and
//! when it is closed, and appends the result as one JSON line to `<log>.checkpoints`. The
//! verifier checks each signature and that the log still holds a record with that seq and
//! hash, which is what makes truncation and wholesale rewriting of the log detectable.
//!
//! **Signed bytes.** `b"airlock-audit checkpoint v1\n"` followed by the canonical JSON body
//! `{"seq":…,"hash":"…","ts":"…","sandbox":"…","final":…}` (keys in that order, no
//! whitespace). The sidecar line is that body with `,"key":"<hex>","sig":"<hex>"` spliced in
//! before the closing brace.
//!
//! **Key.** An Ed25519 secret seed stored as 64 hex digits in a file of mode 0600, created on
//! first use ([`HostKey::load_or_create`]). It must live on the host outside every share; the
//! CLI's default is [`default_key_path`] (`~/.local/share/airlock/audit-key`).

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Domain separation prefix of every signed message, so a checkpoint signature can never be
/// replayed as a signature over anything else.
const DOMAIN: &[u8] = b"airlock-audit checkpoint v1\n";

/// Largest key file accepted (64 hex digits plus whitespace).
const MAX_KEY_FILE: u64 = 256;

/// Errors loading or creating the host key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or writing the key file failed.
    #[error("audit key {}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The key file is readable or writable by group or others.
    #[error("audit key {} has mode {mode:o}; it must be 0600 (chmod 600 it or remove it)", path.display())]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not 64 hex digits.
    #[error("audit key {} is not an Ed25519 seed of 64 hex digits", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is not a regular file.
    #[error("audit key {} is not a regular file", path.display())]
    NotAFile {
        /// The key file.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("generating audit key: {0}")]
    Random(getrandom::Error),
}

/// The Ed25519 key that signs checkpoints. Its secret never leaves the host process.
pub struct HostKey {
    signing: SigningKey,
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// `$XDG_DATA_HOME/airlock/audit-key`, else `$HOME/.local/share/airlock/audit-key`; `None`
/// when neither variable is set to an absolute path.
pub fn default_key_path() -> Option<PathBuf> {
    let abs = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    abs(std::env::var_os("XDG_DATA_HOME"))
        .or_else(|| abs(std::env::var_os("HOME")).map(|h| h.join(".local/share")))
        .map(|d| d.join("airlock/audit-key"))
}

impl HostKey {
    /// A fresh key that is not stored anywhere (tests, benchmarks, throwaway sandboxes).
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(KeyError::Random)?;
        let key = Self {
            signing: SigningKey::from_bytes(&seed),
        };
        seed.fill(0);
        Ok(key)
    }

    /// Loads the key at `path`, creating it (and missing parent directories, mode 0700)
    /// with mode 0600 if it does not exist. Creation is atomic: the key is written to a
    /// temporary file and hard-linked into place, so concurrent first uses agree on one key
    /// and a crash never leaves a half-written key. An existing key must be a regular file
    /// with no group or other permission bits.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err)?;
        }
        let key = Self::generate()?;
        let mut text = hex::encode(key.signing.as_bytes());
        text.push('\n');
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            file_name.as_deref().unwrap_or("audit-key"),
            std::process::id()
        ));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::hard_link(&tmp, path)
        })();
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok(key),
            // Someone else created it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Loads an existing key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(io_err)?;
        let mut seed = [0u8; 32];
        let parsed = hex::decode_to_slice(text.trim(), &mut seed);
        text.clear();
        if parsed.is_err() {
            return Err(KeyError::Malformed {
                path: path.to_owned(),
            });
        }
        let key = Self {
            signing: SigningKey::from_bytes(&seed),
        };
        seed.fill(0);
        Ok(key)
    }

    /// The public half, for verification.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }
}

/// An Ed25519 public key (a valid curve point), written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

/// A public key that is not 64 hex digits of a valid Ed25519 point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 public key {0:?}: expected 64 hex digits")]
pub struct PublicKeyError(pub String);

impl PublicKey {
    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .ok()
            .filter(|()| VerifyingKey::from_bytes(&bytes).is_ok())
            .map(|()| Self(bytes))
            .ok_or_else(|| PublicKeyError(s.to_owned()))
    }
}

/// One signed checkpoint from the sidecar file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Seq of the last record covered; 0 when the log was empty.
    pub seq: u64,
    /// Hash of that record ([`crate::ZERO_HASH`] when `seq` is 0).
    pub hash: String,
    /// When the checkpoint was signed.
    pub ts: Timestamp,
    /// Sandbox id of the log.
    pub sandbox: String,
    /// Written when the appender was closed: nothing may follow `seq` unless the log was
    /// reopened (which writes more checkpoints).
    pub is_final: bool,
    /// The signing key.
    pub key: PublicKey,
    /// Signature, 128 hex digits.
    pub sig: String,
}

/// Why a checkpoint line is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not JSON of the checkpoint shape.
    #[error("unparseable checkpoint: {0}")]
    Syntax(String),
    /// `key` is not a valid public key.
    #[error("checkpoint key is not a valid Ed25519 public key")]
    BadKey,
    /// `sig` does not verify under `key`.
    #[error("checkpoint signature does not verify")]
    BadSignature,
    /// The signature verifies but the line was reformatted.
    #[error("checkpoint is not in canonical form")]
    NotCanonical,
}

/// Signed part of a checkpoint, keys in declared order.
#[derive(Serialize)]
struct CheckpointBody<'a> {
    seq: u64,
    hash: &'a str,
    ts: Timestamp,
    sandbox: &'a str,
    #[serde(rename = "final")]
    is_final: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    seq: u64,
    hash: String,
    ts: Timestamp,
    sandbox: String,
    #[serde(rename = "final")]
    is_final: bool,
    key: String,
    sig: String,
}

fn body_json(seq: u64, hash: &str, ts: Timestamp, sandbox: &str, is_final: bool) -> Vec<u8> {
    let body = CheckpointBody {
        seq,
        hash,
        ts,
        sandbox,
        is_final,
    };
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN.len() + body.len());
    msg.extend_from_slice(DOMAIN);
    msg.extend_from_slice(body);
    msg
}

fn seal(mut body: Vec<u8>, key: &str, sig: &str) -> Vec<u8> {
    body.pop();
    body.extend_from_slice(b",\"key\":\"");
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(b"\",\"sig\":\"");
    body.extend_from_slice(sig.as_bytes());
    body.extend_from_slice(b"\"}\n");
    body
}

impl Checkpoint {
    /// Signs a checkpoint; returns it with its sidecar line (ending in `\n`).
    pub fn sign(
        key: &HostKey,
        seq: u64,
        hash: &str,
        ts: Timestamp,
        sandbox: &str,
        is_final: bool,
    ) -> (Self, Vec<u8>) {
        let body = body_json(seq, hash, ts, sandbox, is_final);
        let sig = hex::encode(key.signing.sign(&signed_message(&body)).to_bytes());
        let public = key.public_key();
        let line = seal(body, &public.to_string(), &sig);
        let cp = Self {
            seq,
            hash: hash.to_owned(),
            ts,
            sandbox: sandbox.to_owned(),
            is_final,
            key: public,
            sig,
        };
        (cp, line)
    }

    /// Parses one sidecar line (without `\n`) and checks its signature against the key it
    /// names and its canonical form. Whether that key is trusted is the caller's question.
    pub fn parse(line: &[u8]) -> Result<Self, CheckpointError> {
        let l: CheckpointLine =
            serde_json::from_slice(line).map_err(|e| CheckpointError::Syntax(e.to_string()))?;
        let key: PublicKey = l.key.parse().map_err(|_| CheckpointError::BadKey)?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&l.sig, &mut sig).map_err(|_| CheckpointError::BadSignature)?;
        let body = body_json(l.seq, &l.hash, l.ts, &l.sandbox, l.is_final);
        key.verifying_key()
            .ok_or(CheckpointError::BadKey)?
            .verify_strict(&signed_message(&body), &Signature::from_bytes(&sig))
            .map_err(|_| CheckpointError::BadSignature)?;
        let canonical = seal(body, &l.key, &l.sig);
        if canonical.get(..canonical.len() - 1) != Some(line) {
            return Err(CheckpointError::NotCanonical);
        }
        Ok(Self {
            seq: l.seq,
            hash: l.hash,
            ts: l.ts,
            sandbox: l.sandbox,
            is_final: l.is_final,
            key,
            sig: l.sig,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ZERO_HASH;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn key_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/airlock/audit-key");
        let first = HostKey::load_or_create(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let second = HostKey::load_or_create(&path).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        // No temporary file is left beside it.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["audit-key"]);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
    }

    #[test]
    fn key_with_loose_permissions_or_bad_content_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-key");
        HostKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = HostKey::load_or_create(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o640, .. }),
            "{err:?}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not hex\n").unwrap();
        let err = HostKey::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
        let err = HostKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn sign_parse_round_trip_and_tamper() {
        let key = HostKey::generate().unwrap();
        let ts = Timestamp::from_millis(1_795_749_165_123);
        let (cp, line) = Checkpoint::sign(&key, 42, ZERO_HASH, ts, "sb1", true);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with(&format!(
            r#"{{"seq":42,"hash":"{ZERO_HASH}","ts":"2026-11-27T03:12:45.123Z","sandbox":"sb1","final":true,"key":"{}","sig":""#,
            key.public_key()
        )));
        assert!(text.ends_with("\"}\n"));
        let body = &line[..line.len() - 1];
        assert_eq!(Checkpoint::parse(body), Ok(cp));

        let forged = text.trim_end().replace("\"seq\":42", "\"seq\":43");
        assert_eq!(
            Checkpoint::parse(forged.as_bytes()),
            Err(CheckpointError::BadSignature)
        );
        let forged = text.trim_end().replace("\"final\":true", "\"final\":false");
        assert_eq!(
            Checkpoint::parse(forged.as_bytes()),
            Err(CheckpointError::BadSignature)
        );
        // Re-signing with another key verifies on its own; trusting the key is up to `verify`.
        let other = HostKey::generate().unwrap();
        let (cp2, line2) = Checkpoint::sign(&other, 42, ZERO_HASH, ts, "sb1", true);
        assert_eq!(Checkpoint::parse(&line2[..line2.len() - 1]), Ok(cp2));
        let spaced = text.trim_end().replacen(',', ", ", 1);
        assert_eq!(
            Checkpoint::parse(spaced.as_bytes()),
            Err(CheckpointError::NotCanonical)
        );
    }

    #[test]
    fn public_key_hex_round_trip() {
        let key = HostKey::generate().unwrap().public_key();
        assert_eq!(key.to_string().parse::<PublicKey>(), Ok(key));
        assert!("zz".parse::<PublicKey>().is_err());
        assert!("00".repeat(31).parse::<PublicKey>().is_err());
    }
}
