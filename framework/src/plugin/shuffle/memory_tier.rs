//! The in-memory tier of an executor's shuffle output.
//!
//! A map task's output partitions can stay in the executor's memory instead
//! of going through Arrow IPC files: consumers on the same executor then read
//! the very record batches the map task produced (no encoding, no copy), and
//! other executors get them over Flight, encoded as they are sent.
//!
//! The memory is accounted like any operator's: the writer reserves it from
//! the map task's [`MemoryPool`] (so it counts against the executor's budget,
//! the job's quota and the tenant's), and the tier as a whole holds at most a
//! set share of the executor's budget, so that operators keep the rest. A
//! reservation that is refused is never made room for by dropping output a
//! consumer may still need: the writer sends that map output to disk instead.
//!
//! Output is held until the scheduler says no consumer will read it again
//! (every stage reading it has finished: [`release_stages`]) or the job ends
//! ([`release_job`]). Like the output on the executor's disk, it is lost with
//! the executor, and the scheduler recomputes it.
//!
//! [`release_stages`]: ShuffleMemoryTier::release_stages
//! [`release_job`]: ShuffleMemoryTier::release_job

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use parking_lot::Mutex;

use crate::ids::{JobId, StageId};

/// Jobs remembered as ended, so that a task of theirs finishing late does
/// not hold memory that nothing would release.
const ENDED_JOBS_REMEMBERED: usize = 4096;

/// The output partitions of one map task attempt held in memory, with the
/// reservation that accounts for them.
#[derive(Debug)]
struct HeldMapOutput {
    stage_id: StageId,
    /// Paths of its partitions (keys of [`JobOutputs::partitions`]).
    paths: Vec<String>,
    bytes: usize,
    _reservation: MemoryReservation,
}

#[derive(Debug, Default)]
struct JobOutputs {
    outputs: Vec<HeldMapOutput>,
    partitions: HashMap<String, Arc<[RecordBatch]>>,
}

/// Bytes held (committed or being written), in all and per job.
#[derive(Debug, Default)]
struct Holdings {
    total: usize,
    per_job: HashMap<JobId, usize>,
}

/// What the tier holds, and the jobs that have ended here.
#[derive(Debug, Default)]
struct TierState {
    jobs: HashMap<JobId, JobOutputs>,
    ended: HashSet<JobId>,
    ended_order: VecDeque<JobId>,
}

/// One executor's in-memory shuffle output; shared by its tasks, its Flight
/// service and its control service.
#[derive(Debug)]
pub struct ShuffleMemoryTier {
    /// The executor's memory budget (0: unknown, and then nothing is held).
    budget: usize,
    holdings: Mutex<Holdings>,
    /// Bytes ever committed to memory, and map outputs that had to go to
    /// disk (for metrics).
    committed_bytes: AtomicU64,
    sent_to_disk: AtomicU64,
    state: Mutex<TierState>,
}

