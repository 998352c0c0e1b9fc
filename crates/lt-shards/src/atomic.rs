//! Atomic output directories.

use crate::{Result, ShardError};
use std::path::{Path, PathBuf};

/// A staging directory that becomes `target` only on [`AtomicDir::commit`].
///
/// The staging directory is a hidden sibling (`.NAME.tmp-PID`) on the same
/// file system, so the final step is a rename. Dropping without committing
/// removes it. Staging directories left by killed builds (whose process no
/// longer exists) are removed when the next build of the same target starts.
#[derive(Debug)]
pub struct AtomicDir {
    target: PathBuf,
    staging: PathBuf,
    overwrite: bool,
    committed: bool,
}

fn sibling(target: &Path, tag: &str) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| ShardError::format(target, "output path has no final component"))?
        .to_string_lossy()
        .into_owned();
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{name}.{tag}-{}", std::process::id())))
}

fn is_nonempty_dir(p: &Path) -> bool {
    match std::fs::read_dir(p) {
        Ok(mut it) => it.next().is_some(),
        Err(_) => p.exists(),
    }
}

impl AtomicDir {
    /// Refuses an existing non-empty `target` unless `overwrite`.
    pub fn begin(target: &Path, overwrite: bool) -> Result<AtomicDir> {
        if is_nonempty_dir(target) && !overwrite {
            return Err(ShardError::OutputExists { path: target.to_path_buf() });
        }
        let staging = sibling(target, "tmp")?;
        Self::remove_stale(target);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| ShardError::io(&staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| ShardError::io(&staging, e))?;
        Ok(AtomicDir { target: target.to_path_buf(), staging, overwrite, committed: false })
    }

    fn remove_stale(target: &Path) {
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else { return };
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(parent) else { return };
        for e in entries.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = fname.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                tracing::info!("removing stale staging directory {}", e.path().display());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// The final location.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves the staging directory into place (replacing `target` when
    /// overwriting: the old one is moved aside first and deleted last).
    pub fn commit(mut self) -> Result<PathBuf> {
        let target = self.target.clone();
        let mut old = None;
        if target.exists() {
            if is_nonempty_dir(&target) && !self.overwrite {
                return Err(ShardError::OutputExists { path: target });
            }
            let aside = sibling(&target, "old")?;
            std::fs::rename(&target, &aside).map_err(|e| ShardError::io(&target, e))?;
            old = Some(aside);
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| ShardError::io(parent, e))?;
        }
        std::fs::rename(&self.staging, &target).map_err(|e| ShardError::io(&target, e))?;
        self.committed = true;
        if let Some(old) = old {
            std::fs::remove_dir_all(&old).map_err(|e| ShardError::io(&old, e))?;
        }
        Ok(target)
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nonempty_and_commits_atomically() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("x"), b"old").unwrap();
        let e = AtomicDir::begin(&out, false).unwrap_err();
        assert!(e.to_string().contains("--overwrite"), "{e}");

        let d = AtomicDir::begin(&out, true).unwrap();
        std::fs::write(d.path().join("y"), b"new").unwrap();
        // Until commit, the old directory is untouched.
        assert!(out.join("x").exists());
        d.commit().unwrap();
        assert!(!out.join("x").exists());
        assert_eq!(std::fs::read(out.join("y")).unwrap(), b"new");
        // Nothing left over beside it.
        let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn dropped_build_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        {
            let d = AtomicDir::begin(&out, false).unwrap();
            std::fs::write(d.path().join("half"), b"x").unwrap();
        }
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_staging_dirs_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        // A pid that cannot exist (> pid_max).
        let stale = root.path().join(".out.tmp-4294967");
        std::fs::create_dir(&stale).unwrap();
        let d = AtomicDir::begin(&out, false).unwrap();
        assert!(!stale.exists());
        drop(d);
    }
}
