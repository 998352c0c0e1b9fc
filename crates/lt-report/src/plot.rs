//! The two PNG plots of a run, drawn with `plotters` (bitmap backend,
//! encoded by `image`), each with a title, axis labels and a legend outside
//! the plotting area. Text uses DejaVu Sans, embedded in the binary
//! (`assets/DejaVuSans.ttf`, licence beside it), so plots need no system
//! fonts or fontconfig:
//!
//! - `per_class.png`: per-class test accuracy (y, 0–1) against training
//!   images per class (x, log scale), one dot per class coloured by group
//!   (many blue, medium orange, few red), dashed lines at the group
//!   thresholds;
//! - `curves.png`: training loss per epoch (left: total black, L_sup blue,
//!   L_rb orange, L_con + 2 purple) and test accuracy per evaluated epoch
//!   (right: top-1 black, many blue, medium orange, few red). A legend lists
//!   only the series the run has.

use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use lt_core::groups::{Group, GroupThresholds};
use plotters::backend::{BitMapBackend, DrawingBackend};
use plotters::chart::ChartBuilder;
use plotters::coord::combinators::IntoLogRange;
use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, DrawingAreaErrorKind, IntoDrawingArea};
use plotters::element::{Circle, EmptyElement, PathElement, Rectangle, Text};
use plotters::series::{DashedLineSeries, LineSeries};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, FontStyle, IntoFont, RGBColor, TextStyle};

use crate::error::{ReportError, Result};
use crate::records::{EpochRecord, EvalSummary};

pub const PER_CLASS_PNG: &str = "per_class.png";
pub const CURVES_PNG: &str = "curves.png";

// matplotlib's tab10 colours.
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const BLACK: RGBColor = RGBColor(0, 0, 0);
const WHITE: RGBColor = RGBColor(255, 255, 255);
const GRID: RGBColor = RGBColor(224, 224, 224);
const GRID_LIGHT: RGBColor = RGBColor(242, 242, 242);
const LEGEND_EDGE: RGBColor = RGBColor(204, 204, 204);
const NOTE: RGBColor = RGBColor(110, 110, 110);

/// The embedded font (DejaVu Sans 2.37; licence in assets/DejaVu-LICENSE.txt).
static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FONT: &str = "sans-serif";
const TITLE_PX: f64 = 20.0;
const LABEL_PX: f64 = 16.0;
const TICK_PX: f64 = 14.0;
const LEGEND_PX: f64 = 14.0;
/// Height of the band above the plotting area that holds the title.
const TITLE_BAND: i32 = 44;
/// plotters' ab_glyph text puts the baseline half an em below the top of a
/// layout box only 1/1.24 em tall, so vertically centred text (the y tick
/// labels) sits about a quarter of an em high; those labels are moved down
/// by this many pixels.
const Y_LABEL_SHIFT: i32 = 4;
/// Accuracy axes show 0–1 with this margin so that dots at 0 or 1 are whole.
const ACC_PAD: f64 = 0.03;

const PER_CLASS_SIZE: (u32, u32) = (1000, 600);
const PER_CLASS_LEGEND_W: u32 = 230;
const CURVES_SIZE: (u32, u32) = (1500, 560);
const CURVES_LEGEND_W: u32 = 150;
/// Curves with at most this many points get a dot at each point.
const MARKERS_UP_TO: usize = 30;

type Area<DB> = DrawingArea<DB, Shift>;
type Drawn<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn plot_error(path: &Path, what: impl std::fmt::Display) -> ReportError {
    ReportError::Plot { path: path.to_path_buf(), why: what.to_string() }
}

/// Registers the embedded font with plotters, once per process.
fn ensure_font(path: &Path) -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_TTF).is_ok());
    if ok {
        Ok(())
    } else {
        Err(plot_error(path, "the embedded plot font (DejaVuSans.ttf) could not be loaded"))
    }
}

/// Draws `draw` on a white `size` canvas and returns the pixels.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl for<'a, 'b> FnOnce(&'b Area<BitMapBackend<'a>>) -> Drawn<BitMapBackend<'a>>,
) -> Result<RgbImage> {
    ensure_font(path)?;
    let (w, h) = size;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(&root).map_err(|e| plot_error(path, format!("drawing the plot: {e}")))?;
        root.present().map_err(|e| plot_error(path, format!("drawing the plot: {e}")))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or_else(|| plot_error(path, "plot buffer has the wrong size"))
}

fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    img.save_with_format(path, image::ImageFormat::Png).map_err(|e| plot_error(path, e))
}

