//! The scheduler's Arrow Flight SQL service, as a Flight SQL client sees
//! it on stock processes. So far: the login (issue 17 builds the rest).

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightDescriptor, HandshakeRequest};
use ballista_tests::secured::{assert_serves, channel, cluster_with_users};
use tonic::Code;
use tonic::metadata::MetadataValue;

/// A hand-shake presenting `authorization: <header>`; the token answered
/// in the response header, or the refusal.
async fn handshake_with(url: &str, header: &str) -> Result<String, tonic::Status> {
    let mut client = FlightServiceClient::new(channel(url).await);
    let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::try_from(header).unwrap());
    let response = client.handshake(request).await?;
    let token = response
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .expect("a bearer token in the response header");
    Ok(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_sql_client_logs_in_and_renews_with_its_token() {
    let (mut cluster, _dir) = cluster_with_users().await;
    let url = cluster.scheduler_url.clone();

    // arrow-flight's own Flight SQL client: Basic in, Bearer out.
    let mut client = FlightSqlServiceClient::new(channel(&url).await);
    let payload = client.handshake("alice", "alice-pw").await.expect("login");
    let token = client.token().cloned().expect("the client keeps the token");
    assert!(token.starts_with("bt1.alice."), "{token}");
    assert_eq!(payload, token.as_bytes(), "the payload carries it too");

    // The JDBC driver's `token=` mode hand-shakes with the token: answered
    // back as it is.
    let renewed = handshake_with(&url, &format!("Bearer {token}"))
        .await
        .expect("a valid token hand-shakes");
    assert_eq!(renewed, token);

    // Refusals: a wrong password, a forged token, another user's name in a
    // token signed for alice.
    let mut wrong = FlightSqlServiceClient::new(channel(&url).await);
    let error = wrong
        .handshake("alice", "nope")
        .await
        .expect_err("wrong password");
    assert!(
        error.to_string().contains("wrong user name or password"),
        "{error}"
    );
    for forged in [
        "Bearer bt1.alice.99999999999.00".to_string(),
        format!("Bearer {}", token.replacen("alice", "bob", 1)),
        "Bearer not-a-token".to_string(),
    ] {
        let status = handshake_with(&url, &forged)
            .await
            .expect_err("a forged token");
        assert_eq!(status.code(), Code::Unauthenticated, "{forged}: {status:?}");
        assert!(
            status.message().contains("not valid for this cluster"),
            "{forged}: {status:?}"
        );
    }

    // An executor answers the token back too (clients that read results
    // from executors hand-shake there first), and refuses anyone else.
    let executor = ballista_tests::secured::executor_url(&cluster).await;
    let echoed = handshake_with(&executor, &format!("Bearer {token}"))
        .await
        .expect("the executor takes the scheduler's token");
    assert_eq!(echoed, token);
    let status = handshake_with(&executor, "Bearer not-a-token")
        .await
        .expect_err("a forged token at the executor");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Flight SQL calls other than the hand-shake need the token.
    let mut anonymous = FlightServiceClient::new(channel(&url).await);
    let status = anonymous
        .get_flight_info(FlightDescriptor::new_cmd(b"SELECT 1".to_vec()))
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_serves(&mut cluster).await;
}
