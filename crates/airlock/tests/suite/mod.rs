mod harden;
mod policy;
mod run;
