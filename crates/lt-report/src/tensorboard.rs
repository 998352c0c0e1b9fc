//! TensorBoard event files: the run's scalars as `events.out.tfevents.*`
//! files that `tensorboard --logdir runs/` reads, written without
//! TensorFlow or protobuf libraries.
//!
//! A file is a sequence of TFRecords, each
//!
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of data
//! ```
//!
//! (masked: `((crc >> 15) | (crc << 17)) + 0xa282ead8`), and each record's
//! data is one `tensorflow.Event` protobuf, encoded here by hand. The first
//! one carries `file_version = "brain.Event:2"`; the others a wall time, a
//! step and a `Summary` of `simple_value` scalars, or (where a resumed run
//! starts) a `SessionLog` START, after which TensorBoard drops the points
//! at and after that step that an interrupted run had written.
//!
//! [`EventWriter::create`] starts a new file in a directory, named to sort
//! after the files already there, so a run resumed after a kill adds a file
//! and TensorBoard reads them all in order. [`epoch_scalars`] names every
//! number of an [`EpochRecord`] as a tag (`train/loss`, `test/top1`, …), and
//! [`read_events`] / [`read_scalars`] read files back (checking the CRCs),
//! for tests and tools.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{ReportError, Result};
use crate::records::EpochRecord;

/// How event file names start; TensorBoard reads every file of a
/// directory whose name contains `tfevents`.
pub const EVENTS_PREFIX: &str = "events.out.tfevents.";
/// How lt-glmc's event file names end.
pub const EVENTS_SUFFIX: &str = ".lt";
/// The first record's `file_version`.
pub const FILE_VERSION: &str = "brain.Event:2";

/// CRC-32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// The masked CRC-32C of TFRecord framing.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord: `data` with its length and the two masked CRCs.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Seconds since the Unix epoch, as an event's `wall_time`.
pub fn wall_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

// --- protobuf, the few fields used ----------------------------------------

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `Event { wall_time = 1, step = 2 }` and whatever `body` adds, in
/// protobuf's canonical form (fields in order, a zero step left out).
fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = Vec::new();
    put_key(&mut e, 1, WIRE_I64);
    e.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        // proto3 leaves out zeros; int64: two's complement, 10 bytes when negative
        put_key(&mut e, 2, WIRE_VARINT);
        put_varint(&mut e, step as u64);
    }
    body(&mut e);
    e
}

/// `Summary { repeated Value value = 1 }`, `Value { tag = 1, simple_value = 2 }`.
fn summary(values: &[(&str, f64)]) -> Vec<u8> {
    let mut s = Vec::new();
    for (tag, v) in values {
        let mut val = Vec::with_capacity(tag.len() + 8);
        put_bytes(&mut val, 1, tag.as_bytes());
        put_key(&mut val, 2, WIRE_I32);
        val.extend_from_slice(&(*v as f32).to_le_bytes());
        put_bytes(&mut s, 1, &val);
    }
    s
}

/// Encodes an `Event` of scalars (`summary = 5`).
pub fn scalar_event(step: i64, wall_time: f64, values: &[(&str, f64)]) -> Vec<u8> {
    event(wall_time, step, |e| put_bytes(e, 5, &summary(values)))
}

/// Encodes the first `Event` of a file (`file_version = 3`).
pub fn version_event(wall_time: f64) -> Vec<u8> {
    event(wall_time, 0, |e| put_bytes(e, 3, FILE_VERSION.as_bytes()))
}

/// Encodes an `Event` with `session_log = 7 { status = START (1) }`.
pub fn session_start_event(step: i64, wall_time: f64) -> Vec<u8> {
    event(wall_time, step, |e| put_bytes(e, 7, &[0x08, 0x01]))
}

// --- writer ----------------------------------------------------------------

