//! The DataFusion [`MemoryPool`] one task runs under: every call goes to the
//! executor's [`Ledger`], tagged with the task so that the job's and the
//! tenant's quotas apply.

use std::fmt;
use std::sync::Arc;

use ballista::datafusion::error::{DataFusionError, Result};
use ballista::datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use ballista::ids::TaskId;

use crate::ledger::Ledger;

/// One task's view of the executor's quota accounts.
#[derive(Debug)]
pub(crate) struct TaskPool {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) task: TaskId,
    /// The most the task's job may hold here, for operators that size
    /// themselves by the pool's limit.
    pub(crate) limit: usize,
}

impl fmt::Display for TaskPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quota pool of task {} (limit {} bytes)",
            self.task, self.limit
        )
    }
}

impl MemoryPool for TaskPool {
    fn name(&self) -> &str {
        "ballista-quota"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.ledger.register(
            consumer.id(),
            consumer.name(),
            &self.task,
            consumer.can_spill(),
        );
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.ledger.unregister(consumer.id());
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.ledger.grow(reservation.consumer().id(), additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.ledger.shrink(reservation.consumer().id(), shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.ledger
            .try_grow(reservation.consumer().id(), additional)
            .map_err(DataFusionError::ResourcesExhausted)
    }

    fn reserved(&self) -> usize {
        self.ledger.task_reserved(&self.task)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}
