use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::host::Endpoint;
use crate::load::load_with;
use crate::source::Env;

fn policy(text: &str) -> Policy {
    load_with(text, Path::new("test.toml"), &Env::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn network(default: &str, allow: &[&str], deny: &[&str]) -> Policy {
    let list = |l: &[&str]| {
        l.iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    policy(&format!(
        "[network]\ndefault = {default:?}\nallow = [{}]\ndeny = [{}]\n",
        list(allow),
        list(deny)
    ))
}

fn d(verdict: Verdict, rule: &str, reason: &'static str) -> Decision {
    Decision {
        verdict,
        rule: rule.to_owned(),
        reason,
    }
}

use Verdict::{Allow, Deny};

/// (default, allow, deny, host, port, verdict, rule, reason)
type ConnectCase<'a> = (
    &'a str,
    &'a [&'a str],
    &'a [&'a str],
    &'a str,
    u16,
    Verdict,
    &'a str,
    &'static str,
);

#[test]
fn connect_precedence_table() {
    #[rustfmt::skip]
    let cases: &[ConnectCase<'_>] = &[
        // Nothing matches: the default decides.
        ("deny", &[], &[], "example.com", 443, Deny, "network.default", reason::NOT_ALLOWED),
        ("allow", &[], &[], "example.com", 443, Allow, "network.default", reason::DEFAULT_ALLOW),
        // Exact host with port beats exact host without.
        ("deny", &["example.com:443"], &["example.com"], "example.com", 443, Allow, "network.allow[0] \"example.com:443\"", reason::ALLOWED),
        ("deny", &["example.com:443"], &["example.com"], "example.com", 80, Deny, "network.deny[0] \"example.com\"", reason::DENIED),
        // Exact host beats any wildcard.
        ("deny", &["api.example.com"], &["*.example.com:443"], "api.example.com", 443, Allow, "network.allow[0] \"api.example.com\"", reason::ALLOWED),
        // Longer wildcard suffix beats shorter.
        ("deny", &["*.example.com"], &["*.corp.example.com"], "a.corp.example.com", 443, Deny, "network.deny[0] \"*.corp.example.com\"", reason::DENIED),
        ("deny", &["*.corp.example.com"], &["*.example.com"], "a.corp.example.com", 443, Allow, "network.allow[0] \"*.corp.example.com\"", reason::ALLOWED),
        // Wildcard with port beats the same wildcard without.
        ("deny", &["*.example.com:443"], &["*.example.com"], "a.example.com", 443, Allow, "network.allow[0] \"*.example.com:443\"", reason::ALLOWED),
        // Tie: deny wins, whatever the order.
        ("deny", &["example.com:443"], &["example.com:443"], "example.com", 443, Deny, "network.deny[0] \"example.com:443\"", reason::DENIED),
        ("allow", &["*.example.com"], &["*.example.com"], "a.example.com", 1, Deny, "network.deny[0] \"*.example.com\"", reason::DENIED),
        // Same canonical entry spelt differently is still a tie.
        ("deny", &["EXAMPLE.com.:443"], &["example.com:443"], "example.com", 443, Deny, "network.deny[0] \"example.com:443\"", reason::DENIED),
        // Wildcards never match the apex.
        ("deny", &["*.example.com"], &[], "example.com", 443, Deny, "network.default", reason::NOT_ALLOWED),
        // Requests are canonicalised like entries.
        ("deny", &["api.example.com:443"], &[], "API.Example.COM.", 443, Allow, "network.allow[0] \"api.example.com:443\"", reason::ALLOWED),
        ("deny", &["xn--bcher-kva.example"], &[], "bücher.example", 443, Allow, "network.allow[0] \"xn--bcher-kva.example\"", reason::ALLOWED),
        // Among equal allows the first listed is reported.
        ("deny", &["a.example.com", "A.example.com"], &[], "a.example.com", 443, Allow, "network.allow[0] \"a.example.com\"", reason::ALLOWED),
        // IP: exact beats CIDR, longer prefix beats shorter.
        ("deny", &["203.0.113.0/24"], &["203.0.113.7"], "203.0.113.7", 443, Deny, "network.deny[0] \"203.0.113.7\"", reason::DENIED),
        ("deny", &["203.0.113.0/25"], &["203.0.113.0/24"], "203.0.113.7", 443, Allow, "network.allow[0] \"203.0.113.0/25\"", reason::ALLOWED),
        ("deny", &["8.8.8.8:53"], &[], "0x8080808", 53, Allow, "network.allow[0] \"8.8.8.8:53\"", reason::ALLOWED),
        ("deny", &["[2606:4700::1111]:443"], &[], "2606:4700:0::1111", 443, Allow, "network.allow[0] \"[2606:4700::1111]:443\"", reason::ALLOWED),
        // Names never match address entries and the reverse.
        ("deny", &["8.8.8.8"], &[], "dns.google", 443, Deny, "network.default", reason::NOT_ALLOWED),
        // An address literal also gets the address checks.
        ("allow", &[], &[], "127.0.0.1", 80, Deny, "network.allow_private", reason::PRIVATE_ADDRESS),
        ("allow", &[], &[], "0x7f.1", 80, Deny, "network.allow_private", reason::PRIVATE_ADDRESS),
        ("allow", &[], &[], "[::ffff:169.254.169.254]", 80, Deny, "network.metadata", reason::METADATA_ADDRESS),
        ("deny", &["10.0.0.5:5432"], &[], "10.0.0.5", 5432, Allow, "network.allow[0] \"10.0.0.5:5432\"", reason::ALLOWED),
        // Malformed requests.
        ("allow", &[], &[], "exa mple.com", 443, Deny, "network.host", reason::INVALID_HOST),
        ("allow", &[], &[], "999.1.1.1", 443, Deny, "network.host", reason::INVALID_HOST),
        ("allow", &[], &[], "example.com", 0, Deny, "network.port", reason::INVALID_PORT),
    ];
    for (i, (default, allow, deny, host, port, verdict, rule, why)) in cases.iter().enumerate() {
        let p = network(default, allow, deny);
        assert_eq!(
            p.decide_connect(host, *port),
            d(*verdict, rule, why),
            "case {i}: {host}:{port} with allow={allow:?} deny={deny:?}"
        );
    }
}

