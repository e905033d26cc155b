//! `ballista-scheduling`: priority scheduling with aging, weighted-fair pools
//! and admission control.
//!
//! Not implemented yet: arrives with the scheduling issue (#6). Until then the
//! scheduler uses the framework default,
//! [`FifoPolicy`](ballista::plugin::scheduling::FifoPolicy).