impl ShuffleMemoryTier {
    /// A tier for an executor whose memory budget is `budget_bytes`.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget: budget_bytes,
            holdings: Mutex::new(Holdings::default()),
            committed_bytes: AtomicU64::new(0),
            sent_to_disk: AtomicU64::new(0),
            state: Mutex::new(TierState::default()),
        }
    }

    /// Bytes held now (committed outputs and outputs being written).
    pub fn held_bytes(&self) -> usize {
        self.holdings.lock().total
    }

    /// Bytes ever committed to memory.
    pub fn committed_bytes(&self) -> u64 {
        self.committed_bytes.load(Ordering::Relaxed)
    }

    /// Map outputs that went to disk because memory was refused.
    pub fn map_outputs_sent_to_disk(&self) -> u64 {
        self.sent_to_disk.load(Ordering::Relaxed)
    }

    /// Counts `bytes` of `job_id` against the tier if the tier stays within
    /// `fraction` of the budget and the job within `job_cap`; the caller
    /// must [`give_back`](Self::give_back) them unless they are committed.
    fn try_hold(&self, job_id: &JobId, bytes: usize, fraction: f64, job_cap: usize) -> bool {
        let cap = (self.budget as f64 * fraction.clamp(0.0, 1.0)) as usize;
        let mut holdings = self.holdings.lock();
        let job_held = holdings.per_job.get(job_id).copied().unwrap_or(0);
        let fits = holdings
            .total
            .checked_add(bytes)
            .is_some_and(|total| total <= cap)
            && job_held
                .checked_add(bytes)
                .is_some_and(|held| held <= job_cap);
        if fits {
            holdings.total += bytes;
            *holdings.per_job.entry(job_id.clone()).or_default() += bytes;
        }
        fits
    }

    fn give_back(&self, job_id: &JobId, bytes: usize) {
        let mut holdings = self.holdings.lock();
        holdings.total = holdings.total.saturating_sub(bytes);
        if let Some(held) = holdings.per_job.get_mut(job_id) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                holdings.per_job.remove(job_id);
            }
        }
    }

    /// The batches of a committed partition held here, by its location path.
    pub fn partition(&self, job_id: &JobId, path: &str) -> Option<Arc<[RecordBatch]>> {
        self.state
            .lock()
            .jobs
            .get(job_id)
            .and_then(|job| job.partitions.get(path).cloned())
    }

    /// Drops the output of `stages` of `job_id`: no consumer will read it.
    /// Returns the bytes freed.
    pub fn release_stages(&self, job_id: &JobId, stages: &[StageId]) -> usize {
        let stages: HashSet<StageId> = stages.iter().copied().collect();
        let released: Vec<HeldMapOutput> = {
            let mut state = self.state.lock();
            let Some(job) = state.jobs.get_mut(job_id) else {
                return 0;
            };
            let (released, kept) = std::mem::take(&mut job.outputs)
                .into_iter()
                .partition(|output| stages.contains(&output.stage_id));
            job.outputs = kept;
            for output in &released {
                for path in &output.paths {
                    job.partitions.remove(path);
                }
            }
            if job.outputs.is_empty() {
                state.jobs.remove(job_id);
            }
            released
        };
        self.free(job_id, released)
    }

    /// Drops everything held for `job_id`, which has ended: output its
    /// tasks commit from now on is not kept. Returns the bytes freed.
    pub fn release_job(&self, job_id: &JobId) -> usize {
        let released = {
            let mut state = self.state.lock();
            if state.ended.insert(job_id.clone()) {
                state.ended_order.push_back(job_id.clone());
                if state.ended_order.len() > ENDED_JOBS_REMEMBERED
                    && let Some(oldest) = state.ended_order.pop_front()
                {
                    state.ended.remove(&oldest);
                }
            }
            state
                .jobs
                .remove(job_id)
                .map(|job| job.outputs)
                .unwrap_or_default()
        };
        self.free(job_id, released)
    }

    fn free(&self, job_id: &JobId, outputs: Vec<HeldMapOutput>) -> usize {
        let bytes: usize = outputs.iter().map(|o| o.bytes).sum();
        // The reservations are returned to the pool as they drop.
        drop(outputs);
        self.give_back(job_id, bytes);
        bytes
    }
}

/// A map task's access to the tier: where it may keep its output, and the
/// task's memory pool that accounts for it.
#[derive(Debug, Clone)]
pub struct MemoryTierAccess {
    /// The executor's tier.
    pub tier: Arc<ShuffleMemoryTier>,
    /// The task's memory pool.
    pub pool: Arc<dyn MemoryPool>,
}

/// A map output being written to memory: its batches per output partition,
/// accounted by a reservation of the task's pool and by the tier.
#[derive(Debug)]
pub struct MemoryMapOutput {
    tier: Arc<ShuffleMemoryTier>,
    job_id: JobId,
    fraction: f64,
    /// The most the job may hold in the tier: `fraction` of what its pool
    /// allows, so that a job quota smaller than the tier is not filled by
    /// the job's own earlier stages.
    job_cap: usize,
    /// The most this one map output may hold: a larger one goes to disk.
    output_cap: usize,
    reservation: MemoryReservation,
    partitions: Vec<Vec<RecordBatch>>,
    bytes: usize,
}

impl MemoryMapOutput {
    /// Starts a map output of `num_output_partitions` partitions for task
    /// `task_name` of `job_id`, keeping at most `fraction` of the
    /// executor's budget (and of the job's pool) in the tier, and at most
    /// `output_cap` bytes for this map output.
    pub fn new(
        access: &MemoryTierAccess,
        job_id: &JobId,
        task_name: &str,
        num_output_partitions: usize,
        fraction: f64,
        output_cap: usize,
    ) -> Self {
        let reservation =
            MemoryConsumer::new(format!("ShuffleOutput[{task_name}]")).register(&access.pool);
        let job_cap = match access.pool.memory_limit() {
            MemoryLimit::Finite(limit) => (limit as f64 * fraction.clamp(0.0, 1.0)) as usize,
            MemoryLimit::Infinite | MemoryLimit::Unknown => usize::MAX,
        };
        Self {
            tier: Arc::clone(&access.tier),
            job_id: job_id.clone(),
            fraction,
            job_cap,
            output_cap,
            reservation,
            partitions: vec![Vec::new(); num_output_partitions],
            bytes: 0,
        }
    }

