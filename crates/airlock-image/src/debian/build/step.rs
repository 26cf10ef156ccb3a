//! The Debian build's steps: `chroot <root> ...` with a clean environment, run and logged by
//! [`crate::steps::Steps`]. Called by [`Builder::run`] for every step of the build.

use std::process::Command;

use super::Builder;
use crate::{ImageError, tool_path};

impl Builder<'_> {
    /// Shows step `n` on the bar and marks its start in the log.
    pub(super) fn set_step(&self, n: usize, name: &str) {
        self.steps.set_step(n, name);
    }

    /// `chroot <root> ARGV` with a clean environment.
    pub(super) fn chroot(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new(tool_path("chroot"));
        cmd.arg(&self.root)
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("DEBCONF_NONINTERACTIVE_SEEN", "true");
        cmd
    }

    /// Runs one command with stdout and stderr in the log; the latest line goes on the bar.
    pub(super) fn step(&mut self, n: usize, name: &str, cmd: Command) -> Result<(), ImageError> {
        self.steps.run(n, name, cmd)
    }
}
