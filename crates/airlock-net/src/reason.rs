//! Reasons and rule names that the gateway itself decides with, beside the policy's own
//! ([`airlock_policy::reason`]): short snake_case constants shared by [`NetEvent`]s (and so the
//! audit log) and the gateway's error replies. Their text is a stable interface; add new ones
//! rather than renaming.
//!
//! [`NetEvent`]: crate::NetEvent

/// Rule for requests refused before any policy question: malformed heads, limits, timeouts.
pub const RULE_REQUEST: &str = "egress.request";
/// Rule for plain-HTTP requests whose `Host` header names another host than the target.
pub const RULE_HOST_HEADER: &str = "egress.host_header";
/// Rule for CONNECT tunnels to a TLS port whose ClientHello does not name the CONNECT host.
pub const RULE_SNI: &str = "egress.sni";
/// Rule for failures to resolve an allowed name.
pub const RULE_RESOLVE: &str = "egress.resolve";
/// Rule for failures to connect to an allowed address.
pub const RULE_CONNECT: &str = "egress.connect";

/// The request head is malformed or over a limit (see [`crate::request`]).
pub const MALFORMED_REQUEST: &str = "malformed_request";
/// The request head did not arrive within the head timeout.
pub const REQUEST_TIMEOUT: &str = "request_timeout";
/// The client closed the connection before sending a whole request head.
pub const INCOMPLETE_REQUEST: &str = "incomplete_request";
/// The `Host` header of a plain-HTTP request differs from the request target.
pub const HOST_MISMATCH: &str = "host_mismatch";
/// The ClientHello names another host than the CONNECT target.
pub const SNI_MISMATCH: &str = "sni_mismatch";
/// The ClientHello carries no server name, and the CONNECT target is a name.
pub const SNI_MISSING: &str = "sni_missing";
/// The first bytes of a tunnel to a TLS port are not a well-formed TLS ClientHello.
pub const NOT_TLS: &str = "not_tls";
/// No ClientHello arrived within the hello timeout.
pub const HELLO_TIMEOUT: &str = "hello_timeout";
/// The host resolver failed or timed out.
pub const RESOLVE_FAILED: &str = "resolve_failed";
/// The name resolved to no address.
pub const NO_ADDRESS: &str = "no_address";
/// Connecting to every allowed address failed or timed out.
pub const CONNECT_FAILED: &str = "connect_failed";
/// The gateway shut down while the connection was open.
pub const SHUTDOWN: &str = "shutdown";
/// Rule for TLS the gateway terminates (hosts a credential or an HTTP rule names).
pub const RULE_TLS: &str = "egress.tls";
/// Rule for requests the upstream could not answer.
pub const RULE_UPSTREAM: &str = "egress.upstream";

/// The upstream's certificate did not verify against the trusted roots, or its TLS failed.
pub const UPSTREAM_TLS: &str = "upstream_tls";
/// The guest's TLS client refused the gateway's certificate (a pinning client) or broke off.
pub const GUEST_TLS: &str = "guest_tls";
/// The gateway has no certificate authority to terminate TLS with.
pub const NO_AUTHORITY: &str = "no_authority";
/// The upstream failed while a terminated request was forwarded.
pub const UPSTREAM_FAILED: &str = "upstream_failed";
/// A credential was written into its header.
pub const INJECTED: &str = "injected";
/// A credential's value could not be read on the host.
pub const CREDENTIAL_UNAVAILABLE: &str = "credential_unavailable";
/// A placeholder in a header other than its credential's, or to another host.
pub const LEAK_HEADER: &str = "placeholder_in_header";
/// A placeholder in the request target (path or query).
pub const LEAK_URL: &str = "placeholder_in_url";
/// A placeholder in a request body.
pub const LEAK_BODY: &str = "placeholder_in_body";
/// The tunnel's TLS was terminated: its requests are recorded one by one.
pub const TERMINATED: &str = "terminated";
