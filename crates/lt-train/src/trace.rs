//! Step traces: everything one training step consumed and produced, written
//! so that another implementation can replay the run exactly.
//!
//! `lt-train --trace DIR` writes, for a fresh run:
//!
//! ```text
//! DIR/init.safetensors   the weights and BatchNorm buffers before step 1
//! DIR/steps.jsonl        one line per step: epoch, step, lr, alpha, the batch
//!                        shape [views, slots, C, H, W], labels, λ and the
//!                        CutMix box (GLMC), and the loss terms lt-train got
//! DIR/pixels.bin         the steps' uint8 batches, back to back, in the
//!                        shape given by their line (row-major)
//! ```
//!
//! `tools/glmc_harness.py --replay DIR` trains the authors' loop from the
//! same weights on the same batches, λ and boxes and compares its loss with
//! lt-train's step by step; a semantic difference in the step shows as the
//! first step where the two part. A trace costs `views · slots · C·H·W`
//! bytes per step (200 KB for a Fashion-MNIST GLMC step of batch 64).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{nn::VarStore, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::train::io;
use lt_glmc::loss::LossValues;
use lt_glmc::mix::MixParams;

/// One step's line in `steps.jsonl`.
#[derive(Serialize)]
struct StepLine<'a> {
    epoch: usize,
    step: usize,
    lr: f64,
    alpha: f64,
    shape: &'a [i64],
    labels: Vec<i64>,
    /// Byte offset of this step's batch in pixels.bin.
    offset: u64,
    mix: Option<&'a MixParams>,
    loss: &'a LossValues,
}

/// An open trace directory.
pub struct Trace {
    steps_path: PathBuf,
    pixels_path: PathBuf,
    steps: BufWriter<File>,
    pixels: BufWriter<File>,
    offset: u64,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("steps", &self.steps_path).field("offset", &self.offset).finish()
    }
}

impl Trace {
    /// Creates `dir` (which must not hold a trace already) and writes the
    /// initial weights.
    pub fn create(dir: &Path, vs: &VarStore) -> Result<Trace> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let steps_path = dir.join("steps.jsonl");
        if steps_path.exists() {
            return Err(TrainError::Option { option: "trace", why: format!("{} already holds a trace", dir.display()) });
        }
        let init = dir.join("init.safetensors");
        vs.save(&init)?;
        let open = |p: &Path| OpenOptions::new().create_new(true).write(true).open(p).map_err(io(p));
        let steps = BufWriter::new(open(&steps_path)?);
        let pixels_path = dir.join("pixels.bin");
        let pixels = BufWriter::new(open(&pixels_path)?);
        Ok(Trace { steps_path, pixels_path, steps, pixels, offset: 0 })
    }

    /// Appends one step: its uint8 batch `x` (any device), labels `y`, the
    /// mixing parameters (GLMC) and the loss values lt-train computed.
    pub fn record(
        &mut self,
        (epoch, step): (usize, usize),
        lr: f64,
        (x, y): (&Tensor, &Tensor),
        mix: Option<&MixParams>,
        loss: &LossValues,
    ) -> Result<()> {
        let x = x.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Uint8)?.f_contiguous()?;
        let shape = x.size();
        let n = x.numel();
        let mut bytes = vec![0u8; n];
        x.f_copy_data_u8(&mut bytes, n)?;
        let labels = Vec::<i64>::try_from(&y.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Int64)?.f_flatten(0, -1)?)?;
        let line = StepLine { epoch, step, lr, alpha: loss.alpha, shape: &shape, labels, offset: self.offset, mix, loss };
        self.pixels.write_all(&bytes).map_err(io(&self.pixels_path))?;
        self.offset += n as u64;
        let text = serde_json::to_string(&line).map_err(|source| TrainError::Json { path: self.steps_path.clone(), source })?;
        writeln!(self.steps, "{text}").map_err(io(&self.steps_path))
    }

    /// Flushes both files (also done on drop, without an error report).
    pub fn flush(&mut self) -> Result<()> {
        self.pixels.flush().map_err(io(&self.pixels_path))?;
        self.steps.flush().map_err(io(&self.steps_path))
    }
}