/// Appends events to a new event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `events.out.tfevents.<unix secs>.<hostname>.<pid>.lt` in
    /// `dir` (which must exist), named to sort after every event file
    /// already there, and writes its `file_version` record.
    pub fn create(dir: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReportError::Io { path, source }
        };
        let mut secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (host, pid) = (hostname(), std::process::id());
        let mut last: Option<String> = None;
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let name = entry.map_err(io(dir))?.file_name().to_string_lossy().into_owned();
            if name.starts_with(EVENTS_PREFIX) && last.as_ref().is_none_or(|l| name > *l) {
                last = Some(name);
            }
        }
        // The latest file's time, when this one would not sort after it
        // (a resume in the same second, or a clock set back).
        if let Some(l) = &last {
            if file_name(secs, &host, pid) <= *l {
                let then = l[EVENTS_PREFIX.len()..].split('.').next().and_then(|s| s.parse::<u64>().ok());
                secs = secs.max(then.map_or(secs, |t| t + 1));
            }
        }
        let (path, file) = loop {
            let path = dir.join(file_name(secs, &host, pid));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secs += 1,
                Err(e) => return Err(io(&path)(e)),
            }
        };
        let mut w = EventWriter { path, out: BufWriter::new(file) };
        w.record(&version_event(wall_time()))?;
        Ok(w)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let path = &self.path;
        self.out.write_all(&frame(data)).map_err(|source| ReportError::Io { path: path.clone(), source })
    }

    /// One event of `values` (as float32) at `step`.
    pub fn scalars(&mut self, step: i64, wall_time: f64, values: &[(&str, f64)]) -> Result<()> {
        self.record(&scalar_event(step, wall_time, values))
    }

    /// Marks a (re)start at `step`: TensorBoard discards the points at and
    /// after `step` of the files before this one (an interrupted run's).
    pub fn session_start(&mut self, step: i64, wall_time: f64) -> Result<()> {
        self.record(&session_start_event(step, wall_time))
    }

    /// Every number of `rec` ([`epoch_scalars`]) at `step`.
    pub fn epoch(&mut self, step: i64, wall_time: f64, rec: &EpochRecord) -> Result<()> {
        let owned = epoch_scalars(rec);
        let values: Vec<(&str, f64)> = owned.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        self.scalars(step, wall_time, &values)
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> Result<()> {
        let path = &self.path;
        self.out.flush().map_err(|source| ReportError::Io { path: path.clone(), source })
    }
}

fn file_name(secs: u64, host: &str, pid: u32) -> String {
    format!("{EVENTS_PREFIX}{secs}.{host}.{pid}{EVENTS_SUFFIX}")
}

/// The host's name, as far as a file name may hold it.
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_default();
    let name: String = raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The scalars of one metrics.jsonl record, tag by tag: every number of the
/// record's JSON, with fields of the training epoch as `train/<field>`
/// (`train/loss`, `train/lr`, `train/alpha`, `train/images_per_s` for
/// `train_images_per_s`, …) and those of a nested object as
/// `<object>/<field>` (`test/top1`, `test/many`, …). Absent values (`null`)
/// are left out, so an epoch that was not evaluated has no `test/*`.
pub fn epoch_scalars(rec: &EpochRecord) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(rec) {
        for (k, v) in &m {
            let tag = if v.is_object() { k.clone() } else { format!("train/{}", k.strip_prefix("train_").unwrap_or(k)) };
            flatten(tag, v, &mut out);
        }
    }
    out
}

fn flatten(tag: String, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    match v {
        serde_json::Value::Number(n) => out.extend(n.as_f64().map(|x| (tag, x))),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(format!("{tag}/{k}"), v, out);
            }
        }
        _ => {}
    }
}

// --- reader ----------------------------------------------------------------

/// One decoded event (the fields lt-glmc writes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    /// The summary's `simple_value` scalars, in order.
    pub scalars: Vec<(String, f32)>,
    /// A `SessionLog` with status START.
    pub session_start: bool,
}

/// Reads an event file, checking every record's framing and CRCs.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })?;
    let bad = |why: String| ReportError::Corrupt { path: path.to_path_buf(), why };
    let mut events = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let at = pos;
        let head = bytes.get(pos..pos + 12).ok_or_else(|| bad(format!("record at byte {at} is cut short")))?;
        let (len, len_crc) = head.split_at(8);
        if masked_crc32c(len) != u32::from_le_bytes(len_crc.try_into().unwrap_or_default()) {
            return Err(bad(format!("record at byte {at}: the length's CRC does not match")));
        }
        let n = usize::try_from(u64::from_le_bytes(len.try_into().unwrap_or_default())).unwrap_or(usize::MAX);
        let end = pos.checked_add(12).and_then(|p| p.checked_add(n)).filter(|e| e + 4 <= bytes.len());
        let end = end.ok_or_else(|| bad(format!("record at byte {at} is cut short")))?;
        let data = &bytes[pos + 12..end];
        if masked_crc32c(data) != u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap_or_default()) {
            return Err(bad(format!("record at byte {at}: the data's CRC does not match")));
        }
        events.push(decode_event(data).ok_or_else(|| bad(format!("record at byte {at} is not an Event")))?);
        pos = end + 4;
    }
    Ok(events)
}