#[test]
fn address_decisions() {
    let p = network(
        "deny",
        &["10.0.0.0/8:5432", "169.254.169.254"],
        &["203.0.113.0/24"],
    );
    let at = |a: &str, port| p.decide_address(a.parse().unwrap(), port);
    assert_eq!(
        at("8.8.8.8", 443),
        d(Allow, "network.address", reason::PUBLIC_ADDRESS)
    );
    assert_eq!(
        at("203.0.113.9", 443),
        d(Deny, "network.deny[0] \"203.0.113.0/24\"", reason::DENIED)
    );
    assert_eq!(
        at("10.1.1.1", 5432),
        d(
            Allow,
            "network.allow[0] \"10.0.0.0/8:5432\"",
            reason::ALLOWED
        )
    );
    assert_eq!(
        at("10.1.1.1", 22),
        d(Deny, "network.allow_private", reason::PRIVATE_ADDRESS)
    );
    assert_eq!(
        at("::ffff:10.1.1.1", 5432),
        d(
            Allow,
            "network.allow[0] \"10.0.0.0/8:5432\"",
            reason::ALLOWED
        )
    );
    assert_eq!(
        at("169.254.169.254", 80),
        d(
            Allow,
            "network.allow[1] \"169.254.169.254\"",
            reason::ALLOWED
        )
    );
    assert_eq!(
        at("fd00:ec2::254", 80),
        d(Deny, "network.metadata", reason::METADATA_ADDRESS)
    );
    assert_eq!(
        at("127.0.0.1", 80),
        d(Deny, "network.allow_private", reason::PRIVATE_ADDRESS)
    );

    let open = policy("[network]\nallow_private = true\n");
    let at = |a: &str| open.decide_address(a.parse().unwrap(), 80);
    assert_eq!(
        at("127.0.0.1"),
        d(Allow, "network.allow_private", reason::ALLOWED)
    );
    assert_eq!(
        at("169.254.169.254"),
        d(Deny, "network.metadata", reason::METADATA_ADDRESS)
    );
}

