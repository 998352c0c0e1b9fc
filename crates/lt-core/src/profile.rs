//! Imbalance profiles and per-class selection.
//!
//! The exponential profile is the one of the paper and of the reference code
//! (`img_max * (imb_factor ** (cls_idx / (cls_num - 1.0)))`, truncated to an
//! integer), computed in `f64` exactly as Python does so that the counts match
//! the published splits to the image.

use crate::rng::Rng;
use crate::{CoreError, Result};
use serde::{Deserialize, Serialize};

/// How many training images each class keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Profile {
    /// `n_c = floor(n_max · IF^(−c/(C−1)))`.
    Exponential { imbalance: f64 },
    /// The first `⌈C·(1−mu)⌉`… classes keep `n_max`, the rest `n_max / IF`
    /// (LDAM's step profile with `mu = 0.5`).
    Step { imbalance: f64, mu: f64 },
    /// Explicit per-class counts, in class-id order.
    Counts { counts: Vec<usize> },
    /// Keep the source's own distribution (ImageNet-LT and iNaturalist lists).
    AsIs,
}

fn check_if(imbalance: f64) -> Result<()> {
    if !imbalance.is_finite() || imbalance < 1.0 {
        return Err(CoreError::ImbalanceBelowOne(imbalance));
    }
    Ok(())
}

/// The exponential profile for `classes` classes with head count `n_max`.
pub fn exponential_counts(classes: usize, n_max: usize, imbalance: f64) -> Result<Vec<usize>> {
    check_if(imbalance)?;
    if classes == 0 {
        return Err(CoreError::NoClasses);
    }
    if classes == 1 {
        return Ok(vec![n_max]);
    }
    let factor = 1.0 / imbalance;
    Ok((0..classes)
        .map(|c| {
            let e = c as f64 / (classes as f64 - 1.0);
            (n_max as f64 * factor.powf(e)) as usize
        })
        .collect())
}

/// LDAM's step profile: `classes − ⌊mu·classes⌋` head classes keep `n_max`,
/// the remaining `⌊mu·classes⌋` keep `⌊n_max / IF⌋`.
pub fn step_counts(classes: usize, n_max: usize, imbalance: f64, mu: f64) -> Result<Vec<usize>> {
    check_if(imbalance)?;
    if classes == 0 {
        return Err(CoreError::NoClasses);
    }
    if !(0.0..=1.0).contains(&mu) {
        return Err(CoreError::Setting { settings: &["step_mu"], msg: format!("step_mu must be in [0, 1], got {mu}") });
    }
    let tail = (classes as f64 * mu) as usize;
    let head = classes - tail;
    let low = (n_max as f64 / imbalance) as usize;
    Ok((0..classes).map(|c| if c < head { n_max } else { low }).collect())
}

impl Profile {
    /// Per-class target counts for a source whose classes hold `available`
    /// images each. `n_max` defaults to the largest available class (or to
    /// `--max-per-class` when given). `order` is the class order along the
    /// profile: `order[r]` is the class that gets the r-th largest count.
    /// Targets are not yet checked against `available` (see [`clamp_or_fail`]).
    pub fn counts(&self, available: &[usize], n_max: Option<usize>) -> Result<Vec<usize>> {
        self.counts_ordered(available, n_max, None)
    }

    /// Like [`Profile::counts`] with an explicit class order.
    pub fn counts_ordered(&self, available: &[usize], n_max: Option<usize>, order: Option<&[usize]>) -> Result<Vec<usize>> {
        let c = available.len();
        if c == 0 {
            return Err(CoreError::NoClasses);
        }
        let n_max = n_max.unwrap_or_else(|| available.iter().copied().max().unwrap_or(0));
        let ranked = match self {
            Profile::Exponential { imbalance } => exponential_counts(c, n_max, *imbalance)?,
            Profile::Step { imbalance, mu } => step_counts(c, n_max, *imbalance, *mu)?,
            Profile::Counts { counts } => {
                if counts.len() != c {
                    return Err(CoreError::CountsLength { expected: c, got: counts.len() });
                }
                return Ok(counts.clone());
            }
            Profile::AsIs => {
                return Ok(available.iter().map(|&a| a.min(n_max)).collect());
            }
        };
        let mut out = vec![0; c];
        match order {
            Some(order) => {
                for (rank, &class) in order.iter().enumerate() {
                    out[class] = ranked[rank];
                }
            }
            None => out = ranked,
        }
        Ok(out)
    }
}

/// A seeded permutation of the class order along the profile
/// (`--class-order shuffle`).
pub fn shuffled_class_order(classes: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..classes).collect();
    Rng::derive(seed, &[0xC1A55]).shuffle(&mut order);
    order
}

/// A class whose target was lowered to what the source has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clamped {
    pub class: usize,
    pub wanted: usize,
    pub kept: usize,
}

