//! Shared helpers of lt-train's (and lt-bench's) tests: seeded synthetic
//! shard sets written with lt-shards directly (no dependency on lt-build),
//! tiny recipes, and lt-glmc's test helpers (the libtorch lock).

#![allow(dead_code)]

use std::path::Path;

use lt_core::rng::Rng;
use lt_shards::{Manifest, Row, Split, SplitWriter, WriterOptions};
use lt_train::recipe::Recipe;
use lt_vision::codec::{encode_png, Decoded};

#[path = "../../../lt-glmc/tests/util/mod.rs"]
mod torch;
#[allow(unused_imports)] // not every test binary takes the lock
pub use torch::*;

/// A learnable image of class `c`: a class-specific colour and a bright
/// square whose position depends on the class, plus seeded noise.
fn image(rng: &mut Rng, c: usize, side: u32, channels: u8) -> Vec<u8> {
    let (w, h, ch) = (side as usize, side as usize, channels as usize);
    let mut px = vec![0u8; w * h * ch];
    let q = side as usize / 4;
    let (oy, ox) = ((c % 3) * q, ((c / 3) % 3) * q);
    for y in 0..h {
        for x in 0..w {
            for k in 0..ch {
                let base = 40 + ((c * 53 + k * 97) % 160) as i64;
                let on = (oy..oy + q + q / 2).contains(&y) && (ox..ox + q + q / 2).contains(&x);
                let v = base + if on { 80 } else { 0 } + (rng.below(41) as i64 - 20);
                px[(y * w + x) * ch + k] = v.clamp(0, 255) as u8;
            }
        }
    }
    encode_png(&Decoded { width: side, height: side, channels, pixels: px }).expect("png")
}

/// Writes a shard set with `train[c]` training and `test_per_class` test
/// images per class into `dir`.
pub fn write_synth(dir: &Path, train: &[usize], test_per_class: usize, side: u32, channels: u8, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let names: Vec<String> = (0..train.len()).map(|c| format!("class-{c}")).collect();
    let mut rng = Rng::new(seed);
    let mut builder = Manifest::builder("lt-glmc tests", &names)
        .source(lt_shards::SourceInfo::new("test-synth", format!("seed {seed}")))
        .seed(seed)
        .channels(channels, vec![0.4; channels as usize], vec![0.25; channels as usize]);
    for (split, counts) in [(Split::Train, train.to_vec()), (Split::Test, vec![test_per_class; train.len()])] {
        let mut rows = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            for i in 0..n {
                rows.push(Row {
                    image: image(&mut rng, c, side, channels),
                    path: format!("{}/{c}/{i}.png", split.as_str()),
                    label: c as i64,
                    source_index: rows.len() as i64,
                    height: side as i32,
                    width: side as i32,
                });
            }
        }
        rng.shuffle(&mut rows);
        let mut w = SplitWriter::try_new(dir, split, &names, &counts, WriterOptions::default().with_row_group_rows(64)).unwrap();
        w.write_rows(rows).unwrap();
        builder = builder.split(split, &counts, w.finish().unwrap());
    }
    builder.build().unwrap().save(dir).unwrap();
}

/// A tiny GLMC recipe: ResNet-32 at width 4, batch 8, single-threaded loader.
pub fn tiny_recipe(epochs: usize) -> Recipe {
    Recipe::from_toml_str(&format!(
        r#"
        name = "tiny"
        [loader]
        augment = "cifar"
        workers = 2
        eval_batch_size = 64
        [model]
        arch = "resnet32"
        width = 4
        [train]
        epochs = {epochs}
        batch_size = 8
        seed = 3
        [optim]
        lr = 0.05
        weight_decay = 5e-4
        [glmc]
        q = 0.0
        p = 1.2
        kappa = 1.0
        [eval]
        groups = {{ many_above = 40, few_below = 12 }}
        "#
    ))
    .unwrap()
}
