//! An embedded cluster: a scheduler and executors in this process, talking
//! over real gRPC and Flight on loopback, exactly as separate processes do.

use std::time::{Duration, Instant};

use crate::auth::SecretKey;
use crate::client::{ClientAuth, SchedulerClient};
use crate::config::{BallistaConfig, MemoryAmount};
use crate::error::{BallistaError, Result};
use crate::executor::{DEFAULT_MEMORY_FRACTION, ExecutorHandle, start_executor};
use crate::scheduler::{SchedulerHandle, start_scheduler};
use crate::tls::TlsTrust;

/// A scheduler and its executors running in this process.
#[derive(Debug)]
pub struct EmbeddedCluster {
    scheduler_url: String,
    /// The key its members share, made for it alone: its client, in the
    /// same process, is its administrator.
    cluster_key: SecretKey,
    _scheduler: SchedulerHandle,
    _executors: Vec<ExecutorHandle>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SchedulerHandle({})", self.local_addr())
    }
}

impl std::fmt::Debug for ExecutorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExecutorHandle({})", self.address().id)
    }
}

impl EmbeddedCluster {
    /// Starts a scheduler and `executors` executors on loopback ports chosen
    /// by the OS, and waits until every executor has registered.
    pub async fn start(mut config: BallistaConfig, executors: usize) -> Result<Self> {
        let cluster_key = match &config.cluster_key {
            Some(key) => key.clone(),
            None => SecretKey::random()?,
        };
        config.cluster_key = Some(cluster_key.clone());
        let mut scheduler_config = config.clone();
        scheduler_config.settings.scheduler.bind_host = "127.0.0.1".into();
        scheduler_config.settings.scheduler.port = 0;
        // Several embedded clusters may run on one machine: the HTTP
        // service runs only on a port set for it.
        let http = &mut scheduler_config.settings.scheduler.http;
        http.enabled &= http.port.is_some();
        if scheduler_config
            .settings
            .scheduler
            .catalog
            .location
            .is_empty()
        {
            scheduler_config.settings.scheduler.catalog.location = "memory".into();
        }
        let scheduler = start_scheduler(scheduler_config).await?;
        let scheduler_url = scheduler.url();

        let executors = executors.max(1);
        // Executors in one process share its machine: unless a limit is set,
        // they split the share one executor would take alone.
        let memory_limit = config
            .settings
            .executor
            .memory_limit
            .or(Some(MemoryAmount::Fraction(
                DEFAULT_MEMORY_FRACTION / executors as f64,
            )));
        let mut handles = Vec::new();
        for _ in 0..executors {
            let mut executor_config = config.clone();
            let settings = &mut executor_config.settings.executor;
            settings.bind_host = "127.0.0.1".into();
            settings.external_host = Some("127.0.0.1".into());
            settings.port = 0;
            settings.http.enabled = false;
            settings.scheduler_url = scheduler_url.clone();
            settings.heartbeat_interval_secs = settings.heartbeat_interval_secs.max(1);
            settings.memory_limit = memory_limit;
            handles.push(start_executor(executor_config).await?);
        }

        let client = SchedulerClient::connect_trusting(
            &scheduler_url,
            ClientAuth::ClusterKey(cluster_key.clone()),
            &TlsTrust::from_settings_or_env(&config.settings.tls)?,
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let registered = client.executors().await?.len();
            if registered >= handles.len() {
                break;
            }
            if Instant::now() > deadline {
                return Err(BallistaError::Timeout(format!(
                    "only {registered} of {} embedded executors registered within 30s",
                    handles.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            scheduler_url,
            cluster_key,
            _scheduler: scheduler,
            _executors: handles,
        })
    }

    /// URL of the embedded scheduler.
    pub fn scheduler_url(&self) -> &str {
        &self.scheduler_url
    }

    /// How a client in this process connects to it: as its administrator.
    pub fn client_auth(&self) -> ClientAuth {
        ClientAuth::ClusterKey(self.cluster_key.clone())
    }
}
