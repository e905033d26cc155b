//! Distributed planning: splitting a DataFusion physical plan into stages at
//! exchange boundaries, the plan nodes that write and read shuffles, and the
//! codec that carries them inside datafusion-proto plans.
//!
//! A stage is a plan rooted at a [`ShuffleWriterExec`]; each partition of its
//! input is one task. Where a consumer needs a producer's output, the
//! consumer's plan holds an [`UnresolvedShuffleExec`] until the producer
//! stage completes; the scheduler then replaces it with a
//! [`ShuffleReaderExec`] listing the committed [`ShuffleLocation`](crate::plugin::shuffle::ShuffleLocation)s.

mod codec;
mod collected_joins;
mod compact;
mod shuffle_reader;
mod shuffle_writer;
mod stages;
mod task_env;
mod unresolved_shuffle;

pub use codec::{BallistaPhysicalExtensionCodec, decode_stage_plan, encode_stage_plan};
pub use collected_joins::distribute_collected_joins;
pub use shuffle_reader::{LOCAL_READS, REMOTE_FETCHES, ShuffleReaderExec, shuffle_read_counts};
pub use shuffle_writer::ShuffleWriterExec;
pub use stages::{DistributedPlan, StagePlan, resolve_shuffle_reads, split_into_stages};
pub use task_env::TaskEnv;
pub use unresolved_shuffle::{ShuffleReadMode, UnresolvedShuffleExec};
