//! The scheduler benchmark's figures: launch rate, scheduling latency per
//! task and per stage transition, job times.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ballista::ids::JobId;
use serde::Serialize;

use super::SchedulerBenchOptions;
use super::fleet::FleetLog;
use super::isolated::CpuTimes;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[index].as_secs_f64() * 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// One measured job.
#[derive(Debug, Clone, Serialize)]
pub struct JobFigures {
    /// Its id.
    pub job_id: String,
    /// From submission to the status saying it succeeded (ms).
    pub duration_ms: f64,
    /// Task launches it had.
    pub tasks: usize,
}

/// What `ballista scheduler-bench` prints and writes as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SchedulerBenchReport {
    /// Simulated executors registered.
    pub executors: usize,
    /// Slots of each.
    pub slots_per_executor: usize,
    /// Tasks of each stage.
    pub partitions: usize,
    /// Simulated task time (ms).
    pub task_time_ms: f64,
    /// Jobs submitted at once.
    pub concurrency: usize,
    /// Time to register every executor (s).
    pub registration_secs: f64,
    /// Measured jobs.
    pub jobs: usize,
    /// Task launches received by the executors during the measured jobs.
    pub task_launches: usize,
    /// Launch calls (each carries one or more tasks).
    pub launch_calls: u64,
    /// Status report answers that carried tasks (instead of a launch call).
    pub answers_with_tasks: u64,
    /// The tasks those answers carried.
    pub answer_tasks: u64,
    /// Mean encoded size of a launched task, by call or in an answer (bytes).
    pub launch_bytes_per_task: f64,
    /// Status reports the executors sent (each with one or more statuses,
    /// or held empty while slots were free), as messages on their report
    /// streams.
    pub status_calls: u64,
    /// Of those, the empty held reports (an idle executor waiting for work).
    pub held_reports: u64,
    /// Cancel, remove-data and release-output calls the executors received.
    pub cleanup_calls: u64,
    /// Job cleanups (one job's data on one executor) that came in status
    /// report answers instead of calls.
    pub answer_cleanups: u64,
    /// Job cleanups that came with launch calls instead of calls of their own.
    pub launch_cleanups: u64,
    /// Heartbeats the executors sent.
    pub heartbeats: u64,
    /// CPU time (user and system) of the whole process during the measured
    /// jobs: scheduler, simulated executors and clients (s). Absent where
    /// the kernel does not show it.
    pub process_cpu_secs: Option<f64>,
    /// CPU time of the scheduler's threads alone during the measured jobs (s).
    pub scheduler_cpu_secs: Option<f64>,
    /// Task launches per second of scheduler CPU time: what one core
    /// given to the scheduler alone would sustain.
    pub launches_per_scheduler_cpu_sec: Option<f64>,
    /// From the first submission to the last job's success (s).
    pub elapsed_secs: f64,
    /// `task_launches / elapsed_secs`.
    pub launches_per_sec: f64,
    /// Per task: from the moment it could run (its stage's inputs complete,
    /// or, for a first stage, its job's first launch: planning is counted in
    /// `submission_to_first_launch`; and a slot free on the executor it went
    /// to) to its launch arriving there.
    pub task_latency: Percentiles,
    /// Per stage after a job's first: from the completion report of the
    /// last task of the stage before it to its first launch arriving.
    pub stage_transition: Percentiles,
    /// Per job: from its submission to its first launch arriving (planning
    /// and admission included).
    pub submission_to_first_launch: Percentiles,
    /// Per job: submission to success.
    pub job_duration: Percentiles,
    /// Every measured job.
    pub job_list: Vec<JobFigures>,
}

