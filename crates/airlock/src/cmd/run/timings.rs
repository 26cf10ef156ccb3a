//! `airlock run --timings`: where a cold run's time went, as one JSON line.

use airlock_supervisor::{ExecTimings, StartTimings};
use std::time::Duration;

/// Start-up phases, then the command's exec split by stage.
#[derive(serde::Serialize)]
pub struct Timings {
    image_resolve_ms: f64,
    engine_start_ms: f64,
    guest_ready_ms: f64,
    guest_uptime_ms: u64,
    /// `guest_uptime_ms` split, in the guest's clock since its kernel booted.
    guest_agent_start_ms: u64,
    guest_init_done_ms: u64,
    exec_ms: f64,
    /// `exec_ms` split: the vsock connection, then the guest agent's own stages.
    exec_connect_ms: f64,
    exec_guest_request_ms: f64,
    exec_guest_setup_ms: f64,
    exec_guest_spawn_ms: f64,
    exec_guest_run_ms: f64,
    exec_guest_drain_ms: f64,
    teardown_ms: f64,
    total_ms: f64,
}

impl Timings {
    /// From the run's own clocks and the exec's stages (all zero when the command did not run).
    pub fn new(
        image_resolve: Duration,
        start: &StartTimings,
        exec: Duration,
        stage: ExecTimings,
        teardown: Duration,
        total: Duration,
    ) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Microseconds as milliseconds (u64 to f64 is exact below 2^53 µs).
        let us = |v: u64| v as f64 / 1000.0;
        Timings {
            image_resolve_ms: ms(image_resolve),
            engine_start_ms: start.engine_start_ms,
            guest_ready_ms: start.guest_ready_ms,
            guest_uptime_ms: start.guest_uptime_ms,
            guest_agent_start_ms: start.guest_agent_start_ms,
            guest_init_done_ms: start.guest_init_done_ms,
            exec_ms: ms(exec),
            exec_connect_ms: us(stage.connect_us),
            exec_guest_request_ms: us(stage.guest.request_us),
            exec_guest_setup_ms: us(stage.guest.setup_us),
            exec_guest_spawn_ms: us(stage.guest.spawn_us),
            exec_guest_run_ms: us(stage.guest.run_us),
            exec_guest_drain_ms: us(stage.guest.drain_us),
            teardown_ms: ms(teardown),
            total_ms: ms(total),
        }
    }
}
