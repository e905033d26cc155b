//! The network calls a state change decides on, performed by the caller
//! once the scheduler's lock is released.

use super::super::job_graph::TaskPlan;
use crate::error::Result;
use crate::ids::{ExecutorId, JobId};
use crate::proto::{self, executor_control_client::ExecutorControlClient};

/// A batch of tasks to launch on one executor.
#[derive(Debug)]
pub struct Launch {
    /// Target executor.
    pub executor_id: ExecutorId,
    /// Its control client.
    pub client: ExecutorControlClient<crate::auth::AuthChannel>,
    /// The tasks.
    pub tasks: Vec<TaskLaunch>,
    /// Job data the executor may free, carried by the same call.
    pub cleanups: Vec<proto::JobCleanup>,
}

/// One task of a [`Launch`].
#[derive(Debug, Clone)]
pub struct TaskLaunch {
    /// The task, without its plan.
    pub definition: proto::TaskDefinition,
    /// Its plan, encoded when the launch is sent.
    pub plan: TaskPlan,
}

impl TaskLaunch {
    /// The definition with its plan, as the executor receives it.
    pub fn into_definition(self) -> Result<proto::TaskDefinition> {
        let mut definition = self.definition;
        self.plan.write_into(&mut definition)?;
        Ok(definition)
    }
}

/// Stopping and/or deleting a job's work on one executor.
#[derive(Debug)]
pub struct Cleanup {
    /// Target executor.
    pub executor_id: ExecutorId,
    /// Its control client.
    pub client: ExecutorControlClient<crate::auth::AuthChannel>,
    /// The job.
    pub job_id: JobId,
    /// Stop its running tasks.
    pub cancel: bool,
    /// Delete its data.
    pub remove_data: bool,
    /// With `remove_data`: only these stages' output, which no consumer
    /// will read again, and only what the executor holds in memory (empty:
    /// all of the job's data).
    pub stages: Vec<crate::ids::StageId>,
}

/// Network calls decided under the lock, performed after it is released.
#[derive(Debug, Default)]
pub struct Effects {
    /// Tasks to launch.
    pub launches: Vec<Launch>,
    /// Jobs to stop or clean up.
    pub cleanups: Vec<Cleanup>,
    /// Free slots or runnable tasks may have appeared: the caller runs
    /// [`place_tasks`](super::SchedulerState::place_tasks). Set only when
    /// placement is deferred
    /// ([`deferring_placement`](super::SchedulerState::deferring_placement)).
    pub place_tasks: bool,
    /// A task's state changed (a status was applied, an executor and its
    /// tasks were forgotten, a launch was refused): tasks awaiting map
    /// outputs look again (`AwaitMapOutputs`).
    pub tasks_changed: bool,
}

impl Effects {
    pub(crate) fn merge(&mut self, other: Effects) {
        self.launches.extend(other.launches);
        self.cleanups.extend(other.cleanups);
        self.place_tasks |= other.place_tasks;
        self.tasks_changed |= other.tasks_changed;
    }
}