/// Folds the fleet's log into the report.
pub(super) fn summarize(
    options: &SchedulerBenchOptions,
    registration: Duration,
    elapsed: Duration,
    cpu: Option<CpuTimes>,
    jobs: &[(JobId, Instant, Instant)],
    log: &FleetLog,
) -> SchedulerBenchReport {
    // Per job and stage: first launch, last completion.
    let mut first_launch: HashMap<(&str, u32), Instant> = HashMap::new();
    for launch in &log.launches {
        first_launch
            .entry((launch.job_id.as_str(), launch.stage_id))
            .and_modify(|t| *t = (*t).min(launch.at))
            .or_insert(launch.at);
    }
    let mut last_completion: HashMap<(&str, u32), Instant> = HashMap::new();
    for done in &log.completions {
        last_completion
            .entry((done.job_id.as_str(), done.stage_id))
            .and_modify(|t| *t = (*t).max(done.at))
            .or_insert(done.at);
    }
    // When a stage could start: when the stages before it in its job had
    // all reported, or (a first stage) its job's first launch. The
    // benchmark's jobs are a chain of stages numbered in order (a scan,
    // then an aggregate), so "before" is "with a lower id".
    let mut stages_of: HashMap<&str, Vec<u32>> = HashMap::new();
    for (job, stage) in first_launch.keys() {
        stages_of.entry(job).or_default().push(*stage);
    }
    let mut ready: HashMap<(&str, u32), Instant> = HashMap::new();
    let mut transitions = Vec::new();
    for (job, stages) in &mut stages_of {
        stages.sort_unstable();
        let job_start = stages
            .iter()
            .filter_map(|s| first_launch.get(&(*job, *s)))
            .min()
            .copied();
        for (i, stage) in stages.iter().enumerate() {
            let inputs_done = stages[..i]
                .iter()
                .filter_map(|s| last_completion.get(&(*job, *s)))
                .max()
                .copied();
            let at = match inputs_done {
                Some(done) => {
                    if let Some(first) = first_launch.get(&(*job, *stage)) {
                        transitions.push(first.saturating_duration_since(done));
                    }
                    done
                }
                None => match job_start {
                    Some(start) => start,
                    None => continue,
                },
            };
            ready.insert((*job, *stage), at);
        }
    }
    let task_latency: Vec<Duration> = log
        .launches
        .iter()
        .filter_map(|launch| {
            let ready = ready.get(&(launch.job_id.as_str(), launch.stage_id))?;
            let could_run = (*ready).max(launch.slot_free_at);
            Some(launch.at.saturating_duration_since(could_run))
        })
        .collect();
    let mut tasks_of: HashMap<&str, usize> = HashMap::new();
    for launch in &log.launches {
        *tasks_of.entry(launch.job_id.as_str()).or_default() += 1;
    }
    let submission_to_first_launch: Vec<Duration> = jobs
        .iter()
        .filter_map(|(id, submitted, _)| {
            let first = stages_of
                .get(id.as_str())?
                .iter()
                .filter_map(|s| first_launch.get(&(id.as_str(), *s)))
                .min()?;
            Some(first.saturating_duration_since(*submitted))
        })
        .collect();
    let job_list: Vec<JobFigures> = jobs
        .iter()
        .map(|(id, submitted, done)| JobFigures {
            job_id: id.to_string(),
            duration_ms: done.saturating_duration_since(*submitted).as_secs_f64() * 1000.0,
            tasks: tasks_of.get(id.as_str()).copied().unwrap_or(0),
        })
        .collect();
    let elapsed_secs = elapsed.as_secs_f64();
    SchedulerBenchReport {
        executors: options.executors,
        slots_per_executor: options.slots,
        partitions: options.partitions,
        task_time_ms: options.task_time.as_secs_f64() * 1000.0,
        concurrency: options.concurrency.max(1),
        registration_secs: registration.as_secs_f64(),
        jobs: jobs.len(),
        task_launches: log.launches.len(),
        launch_calls: log.launch_calls,
        answers_with_tasks: log.answers_with_tasks,
        answer_tasks: log.answer_tasks,
        launch_bytes_per_task: if log.launches.is_empty() {
            0.0
        } else {
            log.launch_bytes as f64 / log.launches.len() as f64
        },
        status_calls: log.status_calls,
        held_reports: log.held_reports,
        cleanup_calls: log.cleanup_calls,
        answer_cleanups: log.answer_cleanups,
        launch_cleanups: log.launch_cleanups,
        heartbeats: log.heartbeats,
        process_cpu_secs: cpu.map(|c| c.process.as_secs_f64()),
        scheduler_cpu_secs: cpu.map(|c| c.scheduler.as_secs_f64()),
        launches_per_scheduler_cpu_sec: cpu
            .filter(|c| !c.scheduler.is_zero())
            .map(|c| log.launches.len() as f64 / c.scheduler.as_secs_f64()),
        elapsed_secs,
        launches_per_sec: if elapsed_secs > 0.0 {
            log.launches.len() as f64 / elapsed_secs
        } else {
            0.0
        },
        task_latency: Percentiles::of(task_latency),
        stage_transition: Percentiles::of(transitions),
        submission_to_first_launch: Percentiles::of(submission_to_first_launch),
        job_duration: Percentiles::of(
            jobs.iter()
                .map(|(_, submitted, done)| done.saturating_duration_since(*submitted))
                .collect(),
        ),
        job_list,
    }
}

