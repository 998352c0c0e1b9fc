//! report.md, report.json, metrics.jsonl and the plots, written and read
//! back without libtorch.

use std::path::PathBuf;

use lt_core::eval::EvalCounts;
use lt_core::groups::GroupThresholds;
use lt_report::{append_metrics, read_metrics, replot, write_metrics, write_report, EpochRecord, EvalSummary, RunHeader, RunInfo};

fn record(epoch: usize, top1: Option<f64>) -> EpochRecord {
    EpochRecord {
        epoch,
        lr: 0.1 / (epoch + 1) as f64,
        alpha: 1.0 - (epoch as f64 / 4.0).powi(2),
        loss: 2.0 - 0.3 * epoch as f64,
        loss_sup: 1.5,
        loss_rb: Some(0.4),
        loss_con: Some(-0.9),
        loss_first: 2.1,
        loss_last: 1.9,
        steps: 10,
        train_images_per_s: 1234.0,
        train_seconds: 1.5,
        test: top1.map(|t| EvalSummary {
            top1: t,
            top5: 0.9,
            many: Some(0.8),
            medium: Some(0.5),
            few: None,
            ece: 0.05,
            head: None,
            g: None,
            g_cb: None,
        }),
        skipped_steps: 0,
        loss_scale: None,
    }
}

fn header() -> RunHeader {
    RunHeader {
        name: "tiny".into(),
        method: "Glmc".into(),
        arch: "ResNet32 { width: 4 }".into(),
        epochs: 4,
        settings: vec![("batch".into(), "8".into()), ("lr".into(), "0.1".into()), ("seed".into(), "3".into())],
        groups: GroupThresholds { many_above: 40, few_at_most: 12 },
    }
}

#[test]
fn metrics_lines_round_trip_and_append() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(read_metrics(tmp.path()).unwrap().is_empty(), "no file: no records");
    let recs = vec![record(0, None), record(1, Some(0.4))];
    write_metrics(tmp.path(), &recs).unwrap();
    append_metrics(tmp.path(), &record(2, Some(0.5))).unwrap();
    let back = read_metrics(tmp.path()).unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(&back[..2], &recs[..]);
    std::fs::write(tmp.path().join(lt_report::METRICS_FILE), "{\"epoch\": 0}\n").unwrap();
    let e = read_metrics(tmp.path()).unwrap_err();
    assert!(e.to_string().contains("metrics.jsonl"), "{e}");
}

#[test]
fn report_names_the_settings_and_replot_redraws_from_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let mut counts = EvalCounts::new(3);
    for (y, hit, conf) in [(0, true, 0.9), (0, true, 0.8), (1, false, 0.6), (2, true, 0.7), (2, false, 0.3)] {
        counts.add(y, hit, true, conf);
    }
    let train_counts = vec![100, 30, 5];
    let eval = counts.report(&train_counts, header().groups).unwrap();
    let info = RunInfo {
        shards: PathBuf::from("shards/"),
        device: "Cpu".into(),
        epochs_done: 3,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        counts: train_counts,
        fingerprint: "0123456789abcdef0123".into(),
    };
    let records = vec![record(0, Some(0.3)), record(1, Some(0.7)), record(2, Some(0.6))];
    let md = write_report(out, &header(), &info, &records, &eval, Some("A note.\n\n")).unwrap();
    assert!(md.starts_with("# tiny — Glmc\n\nA note.\n\n"), "{md}");
    assert!(md.contains("ResNet32 { width: 4 }, 3 of 4 epochs, batch 8, lr 0.1, seed 3, device Cpu."), "{md}");
    assert!(md.contains("fingerprint `0123456789ab`"), "{md}");
    assert!(md.contains("| best epoch (2) | 70.00 |"), "{md}");
    assert!(md.contains("| 2 | c | 5 | few | 50.00 |"), "{md}");
    assert_eq!(std::fs::read_to_string(out.join(lt_report::REPORT_MD)).unwrap(), md);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(lt_report::REPORT_JSON)).unwrap()).unwrap();
    assert_eq!(json["final"]["top1"], serde_json::json!(0.6));
    assert_eq!(json["best"]["epoch"], serde_json::json!(1));

    let png = out.join(lt_report::plot::PER_CLASS_PNG);
    std::fs::remove_file(&png).unwrap();
    write_metrics(out, &records).unwrap();
    replot(out, header().groups).unwrap();
    assert!(image::open(&png).is_ok());
    // A report.json whose counts and accuracies disagree is refused, naming it.
    let mut j = json.clone();
    j["info"]["counts"] = serde_json::json!([1, 2]);
    std::fs::write(out.join(lt_report::REPORT_JSON), serde_json::to_vec(&j).unwrap()).unwrap();
    let e = replot(out, header().groups).unwrap_err();
    assert!(e.to_string().contains("report.json") && e.to_string().contains("2 class counts for 3 accuracies"), "{e}");
}

