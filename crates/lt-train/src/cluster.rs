//! Data-parallel runs: the processes of one training run and what they
//! share, over [`lt_glmc::dist`] (c10d).
//!
//! Under `torchrun --nproc-per-node N lt-train SHARDS ...` every process
//! runs the same loop with its own rank ([`Cluster::from_env`]):
//!
//! - `train.batch_size` stays the global batch. Each rank's loader makes its
//!   [`Shard`] of every step: with a global batch of `N·B`, slots
//!   `[r·B, (r+1)·B)` of both GLMC streams, augmented as one process would.
//!   λ and the CutMix box come from the same seeded generator on every rank.
//!   So the ranks' batches together are exactly the single-process batch,
//!   and a run resumes at another world size with the same batches.
//! - Rank 0 broadcasts its parameters and buffers at start. Gradients are
//!   averaged by c10d's Reducer in ~25 MiB buckets while backward runs
//!   ([`lt_glmc::dist::DataParallel`]); the loss values are averaged too,
//!   so every rank records the same epoch and stops on the same NaN.
//! - BatchNorm normalises with each rank's own batch statistics, as DDP does
//!   without SyncBatchNorm. The running statistics are rank 0's: they are
//!   broadcast before every evaluation, which gives what DDP's
//!   `broadcast_buffers` gives (rank 0's statistics only ever see rank 0's
//!   batches).
//! - Evaluation is sharded: each rank evaluates its part of the test split,
//!   and the per-class counts and ECE bins are summed across ranks, so the
//!   result is the single-process evaluation.
//! - Only rank 0 writes (run directory, metrics.jsonl, TensorBoard,
//!   checkpoints, report); the others wait at a barrier after each
//!   checkpoint. Every rank resumes from the same checkpoint.
//! - A rank that dies or hangs makes the others fail within the collective
//!   timeout (`--dist-timeout`) instead of hanging; torchrun's
//!   `--max-restarts` then restarts the group, which resumes.
//!
//! The last step of an epoch may be short. Its slots are split as evenly as
//! possible (runs differ by at most one per stream) and, as in DDP, the
//! gradient is the average of the ranks' mean gradients. When some rank
//! would get fewer than 2 images of a stream, that step is dropped
//! ([`drop_last`]), as one process drops a last batch of one image.

use std::rc::Rc;
use std::time::Duration;

use lt_glmc::dist::{Backend, DistEnv, GroupConfig, ProcessGroup};
use lt_glmc::metrics::{EvalAccumulator, ECE_BINS};
use lt_loader::sampler::Shard;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::recipe::Recipe;

/// The processes of a run: one (no process group), or a c10d group.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pg: Option<Rc<ProcessGroup>>,
}

impl Cluster {
    /// One process.
    pub fn single() -> Self {
        Cluster::default()
    }

    /// The group torchrun describes when its variables are set (WORLD_SIZE),
    /// else one process. `backend`: Gloo (the model on the CPU) or NCCL
    /// (the model on `cuda_device`, this rank's GPU; `None`:
    /// `cuda:LOCAL_RANK`). Joining
    /// waits for every rank, up to `timeout`, which also bounds every later
    /// collective. NCCL in a build without it, or with no GPU visible, is
    /// [`lt_glmc::GlmcError::DistUnavailable`].
    pub fn from_env(backend: Backend, cuda_device: Option<usize>, timeout: Duration) -> Result<Self> {
        if std::env::var_os("WORLD_SIZE").is_none() {
            return Ok(Cluster::single());
        }
        let env = DistEnv::from_env()?;
        let config = GroupConfig { cuda_device, ..env.config(backend, timeout) };
        Ok(Cluster::new(ProcessGroup::new(&env.store(), config)?))
    }

    pub fn new(pg: ProcessGroup) -> Self {
        Cluster { pg: Some(Rc::new(pg)) }
    }

    /// The process group, when there is more than this process.
    pub fn group(&self) -> Option<&Rc<ProcessGroup>> {
        self.pg.as_ref()
    }

    pub fn rank(&self) -> usize {
        self.pg.as_ref().map_or(0, |p| p.rank())
    }

    pub fn world_size(&self) -> usize {
        self.pg.as_ref().map_or(1, |p| p.world_size())
    }

    /// Rank 0, the one that writes.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's part of every step.
    pub fn shard(&self) -> Shard {
        Shard { rank: self.rank(), world: self.world_size() }
    }

    /// Waits for every rank (no-op alone).
    pub fn barrier(&self) -> Result<()> {
        match &self.pg {
            Some(p) => Ok(p.barrier()?),
            None => Ok(()),
        }
    }

