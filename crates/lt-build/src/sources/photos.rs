//! Labelled random crops of real photographs, for loader benchmarks: real
//! JPEG content at the image sizes of ImageNet (or CIFAR's 32 px), from a
//! handful of photographs such as Debian's wallpaper packages.
//!
//! Every `.jpg`/`.jpeg` file under the given folders (recursively, in path
//! order) whose shorter side is at least [`MIN_SIDE`] px is decoded once and
//! scaled to fit [`WORKING_SIDE`] px. Item `i` of a split is a crop of a
//! photograph, both drawn from a generator seeded by `(seed, split, i)`:
//! torchvision's random-resized-crop parameters (scale 0.25–1, ratio 3/4–4/3),
//! resized to a long side drawn from `sizes` and stored as JPEG at
//! `quality`, or, with `size`, to `size × size` and stored as PNG. Labels
//! are synthetic: `classes` classes named `class000`, … with
//! `train_per_class` (`test_per_class`) items each, class-major, so the
//! build's profile decides how many of each are kept.

use super::{Item, Payload, Source};
use crate::{BuildError, Result};
use lt_core::rng::Rng;
use lt_shards::Split;
use lt_vision::augment::{resize_crop_into, rrc_params};
use lt_vision::codec::{self, Decoded, Filter};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Photographs with a shorter side below this are skipped.
pub const MIN_SIDE: u32 = 256;
/// Photographs are scaled to fit this long side once, so crops are cheap.
pub const WORKING_SIDE: u32 = 1600;
/// Largest number of crops (train + test) one photos source makes.
pub const MAX_IMAGES: usize = 20_000_000;

/// Settings of the photos source (`lt-build photos DIR …`).
#[derive(Clone, Debug)]
pub struct PhotoOptions {
    pub classes: usize,
    pub train_per_class: usize,
    pub test_per_class: usize,
    /// Long sides to draw from, one per crop (ignored with `size`).
    pub sizes: Vec<u32>,
    /// Square crops of this side, stored as PNG.
    pub size: Option<u32>,
    /// JPEG quality of the crops (1–100).
    pub quality: u8,
    pub seed: u64,
}

impl Default for PhotoOptions {
    fn default() -> Self {
        PhotoOptions {
            classes: 10,
            train_per_class: 500,
            test_per_class: 100,
            sizes: vec![320, 400, 500, 640, 800],
            size: None,
            quality: 90,
            seed: 0,
        }
    }
}

pub struct Photos {
    opts: PhotoOptions,
    roots: Vec<PathBuf>,
    photos: Vec<(PathBuf, Decoded)>,
    names: Vec<String>,
    labels: [Vec<u32>; 2],
}

fn collect_jpegs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| BuildError::Io { path: dir.into(), error: e })?;
    for e in rd {
        let p = e.map_err(|e| BuildError::Io { path: dir.into(), error: e })?.path();
        if p.is_dir() {
            collect_jpegs(&p, out)?;
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str())) {
            out.push(p);
        }
    }
    Ok(())
}

