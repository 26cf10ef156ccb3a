//! The Debian archives an image is built from and checked against, and fetching their current
//! `Release` dates and `Packages` indices over HTTP(S) for `airlock image check`.
//!
//! Mirror base URLs come from `AIRLOCK_DEBIAN_MIRROR` and `AIRLOCK_DEBIAN_SECURITY_MIRROR`
//! (default `http://deb.debian.org/debian` and `http://deb.debian.org/debian-security`), so tests
//! and air-gapped sites can point at their own server. Indices are tried as `Packages.xz`, then
//! `Packages.gz`, then plain `Packages`, as each suite publishes a different subset.

use super::index::{Index, release_date};
use super::patch::ArchiveIndex;
use crate::ImageError;
use std::io::Read;
use std::time::Duration;

/// The distribution release.
pub const SUITE: &str = "bookworm";
/// Default main archive.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Default security archive.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Largest index accepted after decompression (bookworm main is about 45 MB).
const MAX_INDEX_BYTES: u64 = 512 * 1024 * 1024;
/// Largest download accepted.
const MAX_DOWNLOAD_BYTES: u64 = 128 * 1024 * 1024;
/// Time allowed to connect to a mirror.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for one whole download.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// One archive: a suite on a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Suite, e.g. `bookworm-updates`.
    pub suite: String,
    /// Mirror base URL without a trailing slash.
    pub url: String,
    /// Whether this is the security archive.
    pub security: bool,
}

impl Archive {
    /// The `deb` line for apt's `sources.list`.
    pub fn sources_line(&self) -> String {
        format!("deb {} {} main", self.url, self.suite)
    }

    /// URL of a file under the suite's `dists` dir.
    fn dists_url(&self, rest: &str) -> String {
        format!("{}/dists/{}/{rest}", self.url, self.suite)
    }
}

/// The three archives of a bookworm image: base, updates and security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// Main archive base URL.
    pub main: String,
    /// Security archive base URL.
    pub security: String,
}

impl Default for Mirrors {
    fn default() -> Mirrors {
        Mirrors {
            main: DEFAULT_MIRROR.into(),
            security: DEFAULT_SECURITY_MIRROR.into(),
        }
    }
}

impl Mirrors {
    /// Mirrors from the environment, defaulting to deb.debian.org.
    pub fn from_env() -> Mirrors {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().trim_end_matches('/').to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Mirrors {
            main: var("AIRLOCK_DEBIAN_MIRROR", DEFAULT_MIRROR),
            security: var("AIRLOCK_DEBIAN_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR),
        }
    }

    /// The archives, base suite first.
    pub fn archives(&self) -> Vec<Archive> {
        vec![
            Archive {
                suite: SUITE.into(),
                url: self.main.clone(),
                security: false,
            },
            Archive {
                suite: format!("{SUITE}-updates"),
                url: self.main.clone(),
                security: false,
            },
            Archive {
                suite: format!("{SUITE}-security"),
                url: self.security.clone(),
                security: true,
            },
        ]
    }
}

/// The host's CA bundle (`SSL_CERT_FILE`, else Debian's), so https mirrors are trusted as apt
/// and curl trust them (including a site's own CA); Mozilla's roots when there is none.
fn root_certs() -> ureq::tls::RootCerts {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let certs: Vec<_> = std::fs::read(path)
        .map(|pem| {
            ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&certs)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(root_certs())
                .build(),
        )
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(DOWNLOAD_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Downloads `url`: `Ok(None)` on 404, the body otherwise.
fn get(agent: &ureq::Agent, url: &str) -> Result<Option<Vec<u8>>, ImageError> {
    let fetch_err = |message: String| ImageError::Fetch {
        url: url.to_string(),
        message,
    };
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| fetch_err(e.to_string()))?;
    match resp.status().as_u16() {
        200 => {}
        404 | 410 => return Ok(None),
        code => return Err(fetch_err(format!("HTTP status {code}"))),
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .read_to_vec()
        .map_err(|e| fetch_err(e.to_string()))?;
    Ok(Some(body))
}

/// Decompresses an index downloaded as `name` (`Packages.xz`, `Packages.gz` or `Packages`).
pub(crate) fn decompress(name: &str, bytes: &[u8]) -> Result<String, String> {
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        let mut input = std::io::BufReader::new(bytes);
        let mut limited = LimitedWriter {
            inner: &mut out,
            left: MAX_INDEX_BYTES,
        };
        lzma_rs::xz_decompress(&mut input, &mut limited).map_err(|e| format!("xz: {e}"))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_INDEX_BYTES)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
    } else {
        out = bytes.to_vec();
    }
    String::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))
}

