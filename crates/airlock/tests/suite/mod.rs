mod audit;
mod fs;
mod harden;
mod net;
mod policy;
mod run;
