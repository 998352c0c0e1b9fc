//! Index samplers. Each epoch's index sequence is a pure function of
//! `(seed, stream, epoch)`, so any step of any epoch can be recomputed for a
//! resume without replaying earlier ones.

use crate::{LoaderError, Result};
use lt_core::rng::Rng;
use serde::{Deserialize, Serialize};

/// Stream keys for [`Rng::derive`] (kept fixed: changing one changes every
/// existing seed's batches).
pub const STREAM_INSTANCE: u64 = 0x1157;
pub const STREAM_WEIGHTED: u64 = 0x3e16;
pub const STREAM_AUGMENT: u64 = 0xa06e;
/// `loader.jpeg_draft`: one augmentation stream per view, keyed
/// `(epoch, step, slot, view)`, so each view's crop can be drawn before the
/// image is decoded.
pub const STREAM_AUGMENT_DRAFT: u64 = 0xa06f;

/// Which indices a step draws.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SamplerSpec {
    /// A seeded permutation per epoch (shuffle without replacement).
    Instance,
    /// With replacement, `P(i) ∝ n_{y_i}^(−q)`: q = 0 uniform, 0.5
    /// square-root, 1 class-balanced. One epoch draws `len` indices.
    ClassWeighted { q: f64 },
    /// `0, 1, …, len − 1` (evaluation).
    Sequential,
    /// GLMC: each step holds B instance-sampled slots followed by B
    /// class-weighted slots.
    Paired { q: f64 },
}

impl SamplerSpec {
    /// Samples per step for a batch size of `b`.
    pub fn slots(&self, b: usize) -> usize {
        match self {
            SamplerSpec::Paired { .. } => 2 * b,
            _ => b,
        }
    }
    /// Parses `instance`, `sequential`, `weighted:Q`, `paired:Q`.
    pub fn parse(s: &str) -> Result<SamplerSpec> {
        let q = |v: &str| v.parse::<f64>().map_err(|_| LoaderError::Config(format!("sampler {s:?}: q must be a number, got {v:?}")));
        match s.split_once(':') {
            None if s == "instance" => Ok(SamplerSpec::Instance),
            None if s == "sequential" => Ok(SamplerSpec::Sequential),
            Some(("weighted", v)) => Ok(SamplerSpec::ClassWeighted { q: q(v)? }),
            Some(("paired", v)) => Ok(SamplerSpec::Paired { q: q(v)? }),
            _ => Err(LoaderError::Config(format!("unknown sampler {s:?} (instance, sequential, weighted:Q, paired:Q)"))),
        }
    }
}

/// A seeded permutation of `0..n` for `epoch`.
pub fn instance_epoch(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    Rng::derive(seed, &[STREAM_INSTANCE, epoch]).shuffle(&mut v);
    v
}

/// Class-weighted sampling with replacement: a class is drawn with
/// probability `n_c^(1−q) / Σ_k n_k^(1−q)` (lt_core's formula), then an item
/// uniformly within it, which gives `P(i) ∝ n_{y_i}^(−q)`.
#[derive(Clone, Debug)]
pub struct ClassWeighted {
    cdf: Vec<f64>,
    members: Vec<Vec<usize>>,
}

impl ClassWeighted {
    pub fn try_new(labels: &[i64], q: f64) -> Result<Self> {
        if !q.is_finite() {
            return Err(LoaderError::Config(format!("sampler q must be finite, got {q}")));
        }
        let classes = labels.iter().copied().max().map(|m| m + 1).unwrap_or(0);
        if labels.iter().any(|&l| l < 0) || classes == 0 {
            return Err(LoaderError::Config("class-weighted sampling needs labels >= 0".into()));
        }
        let mut members = vec![Vec::new(); classes as usize];
        for (i, &l) in labels.iter().enumerate() {
            members[l as usize].push(i);
        }
        let counts: Vec<usize> = members.iter().map(Vec::len).collect();
        let probs = lt_core::weights::class_sampling_probs(&counts, q);
        let mut acc = 0.0;
        let cdf = probs
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        Ok(ClassWeighted { cdf, members })
    }

