//! Run directories shared by the trainer and fine-tuning: the lock a
//! writer holds for a run's lifetime, and what a resume may change.
//!
//! **Lock.** A process that writes a run directory (`lt-train`, `lt-train
//! finetune`) holds an exclusive `flock(2)` on `<run>/.lock` from before its
//! first write until it ends; fine-tuning holds a shared one on the run it
//! reads from. A second writer (or a trainer on a run being fine-tuned) is
//! refused with an error that names the holder's PID. The kernel drops the
//! lock with the process, so a killed run never leaves a stale lock behind
//! (the file itself stays; it is not the lock). On a file system without
//! `flock` (some network mounts) the run goes ahead unlocked, with a warning.
//!
//! **Resume.** A resume must use the run's saved recipe; the only change it
//! accepts is more epochs (`lt-train --resume RUN --epochs N`), and only
//! where the run so far is exactly the start of the longer run: a constant
//! learning rate and, for the trainer, no cumulative α (GLMC's re-weighting
//! uses α = 1 − (e/E)², which depends on E like the cosine schedules do).
//! Settings that change no result are exempt: the `[log]` section (the
//! TensorBoard event files) may differ on resume, and is then saved.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::error::{Result, TrainError};
use crate::recipe::{Method, Recipe, ScheduleName};
use lt_report::EpochRecord;

/// The lock file in a run directory.
pub const LOCK_FILE: &str = ".lock";

/// A held run-directory lock; dropping the last handle (or the process
/// ending) releases it.
///
/// Locks are per process: taking the lock of a directory this process
/// already holds returns another handle to the same lock (so `lt-train`
/// can hold its run across [`crate::train::train`] and the report), and
/// only other processes are refused.
#[derive(Clone, Debug)]
pub struct RunLock {
    inner: Arc<Held>,
}

#[derive(Debug)]
struct Held {
    _file: Option<File>,
    path: PathBuf,
    exclusive: bool,
}

/// The locks this process holds, by canonical directory.
static HELD: Mutex<Vec<(PathBuf, Weak<Held>)>> = Mutex::new(Vec::new());

impl RunLock {
    /// Takes the exclusive lock of run directory `dir` (which must exist)
    /// and records this process's PID in it.
    pub fn exclusive(dir: &Path) -> Result<RunLock> {
        Self::take(dir, true)
    }

    /// Takes a shared lock of `dir`: any number of readers, no writer.
    pub fn shared(dir: &Path) -> Result<RunLock> {
        Self::take(dir, false)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn take(dir: &Path, exclusive: bool) -> Result<RunLock> {
        let key = dir.canonicalize().map_err(|source| TrainError::Io { path: dir.to_path_buf(), source })?;
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(_, w)| w.strong_count() > 0);
        if let Some(inner) = held.iter().find(|(k, _)| *k == key).and_then(|(_, w)| w.upgrade()) {
            if inner.exclusive || !exclusive {
                return Ok(RunLock { inner });
            }
            return Err(TrainError::RunDirInUse {
                path: dir.to_path_buf(),
                why: format!("{} is in use: this process reads it and cannot also write it", dir.display()),
            });
        }
        let inner = Arc::new(flock(dir, exclusive)?);
        held.push((key, Arc::downgrade(&inner)));
        Ok(RunLock { inner })
    }
}

fn flock(dir: &Path, exclusive: bool) -> Result<Held> {
    let path = dir.join(LOCK_FILE);
    let io = |source| TrainError::Io { path: path.clone(), source };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("another process (pid {pid}) is writing it"),
                    Err(_) => "another process is reading it (lt-train finetune from this run)".to_string(),
                };
                let why = if exclusive {
                    format!("{} is in use: {holder}; wait for it to finish, or use another run directory", dir.display())
                } else {
                    format!("{} is in use: {holder}; wait for it to finish", dir.display())
                };
                return Err(TrainError::RunDirInUse { path: dir.to_path_buf(), why });
            }
            Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) => {
                tracing::warn!(path = %path.display(), error = %e, "the file system cannot lock; running without a run-directory lock");
                return Ok(Held { _file: None, path, exclusive });
            }
            _ => return Err(io(e)),
        }
    }
    // The file names the writer (for the refusal above); readers leave it
    // empty, so a killed writer's PID never outlives the next lock.
    file.set_len(0).and_then(|_| file.rewind()).map_err(io)?;
    if exclusive {
        writeln!(file, "{}", std::process::id()).and_then(|_| file.flush()).map_err(io)?;
    }
    Ok(Held { _file: Some(file), path, exclusive })
}

