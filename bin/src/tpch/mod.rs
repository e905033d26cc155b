//! TPC-H: data generation, the 22 query texts, result comparison and the
//! benchmark runner behind `ballista tpch`.

pub mod bench;
pub mod command;
pub mod compare;
pub mod datagen;
pub mod processes;
pub mod queries;