    /// Keeps `batch` for `output_partition` if this map output stays within
    /// its own cap and both the tier's share and the task's pool allow it;
    /// otherwise gives it back (the caller writes the whole map output to
    /// disk instead).
    pub fn try_push(
        &mut self,
        output_partition: usize,
        batch: RecordBatch,
    ) -> std::result::Result<(), RecordBatch> {
        if output_partition >= self.partitions.len() {
            return Err(batch);
        }
        let size = batch.get_array_memory_size();
        if self
            .bytes
            .checked_add(size)
            .is_none_or(|bytes| bytes > self.output_cap)
        {
            return Err(batch);
        }
        if !self
            .tier
            .try_hold(&self.job_id, size, self.fraction, self.job_cap)
        {
            return Err(batch);
        }
        if self.reservation.try_grow(size).is_err() {
            self.tier.give_back(&self.job_id, size);
            return Err(batch);
        }
        self.bytes += size;
        self.partitions[output_partition].push(batch);
        Ok(())
    }

    /// Gives up on memory: returns the batches kept so far, per output
    /// partition, and releases their memory.
    pub fn into_batches(mut self) -> Vec<Vec<RecordBatch>> {
        self.tier.sent_to_disk.fetch_add(1, Ordering::Relaxed);
        self.tier.give_back(&self.job_id, self.bytes);
        self.bytes = 0;
        self.reservation.free();
        std::mem::take(&mut self.partitions)
    }

    /// Publishes the output under `paths` (one per output partition; `None`
    /// for an empty partition) for `stage_id`. Returns the rows, batches and
    /// bytes of each partition. Output of a job that has already ended here
    /// is dropped at once: nothing would read or release it.
    pub fn commit(mut self, stage_id: StageId, paths: &[Option<String>]) -> Vec<(u64, u64, u64)> {
        let partitions = std::mem::take(&mut self.partitions);
        let stats: Vec<(u64, u64, u64)> = partitions
            .iter()
            .map(|batches| {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
                (rows as u64, batches.len() as u64, bytes as u64)
            })
            .collect();
        let mut state = self.tier.state.lock();
        if state.ended.contains(&self.job_id) {
            drop(state);
            // Dropping self gives the memory back.
            return stats;
        }
        let bytes = std::mem::take(&mut self.bytes);
        let reservation = self.reservation.take();
        let mut held_paths = Vec::new();
        let job = state.jobs.entry(self.job_id.clone()).or_default();
        for (batches, path) in partitions.into_iter().zip(paths) {
            if let (Some(path), false) = (path, batches.is_empty()) {
                job.partitions.insert(path.clone(), batches.into());
                held_paths.push(path.clone());
            }
        }
        job.outputs.push(HeldMapOutput {
            stage_id,
            paths: held_paths,
            bytes,
            _reservation: reservation,
        });
        drop(state);
        self.tier
            .committed_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        stats
    }
}

impl Drop for MemoryMapOutput {
    /// An attempt that fails or is cancelled gives its memory back.
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.tier.give_back(&self.job_id, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap()
    }

    fn job() -> JobId {
        JobId::parse("job1").unwrap()
    }

