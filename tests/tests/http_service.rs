//! The HTTP services of stock scheduler and executor processes: the REST
//! API while TPC-H queries run, Prometheus `/metrics` (checked by
//! `promtool`, Debian's `prometheus` package, which `scripts/test.sh`
//! installs), health checks, and the API's credentials and ownership rules.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ballista::client::SessionContextExt;
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::tpch_data;
use ballista_tests::http::{
    HttpAnswer, admin_authorization, basic, get, http_url, post, request, sample,
};
use ballista_tests::queries::statements;
use ballista_tests::secured::{LONG_QUERY, cluster_with_users, log_in, sql_request, submit};
use ballista_tests::session::{TrackedSession, expected};
use datafusion::prelude::SessionContext;
use serde_json::Value;

fn ok_json(answer: &HttpAnswer, what: &str) -> Value {
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    answer.json()
}

fn u64_of(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {value}"))
}

/// An error answer: its status, and a JSON body of the kind and a message
/// containing `needle`.
fn assert_api_error(answer: &HttpAnswer, status: u16, kind: &str, needle: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["error"]["kind"], kind, "{}", answer.body);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

/// Checks one finished job against its stages and their tasks: every task
/// is listed and done, and the tasks add up to their stage.
async fn check_job_adds_up(base: &str, auth: &str, job_id: &str, result_rows: u64) {
    let job = ok_json(
        &get(
            base,
            &format!("/api/v1/jobs/{job_id}"),
            &[("authorization", auth)],
        )
        .await,
        "job",
    );
    assert_eq!(job["state"], "succeeded", "{job}");
    let progress = &job["progress"];
    assert_eq!(
        u64_of(progress, "tasks_completed"),
        u64_of(progress, "tasks_total"),
        "{job}"
    );
    let stages = job["stages"].as_array().expect("stages");
    assert!(stages.len() >= 2, "a TPC-H query has exchanges: {job}");
    let ids: HashSet<u64> = stages.iter().map(|s| u64_of(s, "stage_id")).collect();
    let mut task_total = 0;
    for stage in stages {
        let id = u64_of(stage, "stage_id");
        // The DAG's edges point both ways and name real stages.
        for input in stage["inputs"].as_array().unwrap() {
            let input = input.as_u64().unwrap();
            assert!(ids.contains(&input), "stage {id} reads unknown {input}");
            let producer = stages
                .iter()
                .find(|s| u64_of(s, "stage_id") == input)
                .unwrap();
            assert!(
                producer["consumers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c.as_u64() == Some(id)),
                "stage {input} does not list {id} as a consumer"
            );
        }
        let tasks = ok_json(
            &get(
                base,
                &format!("/api/v1/jobs/{job_id}/stages/{id}/tasks"),
                &[("authorization", auth)],
            )
            .await,
            "tasks",
        );
        let tasks = tasks.as_array().unwrap();
        let counts = &stage["tasks"];
        assert_eq!(tasks.len() as u64, u64_of(counts, "total"), "stage {id}");
        assert_eq!(
            u64_of(counts, "done"),
            u64_of(counts, "total"),
            "stage {id}"
        );
        assert!(
            tasks.iter().all(|t| t["state"] == "done"),
            "stage {id}: {tasks:?}"
        );
        let rows: u64 = tasks.iter().map(|t| u64_of(t, "output_rows")).sum();
        let bytes: u64 = tasks.iter().map(|t| u64_of(t, "output_bytes")).sum();
        assert_eq!(rows, u64_of(stage, "output_rows"), "stage {id} rows");
        assert_eq!(bytes, u64_of(stage, "output_bytes"), "stage {id} bytes");
        let durations = &stage["task_durations"];
        assert!(u64_of(durations, "min_ms") <= u64_of(durations, "median_ms"));
        assert!(u64_of(durations, "median_ms") <= u64_of(durations, "max_ms"));
        let slowest = durations["slowest_partition"]
            .as_u64()
            .expect("a slowest task");
        assert_eq!(
            u64_of(&tasks[slowest as usize], "duration_ms"),
            u64_of(durations, "max_ms")
        );
        // EXPLAIN ANALYZE-style figures of every operator of the stage.
        let text = stage["metrics_text"].as_str().unwrap();
        assert!(
            text.starts_with("ShuffleWriterExec") && text.contains("output_rows="),
            "stage {id}: {text}"
        );
        assert!(!stage["operators"].as_array().unwrap().is_empty());
        if stage["is_final"] == true {
            assert_eq!(rows, result_rows, "the final stage writes the result");
        }
        task_total += tasks.len() as u64;
    }
    assert_eq!(task_total, u64_of(progress, "tasks_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_lists_tpch_jobs_whose_stages_and_tasks_add_up() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let mut cluster = TestCluster::start(2, 2, None).await;
    let base = http_url(&mut cluster.scheduler);
    let auth = admin_authorization();
    let session = TrackedSession::new(&cluster.scheduler_url, &data, &[]).await;

    // Queries run in the background while the API is polled.
    const QUERIES: [usize; 4] = [1, 3, 9, 18];
    let jobs = session.jobs();
    let ctx = session.ctx.clone();
    let running = tokio::spawn(async move {
        let mut results = Vec::new();
        for q in QUERIES {
            let sql = statements(q)[0];
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            results.push((q, batches));
        }
        results
    });
    let mut seen_running = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen_running.is_none() && !running.is_finished() {
        assert!(Instant::now() < deadline, "no job was seen running");
        let list = ok_json(
            &get(
                &base,
                "/api/v1/jobs?state=running",
                &[("authorization", &auth)],
            )
            .await,
            "running jobs",
        );
        if let Some(job) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|j| !j["progress"].is_null())
        {
            let id = job["job_id"].as_str().unwrap().to_string();
            let detail = ok_json(
                &get(
                    &base,
                    &format!("/api/v1/jobs/{id}"),
                    &[("authorization", &auth)],
                )
                .await,
                "a running job",
            );
            assert!(!detail["stages"].as_array().unwrap().is_empty(), "{detail}");
            assert!(detail["query"].as_str().unwrap().len() > 10, "{detail}");
            seen_running = Some(id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let results = running.await.unwrap();
    assert!(seen_running.is_some(), "the API never listed a running job");

    let ids = jobs.lock().clone();
    assert_eq!(ids.len(), QUERIES.len(), "one job per query");
    for ((q, batches), job_id) in results.iter().zip(&ids) {
        let want = expected(&data, statements(*q)[0]).await;
        ballista_tests::compare::compare(&want, batches).unwrap_or_else(|e| panic!("q{q}: {e}"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        check_job_adds_up(&base, &auth, job_id.as_str(), rows as u64).await;
    }
    let list = ok_json(
        &get(&base, "/api/v1/jobs", &[("authorization", &auth)]).await,
        "jobs",
    );
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    // Newest first.
    let newest_first: Vec<String> = ids.iter().rev().map(|j| j.to_string()).collect();
    assert_eq!(listed, newest_first);

    let executors = ok_json(
        &get(&base, "/api/v1/executors", &[("authorization", &auth)]).await,
        "executors",
    );
    let executors = executors.as_array().unwrap();
    assert_eq!(executors.len(), 2);
    for e in executors {
        assert_eq!(u64_of(e, "slots"), 2);
        assert_eq!(e["state"], "active");
        assert!(u64_of(&e["memory"], "budget_bytes") > 0, "{e}");
        assert!(
            cluster
                .executor_ids
                .contains(&e["executor_id"].as_str().unwrap().to_string())
        );
    }
    let summary = ok_json(
        &get(&base, "/api/v1/cluster", &[("authorization", &auth)]).await,
        "cluster",
    );
    assert_eq!(u64_of(&summary, "executors"), 2);
    assert_eq!(u64_of(&summary, "slots_total"), 4);
    assert_eq!(u64_of(&summary, "jobs_finished"), QUERIES.len() as u64);

    // Bad requests get an error naming what was wrong, as JSON.
    let no_credentials = get(&base, "/api/v1/jobs", &[]).await;
    assert_api_error(
        &no_credentials,
        401,
        "unauthenticated",
        "POST /api/v1/login",
    );
    assert_eq!(
        no_credentials.header("www-authenticate"),
        Some("Bearer realm=\"ballista\"")
    );
    assert_api_error(
        &get(&base, "/api/v1/jobs/..%2Fetc", &[("authorization", &auth)]).await,
        400,
        "invalid_input",
        "invalid job id",
    );
    assert_api_error(
        &get(&base, "/api/v1/jobs/nosuchjob", &[("authorization", &auth)]).await,
        404,
        "not_found",
        "nosuchjob",
    );
    assert_api_error(
        &get(
            &base,
            "/api/v1/jobs?state=sleeping",
            &[("authorization", &auth)],
        )
        .await,
        400,
        "invalid_input",
        "state=sleeping",
    );
    let job_id = ids[0].to_string();
    assert_api_error(
        &get(
            &base,
            &format!("/api/v1/jobs/{job_id}/stages/x/tasks"),
            &[("authorization", &auth)],
        )
        .await,
        400,
        "invalid_input",
        "expected a stage number",
    );
    assert_api_error(
        &get(
            &base,
            &format!("/api/v1/jobs/{job_id}/stages/999/tasks"),
            &[("authorization", &auth)],
        )
        .await,
        404,
        "not_found",
        "no stage 999",
    );
    assert_api_error(
        &get(&base, "/api/v2/jobs", &[]).await,
        404,
        "not_found",
        "no such route",
    );
    ballista_tests::probe::assert_processes_up(&mut cluster);
}

/// `promtool check metrics` on `text`: its findings, empty when clean.
fn promtool(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot be run ({e}): scripts/test.sh installs it (Debian's \
                 prometheus package)"
            )
        });
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        findings.trim().to_string()
    } else {
        format!("promtool failed ({}): {findings}", output.status)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_count_a_known_workload() {
    let mut cluster = TestCluster::start(1, 2, None).await;
    let scheduler = http_url(&mut cluster.scheduler);
    let executor = http_url(&mut cluster.executors[0]);
    let before = get(&scheduler, "/metrics", &[]).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert!(
        before
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        before.headers
    );
    let executor_before = get(&executor, "/metrics", &[]).await.body;

    // Three jobs that shuffle, and one cancelled.
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    // Every planned task runs (none coalesced), so the launches are known.
    ctx.sql("SET ballista.task_input_bytes = 0").await.unwrap();
    for _ in 0..3 {
        let batches = ctx
            .sql("SELECT value % 10 AS k, count(*) FROM generate_series(1, 200000) GROUP BY k")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    }
    let client = ballista::client::SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let long = submit(&client, sql_request(LONG_QUERY, &[])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(client.cancel(&long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let after = get(&scheduler, "/metrics", &[]).await.body;
    let executor_after = get(&executor, "/metrics", &[]).await.body;
    let moved = |text_before: &str, text_after: &str, name: &str| {
        sample(text_after, name) - sample(text_before, name)
    };
    assert_eq!(
        moved(&before.body, &after, "ballista_jobs_submitted_total"),
        4.0,
        "{after}"
    );
    assert_eq!(
        moved(&before.body, &after, "ballista_jobs_succeeded_total"),
        3.0,
        "{after}"
    );
    assert_eq!(
        moved(&before.body, &after, "ballista_jobs_cancelled_total"),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved(&before.body, &after, "ballista_jobs_failed_total"),
        0.0,
        "{after}"
    );
    assert_eq!(
        moved(
            &before.body,
            &after,
            "ballista_job_duration_seconds_count{state=\"succeeded\"}"
        ),
        3.0,
        "{after}"
    );
    let launched = moved(&before.body, &after, "ballista_task_launches_total");
    assert!(
        launched >= 9.0,
        "3 jobs of several stages: {launched} launches"
    );
    assert_eq!(sample(&after, "ballista_executors"), 1.0);
    assert_eq!(sample(&after, "ballista_executors_registered_total"), 1.0);
    // The executor ran those tasks, wrote and read shuffle data, and served
    // the results over Flight.
    let started = moved(
        &executor_before,
        &executor_after,
        "ballista_executor_tasks_started_total",
    );
    assert!(
        started >= launched,
        "{started} started of {launched} launched"
    );
    assert!(
        moved(
            &executor_before,
            &executor_after,
            "ballista_shuffle_written_bytes_total"
        ) > 0.0
    );
    assert!(
        moved(
            &executor_before,
            &executor_after,
            "ballista_shuffle_fetched_bytes_total{source=\"local\"}"
        ) > 0.0,
        "{executor_after}"
    );
    assert!(
        moved(
            &executor_before,
            &executor_after,
            "ballista_flight_requests_total{method=\"DoGet\"}"
        ) >= 3.0,
        "{executor_after}"
    );
    assert_eq!(
        moved(
            &executor_before,
            &executor_after,
            "ballista_executor_tasks_failed_total{kind=\"cancelled\"}"
        ),
        1.0,
        "the cancelled job's task: {executor_after}"
    );
    // Their map outputs stayed in memory (the default), none was refused.
    assert!(
        moved(
            &executor_before,
            &executor_after,
            "ballista_shuffle_memory_committed_bytes_total"
        ) > 0.0,
        "{executor_after}"
    );
    assert_eq!(
        sample(
            &executor_after,
            "ballista_shuffle_memory_refused_outputs_total"
        ),
        0.0
    );
    assert_eq!(sample(&executor_after, "ballista_executor_slots"), 2.0);
    assert_eq!(sample(&executor_after, "ballista_executor_registered"), 1.0);
    assert!(sample(&executor_after, "ballista_memory_budget_bytes") > 0.0);

    for (what, text) in [
        ("scheduler, fresh", before.body.as_str()),
        ("scheduler", after.as_str()),
        ("executor, fresh", executor_before.as_str()),
        ("executor", executor_after.as_str()),
    ] {
        assert_eq!(
            promtool(text),
            "",
            "promtool on the {what} metrics:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_flip_while_an_executor_drains() {
    let mut cluster =
        TestCluster::start_with(1, 1, None, Some("[executor]\ndrain_timeout_secs = 4\n")).await;
    let scheduler = http_url(&mut cluster.scheduler);
    let executor = http_url(&mut cluster.executors[0]);
    for base in [&scheduler, &executor] {
        let health = get(base, "/healthz", &[]).await;
        assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
        let ready = get(base, "/readyz", &[]).await;
        assert_eq!(
            (ready.status, ready.body.as_str()),
            (200, "ready\n"),
            "{base}"
        );
    }

    // A task that runs until cancelled keeps the executor draining.
    let client = ballista::client::SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let job = submit(&client, sql_request(LONG_QUERY, &[])).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sample(
        &get(&executor, "/metrics", &[]).await.body,
        "ballista_executor_running_tasks",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "the long task never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.executors[0].terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    let draining = loop {
        let ready = get(&executor, "/readyz", &[]).await;
        if ready.status != 200 {
            break ready;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (draining.status, draining.body.as_str()),
        (503, "draining\n")
    );
    // Alive all the same, and saying so in its metrics.
    assert_eq!(get(&executor, "/healthz", &[]).await.status, 200);
    assert_eq!(
        sample(
            &get(&executor, "/metrics", &[]).await.body,
            "ballista_executor_draining"
        ),
        1.0
    );
    assert_eq!(get(&scheduler, "/readyz", &[]).await.status, 200);

    // Once it has left, nothing answers there.
    let code = cluster.executors[0]
        .wait_exit(Duration::from_secs(30))
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(
        request(&executor, "GET", "/healthz", &[], "")
            .await
            .is_err()
    );
    assert_eq!(get(&scheduler, "/healthz", &[]).await.status, 200);
    let _ = client.cancel(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_checks_credentials_and_job_ownership() {
    let (mut cluster, _users) = cluster_with_users().await;
    let base = http_url(&mut cluster.scheduler);

    let wrong = post(
        &base,
        "/api/v1/login",
        &[("authorization", &basic("alice", "nope"))],
    )
    .await;
    assert_api_error(
        &wrong,
        401,
        "unauthenticated",
        "wrong user name or password",
    );
    let login = |user: &'static str, password: &'static str| {
        let base = base.clone();
        async move {
            let answer = post(
                &base,
                "/api/v1/login",
                &[("authorization", &basic(user, password))],
            )
            .await;
            let body = ok_json(&answer, "login");
            assert_eq!(body["user"], user);
            format!("Bearer {}", body["token"].as_str().unwrap())
        }
    };
    let alice = login("alice", "alice-pw").await;
    let bob = login("bob", "bob-pw").await;
    let whoami = ok_json(
        &get(&base, "/api/v1/whoami", &[("authorization", &alice)]).await,
        "whoami",
    );
    assert_eq!(whoami, serde_json::json!({"user": "alice", "admin": false}));

    let alice_client = log_in(&cluster, "alice", "alice-pw").await;
    let job = submit(&alice_client, sql_request(LONG_QUERY, &[])).await;
    let path = format!("/api/v1/jobs/{job}");
    let detail = ok_json(
        &get(&base, &path, &[("authorization", &alice)]).await,
        "alice's job",
    );
    assert_eq!(detail["owner"], "alice");
    assert_eq!(detail["tenant"], "ta");
    assert_eq!(detail["query"], LONG_QUERY);
    // A password on each call works too.
    assert_eq!(
        get(
            &base,
            &path,
            &[("authorization", &basic("alice", "alice-pw"))]
        )
        .await
        .status,
        200
    );

    // Bob neither sees nor cancels it.
    assert_api_error(
        &get(&base, &path, &[("authorization", &bob)]).await,
        403,
        "permission_denied",
        "belongs to another user",
    );
    let bobs_list = ok_json(
        &get(&base, "/api/v1/jobs", &[("authorization", &bob)]).await,
        "bob's jobs",
    );
    assert_eq!(bobs_list, serde_json::json!([]));
    let cancel = format!("{path}/cancel");
    assert_api_error(
        &post(&base, &cancel, &[("authorization", &bob)]).await,
        403,
        "permission_denied",
        "only its owner or an admin may cancel it",
    );
    // A page of another site cannot cancel it with Alice's credentials.
    assert_api_error(
        &post(
            &base,
            &cancel,
            &[("authorization", &alice), ("origin", "http://evil.example")],
        )
        .await,
        403,
        "permission_denied",
        "may not change this cluster",
    );
    let admin = admin_authorization();
    let all = ok_json(
        &get(&base, "/api/v1/jobs", &[("authorization", &admin)]).await,
        "all jobs",
    );
    assert_eq!(all.as_array().unwrap().len(), 1);

    let cancelled = ok_json(
        &post(&base, &cancel, &[("authorization", &alice)]).await,
        "cancel",
    );
    assert_eq!(cancelled["state"], "cancelled");
    let detail = ok_json(
        &get(&base, &path, &[("authorization", &alice)]).await,
        "alice's job",
    );
    assert_eq!(detail["state"], "cancelled");
    assert_eq!(detail["error_kind"], "cancelled");
    // Its tasks stopped with it: none is left running.
    for stage in detail["stages"].as_array().unwrap() {
        assert_eq!(stage["tasks"]["running"], 0, "{stage}");
        let id = u64_of(stage, "stage_id");
        let tasks = ok_json(
            &get(
                &base,
                &format!("{path}/stages/{id}/tasks"),
                &[("authorization", &alice)],
            )
            .await,
            "tasks",
        );
        assert!(
            tasks
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["state"] != "running"),
            "{tasks}"
        );
    }
    assert_api_error(
        &post(&base, &cancel, &[("authorization", &alice)]).await,
        400,
        "invalid_input",
        "has already ended",
    );
    let wrong_method = request(&base, "DELETE", &path, &[("authorization", &alice)], "")
        .await
        .unwrap();
    assert_api_error(&wrong_method, 405, "invalid_input", "DELETE is not served");
    assert!(
        detail["error"]
            .as_str()
            .unwrap()
            .contains("cancelled on request"),
        "{detail}"
    );
    ballista_tests::probe::assert_processes_up(&mut cluster);
}