/// Every known metadata endpoint, and one more address of IPv4 link-local.
const METADATA: &[&str] = &[
    "169.254.169.254",
    "169.254.170.2",
    "100.100.100.200",
    "192.0.0.192",
    "fd00:ec2::254",
    "169.254.1.1",
];

fn metadata_denied() -> Decision {
    d(Deny, "network.metadata", reason::METADATA_ADDRESS)
}

#[test]
fn metadata_addresses_are_refused_even_with_allow_private() {
    let closed = policy("");
    let open = policy("[network]\ndefault = \"allow\"\nallow_private = true\n");
    for &addr in METADATA {
        let ip: IpAddr = addr.parse().unwrap();
        assert_eq!(closed.decide_address(ip, 80), metadata_denied(), "{addr}");
        assert_eq!(open.decide_address(ip, 80), metadata_denied(), "{addr}");
        let literal = if ip.is_ipv6() {
            format!("[{addr}]")
        } else {
            addr.to_owned()
        };
        assert_eq!(
            open.decide_connect(&literal, 80),
            metadata_denied(),
            "{addr}"
        );
        assert_eq!(
            open.decide_http(&literal, 80, "GET", "/latest/meta-data/"),
            metadata_denied(),
            "{addr}"
        );
    }
    // The NAT64 and 6to4 forms too.
    for addr in ["64:ff9b::a9fe:aa02", "2002:6464:64c8::"] {
        assert_eq!(
            open.decide_address(addr.parse().unwrap(), 80),
            metadata_denied(),
            "{addr}"
        );
    }
}

#[test]
fn only_an_allow_naming_the_exact_address_opens_a_metadata_address() {
    for &addr in METADATA {
        let ip: IpAddr = addr.parse().unwrap();
        let entry = if ip.is_ipv6() {
            format!("[{addr}]:80")
        } else {
            format!("{addr}:80")
        };
        let p = policy(&format!(
            "[network]\nallow_private = true\nallow = [{entry:?}]\n"
        ));
        assert_eq!(
            p.decide_address(ip, 80),
            d(
                Allow,
                &format!("network.allow[0] {entry:?}"),
                reason::ALLOWED
            ),
            "{addr}"
        );
        // Another port, or another metadata address, stays closed.
        assert_eq!(p.decide_address(ip, 81), metadata_denied(), "{addr}");
        for &other in METADATA.iter().filter(|o| **o != addr) {
            assert_eq!(
                p.decide_address(other.parse().unwrap(), 80),
                metadata_denied(),
                "{addr} must not open {other}"
            );
        }
    }
}

#[test]
fn a_block_never_opens_a_metadata_address_however_the_policy_was_built() {
    // Validation refuses these entries; the decision must not depend on it.
    let mut p = policy("[network]\nallow_private = true\n");
    for (i, block) in [
        "169.254.0.0/16",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "fd00::/8",
    ]
    .into_iter()
    .enumerate()
    {
        p.network.rules.push(NetRule {
            endpoint: Endpoint::parse(block).unwrap(),
            allow: true,
            rule: format!("network.allow[{i}] {block:?}"),
        });
    }
    for &addr in METADATA {
        assert_eq!(
            p.decide_address(addr.parse().unwrap(), 80),
            metadata_denied(),
            "{addr}"
        );
    }
    // The blocks still open their other addresses.
    assert_eq!(
        p.decide_address("100.64.0.1".parse().unwrap(), 80),
        d(Allow, "network.allow[1] \"100.64.0.0/10\"", reason::ALLOWED)
    );
    // An exact deny still beats an exact allow of the same address.
    let p = network("deny", &["169.254.170.2"], &["169.254.170.2"]);
    assert_eq!(
        p.decide_address("169.254.170.2".parse().unwrap(), 80),
        d(Deny, "network.deny[0] \"169.254.170.2\"", reason::DENIED)
    );
}

