//! Integration tests: each boots real sandboxes through the `airlock` binary.
//! The first test to run builds the guest kernel if it is not cached (several minutes).

mod suite;