/// The event files of `dir` in the order TensorBoard reads them (by name).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| ReportError::Io { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(EVENTS_PREFIX)) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Every scalar of every event file of `dir`, as `(tag, step, value)` in
/// file and write order (no restart purging).
pub fn read_scalars(dir: &Path) -> Result<Vec<(String, i64, f32)>> {
    let mut out = Vec::new();
    for f in event_files(dir)? {
        for e in read_events(&f)? {
            out.extend(e.scalars.into_iter().map(|(t, v)| (t, e.step, v)));
        }
    }
    Ok(out)
}

struct Pb<'a> {
    b: &'a [u8],
    i: usize,
}

enum Field<'a> {
    Varint(u64),
    I64([u8; 8]),
    I32([u8; 4]),
    Len(&'a [u8]),
}

impl<'a> Pb<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }

    /// The next field, `None` at the end; `Some(None)` when malformed.
    fn next(&mut self) -> Option<Option<(u64, Field<'a>)>> {
        if self.i >= self.b.len() {
            return None;
        }
        Some(self.field())
    }

    fn field(&mut self) -> Option<(u64, Field<'a>)> {
        let key = self.varint()?;
        let f = match (key & 7) as u8 {
            WIRE_VARINT => Field::Varint(self.varint()?),
            WIRE_I64 => Field::I64(self.take(8)?.try_into().ok()?),
            WIRE_I32 => Field::I32(self.take(4)?.try_into().ok()?),
            WIRE_LEN => {
                let n = usize::try_from(self.varint()?).ok()?;
                Field::Len(self.take(n)?)
            }
            _ => return None,
        };
        Some((key >> 3, f))
    }
}

fn fields(b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pb = Pb { b, i: 0 };
    let mut out = Vec::new();
    while let Some(f) = pb.next() {
        out.push(f?);
    }
    Some(out)
}

fn decode_event(b: &[u8]) -> Option<Event> {
    let mut e = Event::default();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::I64(x)) => e.wall_time = f64::from_le_bytes(x),
            (2, Field::Varint(x)) => e.step = x as i64,
            (3, Field::Len(s)) => e.file_version = Some(String::from_utf8(s.to_vec()).ok()?),
            (5, Field::Len(s)) => {
                for (n, f) in fields(s)? {
                    if let (1, Field::Len(v)) = (n, f) {
                        let (mut tag, mut value) = (None, None);
                        for (n, f) in fields(v)? {
                            match (n, f) {
                                (1, Field::Len(t)) => tag = Some(String::from_utf8(t.to_vec()).ok()?),
                                (2, Field::I32(x)) => value = Some(f32::from_le_bytes(x)),
                                _ => {}
                            }
                        }
                        if let (Some(t), Some(v)) = (tag, value) {
                            e.scalars.push((t, v));
                        }
                    }
                }
            }
            (7, Field::Len(s)) => {
                e.session_start = fields(s)?.iter().any(|(n, f)| *n == 1 && matches!(f, Field::Varint(1)));
            }
            _ => {}
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_including_negative_steps() {
        for v in [0i64, 1, 127, 128, 300, 1 << 40, -1, i64::MIN, i64::MAX] {
            let e = scalar_event(v, 1.5, &[("a", 2.0)]);
            let d = decode_event(&e).unwrap();
            assert_eq!((d.step, d.wall_time, d.scalars.clone()), (v, 1.5, vec![("a".to_string(), 2.0)]));
        }
    }

    #[test]
    fn malformed_protobuf_is_none() {
        assert!(decode_event(&[0x2a, 0x05, 0x0a]).is_none(), "length past the end");
        assert!(decode_event(&[0x0b]).is_none(), "wire type 3 (groups) is not written here");
    }
}
