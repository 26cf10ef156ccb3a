//! The guest's reports to the host on the control connection: readiness, process events,
//! denied syscalls. The control loop (`control.rs`) installs the connection once the host is
//! connected; exec sessions report through [`report`] from then on.

use airlock_proto::{Frame, GuestEvent, encode};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use vsock::VsockStream;

/// The control connection, for reports from exec sessions (set once the host is connected).
static REPORTS: std::sync::OnceLock<Arc<Mutex<VsockStream>>> = std::sync::OnceLock::new();

/// Reports `event` to the host if the control connection is up; best effort.
pub fn report(event: GuestEvent) {
    if let Some(writer) = REPORTS.get() {
        let _ = send(writer, event);
    }
}

/// Sends one event on the shared control connection.
pub fn send(writer: &Mutex<VsockStream>, event: GuestEvent) -> io::Result<()> {
    let mut buf = Vec::new();
    encode(&Frame::Message(event), &mut buf).map_err(io::Error::other)?;
    writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_all(&buf)
}

/// Makes `writer` the connection [`report`] writes to (the first call wins).
pub fn install(writer: Arc<Mutex<VsockStream>>) {
    let _ = REPORTS.set(writer);
}
