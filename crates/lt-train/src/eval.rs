//! Using a trained model: [`eval`] (`lt-train eval RUN_DIR`) evaluates a
//! checkpoint on any shards with the same classes, and [`predict`]
//! (`lt-train predict RUN_DIR IMAGE...`) classifies image files, folders of
//! images and image Parquet files.
//!
//! Both read the model from the checkpoint alone: its weights carry a
//! [`ModelCard`] (architecture, classes, normalization, evaluation head and
//! pipeline), so a copied `checkpoint/` directory is enough. Checkpoints
//! written before cards existed are described from the run's `recipe.toml`
//! and shards instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lt_core::groups::GroupThresholds;
use lt_core::rng::Rng;
use lt_glmc::card::{Head, ModelCard};
use lt_glmc::checkpoint;
use lt_glmc::metrics::EvalReport;
use lt_glmc::mix::Normalizer;
use lt_glmc::model::{GlmcNet, HeadSet};
use lt_loader::source::EncodedSource;
use lt_shards::{ImageColumns, Split};
use lt_vision::augment::{Augmenter, Pipeline};
use serde::Serialize;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::recipe::Recipe;
use crate::train::{self, Dataset, EvalRun, CHECKPOINT_DIR, RECIPE_FILE};

/// The evaluation's files in its output directory.
pub const EVAL_JSON: &str = "eval.json";
/// Where `lt-train eval RUN_DIR` writes without `out`.
pub const DEFAULT_OUT: &str = "eval";

/// A checkpoint's model, ready to evaluate.
pub struct LoadedModel {
    pub vs: VarStore,
    pub net: GlmcNet,
    pub norm: Normalizer,
    pub card: ModelCard,
    /// The evaluation pipeline of the card.
    pub pipeline: Pipeline,
    /// The checkpoint directory it came from.
    pub checkpoint: PathBuf,
}

/// `run/checkpoint`, or `run` itself when it is a checkpoint directory.
fn checkpoint_dir(run: &Path) -> Result<PathBuf> {
    for dir in [run.join(CHECKPOINT_DIR), run.to_path_buf()] {
        if dir.join(checkpoint::MODEL_FILE).is_file() {
            return Ok(dir);
        }
    }
    Err(TrainError::Data {
        path: run.to_path_buf(),
        why: format!("no {} in it or in its {CHECKPOINT_DIR}/ (is it an lt-train run directory?)", checkpoint::MODEL_FILE),
    })
}

/// The card of a checkpoint written before cards existed, from its run's
/// recipe and shards (the model is rebuilt as the trainer built it).
fn card_of_run(run: &Path) -> Result<ModelCard> {
    let rp = run.join(RECIPE_FILE);
    if !rp.is_file() {
        let why = format!("its weights carry no model card and there is no {RECIPE_FILE} beside them to describe the model");
        return Err(TrainError::Data { path: run.to_path_buf(), why });
    }
    let recipe = Recipe::load(&rp)?;
    let ds = Dataset::open(&crate::finetune::shards_of_run(run)?, recipe.loader.memory_budget_mib)?;
    let s = train::setup(&recipe, &ds, Device::Cpu)?;
    train::model_card(&recipe, &ds, &s)
}

/// Loads the model of `run` (a run directory or a checkpoint directory).
pub fn load_model(run: &Path, device: Device) -> Result<LoadedModel> {
    let ckpt = checkpoint_dir(run)?;
    let weights = ckpt.join(checkpoint::MODEL_FILE);
    let meta = checkpoint::read_metadata(&weights)?;
    let card = if meta.is_empty() { card_of_run(run)? } else { ModelCard::from_metadata(&meta)? };
    let mut vs = VarStore::new(device);
    let net = GlmcNet::try_new(&vs.root(), card.model)?;
    checkpoint::load_weights(&mut vs, &weights)?;
    let norm = Normalizer::try_new(&card.mean, &card.std, device, Kind::Float)?;
    let pipeline: Pipeline = serde_json::from_value(card.eval_pipeline.clone())
        .map_err(|e| TrainError::Data { path: weights.clone(), why: format!("the model card's eval_pipeline is not a pipeline: {e}") })?;
    Ok(LoadedModel { vs, net, norm, card, pipeline, checkpoint: ckpt })
}

