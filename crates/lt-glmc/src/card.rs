//! Model cards: what a reader needs to use a checkpoint's weights without
//! guessing, stored as the `__metadata__` (a map of strings) of
//! `model.safetensors`.
//!
//! | key | value |
//! |---|---|
//! | `format` | `lt-glmc-model/1` |
//! | `arch` | `resnet32`, `resnet50` or `resnext50_32x4d` |
//! | `width` | ResNet-32's base width (ResNet-32 only) |
//! | `num_classes`, `in_channels`, `proj_dim` | integers |
//! | `class_names` | JSON list of strings, by class id |
//! | `mean`, `std` | JSON lists, one per input channel, of the normalization `(x/255 − mean)/std` |
//! | `eval_head` | the head evaluation uses: `head` (g) or `head_cb` (g_cb) |
//! | `eval_pipeline` | JSON of the evaluation pipeline (`lt_vision::augment::Pipeline`) |
//! | `dataset`, `recipe`, `method` | the data's fingerprint, the recipe's name, the method |
//! | `lt_glmc_version` | the crate version that wrote it |
//!
//! Tensor names are the model's own (`encoder.*`, `head.*`, `head_cb.*`,
//! `proj.*`, `pred.*`); `tools/lt_glmc_torch.py` builds the same model in
//! PyTorch from the card and loads the weights with `strict=True`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{GlmcError, Result};
use crate::model::{Arch, ModelConfig};

/// The `format` value of this version.
pub const FORMAT: &str = "lt-glmc-model/1";

pub use lt_core::eval::Head;

/// A checkpoint's model card.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCard {
    /// Architecture, classes, input channels; `proj_dim` resolved.
    pub model: ModelConfig,
    pub class_names: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub eval_head: Head,
    /// The evaluation pipeline, as JSON (`lt_vision::augment::Pipeline`).
    pub eval_pipeline: serde_json::Value,
    pub dataset: String,
    pub recipe: String,
    pub method: String,
}

impl ModelCard {
    /// The card as safetensors metadata.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let (arch, width) = match self.model.arch {
            Arch::ResNet32 { width } => ("resnet32", Some(width)),
            Arch::ResNet50 => ("resnet50", None),
            Arch::ResNeXt50_32x4d => ("resnext50_32x4d", None),
        };
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("arch", arch.into());
        if let Some(w) = width {
            put("width", w.to_string());
        }
        put("num_classes", self.model.num_classes.to_string());
        put("in_channels", self.model.in_channels.to_string());
        put("proj_dim", self.model.proj_dim().to_string());
        put("class_names", json(&self.class_names));
        put("mean", json(&self.mean));
        put("std", json(&self.std));
        put("eval_head", self.eval_head.name().into());
        put("eval_pipeline", self.eval_pipeline.to_string());
        put("dataset", self.dataset.clone());
        put("recipe", self.recipe.clone());
        put("method", self.method.clone());
        put("lt_glmc_version", env!("CARGO_PKG_VERSION").into());
        m
    }

    /// Reads a card back from safetensors metadata, naming the key at fault.
    pub fn from_metadata(m: &BTreeMap<String, String>) -> Result<Self> {
        let get = |k: &'static str| m.get(k).ok_or_else(|| bad(k, "missing".into()));
        let format = get("format")?;
        if format != FORMAT {
            return Err(bad("format", format!("{format:?}, this version reads {FORMAT:?}")));
        }
        let int = |k: &'static str| -> Result<i64> { get(k)?.parse().map_err(|e| bad(k, format!("{e}"))) };
        let parse = |k: &'static str| -> Result<serde_json::Value> { serde_json::from_str(get(k)?).map_err(|e| bad(k, format!("{e}"))) };
        let arch = match get("arch")?.as_str() {
            "resnet32" => Arch::ResNet32 { width: int("width")? },
            "resnet50" => Arch::ResNet50,
            "resnext50_32x4d" => Arch::ResNeXt50_32x4d,
            other => return Err(bad("arch", format!("unknown architecture {other:?}"))),
        };
        let model = ModelConfig::new(arch, int("num_classes")?).with_in_channels(int("in_channels")?).with_proj_dim(int("proj_dim")?);
        let list = |k: &'static str| -> Result<Vec<f64>> { serde_json::from_value(parse(k)?).map_err(|e| bad(k, format!("{e}"))) };
        let class_names: Vec<String> = serde_json::from_value(parse("class_names")?).map_err(|e| bad("class_names", format!("{e}")))?;
        let eval_head = match get("eval_head")?.as_str() {
            "head" => Head::G,
            "head_cb" => Head::GCb,
            other => return Err(bad("eval_head", format!("{other:?} (expected head or head_cb)"))),
        };
        let card = ModelCard {
            model,
            class_names,
            mean: list("mean")?,
            std: list("std")?,
            eval_head,
            eval_pipeline: parse("eval_pipeline")?,
            dataset: m.get("dataset").cloned().unwrap_or_default(),
            recipe: m.get("recipe").cloned().unwrap_or_default(),
            method: m.get("method").cloned().unwrap_or_default(),
        };
        if card.class_names.len() as i64 != card.model.num_classes {
            return Err(bad("class_names", format!("{} names for {} classes", card.class_names.len(), card.model.num_classes)));
        }
        if card.mean.len() as i64 != card.model.in_channels || card.std.len() != card.mean.len() {
            return Err(bad(
                "mean",
                format!("{} means and {} stds for {} channels", card.mean.len(), card.std.len(), card.model.in_channels),
            ));
        }
        Ok(card)
    }
}