/// Checks targets against availability. Without `clamp`, a class short of
/// images is an error naming it; with `clamp`, its target is lowered and the
/// change recorded.
pub fn clamp_or_fail(targets: &mut [usize], available: &[usize], names: &[String], clamp: bool) -> Result<Vec<Clamped>> {
    let mut clamped = Vec::new();
    for (c, (t, &a)) in targets.iter_mut().zip(available).enumerate() {
        if *t > a {
            if !clamp {
                return Err(CoreError::TooFewImages {
                    class: c,
                    name: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                    available: a,
                    wanted: *t,
                });
            }
            clamped.push(Clamped { class: c, wanted: *t, kept: a });
            *t = a;
        }
    }
    Ok(clamped)
}

/// How the images of one class are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// GLMC's reference code: a seeded choice without replacement, one
    /// generator for the whole dataset, classes in id order.
    #[default]
    Glmc,
    /// LDAM's reference code: a seeded per-class shuffle, keep the first n.
    Ldam,
}

impl std::str::FromStr for Selection {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "glmc" => Ok(Selection::Glmc),
            "ldam" => Ok(Selection::Ldam),
            other => Err(CoreError::Setting {
                settings: &["selection"],
                msg: format!("selection: unknown method {other:?} (expected glmc or ldam)"),
            }),
        }
    }
}

/// Picks `targets[c]` items of each class from `labels` (one label per
/// source item). Returns the chosen source indices, sorted ascending, so the
/// result depends only on the seed and not on iteration order.
pub fn select(labels: &[u32], targets: &[usize], method: Selection, seed: u64) -> Result<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        if l >= targets.len() {
            return Err(CoreError::Invalid(format!("item {i} has label {l} but there are only {} classes", targets.len())));
        }
        by_class[l].push(i);
    }
    let mut chosen = Vec::with_capacity(targets.iter().sum());
    match method {
        Selection::Glmc => {
            let mut rng = Rng::derive(seed, &[0x5E1EC7, 0]);
            for (c, items) in by_class.iter().enumerate() {
                let k = targets[c].min(items.len());
                for j in rng.choose_without_replacement(items.len(), k) {
                    chosen.push(items[j]);
                }
            }
        }
        Selection::Ldam => {
            for (c, items) in by_class.iter().enumerate() {
                let mut rng = Rng::derive(seed, &[0x5E1EC7, 1, c as u64]);
                let mut shuffled = items.clone();
                rng.shuffle(&mut shuffled);
                chosen.extend_from_slice(&shuffled[..targets[c].min(items.len())]);
            }
        }
    }
    chosen.sort_unstable();
    Ok(chosen)
}

/// Per-class histogram of `labels` over `classes` classes.
///
/// Panics on a label `>= classes`: for labels read from files use
/// [`checked_histogram`] (or `lt_shards::ShardSet::check_labels`, which
/// names the shard and row).
pub fn histogram(labels: impl IntoIterator<Item = u32>, classes: usize) -> Vec<usize> {
    let mut h = vec![0; classes];
    for l in labels {
        h[l as usize] += 1;
    }
    h
}

/// Per-class histogram of `labels` over `classes` classes; a label outside
/// `0..classes` is an error naming its position in `labels`.
pub fn checked_histogram(labels: impl IntoIterator<Item = i64>, classes: usize) -> Result<Vec<usize>> {
    let mut h = vec![0; classes];
    for (i, l) in labels.into_iter().enumerate() {
        match usize::try_from(l).ok().and_then(|c| h.get_mut(c)) {
            Some(n) => *n += 1,
            None => {
                return Err(CoreError::Invalid(format!("item {i} has label {l}, outside 0..{classes} (the dataset has {classes} classes)")))
            }
        }
    }
    Ok(h)
}

