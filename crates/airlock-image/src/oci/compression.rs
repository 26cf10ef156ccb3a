//! Layer files: compressed or not, told by their first bytes (media types are not always
//! right in `docker save` archives), and their uncompressed tar stream.

use super::error::OciError;
use std::io::Read;
use std::path::Path;

const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn magic(path: &Path) -> Result<[u8; 4], OciError> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| OciError::io("reading", path, e))?;
    let mut n = 0;
    while n < head.len() {
        let Some(rest) = head.get_mut(n..) else { break };
        match f.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(OciError::io("reading", path, e)),
        }
    }
    Ok(head)
}

/// Whether a layer file is compressed (gzip or zstd), by its first bytes.
pub fn is_compressed(path: &Path) -> Result<bool, OciError> {
    let m = magic(path)?;
    Ok(m.starts_with(&GZIP) || m == ZSTD)
}

/// The uncompressed tar stream of a layer file.
pub(super) fn layer_reader(path: &Path) -> Result<Box<dyn Read>, OciError> {
    let m = magic(path)?;
    let file = std::fs::File::open(path).map_err(|e| OciError::io("reading", path, e))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    if m.starts_with(&GZIP) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if m == ZSTD {
        Err(OciError::bad(
            path,
            "zstd-compressed layers are not supported yet; export the image with gzip or \
             uncompressed layers (e.g. `skopeo copy --dest-compress-format gzip`)",
        ))
    } else {
        Ok(Box::new(reader))
    }
}
