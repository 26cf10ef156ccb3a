mod audit;
mod fs;
mod harden;
mod policy;
mod run;
