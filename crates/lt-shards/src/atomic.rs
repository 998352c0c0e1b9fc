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
    replaces: bool,
    committed: bool,
}

fn sibling(target: &Path, tag: &str) -> Result<PathBuf> {
    let name =
        target.file_name().ok_or_else(|| ShardError::format(target, "output path has no final component"))?.to_string_lossy().into_owned();
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{name}.{tag}-{}", std::process::id())))
}

/// What is at the output path now.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    EmptyDir,
    /// A non-empty directory holding an lt-glmc `manifest.json`.
    Build,
    /// A non-empty directory that is not a build.
    OtherDir,
}

/// Looks at `target` without changing it. A file, or a link to anything
/// but a directory, is an error: a build never replaces one.
fn existing(target: &Path) -> Result<Existing> {
    let meta = match std::fs::metadata(target) {
        Ok(m) => m,
        // NotADirectory: a parent is a file; creating the staging
        // directory fails below with the reason.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            // A dangling symbolic link is still something we would replace.
            if std::fs::symlink_metadata(target).is_ok() {
                return Err(ShardError::OutputNotDir { path: target.to_path_buf() });
            }
            return Ok(Existing::Nothing);
        }
        Err(e) => return Err(ShardError::Output { path: target.to_path_buf(), what: "cannot look at it".into(), error: e }),
    };
    if !meta.is_dir() {
        return Err(ShardError::OutputNotDir { path: target.to_path_buf() });
    }
    let mut entries = std::fs::read_dir(target).map_err(|e| ShardError::Output {
        path: target.to_path_buf(),
        what: "cannot list the directory".into(),
        error: e,
    })?;
    if entries.next().is_none() {
        return Ok(Existing::EmptyDir);
    }
    Ok(if is_build(target) { Existing::Build } else { Existing::OtherDir })
}

/// True when `dir/manifest.json` is JSON whose `format` is one of ours. Its
/// other fields are not checked, so a damaged or older build can still be
/// replaced.
fn is_build(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else { return false };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    v.get("format").and_then(|f| f.as_str()).is_some_and(|f| f.starts_with("lt-glmc-shards/"))
}

