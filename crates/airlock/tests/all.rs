//! Integration tests: each boots real sandboxes through the `airlock` binary.
//! The first test to run builds the guest kernel if it is not cached (several minutes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
