//! TensorBoard event files: the TFRecord framing against known CRCs, the
//! files read back by this crate's reader, and (with the venv of
//! tools/setup.sh) by TensorBoard's own `EventAccumulator`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use lt_report::tensorboard::{self, masked_crc32c, read_events, EventWriter, FILE_VERSION};
use lt_report::{epoch_scalars, EpochRecord, ReportError};

/// An epoch's record, through JSON (as metrics.jsonl holds it).
fn record(epoch: usize, evaluated: bool) -> EpochRecord {
    let test = evaluated.then(
        || serde_json::json!({"top1": 0.61 + epoch as f64 / 100.0, "top5": 0.97, "many": 0.8, "medium": 0.55, "few": null, "ece": 0.031}),
    );
    serde_json::from_value(serde_json::json!({
        "epoch": epoch, "lr": 0.1 / (epoch + 1) as f64, "alpha": 1.0 - (epoch as f64 / 4.0).powi(2),
        "loss": 2.0 - 0.3 * epoch as f64, "loss_sup": 1.5, "loss_rb": 0.4, "loss_con": -0.9,
        "loss_first": 2.1, "loss_last": 1.9, "steps": 10, "train_images_per_s": 1234.5, "train_seconds": 1.25,
        "test": test, "skipped_steps": 0,
    }))
    .unwrap()
}

