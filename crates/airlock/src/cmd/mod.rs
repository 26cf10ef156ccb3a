//! One module per subcommand.

pub mod agent;
pub mod args;
pub mod audit;
pub mod daemon;
pub mod doctor;
pub mod image;
pub mod layers;
pub mod mcp;
pub mod overlay;
pub mod policy;
pub mod remote;
pub mod run;
pub mod stream;
pub mod webui;