/// What `lt-train eval` evaluates.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub run: PathBuf,
    /// The shards (default: the run's own, from its report.json).
    pub shards: Option<PathBuf>,
    pub split: Split,
    /// The head whose accuracy is the headline (default: the card's).
    pub head: Option<Head>,
    pub device: Device,
    /// The output directory (default `run/eval`).
    pub out: Option<PathBuf>,
    pub batch_size: usize,
    pub workers: usize,
}

impl EvalOptions {
    pub fn new(run: &Path, device: Device) -> Self {
        EvalOptions {
            run: run.to_path_buf(),
            shards: None,
            split: Split::Test,
            head: None,
            device,
            out: None,
            batch_size: 256,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What an evaluation found: both heads, the headline one first.
#[derive(Clone, Debug, Serialize)]
pub struct EvalOutcome {
    pub shards: PathBuf,
    pub split: Split,
    /// The headline head.
    pub head: Head,
    /// The card's evaluation head (the one training reported).
    pub model_head: Head,
    /// Accuracy of each head, `g` and `g_cb`.
    pub heads: BTreeMap<String, EvalReport>,
    pub class_names: Vec<String>,
    /// Training images per class of the evaluated shards (the groups).
    pub train_counts: Vec<usize>,
    #[serde(skip)]
    pub out: PathBuf,
}

impl EvalOutcome {
    /// The headline head's report.
    pub fn report(&self) -> &EvalReport {
        &self.heads[self.head.paper_name()]
    }

    /// A Markdown table of both heads (the headline one marked).
    pub fn table(&self) -> String {
        let pct = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{:.2}", 100.0 * v));
        let mut md = String::from("| head | top-1 | top-5 | many | medium | few | ECE |\n|---|---|---|---|---|---|---|\n");
        for h in [Head::G, Head::GCb] {
            let r = &self.heads[h.paper_name()];
            let mark = if h == self.head { " (headline)" } else { "" };
            let cells = [Some(r.top1), Some(r.top5), r.many, r.medium, r.few, Some(r.ece)].map(pct);
            md.push_str(&format!("| {}{mark} | {} |\n", h.paper_name(), cells.join(" | ")));
        }
        md
    }
}

/// Evaluates a checkpoint on a split of any shards whose classes are the
/// model's (same names, same order), writes `eval.json` and
/// `per_class.png` into the output directory and returns the result.
pub fn eval(o: &EvalOptions) -> Result<EvalOutcome> {
    let m = load_model(&o.run, o.device)?;
    let shards = match &o.shards {
        Some(s) => s.clone(),
        None => crate::finetune::shards_of_run(&o.run)?,
    };
    let ds = Dataset::open(&shards, 8192)?;
    let names = ds.manifest.class_names();
    if names != m.card.class_names {
        let why = format!(
            "its {} classes ({}) are not the model's {} ({})",
            names.len(),
            preview(&names),
            m.card.class_names.len(),
            preview(&m.card.class_names)
        );
        return Err(TrainError::Data { path: shards, why });
    }
    let source = match o.split {
        Split::Train => ds.train.clone(),
        Split::Test => ds.test.clone(),
    };
    if source.is_empty() {
        return Err(TrainError::Data { path: shards, why: format!("the {} split is empty", o.split.as_str()) });
    }
    let run = EvalRun {
        source,
        pipeline: m.pipeline.clone(),
        channels: m.card.model.in_channels as u8,
        batch_size: o.batch_size,
        workers: o.workers,
        pinned: true,
        precision: Default::default(),
        shard: lt_loader::sampler::Shard::WHOLE,
    };
    let groups = match Recipe::load(&o.run.join(RECIPE_FILE)) {
        Ok(r) => r.eval.groups,
        Err(_) => GroupThresholds::default(),
    };
    let [g, g_cb] = run.run(&m.net, &m.norm, o.device)?;
    let mut heads = BTreeMap::new();
    heads.insert("g".to_string(), g.finish(&ds.counts, groups)?);
    heads.insert("g_cb".to_string(), g_cb.finish(&ds.counts, groups)?);
    let out = o.out.clone().unwrap_or_else(|| o.run.join(DEFAULT_OUT));
    let outcome = EvalOutcome {
        shards,
        split: o.split,
        head: o.head.unwrap_or(m.card.eval_head),
        model_head: m.card.eval_head,
        heads,
        class_names: names,
        train_counts: ds.counts.clone(),
        out: out.clone(),
    };
    std::fs::create_dir_all(&out).map_err(train::io(&out))?;
    let j = out.join(EVAL_JSON);
    let tmp = out.join(format!("{EVAL_JSON}.tmp-{}", std::process::id()));
    let body = serde_json::to_vec_pretty(&outcome).map_err(|source| TrainError::Json { path: j.clone(), source })?;
    std::fs::write(&tmp, body).map_err(train::io(&tmp))?;
    std::fs::rename(&tmp, &j).map_err(train::io(&j))?;
    lt_report::plot::plot_per_class(&out.join(lt_report::plot::PER_CLASS_PNG), &ds.counts, &outcome.report().per_class, groups)?;
    Ok(outcome)
}

fn preview(names: &[String]) -> String {
    let head: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    if names.len() > 3 {
        format!("{}, …", head.join(", "))
    } else {
        head.join(", ")
    }
}

/// One classified image: where it came from and its top classes.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// The file, or `file.parquet#row` for a row of a Parquet file.
    pub input: String,
    /// (class id, class name, probability), most probable first.
    pub top: Vec<(usize, String, f64)>,
}

/// Image files under a folder (JPEG and PNG by extension), sorted.
fn images_in(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(train::io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(train::io(dir))?;
    entries.sort();
    for p in entries {
        let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if p.is_dir() {
            images_in(&p, out)?;
        } else if matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
            out.push(p);
        }
    }
    Ok(())
}

/// The encoded images `inputs` name: image files, folders of them, and
/// image Parquet files (HF layout, `image` column), with their labels.
fn encoded_inputs(inputs: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files = Vec::new();
            images_in(p, &mut files)?;
            if files.is_empty() {
                return Err(TrainError::Data { path: p.clone(), why: "holds no .jpg, .jpeg or .png file".into() });
            }
            for f in files {
                let bytes = std::fs::read(&f).map_err(train::io(&f))?;
                out.push((f.display().to_string(), bytes));
            }
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
            let (_, rows) = lt_shards::read_image_parquet(p, &ImageColumns::default(), &|_| true)
                .map_err(|source| TrainError::Dataset { path: p.clone(), source })?;
            out.extend(rows.into_iter().map(|(row, bytes, _)| (format!("{}#{row}", p.display()), bytes)));
        } else {
            let bytes = std::fs::read(p).map_err(train::io(p))?;
            out.push((p.display().to_string(), bytes));
        }
    }
    Ok(out)
}

