//! The plugin seams of Ballista.
//!
//! Each seam is an object-safe trait with a framework default. Custom binaries
//! choose implementations with [`BallistaConfig::builder()`](crate::config::BallistaConfig::builder);
//! the scheduler and executor only ever reach storage, memory, scheduling and
//! shuffle through these traits.
//!
//! | seam | trait | default |
//! |---|---|---|
//! | storage | [`storage::ObjectStoreProvider`] | [`storage::LocalFileSystemProvider`] (`file://`) |
//! | memory | [`memory::MemoryManager`] | [`memory::ExecutorMemoryManager`]: one bounded pool per executor |
//! | scheduling | [`scheduling::TaskSchedulingPolicy`] | [`scheduling::FifoPolicy`]: submission order |
//! | shuffle | [`shuffle::ShuffleWriter`] / [`shuffle::ShuffleReader`] | [`shuffle::local`]: compressed Arrow IPC files served over Flight |
//! | auth | [`auth::Authenticator`] | [`auth::UsersFileAuthenticator`]: users and argon2 hashes from a TOML file |
//!
//! The stock binaries choose plugins from TOML instead: each seam's table
//! names a registered `kind`, and the [`registry`] turns it into a component.

pub mod auth;
pub mod memory;
pub mod registry;
pub mod scheduling;
pub mod shuffle;
pub mod storage;
