//! A procedural dataset for tests and demos — clearly not real data.
//!
//! Class `c` is a coloured, oriented sinusoidal grating whose hue, angle and
//! frequency depend on `c`, plus seeded per-image phase and noise, so a
//! small network can learn it and every image differs.

use super::{Item, Payload, Source};
use crate::{BuildError, Result};
use lt_core::rng::Rng;
use lt_shards::Split;
use lt_vision::codec::Decoded;

#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub classes: usize,
    pub train_per_class: usize,
    pub test_per_class: usize,
    pub size: u32,
    pub channels: u8,
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { classes: 10, train_per_class: 500, test_per_class: 100, size: 32, channels: 3, seed: 0 }
    }
}

/// Largest `--size` (pixels per side): 4096² × 3 bytes = 50 MB per image.
pub const MAX_SIZE: u32 = 4096;
/// Largest number of images (train + test) one synth source makes.
pub const MAX_IMAGES: usize = 20_000_000;

pub struct Synth {
    opts: SynthOptions,
    names: Vec<String>,
    labels: [Vec<u32>; 2],
}

impl Synth {
    pub fn new(opts: SynthOptions) -> Result<Synth> {
        if opts.classes == 0 || opts.train_per_class == 0 || opts.size == 0 {
            let msg = "synth: classes, train_per_class and size must be > 0".into();
            return Err(BuildError::Setting { settings: &["classes", "train_per_class", "size"], msg });
        }
        // Bounded up front: each image is rendered in memory (size² ×
        // channels bytes) and the label lists are allocated at once, so an
        // unbounded setting aborts on allocation instead of failing cleanly.
        if opts.size > MAX_SIZE {
            let bytes = opts.size as f64 * opts.size as f64 * opts.channels.max(1) as f64;
            let msg = format!(
                "synth: size {} is too large: at most {MAX_SIZE} pixels (one image would take {:.1} GB in memory)",
                opts.size,
                bytes / 1e9
            );
            return Err(BuildError::Setting { settings: &["size"], msg });
        }
        let images = opts.train_per_class.checked_add(opts.test_per_class).and_then(|n| n.checked_mul(opts.classes));
        if images.is_none_or(|n| n > MAX_IMAGES) {
            let msg = format!(
                "synth: classes {} × (train_per_class {} + test_per_class {}) is more than the {MAX_IMAGES} images synth makes",
                opts.classes, opts.train_per_class, opts.test_per_class
            );
            return Err(BuildError::Setting { settings: &["classes", "train_per_class", "test_per_class"], msg });
        }
        if !(opts.channels == 1 || opts.channels == 3) {
            let msg = format!("synth: channels must be 1 or 3, got {}", opts.channels);
            return Err(BuildError::Setting { settings: &["channels"], msg });
        }
        let lab = |n: usize| (0..opts.classes * n).map(|i| (i % opts.classes) as u32).collect();
        Ok(Synth {
            names: (0..opts.classes).map(|c| format!("synth-{c:03}")).collect(),
            labels: [lab(opts.train_per_class), lab(opts.test_per_class)],
            opts,
        })
    }

    /// The image for (split, index): a pure function of the options.
    pub fn render(&self, split: Split, index: usize) -> Decoded {
        let o = &self.opts;
        let c = index % o.classes;
        let mut rng = Rng::derive(o.seed, &[0x5717, split as u64, index as u64]);
        let s = o.size as usize;
        let angle = std::f64::consts::PI * c as f64 / o.classes as f64;
        let freq = 2.0 + (c % 4) as f64;
        let phase = rng.uniform(0.0, std::f64::consts::TAU);
        let hue = c as f64 / o.classes as f64;
        let base = [
            0.5 + 0.4 * (std::f64::consts::TAU * hue).cos(),
            0.5 + 0.4 * (std::f64::consts::TAU * (hue + 1.0 / 3.0)).cos(),
            0.5 + 0.4 * (std::f64::consts::TAU * (hue + 2.0 / 3.0)).cos(),
        ];
        let (ca, sa) = (angle.cos(), angle.sin());
        let mut px = Vec::with_capacity(s * s * o.channels as usize);
        for y in 0..s {
            for x in 0..s {
                let u = (x as f64 * ca + y as f64 * sa) / s as f64;
                let g = 0.5 + 0.5 * (std::f64::consts::TAU * freq * u + phase).sin();
                for &b in &base[..o.channels as usize] {
                    let v = if o.channels == 1 { g } else { b * (0.4 + 0.6 * g) };
                    let n = rng.normal() * 0.06;
                    px.push(((v + n).clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
        Decoded { width: o.size, height: o.size, channels: o.channels, pixels: px }
    }
}

impl Source for Synth {
    fn kind(&self) -> &'static str {
        "synth"
    }
    fn location(&self) -> String {
        format!(
            "synth(classes={}, per_class={}, test_per_class={}, size={}, channels={}, seed={})",
            self.opts.classes, self.opts.train_per_class, self.opts.test_per_class, self.opts.size, self.opts.channels, self.opts.seed
        )
    }
    fn class_names(&self) -> &[String] {
        &self.names
    }
    fn labels(&self, split: Split) -> &[u32] {
        &self.labels[split as usize]
    }
    fn channels(&self) -> u8 {
        self.opts.channels
    }
    fn item(&self, split: Split, index: usize) -> Result<Item> {
        Ok(Item { payload: Payload::Raw(self.render(split, index)), path: format!("synth:{}:{index}", split.as_str()) })
    }
}