/// Writes a run directory's report with per-class accuracies `acc`.
fn run_dir(dir: &std::path::Path, counts: &[usize], hits: &[(usize, bool)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut c = EvalCounts::new(counts.len());
    for &(y, hit) in hits {
        c.add(y, hit, true, 0.7);
    }
    let eval = c.report(counts, header().groups).unwrap();
    let info = RunInfo {
        shards: PathBuf::from("shards/"),
        device: "Cpu".into(),
        epochs_done: 1,
        class_names: (0..counts.len()).map(|k| format!("c{k}")).collect(),
        counts: counts.to_vec(),
        fingerprint: "f".into(),
    };
    write_report(dir, &header(), &info, &[record(0, Some(eval.top1))], &eval, None).unwrap();
}

#[test]
fn runs_compare_side_by_side_and_other_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let counts = [100, 30, 5];
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_dir(&a, &counts, &[(0, true), (1, true), (2, false), (2, false)]);
    run_dir(&b, &counts, &[(0, true), (1, false), (2, true), (2, true)]);
    let out = tmp.path().join("cmp");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lt-report"))
        .args(["compare", &format!("ce={}", a.display()), &format!("glmc={}", b.display()), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{text}");
    // many: class 0; medium: class 1; few (≤ 12 training images): class 2.
    assert!(text.contains("| ce | 50.00 | 100.00 | 100.00 | 100.00 | 0.00 | 20.00 |\n"), "{text}");
    assert!(text.contains("| glmc | 75.00 | 100.00 | 100.00 | 0.00 | 100.00 | 5.00 |\n"), "{text}");
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("| 2 | c2 | 5 | 0.00 | 100.00 |"), "{md}");
    assert!(image::open(out.join("per_class_compare.png")).is_ok());

    let c = tmp.path().join("c");
    run_dir(&c, &[100, 30, 6], &[(0, true)]);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lt-report"))
        .args(["compare", a.to_str().unwrap(), c.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("other data") && err.contains("report.json"), "{err}");
}

#[test]
fn reports_show_both_heads_and_which_one_is_reported() {
    let mut c = EvalCounts::new(3);
    c.add(0, true, true, 0.9);
    c.add(2, false, true, 0.9);
    let g = c.report(&[100, 30, 5], header().groups).unwrap();
    let mut c = EvalCounts::new(3);
    c.add(0, true, true, 0.9);
    c.add(2, true, true, 0.9);
    let g_cb = c.report(&[100, 30, 5], header().groups).unwrap();
    let sum = EvalSummary::of_heads(lt_core::eval::Head::GCb, &g, &g_cb);
    assert_eq!((sum.top1, sum.few), (1.0, Some(1.0)), "the headline is g_cb's");
    let rec = EpochRecord { test: Some(sum), ..record(3, None) };
    let line = serde_json::to_value(&rec).unwrap();
    assert_eq!(line["test"]["head"], "g_cb");
    assert_eq!((line["test"]["g"]["top1"].as_f64(), line["test"]["g_cb"]["few"].as_f64()), (Some(0.5), Some(1.0)));
    let md = lt_report::report::heads_table(&[record(2, Some(0.4)), rec]);
    assert!(md.contains("**g_cb** head's. Both heads at epoch 4"), "{md}");
    assert!(md.contains("| g | 50.00 | 100.00 | – | 0.00 |") && md.contains("| g_cb (reported) | 100.00 | 100.00 | – | 100.00 |"), "{md}");
    assert_eq!(lt_report::report::heads_table(&[record(0, Some(0.5))]), "", "records of earlier versions: no table");
}