    /// A tier for a budget of `budget` bytes, a task pool of `pool_limit`
    /// bytes, and the task's access to both.
    fn tier_and_pool(
        budget: usize,
        pool_limit: usize,
    ) -> (
        Arc<ShuffleMemoryTier>,
        Arc<dyn MemoryPool>,
        MemoryTierAccess,
    ) {
        let tier = Arc::new(ShuffleMemoryTier::new(budget));
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(pool_limit));
        let access = MemoryTierAccess {
            tier: Arc::clone(&tier),
            pool: Arc::clone(&pool),
        };
        (tier, pool, access)
    }

    #[test]
    fn committed_output_is_read_back_as_the_same_batches_and_freed_by_stage() {
        let (tier, pool, access) = tier_and_pool(1 << 20, 1 << 20);
        let mut output = MemoryMapOutput::new(&access, &job(), "t", 3, 0.5, usize::MAX);
        let b = batch(100);
        output.try_push(2, b.clone()).unwrap();
        output.try_push(2, batch(10)).unwrap();
        let held = tier.held_bytes();
        assert!(held > 0 && pool.reserved() == held);
        let paths = vec![None, Some("a".to_string()), Some("c".to_string())];
        let stats = output.commit(StageId(1), &paths);
        assert_eq!(stats[2].0, 110);
        assert_eq!(stats[1], (0, 0, 0));
        let read = tier.partition(&job(), "c").unwrap();
        assert_eq!(read.len(), 2);
        // The very arrays the writer produced: no copy.
        assert!(Arc::ptr_eq(read[0].column(0), b.column(0)));
        assert!(tier.partition(&job(), "a").is_none());
        assert_eq!(tier.release_stages(&job(), &[StageId(2)]), 0);
        assert_eq!(tier.release_stages(&job(), &[StageId(1)]), held);
        assert_eq!((tier.held_bytes(), pool.reserved()), (0, 0));
        assert!(tier.partition(&job(), "c").is_none());
    }

    #[test]
    fn a_refused_batch_is_handed_back_and_nothing_stays_reserved() {
        let (tier, pool, access) = tier_and_pool(100_000, 1 << 20);
        let mut output = MemoryMapOutput::new(&access, &job(), "t", 1, 0.1, usize::MAX);
        // 10,000 bytes allowed: a batch of 2,000 i64 values is refused.
        let refused = output.try_push(0, batch(2000)).unwrap_err();
        assert_eq!(refused.num_rows(), 2000);
        output.try_push(0, batch(10)).unwrap();
        let kept = output.into_batches();
        assert_eq!(kept[0].len(), 1);
        assert_eq!((tier.held_bytes(), pool.reserved()), (0, 0));
        assert_eq!(tier.map_outputs_sent_to_disk(), 1);

        // The pool refuses too, whatever the tier's share.
        let small: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(100));
        let access = MemoryTierAccess {
            tier: Arc::clone(&tier),
            pool: small,
        };
        let mut output = MemoryMapOutput::new(&access, &job(), "t", 1, 1.0, usize::MAX);
        assert!(output.try_push(0, batch(100)).is_err());
        drop(output);
        assert_eq!(tier.held_bytes(), 0);
    }

    #[test]
    fn a_job_release_frees_everything_and_a_dropped_attempt_gives_back() {
        let (tier, pool, access) = tier_and_pool(1 << 20, 1 << 20);
        for stage in 1..=2 {
            let mut output = MemoryMapOutput::new(&access, &job(), "t", 1, 1.0, usize::MAX);
            output.try_push(0, batch(50)).unwrap();
            output.commit(StageId(stage), &[Some(format!("s{stage}"))]);
        }
        let mut abandoned = MemoryMapOutput::new(&access, &job(), "t", 1, 1.0, usize::MAX);
        abandoned.try_push(0, batch(50)).unwrap();
        drop(abandoned);
        let mut late = MemoryMapOutput::new(&access, &job(), "t", 1, 1.0, usize::MAX);
        late.try_push(0, batch(50)).unwrap();
        assert!(tier.release_job(&job()) > 0);
        // A task of the ended job that commits afterwards keeps nothing.
        let stats = late.commit(StageId(3), &[Some("late".into())]);
        assert_eq!(stats[0].0, 50);
        assert!(tier.partition(&job(), "late").is_none());
        assert_eq!((tier.held_bytes(), pool.reserved()), (0, 0));
    }

    #[test]
    fn a_job_holds_at_most_its_share_of_what_its_pool_allows() {
        // The job's pool allows 64 KiB: half of it may hold output.
        let (tier, _, access) = tier_and_pool(1 << 30, 64 << 10);
        let mut output = MemoryMapOutput::new(&access, &job(), "t", 1, 0.5, usize::MAX);
        let mut kept = 0;
        while output.try_push(0, batch(512)).is_ok() {
            kept += 1;
        }
        assert!(kept > 0);
        assert!(tier.held_bytes() <= 32 << 10, "{}", tier.held_bytes());
        // Another job is not held back by the first one's share.
        let other = JobId::parse("job2").unwrap();
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(64 << 10));
        let access = MemoryTierAccess {
            tier: Arc::clone(&tier),
            pool,
        };
        let mut second = MemoryMapOutput::new(&access, &other, "t", 1, 0.5, usize::MAX);
        assert!(second.try_push(0, batch(512)).is_ok());
    }

    #[test]
    fn a_map_output_larger_than_its_cap_is_handed_back_whatever_the_tier_allows() {
        let (tier, pool, access) = tier_and_pool(1 << 30, 1 << 30);
        let one = batch(1000).get_array_memory_size();
        let mut output = MemoryMapOutput::new(&access, &job(), "t", 2, 1.0, 2 * one);
        output.try_push(0, batch(1000)).unwrap();
        output.try_push(1, batch(1000)).unwrap();
        // The third batch takes this output past its cap, across partitions.
        let refused = output.try_push(0, batch(1000)).unwrap_err();
        assert_eq!(refused.num_rows(), 1000);
        assert_eq!(tier.held_bytes(), 2 * one);
        let kept = output.into_batches();
        assert_eq!((kept[0].len(), kept[1].len()), (1, 1));
        assert_eq!((tier.held_bytes(), pool.reserved()), (0, 0));
        assert_eq!(tier.map_outputs_sent_to_disk(), 1);
        // Another map output of the same job has a cap of its own.
        let mut next = MemoryMapOutput::new(&access, &job(), "t", 1, 1.0, 2 * one);
        next.try_push(0, batch(1000)).unwrap();
    }
}
