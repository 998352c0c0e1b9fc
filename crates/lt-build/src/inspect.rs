//! `lt-build inspect DIR`: the class histogram as text bars, the imbalance
//! factor, the many/medium/few counts, and a verification of every shard
//! (size, SHA-256, Parquet row counts and the label histogram against the
//! manifest).

use crate::Result;
use lt_core::profile::Selection;
use lt_shards::{Manifest, ShardSet, Split};
use std::fmt::Write as _;
use std::path::Path;

/// Outcome of [`verify`].
#[derive(Debug, Default)]
pub struct Verification {
    pub shards_ok: usize,
    pub problems: Vec<String>,
}

/// Checks every shard of `dir` against its manifest.
pub fn verify(dir: &Path) -> Result<Verification> {
    let mut v = Verification::default();
    for split in Split::ALL {
        let set = ShardSet::open(dir, split)?;
        let m = set.manifest();
        for (s, info) in m.splits[&split].shards.iter().enumerate() {
            let path = set.shard_path(s);
            match lt_shards::sha256_file(&path) {
                Ok(sum) if sum == info.checksum => v.shards_ok += 1,
                Ok(sum) => v.problems.push(format!("{}: checksum {sum}, manifest says {}", info.file, info.checksum)),
                Err(e) => v.problems.push(e.to_string()),
            }
        }
        // check_labels names the shard file and row of a label outside the
        // manifest's classes (a damaged or hand-made shard).
        match set.check_labels(m.classes.len()) {
            Ok(got) => {
                if got != set.class_counts() {
                    v.problems
                        .push(format!("{} split: label histogram of the shards differs from the manifest's class counts", split.as_str()));
                }
            }
            Err(e) => v.problems.push(e.to_string()),
        }
    }
    Ok(v)
}

/// The report printed by `lt-build inspect`.
pub fn report(dir: &Path, all_classes: bool, check: bool) -> Result<(String, Verification)> {
    let m = Manifest::load(dir)?;
    let mut o = String::new();
    let (kind, location) = m.source.as_ref().map_or(("?", "?"), |s| (s.kind.as_str(), s.location.as_str()));
    let selection = match m.selection {
        Some(Selection::Glmc) => "glmc",
        Some(Selection::Ldam) => "ldam",
        None => "none",
    };
    let _ =
        writeln!(o, "{}: {} classes, source {kind} ({location}), seed {}, selection {selection}", dir.display(), m.classes.len(), m.seed,);
    let _ = writeln!(o, "profile: {}", m.profile.as_ref().map_or("null".into(), |p| p.spec_json()));
    for split in Split::ALL {
        if let Some(s) = m.splits.get(&split) {
            let bytes: u64 = s.shards.iter().map(|x| x.bytes).sum();
            let _ = writeln!(
                o,
                "{:5}: {:>8} images in {} shard(s), {:.1} MiB",
                split.as_str(),
                s.rows,
                s.shards.len(),
                bytes as f64 / (1 << 20) as f64
            );
        }
    }
    let max = m.classes.iter().map(|c| c.train).max().unwrap_or(0).max(1);
    let width = 40usize;
    let name_w = m.classes.iter().map(|c| c.name.chars().count()).max().unwrap_or(4).clamp(4, 24);
    let show: Vec<usize> = if all_classes || m.classes.len() <= 64 {
        (0..m.classes.len()).collect()
    } else {
        // Long class lists: head, a few quantiles, tail.
        let n = m.classes.len();
        let mut v: Vec<usize> = (0..8).chain([n / 4, n / 2, 3 * n / 4]).chain(n - 8..n).collect();
        v.sort();
        v.dedup();
        v
    };
    let _ = writeln!(o, "\n{:>5} {:name_w$} {:>8} {:width$} {:>7}", "class", "name", "train", "", "test");
    let mut last = None;
    for &c in &show {
        if let Some(l) = last {
            if c != l + 1 {
                let _ = writeln!(o, "{:>5}", "…");
            }
        }
        last = Some(c);
        let ci = &m.classes[c];
        let filled = (ci.train as f64 / max as f64 * width as f64).round() as usize;
        let bar: String = if filled == 0 && ci.train > 0 { "▏".into() } else { "█".repeat(filled.min(width)) };
        let name: String = ci.name.chars().take(name_w).collect();
        let _ = writeln!(o, "{:>5} {:name_w$} {:>8} {:width$} {:>7}", c, name, ci.train, bar, ci.test);
    }
    let min = m.classes.iter().map(|c| c.train).min().unwrap_or(0);
    let _ = writeln!(o);
    match m.imbalance_factor {
        Some(f) => {
            let _ = writeln!(o, "imbalance factor: {f:.2} ({max} / {min})");
        }
        None => {
            let _ = writeln!(o, "imbalance factor: undefined (a class has no training image)");
        }
    }
    let t = m.groups.thresholds.unwrap_or_default();
    let _ = writeln!(
        o,
        "groups ({}): many {}, medium {}, few {}",
        t.describe(),
        m.groups.many.len(),
        m.groups.medium.len(),
        m.groups.few.len()
    );
    let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(o, "channels {}, train mean [{}], std [{}]", m.channels, fmt(&m.mean), fmt(&m.std));
    if !m.clamped.is_empty() {
        let _ = writeln!(o, "clamped classes: {}", m.clamped.len());
    }
    if !m.skipped.is_empty() {
        let _ = writeln!(o, "skipped corrupt images: {}", m.skipped.len());
    }
    let mut ver = Verification::default();
    if check {
        ver = verify(dir)?;
        if ver.problems.is_empty() {
            let _ = writeln!(o, "verify: all {} shard(s) match their checksums; label histograms match the manifest", ver.shards_ok);
        } else {
            for p in &ver.problems {
                let _ = writeln!(o, "verify: FAILED {p}");
            }
        }
    }
    Ok((o, ver))
}