/// A writer that refuses to grow past a limit (a decompression bomb stops early).
struct LimitedWriter<'a> {
    inner: &'a mut Vec<u8>,
    left: u64,
}

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if n > self.left {
            return Err(std::io::Error::other(format!(
                "index larger than {MAX_INDEX_BYTES} bytes"
            )));
        }
        self.left -= n;
        self.inner.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fetches one archive's Release date and amd64 `main` Packages index.
pub fn fetch(archive: &Archive) -> Result<ArchiveIndex, ImageError> {
    let agent = agent();
    let release_url = archive.dists_url("Release");
    let date = get(&agent, &release_url)?.and_then(|b| release_date(&String::from_utf8_lossy(&b)));
    for name in ["Packages.xz", "Packages.gz", "Packages"] {
        let url = archive.dists_url(&format!("main/binary-amd64/{name}"));
        let Some(bytes) = get(&agent, &url)? else {
            continue;
        };
        let text = decompress(name, &bytes).map_err(|message| ImageError::Fetch {
            url: url.clone(),
            message,
        })?;
        let index = Index::parse(&text).map_err(|e| ImageError::Fetch {
            url: url.clone(),
            message: e.to_string(),
        })?;
        return Ok(ArchiveIndex {
            suite: archive.suite.clone(),
            url: archive.url.clone(),
            date,
            security: archive.security,
            index,
        });
    }
    Err(ImageError::Fetch {
        url: archive.dists_url("main/binary-amd64/Packages{.xz,.gz,}"),
        message: "no Packages index found (HTTP 404)".into(),
    })
}

/// Fetches every archive of `mirrors`, in parallel.
pub fn fetch_all(mirrors: &Mirrors) -> Result<Vec<ArchiveIndex>, ImageError> {
    let archives = mirrors.archives();
    std::thread::scope(|s| {
        let handles: Vec<_> = archives.iter().map(|a| s.spawn(move || fetch(a))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ImageError::Fetch {
                        url: String::new(),
                        message: "fetch thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn archives_and_sources_lines() {
        let m = Mirrors::default();
        let lines: Vec<String> = m.archives().iter().map(Archive::sources_line).collect();
        assert_eq!(
            lines,
            vec![
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
            ]
        );
        assert_eq!(
            m.archives()[2].dists_url("main/binary-amd64/Packages.xz"),
            "http://deb.debian.org/debian-security/dists/bookworm-security/main/binary-amd64/Packages.xz"
        );
    }

    #[test]
    fn decompresses_each_format() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\n";
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut text.as_bytes(), &mut xz).unwrap();
        assert_eq!(decompress("Packages.xz", &xz).unwrap(), text);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        assert_eq!(
            decompress("Packages.gz", &gz.finish().unwrap()).unwrap(),
            text
        );

        assert_eq!(decompress("Packages", text.as_bytes()).unwrap(), text);
        assert!(
            decompress("Packages.xz", b"not xz")
                .unwrap_err()
                .starts_with("xz:")
        );
    }

    #[test]
    fn unreachable_mirror_is_a_fetch_error_naming_the_url() {
        // Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
        let archive = Archive {
            suite: "bookworm".into(),
            url: "http://127.0.0.1:9/debian".into(),
            security: false,
        };
        let err = fetch(&archive).unwrap_err().to_string();
        assert!(
            err.contains("http://127.0.0.1:9/debian/dists/bookworm/Release"),
            "{err}"
        );
    }
}