#[test]
fn http_rules() {
    let p = policy(
        r#"
[network]
allow = ["api.example.com:80"]
[[network.http]]
host = "api.example.com"
methods = ["get", "HEAD"]
path = "/v1/**"
action = "allow"
[[network.http]]
host = "api.example.com"
path = "/v1/admin/**"
action = "deny"
[[network.http]]
host = "docs.example.com:80"
methods = ["GET"]
action = "allow"
[[network.http]]
host = "api.example.com"
action = "deny"
[[network.http]]
host = "127.0.0.1"
action = "allow"
"#,
    );
    let r = |i: usize, t: &str| format!("network.http[{i}] {t:?}");
    #[rustfmt::skip]
    let cases = [
        ("api.example.com", "GET", "/v1/models", d(Allow, &r(0, "GET,HEAD api.example.com/v1/**"), reason::ALLOWED)),
        ("api.example.com", "get", "/v1/models?x=1", d(Allow, &r(0, "GET,HEAD api.example.com/v1/**"), reason::ALLOWED)),
        ("api.example.com", "POST", "/v1/models", d(Deny, &r(3, "* api.example.com"), reason::DENIED)),
        ("api.example.com", "GET", "/v1/admin/users", d(Deny, &r(1, "* api.example.com/v1/admin/**"), reason::DENIED)),
        ("api.example.com", "GET", "/v1/x/../admin/users", d(Deny, "network.http", reason::INVALID_REQUEST)),
        ("api.example.com", "GET", "/v1/%61dmin/users", d(Deny, &r(1, "* api.example.com/v1/admin/**"), reason::DENIED)),
        ("api.example.com", "GET", "//v1/./admin//users", d(Deny, &r(1, "* api.example.com/v1/admin/**"), reason::DENIED)),
        ("api.example.com", "GET", "/v1/%2e%2e/x", d(Deny, "network.http", reason::INVALID_REQUEST)),
        ("api.example.com", "GET", "/v1/%zz", d(Deny, "network.http", reason::INVALID_REQUEST)),
        ("api.example.com", "GET", "/v1/%+1", d(Deny, "network.http", reason::INVALID_REQUEST)),
        ("api.example.com", "G ET", "/v1/", d(Deny, "network.http", reason::INVALID_REQUEST)),
        // An http rule can open a host that connect rules do not allow...
        ("docs.example.com", "GET", "/", d(Allow, &r(2, "GET docs.example.com:80"), reason::ALLOWED)),
        // ...and without a matching rule the connect decision stands.
        ("docs.example.com", "POST", "/", d(Deny, "network.default", reason::NOT_ALLOWED)),
        ("other.example.com", "GET", "/", d(Deny, "network.default", reason::NOT_ALLOWED)),
        ("127.0.0.1", "GET", "/", d(Deny, "network.allow_private", reason::PRIVATE_ADDRESS)),
        ("127.0.0.2", "GET", "/", d(Deny, "network.default", reason::NOT_ALLOWED)),
    ];
    for (host, method, path, expected) in cases {
        assert_eq!(
            p.decide_http(host, 80, method, path),
            expected,
            "{method} {host}{path}"
        );
    }
}

#[test]
fn http_path_normalisation() {
    assert_eq!(normalize_http_path("/").as_deref(), Some("/"));
    assert_eq!(normalize_http_path("/a/b/").as_deref(), Some("/a/b/"));
    assert_eq!(
        normalize_http_path("/a//b/./c?q#f").as_deref(),
        Some("/a/b/c")
    );
    assert_eq!(normalize_http_path("/a%2Fb").as_deref(), Some("/a/b"));
    assert_eq!(normalize_http_path("a/b"), None);
    assert_eq!(normalize_http_path("*"), None);
    assert_eq!(normalize_http_path("/a%00"), None);
    assert_eq!(normalize_http_path("/a%5c..%5cb"), None);
    assert_eq!(normalize_http_path("/%ff"), None);
    assert_eq!(normalize_http_path("/%4"), None);
}

