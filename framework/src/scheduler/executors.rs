//! The executors the scheduler knows, their free slots and liveness.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::error::Result;
use crate::flight::{MAX_MESSAGE_SIZE, flight_endpoint};
use crate::ids::{ExecutorId, JobId, StageId};
use crate::plugin::memory::MemoryUsage;
use crate::plugin::scheduling::ExecutorSlots;
use crate::plugin::shuffle::ExecutorAddress;
use crate::proto::executor_control_client::ExecutorControlClient;

/// A task attempt occupying a slot: job, stage, partition, attempt.
pub type TaskKey = (JobId, StageId, usize, u32);

/// One registered executor.
#[derive(Debug, Clone)]
pub struct ExecutorEntry {
    /// Identity and address.
    pub address: ExecutorAddress,
    /// Total task slots.
    pub slots: usize,
    /// Task attempts assigned to it and not yet reported back.
    pub running: HashSet<TaskKey>,
    /// Last registration or heartbeat.
    pub last_seen: Instant,
    /// Milliseconds since the epoch of the last heartbeat.
    pub last_seen_ms: u64,
    /// Memory figures from the last heartbeat.
    pub memory: MemoryUsage,
    /// Refuses new tasks (draining, or it refused a launch) until its next heartbeat.
    pub paused: bool,
    /// Control-service client.
    pub client: ExecutorControlClient<Channel>,
    /// Version string it reported.
    pub version: String,
}

impl ExecutorEntry {
    /// Slots not occupied by an assigned task.
    pub fn free_slots(&self) -> usize {
        self.slots.saturating_sub(self.running.len())
    }
}

/// Registered executors.
#[derive(Debug, Default)]
pub struct ExecutorRegistry {
    executors: HashMap<ExecutorId, ExecutorEntry>,
}

impl ExecutorRegistry {
    /// Adds (or replaces, on re-registration) an executor. Returns the entry
    /// it replaced, whose running tasks are lost.
    pub fn register(
        &mut self,
        address: ExecutorAddress,
        slots: usize,
        version: String,
    ) -> Result<Option<ExecutorEntry>> {
        let url = format!("http://{}:{}", address.host, address.port);
        let client = ExecutorControlClient::new(flight_endpoint(&url)?.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let entry = ExecutorEntry {
            address: address.clone(),
            slots,
            running: HashSet::new(),
            last_seen: Instant::now(),
            last_seen_ms: crate::util::now_ms(),
            memory: MemoryUsage::default(),
            paused: false,
            client,
            version,
        };
        Ok(self.executors.insert(address.id, entry))
    }

    /// Records a heartbeat; false when the executor is unknown.
    pub fn heartbeat(&mut self, id: &ExecutorId, memory: MemoryUsage, draining: bool) -> bool {
        match self.executors.get_mut(id) {
            Some(entry) => {
                entry.last_seen = Instant::now();
                entry.last_seen_ms = crate::util::now_ms();
                entry.memory = memory;
                entry.paused = draining;
                true
            }
            None => false,
        }
    }

    /// Looks an executor up.
    pub fn get(&self, id: &ExecutorId) -> Option<&ExecutorEntry> {
        self.executors.get(id)
    }

    /// Looks an executor up for update.
    pub fn get_mut(&mut self, id: &ExecutorId) -> Option<&mut ExecutorEntry> {
        self.executors.get_mut(id)
    }

    /// Removes an executor.
    pub fn remove(&mut self, id: &ExecutorId) -> Option<ExecutorEntry> {
        self.executors.remove(id)
    }

    /// Executors silent for longer than `timeout`.
    pub fn expired(&self, timeout: Duration) -> Vec<ExecutorId> {
        self.executors
            .values()
            .filter(|e| e.last_seen.elapsed() > timeout)
            .map(|e| e.address.id.clone())
            .collect()
    }

    /// Free capacity, for the scheduling policy.
    pub fn free_slots(&self) -> Vec<ExecutorSlots> {
        let mut slots: Vec<ExecutorSlots> = self
            .executors
            .values()
            .filter(|e| !e.paused && e.free_slots() > 0)
            .map(|e| ExecutorSlots {
                executor_id: e.address.id.clone(),
                free_slots: e.free_slots(),
            })
            .collect();
        slots.sort_by(|a, b| a.executor_id.cmp(&b.executor_id));
        slots
    }

    /// All executors.
    pub fn all(&self) -> impl Iterator<Item = &ExecutorEntry> {
        self.executors.values()
    }

    /// Whether no executor is registered.
    pub fn is_empty(&self) -> bool {
        self.executors.is_empty()
    }
}