fn text_style(px: f64, color: &RGBColor) -> TextStyle<'static> {
    (FONT, px).into_font().color(color)
}

/// Text whose capitals are vertically centred on `y` (see [`Y_LABEL_SHIFT`]).
fn label<DB: DrawingBackend>(area: &Area<DB>, s: &str, (x, y): (i32, i32), px: f64, color: &RGBColor, h: HPos) -> Drawn<DB> {
    let top = y - (0.14 * px).round() as i32;
    area.draw(&Text::new(s.to_string(), (x, top), text_style(px, color).pos(Pos::new(h, VPos::Top))))
}

/// The title, centred over the plotting area `[x0, x1)` in the title band
/// above `y_plot` (the top of the plotting area).
fn title<DB: DrawingBackend>(area: &Area<DB>, s: &str, (x0, x1): (i32, i32), y_plot: i32) -> Drawn<DB> {
    label(area, s, ((x0 + x1) / 2, y_plot - TITLE_BAND / 2 + 2), TITLE_PX, &BLACK, HPos::Center)
}

#[derive(Clone, Copy)]
enum Mark {
    Dot,
    LineDot,
    Dashed,
}

struct Entry {
    label: String,
    color: RGBColor,
    mark: Mark,
}

fn entry(label: impl Into<String>, color: RGBColor, mark: Mark) -> Entry {
    Entry { label: label.into(), color, mark }
}

/// A framed legend in `area` (the margin beside a chart), its top at `top`.
fn legend<DB: DrawingBackend>(area: &Area<DB>, top: i32, entries: &[Entry]) -> Drawn<DB> {
    if entries.is_empty() {
        return Ok(());
    }
    let (pad, row, mark_w, gap) = (10, 24, 26, 8);
    let font = text_style(LEGEND_PX, &BLACK);
    let mut text_w = 0;
    for e in entries {
        text_w = text_w.max(area.estimate_text_size(&e.label, &font)?.0 as i32);
    }
    let (aw, _) = area.dim_in_pixel();
    let x0 = 8;
    let x1 = (x0 + 2 * pad + mark_w + gap + text_w).min(aw as i32 - 2);
    let y1 = top + 2 * pad + row * entries.len() as i32 - 6;
    area.draw(&Rectangle::new([(x0, top), (x1, y1)], WHITE.filled()))?;
    area.draw(&Rectangle::new([(x0, top), (x1, y1)], LEGEND_EDGE.stroke_width(1)))?;
    for (i, e) in entries.iter().enumerate() {
        let cy = top + pad + row * i as i32 + row / 2 - 3;
        let (m0, m1) = (x0 + pad, x0 + pad + mark_w);
        match e.mark {
            Mark::Dot => area.draw(&Circle::new(((m0 + m1) / 2, cy), 5, e.color.filled()))?,
            Mark::LineDot => {
                area.draw(&PathElement::new(vec![(m0, cy), (m1, cy)], e.color.stroke_width(2)))?;
                area.draw(&Circle::new(((m0 + m1) / 2, cy), 3, e.color.filled()))?;
            }
            Mark::Dashed => {
                for (a, b) in [(m0, m0 + 6), (m0 + 10, m0 + 16), (m0 + 20, m1)] {
                    area.draw(&PathElement::new(vec![(a, cy), (b, cy)], e.color.stroke_width(1)))?;
                }
            }
        }
        label(area, &e.label, (m1 + gap, cy), LEGEND_PX, &BLACK, HPos::Left)?;
    }
    Ok(())
}

/// An axis with explicit ticks: labelled values (with grid lines) and
/// values with light grid lines only.
struct Ticked<R> {
    inner: R,
    labelled: Vec<f64>,
    light: Vec<f64>,
}

fn ticked<A: AsRangedCoord<Value = f64>>(axis: A, labelled: Vec<f64>, light: Vec<f64>) -> Ticked<A::CoordDescType> {
    Ticked { inner: axis.into(), labelled, light }
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(v, limit)
    }
    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.labelled.clone()
        }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at least `v` (a tick step).
fn nice_step(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * e).find(|m| *m >= v * (1.0 - 1e-9)).unwrap_or(10.0 * e)
}

fn fmt_num(v: f64) -> String {
    let v = if v.abs() < 1e-12 { 0.0 } else { v };
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if (v * 10.0 - (v * 10.0).round()).abs() < 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Multiples of `step` in `[lo, hi]` (none for a degenerate axis).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let (a, b) = ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor());
    if !(a.is_finite() && b.is_finite()) || b - a > 100.0 {
        return Vec::new();
    }
    (a as i64..=b as i64).map(|k| k as f64 * step).collect()
}

