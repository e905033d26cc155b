//! The documentation's examples stay true.

use ballista::config::{BallistaSettings, TableFormat};

#[test]
fn readme_configuration_example_loads() {
    let readme = std::fs::read_to_string(ballista_tests::repo_root().join("README.md")).unwrap();
    let start = readme
        .find("```toml\n")
        .expect("a TOML example in the README")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.toml");
    std::fs::write(&path, &readme[start..end]).unwrap();

    let settings =
        BallistaSettings::load_with_env(Some(&path), Vec::new()).expect("the README example loads");
    assert_eq!(settings.scheduler.port, 50050);
    assert_eq!(settings.scheduler.tables.len(), 2);
    assert_eq!(settings.scheduler.tables[1].format, TableFormat::Csv);
    assert_eq!(settings.executor.slots, 8);
    assert_eq!(settings.executor.memory_limit.unwrap().of(0), 16 << 30);
    assert_eq!(settings.executor.advertised_host(), "worker-1.internal");
}