fn bad(key: &'static str, why: String) -> GlmcError {
    GlmcError::Setting { setting: "model card", why: format!("{key}: {why}") }
}

/// A list value as JSON (lists of strings and numbers always serialize).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> ModelCard {
        ModelCard {
            model: ModelConfig::new(Arch::ResNet32 { width: 16 }, 3).with_in_channels(1).with_proj_dim(128),
            class_names: vec!["T-shirt/top".into(), "Trouser".into(), "Pullover".into()],
            mean: vec![0.286],
            std: vec![0.353],
            eval_head: Head::GCb,
            eval_pipeline: serde_json::json!({ "kind": "eval", "resize": null, "crop": null }),
            dataset: "abc".into(),
            recipe: "demo".into(),
            method: "glmc".into(),
        }
    }

    #[test]
    fn cards_round_trip_through_metadata() {
        let c = card();
        let m = c.to_metadata();
        assert_eq!(m["arch"], "resnet32");
        assert_eq!(m["width"], "16");
        assert_eq!(m["eval_head"], "head_cb");
        assert_eq!(m["class_names"], r#"["T-shirt/top","Trouser","Pullover"]"#);
        assert_eq!(ModelCard::from_metadata(&m).unwrap(), c);
        let r50 =
            ModelCard { model: ModelConfig::new(Arch::ResNeXt50_32x4d, 3).with_proj_dim(256), mean: vec![0.5; 3], std: vec![0.2; 3], ..c };
        let m = r50.to_metadata();
        assert!(!m.contains_key("width"));
        assert_eq!(ModelCard::from_metadata(&m).unwrap(), r50);
    }

    #[test]
    fn bad_cards_name_the_key() {
        let m = card().to_metadata();
        for (k, v, want) in [
            ("format", "other/2", "format"),
            ("arch", "vgg", "unknown architecture"),
            ("num_classes", "x", "num_classes"),
            ("class_names", "[\"a\"]", "1 names for 3 classes"),
            ("mean", "[0.1, 0.2]", "2 means"),
            ("eval_head", "fc", "expected head or head_cb"),
        ] {
            let mut bad = m.clone();
            bad.insert(k.into(), v.into());
            let e = ModelCard::from_metadata(&bad).unwrap_err().to_string();
            assert!(e.contains(want), "{k}: {e}");
        }
        let mut missing = m.clone();
        missing.remove("width");
        assert!(ModelCard::from_metadata(&missing).unwrap_err().to_string().contains("width: missing"));
    }
}
