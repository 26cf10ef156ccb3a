//! One module per subcommand.

pub mod audit;
pub mod doctor;
pub mod image;
pub mod overlay;
pub mod policy;
pub mod run;