/// Classifies every image `inputs` name with `head` (default: the card's),
/// through the model's evaluation pipeline and normalization.
pub fn predict(m: &LoadedModel, inputs: &[PathBuf], head: Option<Head>, top_k: usize, device: Device) -> Result<Vec<Prediction>> {
    let _g = tch::no_grad_guard();
    let head = head.unwrap_or(m.card.eval_head);
    let channels = m.card.model.in_channels as u8;
    let mut aug = Augmenter::try_new(m.pipeline.clone(), channels)
        .map_err(|e| TrainError::Data { path: m.checkpoint.clone(), why: format!("its eval pipeline: {e}") })?;
    let k = top_k.clamp(1, m.card.class_names.len());
    let mut rng = Rng::new(0);
    let mut preds = Vec::new();
    for (input, bytes) in encoded_inputs(inputs)? {
        let bad = |why: String| TrainError::Data { path: PathBuf::from(&input), why };
        let img = lt_loader::loader::decode_to(&bytes, channels).map_err(|e| bad(format!("not a readable image: {e}")))?;
        let (w, h) = m.pipeline.output_size((img.width, img.height));
        let mut px = vec![0u8; channels as usize * w as usize * h as usize];
        aug.view_into(&img, &mut rng, (w, h), &mut px).map_err(|e| bad(e.to_string()))?;
        let x = Tensor::f_from_slice(&px)?.f_view([1, channels as i64, h as i64, w as i64])?.f_to_device(device)?;
        let out = m.net.forward_heads(&m.norm.apply(&x)?, false, HeadSet { proj: false })?;
        let logits = if head == Head::GCb { out.logits_cb } else { out.logits };
        let p = logits.f_softmax(1, Kind::Double)?.f_to_device(Device::Cpu)?;
        let (vals, idx) = p.f_topk(k as i64, 1, true, true)?;
        let vals = Vec::<f64>::try_from(vals.f_flatten(0, -1)?)?;
        let idx = Vec::<i64>::try_from(idx.f_flatten(0, -1)?)?;
        let top = idx.iter().zip(vals).map(|(&c, v)| (c as usize, m.card.class_names[c as usize].clone(), v)).collect();
        preds.push(Prediction { input, top });
    }
    Ok(preds)
}
