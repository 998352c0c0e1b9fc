//! # lt-core
//!
//! The long-tail bookkeeping shared by every lt-glmc stage. It has no I/O and
//! no heavy dependencies, so each stage (builder, loader, trainer) agrees on
//! the same numbers:
//!
//! - [`profile`]: imbalance profiles (`n_c = floor(n_max · IF^(−c/(C−1)))`,
//!   step, explicit counts, as-is) and the seeded per-class selection methods
//!   (`glmc`, `ldam`).
//! - [`groups`]: many / medium / few class groups (> 100, 21–100, ≤ 20 training
//!   images by default).
//! - [`weights`]: GLMC's class weights `v_c = n_c^(−p) / Σ_k n_k^(−p) · C`,
//!   class-weighted sampling probabilities `P(i) ∝ n_{y_i}^(−q)` and the
//!   cumulative schedule `α = 1 − (e/E)²`.
//! - [`eval`]: top-1/5, per-class, many / medium / few accuracy and ECE from
//!   counts that add up across batches and processes.
//! - [`rng`]: a small, version-stable, seeded RNG (SplitMix64 key derivation
//!   feeding Xoshiro256++) so that every random decision is a pure function of
//!   `(seed, stream, keys…)`.
//!
//! GLMC: Du et al., "Global and Local Mixture Consistency Cumulative Learning
//! for Long-tailed Visual Recognitions", CVPR 2023 (arXiv:2305.08661).
//!
//! ```
//! use lt_core::profile::{Profile, exponential_counts};
//! let counts = exponential_counts(10, 5000, 100.0).unwrap();
//! assert_eq!(counts, vec![5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]);
//! let p = Profile::Exponential { imbalance: 100.0 };
//! assert_eq!(p.counts(&[5000; 10], None).unwrap().iter().sum::<usize>(), 12_406);
//! ```

pub mod eval;
pub mod groups;
pub mod profile;
pub mod rng;
pub mod weights;

/// Errors of the long-tail bookkeeping. Each names the value at fault, and a
/// setting by its config name (the build option or recipe `[build]` key:
/// `imbalance`, `max_per_class`, `step_mu`, `selection`, `clamp`); front
/// ends map those names to their own flags through [`CoreError::settings`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error("imbalance: the imbalance factor must be a finite number >= 1, got {0}")]
    ImbalanceBelowOne(f64),
    #[error("the dataset has no classes")]
    NoClasses,
    #[error("class {class} ({name}) has {available} images but the profile asks for {wanted}; set clamp to keep all {available} and record it, or lower max_per_class/imbalance")]
    TooFewImages { class: usize, name: String, available: usize, wanted: usize },
    #[error("counts file lists {got} classes but the dataset has {expected}")]
    CountsLength { expected: usize, got: usize },
    /// A setting out of range; `settings` are the config names the message
    /// names, in its order.
    #[error("{msg}")]
    Setting { settings: &'static [&'static str], msg: String },
    #[error("{0}")]
    Invalid(String),
    /// Two per-class tables that must cover the same classes do not.
    #[error("{what}: {got} classes where {expected} were expected")]
    ClassMismatch { what: &'static str, expected: usize, got: usize },
}

impl CoreError {
    /// The settings the message names, by config name, in its order (empty
    /// when it names none).
    pub fn settings(&self) -> &'static [&'static str] {
        match self {
            CoreError::ImbalanceBelowOne(_) => &["imbalance"],
            CoreError::TooFewImages { .. } => &["clamp", "max_per_class", "imbalance"],
            CoreError::Setting { settings, .. } => settings,
            _ => &[],
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
