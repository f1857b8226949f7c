//! Atomic file writes: write to a temporary file beside the destination,
//! then rename it over the destination once everything is on disk.

use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file that appears at its destination only when [`AtomicFile::commit`]
/// succeeds; dropped uncommitted, it leaves nothing behind.
pub struct AtomicFile {
    dest: PathBuf,
    /// What the rename replaces: `dest`, or the file a link there points to.
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `dest` (its folder must exist). A symbolic link there
    /// is written through: the file it points to is replaced and the link
    /// kept. Anything else that is not a plain file (a folder, a device such
    /// as `/dev/null`, a pipe) is refused: the rename would replace the
    /// node itself, for a user allowed to.
    pub fn create(dest: &Path) -> Result<Self> {
        let target = through_links(dest)?;
        // The kernel's view of `dest` too: it resolves links such as
        // /dev/stdout → /proc/self/fd/1 → a pipe, which no path names.
        for meta in [std::fs::metadata(dest), std::fs::metadata(&target)].into_iter().flatten() {
            if !meta.is_file() {
                let what = if meta.is_dir() { "a folder" } else { "not a plain file (a device or a pipe)" };
                return Err(Error::format(dest, format!("is {what}; give the path of a file to write")));
            }
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let tmp = target.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| {
            if target == dest {
                Error::io(dest, e)
            } else {
                // A link: name both ends, or "no such file" about a link that exists reads as nonsense.
                Error::io(&PathBuf::from(format!("{} → {}", dest.display(), target.display())), e)
            }
        })?;
        Ok(Self { dest: dest.to_path_buf(), target, tmp, writer: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.dest
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer.into_inner().map_err(|e| Error::io(&self.dest, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.dest, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.dest, e))
    }
}

/// `path` with any chain of symbolic links at its end followed (a dangling
/// link gives the path it points to, to be created).
fn through_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    // As the kernel's own limit on a chain of links.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&p).map_err(|e| Error::io(path, e))?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(Error::format(path, "too many levels of symbolic links"))
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.as_mut().expect("writer present until commit").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.as_mut().expect("writer present until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes).map_err(|e| Error::io(dest, e))?;
    f.commit()
}

/// Moves a fully written folder `tmp` to `dest`, replacing any folder
/// there: the old one is moved aside first and removed only after the new
/// one is in place.
pub fn replace_dir(tmp: &Path, dest: &Path) -> Result<()> {
    let old = dest.with_file_name(format!(
        ".{}.old{}",
        dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let had_old = dest.exists();
    if had_old {
        std::fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
    }
    if let Err(e) = std::fs::rename(tmp, dest) {
        if had_old {
            let _ = std::fs::rename(&old, dest);
        }
        return Err(Error::io(dest, e));
    }
    if had_old {
        let _ = if old.is_dir() { std::fs::remove_dir_all(&old) } else { std::fs::remove_file(&old) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_writes_leave_the_old_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.bin");
        write(&p, b"good").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half-writ").unwrap();
            // dropped without commit: a crash mid-write
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
        write(&p, b"better").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"better");
    }

    /// A link is written through, not replaced; a device or a folder is
    /// refused, not renamed over.
    #[cfg(unix)]
    #[test]
    fn links_are_written_through_and_other_nodes_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real/scores.csv");
        write(&real, b"old").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink("real/scores.csv", &link).unwrap();
        write(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A dangling link: the file it names is created.
        let dangling = dir.path().join("dangling.csv");
        std::os::unix::fs::symlink("real/later.csv", &dangling).unwrap();
        write(&dangling, b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("real/later.csv")).unwrap(), b"x");
        let e = write(Path::new("/dev/null"), b"x").unwrap_err().to_string();
        assert!(e.contains("/dev/null") && e.contains("not a plain file"), "{e}");
        let e = write(&dir.path().join("real"), b"x").unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        // Nothing else was written: the two files, the two links and `real`.
        assert_eq!(std::fs::read_dir(dir.path().join("real")).unwrap().count(), 2, "temporary file left behind");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "temporary file left behind");
    }
}
