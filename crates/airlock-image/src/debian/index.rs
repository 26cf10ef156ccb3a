//! Parsers for Debian's control-file formats: `Packages` indices (from an archive or apt's lists),
//! dpkg's `status` database and a suite's `Release`/`InRelease` file. Pure functions over text,
//! so they are tested without a network or a chroot; the build and the patch check call them.
//!
//! Only the fields airlock needs are kept: package name, version and architecture (and dpkg's
//! `Status` for the status database). Continuation lines and other fields are skipped.

use std::collections::HashMap;

/// One binary package entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    /// `Package:`.
    pub name: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:` (`amd64`, `all`, ...).
    pub architecture: String,
}

/// A malformed stanza.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct IndexError {
    /// 1-based line of the stanza's first line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The fields of one stanza that airlock reads.
#[derive(Default)]
struct Stanza<'a> {
    line: usize,
    package: Option<&'a str>,
    version: Option<&'a str>,
    architecture: Option<&'a str>,
    status: Option<&'a str>,
}

impl<'a> Stanza<'a> {
    fn entry(&self) -> Result<PackageEntry, IndexError> {
        let missing = |field: &str| IndexError {
            line: self.line,
            message: format!("stanza has no {field} field"),
        };
        Ok(PackageEntry {
            name: self.package.ok_or_else(|| missing("Package"))?.to_string(),
            version: self.version.ok_or_else(|| missing("Version"))?.to_string(),
            architecture: self
                .architecture
                .ok_or_else(|| missing("Architecture"))?
                .to_string(),
        })
    }
}

/// Splits control-file text into stanzas, calling `each` with every one that has fields.
fn stanzas<'a>(
    text: &'a str,
    mut each: impl FnMut(&Stanza<'a>) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let mut cur = Stanza::default();
    let mut has_fields = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if has_fields {
                each(&cur)?;
            }
            cur = Stanza::default();
            has_fields = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation of a multi-line field we do not read (Description, Conffiles).
            continue;
        }
        if !has_fields {
            cur.line = n + 1;
            has_fields = true;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err(IndexError {
                line: n + 1,
                message: format!("expected `Field: value`, found {line:?}"),
            });
        };
        let value = value.trim();
        match field {
            "Package" => cur.package = Some(value),
            "Version" => cur.version = Some(value),
            "Architecture" => cur.architecture = Some(value),
            "Status" => cur.status = Some(value),
            _ => {}
        }
    }
    if has_fields {
        each(&cur)?;
    }
    Ok(())
}

/// Parses a `Packages` index.
pub fn parse_packages(text: &str) -> Result<Vec<PackageEntry>, IndexError> {
    let mut out = Vec::new();
    stanzas(text, |s| {
        out.push(s.entry()?);
        Ok(())
    })?;
    Ok(out)
}

/// Parses dpkg's `status` database, keeping only installed packages (`install ok installed`),
/// sorted by name.
pub fn parse_status(text: &str) -> Result<Vec<PackageEntry>, IndexError> {
    let mut out = Vec::new();
    stanzas(text, |s| {
        if s.status
            .is_some_and(|st| st.split_whitespace().last() == Some("installed"))
        {
            out.push(s.entry()?);
        }
        Ok(())
    })?;
    out.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.architecture.cmp(&b.architecture))
    });
    Ok(out)
}

/// The `Date:` field of a `Release` or `InRelease` file (the suite's snapshot time, RFC 2822
/// as the archive writes it). `InRelease` is clear-signed; the field is read from the signed
/// text and the signature is not checked here (apt checked it when it fetched the file).
pub fn release_date(text: &str) -> Option<String> {
    text.lines()
        .take_while(|l| !l.starts_with("-----BEGIN PGP SIGNATURE"))
        .find_map(|l| l.strip_prefix("Date:"))
        .map(|d| d.trim().to_string())
}

/// The versions an archive offers, by package name.
#[derive(Debug, Clone, Default)]
pub struct Index {
    by_name: HashMap<String, Vec<(String, String)>>,
}

impl Index {
    /// Builds an index from parsed entries.
    pub fn new(entries: Vec<PackageEntry>) -> Index {
        let mut by_name: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for e in entries {
            by_name
                .entry(e.name)
                .or_default()
                .push((e.version, e.architecture));
        }
        Index { by_name }
    }

    /// Parses a `Packages` index.
    pub fn parse(text: &str) -> Result<Index, IndexError> {
        Ok(Index::new(parse_packages(text)?))
    }

    /// Versions of `name` installable on `arch` (its own architecture or `all`).
    pub fn versions<'a>(&'a self, name: &str, arch: &'a str) -> impl Iterator<Item = &'a str> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter(move |(_, a)| a == arch || a == "all")
            .map(|(v, _)| v.as_str())
    }

    /// Whether the index offers exactly this version.
    pub fn has(&self, name: &str, version: &str, arch: &str) -> bool {
        self.versions(name, arch).any(|v| v == version)
    }

    /// Number of package names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the index lists nothing.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
Package: git
Version: 1:2.39.5-0+deb12u2
Installed-Size: 39130
Architecture: amd64
Depends: libc6 (>= 2.34), git-man (>> 1:2.39.5)
Description: fast, scalable, distributed revision control system
 Git is popular version control system designed to handle very large
 .
 projects with speed and efficiency.

Package: git-man
Version: 1:2.39.5-0+deb12u2
Architecture: all

";

    fn entry(name: &str, version: &str, arch: &str) -> PackageEntry {
        PackageEntry {
            name: name.into(),
            version: version.into(),
            architecture: arch.into(),
        }
    }

    #[test]
    fn parses_packages() {
        assert_eq!(
            parse_packages(PACKAGES).unwrap(),
            vec![
                entry("git", "1:2.39.5-0+deb12u2", "amd64"),
                entry("git-man", "1:2.39.5-0+deb12u2", "all"),
            ]
        );
        // No trailing blank line, CRLF-free but extra blank lines between stanzas.
        assert_eq!(
            parse_packages("\n\nPackage: a\nVersion: 1\nArchitecture: all").unwrap(),
            vec![entry("a", "1", "all")]
        );
        assert_eq!(parse_packages("").unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_stanzas_with_their_line() {
        assert_eq!(
            parse_packages(
                "Package: a\nVersion: 1\nArchitecture: all\n\nPackage: b\nArchitecture: all\n"
            ),
            Err(IndexError {
                line: 5,
                message: "stanza has no Version field".into()
            })
        );
        assert_eq!(
            parse_packages("Package: a\nnonsense\n"),
            Err(IndexError {
                line: 2,
                message: "expected `Field: value`, found \"nonsense\"".into()
            })
        );
    }

    #[test]
    fn status_keeps_installed_packages_only() {
        let status = "\
Package: zlib1g
Status: install ok installed
Architecture: amd64
Version: 1:1.2.13.dfsg-1

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u8
";
        assert_eq!(
            parse_status(status).unwrap(),
            vec![
                entry("base-files", "12.4+deb12u8", "amd64"),
                entry("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
            ]
        );
    }

    #[test]
    fn reads_release_date() {
        let inrelease = "\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Codename: bookworm-security
Date: Wed, 25 Nov 2026 02:22:30 UTC
Valid-Until: Wed, 02 Dec 2026 02:22:30 UTC
-----BEGIN PGP SIGNATURE-----
Date: forged
";
        assert_eq!(
            release_date(inrelease).as_deref(),
            Some("Wed, 25 Nov 2026 02:22:30 UTC")
        );
        assert_eq!(release_date("Origin: Debian\n"), None);
    }

    #[test]
    fn index_matches_architecture_or_all() {
        let idx = Index::parse(PACKAGES).unwrap();
        assert!(idx.has("git", "1:2.39.5-0+deb12u2", "amd64"));
        assert!(!idx.has("git", "1:2.39.5-0+deb12u2", "i386"));
        assert!(idx.has("git-man", "1:2.39.5-0+deb12u2", "amd64"));
        assert_eq!(idx.versions("missing", "amd64").count(), 0);
        assert_eq!(idx.len(), 2);
    }
}
