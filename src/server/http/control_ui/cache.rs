//! Fingerprinted assets (`assets/<name>-<hash>.<ext>` of a Control UI build) kept in memory
//! once read: their names change with their content, so a copy never goes stale, and a page
//! load asks for dozens of them at once. Each entry holds every representation (identity and
//! the precompressed siblings), so choosing one per `Accept-Encoding` is the same as on disk.
//! Bounded: files over [`MAX_FILE`] and anything past [`BUDGET`] are served from disk.

use std::collections::HashMap;
use std::io::{self, Read as _};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use hyper::HeaderMap;

use super::Validators;
use super::files::{self, Encoding, OpenFile};

/// The largest single representation kept.
const MAX_FILE: u64 = 4 * 1024 * 1024;
/// All entries together (the package's `.js`/`.css` with their siblings are about 34 MB).
const BUDGET: usize = 64 * 1024 * 1024;

/// One representation of an asset.
pub(super) struct Representation {
    pub encoding: Encoding,
    pub bytes: Bytes,
    /// Its `ETag` (the strong validator the file on disk would have had) and `Last-Modified`,
    /// formatted once: a cached asset is served many times.
    pub validators: Validators,
    /// The head of a `200` for it, made on its first unconditional request.
    pub head: OnceLock<HeaderMap>,
}

/// An asset and its representations, identity first.
pub(super) struct CachedAsset {
    pub representations: Vec<Representation>,
}

impl CachedAsset {
    fn size(&self) -> usize {
        self.representations.iter().map(|r| r.bytes.len()).sum()
    }

    /// The representation for `encoding`, when the build has one.
    pub fn get(&self, encoding: Encoding) -> Option<&Representation> {
        self.representations.iter().find(|r| r.encoding == encoding)
    }
}

#[derive(Default)]
pub(super) struct AssetCache {
    entries: RwLock<HashMap<String, Arc<CachedAsset>>>,
    used: Mutex<usize>,
}

impl AssetCache {
    pub fn get(&self, rel: &str) -> Option<Arc<CachedAsset>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(rel)
            .cloned()
    }

    /// Keeps `asset` when the budget allows; either way the caller serves it.
    pub fn insert(&self, rel: String, asset: CachedAsset) -> Arc<CachedAsset> {
        let asset = Arc::new(asset);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(&rel) && *used + asset.size() <= BUDGET {
            *used += asset.size();
            entries.insert(rel, Arc::clone(&asset));
        }
        asset
    }
}

/// Reads `rel` and (when `compressible`) its `.br`/`.gz` siblings, each opened as
/// [`files::open_below`] opens it; `Ok(None)` when the file is not there or too large to keep
/// (the disk path then answers).
pub(super) fn load(
    root_real: &Path,
    rel: &str,
    reject_hardlinks: bool,
    compressible: bool,
) -> io::Result<Option<CachedAsset>> {
    let Some(source) = files::open_below(root_real, rel, reject_hardlinks)? else {
        return Ok(None);
    };
    if source.len > MAX_FILE {
        return Ok(None);
    }
    let last_modified = source.last_modified;
    let mut representations = vec![read(source, Encoding::Identity, last_modified)?];
    if compressible {
        for encoding in [Encoding::Brotli, Encoding::Gzip] {
            let sibling = format!("{rel}{}", encoding.suffix());
            match files::open_below(root_real, &sibling, reject_hardlinks)? {
                Some(file) if file.len <= MAX_FILE => {
                    representations.push(read(file, encoding, last_modified)?)
                }
                Some(_) => return Ok(None),
                None => {}
            }
        }
    }
    Ok(Some(CachedAsset { representations }))
}

fn read(
    file: OpenFile,
    encoding: Encoding,
    last_modified: SystemTime,
) -> io::Result<Representation> {
    let mut bytes = Vec::with_capacity(file.len as usize);
    (&file.file).read_to_end(&mut bytes)?;
    Ok(Representation {
        encoding,
        validators: Validators::new(
            super::representation_etag(&file.etag, encoding),
            last_modified,
        ),
        bytes: Bytes::from(bytes),
        head: OnceLock::new(),
    })
}
