//! `ballista-storage-local`: `file://` object stores restricted to configured
//! root folders.
//!
//! Not implemented yet: the framework's default
//! [`LocalFileSystemProvider`](ballista::plugin::storage::LocalFileSystemProvider)
//! serves unrestricted local files until the storage-plugins issue (#4) adds
//! the sandboxed provider here.
