//! TLS on every listener, on real scheduler and executor processes with
//! certificates from `ballista certs generate`: all 22 TPC-H queries run
//! for a password user with every connection (client, executors,
//! scheduler, shuffle) encrypted; a client trusting another CA fails the
//! handshake; plain text sent to a TLS port gets an error saying to use
//! https://; a listener with TLS may bind beyond loopback, and takes a new
//! certificate on SIGHUP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ballista::BallistaError;
use ballista::client::{ClientAuth, SchedulerClient, SessionContextExt};
use ballista::config::{BallistaConfig, Secret};
use ballista::plugin::auth::hash_password;
use ballista::tls::TlsTrust;
use ballista_tests::bench;
use ballista_tests::cluster::{Process, TestCluster, listening_port, run_to_exit};
use ballista_tests::data::tpch_data;
use ballista_tests::secured::assert_error;
use datafusion::prelude::SessionContext;
use tonic::Code;

/// Runs `ballista certs generate DIR` and returns DIR.
fn generate_certificates(dir: &Path) -> PathBuf {
    let dir_arg = dir.display().to_string();
    let done = run_to_exit(
        "ballista",
        &["certs", "generate", &dir_arg, "--host", "ballista.test"],
        &[],
        60,
    );
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(
        done.stdout.contains("ca.pem") && done.stdout.contains("ballista.test"),
        "{}",
        done.stdout
    );
    // A second run would replace the CA under running processes: refused.
    let again = run_to_exit("ballista", &["certs", "generate", &dir_arg], &[], 60);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    dir.to_path_buf()
}

fn trust(certs: &Path) -> TlsTrust {
    TlsTrust::from_ca_file(&certs.join("ca.pem")).expect("CA file")
}

/// A TLS cluster (scheduler and `executors` executors of two slots) whose
/// user alice (password `alice-pw`) may read `readable`.
async fn tls_cluster(
    certs: &Path,
    executors: usize,
    readable: &Path,
) -> (TestCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.alice]\npassword_hash = \"{}\"\nread = [\"file://{}/\"]\n",
            hash_password("alice-pw").unwrap(),
            readable.display()
        ),
    )
    .unwrap();
    let ca = certs.join("ca.pem");
    let scheduler = format!(
        "[scheduler.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n[tls]\nca_file = \"{}\"\n\n\
         [auth]\nusers_file = \"{}\"\n",
        certs.join("scheduler.pem").display(),
        certs.join("scheduler.key").display(),
        ca.display(),
        users.display()
    );
    let executor = format!(
        "[executor.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n[tls]\nca_file = \"{}\"\n",
        certs.join("executor.pem").display(),
        certs.join("executor.key").display(),
        ca.display()
    );
    let cluster = TestCluster::start_serving(
        executors,
        2,
        Some(&scheduler),
        Some(&executor),
        Some(trust(certs)),
    )
    .await;
    (cluster, dir)
}

fn alice_config(ca_file: Option<PathBuf>) -> BallistaConfig {
    let mut config = BallistaConfig::default();
    config.settings.client.user = Some("alice".into());
    config.settings.client.password = Some(Secret::new("alice-pw"));
    config.settings.tls.ca_file = ca_file;
    config
}

