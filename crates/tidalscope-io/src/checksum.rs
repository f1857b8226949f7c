//! SHA-256 checksums of files and of model folders, so that a run's
//! record says exactly which bytes it used and `collect` can tell whether
//! the parts of a job used the same model.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The SHA-256 of a file's bytes, as 64 hex digits (read in blocks).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// One SHA-256 over the named files of a folder: each file's name and its
/// own SHA-256, in the order given. Two folders agree exactly when these
/// files have the same names and bytes.
pub fn sha256_files(dir: &Path, names: &[&str]) -> Result<String> {
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(sha256_file(&dir.join(name))?.as_bytes());
        hasher.update([b'\n']);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_and_folder_sums_that_see_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"abc").unwrap();
        std::fs::write(dir.path().join("b"), b"").unwrap();
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_file(&dir.path().join("a")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let both = sha256_files(dir.path(), &["a", "b"]).unwrap();
        assert_ne!(both, sha256_files(dir.path(), &["b", "a"]).unwrap());
        std::fs::write(dir.path().join("b"), b"x").unwrap();
        assert_ne!(both, sha256_files(dir.path(), &["a", "b"]).unwrap());
        let err = sha256_file(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
