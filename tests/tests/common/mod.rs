//! Code shared by the multi-process tests.

pub mod register;