    /// One draw.
    pub fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64() * self.cdf.last().copied().unwrap_or(1.0);
        let mut c = self.cdf.partition_point(|&x| x <= u).min(self.cdf.len() - 1);
        // Never land on an empty class through floating-point ties.
        while self.members[c].is_empty() {
            c = if c == 0 { self.cdf.len() - 1 } else { c - 1 };
        }
        let m = &self.members[c];
        m[rng.below(m.len() as u64) as usize]
    }

    /// `n` draws for `epoch`.
    pub fn epoch(&self, seed: u64, epoch: u64, n: usize) -> Vec<usize> {
        let mut rng = Rng::derive(seed, &[STREAM_WEIGHTED, epoch]);
        (0..n).map(|_| self.draw(&mut rng)).collect()
    }
}

/// One rank's part of every step under data-parallel training: a step's
/// slots are split into `world` contiguous runs that differ in length by at
/// most one, and rank `rank` takes run `rank` (for a paired sampler, the same
/// run of both streams). With a global batch of `world · B` every rank takes
/// exactly B slots of each stream, `[rank·B, (rank+1)·B)`; the union over
/// the ranks is the single-process batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// The whole step (one process).
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };

    pub fn try_new(rank: usize, world: usize) -> Result<Shard> {
        if world == 0 || rank >= world {
            return Err(LoaderError::Config(format!("shard rank {rank} of world size {world}: the rank must be below the world size")));
        }
        Ok(Shard { rank, world })
    }

    /// This rank's run of `0..n`.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        (self.rank * n / self.world)..((self.rank + 1) * n / self.world)
    }

    /// The most slots of one stream a rank holds for a global batch of `b`.
    pub fn max_len(&self, b: usize) -> usize {
        b.div_ceil(self.world)
    }
}

/// The per-epoch plan: the indices of every step of one epoch.
#[derive(Clone, Debug)]
pub struct EpochPlan {
    /// First stream (instance / weighted / sequential).
    pub primary: Vec<usize>,
    /// Second stream of a paired sampler.
    pub secondary: Option<Vec<usize>>,
    pub batch_size: usize,
    pub steps: usize,
}

impl EpochPlan {
    /// Indices of `step`, slot order (paired: B primary then B secondary).
    pub fn step_indices(&self, step: usize) -> Vec<usize> {
        let b = self.batch_size;
        let lo = step * b;
        let hi = ((step + 1) * b).min(self.primary.len());
        let mut v = self.primary[lo..hi].to_vec();
        if let Some(s) = &self.secondary {
            v.extend_from_slice(&s[lo..hi]);
        }
        v
    }

    /// `shard`'s part of `step` as (slot in the whole step, index) pairs, in
    /// the rank's slot order: its run of the primary stream, then the same
    /// run of the secondary stream (whose whole-step slots follow the whole
    /// primary part). The whole-step slot keys each image's augmentation, so
    /// a rank's images are those one process would make.
    pub fn shard_slots(&self, step: usize, shard: Shard) -> Vec<(usize, usize)> {
        let b = self.batch_size;
        let lo = step * b;
        let n = ((step + 1) * b).min(self.primary.len()) - lo;
        let r = shard.range(n);
        let mut v: Vec<(usize, usize)> = r.clone().map(|j| (j, self.primary[lo + j])).collect();
        if let Some(s) = &self.secondary {
            v.extend(r.map(|j| (n + j, s[lo + j])));
        }
        v
    }
}

/// Builds epoch plans for one sampler over fixed labels.
#[derive(Clone, Debug)]
pub struct Sampler {
    spec: SamplerSpec,
    n: usize,
    seed: u64,
    batch_size: usize,
    drop_last: bool,
    weighted: Option<ClassWeighted>,
}

impl Sampler {
    pub fn try_new(spec: SamplerSpec, labels: &[i64], seed: u64, batch_size: usize, drop_last: bool) -> Result<Self> {
        if batch_size == 0 {
            return Err(LoaderError::Config("batch size must be > 0".into()));
        }
        let weighted = match spec {
            SamplerSpec::ClassWeighted { q } | SamplerSpec::Paired { q } => Some(ClassWeighted::try_new(labels, q)?),
            _ => None,
        };
        Ok(Sampler { spec, n: labels.len(), seed, batch_size, drop_last, weighted })
    }

