//! Configuration as operators meet it: the stock binaries started with TOML
//! files, environment variables and flags; bad settings refused at start-up;
//! secrets kept out of every output; the generated reference kept current.

use std::path::{Path, PathBuf};

use ballista::config::{BallistaSettings, REDACTED};
use ballista::plugin::registry::PluginRegistry;
use ballista_tests::cluster::{Finished, run_to_exit};

fn workspace() -> PathBuf {
    ballista_tests::repo_root()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `--print-config` of a stock binary, parsed back into settings.
fn printed_settings(binary: &str, args: &[&str], env: &[(&str, &str)]) -> BallistaSettings {
    let mut all = args.to_vec();
    all.push("--print-config");
    let run = run_to_exit(binary, &all, env, 60);
    assert_eq!(run.code, Some(0), "{binary} --print-config failed: {run:?}");
    toml::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--print-config printed invalid TOML ({e}):\n{}", run.stdout))
}

#[test]
fn every_example_config_loads_and_prints_back_the_same_settings() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        "examples/config",
        "examples/custom-scheduler",
        "examples/custom-executor",
    ] {
        for entry in std::fs::read_dir(workspace().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml")
                && path.file_name() != Some("Cargo.toml".as_ref())
            {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the example configs, found {files:?}"
    );
    for path in &files {
        let settings = BallistaSettings::load_with_env(Some(path), Vec::new())
            .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
        if path.parent().unwrap().ends_with("examples/config") {
            // The stock binaries accept them, plugins included, and print
            // back exactly what they loaded.
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // A `*cluster*` file serves both binaries.
            let binaries: &[&str] = if name.contains("executor") {
                &["ballista-executor"]
            } else if name.contains("cluster") {
                &["ballista-scheduler", "ballista-executor"]
            } else {
                &["ballista-scheduler"]
            };
            for binary in binaries {
                let printed = printed_settings(binary, &["--config", path.to_str().unwrap()], &[]);
                assert_eq!(
                    printed,
                    PluginRegistry::with_default_kinds(&settings),
                    "{} printed different settings ({binary})",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "executor.toml",
        "[executor]\nslots = 3\nport = 6001\nmemory_limit = \"1GiB\"\n",
    );
    let args = ["--config", file.as_str()];

    let from_file = printed_settings("ballista-executor", &args, &[]);
    assert_eq!(
        (from_file.executor.slots, from_file.executor.port),
        (3, 6001)
    );

    let env = [
        ("BALLISTA_EXECUTOR__SLOTS", "5"),
        ("BALLISTA_EXECUTOR__MEMORY_LIMIT", "2GiB"),
    ];
    let from_env = printed_settings("ballista-executor", &args, &env);
    assert_eq!(from_env.executor.slots, 5);
    assert_eq!(from_env.executor.memory_limit.unwrap().of(0), 2 << 30);
    assert_eq!(
        from_env.executor.port, 6001,
        "keys not in the environment keep the file's value"
    );

    let with_flags = [
        "--config",
        file.as_str(),
        "--slots",
        "7",
        "--memory-limit",
        "3GiB",
    ];
    let from_flag = printed_settings("ballista-executor", &with_flags, &env);
    assert_eq!(from_flag.executor.slots, 7);
    // `--slots 0` means one per core, as `slots = 0` in the file does.
    let per_core = printed_settings(
        "ballista-executor",
        &["--config", file.as_str(), "--slots", "0"],
        &env,
    );
    assert_eq!(per_core.executor.slots, 0);
    let too_many = run_to_exit(
        "ballista-executor",
        &["--slots", "5000", "--print-config"],
        &[],
        60,
    );
    assert_ne!(too_many.code, Some(0), "{too_many:?}");
    assert_eq!(too_many.code, Some(2), "{too_many:?}");
    assert!(
        too_many
            .stderr
            .contains("--slots 5000: expected at most 1024"),
        "the flag is named: {too_many:?}"
    );
    assert_eq!(from_flag.executor.memory_limit.unwrap().of(0), 3 << 30);
    assert_eq!(from_flag.executor.port, 6001);

    let scheduler = printed_settings(
        "ballista-scheduler",
        &["--port", "7000"],
        &[
            ("BALLISTA_SCHEDULER__PORT", "6500"),
            ("BALLISTA_SHUFFLE__COMPRESSION", "zstd"),
        ],
    );
    assert_eq!(scheduler.scheduler.port, 7000);
    assert_eq!(scheduler.shuffle.kind.as_deref(), Some("local-disk"));
    assert_eq!(scheduler.shuffle.options["compression"], "zstd");
}

/// Starts `binary` for real (not `--print-config`) and expects it to stop
/// at once with a configuration error.
fn refused(binary: &str, toml: &str, env: &[(&str, &str)]) -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.toml", toml);
    let mut args = vec![
        "--config",
        file.as_str(),
        "--bind-host",
        "127.0.0.1",
        "--port",
        "0",
    ];
    if binary == "ballista-executor" {
        args.extend(["--scheduler-url", "http://127.0.0.1:9"]);
    }
    let run = run_to_exit(binary, &args, env, 60);
    assert_eq!(
        run.code,
        Some(2),
        "{binary} should refuse {toml:?} {env:?}: {run:?}"
    );
    assert!(!run.stdout.contains("listening on"), "{run:?}");
    run
}

/// Binary, TOML, environment, and what its error must mention.
type RefusalCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn bad_keys_values_and_types_stop_start_up_naming_the_key() {
    let cases: &[RefusalCase] = &[
        // An unknown key.
        (
            "ballista-executor",
            "[executor]\nslotz = 3\n",
            &[],
            &[
                "executor.slotz",
                "unknown field `slotz`",
                "expected one of",
                "bad.toml",
            ],
        ),
        // A bad value of the right type.
        (
            "ballista-executor",
            "[executor]\nmemory_limit = \"lots\"\n",
            &[],
            &["executor.memory_limit", "\"lots\"", "512MiB"],
        ),
        // A size past 2^64 bytes is refused, not clamped.
        (
            "ballista-executor",
            "[shuffle]\nkind = \"local-disk\"\nmemory_max_output = \"20000000TiB\"\n",
            &[],
            &["shuffle.memory_max_output", "\"20000000TiB\"", "too large"],
        ),
        (
            "ballista-executor",
            "",
            &[("BALLISTA_EXECUTOR__MEMORY_LIMIT", "99999999999999999999")],
            &[
                "executor.memory_limit",
                "too large",
                "BALLISTA_EXECUTOR__MEMORY_LIMIT",
            ],
        ),
        // A wrong type.
        (
            "ballista-scheduler",
            "[scheduler]\nport = \"fast\"\n",
            &[],
            &[
                "scheduler.port",
                "invalid type: string \"fast\"",
                "expected u16",
            ],
        ),
        // A bad value from the environment names the variable.
        (
            "ballista-scheduler",
            "",
            &[("BALLISTA_SCHEDULER__TASK_MAX_ATTEMPTS", "many")],
            &[
                "scheduler.task_max_attempts",
                "\"many\"",
                "environment variable BALLISTA_SCHEDULER__TASK_MAX_ATTEMPTS",
            ],
        ),
        // Values types cannot rule out.
        (
            "ballista-scheduler",
            "[scheduler]\ntask_max_attempts = 0\n",
            &[],
            &["scheduler.task_max_attempts = 0", "expected at least 1"],
        ),
        (
            "ballista-executor",
            "[executor]\nscheduler_url = \"localhost:50050\"\n",
            &[],
            &["executor.scheduler_url", "\"localhost:50050\"", "http://"],
        ),
        // Listener limits that contradict each other, or a count of zero.
        (
            "ballista-executor",
            "[executor.server]\nmax_control_message_bytes = \"1GiB\"\n",
            &[],
            &[
                "executor.server.max_control_message_bytes = 1GiB",
                "expected at most executor.server.max_plan_message_bytes (256MiB)",
            ],
        ),
        (
            "ballista-scheduler",
            "[scheduler.limits]\nmax_jobs_per_session = 0\n",
            &[],
            &[
                "scheduler.limits.max_jobs_per_session = 0",
                "expected at least 1",
            ],
        ),
        (
            "ballista-executor",
            "[executor]\nslots = 5000\n",
            &[],
            &["executor.slots = 5000", "expected at most 1024"],
        ),
        // Session defaults: each key, value and range is checked.
        (
            "ballista-scheduler",
            "[scheduler.session]\n\"datafusion.execution.batch_size\" = \"abc\"\n",
            &[],
            &[
                "scheduler.session.\"datafusion.execution.batch_size\" = \"abc\"",
                "Error parsing 'abc' as usize",
            ],
        ),
        (
            "ballista-scheduler",
            "[scheduler.session]\n\"datafusion.execution.batch_sise\" = \"8192\"\n",
            &[],
            &[
                "scheduler.session.\"datafusion.execution.batch_sise\" = \"8192\"",
                "batch_sise",
            ],
        ),
        (
            "ballista-scheduler",
            "[scheduler.session]\n\"datafusion.execution.batch_size\" = \"100000000\"\n",
            &[],
            &[
                "scheduler.session.\"datafusion.execution.batch_size\"",
                "outside the range this cluster allows",
                "scheduler.limits.max_batch_size",
            ],
        ),
        (
            "ballista-scheduler",
            "[scheduler.session]\n\"datafusion.catalog.location\" = \"data/tables\"\n",
            &[],
            &[
                "scheduler.session.\"datafusion.catalog.location\" = \"data/tables\"",
                "expected a URL such as",
            ],
        ),
        (
            "ballista-scheduler",
            "[scheduler.session]\n\"ballista.memory_quota\" = \"lots\"\n",
            &[],
            &["scheduler.session.\"ballista.memory_quota\"", "\"lots\""],
        ),
        // A key in a table of tables.
        (
            "ballista-scheduler",
            "[[scheduler.tables]]\nname = \"t\"\nlocation = \"/x\"\nformat = \"xls\"\n",
            &[],
            &[
                "scheduler.tables[0].format",
                "unknown variant `xls`",
                "parquet",
            ],
        ),
        // Plugin options, checked by the plugin.
        (
            "ballista-executor",
            "[shuffle]\ncompression = \"brotli\"\n",
            &[],
            &["shuffle.compression", "unknown variant `brotli`", "lz4"],
        ),
        (
            "ballista-executor",
            "[memory]\nkind = \"shared\"\nlimit = \"1GiB\"\n",
            &[],
            &["memory.limit", "unknown field `limit`"],
        ),
        // A plugin kind this binary does not have.
        (
            "ballista-scheduler",
            "[scheduling]\nkind = \"lottery\"\n",
            &[],
            &[
                "scheduling.kind = \"lottery\"",
                "registered: \"fair\", \"fifo\", \"priority\"",
            ],
        ),
        (
            "ballista-scheduler",
            "[[storage]]\nkind = \"mount\"\nscheme = \"w\"\n",
            &[],
            &["storage[0].kind = \"mount\"", "no storage plugin"],
        ),
    ];
    for (binary, toml, env, expected) in cases {
        let run = refused(binary, toml, env);
        for needle in *expected {
            assert!(
                run.stderr.contains(needle),
                "{binary} with {toml:?} {env:?}: stderr lacks {needle:?}:\n{}",
                run.stderr
            );
        }
    }
}

#[test]
fn secrets_stay_out_of_printed_settings_logs_and_errors() {
    // --print-config renders settings through this; plugin options with
    // secret names are hidden before any plugin has parsed them.
    let settings: BallistaSettings = toml::from_str(
        "[shuffle]\nkind = \"local-disk\"\nsecret_access_key = \"AKIA-SECRET-1\"\n[[storage]]\nkind = \"s3\"\nsession_token = \"TOKEN-SECRET-1\"\nregion = \"eu-west-1\"\n",
    )
    .unwrap();
    let printed = ballista_bin::server::render_settings(&settings).unwrap();
    assert!(!printed.contains("SECRET-1"), "{printed}");
    assert!(
        printed.contains(REDACTED) && printed.contains("eu-west-1"),
        "{printed}"
    );
    let debugged = format!("{settings:?}");
    assert!(!debugged.contains("SECRET-1"), "{debugged}");

    let mut runs = vec![
        // A TOML syntax error quotes the broken line.
        refused(
            "ballista-executor",
            "[shuffle]\nsecret_access_key = \"AKIA-SECRET-2\nregion = 1\n",
            &[],
        ),
        // An option the plugin refuses, from the file and from the environment.
        refused(
            "ballista-executor",
            "[shuffle]\nsecret_access_key = \"AKIA-SECRET-3\"\n",
            &[],
        ),
        refused(
            "ballista-scheduler",
            "",
            &[("BALLISTA_SHUFFLE__SESSION_TOKEN", "TOKEN-SECRET-4")],
        ),
        // A plugin this binary lacks.
        refused(
            "ballista-scheduler",
            "[[storage]]\nkind = \"s3\"\nsecret_access_key = \"AKIA-SECRET-5\"\n",
            &[("RUST_LOG", "debug")],
        ),
        // A session default the scheduler refuses: the error names the key,
        // not the value.
        refused(
            "ballista-scheduler",
            "[scheduler.session]\n\"ballista.secret_access_key\" = \"AKIA-SECRET-7\"\n",
            &[],
        ),
    ];
    // The settings also reach the logs of a process that starts: print them
    // at debug level and look.
    runs.push(run_to_exit(
        "ballista-scheduler",
        &["--print-config"],
        &[
            ("RUST_LOG", "debug"),
            ("BALLISTA_SCHEDULING__API_TOKEN", "TOKEN-SECRET-6"),
        ],
        60,
    ));
    for run in runs {
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert!(!all.contains("SECRET-"), "a secret leaked:\n{all}");
        assert!(!all.trim().is_empty(), "the refusal says nothing");
    }
}

#[test]
fn the_configuration_reference_is_current() {
    let path = workspace().join("docs/configuration.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = ballista_bin::plugins::configuration_reference();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/configuration.md is stale (first difference at line {}: committed {:?}, generated {:?}).\nRegenerate it with:\n    {}",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end>"),
            generated.lines().nth(line).unwrap_or("<end>"),
            ballista_bin::plugins::REGENERATE_REFERENCE
        );
    }
}

#[test]
fn s3_credentials_are_hidden_by_print_config_and_by_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3-secret-value-that-must-not-leak";
    let key_id = "AKIAEXAMPLEKEYID";
    let accepted = write(
        dir.path(),
        "s3.toml",
        &format!(
            "[[storage]]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\n\
             access_key_id = \"{key_id}\"\nsecret_access_key = \"{secret}\"\n"
        ),
    );
    let run = run_to_exit(
        "ballista-scheduler",
        &["--config", &accepted, "--print-config"],
        &[],
        60,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("secret_access_key = \"{REDACTED}\"")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("endpoint = \"http://127.0.0.1:9000\""));
    for output in [&run.stdout, &run.stderr] {
        assert!(
            !output.contains(secret) && !output.contains(key_id),
            "{output}"
        );
    }

    // A refused S3 table (half the static keys) names the key, not the value.
    let refused = write(
        dir.path(),
        "half.toml",
        &format!("[[storage]]\nkind = \"s3\"\nsecret_access_key = \"{secret}\"\n"),
    );
    let run = run_to_exit("ballista-executor", &["--config", &refused], &[], 60);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("access_key_id"), "{}", run.stderr);
    assert!(!run.stderr.contains(secret) && !run.stdout.contains(secret));
}
