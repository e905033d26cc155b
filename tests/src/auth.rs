//! Credentials for tests that call the services with raw gRPC clients.
//! The stock processes the tests start share the default cluster key file
//! (`~/.ballista/cluster.key`, created by the first of them).

use ballista::auth::{AuthChannel, CallCredentials, SecretKey, default_key_file, read_key_file};
use ballista::flight::flight_endpoint;
use ballista::proto::scheduler_grpc_client::SchedulerGrpcClient;

/// The cluster key of the test processes.
pub fn cluster_key() -> SecretKey {
    let path = default_key_file().expect("the default key file's location");
    read_key_file(&path).unwrap_or_else(|e| panic!("the test cluster's key: {e}"))
}

/// The cluster administrator's credentials.
pub fn admin() -> CallCredentials {
    CallCredentials::Admin(cluster_key())
}

/// An executor's registering as `id`.
pub fn register(id: &str) -> CallCredentials {
    CallCredentials::Register {
        cluster: cluster_key(),
        id: id.to_string(),
    }
}

/// A cluster member's (executor `id`) on another executor's Flight service.
pub fn member(id: &str) -> CallCredentials {
    CallCredentials::Member {
        cluster: cluster_key(),
        id: id.to_string(),
    }
}

/// A raw scheduler client sending `credentials`.
pub async fn scheduler_grpc(
    url: &str,
    credentials: &CallCredentials,
) -> SchedulerGrpcClient<AuthChannel> {
    let channel = flight_endpoint(url, &Default::default())
        .expect("a valid URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    SchedulerGrpcClient::new(credentials.wrap(channel))
}