    pub fn spec(&self) -> SamplerSpec {
        self.spec
    }

    /// Steps in one epoch.
    pub fn steps_per_epoch(&self) -> usize {
        if self.drop_last {
            self.n / self.batch_size
        } else {
            self.n.div_ceil(self.batch_size)
        }
    }

    pub fn epoch(&self, epoch: u64) -> EpochPlan {
        let (primary, secondary) = match self.spec {
            SamplerSpec::Instance => (instance_epoch(self.seed, epoch, self.n), None),
            SamplerSpec::Sequential => ((0..self.n).collect(), None),
            SamplerSpec::ClassWeighted { .. } => (self.weighted.as_ref().expect("weighted").epoch(self.seed, epoch, self.n), None),
            SamplerSpec::Paired { .. } => {
                (instance_epoch(self.seed, epoch, self.n), Some(self.weighted.as_ref().expect("weighted").epoch(self.seed, epoch, self.n)))
            }
        };
        EpochPlan { primary, secondary, batch_size: self.batch_size, steps: self.steps_per_epoch() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lt_core::rng::Rng;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, prop_assume, proptest};

    fn long_tail_labels(counts: &[usize]) -> Vec<i64> {
        let mut v = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            v.extend(std::iter::repeat_n(c as i64, n));
        }
        // Interleave so class order is not row order.
        Rng::new(11).shuffle(&mut v);
        v
    }

    #[test]
    fn weighted_class_frequencies_match_n_pow_1_minus_q() {
        let counts = [500usize, 158, 50, 16, 5];
        let labels = long_tail_labels(&counts);
        for q in [0.0, 0.5, 1.0] {
            let s = ClassWeighted::try_new(&labels, q).unwrap();
            let draws = 200_000;
            let mut rng = Rng::new(7);
            let mut hist = vec![0usize; counts.len()];
            for _ in 0..draws {
                hist[labels[s.draw(&mut rng)] as usize] += 1;
            }
            let want = lt_core::weights::class_sampling_probs(&counts, q);
            for (c, (&h, &p)) in hist.iter().zip(&want).enumerate() {
                let f = h as f64 / draws as f64;
                // 5 standard errors of a binomial proportion.
                let tol = 5.0 * (p * (1.0 - p) / draws as f64).sqrt();
                assert!((f - p).abs() < tol, "q={q} class {c}: {f} vs {p} (tol {tol})");
            }
        }
    }

    #[test]
    fn weighted_items_within_a_class_are_uniform() {
        let labels = long_tail_labels(&[40, 4]);
        let s = ClassWeighted::try_new(&labels, 1.0).unwrap();
        let mut rng = Rng::new(1);
        let mut hits = vec![0usize; labels.len()];
        for _ in 0..88_000 {
            hits[s.draw(&mut rng)] += 1;
        }
        // q = 1: each class half the mass; tail items 1/8 each, head 1/80.
        for (i, &h) in hits.iter().enumerate() {
            let p: f64 = if labels[i] == 1 { 1.0 / 8.0 } else { 1.0 / 80.0 };
            let tol = 5.0 * (p * (1.0 - p) / 88_000.0).sqrt();
            assert!((h as f64 / 88_000.0 - p).abs() < tol, "item {i}");
        }
    }

    #[test]
    fn paired_plan_has_both_streams() {
        let labels = long_tail_labels(&[30, 10, 2]);
        let s = Sampler::try_new(SamplerSpec::Paired { q: 1.0 }, &labels, 3, 8, true).unwrap();
        let plan = s.epoch(0);
        assert_eq!(plan.steps, 5);
        let idx = plan.step_indices(2);
        assert_eq!(idx.len(), 16);
        assert_eq!(&idx[..8], &plan.primary[16..24]);
        assert_eq!(&idx[8..], &plan.secondary.as_ref().unwrap()[16..24]);
        // Different epochs, different orders; same epoch, same order.
        assert_ne!(s.epoch(1).primary, plan.primary);
        assert_eq!(s.epoch(0).primary, plan.primary);
        assert_eq!(SamplerSpec::parse("paired:0.5").unwrap(), SamplerSpec::Paired { q: 0.5 });
        assert!(SamplerSpec::parse("paired:x").is_err());
    }

