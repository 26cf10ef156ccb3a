//! `[[network.credentials]]`, `extra_ca`, `trust_host_ca` and `passthrough`.

use std::path::PathBuf;
use std::time::Duration;

use super::{assert_error, load};

#[test]
fn credentials() {
    let p = load(
        r#"
[network]
trust_host_ca = true
extra_ca = ["certs/test-ca.pem"]
passthrough = ["pinned.example"]
[[network.http]]
host = "api.example"
path = "/v1/**"
action = "allow"
[[network.credentials]]
name = "anthropic"
host = "API.Anthropic.com"
header = "X-Api-Key"
source = "env:ANTHROPIC_API_KEY"
guest_env = "ANTHROPIC_API_KEY"
[[network.credentials]]
name = "gh"
host = "github.com:443"
header = "authorization"
format = "Basic {base64}"
source = "command:sh -c 'echo x-access-token:$(gh auth token)'"
ttl = "30s"
"#,
    )
    .unwrap();
    let c = p.credentials();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].host.to_string(), "api.anthropic.com");
    assert_eq!((c[0].port, c[0].header.as_str()), (443, "x-api-key"));
    assert_eq!(c[0].format, "{}");
    assert_eq!(
        c[0].source,
        crate::CredentialSource::Env("ANTHROPIC_API_KEY".into())
    );
    assert_eq!(c[0].ttl, None);
    assert_eq!(c[0].rule, "network.credentials[0] \"anthropic\"");
    assert_eq!(
        c[1].source,
        crate::CredentialSource::Command(vec![
            "sh".into(),
            "-c".into(),
            "echo x-access-token:$(gh auth token)".into()
        ])
    );
    assert_eq!(c[1].ttl, Some(Duration::from_secs(30)));
    assert!(p.trust_host_ca());
    assert_eq!(p.extra_ca(), [PathBuf::from("./certs/test-ca.pem")]);
    let t = |h: &str| crate::Target::parse(h).unwrap();
    assert!(p.terminates(&t("api.anthropic.com"), 443));
    assert!(!p.terminates(&t("api.anthropic.com"), 8443));
    assert!(p.terminates(&t("api.example"), 443));
    assert!(!p.terminates(&t("other.example"), 443));

    assert_error(
        r#"
[network]
passthrough = ["pinned.example"]
[[network.credentials]]
name = "a b"
host = "*.example.com"
header = "Host"
format = "Bearer {} {}"
source = "vault:x"
guest_env = "1X"
ttl = "soon"
[[network.credentials]]
name = "p"
host = "pinned.example"
header = "authorization"
source = "command:"
[[network.credentials]]
name = "q"
host = "pinned.example"
header = "authorization"
source = "file:/run/token"
guest_env = "TOKEN"
[[network.credentials]]
name = "q"
host = "q.example"
header = "authorization"
source = "env:Q"
guest_env = "TOKEN"
"#,
        "test.toml:5:8: network.credentials[0].name: invalid credential name \"a b\", expected letters, digits, `-` and `_` (1 to 64)\n\
         test.toml:6:8: network.credentials[0].host: credential host \"*.example.com\" must name one exact host and optional port, like \"api.anthropic.com\" or \"127.0.0.1:8443\": wildcards are not allowed\n\
         test.toml:7:10: network.credentials[0].header: invalid credential header \"Host\": this header frames or routes the request\n\
         test.toml:8:10: network.credentials[0].format: invalid credential format \"Bearer {} {}\": expected exactly one `{}` or `{base64}`, like \"Bearer {}\"\n\
         test.toml:9:10: network.credentials[0].source: invalid credential source \"vault:x\": unknown kind \"vault\"; expected \"env:NAME\", \"file:PATH\" or \"command:PROGRAM ARGS...\"\n\
         test.toml:10:13: network.credentials[0].guest_env: invalid environment variable name \"1X\", expected letters, digits and `_`, not starting with a digit\n\
         test.toml:11:7: network.credentials[0].ttl: invalid duration \"soon\", expected numbers with units ms, s, m, h or d, greater than 0; e.g. \"90s\", \"30m\" or \"1h30m\"\n\
         test.toml:16:10: network.credentials[1].source: invalid credential source \"command:\": no command; expected \"env:NAME\", \"file:PATH\" or \"command:PROGRAM ARGS...\"\n\
         test.toml:19:8: network.credentials[2].host: credential \"q\" is sent to pinned.example, which network.passthrough[0] \"pinned.example\" lists as passthrough: the gateway must terminate TLS to inject it; remove one of them\n\
         test.toml:24:8: network.credentials[3].name: credential \"q\" is defined twice; names must be unique",
    );
}