fn acc_ticks() -> Vec<f64> {
    (0..=5).map(|i| i as f64 * 0.2).collect()
}

/// Labelled and unlabelled ticks of a log axis over decades `l0..=l1`:
/// decades labelled, 2× and 5× labelled too when the axis spans at most
/// two decades, the other multiples as light grid lines.
fn log_ticks(l0: f64, l1: f64, lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let few_decades = l1 - l0 <= 2.0;
    let (mut major, mut minor) = (Vec::new(), Vec::new());
    let mut d = l0;
    while d <= l1 + 1e-9 {
        let base = 10f64.powf(d).round();
        for m in 1..10 {
            let v = base * m as f64;
            if v < lo || v > hi {
                continue;
            }
            if m == 1 || (few_decades && (m == 2 || m == 5)) {
                major.push(v);
            } else {
                minor.push(v);
            }
        }
        d += 1.0;
    }
    (major, minor)
}

/// Per-class accuracy (0–1) against training frequency (log x), coloured by
/// group (many blue, medium orange, few red), with the group thresholds as
/// dashed vertical lines; classes without an accuracy (no test images) or
/// with a non-finite one are left out, a class with no training images is
/// drawn at 1.
pub fn plot_per_class(path: &Path, counts: &[usize], acc: &[Option<f64>], t: GroupThresholds) -> Result<()> {
    let img = render_per_class(path, counts, &[("", acc)], t, "Per-class test accuracy vs training frequency")?;
    save_png(path, &img)
}

/// Several runs' per-class accuracy on one plot (same classes and training
/// counts): one colour per run, each run's classes joined from head to tail,
/// so that a gain on the few classes shows as one curve above the other.
pub fn plot_per_class_runs(path: &Path, counts: &[usize], runs: &[(&str, &[Option<f64>])], t: GroupThresholds) -> Result<()> {
    if let Some((label, acc)) = runs.iter().find(|(_, a)| a.len() != counts.len()) {
        return Err(plot_error(path, format!("run {label}: {} accuracies for {} classes", acc.len(), counts.len())));
    }
    let img = render_per_class(path, counts, runs, t, "Per-class test accuracy vs training frequency, by run")?;
    save_png(path, &img)
}

/// Colours of the runs of a comparison, in order.
const RUN_COLORS: [RGBColor; 5] = [RED, BLUE, BLACK, PURPLE, ORANGE];

fn render_per_class(path: &Path, counts: &[usize], runs: &[(&str, &[Option<f64>])], t: GroupThresholds, heading: &str) -> Result<RgbImage> {
    render(path, PER_CLASS_SIZE, |root| draw_per_class(root, counts, runs, t, heading))
}