/// Creates `dir` (when `create`) and takes its exclusive lock. A missing
/// directory without `create` is `Ok(None)` (the caller says what is
/// missing).
pub fn lock_run(dir: &Path, create: bool) -> Result<Option<RunLock>> {
    if create {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.to_path_buf(), source })?;
    } else if !dir.is_dir() {
        return Ok(None);
    }
    RunLock::exclusive(dir).map(Some)
}

/// Which stage's run directory a recipe belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Train,
    Finetune,
}

impl Stage {
    fn epochs_key(self) -> &'static str {
        match self {
            Stage::Train => "train.epochs",
            Stage::Finetune => "finetune.epochs",
        }
    }

    fn epochs(self, r: &Recipe) -> usize {
        match self {
            Stage::Train => r.train.epochs,
            Stage::Finetune => r.finetune.map_or(0, |f| f.epochs),
        }
    }

    fn set_epochs(self, r: &mut Recipe, e: usize) {
        match self {
            Stage::Train => r.train.epochs = e,
            Stage::Finetune => {
                if let Some(f) = &mut r.finetune {
                    f.epochs = e;
                }
            }
        }
    }

    fn schedule(self, r: &Recipe) -> ScheduleName {
        match self {
            Stage::Train => r.optim.schedule,
            Stage::Finetune => r.finetune.map_or(ScheduleName::Cosine, |f| f.schedule),
        }
    }
}

/// What the resume check decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeChange {
    /// The recipe is the saved one.
    Same,
    /// Only the epochs grew, from `from` to `to`, and that is well defined:
    /// the caller continues with the new recipe (and saves it).
    Extend { from: usize, to: usize },
    /// Only settings that change no result (`log.*`) differ: the caller
    /// continues with the new recipe (and saves it).
    Logging,
}

/// The resume check that `recipe` is the one saved in run directory `out`,
/// whose checkpoint has `done` epochs of the stage; see the module docs for
/// the one change that is allowed.
pub fn check_resume_recipe(out: &Path, recipe: &Recipe, stage: Stage, done: usize) -> Result<ResumeChange> {
    let resume_err = |why: String| TrainError::Resume { path: out.to_path_buf(), why };
    let rp = out.join(crate::train::RECIPE_FILE);
    let saved = Recipe::load(&rp).map_err(|e| resume_err(format!("its {}: {e}", crate::train::RECIPE_FILE)))?;
    let (from, to) = (stage.epochs(&saved), stage.epochs(recipe));
    let mut same_epochs = recipe.clone();
    stage.set_epochs(&mut same_epochs, from);
    same_epochs.log = saved.log;
    let diff = recipe_diff(&saved, &same_epochs);
    if !diff.is_empty() {
        return Err(resume_err(format!("the recipe differs from the one it was started with: {}", diff.join("; "))));
    }
    if from == to {
        return Ok(if recipe.log == saved.log { ResumeChange::Same } else { ResumeChange::Logging });
    }
    let key = stage.epochs_key();
    let sched = stage.schedule(recipe);
    let to_do = "keep its epochs, or start a new run with the epochs you want";
    if sched != ScheduleName::Constant {
        let skey = match stage {
            Stage::Train => "optim.schedule",
            Stage::Finetune => "finetune.schedule",
        };
        let name = serde_json::to_value(sched).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{sched:?}"));
        return Err(resume_err(format!(
            "{key} cannot change from {from} to {to} on resume: with {skey} = {name:?} the learning rate of every epoch \
             depends on the total epochs, so the epochs done so far are not those of a {to}-epoch run \
             (only a \"constant\" schedule can be extended); {to_do}"
        )));
    }
    if stage == Stage::Train && recipe.train.method == Method::Glmc && recipe.glmc.reweight {
        return Err(resume_err(format!(
            "{key} cannot change from {from} to {to} on resume: GLMC's cumulative re-weighting α = 1 − (epoch/epochs)² \
             depends on the total epochs, so the epochs done so far would not be those of a {to}-epoch run; {to_do}"
        )));
    }
    if to < done {
        return Err(resume_err(format!("{key} = {to}, but the run has already done {done} epochs; set it to {done} or more")));
    }
    Ok(ResumeChange::Extend { from, to })
}