const FS_POLICY: &str = r#"
[[filesystem.mounts]]
workspace = true
guest = "/workspace"
mode = "rw"
[[filesystem.mounts]]
host = "src"
guest = "/ref"
mode = "ro"
[[filesystem.mounts]]
host = "."
guest = "/scratch"
mode = "overlay"
[filesystem]
deny_read = [".env", "secrets/**"]
deny_write = ["Cargo.lock", "vendor/keys/*.pem"]
protect = ["deploy/**"]
unprotect = [".idea/**"]
"#;

#[test]
fn fs_table() {
    use FsOp::*;
    let p = policy(FS_POLICY);
    let ws = "filesystem.mounts[0] \"/workspace\"";
    let prot = |g: &str| format!("filesystem.protected {g:?}");
    #[rustfmt::skip]
    let cases: &[(&str, FsOp, &str, Verdict, String, &'static str)] = &[
        ("/workspace", Write, "src/main.rs", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace/", Create, "/new/file", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Write, ".git/hooks/pre-commit", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Create, ".git/hooks/post-checkout", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Mkdir, ".git/hooks", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Symlink, ".git/hooks", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Write, "./.git//config", Deny, prot(".git/config"), reason::PROTECTED_PATH),
        ("/workspace", Setattr, ".git/config", Deny, prot(".git/config"), reason::PROTECTED_PATH),
        ("/workspace", Write, "vendor/lib/.git/config", Deny, prot(".git/config"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".GIT/CONFIG", Deny, prot(".git/config"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".git/modules/lib/hooks/pre-push", Deny, prot(".git/modules/**/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".git/modules/lib/config", Deny, prot(".git/modules/**/config"), reason::PROTECTED_PATH),
        // Submodule objects are ordinary files; only moving their directories is refused.
        ("/workspace", Create, ".git/modules/lib/objects/ab/cd", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Rename, ".git/modules/lib", Deny, prot(".git/modules/**/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Symlink, ".git/modules/lib/objects", Deny, prot(".git/modules/**/hooks/**"), reason::PROTECTED_PATH),
        // Replacing a directory on the way to protected files is refused...
        ("/workspace", Rename, ".git", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Symlink, "sub/.git", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Create, "sub/.git", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Link, ".git", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        ("/workspace", Unlink, ".git", Deny, prot(".git/hooks/**"), reason::PROTECTED_PATH),
        // ...but creating the directory itself, or ordinary git files, is not.
        ("/workspace", Mkdir, ".git", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Write, ".git/index", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Create, ".git/objects/ab/cdef", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Read, ".git/config", Allow, ws.to_owned(), reason::ALLOWED),
        // Agent and editor config, at any depth; shell rc files only at the root.
        ("/workspace", Write, ".claude/settings.json", Deny, prot(".claude/**"), reason::PROTECTED_PATH),
        ("/workspace", Write, "pkg/.vscode/tasks.json", Deny, prot(".vscode/**"), reason::PROTECTED_PATH),
        ("/workspace", Create, ".mcp.json", Deny, prot(".mcp.json"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".bashrc", Deny, prot(".bashrc"), reason::PROTECTED_PATH),
        // A compatibility form or case variant of a protected name is the same name.
        ("/workspace", Write, ".\u{ff23}LAUDE/settings.json", Deny, prot(".claude/**"), reason::PROTECTED_PATH),
        ("/workspace", Create, "x/.vs\u{1d9c}ode/tasks.json", Deny, prot(".vscode/**"), reason::PROTECTED_PATH),
        // A look-alike from another script is another name, on the host too.
        ("/workspace", Create, "x/.vs\u{0441}ode/tasks.json", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Create, ".\u{fb03}", Allow, ws.to_owned(), reason::ALLOWED),
        // Host-executed files of other tools.
        ("/workspace", Write, ".git/worktrees/wt/commondir", Deny, prot(".git/worktrees/*/commondir"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".git/worktrees/wt/config.worktree", Deny, prot(".git/worktrees/*/config.worktree"), reason::PROTECTED_PATH),
        ("/workspace", Write, "sub/.hg/hgrc", Deny, prot(".hg/hgrc"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".jj/repo/config.toml", Deny, prot(".jj/**"), reason::PROTECTED_PATH),
        ("/workspace", Create, ".direnv/python/bin/activate", Deny, prot(".direnv/**"), reason::PROTECTED_PATH),
        ("/workspace", Create, "web/.npmrc", Deny, prot(".npmrc"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".yarnrc", Deny, prot(".yarnrc"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".yarnrc.yml", Deny, prot(".yarnrc.yml"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".pnpmfile.cjs", Deny, prot(".pnpmfile.cjs"), reason::PROTECTED_PATH),
        ("/workspace", Write, "mise.toml", Deny, prot("mise.toml"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".MISE.toml", Deny, prot(".mise.toml"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".tool-versions", Deny, prot(".tool-versions"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".zed/tasks.json", Deny, prot(".zed/**"), reason::PROTECTED_PATH),
        ("/workspace", Write, "dotfiles/.bashrc", Allow, ws.to_owned(), reason::ALLOWED),
        // unprotect and protect.
        ("/workspace", Write, ".idea/workspace.xml", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Write, "deploy/run.sh", Deny, "filesystem.protect[0] \"deploy/**\"".to_owned(), reason::PROTECTED_PATH),
        ("/workspace", Write, "Deploy/run.sh", Deny, "filesystem.protect[0] \"deploy/**\"".to_owned(), reason::PROTECTED_PATH),
        // deny_write, including the directories leading to it.
        ("/workspace", Write, "Cargo.lock", Deny, "filesystem.deny_write[0] \"Cargo.lock\"".to_owned(), reason::WRITE_DENIED),
        ("/workspace", Read, "Cargo.lock", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Create, "vendor/keys/new.pem", Deny, "filesystem.deny_write[1] \"vendor/keys/*.pem\"".to_owned(), reason::WRITE_DENIED),
        ("/workspace", Rename, "vendor", Deny, "filesystem.deny_write[1] \"vendor/keys/*.pem\"".to_owned(), reason::WRITE_DENIED),
        ("/workspace", Write, "vendor/keys/sub/x.pem", Allow, ws.to_owned(), reason::ALLOWED),
        // deny_read covers reads and renames or links that would expose the file.
        ("/workspace", Read, ".env", Deny, "filesystem.deny_read[0] \".env\"".to_owned(), reason::READ_DENIED),
        ("/workspace", Read, "app/.env", Allow, ws.to_owned(), reason::ALLOWED),
        ("/workspace", Read, "secrets", Deny, "filesystem.deny_read[1] \"secrets/**\"".to_owned(), reason::READ_DENIED),
        ("/workspace", Rename, ".env", Deny, "filesystem.deny_read[0] \".env\"".to_owned(), reason::READ_DENIED),
        ("/workspace", Link, "secrets/token", Deny, "filesystem.deny_read[1] \"secrets/**\"".to_owned(), reason::READ_DENIED),
        ("/workspace", Write, ".env", Allow, ws.to_owned(), reason::ALLOWED),
        // Read-only and overlay shares.
        ("/ref", Read, "lib.rs", Allow, "filesystem.mounts[1] \"/ref\"".to_owned(), reason::ALLOWED),
        ("/ref", Write, "lib.rs", Deny, "filesystem.mounts[1] \"/ref\"".to_owned(), reason::READ_ONLY_MOUNT),
        ("/ref", Mkdir, "x", Deny, "filesystem.mounts[1] \"/ref\"".to_owned(), reason::READ_ONLY_MOUNT),
        ("/ref", Write, ".git/config", Deny, prot(".git/config"), reason::PROTECTED_PATH),
        ("/scratch", Write, "x", Allow, "filesystem.mounts[2] \"/scratch\"".to_owned(), reason::ALLOWED),
        ("/scratch", Write, ".envrc", Deny, prot(".envrc"), reason::PROTECTED_PATH),
        // Malformed requests.
        ("/workspace", Write, "a/../.git/config", Deny, "filesystem.path".to_owned(), reason::INVALID_PATH),
        ("/workspace", Read, "../etc/passwd", Deny, "filesystem.path".to_owned(), reason::INVALID_PATH),
        ("/nope", Read, "x", Deny, "filesystem.mounts".to_owned(), reason::UNKNOWN_MOUNT),
        ("workspace", Read, "x", Deny, "filesystem.mounts".to_owned(), reason::UNKNOWN_MOUNT),
    ];
    for (mount, op, path, verdict, rule, why) in cases {
        assert_eq!(
            p.decide_fs(mount, *op, path),
            d(*verdict, rule, why),
            "{op} {mount} {path}"
        );
    }
}

#[test]
fn unprotected_mount_has_no_protected_paths() {
    use FsOp::*;
    let p = policy(
        r#"
[[filesystem.mounts]]
workspace = true
guest = "/workspace"
mode = "rw"
[[filesystem.mounts]]
host = "src"
guest = "/home/agent"
mode = "rw"
protected = false
[[filesystem.mounts]]
host = "."
guest = "/scratch"
mode = "rw"
[[filesystem.mounts]]
host = "src"
guest = "/ref"
protected = false
[filesystem]
deny_read = ["secrets/**"]
deny_write = ["Cargo.lock"]
protect = ["deploy/**"]
"#,
    );
    let home = "filesystem.mounts[1] \"/home/agent\"";
    let prot = |g: &str| format!("filesystem.protected {g:?}");
    #[rustfmt::skip]
    let cases: &[(&str, FsOp, &str, Verdict, String, &'static str)] = &[
        // Agent settings, shell rc files and git files are the sandbox's own here...
        ("/home/agent", Write, ".claude/settings.json", Allow, home.to_owned(), reason::ALLOWED),
        ("/home/agent", Create, ".codex/config.toml", Allow, home.to_owned(), reason::ALLOWED),
        ("/home/agent", Mkdir, ".gemini", Allow, home.to_owned(), reason::ALLOWED),
        ("/home/agent", Write, ".bashrc", Allow, home.to_owned(), reason::ALLOWED),
        ("/home/agent", Rename, ".git", Allow, home.to_owned(), reason::ALLOWED),
        ("/home/agent", Write, "deploy/run.sh", Allow, home.to_owned(), reason::ALLOWED),
        // ...but every other rule of the mount still holds.
        ("/home/agent", Write, "Cargo.lock", Deny, "filesystem.deny_write[0] \"Cargo.lock\"".to_owned(), reason::WRITE_DENIED),
        ("/home/agent", Read, "secrets/key", Deny, "filesystem.deny_read[0] \"secrets/**\"".to_owned(), reason::READ_DENIED),
        ("/ref", Write, ".claude/settings.json", Deny, "filesystem.mounts[3] \"/ref\"".to_owned(), reason::READ_ONLY_MOUNT),
        // Every other mount keeps the protected paths.
        ("/scratch", Write, ".claude/settings.json", Deny, prot(".claude/**"), reason::PROTECTED_PATH),
        ("/workspace", Write, ".claude/settings.json", Deny, prot(".claude/**"), reason::PROTECTED_PATH),
        ("/scratch", Write, ".bashrc", Deny, prot(".bashrc"), reason::PROTECTED_PATH),
        ("/scratch", Write, "deploy/run.sh", Deny, "filesystem.protect[0] \"deploy/**\"".to_owned(), reason::PROTECTED_PATH),
    ];
    for (mount, op, path, verdict, rule, why) in cases {
        assert_eq!(
            p.decide_fs(mount, *op, path),
            d(*verdict, rule, why),
            "{op} {mount} {path}"
        );
    }
    for entry in crate::path::BUILTIN_PROTECTED {
        let example = entry.pattern.replace("**", "x").replace('*', "y");
        for op in FsOp::ALL {
            assert!(
                p.decide_fs("/home/agent", op, &example).is_allowed(),
                "{op} {example}"
            );
        }
    }
}

#[test]
fn every_builtin_protects_its_path_for_every_mutation() {
    let p = policy("[[filesystem.mounts]]\nworkspace = true\nguest = \"/w\"\nmode = \"rw\"\n");
    for entry in crate::path::BUILTIN_PROTECTED {
        let example = entry.pattern.replace("**", "x").replace('*', "y");
        for op in FsOp::ALL.into_iter().filter(|op| op.is_mutation()) {
            let got = p.decide_fs("/w", op, &example);
            assert_eq!(got.verdict, Deny, "{op} {example}");
            assert_eq!(got.reason, reason::PROTECTED_PATH, "{op} {example}");
        }
        assert!(
            p.decide_fs("/w", FsOp::Read, &example).is_allowed(),
            "{example}"
        );
    }
}

/// A pool of overlapping patterns of every kind of specificity.
const POOL: &[&str] = &[
    "example.com",
    "example.com:443",
    "api.example.com",
    "api.example.com:443",
    "*.example.com",
    "*.example.com:443",
    "*.api.example.com",
    "*.api.example.com:80",
    "203.0.113.7",
    "203.0.113.7:443",
    "203.0.113.0/24",
    "203.0.113.0/24:443",
    "203.0.0.0/16",
    "[2001:db8::7]:443",
    "[2001:db8::/32]",
];

const HOSTS: &[&str] = &[
    "example.com",
    "api.example.com",
    "x.api.example.com",
    "other.example.com",
    "203.0.113.7",
    "203.0.113.8",
    "[2001:db8::7]",
    "unrelated.test",
];

proptest! {
    /// Whatever the lists, the winner is a most specific matching entry, and an allow wins
    /// only when no matching deny is at least as specific.
    #[test]
    fn deny_never_loses_to_an_equally_specific_allow(
        allow in proptest::sample::subsequence(POOL, 0..6),
        deny in proptest::sample::subsequence(POOL, 0..6),
        host in proptest::sample::select(HOSTS),
        port in prop_oneof![Just(443u16), Just(80u16)],
    ) {
        let p = network("deny", &allow, &deny);
        let got = p.decide_target(&Target::parse(host).unwrap(), port);
        let target = Target::parse(host).unwrap();
        let top = |list: &[&str]| {
            list.iter()
                .map(|e| Endpoint::parse(e).unwrap())
                .filter(|e| e.matches(&target, port))
                .map(|e| e.specificity())
                .max()
        };
        match (top(&allow), top(&deny)) {
            (None, None) => prop_assert_eq!(got.rule, "network.default"),
            (Some(_), None) => prop_assert!(got.is_allowed()),
            (None, Some(_)) => prop_assert!(!got.is_allowed()),
            (Some(a), Some(dn)) => prop_assert_eq!(got.is_allowed(), a > dn),
        }
    }

    /// An address decides the same whatever its spelling.
    #[test]
    fn ip_forms_decide_like_the_canonical_form(
        v in prop_oneof![any::<u32>(), (0u32..256).prop_map(|x| 0xcb00_7100 | x), (0u32..256).prop_map(|x| 0x0a00_0000 | x)],
        port in 1u16..,
    ) {
        let p = network("deny", &["203.0.113.0/24:443", "10.0.0.0/8", "8.8.8.8"], &["203.0.113.128/25"]);
        let a = Ipv4Addr::from(v);
        let canonical = p.decide_connect(&a.to_string(), port);
        for form in [v.to_string(), format!("{v:#x}"), format!("0{v:o}"), format!("[::ffff:{a}]"), format!("{}.{}", v >> 24, v & 0x00ff_ffff)] {
            prop_assert_eq!(p.decide_connect(&form, port), canonical.clone(), "{}", form);
        }
        prop_assert_eq!(p.decide_address(IpAddr::V4(a), port).verdict, p.decide_address(IpAddr::V6(a.to_ipv6_mapped()), port).verdict);
    }
}