/// One run: dots coloured by group. Several: one colour per run, each run's
/// dots joined in order of training count.
fn draw_per_class<DB: DrawingBackend>(
    root: &Area<DB>,
    counts: &[usize],
    runs: &[(&str, &[Option<f64>])],
    t: GroupThresholds,
    heading: &str,
) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let (w, _) = root.dim_in_pixel();
    let (area, side) = root.split_horizontally(w - PER_CLASS_LEGEND_W);
    let lo = counts.iter().copied().filter(|&n| n > 0).min().unwrap_or(1) as f64;
    let hi = counts.iter().copied().max().unwrap_or(10).max(2) as f64;
    let (l0, l1) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
    let pad = 0.03 * (l1 - l0);
    let (xa, xb) = (10f64.powf(l0 - pad), 10f64.powf(l1 + pad));
    let (major, minor) = log_ticks(l0, l1, xa, xb);
    let mut chart = ChartBuilder::on(&area)
        .margin_top(TITLE_BAND)
        .margin_bottom(8)
        .margin_left(8)
        .margin_right(16)
        .x_label_area_size(58)
        .y_label_area_size(64)
        .build_cartesian_2d(ticked((xa..xb).log_scale(), major, minor), ticked(-ACC_PAD..1.0 + ACC_PAD, acc_ticks(), vec![]))?;
    chart
        .configure_mesh()
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(GRID_LIGHT.stroke_width(1))
        .axis_style(BLACK.stroke_width(1))
        .set_all_tick_mark_size(5)
        .label_style(text_style(TICK_PX, &BLACK))
        .axis_desc_style(text_style(LABEL_PX, &BLACK))
        .x_desc("training images per class (log scale)")
        .y_desc("test accuracy")
        .x_label_formatter(&|v| format!("{}", v.round() as u64))
        .y_label_formatter(&|v| fmt_num(*v))
        .y_label_offset(Y_LABEL_SHIFT)
        .draw()?;
    let mut thresholds = false;
    for th in [t.many_above as f64 + 0.5, t.few_at_most as f64 + 0.5] {
        if th > xa && th < xb {
            chart.draw_series(DashedLineSeries::new(vec![(th, -ACC_PAD), (th, 1.0 + ACC_PAD)], 6, 5, BLACK.stroke_width(1)))?;
            thresholds = true;
        }
    }
    let mut present = [false; 3];
    let mut run_present = vec![false; runs.len()];
    let by_run = runs.len() > 1;
    for (r, (_, acc)) in runs.iter().enumerate() {
        let run_col = RUN_COLORS[r % RUN_COLORS.len()];
        let mut dots = Vec::new();
        let mut line: Vec<(f64, f64)> = Vec::new();
        for (k, (&n, a)) in counts.iter().zip(acc.iter()).enumerate() {
            let Some(a) = a.filter(|a| a.is_finite()) else { continue };
            let (g, col) = match t.group(n) {
                Group::Many => (0, BLUE),
                Group::Medium => (1, ORANGE),
                Group::Few => (2, RED),
            };
            present[g] = true;
            run_present[r] = true;
            // Spread classes with equal counts a little so that none hides another.
            let dx = (k % 5) as i32 - 2;
            let col = if by_run { run_col } else { col };
            dots.push(EmptyElement::at((n.max(1) as f64, a)) + Circle::new((dx, 0), 4, col.filled()));
            line.push((n.max(1) as f64, a));
        }
        if by_run {
            line.sort_by(|a, b| b.0.total_cmp(&a.0));
            chart.draw_series(LineSeries::new(line, run_col.stroke_width(2)))?;
        }
        chart.draw_series(dots)?;
    }
    let plot = chart.plotting_area();
    // The axes draw the left and bottom edges; close the frame.
    plot.draw(&PathElement::new(vec![(xa, 1.0 + ACC_PAD), (xb, 1.0 + ACC_PAD), (xb, -ACC_PAD)], BLACK.stroke_width(1)))?;
    let (px, py) = plot.get_pixel_range();
    title(root, heading, (px.start, px.end), py.start)?;
    let mut entries = Vec::new();
    if by_run {
        for (r, ((label, _), shown)) in runs.iter().zip(&run_present).enumerate() {
            if *shown {
                entries.push(entry(label.to_string(), RUN_COLORS[r % RUN_COLORS.len()], Mark::Dot));
            }
        }
    } else {
        let groups = [
            (format!("many (> {})", t.many_above), BLUE),
            (format!("medium ({}–{})", t.few_at_most + 1, t.many_above), ORANGE),
            (format!("few (≤ {})", t.few_at_most), RED),
        ];
        for ((name, col), shown) in groups.into_iter().zip(present) {
            if shown {
                entries.push(entry(name, col, Mark::Dot));
            }
        }
    }
    if thresholds {
        entries.push(entry("group thresholds", BLACK, Mark::Dashed));
    }
    legend(&side, py.start, &entries)?;
    if !present.iter().any(|&p| p) {
        label(root, "no per-class accuracy", ((px.start + px.end) / 2, (py.start + py.end) / 2), LABEL_PX, &NOTE, HPos::Center)?;
    }
    Ok(())
}

/// Left: mean training loss per epoch (total black, L_sup blue, L_rb orange,
/// L_con + 2 purple, since L_con lies in [−2, 2]). Right: test accuracy per
/// evaluated epoch (top-1 black, many blue, medium orange, few red).
/// Non-finite values are left out; a legend lists the series present.
pub fn plot_curves(path: &Path, records: &[EpochRecord]) -> Result<()> {
    let img = render_curves(path, records, ["Training loss (mean per epoch)", "Test accuracy"])?;
    save_png(path, &img)
}

fn render_curves(path: &Path, records: &[EpochRecord], headings: [&str; 2]) -> Result<RgbImage> {
    render(path, CURVES_SIZE, |root| draw_curves(root, records, headings))
}

type Series = Vec<(f64, f64)>;