/// The fields (dotted paths, any depth) whose values differ between two
/// recipes, as `key: a ≠ b`; fields equal in both are not listed.
pub fn recipe_diff(a: &Recipe, b: &Recipe) -> Vec<String> {
    let (ta, tb) = (toml::Value::try_from(a).ok(), toml::Value::try_from(b).ok());
    let (Some(ta), Some(tb)) = (ta, tb) else { return vec!["recipe (cannot be compared)".into()] };
    let mut out = Vec::new();
    diff_values("", Some(&ta), Some(&tb), &mut out);
    out
}

fn diff_values(key: &str, a: Option<&toml::Value>, b: Option<&toml::Value>, out: &mut Vec<String>) {
    match (a, b) {
        (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
                diff_values(&sub, x.get(k), y.get(k), out);
            }
        }
        (x, y) if !same_value(x, y) => out.push(format!("{key}: {} ≠ {}", show(x), show(y))),
        _ => {}
    }
}

/// Equal values; floats compare by value (so 0.05 written as 5e-2 is the same).
fn same_value(a: Option<&toml::Value>, b: Option<&toml::Value>) -> bool {
    match (a, b) {
        (Some(toml::Value::Float(x)), Some(toml::Value::Integer(y))) | (Some(toml::Value::Integer(y)), Some(toml::Value::Float(x))) => {
            *x == *y as f64
        }
        (Some(toml::Value::Array(x)), Some(toml::Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(Some(x), Some(y)))
        }
        (x, y) => x == y,
    }
}

fn show(v: Option<&toml::Value>) -> String {
    v.map_or_else(|| "(unset)".into(), |v| v.to_string())
}

/// Writes `recipe` as the run's `recipe.toml` (through a temporary file and
/// a rename, so a crash leaves the old or the new one).
pub fn save_recipe(out: &Path, recipe: &Recipe) -> Result<()> {
    let rp = out.join(crate::train::RECIPE_FILE);
    let tmp = out.join(format!("{}.tmp-{}", crate::train::RECIPE_FILE, std::process::id()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| TrainError::Io { path: p, source }
    };
    std::fs::write(&tmp, recipe.to_toml_string()?).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &rp).map_err(io(&rp))
}

/// On resume: keeps metrics.jsonl's lines of the epochs before `epoch`
/// byte for byte (the file is cut after them) and returns their records.
/// A last line without its newline that does not parse is a write cut
/// short by a kill, and is dropped.
pub fn keep_metrics_before(out: &Path, epoch: usize) -> Result<Vec<EpochRecord>> {
    let p = out.join(crate::train::METRICS_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(TrainError::Io { path: p, source }),
    };
    let mut records = Vec::new();
    let mut keep = 0usize; // bytes of the kept prefix
    let mut pos = 0usize;
    while pos < text.len() {
        let (line, next, complete) = match text[pos..].find('\n') {
            Some(i) => (&text[pos..pos + i], pos + i + 1, true),
            None => (&text[pos..], text.len(), false),
        };
        if line.trim().is_empty() {
            pos = next;
            continue;
        }
        let rec: EpochRecord = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(_) if !complete => break,
            Err(source) => return Err(TrainError::Json { path: p, source }),
        };
        if rec.epoch >= epoch {
            break;
        }
        records.push(rec);
        keep = if complete { next } else { text.len() };
        pos = next;
    }
    let cut = keep != text.len();
    let newline = keep > 0 && !text[..keep].ends_with('\n');
    if cut || newline {
        let io = |source| TrainError::Io { path: p.clone(), source };
        let mut f = OpenOptions::new().write(true).open(&p).map_err(io)?;
        f.set_len(keep as u64).map_err(io)?;
        if newline {
            f.seek(std::io::SeekFrom::End(0)).and_then(|_| f.write_all(b"\n")).map_err(io)?;
        }
        f.sync_all().map_err(io)?;
    }
    Ok(records)
}

/// A loader that cannot start because the batch is larger than the data
/// (no full batch in an epoch) is told in terms of the setting at fault
/// (`key`) and what to do (`remedy`); other errors pass through.
pub fn batch_error(e: TrainError, key: &'static str, remedy: &str, batch: usize, rows: usize) -> TrainError {
    if batch <= rows || !matches!(e, TrainError::Loader(lt_loader::LoaderError::Config(_))) {
        return e;
    }
    TrainError::Recipe { key, why: format!("{batch} is more than the {rows} training images, so an epoch holds no full batch; {remedy}") }
}
