//! What an import reads: an OCI image layout directory, an OCI archive (a tar of one), or a
//! `docker save` archive. Either way the result is a [`Plan`]: the chosen manifest's digest,
//! the image config, and the layer files in order, each checked against its digest.

use super::compression::is_compressed;
use super::error::OciError;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::Digest as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest JSON document (index, manifest, config) read.
const MAX_JSON: u64 = 16 << 20;

/// The image to unpack.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `oci-layout`, `oci-archive` or `docker-archive`.
    pub format: &'static str,
    /// The reference chosen (`org.opencontainers.image.ref.name`, or a `RepoTags` entry).
    pub reference: Option<String>,
    /// `sha256:...` of the manifest (OCI) or of the config (docker, its image id).
    pub digest: String,
    /// The image configuration.
    pub config: ImageConfiguration,
    /// Layer files, bottom first.
    pub layers: Vec<Layer>,
}

/// One layer file.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Where it is.
    pub path: PathBuf,
    /// `sha256:...` of the file.
    pub digest: String,
    /// Its media type as the manifest says.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, OciError> {
    let file = std::fs::File::open(path).map_err(|e| OciError::io("reading", path, e))?;
    let mut text = Vec::new();
    file.take(MAX_JSON + 1)
        .read_to_end(&mut text)
        .map_err(|e| OciError::io("reading", path, e))?;
    if text.len() as u64 > MAX_JSON {
        return Err(OciError::bad(path, "larger than 16 MiB"));
    }
    serde_json::from_slice(&text).map_err(|e| OciError::bad(path, e.to_string()))
}

/// `sha256:<hex>` of a file.
pub fn sha256_of(path: &Path) -> Result<String, OciError> {
    let mut file = std::fs::File::open(path).map_err(|e| OciError::io("reading", path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| OciError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The blob `digest` of the layout at `dir`, checked against its digest.
fn blob(dir: &Path, digest: &oci_spec::image::Digest) -> Result<PathBuf, OciError> {
    let algo = digest.algorithm().to_string();
    let hex = digest.digest();
    if algo != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(OciError::bad(dir, format!("unsupported digest {digest}")));
    }
    let path = dir.join("blobs").join("sha256").join(hex);
    let found = sha256_of(&path)?;
    if found != format!("sha256:{hex}") {
        return Err(OciError::bad(
            &path,
            format!("blob should have digest sha256:{hex}, has {found}"),
        ));
    }
    Ok(path)
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads the OCI layout at `dir`, choosing the manifest named `reference` (or the only one, or
/// the linux/amd64 one).
pub fn oci_layout(dir: &Path, reference: Option<&str>) -> Result<Plan, OciError> {
    let index: ImageIndex = read_json(&dir.join("index.json"))?;
    let mut candidates: Vec<_> = index
        .manifests()
        .iter()
        .filter(|d| {
            reference.is_none_or(|r| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| n == r || r.rsplit_once(':').is_some_and(|(_, tag)| n == tag))
            })
        })
        .cloned()
        .collect();
    if candidates.len() > 1 {
        candidates.retain(|d| {
            d.platform().as_ref().is_none_or(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
            })
        });
    }
    let names = || {
        index
            .manifests()
            .iter()
            .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).cloned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match candidates.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(OciError::bad(
                dir,
                format!(
                    "no image {} in index.json (it names: {})",
                    reference.map_or("for linux/amd64".to_string(), |r| format!("{r:?}")),
                    names()
                ),
            ));
        }
        _ => {
            return Err(OciError::bad(
                dir,
                format!(
                    "index.json holds several images; pick one with --ref ({})",
                    names()
                ),
            ));
        }
    };
    let reference = chosen
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME).cloned());
    let mut digest = chosen.digest().clone();
    let mut manifest_path = blob(dir, &digest)?;
    // A multi-platform index inside: take its linux/amd64 manifest.
    if *chosen.media_type() == MediaType::ImageIndex {
        let inner: ImageIndex = read_json(&manifest_path)?;
        let d = inner
            .manifests()
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
                })
            })
            .ok_or_else(|| OciError::bad(&manifest_path, "no linux/amd64 image in this index"))?;
        digest = d.digest().clone();
        manifest_path = blob(dir, &digest)?;
    }
    let manifest: ImageManifest = read_json(&manifest_path)?;
    let config: ImageConfiguration = read_json(&blob(dir, manifest.config().digest())?)?;
    let mut layers = Vec::new();
    for d in manifest.layers() {
        layers.push(Layer {
            path: blob(dir, d.digest())?,
            digest: d.digest().to_string(),
            media_type: d.media_type().to_string(),
            size: d.size(),
        });
    }
    Ok(Plan {
        format: "oci-layout",
        reference,
        digest: digest.to_string(),
        config,
        layers,
    })
}

/// One entry of a `docker save` archive's `manifest.json`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A path named by `manifest.json`, which must stay inside `dir`.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, OciError> {
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(OciError::bad(
            dir,
            format!("manifest.json names {name:?}, outside the archive"),
        ));
    }
    Ok(dir.join(rel))
}

/// Reads an unpacked `docker save` archive at `dir`.
pub fn docker(dir: &Path, reference: Option<&str>) -> Result<Plan, OciError> {
    let entries: Vec<DockerEntry> = read_json(&dir.join("manifest.json"))?;
    let tags = |e: &DockerEntry| e.repo_tags.clone().unwrap_or_default();
    let chosen: Vec<&DockerEntry> = entries
        .iter()
        .filter(|e| reference.is_none_or(|r| tags(e).iter().any(|t| t == r)))
        .collect();
    let entry = match chosen.as_slice() {
        [one] => *one,
        [] => {
            let all: Vec<String> = entries.iter().flat_map(tags).collect();
            return Err(OciError::bad(
                dir,
                format!(
                    "no image {reference:?} in manifest.json (it has: {})",
                    all.join(", ")
                ),
            ));
        }
        _ => {
            let all: Vec<String> = entries.iter().flat_map(tags).collect();
            return Err(OciError::bad(
                dir,
                format!(
                    "the archive holds several images; pick one with --ref ({})",
                    all.join(", ")
                ),
            ));
        }
    };
    let config_path = inside(dir, &entry.config)?;
    let config: ImageConfiguration = read_json(&config_path)?;
    let diff_ids = config.rootfs().diff_ids().clone();
    let mut layers = Vec::new();
    for (i, name) in entry.layers.iter().enumerate() {
        let path = inside(dir, name)?;
        let digest = sha256_of(&path)?;
        let size = std::fs::metadata(&path)
            .map_err(|e| OciError::io("reading", &path, e))?
            .len();
        // An uncompressed layer's digest is its diff id, which the config records.
        if !is_compressed(&path)?
            && let Some(want) = diff_ids.get(i)
            && *want != digest
        {
            return Err(OciError::bad(
                &path,
                format!("layer {} should have diff id {want}, has {digest}", i + 1),
            ));
        }
        layers.push(Layer {
            path,
            digest,
            media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
            size,
        });
    }
    Ok(Plan {
        format: "docker-archive",
        reference: reference
            .map(str::to_string)
            .or_else(|| tags(entry).first().cloned()),
        digest: sha256_of(&config_path)?,
        config,
        layers,
    })
}