/// One panel of `curves.png`: its series are drawn in order (the last on
/// top) and listed in the legend in `legend_order`.
struct Panel<'a> {
    heading: &'a str,
    y_desc: &'a str,
    yr: (f64, f64),
    y_ticks: Vec<f64>,
    series: Vec<(&'a str, RGBColor, Series)>,
    legend_order: &'a [&'a str],
    empty_note: &'a str,
}

fn draw_curves<DB: DrawingBackend>(root: &Area<DB>, records: &[EpochRecord], headings: [&str; 2]) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let xs = |r: &EpochRecord| r.epoch as f64 + 1.0;
    let xmax = records.iter().map(xs).fold(1.0, f64::max);
    let series = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Series {
        records.iter().filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (xs(r), v))).collect()
    };
    let total = series(&|r| Some(r.loss));
    let sup = series(&|r| Some(r.loss_sup));
    let rb = series(&|r| r.loss_rb);
    let con = series(&|r| r.loss_con.map(|v| v + 2.0));
    let all = || total.iter().chain(&sup).chain(&rb).chain(&con).map(|p| p.1);
    // From 0 (or below the lowest value) to a little above the highest.
    let (lowest, highest) = (all().fold(0.0, f64::min), all().fold(0.0, f64::max));
    let span = if highest - lowest > 0.0 { highest - lowest } else { 1.0 };
    let ymin = if lowest < 0.0 { lowest - 0.04 * span } else { 0.0 };
    let ymax = if highest > 0.0 { highest + 0.04 * span } else { 1.0 };
    let step = nice_step((ymax - ymin) / 6.0);
    let acc = |f: fn(&EvalSummary) -> Option<f64>| series(&move |r: &EpochRecord| r.test.as_ref().and_then(f));
    let loss = Panel {
        heading: headings[0],
        y_desc: "loss",
        yr: (ymin, ymax),
        y_ticks: ticks(ymin, ymax, step),
        series: vec![("L_sup", BLUE, sup), ("L_rb", ORANGE, rb), ("L_con + 2", PURPLE, con), ("total", BLACK, total)],
        legend_order: &["total", "L_sup", "L_rb", "L_con + 2"],
        empty_note: "no epochs recorded",
    };
    let accuracy = Panel {
        heading: headings[1],
        y_desc: "test accuracy",
        yr: (-ACC_PAD, 1.0 + ACC_PAD),
        y_ticks: acc_ticks(),
        series: vec![
            ("many", BLUE, acc(|t| t.many)),
            ("medium", ORANGE, acc(|t| t.medium)),
            ("few", RED, acc(|t| t.few)),
            ("top-1", BLACK, acc(|t| Some(t.top1))),
        ],
        legend_order: &["top-1", "many", "medium", "few"],
        empty_note: "no evaluated epochs",
    };
    let xstep = nice_step(xmax / 8.0).max(1.0);
    let mut xt = vec![1.0];
    xt.extend(ticks(xstep, xmax, xstep).into_iter().filter(|&x| x > 1.0));
    let (left, right) = root.split_horizontally(CURVES_SIZE.0 / 2);
    for (half, panel) in [(&left, loss), (&right, accuracy)] {
        draw_panel(half, panel, xmax, &xt)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(half: &Area<DB>, p: Panel<'_>, xmax: f64, xt: &[f64]) -> Drawn<DB> {
    let (w, _) = half.dim_in_pixel();
    let (area, side) = half.split_horizontally(w - CURVES_LEGEND_W);
    // A single epoch sits in the middle.
    let xpad = if xmax > 1.0 { 0.03 * (xmax - 1.0) } else { 0.5 };
    let (xa, xb) = (1.0 - xpad, xmax + xpad);
    let mut chart = ChartBuilder::on(&area)
        .margin_top(TITLE_BAND)
        .margin_bottom(8)
        .margin_left(8)
        .margin_right(12)
        .x_label_area_size(58)
        .y_label_area_size(64)
        .build_cartesian_2d(ticked(xa..xb, xt.to_vec(), vec![]), ticked(p.yr.0..p.yr.1, p.y_ticks.clone(), vec![]))?;
    chart
        .configure_mesh()
        .bold_line_style(GRID.stroke_width(1))
        .axis_style(BLACK.stroke_width(1))
        .set_all_tick_mark_size(5)
        .label_style(text_style(TICK_PX, &BLACK))
        .axis_desc_style(text_style(LABEL_PX, &BLACK))
        .x_desc("epoch")
        .y_desc(p.y_desc)
        .x_label_formatter(&|v| fmt_num(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .y_label_offset(Y_LABEL_SHIFT)
        .draw()?;
    for (_, col, s) in &p.series {
        chart.draw_series(LineSeries::new(s.iter().copied(), col.stroke_width(2)))?;
        // Markers while there are few points (a single epoch is a dot).
        if s.len() <= MARKERS_UP_TO {
            chart.draw_series(s.iter().map(|&pt| Circle::new(pt, 3, col.filled())))?;
        }
    }
    let plot = chart.plotting_area();
    plot.draw(&PathElement::new(vec![(xa, p.yr.1), (xb, p.yr.1), (xb, p.yr.0)], BLACK.stroke_width(1)))?;
    // Pixel ranges are the canvas's; `half` may not start at its left edge.
    let (px, py) = plot.get_pixel_range();
    let (bx, by) = half.get_base_pixel();
    let (px, py) = (px.start - bx..px.end - bx, py.start - by..py.end - by);
    title(half, p.heading, (px.start, px.end), py.start)?;
    let entries: Vec<Entry> = p
        .legend_order
        .iter()
        .filter_map(|name| p.series.iter().find(|s| s.0 == *name))
        .filter(|(_, _, s)| !s.is_empty())
        .map(|(name, col, _)| entry(*name, *col, Mark::LineDot))
        .collect();
    if entries.is_empty() {
        label(half, p.empty_note, ((px.start + px.end) / 2, (py.start + py.end) / 2), LABEL_PX, &NOTE, HPos::Center)?;
    }
    legend(&side, py.start, &entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::best_epoch;
    use std::path::PathBuf;

    fn rgb(c: RGBColor) -> [u8; 3] {
        [c.0, c.1, c.2]
    }

    /// Pixels of exactly `c` in columns `xs` and rows `ys`.
    fn count(img: &RgbImage, c: RGBColor, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>) -> usize {
        let c = rgb(c);
        img.enumerate_pixels().filter(|(x, y, p)| xs.contains(x) && ys.contains(y) && p.0 == c).count()
    }

    /// Dark (text or line) pixels, anti-aliased ones included.
    fn dark(img: &RgbImage, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>) -> usize {
        img.enumerate_pixels().filter(|(x, y, p)| xs.contains(x) && ys.contains(y) && p.0.iter().all(|&v| v < 140)).count()
    }

    #[test]
    fn best_epoch_is_the_highest_evaluated_top1_first_on_ties() {
        let recs = vec![
            record(0, None, None, Some(eval(0.4))),
            record(1, None, None, None),
            record(2, None, None, Some(eval(0.7))),
            record(3, None, None, Some(eval(0.7))),
            record(4, None, None, Some(eval(0.6))),
        ];
        let (e, b) = best_epoch(&recs).unwrap();
        assert_eq!((e, b.top1), (2, 0.7));
        assert!(best_epoch(&recs[1..2]).is_none());
    }

    fn record(epoch: usize, rb: Option<f64>, con: Option<f64>, test: Option<EvalSummary>) -> EpochRecord {
        let e = epoch as f64;
        EpochRecord {
            epoch,
            lr: 0.1,
            alpha: 0.5,
            loss: 4.0 - 0.5 * e,
            loss_sup: 3.0 - 0.4 * e,
            loss_rb: rb,
            loss_con: con,
            loss_first: 4.0,
            loss_last: 3.0,
            steps: 10,
            train_images_per_s: 100.0,
            train_seconds: 1.0,
            test,
            skipped_steps: 0,
            loss_scale: None,
        }
    }

    fn eval(top1: f64) -> EvalSummary {
        EvalSummary {
            top1,
            top5: 0.9,
            many: Some(top1 + 0.2),
            medium: Some(top1 - 0.1),
            few: Some(top1 - 0.25),
            ece: 0.1,
            head: None,
            g: None,
            g_cb: None,
        }
    }

    fn long_tail() -> (Vec<usize>, Vec<Option<f64>>) {
        let counts: Vec<usize> = (0..30).map(|k| (500.0 * 0.85f64.powi(k)).round() as usize).collect();
        let acc = (0..30).map(|k| Some(0.9 - 0.025 * k as f64)).collect();
        (counts, acc)
    }

    #[test]
    fn per_class_has_dots_of_each_group_a_title_axis_labels_and_a_legend() {
        let (counts, acc) = long_tail();
        let t = GroupThresholds::default();
        let p = Path::new("per_class.png");
        let img = render_per_class(p, &counts, &[("", &acc)], t, "Per-class test accuracy vs training frequency").unwrap();
        let (w, h) = PER_CLASS_SIZE;
        assert_eq!(img.dimensions(), (w, h));
        let plot_w = w - PER_CLASS_LEGEND_W;
        for c in [BLUE, ORANGE, RED] {
            // Dots in the plot, a marker in the legend.
            assert!(count(&img, c, 0..plot_w, 0..h) > 100, "{c:?} dots");
            assert!(count(&img, c, plot_w..w, 0..h) > 20, "{c:?} legend marker");
        }
        // Title band, legend text, x-axis label (bottom rows), rotated
        // y-axis label (leftmost columns).
        assert!(dark(&img, 0..plot_w, 0..TITLE_BAND as u32) > 150, "title");
        assert!(dark(&img, plot_w + 40..w, 0..h) > 150, "legend text");
        assert!(dark(&img, 0..plot_w, h - 30..h) > 100, "x label");
        assert!(dark(&img, 0..30, 0..h) > 60, "y label");
        let untitled = render_per_class(p, &counts, &[("", &acc)], t, "").unwrap();
        assert!(dark(&untitled, 0..plot_w, 0..TITLE_BAND as u32) < 10);
        assert_ne!(img, untitled);
    }

    #[test]
    fn curves_have_every_series_titles_and_legends() {
        let records: Vec<_> = (0..6)
            .map(|e| record(e, Some(1.0 - 0.1 * e as f64), Some(-1.5 + 0.1 * e as f64), (e % 2 == 1).then(|| eval(0.3 + 0.05 * e as f64))))
            .collect();
        let p = Path::new("curves.png");
        let img = render_curves(p, &records, ["Training loss", "Test accuracy"]).unwrap();
        let (w, h) = CURVES_SIZE;
        assert_eq!(img.dimensions(), (w, h));
        let half = w / 2;
        for c in [BLACK, BLUE, ORANGE, PURPLE] {
            assert!(count(&img, c, 0..half, 0..h) > 150, "loss {c:?}");
        }
        assert_eq!(count(&img, RED, 0..half, 0..h), 0);
        for c in [BLACK, BLUE, ORANGE, RED] {
            assert!(count(&img, c, half..w, 0..h) > 150, "accuracy {c:?}");
        }
        assert_eq!(count(&img, PURPLE, half..w, 0..h), 0);
        for x in [0..half - CURVES_LEGEND_W, half..w - CURVES_LEGEND_W] {
            assert!(dark(&img, x.clone(), 0..TITLE_BAND as u32) > 100, "title {x:?}");
            assert!(dark(&img, x, h - 30..h) > 40, "x label");
        }
        for x in [half - CURVES_LEGEND_W + 40..half, w - CURVES_LEGEND_W + 40..w] {
            assert!(dark(&img, x, 0..h) > 150, "legend text");
        }
        let untitled = render_curves(p, &records, ["", ""]).unwrap();
        assert!(dark(&untitled, 0..w, 0..TITLE_BAND as u32) < 10);
        assert_ne!(img, untitled);
    }

    #[test]
    fn curves_list_only_the_series_a_run_has() {
        // The CE baseline: no L_rb, no L_con; evaluated without groups.
        let records: Vec<_> = (0..4)
            .map(|e| {
                let test = EvalSummary { many: None, medium: None, few: None, ..eval(0.5) };
                record(e, None, None, Some(test))
            })
            .collect();
        let img = render_curves(Path::new("curves.png"), &records, ["a", "b"]).unwrap();
        let (w, h) = CURVES_SIZE;
        for c in [ORANGE, PURPLE, RED] {
            assert_eq!(count(&img, c, 0..w, 0..h), 0, "{c:?} drawn or listed");
        }
        assert!(count(&img, BLUE, 0..w / 2, 0..h) > 100);
        assert!(count(&img, BLUE, w / 2..w, 0..h) == 0);
    }

    #[test]
    fn edge_cases_write_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let png = |name: &str| dir.path().join(name);
        let check = |p: &Path, size: (u32, u32)| {
            let img = image::open(p).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), size, "{}", p.display());
        };
        let t = GroupThresholds::default();
        let cases: [(&str, Vec<EpochRecord>); 6] = [
            ("single.png", vec![record(0, Some(0.5), Some(0.1), Some(eval(0.4)))]),
            ("no_eval.png", (0..3).map(|e| record(e, Some(0.5), Some(0.1), None)).collect()),
            ("empty.png", vec![]),
            (
                "non_finite.png",
                vec![
                    EpochRecord { loss: f64::NAN, loss_sup: f64::INFINITY, ..record(0, Some(f64::NEG_INFINITY), Some(f64::NAN), None) },
                    record(1, Some(0.5), None, Some(EvalSummary { top1: f64::NAN, ..eval(0.5) })),
                ],
            ),
            ("all_nan.png", vec![EpochRecord { loss: f64::NAN, loss_sup: f64::NAN, ..record(0, None, None, None) }]),
            ("huge.png", vec![EpochRecord { loss: 1e308, loss_sup: -1e308, ..record(0, None, None, None) }]),
        ];
        for (name, records) in &cases {
            plot_curves(&png(name), records).unwrap();
            check(&png(name), CURVES_SIZE);
        }
        let per_class: [PerClassCase; 6] = [
            ("all_none.png", vec![500, 50, 5], vec![None; 3]),
            ("zero_count.png", vec![0, 0, 30, 300], vec![Some(0.0), Some(1.0), Some(0.5), None]),
            ("equal_counts.png", vec![40; 10], vec![Some(0.5); 10]),
            ("non_finite_acc.png", vec![200, 10], vec![Some(f64::NAN), Some(f64::INFINITY)]),
            ("no_classes.png", vec![], vec![]),
            ("one_class.png", vec![1], vec![Some(1.0)]),
        ];
        for (name, counts, acc) in &per_class {
            plot_per_class(&png(name), counts, acc, t).unwrap();
            check(&png(name), PER_CLASS_SIZE);
        }
    }

    /// A per-class plot's file name, training counts and accuracies.
    type PerClassCase = (&'static str, Vec<usize>, Vec<Option<f64>>);

    #[test]
    fn equal_counts_stay_distinguishable() {
        let img = render_per_class(Path::new("p.png"), &[40; 5], &[("", &[Some(0.5); 5])], GroupThresholds::default(), "").unwrap();
        let plot_w = PER_CLASS_SIZE.0 - PER_CLASS_LEGEND_W;
        let cols: std::collections::BTreeSet<u32> =
            img.enumerate_pixels().filter(|(x, _, p)| *x < plot_w && p.0 == rgb(ORANGE)).map(|(x, _, _)| x).collect();
        // Five dots of radius 4 at offsets −2..=2 span 13 columns, one dot 9.
        assert!(cols.len() >= 12, "{cols:?}");
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("curves.png");
        assert!(matches!(plot_curves(&p, &[]), Err(ReportError::Io { .. } | ReportError::Plot { .. })));
    }

    /// `LT_GLMC_PLOT_SAMPLES=dir` writes sample plots there, to look at.
    #[test]
    fn sample_plots() {
        let Some(dir) = std::env::var_os("LT_GLMC_PLOT_SAMPLES") else { return };
        let dir = PathBuf::from(dir);
        let (counts, acc) = long_tail();
        plot_per_class(&dir.join(PER_CLASS_PNG), &counts, &acc, GroupThresholds::default()).unwrap();
        let records: Vec<_> = (0..40)
            .map(|e| {
                let f = e as f64 / 40.0;
                let mut r = record(e, Some(2.0 - 1.5 * f), Some(-0.5 - 1.2 * f), (e % 5 == 4).then(|| eval(0.2 + 0.4 * f)));
                r.loss = 6.0 - 3.5 * f;
                r.loss_sup = 4.0 - 2.5 * f;
                r
            })
            .collect();
        plot_curves(&dir.join(CURVES_PNG), &records).unwrap();
        let ce: Vec<_> = (0..3).map(|e| record(e, None, None, Some(eval(0.3)))).collect();
        plot_curves(&dir.join("curves_ce.png"), &ce).unwrap();
        plot_curves(&dir.join("curves_empty.png"), &[]).unwrap();
        plot_curves(&dir.join("curves_single.png"), &[record(0, Some(0.7), Some(-0.3), Some(eval(0.35)))]).unwrap();
        let few_decades: Vec<usize> = (0..12).map(|k| 300 - 20 * k).chain([40; 4]).collect();
        let acc: Vec<_> = (0..16).map(|k| Some(0.95 - 0.05 * k as f64)).collect();
        plot_per_class(&dir.join("per_class_narrow.png"), &few_decades, &acc, GroupThresholds { many_above: 200, few_at_most: 59 })
            .unwrap();
        plot_per_class(&dir.join("per_class_none.png"), &[5, 50], &[None, None], GroupThresholds::default()).unwrap();
    }
}
