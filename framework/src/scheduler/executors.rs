//! The executors the scheduler knows, their free slots and liveness.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::auth::{AuthChannel, CallCredentials, SecretKey};
use crate::error::Result;
use crate::flight::{MAX_MESSAGE_SIZE, flight_endpoint};
use crate::ids::{ExecutorId, JobId, StageId};
use crate::plugin::memory::MemoryUsage;
use crate::plugin::scheduling::ExecutorSlots;
use crate::plugin::shuffle::ExecutorAddress;
use crate::proto::executor_control_client::ExecutorControlClient;
use crate::tls::PeerTransport;

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
    /// Jobs that had no task here and were given one since the last
    /// memory figures: each may take a task's minimum of the memory those
    /// figures show as available.
    pub jobs_placed_since_report: HashSet<JobId>,
    /// Refuses new tasks (draining, or it refused a launch) until its next heartbeat.
    pub paused: bool,
    /// Tasks it said it runs at its last heartbeat.
    pub reported_running: u32,
    /// Control-service client.
    pub client: ExecutorControlClient<AuthChannel>,
    /// Version string it reported.
    pub version: String,
    /// The session key it was given at registration: signs the tickets for
    /// the output it holds.
    pub session_key: SecretKey,
}

impl ExecutorEntry {
    /// Slots not occupied by an assigned task.
    pub fn free_slots(&self) -> usize {
        self.slots.saturating_sub(self.running.len())
    }

    /// Whether a task of `job_id` can be given to this executor as far as
    /// memory goes. A job with a task here already shares the memory it
    /// holds here; a job new to this executor needs the memory plugin's
    /// minimum free, minus what other new jobs placed since the last report
    /// may take. An executor running nothing always qualifies (its figures
    /// may predate the end of its last tasks), as does one whose plugin
    /// reports no figures.
    pub fn memory_can_hold(&self, job_id: &JobId) -> bool {
        let m = &self.memory;
        if m.budget_bytes == 0 || m.task_min_bytes == 0 || self.running.is_empty() {
            return true;
        }
        if self.running.iter().any(|(j, ..)| j == job_id)
            || self.jobs_placed_since_report.contains(job_id)
        {
            return true;
        }
        let promised = m
            .task_min_bytes
            .saturating_mul(self.jobs_placed_since_report.len() as u64);
        m.available_bytes.saturating_sub(promised) >= m.task_min_bytes
    }
}

/// Registered executors.
#[derive(Debug, Default)]
pub struct ExecutorRegistry {
    /// In id order, so that the free slots a placement round offers come in
    /// a stable order without sorting a thousand ids every round.
    executors: BTreeMap<ExecutorId, ExecutorEntry>,
    transport: PeerTransport,
}

impl ExecutorRegistry {
    /// Executors' control services are reached over `transport`.
    pub fn set_transport(&mut self, transport: PeerTransport) {
        self.transport = transport;
    }

    /// Adds (or replaces, on re-registration) an executor. Returns the entry
    /// it replaced, whose running tasks are lost.
    pub fn register(
        &mut self,
        address: ExecutorAddress,
        slots: usize,
        version: String,
        memory: MemoryUsage,
        session_key: SecretKey,
    ) -> Result<Option<ExecutorEntry>> {
        let url = self.transport.url(&address.host, address.port);
        let credentials = CallCredentials::Scheduler {
            executor_id: address.id.to_string(),
            key: session_key.clone(),
        };
        let client = ExecutorControlClient::new(
            credentials.wrap(flight_endpoint(&url, &self.transport.trust())?.connect_lazy()),
        )
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let entry = ExecutorEntry {
            address: address.clone(),
            slots,
            running: HashSet::new(),
            last_seen: Instant::now(),
            last_seen_ms: crate::util::now_ms(),
            memory,
            jobs_placed_since_report: HashSet::new(),
            paused: false,
            reported_running: 0,
            client,
            version,
            session_key,
        };
        Ok(self.executors.insert(address.id, entry))
    }

