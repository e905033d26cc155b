//! Noticing a dead executor in seconds rather than after the heartbeat
//! timeout.
//!
//! When a process dies (killed, crashed, out of memory) the kernel closes
//! its listening socket, and a connection to its port is refused at once.
//! A live process, however busy, still has its connections completed by
//! the kernel from the accept backlog. So a refused connection says the
//! process is gone, never that it is slow: the scheduler probes every
//! executor running tasks once a second and declares one lost after two
//! refusals in a row, and its tasks run again elsewhere. A host that
//! vanishes outright (no refusal, only silence) still falls to the
//! heartbeat timeout.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use tokio::net::TcpStream;

use super::SchedulerInner;
use crate::ids::ExecutorId;
use crate::plugin::shuffle::ExecutorAddress;

/// How often executors running tasks are probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe that neither connects nor is refused within this long says
/// nothing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Refusals in a row after which an executor is lost (one could be a
/// process that is restarting its listener; two a second apart is not).
const REFUSALS_TO_LOSE: u32 = 2;

/// Probes executors running tasks until the scheduler is gone.
pub(super) async fn probe_executors(scheduler: Weak<SchedulerInner>) {
    let mut refusals: HashMap<ExecutorId, u32> = HashMap::new();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets = match scheduler.upgrade() {
            Some(inner) => inner.state.lock().busy_executors(),
            None => return,
        };
        let probes = targets.iter().map(refuses_connections);
        let outcomes = futures::future::join_all(probes).await;
        refusals.retain(|id, _| targets.iter().any(|a| &a.id == id));
        for (address, refused) in targets.into_iter().zip(outcomes) {
            if !refused {
                refusals.remove(&address.id);
                continue;
            }
            let count = refusals.entry(address.id.clone()).or_default();
            *count += 1;
            if *count < REFUSALS_TO_LOSE {
                continue;
            }
            refusals.remove(&address.id);
            let Some(inner) = scheduler.upgrade() else {
                return;
            };
            let reason = format!(
                "its port {}:{} refuses connections: the process is gone",
                address.host, address.port
            );
            let effects = inner.state.lock().executor_lost(&address.id, &reason);
            inner.apply(effects);
            inner.admit_queued();
        }
    }
}

/// Whether a connection to the executor's port is refused (as opposed to
/// accepted, timed out or failed otherwise, which prove nothing).
async fn refuses_connections(address: &ExecutorAddress) -> bool {
    let connect = TcpStream::connect((address.host.as_str(), address.port));
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, connect).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