fn alice() -> ClientAuth {
    ClientAuth::Password {
        user: "alice".into(),
        password: Secret::new("alice-pw"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_22_tpch_queries_through_an_authenticated_tls_cluster_match_datafusion() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1)
        .canonicalize()
        .unwrap();
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = generate_certificates(certs_dir.path());
    let (cluster, _users) = tls_cluster(&certs, 2, &data).await;
    assert!(cluster.scheduler_url.starts_with("https://"));

    let distributed = SessionContext::remote_with_config(
        &cluster.scheduler_url,
        alice_config(Some(certs.join("ca.pem"))),
    )
    .await
    .expect("alice connects over TLS");
    bench::register_tables(&distributed, &data)
        .await
        .expect("register tables");
    let local = ballista_tests::local_tpch_session(&data).await;
    let failures = ballista_tests::tpch_differences(&distributed, &local, 1..=22).await;
    assert!(
        failures.is_empty(),
        "{} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Shuffles crossed between the two executors, over TLS: neither logged
    // a failed fetch or handshake, nor panicked.
    for executor in &cluster.executors {
        for needle in ["panicked", "fetch failed", "TLS handshake failed"] {
            assert!(
                executor.stderr_lines_containing(needle).is_empty(),
                "{needle}: {}",
                executor.logs()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_another_ca_fails_the_tls_handshake() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = generate_certificates(certs_dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let other = generate_certificates(other_dir.path());
    let (mut cluster, _users) = tls_cluster(&certs, 1, certs_dir.path()).await;
    let url = cluster.scheduler_url.clone();

    let refused = SchedulerClient::connect_trusting(&url, alice(), &trust(&other))
        .await
        .expect_err("a server signed by an untrusted CA");
    assert_error(
        &refused,
        "unavailable: ",
        "invalid peer certificate: UnknownIssuer",
        "wrong CA",
    );
    assert_error(
        &refused,
        "unavailable: ",
        &format!(
            "the server's certificate is not one this client trusts: it trusts the CA in {}",
            other.join("ca.pem").display()
        ),
        "wrong CA hint",
    );
    // The system's roots do not know a development CA either.
    let refused = SchedulerClient::connect_trusting(&url, alice(), &TlsTrust::system_roots())
        .await
        .expect_err("system roots");
    assert_error(
        &refused,
        "unavailable: ",
        "no tls.ca_file is set",
        "system roots",
    );
    // The CLI says the same.
    let other_ca = other.join("ca.pem").display().to_string();
    let cli = run_to_exit(
        "ballista",
        &[
            "sql",
            "--scheduler",
            &url,
            "--user",
            "alice",
            "--ca-file",
            &other_ca,
            "-c",
            "SELECT 1",
        ],
        &[("BALLISTA_PASSWORD", "alice-pw")],
        60,
    );
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert!(
        cli.stderr.contains("invalid peer certificate")
            && cli.stderr.contains("not one this client trusts"),
        "{}",
        cli.stderr
    );
    // With the right CA the CLI answers.
    let right_ca = certs.join("ca.pem").display().to_string();
    let cli = run_to_exit(
        "ballista",
        &[
            "sql",
            "--scheduler",
            &url,
            "--user",
            "alice",
            "--ca-file",
            &right_ca,
            "-c",
            "SELECT 41 + 1 AS x",
            "--format",
            "csv",
        ],
        &[("BALLISTA_PASSWORD", "alice-pw")],
        60,
    );
    assert_eq!(cli.code, Some(0), "{cli:?}");
    assert!(cli.stdout.contains("42"), "{}", cli.stdout);
    assert!(cluster.scheduler.is_running());
    assert!(cluster.executors[0].is_running());
    let _ = &mut cluster;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_to_a_tls_port_fails_saying_to_use_https() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = generate_certificates(certs_dir.path());
    let (cluster, _users) = tls_cluster(&certs, 1, certs_dir.path()).await;
    let plain_url = cluster.scheduler_url.replace("https://", "http://");

    // The scheduler: a password login over plain text.
    let refused = SchedulerClient::connect_trusting(&plain_url, alice(), &trust(&certs))
        .await
        .expect_err("plain text to a TLS port");
    assert_error(
        &refused,
        "configuration error: ",
        "the scheduler serves TLS on this port: connect with an https:// URL",
        "plain text to the scheduler",
    );
    // The executor: a Flight call over plain text.
    let executors =
        SchedulerClient::connect_trusting(&cluster.scheduler_url, ClientAuth::Auto, &cluster.trust)
            .await
            .unwrap()
            .executors()
            .await
            .unwrap();
    let executor = executors[0].metadata.clone().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://{}:{}",
        executor.host, executor.port
    ))
    .unwrap()
    .connect()
    .await
    .expect("a TCP and HTTP/2 connection");
    let mut flight = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let status = flight
        .do_get(arrow_flight::Ticket::new("x"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("the executor serves TLS on this port: connect with an https:// URL"),
        "{status:?}"
    );
    // The CLI says the same.
    let cli = run_to_exit(
        "ballista",
        &[
            "sql",
            "--scheduler",
            &plain_url,
            "--user",
            "alice",
            "-c",
            "SELECT 1",
        ],
        &[("BALLISTA_PASSWORD", "alice-pw")],
        60,
    );
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert!(
        cli.stderr
            .contains("serves TLS on this port: connect with an https:// URL"),
        "{}",
        cli.stderr
    );

    // Both processes serve TLS callers as before.
    let session = SessionContext::remote_with_config(
        &cluster.scheduler_url,
        alice_config(Some(certs.join("ca.pem"))),
    )
    .await
    .unwrap();
    assert_eq!(
        ballista_tests::probe::single_i64(
            &session,
            "SELECT count(*) FROM generate_series(1, 1000)"
        )
        .await,
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_scheduler_may_listen_beyond_loopback_and_takes_a_new_certificate_on_sighup() {
    let first_dir = tempfile::tempdir().unwrap();
    let first = generate_certificates(first_dir.path());
    let second_dir = tempfile::tempdir().unwrap();
    let second = generate_certificates(second_dir.path());
    // The files the scheduler is configured with: the first CA's for now.
    let served = tempfile::tempdir().unwrap();
    let cert = served.path().join("scheduler.pem");
    let key = served.path().join("scheduler.key");
    std::fs::copy(first.join("scheduler.pem"), &cert).unwrap();
    std::fs::copy(first.join("scheduler.key"), &key).unwrap();
    let config = served.path().join("scheduler.toml");
    std::fs::write(
        &config,
        format!(
            "[scheduler.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();

    // With TLS it binds all interfaces without --insecure.
    let mut scheduler = Process::start(
        "scheduler",
        "ballista-scheduler",
        &[
            "--bind-host".into(),
            "0.0.0.0".into(),
            "--port".into(),
            "0".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &[],
    );
    let line = scheduler.wait_for_stdout("listening on", Duration::from_secs(60));
    assert!(line.contains("listening on 0.0.0.0:"), "{line}");
    let url = format!("https://127.0.0.1:{}", listening_port(&line));
    let admin = |certs: &Path| {
        let trust = trust(certs);
        let url = url.clone();
        async move {
            SchedulerClient::connect_trusting(&url, ClientAuth::Auto, &trust)
                .await?
                .executors()
                .await
        }
    };
    admin(&first).await.expect("the first CA is trusted");
    admin(&second).await.expect_err("not yet the second");

    // A renewed certificate: written in place, then SIGHUP.
    std::fs::copy(second.join("scheduler.pem"), &cert).unwrap();
    std::fs::copy(second.join("scheduler.key"), &key).unwrap();
    scheduler.signal(libc::SIGHUP);
    scheduler.wait_for_stderr("reloaded the TLS certificate", Duration::from_secs(10));
    admin(&second)
        .await
        .expect("new connections get the new certificate");
    let stale = admin(&first).await.expect_err("the old CA no longer");
    assert!(matches!(stale, BallistaError::Unavailable(_)), "{stale:?}");

    // A broken file on the next SIGHUP keeps the certificate in use.
    std::fs::write(&key, "not a key").unwrap();
    scheduler.signal(libc::SIGHUP);
    scheduler.wait_for_stderr("kept the TLS certificate in use", Duration::from_secs(10));
    admin(&second).await.expect("still serving the good one");
    assert!(scheduler.is_running());
}

/// Runs `binary args…` (with `--config` of a file holding `toml`, when
/// given) and checks it exits 2 with `needle` on stderr.
fn refused_at_start(binary: &str, args: &[&str], toml: Option<&str>, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let config_arg = config.display().to_string();
    let mut all = args.to_vec();
    if let Some(toml) = toml {
        std::fs::write(&config, toml).unwrap();
        all.extend(["--config", &config_arg]);
    }
    let finished = run_to_exit(binary, &all, &[], 30);
    assert_eq!(finished.code, Some(2), "{binary} {all:?}: {finished:?}");
    assert!(
        finished.stderr.contains(needle),
        "{binary} {all:?}: {}",
        finished.stderr
    );
}

#[test]
fn half_a_tls_configuration_or_a_mixed_cluster_is_refused_at_start_naming_the_key() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = generate_certificates(certs_dir.path());
    let file = |name: &str| certs.join(name).display().to_string();
    let tls = |cert: &str, key: &str| {
        format!(
            "[scheduler.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            file(cert),
            file(key)
        )
    };
    let scheduler = ["--port", "0"];
    refused_at_start(
        "ballista-scheduler",
        &scheduler,
        Some(&format!(
            "[scheduler.tls]\ncert_file = \"{}\"\n",
            file("scheduler.pem")
        )),
        "scheduler.tls.key_file is not set but cert_file is",
    );
    // A key that is not the certificate's.
    refused_at_start(
        "ballista-scheduler",
        &scheduler,
        Some(&tls("scheduler.pem", "executor.key")),
        "does not go with the certificate",
    );
    // `ballista config check` finds a missing certificate as start-up would.
    refused_at_start(
        "ballista",
        &["config", "check"],
        Some(&tls("missing.pem", "scheduler.key")),
        &format!(
            "scheduler.tls.cert_file = {}: cannot read it",
            file("missing.pem")
        ),
    );
    // An executor without a certificate in a TLS cluster.
    refused_at_start(
        "ballista-executor",
        &["--port", "0", "--scheduler-url", "https://127.0.0.1:1"],
        None,
        "is https:// but executor.tls names no certificate",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_secured_cluster_config_runs_as_documented() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().canonicalize().unwrap();
    // The set-up steps of the example, with its /etc/ballista here.
    generate_certificates(&etc.join("certs"));
    // The example's cluster key, the same as this machine's default one so
    // that the test's administrator client is a member too.
    let default_key = ballista::auth::default_key_file().unwrap();
    ballista::auth::read_or_create_key_file(&default_key).unwrap();
    std::fs::copy(&default_key, etc.join("cluster.key")).unwrap();
    let data = etc.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("t.csv"), "a,b\n1,2\n3,4\n").unwrap();
    let example_users = std::fs::read_to_string(
        ballista_tests::repo_root().join("examples/secured-cluster/users.toml"),
    )
    .unwrap();
    // Its hash is of "change-me", as it says: alice logs in with it below.
    std::fs::write(
        etc.join("users.toml"),
        example_users.replace("file:///data/", &format!("file://{}/", data.display())),
    )
    .unwrap();
    let example = std::fs::read_to_string(
        ballista_tests::repo_root().join("examples/secured-cluster/cluster.toml"),
    )
    .unwrap()
    .replace("/etc/ballista", &etc.display().to_string())
    .replace("scheduler.internal", "127.0.0.1");

    let cluster = TestCluster::start_serving(
        1,
        2,
        Some(&example),
        Some(&example),
        Some(trust(&etc.join("certs"))),
    )
    .await;
    let config = etc.join("cluster.toml");
    std::fs::write(&config, &example).unwrap();
    let config_arg = config.display().to_string();
    let sql = format!(
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}/t.csv' \
         OPTIONS ('format.has_header' 'true'); SELECT sum(a + b) AS s FROM t",
        data.display()
    );
    let cli = run_to_exit(
        "ballista",
        &[
            "sql",
            "--config",
            &config_arg,
            "--scheduler",
            &cluster.scheduler_url,
            "--user",
            "alice",
            "-c",
            &sql,
            "--format",
            "csv",
        ],
        &[("BALLISTA_PASSWORD", "change-me")],
        60,
    );
    assert_eq!(cli.code, Some(0), "{cli:?}");
    assert!(cli.stdout.contains("\n10"), "{}", cli.stdout);
    // Outside her grants, alice reads nothing.
    let cli = run_to_exit(
        "ballista",
        &[
            "sql",
            "--config",
            &config_arg,
            "--scheduler",
            &cluster.scheduler_url,
            "--user",
            "alice",
            "-c",
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd' \
             OPTIONS ('format.delimiter' ':', 'format.has_header' 'false'); SELECT * FROM p",
        ],
        &[("BALLISTA_PASSWORD", "change-me")],
        60,
    );
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert!(
        cli.stderr
            .contains("permission denied: user alice may not read file:///etc/passwd"),
        "{}",
        cli.stderr
    );
    // The operator's CLI with the same file is the administrator through
    // its [cluster] key_file, even where no default key exists.
    let elsewhere = tempfile::tempdir().unwrap();
    let elsewhere = elsewhere.path().display().to_string();
    let status = run_to_exit(
        "ballista",
        &[
            "job",
            "status",
            "0123456789abcdef",
            "--config",
            &config_arg,
            "--scheduler",
            &cluster.scheduler_url,
        ],
        &[("HOME", &elsewhere), ("BALLISTA_HOME", &elsewhere)],
        60,
    );
    assert_eq!(status.code, Some(1), "{status:?}");
    assert!(
        status
            .stderr
            .contains("not found: job 0123456789abcdef is not known to this scheduler"),
        "the administrator is told the job is unknown: {}",
        status.stderr
    );
}

#[test]
fn a_client_sends_no_password_to_another_machine_in_plain_text_unless_told_to() {
    // 192.0.2.1 (TEST-NET-1) routes nowhere: the refusal must come before
    // any connection is tried.
    let args = [
        "sql",
        "--scheduler",
        "http://192.0.2.1:50050",
        "--user",
        "alice",
        "-c",
        "SELECT 1",
    ];
    let refused = run_to_exit("ballista", &args, &[("BALLISTA_PASSWORD", "alice-pw")], 30);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains(
            "configuration error: refusing to send alice's password to http://192.0.2.1:50050 \
             in plain text"
        ) && refused.stderr.contains("--insecure"),
        "{}",
        refused.stderr
    );
    // Told to, it tries (and cannot reach the address).
    let mut insecure = args.to_vec();
    insecure.push("--insecure");
    let tried = run_to_exit(
        "ballista",
        &insecure,
        &[("BALLISTA_PASSWORD", "alice-pw")],
        30,
    );
    assert_eq!(tried.code, Some(1), "{tried:?}");
    assert!(
        tried
            .stderr
            .contains("cannot reach the scheduler at http://192.0.2.1:50050"),
        "{}",
        tried.stderr
    );
}
