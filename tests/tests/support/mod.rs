//! Helpers shared by the whole-system tests.
pub mod procs;
pub mod room;
