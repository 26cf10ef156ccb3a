mod audit;
mod harden;
mod policy;
mod run;
