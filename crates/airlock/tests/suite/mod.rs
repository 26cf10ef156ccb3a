mod audit;
mod daemon;
mod fs;
mod harden;
mod image;
mod net;
mod policy;
mod run;
