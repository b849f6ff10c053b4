//! File digests: SHA-256 of the whole file and of consecutive 16 MiB chunks
//! (FIPS 180-4 via `ring::digest`), as `docs/evidence.md` § "File entries" defines.

use crate::{to_hex, RecorderError};
use ring::digest::{Context, SHA256};
use std::io::Read;
use std::path::Path;

/// Chunk size for per-chunk hashes: 16 MiB = 16 777 216 bytes. Fixed by
/// `docs/evidence.md` (format v1) so a browser can hash a large file piece by
/// piece with one-shot WebCrypto `digest` calls.
pub const CHUNK_SIZE: u64 = 16 * 1024 * 1024;

/// Size and hashes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// SHA-256 of bytes `[k·CHUNK_SIZE, min((k+1)·CHUNK_SIZE, size))` for
    /// k = 0, 1, …; empty for an empty file.
    pub chunks: Vec<[u8; 32]>,
}

impl FileDigest {
    /// The whole-file hash as 64 lower-case hex digits.
    pub fn sha256_hex(&self) -> String {
        to_hex(&self.sha256)
    }
    /// The chunk hashes as lower-case hex.
    pub fn chunks_hex(&self) -> Vec<String> {
        self.chunks.iter().map(|c| to_hex(c)).collect()
    }
}

/// Reads `path` once and returns its [`FileDigest`]; memory use is one 1 MiB buffer.
///
/// # Errors
/// [`RecorderError::Io`] when the file cannot be opened or read.
pub fn hash_file(path: &Path) -> Result<FileDigest, RecorderError> {
    let mut f = std::fs::File::open(path).map_err(RecorderError::io(path))?;
    let mut whole = Context::new(&SHA256);
    let mut chunk = Context::new(&SHA256);
    let mut in_chunk: u64 = 0;
    let mut size: u64 = 0;
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RecorderError::io(path)(e)),
        };
        let mut data = &buf[..n];
        whole.update(data);
        size += n as u64;
        while !data.is_empty() {
            let room = (CHUNK_SIZE - in_chunk) as usize;
            let take = room.min(data.len());
            chunk.update(&data[..take]);
            in_chunk += take as u64;
            data = &data[take..];
            if in_chunk == CHUNK_SIZE {
                let done = std::mem::replace(&mut chunk, Context::new(&SHA256));
                chunks.push(to32(done.finish().as_ref()));
                in_chunk = 0;
            }
        }
    }
    if in_chunk > 0 {
        chunks.push(to32(chunk.finish().as_ref()));
    }
    Ok(FileDigest { size, sha256: to32(whole.finish().as_ref()), chunks })
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    to32(ring::digest::digest(&SHA256, data).as_ref())
}

fn to32(d: &[u8]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o.copy_from_slice(d);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_has_no_chunks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("e");
        std::fs::write(&p, b"").unwrap();
        let h = hash_file(&p).unwrap();
        assert_eq!(h.size, 0);
        assert!(h.chunks.is_empty());
        assert_eq!(h.sha256_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn chunks_split_at_16_mib() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        let len = 2 * CHUNK_SIZE as usize + 5;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let h = hash_file(&p).unwrap();
        assert_eq!(h.size, len as u64);
        assert_eq!(h.sha256, sha256(&data));
        let c = CHUNK_SIZE as usize;
        assert_eq!(h.chunks, vec![sha256(&data[..c]), sha256(&data[c..2 * c]), sha256(&data[2 * c..])]);
    }

    #[test]
    fn small_file_single_chunk_equals_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        std::fs::write(&p, b"abc").unwrap();
        let h = hash_file(&p).unwrap();
        assert_eq!(h.chunks, vec![h.sha256]);
    }
}
