//! `ballista-storage-s3`: `s3://` object stores built on `object_store`'s
//! S3 client, and object-store shuffle.
//!
//! Not implemented yet: arrives with the storage-plugins issue (#4).