#[test]
fn crc32c_and_masked_crcs_match_known_values() {
    // The CRC-32C check value, and RFC 3720's 32 zero and 32 0xff bytes.
    assert_eq!(tensorboard::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(tensorboard::crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(tensorboard::crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    // Masked, as tensorboard's pure-Python masked_crc32c gives them
    // (tensorboard.compat.tensorflow_stub.pywrap_tensorflow).
    assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    assert_eq!(masked_crc32c(&0u64.to_le_bytes()), 0x0798_0329);
    assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224B_7FA3);
    let r = tensorboard::frame(b"123456789");
    assert_eq!(r.len(), 8 + 4 + 9 + 4);
    assert_eq!(r[..8], 9u64.to_le_bytes());
    assert_eq!(r[8..12], masked_crc32c(&9u64.to_le_bytes()).to_le_bytes());
    assert_eq!(&r[12..21], b"123456789");
    assert_eq!(r[21..], 0xC78A_B0E5u32.to_le_bytes());
}

#[test]
fn the_file_version_event_is_the_canonical_protobuf() {
    // Event { wall_time: 1.5, file_version: "brain.Event:2" }, as protobuf
    // serialises it (field 1: fixed64, field 3: bytes; step 0 left out).
    let mut want = vec![0x09];
    want.extend_from_slice(&1.5f64.to_le_bytes());
    want.extend_from_slice(&[0x1a, 13]);
    want.extend_from_slice(b"brain.Event:2");
    assert_eq!(tensorboard::version_event(1.5), want);
    // Summary { value { tag: "a/b" simple_value: 0.5 } } at step 300.
    let e = tensorboard::scalar_event(300, 2.0, &[("a/b", 0.5)]);
    let mut want = vec![0x09];
    want.extend_from_slice(&2.0f64.to_le_bytes());
    want.extend_from_slice(&[0x10, 0xac, 0x02, 0x2a, 12, 0x0a, 10, 0x0a, 3, b'a', b'/', b'b', 0x15]);
    want.extend_from_slice(&0.5f32.to_le_bytes());
    assert_eq!(e, want);
}

#[test]
fn epoch_records_become_slash_grouped_tags() {
    let tags: BTreeMap<String, f64> = epoch_scalars(&record(1, true)).into_iter().collect();
    let want = [
        ("train/epoch", 1.0),
        ("train/lr", 0.05),
        ("train/alpha", 1.0 - 1.0 / 16.0),
        ("train/loss", 1.7),
        ("train/loss_sup", 1.5),
        ("train/loss_rb", 0.4),
        ("train/loss_con", -0.9),
        ("train/loss_first", 2.1),
        ("train/loss_last", 1.9),
        ("train/steps", 10.0),
        ("train/images_per_s", 1234.5),
        ("train/seconds", 1.25),
        ("train/skipped_steps", 0.0),
        ("test/top1", 0.62),
        ("test/top5", 0.97),
        ("test/many", 0.8),
        ("test/medium", 0.55),
        ("test/ece", 0.031),
    ];
    let want: BTreeMap<String, f64> = want.iter().map(|(t, v)| (t.to_string(), *v)).collect();
    assert_eq!(tags.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (t, v) in &want {
        assert!((tags[t] - v).abs() < 1e-12, "{t}: {} ≠ {v}", tags[t]);
    }
    // Every number of the JSON line has a tag (absent ones have none).
    let line = serde_json::to_value(record(1, true)).unwrap();
    let numbers = |v: &serde_json::Value| v.as_object().unwrap().values().filter(|x| x.is_number()).count();
    assert_eq!(tags.len(), numbers(&line) + numbers(&line["test"]));
    let tags = epoch_scalars(&record(0, false));
    assert!(tags.iter().all(|(t, _)| t.starts_with("train/")) && tags.len() == 13, "{tags:?}");
}

/// Points by tag: (step, value).
type Curves = BTreeMap<String, Vec<(i64, f32)>>;

/// What the writers below write: a first run killed after step 7 (its
/// points at steps 6 and 7 are orphaned), then a resumed one that restarts
/// at step 5 (checkpoint) with a SessionLog START at step 6.
fn write_two_sessions(dir: &Path) -> (Vec<std::path::PathBuf>, Curves) {
    let mut want = Curves::new();
    let mut put = |w: &mut EventWriter, step: i64, vals: &[(&str, f64)], kept: bool| {
        w.scalars(step, 1.7e9 + step as f64, vals).unwrap();
        if kept {
            for (t, v) in vals {
                want.entry(t.to_string()).or_default().push((step, *v as f32));
            }
        }
    };
    let mut a = EventWriter::create(dir).unwrap();
    a.session_start(1, 1.7e9).unwrap();
    for s in 1..=7 {
        let l = 2.0 / s as f64;
        put(&mut a, s, &[("step/loss", l), ("step/lr", 0.1), ("step/alpha", 1.0)], s < 6);
        if s == 5 {
            let owned = epoch_scalars(&record(0, true));
            let vals: Vec<(&str, f64)> = owned.iter().map(|(t, v)| (t.as_str(), *v)).collect();
            put(&mut a, s, &vals, true);
        }
    }
    a.flush().unwrap();
    drop(a);
    let mut b = EventWriter::create(dir).unwrap();
    b.session_start(6, 1.7e9 + 6.0).unwrap();
    for s in 6..=10 {
        put(&mut b, s, &[("step/loss", 1.0 / s as f64), ("step/lr", 0.05), ("step/alpha", 0.9375)], true);
    }
    let owned = epoch_scalars(&record(1, false));
    let vals: Vec<(&str, f64)> = owned.iter().map(|(t, v)| (t.as_str(), *v)).collect();
    put(&mut b, 10, &vals, true);
    b.flush().unwrap();
    let files = tensorboard::event_files(dir).unwrap();
    (files, want)
}

#[test]
fn written_files_read_back_and_a_flipped_byte_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, _) = write_two_sessions(tmp.path());
    assert_eq!(files.len(), 2, "a second writer starts a second file: {files:?}");
    assert!(files[0] < files[1]);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents.") && name.ends_with(&format!(".{}.lt", std::process::id())), "{name}");
    let ev = read_events(&files[0]).unwrap();
    assert_eq!(ev[0].file_version.as_deref(), Some(FILE_VERSION));
    assert!(ev[1].session_start && ev[1].step == 1);
    assert_eq!(ev[2].step, 1);
    assert_eq!(ev[2].scalars, [("step/loss".to_string(), 2.0f32), ("step/lr".into(), 0.1), ("step/alpha".into(), 1.0)]);
    let all = tensorboard::read_scalars(tmp.path()).unwrap();
    assert_eq!(all.iter().filter(|(t, _, _)| t == "step/loss").count(), 7 + 5);
    assert_eq!(all.iter().filter(|(t, _, _)| t == "test/top1").count(), 1);

    let mut bytes = std::fs::read(&files[1]).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0x40; // inside the last record's data
    std::fs::write(&files[1], &bytes).unwrap();
    let e = read_events(&files[1]).unwrap_err();
    assert!(matches!(&e, ReportError::Corrupt { .. }) && e.to_string().contains("CRC"), "{e}");
    std::fs::write(&files[1], &bytes[..n - 2]).unwrap();
    assert!(read_events(&files[1]).unwrap_err().to_string().contains("cut short"));
}

/// TensorBoard's own reader (the venv of tools/setup.sh): every tag, step
/// and value as written, to float32 precision, with the interrupted run's
/// orphaned points dropped at the restart.
#[test]
fn tensorboard_event_accumulator_reads_every_scalar() {
    let py = std::env::var("LT_GLMC_PYTHON").unwrap_or_else(|_| "python3".into());
    let import = "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator";
    let probe = Command::new(&py).args(["-c", import]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let required = std::env::var("LT_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(!required, "{py} lacks tensorboard: run tools/setup.sh and source tools/env.sh");
        eprintln!("skipping: no python with tensorboard (set LT_GLMC_PYTHON; tools/setup.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (files, want) = write_two_sessions(tmp.path());
    let script = r#"
import json, struct, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
# Each record: TensorBoard's reader checks the CRCs; the protobuf parses and
# serialises back to the same bytes.
for f in sys.argv[2:]:
    r = PyRecordReader_New(f)
    n = 0
    while True:
        try:
            r.GetNext()
        except Exception as e:
            assert type(e).__name__ == "OutOfRangeError", (f, e)
            break
        ev = event_pb2.Event.FromString(r.record())
        assert ev.SerializeToString() == r.record(), (f, ev)
        if n == 0:
            assert ev.file_version == "brain.Event:2", ev
        n += 1
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
# Values as their float32 bits (exact, whatever the JSON float parsing).
bits = lambda v: struct.unpack("<I", struct.pack("<f", v))[0]
assert all(struct.unpack("<f", struct.pack("<f", s.value))[0] == s.value for t in ea.Tags()["scalars"] for s in ea.Scalars(t))
out = {t: [[s.step, bits(s.value)] for s in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
print(json.dumps(out))
"#;
    let mut cmd = Command::new(&py);
    cmd.arg("-c").arg(script).arg(tmp.path()).args(&files);
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let got: BTreeMap<String, Vec<(i64, u32)>> = serde_json::from_slice(&o.stdout).expect("the script's JSON");
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{stderr}");
    for (tag, points) in &want {
        let g = &got[tag];
        let steps: Vec<i64> = g.iter().map(|p| p.0).collect();
        assert_eq!(steps, points.iter().map(|p| p.0).collect::<Vec<_>>(), "{tag}");
        for ((_, gv), (s, wv)) in g.iter().zip(points) {
            // TensorBoard holds the float32 written, bit for bit.
            assert_eq!(*gv, wv.to_bits(), "{tag} at step {s}: {} ≠ {wv}", f32::from_bits(*gv));
        }
    }
    assert_eq!(got["step/loss"].len(), 5 + 5, "steps 6 and 7 of the killed run are dropped");
    assert_eq!(got["test/top1"], [(5, 0.61f32.to_bits())]);
}
