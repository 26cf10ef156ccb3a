//! One module per subcommand.

pub mod doctor;
pub mod policy;
pub mod run;