impl Photos {
    /// Finds and decodes the photographs under `roots`.
    pub fn open(roots: &[PathBuf], opts: PhotoOptions) -> Result<Photos> {
        check(&opts)?;
        let mut files = Vec::new();
        for r in roots {
            collect_jpegs(r, &mut files)?;
        }
        files.sort();
        let photos: Vec<(PathBuf, Decoded)> = files
            .par_iter()
            .map(|f| {
                let bytes = super::read_file(f)?;
                // Unreadable files and small images are skipped, not errors:
                // wallpaper folders hold thumbnails and odd files.
                let Ok(d) = codec::decode_rgb(&bytes) else { return Ok(None) };
                if d.width.min(d.height) < MIN_SIDE {
                    return Ok(None);
                }
                let (w, h) = codec::fit_max_side(d.width, d.height, WORKING_SIDE);
                let d = if (w, h) == (d.width, d.height) {
                    d
                } else {
                    codec::resize(&d, w, h, Filter::Bilinear).map_err(|e| source_err(f, e))?
                };
                Ok(Some((f.clone(), d)))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        if photos.is_empty() {
            let path = roots.first().cloned().unwrap_or_default();
            let msg = format!("no JPEG photographs of at least {MIN_SIDE} px found (searched {} file(s))", files.len());
            return Err(BuildError::Source { path, msg });
        }
        tracing::info!("photos: {} photographs from {} files", photos.len(), files.len());
        let names = (0..opts.classes).map(|c| format!("class{c:03}")).collect();
        let class_major = |n: usize| (0..opts.classes as u32).flat_map(|c| std::iter::repeat_n(c, n)).collect::<Vec<u32>>();
        let labels = [class_major(opts.train_per_class), class_major(opts.test_per_class)];
        Ok(Photos { roots: roots.to_vec(), photos, names, labels, opts })
    }
}

fn source_err(path: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError::Source { path: path.into(), msg: e.to_string() }
}

/// Settings refused before any photograph is read, naming the setting.
fn check(o: &PhotoOptions) -> Result<()> {
    if o.classes == 0 || o.train_per_class == 0 {
        let msg = "photos: classes and train_per_class must be > 0".into();
        return Err(BuildError::Setting { settings: &["classes", "train_per_class"], msg });
    }
    let images = o.train_per_class.checked_add(o.test_per_class).and_then(|n| n.checked_mul(o.classes));
    if images.is_none_or(|n| n > MAX_IMAGES) {
        let msg = format!("photos: classes × (train_per_class + test_per_class) must be at most {MAX_IMAGES}");
        return Err(BuildError::Setting { settings: &["classes", "train_per_class", "test_per_class"], msg });
    }
    let sides: &[u32] = match &o.size {
        Some(s) => std::slice::from_ref(s),
        None => &o.sizes,
    };
    if sides.is_empty() || sides.iter().any(|&s| s == 0 || s > super::synth::MAX_SIZE) {
        let msg = format!("photos: sizes must be given and each in 1..={}, got {sides:?}", super::synth::MAX_SIZE);
        return Err(BuildError::Setting { settings: &["sizes", "size"], msg });
    }
    if !(1..=100).contains(&o.quality) {
        return Err(BuildError::Setting { settings: &["quality"], msg: format!("photos: quality must be in 1..=100, got {}", o.quality) });
    }
    Ok(())
}

impl Source for Photos {
    fn kind(&self) -> &'static str {
        "photos"
    }
    fn location(&self) -> String {
        self.roots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }
    fn class_names(&self) -> &[String] {
        &self.names
    }
    fn labels(&self, split: Split) -> &[u32] {
        &self.labels[split as usize]
    }
    fn item(&self, split: Split, index: usize) -> Result<Item> {
        let o = &self.opts;
        let mut rng = Rng::derive(o.seed, &[0x5047, split as u64, index as u64]);
        let (path, photo) = &self.photos[rng.below(self.photos.len() as u64) as usize];
        let crop = rrc_params(&mut rng, photo.width, photo.height, (0.25, 1.0), (0.75, 4.0 / 3.0));
        let (w, h) = match o.size {
            Some(s) => (s, s),
            None => {
                let long = o.sizes[rng.below(o.sizes.len() as u64) as usize];
                let r = crop.width as f64 / crop.height as f64;
                if r >= 1.0 {
                    (long, ((long as f64 / r).round() as u32).max(1))
                } else {
                    (((long as f64 * r).round() as u32).max(1), long)
                }
            }
        };
        let mut px = Vec::new();
        resize_crop_into(&mut fast_image_resize::Resizer::new(), photo, crop, w, h, &mut px).map_err(|e| source_err(path, e))?;
        let img = Decoded::try_new(w, h, 3, px).map_err(|e| source_err(path, e))?;
        let payload = match o.size {
            Some(_) => Payload::Raw(img),
            None => Payload::Encoded(codec::encode_jpeg(&img, o.quality).map_err(|e| source_err(path, e))?),
        };
        Ok(Item { payload, path: format!("{}#{}:{index}", path.display(), split.as_str()) })
    }
}