impl AtomicDir {
    /// Starts a build of `target`. Refused, before anything is written: a
    /// `target` that exists and is not a directory; a non-empty directory
    /// without `overwrite`; and, even with `overwrite`, a non-empty
    /// directory that is not an earlier build (no lt-glmc `manifest.json`),
    /// so a mistyped `-o` never deletes someone's data.
    pub fn begin(target: &Path, overwrite: bool) -> Result<AtomicDir> {
        let found = existing(target)?;
        match found {
            Existing::Build | Existing::OtherDir if !overwrite => return Err(ShardError::OutputExists { path: target.to_path_buf() }),
            Existing::OtherDir => return Err(ShardError::OutputNotABuild { path: target.to_path_buf() }),
            _ => {}
        }
        let staging = sibling(target, "tmp")?;
        Self::remove_stale(target);
        let parent = staging.parent().unwrap_or(Path::new(".")).to_path_buf();
        let stage_err = |e: std::io::Error| ShardError::Output {
            path: target.to_path_buf(),
            what: format!("cannot create a directory in {}", parent.display()),
            error: e,
        };
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(stage_err)?;
        }
        std::fs::create_dir_all(&staging).map_err(stage_err)?;
        Ok(AtomicDir { target: target.to_path_buf(), staging, overwrite, replaces: found == Existing::Build, committed: false })
    }

    /// True when committing will replace an earlier build at the target.
    pub fn replaces_build(&self) -> bool {
        self.replaces
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

    /// Moves the staging directory into place (replacing an earlier build
    /// when overwriting: it is moved aside first and deleted last). The
    /// target is checked again, as it may have changed during the build.
    pub fn commit(mut self) -> Result<PathBuf> {
        let target = self.target.clone();
        let out_err = |what: &str, e: std::io::Error| ShardError::Output { path: target.clone(), what: what.into(), error: e };
        let mut old = None;
        match existing(&target)? {
            Existing::Nothing => {}
            Existing::EmptyDir => {
                std::fs::remove_dir(&target).map_err(|e| out_err("cannot replace the empty directory", e))?;
            }
            Existing::Build | Existing::OtherDir if !self.overwrite => {
                return Err(ShardError::OutputExists { path: target.clone() });
            }
            Existing::OtherDir => return Err(ShardError::OutputNotABuild { path: target.clone() }),
            Existing::Build => {
                let aside = sibling(&target, "old")?;
                std::fs::rename(&target, &aside).map_err(|e| out_err("cannot move the earlier build aside", e))?;
                old = Some(aside);
            }
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| out_err(&format!("cannot create {}", parent.display()), e))?;
        }
        if let Err(e) = std::fs::rename(&self.staging, &target) {
            // Put the earlier build back where it was.
            if let Some(old) = &old {
                let _ = std::fs::rename(old, &target);
            }
            return Err(out_err("cannot move the finished build into place", e));
        }
        self.committed = true;
        if let Some(old) = old {
            if let Err(e) = std::fs::remove_dir_all(&old) {
                tracing::warn!(
                    "{} is in place, but the earlier build moved aside to {} could not be removed ({e}); remove it by hand",
                    target.display(),
                    old.display()
                );
            }
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
        std::fs::write(out.join("manifest.json"), r#"{"format": "lt-glmc-shards/1"}"#).unwrap();
        let e = AtomicDir::begin(&out, false).unwrap_err();
        assert!(e.to_string().contains("set overwrite to replace it"), "{e}");
        assert_eq!(e.settings(), ["overwrite"]);

        let d = AtomicDir::begin(&out, true).unwrap();
        assert!(d.replaces_build());
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

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_at_the_output_path_is_refused_even_with_overwrite() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("notes.txt");
        std::fs::write(&out, b"user data").unwrap();
        for overwrite in [false, true] {
            let e = AtomicDir::begin(&out, overwrite).unwrap_err();
            assert!(matches!(e, ShardError::OutputNotDir { .. }), "{e}");
            assert!(e.to_string().contains("notes.txt") && e.to_string().contains("not a directory"), "{e}");
        }
        // Untouched, and nothing hidden beside it.
        assert_eq!(std::fs::read(&out).unwrap(), b"user data");
        assert_eq!(names(root.path()), ["notes.txt"]);
    }

    #[test]
    fn a_directory_that_is_not_a_build_is_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("photos");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("cat.jpg"), b"x").unwrap();
        // A manifest.json of someone else's format does not count either.
        std::fs::write(out.join("manifest.json"), r#"{"format": "other/1"}"#).unwrap();
        let e = AtomicDir::begin(&out, true).unwrap_err();
        assert!(matches!(e, ShardError::OutputNotABuild { .. }), "{e}");
        assert!(e.to_string().contains("photos"), "{e}");
        assert_eq!(names(&out), ["cat.jpg", "manifest.json"]);
        assert_eq!(names(root.path()), ["photos"]);
        // It may turn into a non-build during a build: commit checks again.
        let out2 = root.path().join("b");
        let d = AtomicDir::begin(&out2, true).unwrap();
        std::fs::write(&out2, b"appeared meanwhile").unwrap();
        assert!(matches!(d.commit().unwrap_err(), ShardError::OutputNotDir { .. }));
        assert_eq!(std::fs::read(&out2).unwrap(), b"appeared meanwhile");
    }

    #[test]
    fn an_empty_directory_is_used() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let d = AtomicDir::begin(&out, false).unwrap();
        assert!(!d.replaces_build());
        std::fs::write(d.path().join("y"), b"new").unwrap();
        d.commit().unwrap();
        assert_eq!(names(&out), ["y"]);
        assert_eq!(names(root.path()), ["out"]);
    }

    #[test]
    fn staging_errors_name_the_output_path_not_the_hidden_one() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let out = file.join("out");
        let e = AtomicDir::begin(&out, false).unwrap_err().to_string();
        assert!(e.starts_with(&format!("output {}: cannot create a directory in {}", out.display(), file.display())), "{e}");
        assert!(!e.contains(".out.tmp"), "{e}");
        // The OS's reason once, not twice.
        assert_eq!(e.matches("os error").count(), 1, "{e}");
    }
}
