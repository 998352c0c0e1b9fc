//! The `[build]` section of a recipe (`pipelines/*.toml`): the build
//! settings of a benchmark, so `lt-build --recipe pipelines/cifar10-lt-if100.toml
//! DATA` regenerates the split the recipe was tuned on. Its fields are the
//! defaults of the matching flags, so a flag given on the command line
//! overrides them; other sections of the file belong to the loader and the
//! trainer and are ignored here.

use crate::{BuildError, ClassOrder, Result};
use lt_core::profile::Selection;
use serde::Deserialize;
use std::path::Path;

/// A long-tail profile by name (`profile` here, `--profile` on the command
/// line); its parameters come from the other fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileName {
    #[serde(alias = "exp")]
    Exponential,
    Step,
    Counts,
    #[serde(alias = "asis")]
    AsIs,
}

/// Typed `[build]` section. Unknown fields and values are an error naming
/// the file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRecipe {
    /// Source kind (`cifar10`, `idx`, `list`, …).
    pub source: Option<String>,
    /// `exponential`, `step`, `counts` or `as-is`.
    pub profile: Option<ProfileName>,
    /// The imbalance factor (`--if`).
    pub imbalance: Option<f64>,
    pub max_per_class: Option<usize>,
    pub step_mu: Option<f64>,
    pub counts_file: Option<String>,
    /// `glmc` or `ldam`.
    pub selection: Option<Selection>,
    /// `source` or `shuffle`.
    pub class_order: Option<ClassOrder>,
    pub seed: Option<u64>,
    pub max_side: Option<u32>,
    pub quality: Option<u8>,
}

impl BuildRecipe {
    /// Reads the `[build]` table of a recipe file (absent → all defaults).
    pub fn load(path: &Path) -> Result<BuildRecipe> {
        let text = std::fs::read_to_string(path).map_err(|e| BuildError::Io { path: path.into(), error: e })?;
        let doc: toml::Table =
            toml::from_str(&text).map_err(|e| BuildError::Source { path: path.into(), msg: format!("not a valid TOML recipe: {e}") })?;
        match doc.get("build") {
            None => Ok(BuildRecipe::default()),
            Some(v) => v.clone().try_into().map_err(|e| BuildError::Source { path: path.into(), msg: format!("[build]: {e}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pipeline_recipe_has_a_valid_build_section() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let r = BuildRecipe::load(&p).unwrap_or_else(|e| panic!("{e}"));
                assert!(r.source.is_some(), "{} has no build.source", p.display());
                n += 1;
            }
        }
        assert!(n >= 9, "expected the benchmark recipes in pipelines/ (the README's table), found {n}");
        let r = BuildRecipe::load(&dir.join("cifar100-lt-if100.toml")).unwrap();
        assert_eq!((r.source.as_deref(), r.imbalance), (Some("cifar100"), Some(100.0)));
    }

    #[test]
    fn unknown_fields_are_refused_with_the_file_named() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("r.toml");
        std::fs::write(&p, "[build]\nsource = \"idx\"\nimbalanse = 10\n[model]\narch = \"x\"\n").unwrap();
        let e = BuildRecipe::load(&p).unwrap_err().to_string();
        assert!(e.contains("r.toml") && e.contains("imbalanse"), "{e}");
        std::fs::write(&p, "[build]\nsource = \"idx\"\nselection = \"random\"\n").unwrap();
        let e = BuildRecipe::load(&p).unwrap_err().to_string();
        assert!(e.contains("r.toml") && e.contains("random"), "{e}");
    }
}