/// The imbalance factor `n_max / n_min` of a histogram (∞ when a class is empty).
pub fn imbalance_factor(counts: &[usize]) -> f64 {
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let min = counts.iter().copied().min().unwrap_or(0) as f64;
    if min == 0.0 {
        f64::INFINITY
    } else {
        max / min
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cifar10_if100_counts() {
        let c = exponential_counts(10, 5000, 100.0).unwrap();
        assert_eq!(c, vec![5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]);
        assert_eq!(c.iter().sum::<usize>(), 12_406);
    }

    #[test]
    fn cifar100_if100_total() {
        let c = exponential_counts(100, 500, 100.0).unwrap();
        assert_eq!(c.iter().sum::<usize>(), 10_847);
        assert_eq!((c[0], c[99]), (500, 5));
    }

    #[test]
    fn cifar_if50_if10_totals() {
        // Totals of the published CIFAR-LT splits.
        assert_eq!(exponential_counts(10, 5000, 50.0).unwrap().iter().sum::<usize>(), 13_996);
        assert_eq!(exponential_counts(10, 5000, 10.0).unwrap().iter().sum::<usize>(), 20_431);
        assert_eq!(exponential_counts(100, 500, 10.0).unwrap().iter().sum::<usize>(), 19_573);
    }

    #[test]
    fn fashion_mnist_if100_counts() {
        let c = exponential_counts(10, 6000, 100.0).unwrap();
        assert_eq!(c, vec![6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]);
    }

    #[test]
    fn imbalance_below_one_is_rejected() {
        let e = exponential_counts(10, 100, 0.5).unwrap_err();
        assert!(e.to_string().starts_with("imbalance: "), "{e}");
        assert_eq!(e.settings(), ["imbalance"]);
        assert!(exponential_counts(10, 100, f64::NAN).is_err());
        assert!(step_counts(10, 100, 0.99, 0.5).is_err());
    }

    #[test]
    fn setting_errors_name_the_setting_by_its_config_name() {
        let e = step_counts(10, 100, 2.0, 1.5).unwrap_err();
        assert_eq!((e.to_string().as_str(), e.settings()), ("step_mu must be in [0, 1], got 1.5", &["step_mu"][..]));
        let e = "random".parse::<Selection>().unwrap_err();
        assert!(e.to_string().starts_with("selection: unknown method \"random\""), "{e}");
        assert_eq!(e.settings(), ["selection"]);
    }

    #[test]
    fn step_profile() {
        assert_eq!(step_counts(4, 100, 10.0, 0.5).unwrap(), vec![100, 100, 10, 10]);
    }

    #[test]
    fn class_order_permutes_targets() {
        let p = Profile::Exponential { imbalance: 10.0 };
        let order = vec![2, 0, 1];
        let t = p.counts_ordered(&[100, 100, 100], None, Some(&order)).unwrap();
        assert_eq!(t, vec![31, 10, 100]);
    }

    #[test]
    fn clamp_records_or_fails() {
        let names: Vec<String> = vec!["a".into(), "b".into()];
        let mut t = vec![10, 10];
        let e = clamp_or_fail(&mut t, &[10, 4], &names, false).unwrap_err();
        assert!(e.to_string().contains("class 1 (b) has 4 images"), "{e}");
        let rec = clamp_or_fail(&mut t, &[10, 4], &names, true).unwrap();
        assert_eq!(t, vec![10, 4]);
        assert_eq!(rec, vec![Clamped { class: 1, wanted: 10, kept: 4 }]);
    }

    #[test]
    fn selection_methods_differ_but_are_seeded() {
        let labels: Vec<u32> = (0..1000).map(|i| (i % 4) as u32).collect();
        let t = vec![100, 50, 20, 5];
        for m in [Selection::Glmc, Selection::Ldam] {
            let a = select(&labels, &t, m, 1).unwrap();
            assert_eq!(a, select(&labels, &t, m, 1).unwrap());
            assert_ne!(a, select(&labels, &t, m, 2).unwrap());
            let h = histogram(a.iter().map(|&i| labels[i]), 4);
            assert_eq!(h, t);
        }
        assert_ne!(select(&labels, &t, Selection::Glmc, 1).unwrap(), select(&labels, &t, Selection::Ldam, 1).unwrap());
    }

    #[test]
    fn checked_histogram_names_the_bad_label() {
        assert_eq!(checked_histogram([0i64, 2, 2], 3).unwrap(), vec![1, 0, 2]);
        for bad in [3i64, -1, i64::MAX] {
            let e = checked_histogram([0, 1, bad, 0], 3).unwrap_err().to_string();
            assert!(e.contains(&format!("item 2 has label {bad}, outside 0..3")), "{e}");
        }
    }

    proptest! {
        #[test]
        fn exponential_is_monotone_and_bounded(c in 2usize..200, n in 1usize..10_000, f in 1.0f64..1000.0) {
            let counts = exponential_counts(c, n, f).unwrap();
            prop_assert_eq!(counts[0], n);
            for w in counts.windows(2) { prop_assert!(w[0] >= w[1]); }
            let tail = counts[c - 1] as f64;
            // floor(n / IF), up to float rounding of the power.
            prop_assert!((tail - (n as f64 / f).floor()).abs() <= 1.0);
        }

        #[test]
        fn selection_is_a_subset_with_exact_counts(seed in 0u64..1000, k in 1usize..6) {
            let labels: Vec<u32> = (0..300).map(|i| (i % k) as u32).collect();
            let avail = histogram(labels.iter().copied(), k);
            let t: Vec<usize> = avail.iter().enumerate().map(|(c, &a)| a / (c + 1)).collect();
            let sel = select(&labels, &t, Selection::Glmc, seed).unwrap();
            let mut d = sel.clone(); d.dedup();
            prop_assert_eq!(d.len(), sel.len());
            prop_assert_eq!(histogram(sel.iter().map(|&i| labels[i]), k), t);
        }
    }
}
