//! The container image and Kubernetes manifests: the manifests validate
//! against the Kubernetes schemas (`kubernetes-validate` from PyPI, which
//! `scripts/test.sh` installs), their settings load as the stock binaries
//! load them, their probes and limits agree with those settings, and the
//! Dockerfile builds with the steps the README gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use ballista::config::BallistaSettings;
use serde_json::Value;

fn repo() -> PathBuf {
    ballista_tests::repo_root()
}

/// A program of the test virtual environment (next to its interpreter).
fn venv_program(name: &str) -> PathBuf {
    let python = std::env::var_os("BALLISTA_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "BALLISTA_TEST_PYTHON is not set: run the tests with scripts/test.sh, which \
             installs kubernetes-validate into a virtual environment and sets it"
        )
    });
    PathBuf::from(python)
        .parent()
        .expect("the venv's bin folder")
        .join(name)
}

const MANIFESTS: [&str; 3] = ["scheduler.yaml", "executor.yaml", "network-policy.yaml"];

/// The documents of a manifest, as JSON (through the venv's PyYAML).
fn documents(file: &str) -> Vec<Value> {
    let path = repo().join("deploy/kubernetes").join(file);
    let output = Command::new(venv_program("python"))
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn container(documents: &[Value], deployment: &str) -> (Value, Value) {
    let deployment = documents
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == deployment)
        .unwrap_or_else(|| panic!("no Deployment {deployment}"));
    let pod = deployment["spec"]["template"]["spec"].clone();
    (pod["containers"][0].clone(), pod)
}

/// Bytes of a Kubernetes quantity such as `4Gi`.
fn quantity_bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| c.is_alphabetic()).unwrap());
    let scale: u64 = match unit {
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other}"),
    };
    number.parse::<u64>().unwrap() * scale
}

#[test]
fn the_kubernetes_manifests_validate_and_agree_with_their_settings() {
    let dir = repo().join("deploy/kubernetes");
    let output = Command::new(venv_program("kubernetes-validate"))
        .arg("--strict")
        .args(MANIFESTS.iter().map(|m| dir.join(m)))
        .output()
        .expect("kubernetes-validate runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert_eq!(
        report.matches(" passed for resource ").count(),
        5,
        "{report}"
    );

    // The ConfigMap's file is a valid configuration of both processes.
    let settings = BallistaSettings::load(Some(&dir.join("ballista.toml")))
        .unwrap_or_else(|e| panic!("deploy/kubernetes/ballista.toml: {e}"));
    settings.validate().unwrap();
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    for file in MANIFESTS.iter().chain(&["ballista.toml"]) {
        assert!(
            kustomization.contains(&format!("- {file}")),
            "{file} not in kustomization.yaml"
        );
    }

    let scheduler = documents("scheduler.yaml");
    let (container, _) = self::container(&scheduler, "ballista-scheduler");
    let http = settings.scheduler.http.port.unwrap();
    assert_eq!(container["ports"][1]["containerPort"], http);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let service = scheduler.iter().find(|d| d["kind"] == "Service").unwrap();
    let url_port = settings.executor.scheduler_url.rsplit(':').next().unwrap();
    assert!(
        settings
            .executor
            .scheduler_url
            .contains(service["metadata"]["name"].as_str().unwrap()),
        "executors reach the scheduler through its Service"
    );
    assert_eq!(service["spec"]["ports"][0]["port"].to_string(), url_port);

    // Every pod can read the users file the configuration names (each
    // process checks the whole configuration when it starts).
    let users_file = settings.auth.options["users_file"]
        .as_str()
        .unwrap()
        .to_string();
    let users_dir = Path::new(&users_file)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mounts_users = |container: &Value| {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == users_dir.as_str())
    };
    assert!(mounts_users(
        &self::container(&scheduler, "ballista-scheduler").0
    ));
    let executor = documents("executor.yaml");
    assert!(mounts_users(
        &self::container(&executor, "ballista-executor").0
    ));
    let (container, pod) = self::container(&executor, "ballista-executor");
    assert_eq!(
        container["ports"][1]["containerPort"],
        settings.executor.http.port.unwrap()
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // The executor advertises its pod's IP.
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        command
            .windows(2)
            .any(|w| w == ["--external-host", "$(POD_IP)"]),
        "{command:?}"
    );
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    // A drain fits in the grace period, with the 12 s delivering results
    // and deregistering may take.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        settings.executor.drain_timeout_secs + 12 < grace,
        "drain {} s + 12 s must fit in {grace} s",
        settings.executor.drain_timeout_secs
    );
    // What tasks may reserve fits under the container's memory limit.
    let limit = quantity_bytes(container["resources"]["limits"]["memory"].as_str().unwrap());
    assert!(
        settings.executor.memory_budget_bytes() < limit,
        "executor.memory_limit must be below the container's limit"
    );
}

#[test]
fn the_dockerfile_builds_with_the_steps_the_readme_gives() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("docker build -t ballista:0.1.0 ."),
        "the README's build command"
    );
    assert!(dockerfile.contains("docker build -t ballista:0.1.0 ."));
    // Every command the image's build runs is in the README, in order.
    let mut at = 0;
    for run in dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("RUN cargo "))
    {
        let step = format!("cargo {run}");
        let found = readme[at..]
            .find(&step)
            .unwrap_or_else(|| panic!("the README does not give `{step}`"));
        at += found;
    }
    for binary in ["ballista-scheduler", "ballista-executor", "ballista "] {
        assert!(
            dockerfile.contains(&format!("/src/target/release/{binary}")),
            "the image holds {binary}"
        );
    }
    // The image the manifests run is the one the README builds.
    let kustomization =
        std::fs::read_to_string(repo().join("deploy/kubernetes/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("newTag: \"0.1.0\""));
}
