//! The final report of a run: `report.md` (Markdown tables), `report.json`
//! (the last evaluation in full) and two PNG plots drawn here with the
//! `image` crate (no font or plotting dependency; numbers on the axes come
//! from a built-in 3×5 digit font, and the Markdown says what the axes and
//! colours are):
//!
//! - `per_class.png`: per-class test accuracy (y, 0–1) against training
//!   images per class (x, log scale), coloured by group;
//! - `curves.png`: training loss per epoch (left) and test accuracy per
//!   evaluated epoch (right).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use lt_core::groups::{Group, GroupThresholds};
use serde::Serialize;

use crate::error::{GlmcError, Result};
use crate::metrics::EvalReport;
use crate::recipe::Recipe;
use crate::train::EpochRecord;

pub const REPORT_MD: &str = "report.md";
pub const REPORT_JSON: &str = "report.json";
pub const PER_CLASS_PNG: &str = "per_class.png";
pub const CURVES_PNG: &str = "curves.png";

const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const ORANGE: Rgb<u8> = Rgb([255, 127, 14]);
const RED: Rgb<u8> = Rgb([214, 39, 40]);
const GREEN: Rgb<u8> = Rgb([44, 160, 44]);
const PURPLE: Rgb<u8> = Rgb([148, 103, 189]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GREY: Rgb<u8> = Rgb([200, 200, 200]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

/// 3×5 glyphs, one row per u8 (bits 2..0 left to right).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => return None,
    })
}

struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        Canvas { img: RgbImage::from_pixel(w, h, WHITE) }
    }
    fn put(&mut self, x: i64, y: i64, c: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.img.width() && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, c);
        }
    }
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>, thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for a in 0..thick {
                for b in 0..thick {
                    self.put(x + a, y + b, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
    fn dot(&mut self, x: i64, y: i64, r: i64, c: Rgb<u8>) {
        for a in -r..=r {
            for b in -r..=r {
                if a * a + b * b <= r * r {
                    self.put(x + a, y + b, c);
                }
            }
        }
    }
    /// Draws digits with their top-left corner at (x, y), `s` pixels per dot.
    fn text(&mut self, x: i64, y: i64, t: &str, s: i64) {
        let mut cx = x;
        for ch in t.chars() {
            if let Some(g) = glyph(ch) {
                for (r, bits) in g.iter().enumerate() {
                    for col in 0..3 {
                        if bits >> (2 - col) & 1 == 1 {
                            for a in 0..s {
                                for b in 0..s {
                                    self.put(cx + col * s + a, y + r as i64 * s + b, BLACK);
                                }
                            }
                        }
                    }
                }
            }
            cx += 4 * s;
        }
    }
    fn text_width(t: &str, s: i64) -> i64 {
        t.chars().count() as i64 * 4 * s - s
    }
    fn save(&self, path: &Path) -> Result<()> {
        self.img.save(path).map_err(|e| GlmcError::Io { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) })
    }
}

/// A plotting area mapping data coordinates to pixels.
struct Panel {
    x0: i64,
    y0: i64,
    w: i64,
    h: i64,
    xr: (f64, f64),
    yr: (f64, f64),
}

impl Panel {
    fn map(&self, x: f64, y: f64) -> (i64, i64) {
        let fx = (x - self.xr.0) / (self.xr.1 - self.xr.0).max(1e-12);
        let fy = (y - self.yr.0) / (self.yr.1 - self.yr.0).max(1e-12);
        (self.x0 + (fx * self.w as f64).round() as i64, self.y0 + self.h - (fy * self.h as f64).round() as i64)
    }
    fn frame(&self, c: &mut Canvas) {
        let (a, b) = ((self.x0, self.y0), (self.x0 + self.w, self.y0 + self.h));
        c.line(a, (b.0, a.1), BLACK, 1);
        c.line((a.0, b.1), b, BLACK, 1);
        c.line(a, (a.0, b.1), BLACK, 1);
        c.line((b.0, a.1), b, BLACK, 1);
    }
    fn ygrid(&self, c: &mut Canvas, ticks: &[f64], fmt: impl Fn(f64) -> String) {
        for &t in ticks {
            let (_, py) = self.map(self.xr.0, t);
            c.line((self.x0, py), (self.x0 + self.w, py), GREY, 1);
            let s = fmt(t);
            c.text(self.x0 - 6 - Canvas::text_width(&s, 2), py - 5, &s, 2);
        }
    }
    fn xgrid(&self, c: &mut Canvas, ticks: &[(f64, String)]) {
        for (t, s) in ticks {
            let (px, _) = self.map(*t, self.yr.0);
            c.line((px, self.y0), (px, self.y0 + self.h), GREY, 1);
            c.text(px - Canvas::text_width(s, 2) / 2, self.y0 + self.h + 8, s, 2);
        }
    }
    fn polyline(&self, c: &mut Canvas, pts: &[(f64, f64)], col: Rgb<u8>) {
        for w in pts.windows(2) {
            c.line(self.map(w[0].0, w[0].1), self.map(w[1].0, w[1].1), col, 2);
        }
        for &(x, y) in pts {
            let (px, py) = self.map(x, y);
            c.dot(px, py, 2, col);
        }
    }
}

fn nice_max(v: f64) -> f64 {
    if !(v > 0.0) || !v.is_finite() {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * e).find(|m| *m >= v).unwrap_or(10.0 * e)
}

fn fmt_num(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else if (v * 10.0 - (v * 10.0).round()).abs() < 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Per-class accuracy (0–1) against training frequency (log x), coloured by
/// group (many blue, medium orange, few red), with the group thresholds as
/// vertical lines.
pub fn plot_per_class(path: &Path, counts: &[usize], acc: &[Option<f64>], t: GroupThresholds) -> Result<()> {
    let mut c = Canvas::new(720, 440);
    let lo = counts.iter().copied().filter(|&n| n > 0).min().unwrap_or(1) as f64;
    let hi = counts.iter().copied().max().unwrap_or(10).max(2) as f64;
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
    let p = Panel { x0: 70, y0: 20, w: 620, h: 370, xr: (l0, l1), yr: (0.0, 1.0) };
    p.ygrid(&mut c, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], fmt_num);
    let mut xt = Vec::new();
    let mut d = l0;
    while d <= l1 + 1e-9 {
        xt.push((d, format!("{}", 10f64.powf(d).round() as u64)));
        d += 1.0;
    }
    p.xgrid(&mut c, &xt);
    for th in [t.many_above as f64 + 0.5, t.few_below as f64 - 0.5] {
        if th > 0.0 && th.log10() > l0 && th.log10() < l1 {
            let (px, _) = p.map(th.log10(), 0.0);
            let mut y = p.y0;
            while y < p.y0 + p.h {
                c.line((px, y), (px, (y + 6).min(p.y0 + p.h)), BLACK, 1);
                y += 12;
            }
        }
    }
    p.frame(&mut c);
    for (k, (&n, a)) in counts.iter().zip(acc).enumerate() {
        let Some(a) = a else { continue };
        let col = match t.group(n) {
            Group::Many => BLUE,
            Group::Medium => ORANGE,
            Group::Few => RED,
        };
        let (px, py) = p.map((n.max(1) as f64).log10(), *a);
        // Spread classes with equal counts a little so that none hides another.
        c.dot(px + (k as i64 % 3) - 1, py, 4, col);
    }
    c.save(path)
}

/// Left: mean training loss per epoch (total black, L_sup blue, L_rb orange,
/// L_con + 2 purple, since L_con lies in [−2, 2]). Right: test accuracy per
/// evaluated epoch (top-1 black, many blue, medium orange, few red).
pub fn plot_curves(path: &Path, records: &[EpochRecord]) -> Result<()> {
    let mut c = Canvas::new(1120, 440);
    let xs = |r: &EpochRecord| r.epoch as f64 + 1.0;
    let xmax = records.iter().map(xs).fold(1.0, f64::max).max(2.0);
    let series = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        records.iter().filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (xs(r), v))).collect()
    };
    let total = series(&|r| Some(r.loss));
    let sup = series(&|r| Some(r.loss_sup));
    let rb = series(&|r| r.loss_rb);
    let con = series(&|r| r.loss_con.map(|v| v + 2.0));
    let all = || total.iter().chain(&sup).chain(&rb).chain(&con).map(|p| p.1);
    let ymax = nice_max(all().fold(0.0, f64::max));
    let lowest = all().fold(0.0, f64::min);
    let ymin = if lowest < 0.0 { -nice_max(-lowest) } else { 0.0 };
    let xt: Vec<(f64, String)> = {
        let step = nice_max(xmax / 8.0).max(1.0);
        let mut v = vec![(1.0, "1".to_string())];
        let mut x = step;
        while x <= xmax + 1e-9 {
            if x > 1.0 {
                v.push((x, fmt_num(x)));
            }
            x += step;
        }
        v
    };
    let left = Panel { x0: 70, y0: 20, w: 460, h: 370, xr: (1.0, xmax), yr: (ymin, ymax) };
    left.ygrid(&mut c, &(0..=5).map(|i| ymin + (ymax - ymin) * i as f64 / 5.0).collect::<Vec<_>>(), fmt_num);
    left.xgrid(&mut c, &xt);
    left.frame(&mut c);
    for (s, col) in [(&sup, BLUE), (&rb, ORANGE), (&con, PURPLE), (&total, BLACK)] {
        left.polyline(&mut c, s, col);
    }
    let right = Panel { x0: 630, y0: 20, w: 460, h: 370, xr: (1.0, xmax), yr: (0.0, 1.0) };
    right.ygrid(&mut c, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], fmt_num);
    right.xgrid(&mut c, &xt);
    right.frame(&mut c);
    let acc = |f: fn(&crate::train::EvalSummary) -> Option<f64>| series(&move |r: &EpochRecord| r.test.as_ref().and_then(f));
    for (s, col) in [(acc(|t| t.many), BLUE), (acc(|t| t.medium), ORANGE), (acc(|t| t.few), RED), (acc(|t| Some(t.top1)), BLACK)] {
        right.polyline(&mut c, &s, col);
    }
    let _ = GREEN;
    c.save(path)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2}", 100.0 * v))
}