    /// Sends rank 0's BatchNorm running statistics (every variable of `vs`
    /// that is not trained) to every rank (no-op alone).
    pub fn sync_buffers_from_root(&self, vs: &VarStore) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        let buffers: Vec<Tensor> = by_name(vs).into_values().filter(|t| !t.requires_grad()).collect();
        Ok(pg.broadcast_coalesced(&buffers, 0)?)
    }

    /// Sends rank 0's parameters and buffers to every rank (no-op alone).
    pub fn sync_variables_from_root(&self, vs: &VarStore) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        Ok(pg.broadcast_coalesced(&by_name(vs).into_values().collect::<Vec<_>>(), 0)?)
    }

    /// Checks that every rank runs the same `what` (its SHA-256 `digest`,
    /// e.g. of the recipe or the dataset): ranks given other flags or other
    /// shards would train different models in lock-step. The error names the
    /// ranks that differ from rank 0.
    pub fn check_same(&self, what: &str, digest: &[u8; 32]) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        let all = pg.all_gather(&Tensor::from_slice(digest.as_slice()))?;
        let rows = Vec::<u8>::try_from(all.flatten(0, -1)).map_err(lt_glmc::GlmcError::from)?;
        let differ: Vec<String> =
            rows.chunks_exact(32).enumerate().filter(|(_, d)| *d != &rows[..32]).map(|(r, _)| r.to_string()).collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(TrainError::Ranks(format!(
            "rank {} of {} {} a different {what} from rank 0's: every rank must run the same command on the same shards",
            differ.join(", "),
            self.world_size(),
            if differ.len() == 1 { "has" } else { "have" }
        )))
    }

    /// The recipe's checks that depend on the world size: the global batch
    /// must split into equal per-rank batches.
    pub fn check_recipe(&self, recipe: &Recipe) -> Result<()> {
        let (b, n) = (recipe.train.batch_size, self.world_size());
        if b % n != 0 {
            return Err(TrainError::recipe(
                "train.batch_size",
                format!("the global batch of {b} does not split into {n} equal per-rank batches (WORLD_SIZE={n}); use a multiple of {n}"),
            ));
        }
        Ok(())
    }

    /// Sums the evaluation counts of every rank into `acc` (in place on
    /// every rank): one all-reduce of the per-class counts and the ECE bins.
    /// Counts are exact (below 2^53); the bins' confidence sums are added
    /// in another order than one process adds them, so the ECE can differ
    /// from a single-process evaluation in the last bits.
    pub fn merge_eval(&self, acc: &mut EvalAccumulator) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        let c = acc.counts();
        let mut flat: Vec<f64> = Vec::with_capacity(3 * c.total.len() + 3 * ECE_BINS);
        for v in [&c.total, &c.correct1, &c.correct5] {
            flat.extend(v.iter().map(|&x| x as f64));
        }
        flat.extend(c.bin_count.iter().map(|&x| x as f64));
        flat.extend_from_slice(&c.bin_conf);
        flat.extend_from_slice(&c.bin_correct);
        let mut t = Tensor::from_slice(&flat).to_kind(Kind::Double);
        pg.all_reduce_sum(&mut t)?;
        let sum = Vec::<f64>::try_from(&t).map_err(lt_glmc::GlmcError::from)?;
        let mut merged = lt_glmc::metrics::EvalCounts::new(c.total.len());
        let k = c.total.len();
        let ints = |i: usize| sum[i * k..(i + 1) * k].iter().map(|&x| x as u64).collect::<Vec<u64>>();
        merged.total = ints(0);
        merged.correct1 = ints(1);
        merged.correct5 = ints(2);
        let bins = &sum[3 * k..];
        for b in 0..ECE_BINS {
            merged.bin_count[b] = bins[b] as u64;
            merged.bin_conf[b] = bins[ECE_BINS + b];
            merged.bin_correct[b] = bins[2 * ECE_BINS + b];
        }
        *acc = EvalAccumulator::from_counts(merged);
        Ok(())
    }
}

/// The variables of `vs` by name: every rank lists the same tensors in the
/// same order (a VarStore's own map has no order).
fn by_name(vs: &VarStore) -> std::collections::BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

/// Whether the training loader drops the last short step: as the recipe
/// says, and always when some rank would get fewer than 2 images of a
/// stream (BatchNorm needs two; alone this is a last batch of one image).
pub(crate) fn drop_last(recipe: &Recipe, rows: usize, world: usize) -> bool {
    let last = rows % recipe.train.batch_size;
    recipe.train.drop_last || (last != 0 && last < 2 * world)
}
