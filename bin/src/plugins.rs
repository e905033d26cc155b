//! The plugins the stock binaries can select from TOML.

use ballista::plugin::registry::PluginRegistry;

/// The command that regenerates `docs/configuration.md`.
pub const REGENERATE_REFERENCE: &str =
    "cargo run -p ballista-bin --bin ballista -- config reference > docs/configuration.md";

/// Every plugin of the stock binaries: the framework's built-ins and the
/// first-party plugin crates (each crate adds its kinds here as it gains
/// them).
pub fn stock_registry() -> PluginRegistry {
    let mut registry = PluginRegistry::with_builtins();
    ballista_storage_local::register(&mut registry);
    ballista_storage_s3::register(&mut registry);
    ballista_memory::register(&mut registry);
    ballista_scheduling::register(&mut registry);
    registry
}

/// The configuration reference of the stock binaries (Markdown).
pub fn configuration_reference() -> String {
    ballista::config::reference::render_markdown(&stock_registry(), REGENERATE_REFERENCE)
}