    /// Records a heartbeat; false when the executor is unknown. `jobs` are
    /// the jobs its memory figures account for: a job placed there since
    /// the last report and not among them (its task may not have started
    /// when the figures were taken) stays promised while it has a task there.
    pub fn heartbeat(
        &mut self,
        id: &ExecutorId,
        memory: MemoryUsage,
        jobs: &HashSet<JobId>,
        draining: bool,
    ) -> bool {
        match self.executors.get_mut(id) {
            Some(entry) => {
                entry.last_seen = Instant::now();
                entry.last_seen_ms = crate::util::now_ms();
                entry.memory = memory;
                let running = &entry.running;
                entry
                    .jobs_placed_since_report
                    .retain(|job| !jobs.contains(job) && running.iter().any(|(j, ..)| j == job));
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

    /// Free capacity, for the scheduling policy, in executor id order.
    pub fn free_slots(&self) -> Vec<ExecutorSlots> {
        self.executors
            .values()
            .filter(|e| !e.paused && e.free_slots() > 0)
            .map(|e| ExecutorSlots {
                executor_id: e.address.id.clone(),
                free_slots: e.free_slots(),
            })
            .collect()
    }

    /// All executors.
    pub fn all(&self) -> impl Iterator<Item = &ExecutorEntry> {
        self.executors.values()
    }

    /// Whether no executor is registered.
    pub fn is_empty(&self) -> bool {
        self.executors.is_empty()
    }

    /// How many executors are registered.
    pub fn len(&self) -> usize {
        self.executors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(available: u64, task_min: u64) -> MemoryUsage {
        MemoryUsage {
            budget_bytes: 100,
            reserved_bytes: 100 - available,
            peak_bytes: 100,
            available_bytes: available,
            task_min_bytes: task_min,
        }
    }

    #[tokio::test]
    async fn memory_decides_which_jobs_an_executor_can_take() {
        let mut registry = ExecutorRegistry::default();
        let id = ExecutorId::new("e1");
        let address = ExecutorAddress {
            id: id.clone(),
            host: "127.0.0.1".into(),
            port: 1,
        };
        registry
            .register(
                address,
                4,
                "test".into(),
                usage(10, 20),
                crate::auth::SecretKey::random().unwrap(),
            )
            .unwrap();
        let (a, b, c, d) = (
            JobId::generate(),
            JobId::generate(),
            JobId::generate(),
            JobId::generate(),
        );
        let entry = registry.get_mut(&id).unwrap();
        // Running nothing, its figures may predate the end of its last tasks.
        assert!(entry.memory_can_hold(&b));
        entry.running.insert((a.clone(), StageId(1), 0, 0));
        // A job already running here shares what it holds.
        assert!(entry.memory_can_hold(&a));
        // A new job needs 20 free; 10 are.
        assert!(!entry.memory_can_hold(&b));

        let none = HashSet::new();
        registry.heartbeat(&id, usage(50, 20), &none, false);
        let entry = registry.get_mut(&id).unwrap();
        assert!(entry.memory_can_hold(&b));
        entry.jobs_placed_since_report.insert(b.clone());
        entry.running.insert((b.clone(), StageId(1), 0, 0));
        assert!(entry.memory_can_hold(&c));
        entry.jobs_placed_since_report.insert(c.clone());
        entry.running.insert((c.clone(), StageId(1), 0, 0));
        // 50 free, less 20 each for b and c: no room for d until they are
        // in the figures.
        assert!(!entry.memory_can_hold(&d));
        // The next figures account for b (30 free) but not yet for c.
        registry.heartbeat(&id, usage(30, 20), &HashSet::from([b.clone()]), false);
        assert!(!registry.get(&id).unwrap().memory_can_hold(&d));
        registry.heartbeat(
            &id,
            usage(30, 20),
            &HashSet::from([b.clone(), c.clone()]),
            false,
        );
        assert!(registry.get(&id).unwrap().memory_can_hold(&d));

        // A memory manager that guarantees nothing never holds tasks back.
        registry.heartbeat(&id, usage(0, 0), &none, false);
        assert!(registry.get(&id).unwrap().memory_can_hold(&d));
    }
}