    #[test]
    fn shards_split_each_stream_into_contiguous_runs() {
        let labels = long_tail_labels(&[30, 10, 2]);
        let s = Sampler::try_new(SamplerSpec::Paired { q: 1.0 }, &labels, 3, 8, false).unwrap();
        let plan = s.epoch(1);
        // A full step of 8 per stream over 2 ranks: slots [0, 4) and [4, 8)
        // of each stream; secondary slots follow the whole primary part.
        let r0 = plan.shard_slots(0, Shard::try_new(0, 2).unwrap());
        let r1 = plan.shard_slots(0, Shard::try_new(1, 2).unwrap());
        assert_eq!(r0.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 2, 3, 8, 9, 10, 11]);
        assert_eq!(r1.iter().map(|p| p.0).collect::<Vec<_>>(), [4, 5, 6, 7, 12, 13, 14, 15]);
        let whole = plan.step_indices(0);
        for (slot, idx) in r0.iter().chain(&r1) {
            assert_eq!(whole[*slot], *idx);
        }
        // The last step holds 42 - 5·8 = 2 per stream: over 3 ranks, runs of 0, 1, 1.
        let last: Vec<_> = (0..3).map(|r| plan.shard_slots(5, Shard::try_new(r, 3).unwrap())).collect();
        assert_eq!(last.iter().map(Vec::len).collect::<Vec<_>>(), [0, 2, 2]);
        assert_eq!(last[2].iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(plan.shard_slots(2, Shard::WHOLE).iter().map(|p| p.1).collect::<Vec<_>>(), plan.step_indices(2));
        assert!(Shard::try_new(2, 2).is_err() && Shard::try_new(0, 0).is_err());
    }

    proptest! {
        #[test]
        fn shards_partition_every_step(n in 1usize..300, b in 1usize..40, world in 1usize..6, paired in any::<bool>(), seed in any::<u64>()) {
            let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
            let spec = if paired { SamplerSpec::Paired { q: 0.5 } } else { SamplerSpec::Instance };
            let s = Sampler::try_new(spec, &labels, seed, b, false).unwrap();
            let plan = s.epoch(0);
            for step in 0..plan.steps {
                let whole = plan.step_indices(step);
                let mut got: Vec<(usize, usize)> = (0..world).flat_map(|r| plan.shard_slots(step, Shard { rank: r, world })).collect();
                let lens: Vec<usize> = (0..world).map(|r| plan.shard_slots(step, Shard { rank: r, world }).len()).collect();
                let spread = lens.iter().max().unwrap() - lens.iter().min().unwrap();
                let limit = if paired { 2 } else { 1 };
                prop_assert!(spread <= limit);
                got.sort_unstable();
                prop_assert_eq!(got, whole.iter().copied().enumerate().collect::<Vec<_>>());
            }
        }

        #[test]
        fn instance_visits_every_index_once(n in 0usize..2000, seed in any::<u64>(), epoch in 0u64..100) {
            let mut v = instance_epoch(seed, epoch, n);
            v.sort_unstable();
            prop_assert_eq!(v, (0..n).collect::<Vec<_>>());
        }

        #[test]
        fn steps_cover_the_epoch(n in 1usize..500, b in 1usize..64, drop_last in any::<bool>(), seed in any::<u64>()) {
            let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
            let s = Sampler::try_new(SamplerSpec::Instance, &labels, seed, b, drop_last).unwrap();
            let plan = s.epoch(0);
            let mut seen: Vec<usize> = (0..plan.steps).flat_map(|t| plan.step_indices(t)).collect();
            prop_assert!(seen.iter().all(|&i| i < n));
            let len = seen.len();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), len);
            if drop_last { prop_assert_eq!(len, n / b * b) } else { prop_assert_eq!(len, n) }
        }

        #[test]
        fn weighted_draws_only_valid_nonempty_classes(counts in proptest::collection::vec(0usize..20, 1..8), q in 0.0f64..1.5, seed in any::<u64>()) {
            let labels = long_tail_labels(&counts);
            prop_assume!(!labels.is_empty());
            let s = ClassWeighted::try_new(&labels, q).unwrap();
            for i in s.epoch(seed, 0, 200) {
                prop_assert!(i < labels.len());
            }
        }
    }
}
