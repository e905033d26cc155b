//! The sandboxed local storage plugin (`[[storage]] kind = "local"`) on a
//! real cluster: queries may read and write under the configured roots only.
//! Each way out — a plain path, `..`, a symbolic link to a file, a symbolic
//! link to a folder, a COPY destination — is refused before the query runs,
//! with an error naming the path and the roots.

use std::path::Path;

use ballista::BallistaError;
use ballista::client::SessionContextExt;
use ballista_tests::cluster::TestCluster;
use datafusion::prelude::SessionContext;

fn write_csv(dir: &Path, rows: &[(i32, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::from("id,name\n");
    for (id, name) in rows {
        text.push_str(&format!("{id},{name}\n"));
    }
    std::fs::write(dir.join("data.csv"), text).unwrap();
}

async fn run(ctx: &SessionContext, sql: &str) -> Result<usize, BallistaError> {
    let batches = match ctx.sql(sql).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    }
    .map_err(BallistaError::from_datafusion)?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_allowed_roots_are_refused_each_way() {
    let base = tempfile::tempdir().unwrap();
    let base = base.path().canonicalize().unwrap();
    let allowed = base.join("allowed");
    let outside = base.join("outside");
    write_csv(&allowed.join("people"), &[(1, "ada"), (2, "grace")]);
    write_csv(&outside.join("secret"), &[(7, "hidden")]);
    std::os::unix::fs::symlink(
        outside.join("secret/data.csv"),
        allowed.join("linked-file.csv"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), allowed.join("linked-dir")).unwrap();

    let toml = format!(
        "[[storage]]\nkind = \"local\"\nroots = [\"{}\"]\n",
        allowed.display()
    );
    let cluster = TestCluster::start_with(1, 2, Some(&toml), Some(&toml)).await;
    // The client is the user's own process: it plans (and lists files)
    // without a sandbox; the cluster is what refuses.
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();

    let inside = format!(
        "CREATE EXTERNAL TABLE people STORED AS CSV LOCATION '{}/people/' OPTIONS ('format.has_header' 'true')",
        allowed.display()
    );
    run(&ctx, &inside).await.unwrap();
    assert_eq!(run(&ctx, "SELECT * FROM people").await.unwrap(), 2);

    let cases = [
        ("plain", format!("{}/secret/", outside.display())),
        (
            "dot-dot",
            format!("{}/../outside/secret/", allowed.display()),
        ),
        (
            "symlinked file",
            format!("{}/linked-file.csv", allowed.display()),
        ),
        (
            "symlinked folder",
            format!("{}/linked-dir/", allowed.display()),
        ),
    ];
    for (i, (case, location)) in cases.iter().enumerate() {
        run(
            &ctx,
            &format!(
                "CREATE EXTERNAL TABLE t{i} STORED AS CSV LOCATION '{location}' OPTIONS ('format.has_header' 'true')"
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{case}: the client itself may read {location}: {e}"));
        let error = run(&ctx, &format!("SELECT * FROM t{i}"))
            .await
            .expect_err(&format!("{case}: {location} must be refused"));
        assert!(
            matches!(error, BallistaError::PermissionDenied(_)),
            "{case}: expected PermissionDenied, got {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("outside the allowed local folders")
                && message.contains(&allowed.display().to_string()),
            "{case}: {message}"
        );
    }

    // Writes: outside refused before anything is written; inside allowed.
    let error = run(
        &ctx,
        &format!(
            "COPY (SELECT * FROM people) TO '{}/copied/' STORED AS CSV",
            outside.display()
        ),
    )
    .await
    .expect_err("COPY outside the roots must be refused");
    assert!(
        matches!(error, BallistaError::PermissionDenied(_)),
        "{error:?}"
    );
    assert!(!outside.join("copied").exists());
    run(
        &ctx,
        &format!(
            "COPY (SELECT * FROM people) TO '{}/copied/' STORED AS CSV",
            allowed.display()
        ),
    )
    .await
    .unwrap();
    let written: Vec<_> = std::fs::read_dir(allowed.join("copied"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !written.is_empty() && written.iter().all(|n| n.ends_with(".csv")),
        "{written:?}"
    );

    // Refusals left the cluster healthy.
    assert_eq!(run(&ctx, "SELECT * FROM people").await.unwrap(), 2);
}
