//! Export for deployment: [`export`] (`lt-train export RUN_DIR --format
//! torchscript`) traces a checkpoint's evaluation head with libtorch's JIT
//! tracer and saves it as a TorchScript module, which `torch.jit.load` (or
//! `tch::CModule::load`) runs without lt-glmc.
//!
//! The module maps a float batch `N×C×H×W`, normalized as
//! `(x/255 − mean)/std`, to the logits of the evaluation head (g or g_cb);
//! the weights are constants of the traced graph. The input size used for
//! tracing is the evaluation pipeline's output: its centre crop, or for
//! pipelines that keep the source size, the run's image size from its shard
//! manifest (or `size`). A JSON file beside the module holds the model card
//! (classes, mean and std, pipeline) and that size.
//!
//! ONNX is not offered: libtorch's C++ API has no ONNX exporter (it is
//! Python's `torch.onnx`).

use std::path::{Path, PathBuf};

use lt_glmc::card::Head;
use lt_glmc::model::HeadSet;
use lt_shards::{Manifest, Split};
use serde::Serialize;
use tch::{CModule, Device, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::eval::{load_model, LoadedModel};
use crate::train;

/// Where `lt-train export RUN_DIR` writes without `out`.
pub const DEFAULT_OUT: &str = "export/model.pt";

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A traced TorchScript module (`torch.jit.load`).
    TorchScript,
}

/// What `lt-train export` exports.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// A run directory or a checkpoint directory.
    pub run: PathBuf,
    pub format: Format,
    /// The module file (default `run/export/model.pt`).
    pub out: Option<PathBuf>,
    /// The example input's (width, height) for tracing (default: from the
    /// pipeline and the run's shards).
    pub size: Option<(u32, u32)>,
    /// The head to export (default: the card's evaluation head).
    pub head: Option<Head>,
}

impl ExportOptions {
    pub fn new(run: &Path) -> Self {
        ExportOptions { run: run.to_path_buf(), format: Format::TorchScript, out: None, size: None, head: None }
    }
}

/// The JSON written beside the module (`model.json` for `model.pt`).
#[derive(Clone, Debug, Serialize)]
pub struct ExportInfo {
    pub format: Format,
    /// The module's file name.
    pub file: String,
    /// The exported head: `head` (g) or `head_cb` (g_cb).
    pub head: String,
    /// The traced example input, `[1, C, H, W]`.
    pub input_shape: [i64; 4],
    /// What the input must be.
    pub input: &'static str,
    /// The model card, as in the checkpoint's metadata.
    pub card: std::collections::BTreeMap<String, String>,
}

/// What [`export`] wrote.
#[derive(Clone, Debug)]
pub struct Exported {
    pub path: PathBuf,
    /// The JSON beside it ([`ExportInfo`]).
    pub info_path: PathBuf,
    pub info: ExportInfo,
    /// Largest |difference| between the reloaded module's logits and the
    /// model's on a check batch (see [`export`]).
    pub max_abs_diff: f64,
}

fn size_error(why: String) -> TrainError {
    TrainError::Option { option: "size", why }
}

/// The example input's (width, height): `size`, else the pipeline's fixed
/// output size, else the pipeline applied to the run's image size (its shard
/// manifest's, which must be one size).
pub fn example_size(m: &LoadedModel, run: &Path, size: Option<(u32, u32)>) -> Result<(u32, u32)> {
    if let Some((w, h)) = size {
        if w == 0 || h == 0 {
            return Err(size_error(format!("{w}x{h} (sizes must be > 0)")));
        }
        return Ok((w, h));
    }
    if !m.pipeline.size_from_source() {
        return Ok(m.pipeline.output_size((0, 0)));
    }
    let shards = crate::finetune::shards_of_run(run)
        .map_err(|e| size_error(format!("the eval pipeline keeps the source size and the run's image size is unknown ({e}); pass it")))?;
    let manifest = Manifest::load(&shards).map_err(|source| TrainError::Dataset { path: shards.clone(), source })?;
    let range = manifest.image_size_range(Split::Train).or_else(|| manifest.image_size_range(Split::Test));
    match range {
        Some(r) if r.is_uniform() => Ok(m.pipeline.output_size((r.min_width, r.min_height))),
        Some(r) => Err(size_error(format!(
            "the run's images range from {}x{} to {}x{} and the eval pipeline keeps the source size; pass one",
            r.min_width, r.min_height, r.max_width, r.max_height
        ))),
        None => Err(size_error(format!("{} records no image size; pass it", Manifest::path(&shards).display()))),
    }
}

