//! The one writer of every file diffscale writes (case records, manifests, reports, figures,
//! checkpoints): a reader, or a crash, sees the old file or the new one, never a torn one.

use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` so that a reader (or a crash) sees the old file or the new one,
/// never a torn one: write a temporary file beside it, flush it to disk, rename it over.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // An I/O error names the file it is about ("Read-only file system" alone does not say where).
    write_atomic_inner(path, bytes).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn write_atomic_inner(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    // Whatever failed (the write, the sync or the rename), no temporary file stays behind.
    written.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    // Persist the rename itself (best effort: not every filesystem lets a folder be synced).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Remove temporary files a killed run left behind.
pub fn clean_temporaries(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with('.') && n.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// One process at a time in a run folder: two runs into one `--out` would delete each other's
/// temporary files and race on the same cases. Held until dropped; a lock whose process is gone
/// (killed) is taken over.
pub struct FolderLock {
    path: std::path::PathBuf,
}

impl FolderLock {
    pub fn acquire(dir: &Path) -> Result<FolderLock, String> {
        let path = dir.join(".diffscale.lock");
        let me = std::process::id();
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{me}");
                    return Ok(FolderLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid != me && Path::new(&format!("/proc/{pid}")).exists() => {
                            return Err(format!(
                                "{} is in use by another diffscale (pid {pid}); wait for it, or use another --out",
                                dir.display()
                            ));
                        }
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(format!("{}: cannot lock the run folder ({e})", dir.display())),
            }
        }
        Err(format!("{}: cannot lock the run folder (another process keeps taking it)", dir.display()))
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_locked_while_held_and_a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let held = FolderLock::acquire(dir.path()).unwrap();
        // A live process (pid 1, init) holding it: refused, naming the holder.
        std::fs::write(dir.path().join(".diffscale.lock"), "1\n").unwrap();
        let err = FolderLock::acquire(dir.path()).err().unwrap();
        assert!(err.contains("pid 1"), "{err}");
        // A pid that cannot exist: stale, taken over.
        std::fs::write(dir.path().join(".diffscale.lock"), "4294967295\n").unwrap();
        let again = FolderLock::acquire(dir.path()).unwrap();
        drop(held);
        drop(again);
        assert!(!dir.path().join(".diffscale.lock").exists());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        // A folder where the file should be makes the rename fail after the data was written.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(blocked.join("x").parent().unwrap()).unwrap();
        std::fs::create_dir(blocked.join("x")).unwrap();
        let err = write_atomic(&blocked.join("x"), b"new").unwrap_err();
        assert!(err.to_string().contains("blocked"), "the error names the path: {err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let left: Vec<_> = std::fs::read_dir(&blocked).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("x")], "a temporary file stayed behind");
    }
}
