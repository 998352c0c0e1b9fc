//! The `loader` benchmark's command-line flags, shared by `lt-loader-bench`
//! and `lt-bench` (both in this crate; lt-bench includes this file with `#[path]`):
//! clap stays in the binaries, and the library takes the plain
//! [`LoaderBenchOptions`]. Self-contained: it uses only clap, anyhow and the
//! public API of lt-loader and lt-shards.

use anyhow::Context;
use lt_loader::bench::{parse_pipeline, LoaderBenchOptions};
use lt_loader::sampler::SamplerSpec;
use lt_loader::source::ShardSourceOptions;
use lt_vision::photometric::Photometric;
use std::path::PathBuf;

/// The `loader` benchmark's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct LoaderBenchArgs {
    /// Shard directory made by lt-build.
    #[arg(long)]
    pub shards: PathBuf,
    /// cifar | imagenet | randaugment | eval | eval-identity, or a JSON
    /// pipeline object (`{"kind":"imagenet","size":192}`).
    #[arg(long, default_value = "cifar")]
    pub pipeline: String,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2)]
    pub views: usize,
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// instance | sequential | weighted:Q | paired:Q
    #[arg(long, default_value = "instance")]
    pub sampler: String,
    #[arg(long, default_value_t = 4)]
    pub pool_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the encoded dataset resident when it is at most this many MiB.
    #[arg(long, default_value_t = 8192)]
    pub memory_budget_mib: u64,
    /// Use the test split.
    #[arg(long)]
    pub test_split: bool,
    /// Skip the SHA-256 check of the shards.
    #[arg(long)]
    pub no_verify: bool,
    /// Append the JSON report to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the photometric stage runs: cpu (on the workers) or device
    /// (recorded in the batch; the loader-only measurement then leaves it
    /// undone).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "device"])]
    pub photometric: String,
    /// Decode JPEGs at reduced DCT scale where the crops allow
    /// (`loader.jpeg_draft`).
    #[arg(long)]
    pub jpeg_draft: bool,
}

impl LoaderBenchArgs {
    /// The library's options; a value that does not parse names its flag.
    pub fn options(&self) -> anyhow::Result<LoaderBenchOptions> {
        Ok(LoaderBenchOptions {
            shards: self.shards.clone(),
            split: if self.test_split { lt_shards::Split::Test } else { lt_shards::Split::Train },
            pipeline: parse_pipeline(&self.pipeline).context("--pipeline")?,
            pipeline_name: self.pipeline.clone(),
            threads: self.threads,
            batch_size: self.batch_size,
            views: self.views,
            steps: self.steps,
            warmup: self.warmup,
            seed: self.seed,
            sampler: SamplerSpec::parse(&self.sampler).context("--sampler")?,
            pool_size: self.pool_size,
            source: ShardSourceOptions::default().with_memory_budget(self.memory_budget_mib << 20).with_verify(!self.no_verify),
            photometric: if self.photometric == "device" { Photometric::Device } else { Photometric::Cpu },
            jpeg_draft: self.jpeg_draft,
        })
    }
}
