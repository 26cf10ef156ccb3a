//! The OpenAPI 3.1 document, derived from the handlers' `#[utoipa::path]` annotations and the
//! wire types. `docs/api/openapi.json` is this document verbatim; a test fails when they differ
//! (regenerate with `airlock daemon --openapi > docs/api/openapi.json`).

use crate::server;
use crate::types;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "airlock daemon API",
        description = "Sandboxes that outlive one command: create, exec (streamed as NDJSON), files, \
events, stats, delete. Served on a unix socket (no authentication beyond the socket's mode and \
group) and optionally on TCP, where every request needs `Authorization: Bearer <token>`. Every \
error is a JSON `ErrorBody` {error, detail}.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        server::openapi_json,
        server::create_sandbox,
        server::list_sandboxes,
        server::get_pool,
        server::get_sandbox,
        server::delete_sandbox,
        server::stop_sandbox,
        server::exec_command,
        server::exec_stdin,
        server::exec_signal,
        server::exec_resize,
        server::sandbox_events,
        server::sandbox_stats,
        server::read_file,
        server::write_file,
        server::stat_file,
        server::list_files,
        server::sandbox_changes,
    ),
    components(schemas(
        types::CreateSandboxRequest,
        types::SandboxStatus,
        types::SandboxInfo,
        types::SandboxList,
        crate::daemon::pool::PoolStatus,
        crate::daemon::pool::PoolImage,
        types::TerminalSize,
        types::ExecBody,
        types::ExecLine,
        types::ExecExit,
        types::ExecStages,
        types::StdinBody,
        types::SignalBody,
        types::FileStat,
        types::FileList,
        types::FileWritten,
        types::ChangeList,
        types::MountChanges,
        types::PathChange,
        types::ErrorBody,
    )),
    modifiers(&BearerOnTcp),
    tags(
        (name = "sandboxes", description = "Create, inspect, stop and delete sandboxes"),
        (name = "exec", description = "Run commands and drive them while they run"),
        (name = "files", description = "Files in the guest, read and written as the workload user"),
        (name = "observe", description = "Audit events and counters"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// Declares the bearer scheme the TCP listener enforces (the unix socket needs none).
struct BearerOnTcp;

impl utoipa::Modify for BearerOnTcp {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "Required on the TCP listener (`airlock daemon --tcp ADDR --token-file FILE`); \
             the unix socket is guarded by its file mode instead."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::default(),
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
    }
}

/// The document as pretty JSON with a final newline (the form kept in `docs/api/`).
pub fn document() -> String {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        // Stable across builds: the crate version would change the file on every release.
        doc.info.version = "1".into();
        let mut text = doc
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/api/openapi.json` must be the served document. Set `AIRLOCK_UPDATE_OPENAPI=1` to
    /// rewrite it.
    #[test]
    fn docs_copy_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/openapi.json");
        let doc = document();
        if std::env::var_os("AIRLOCK_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &doc).unwrap();
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == doc,
            "{} is out of date: run `AIRLOCK_UPDATE_OPENAPI=1 cargo test -p airlock --lib openapi`",
            path.display()
        );
    }

    #[test]
    fn is_openapi_3_1() {
        let v: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        assert!(v["paths"]["/v1/sandboxes/{id}/exec"]["post"].is_object());
    }
}