/// Run facts shown at the top of the report.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub shards: PathBuf,
    pub device: String,
    pub epochs_done: usize,
    pub class_names: Vec<String>,
    pub counts: Vec<usize>,
    pub fingerprint: String,
}

/// Writes report.md, report.json and both plots into `out`; returns the
/// Markdown.
pub fn write_report(out: &Path, recipe: &Recipe, info: &RunInfo, records: &[EpochRecord], eval: &EvalReport) -> Result<String> {
    let t = recipe.eval.groups;
    plot_per_class(&out.join(PER_CLASS_PNG), &info.counts, &eval.per_class, t)?;
    plot_curves(&out.join(CURVES_PNG), records)?;
    let mut md = String::new();
    let _ = writeln!(md, "# {} — {:?}\n", recipe.name, recipe.train.method);
    let arch = recipe.model.arch().map(|a| format!("{a:?}")).unwrap_or_default();
    let _ = writeln!(
        md,
        "Data `{}` ({} classes, {} training images, fingerprint `{}`), {arch}, {} of {} epochs, batch {}, lr {}, wd {}, \
         q {}, p {}, κ {}, consistency {}, re-weighting {}, seed {}, device {}.\n",
        info.shards.display(),
        info.counts.len(),
        info.counts.iter().sum::<usize>(),
        &info.fingerprint[..info.fingerprint.len().min(12)],
        info.epochs_done,
        recipe.train.epochs,
        recipe.train.batch_size,
        recipe.optim.lr,
        recipe.optim.weight_decay,
        recipe.glmc.q,
        recipe.glmc.p,
        recipe.glmc.kappa,
        recipe.glmc.consistency,
        recipe.glmc.reweight,
        recipe.train.seed,
        info.device,
    );
    let _ = writeln!(md, "| top-1 | top-5 | many | medium | few | ECE |\n|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} |\n",
        pct(Some(eval.top1)),
        pct(Some(eval.top5)),
        pct(eval.many),
        pct(eval.medium),
        pct(eval.few),
        pct(Some(eval.ece))
    );
    let _ = writeln!(
        md,
        "Accuracies in %, on {} test images. Groups by training images per class: many > {} ({} classes), \
         medium {}–{} ({}), few < {} ({}); a group's accuracy is the mean over its classes.\n",
        eval.samples,
        t.many_above,
        eval.groups.many.len(),
        t.few_below,
        t.many_above,
        eval.groups.medium.len(),
        t.few_below,
        eval.groups.few.len()
    );
    let _ = writeln!(md, "## Per class\n\n![per-class accuracy against training frequency]({PER_CLASS_PNG})\n");
    let _ = writeln!(
        md,
        "x: training images per class (log scale); y: test accuracy (0–1); blue many, orange medium, red few; \
         dashed lines at the group thresholds.\n"
    );
    let _ = writeln!(md, "| class | name | train | group | accuracy |\n|---|---|---|---|---|");
    for (k, (&n, a)) in info.counts.iter().zip(&eval.per_class).enumerate() {
        let g = match t.group(n) {
            Group::Many => "many",
            Group::Medium => "medium",
            Group::Few => "few",
        };
        let name = info.class_names.get(k).map(String::as_str).unwrap_or("");
        let _ = writeln!(md, "| {k} | {name} | {n} | {g} | {} |", pct(*a));
    }
    let _ = writeln!(md, "\n## Curves\n\n![loss and accuracy curves]({CURVES_PNG})\n");
    let _ = writeln!(
        md,
        "Left: mean training loss per epoch (black total, blue L_sup, orange L_rb, purple L_con + 2). \
         Right: test accuracy (black top-1, blue many, orange medium, red few). x: epoch.\n"
    );
    let _ = writeln!(md, "| epoch | lr | α | loss | L_sup | L_rb | L_con | img/s | top-1 | many | medium | few | ECE |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in records {
        let f = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.4}"));
        let te = r.test.as_ref();
        let _ = writeln!(
            md,
            "| {} | {:.5} | {:.3} | {:.4} | {:.4} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.epoch + 1,
            r.lr,
            r.alpha,
            r.loss,
            r.loss_sup,
            f(r.loss_rb),
            f(r.loss_con),
            r.train_images_per_s,
            pct(te.map(|t| t.top1)),
            pct(te.and_then(|t| t.many)),
            pct(te.and_then(|t| t.medium)),
            pct(te.and_then(|t| t.few)),
            pct(te.map(|t| t.ece)),
        );
    }
    let p = out.join(REPORT_MD);
    std::fs::write(&p, &md).map_err(|source| GlmcError::Io { path: p.clone(), source })?;
    let j = out.join(REPORT_JSON);
    let body = serde_json::json!({ "info": info, "final": eval });
    std::fs::write(&j, serde_json::to_vec_pretty(&body).map_err(|source| GlmcError::Json { path: j.clone(), source })?)
        .map_err(|source| GlmcError::Io { path: j.clone(), source })?;
    Ok(md)
}
