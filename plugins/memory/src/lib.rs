//! `ballista-memory`: quota-based memory pools per executor, job and tenant.
//!
//! Not implemented yet: arrives with the memory issue (#5). Until then
//! executors use the framework default,
//! [`ExecutorMemoryManager`](ballista::plugin::memory::ExecutorMemoryManager).