impl SchedulerBenchReport {
    /// The report as a table for the terminal.
    pub fn render(&self) -> String {
        let row = |name: &str, p: &Percentiles| {
            format!(
                "{name:<26} {:>9.2} {:>9.2} {:>9.2} {:>9.2}   ({} samples)\n",
                p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
            )
        };
        let mut out = String::new();
        out.push_str(&format!(
            "executors: {} x {} slots (simulated, registered over gRPC in {:.2}s)\n",
            self.executors, self.slots_per_executor, self.registration_secs
        ));
        out.push_str(&format!(
            "jobs: {} of 2 stages x {} tasks, {} at a time, tasks take {:.0} ms\n",
            self.jobs, self.partitions, self.concurrency, self.task_time_ms
        ));
        out.push_str(&format!(
            "task launches: {} in {:.2}s = {:.0} launches/s\n",
            self.task_launches, self.elapsed_secs, self.launches_per_sec
        ));
        if let (Some(process), Some(scheduler), Some(rate)) = (
            self.process_cpu_secs,
            self.scheduler_cpu_secs,
            self.launches_per_scheduler_cpu_sec,
        ) {
            out.push_str(&format!(
                "scheduler CPU: {scheduler:.2}s of the process's {process:.2}s ({:.0}%) = {rate:.0} \
                 launches per scheduler CPU-second ({:.0} us per launch)\n",
                100.0 * scheduler / process.max(f64::EPSILON),
                1e6 / rate.max(f64::EPSILON)
            ));
        }
        out.push_str(&format!(
            "calls: {} launch, {} status reports ({} held empty), {} cleanups, {} heartbeats\n\
             status report answers: {} carried {} tasks; {} job cleanups\n\
             job cleanups carried by launch calls: {}\n\
             launched tasks: {:.0} bytes each (encoded)\n\n",
            self.launch_calls,
            self.status_calls,
            self.held_reports,
            self.cleanup_calls,
            self.heartbeats,
            self.answers_with_tasks,
            self.answer_tasks,
            self.answer_cleanups,
            self.launch_cleanups,
            self.launch_bytes_per_task
        ));
        out.push_str(&format!(
            "{:<26} {:>9} {:>9} {:>9} {:>9}\n",
            "latency (ms)", "p50", "p90", "p99", "max"
        ));
        out.push_str(&row("task ready -> launched", &self.task_latency));
        out.push_str(&row("stage done -> next launch", &self.stage_transition));
        out.push_str(&row(
            "job submitted -> 1st launch",
            &self.submission_to_first_launch,
        ));
        out.push_str(&row("job submitted -> done", &self.job_duration));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50_ms, 51.0);
        assert_eq!(p.p90_ms, 90.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }
}