/// Traces `head` of the model on `input` (normalized, `N×C×H×W`).
pub fn trace(m: &LoadedModel, head: Head, input: &Tensor) -> Result<CModule> {
    let _g = tch::no_grad_guard();
    let mut failed = None;
    let mut f = |xs: &[Tensor]| -> Vec<Tensor> {
        match m.net.forward_heads(&xs[0], false, HeadSet { proj: false }) {
            Ok(o) => vec![if head == Head::GCb { o.logits_cb } else { o.logits }],
            Err(e) => {
                failed = Some(e);
                Vec::new()
            }
        }
    };
    let module = CModule::create_by_tracing("LtGlmcNet", "forward", std::slice::from_ref(input), &mut f)?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(module),
    }
}

/// A deterministic, non-constant normalized batch (values in about ±2).
pub fn check_input(n: i64, c: i64, h: i64, w: i64) -> Result<Tensor> {
    let x = Tensor::f_arange(n * c * h * w, (Kind::Float, Device::Cpu))?;
    Ok(x.f_mul_scalar(0.7)?.f_sin()?.f_mul_scalar(2.0)?.f_view([n, c, h, w])?)
}

/// Exports the model of `o.run`; the saved module is loaded back and its
/// logits compared with the model's on a batch of 3 (a size other than the
/// traced one), an error beyond 1e-5 (relative to the logits' scale).
pub fn export(o: &ExportOptions) -> Result<Exported> {
    let mut m = load_model(&o.run, Device::Cpu)?;
    // Weights that require grad cannot become constants of a traced graph.
    m.vs.freeze();
    let head = o.head.unwrap_or(m.card.eval_head);
    let (w, h) = example_size(&m, &o.run, o.size)?;
    let c = m.card.model.in_channels;
    let shape = [1, c, h as i64, w as i64];
    let module = trace(&m, head, &Tensor::f_zeros(shape, (Kind::Float, Device::Cpu))?)?;
    let path = o.out.clone().unwrap_or_else(|| o.run.join(DEFAULT_OUT));
    if path.extension().is_some_and(|e| e == "json") {
        let why = format!("{}: the module's JSON description goes beside it as .json; name the module .pt", path.display());
        return Err(TrainError::Option { option: "out", why });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(train::io(dir))?;
    }
    module.save(&path)?;

    let x = check_input(3, c, h as i64, w as i64)?;
    let reloaded = CModule::load(&path)?.forward_ts(&[&x])?;
    let want = {
        let _g = tch::no_grad_guard();
        let out = m.net.forward_heads(&x, false, HeadSet { proj: false })?;
        if head == Head::GCb {
            out.logits_cb
        } else {
            out.logits
        }
    };
    let diff = reloaded.f_sub(&want)?.f_abs()?.f_max()?.double_value(&[]);
    let scale = want.f_abs()?.f_max()?.double_value(&[]).max(1.0);
    if diff.is_nan() || diff > 1e-5 * scale {
        return Err(TrainError::Data {
            path: path.clone(),
            why: format!("the exported module's logits differ from the model's by {diff:e} (scale {scale:e})"),
        });
    }

    let info = ExportInfo {
        format: o.format,
        file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        head: head.name().to_string(),
        input_shape: shape,
        input: "float32 N x C x H x W, normalized as (x/255 - mean)/std per channel (mean, std in card)",
        card: m.card.to_metadata(),
    };
    let info_path = path.with_extension("json");
    let body = serde_json::to_vec_pretty(&info).map_err(|source| TrainError::Json { path: info_path.clone(), source })?;
    std::fs::write(&info_path, body).map_err(train::io(&info_path))?;
    Ok(Exported { path, info_path, info, max_abs_diff: diff })
}
