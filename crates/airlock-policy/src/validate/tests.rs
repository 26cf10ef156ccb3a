//! Every validation and parse error, asserted whole: file:line:column, key and message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{parse_duration, parse_size};
use super::*;
use crate::load::load_with;
use crate::policy::MonitorEvent;
use crate::policy::{AuditPolicy, Mount, MountHost, ProcessPolicy, SandboxLimits};
use crate::schema::MonitorAction;
use crate::schema::{MountMode, SeccompProfile};
use crate::source::Env;

mod credentials;
mod never_match;

fn env() -> Env {
    Env {
        home: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        trusted_hosts: false,
    }
}

fn load(text: &str) -> Result<Policy, crate::PolicyErrors> {
    load_with(text, Path::new("test.toml"), &env())
}

/// The whole error text, one error per line.
fn errors(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn assert_error(text: &str, expected: &str) {
    assert_eq!(errors(text), expected, "policy:\n{text}");
}

#[test]
fn syntax_error() {
    assert_error(
        "[sandbox]\ncpus = \n",
        "test.toml:2:8: TOML syntax error: string values must be quoted, expected literal string",
    );
}

#[test]
fn unknown_keys_point_at_the_key() {
    assert_error(
        "colour = \"red\"\n[sandbox]\ncpus = 1\n  memroy = \"1G\"\n",
        "test.toml:1:1: unknown key `colour`, expected one of: audit, extends, filesystem, monitor, network, process, sandbox\n\
         test.toml:4:3: sandbox: unknown key `memroy`, expected one of: cpus, disk, image, layers, memory, pids, require, timeout",
    );
    assert_error(
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/w\"\nreadonly = true\n",
        "test.toml:4:1: filesystem.mounts[0]: unknown key `readonly`, expected one of: guest, host, mode, protected, workspace",
    );
    assert_error(
        "[[network.http]]\nhost = \"a.example\"\naction = \"allow\"\nverb = \"GET\"\n",
        "test.toml:4:1: network.http[0]: unknown key `verb`, expected one of: action, host, methods, path",
    );
}

#[test]
fn wrong_types_missing_keys_bad_keywords() {
    assert_error(
        "[sandbox]\ncpus = \"two\"\nmemory = 512\n[network]\nallow = [\"a.example\", 1]\nallow_private = \"yes\"\n",
        "test.toml:2:8: sandbox.cpus: wrong type: found string \"two\", expected integer\n\
         test.toml:3:10: sandbox.memory: wrong type: found integer 512, expected string\n\
         test.toml:5:23: network.allow[1]: wrong type: found integer 1, expected string\n\
         test.toml:6:17: network.allow_private: wrong type: found string \"yes\", expected boolean",
    );
    assert_error(
        "[[filesystem.mounts]]\nworkspace = true\nmode = \"rx\"\n",
        "test.toml:1:1: filesystem.mounts[0]: missing key `guest`\n\
         test.toml:3:8: filesystem.mounts[0].mode: invalid value: found \"rx\", expected one of \"ro\", \"rw\", \"overlay\"",
    );
    assert_error(
        "[process]\nseccomp = \"off\"\n[network]\ndefault = \"block\"\n",
        "test.toml:2:11: process.seccomp: invalid value: found \"off\", expected one of \"default\", \"strict\", \"unconfined\"\n\
         test.toml:4:11: network.default: invalid value: found \"block\", expected one of \"allow\", \"deny\"",
    );
    assert_error(
        "[sandbox]\ncpus = -1\npids = 5000000000\n",
        "test.toml:2:8: sandbox.cpus: out of range: found -1, expected an integer from 0 to 4294967295\n\
         test.toml:3:8: sandbox.pids: out of range: found 5000000000, expected an integer from 0 to 4294967295",
    );
    assert_error(
        "sandbox = \"big\"\n",
        "test.toml:1:11: sandbox: wrong type: found string \"big\", expected table",
    );
}

#[test]
fn sandbox_values() {
    assert_error(
        "[sandbox]\nimage = \"Debian 12\"\ncpus = 0\nmemory = \"12X\"\ndisk = \"0G\"\npids = 0\ntimeout = \"10\"\n",
        "test.toml:2:9: sandbox.image: invalid image name \"Debian 12\", expected 1 to 64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter or digit\n\
         test.toml:3:8: sandbox.cpus: found 0, expected at least 1\n\
         test.toml:4:10: sandbox.memory: invalid size \"12X\", expected a whole number greater than 0 with an optional unit: K, M, G, T or KiB, MiB, GiB, TiB (binary), KB, MB, GB, TB (decimal), B; e.g. \"512MiB\"\n\
         test.toml:5:8: sandbox.disk: invalid size \"0G\", expected a whole number greater than 0 with an optional unit: K, M, G, T or KiB, MiB, GiB, TiB (binary), KB, MB, GB, TB (decimal), B; e.g. \"512MiB\"\n\
         test.toml:6:8: sandbox.pids: found 0, expected at least 1\n\
         test.toml:7:11: sandbox.timeout: invalid duration \"10\", expected numbers with units ms, s, m, h or d, greater than 0; e.g. \"90s\", \"30m\" or \"1h30m\"",
    );
}

#[test]
fn sandbox_defaults_and_units() {
    let p = load("").unwrap();
    assert_eq!(
        *p.sandbox(),
        SandboxLimits {
            image: "tiny".to_owned(),
            layers: vec![],
            cpus: 1,
            memory_bytes: 512 << 20,
            disk_bytes: 2 << 30,
            pids: 1024,
            timeout: None,
            require: vec![],
        }
    );
    let p = load("[sandbox]\nmemory = \"512M\"\ndisk = \"10GB\"\ntimeout = \"1h30m\"\ncpus = 4\n")
        .unwrap();
    assert_eq!(p.sandbox().memory_bytes, 512 << 20);
    assert_eq!(p.sandbox().disk_bytes, 10_000_000_000);
    assert_eq!(p.sandbox().timeout, Some(Duration::from_secs(5400)));
    assert_eq!(p.sandbox().cpus, 4);
    assert_eq!(parse_size("2GiB"), Some(2 << 30));
    assert_eq!(parse_size("1k"), Some(1024));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("18446744073709551615T"), None);
    assert_eq!(parse_size("1.5G"), None);
    assert_eq!(parse_size(" 1G"), None);
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("1d2h"), Some(Duration::from_secs(93_600)));
    assert_eq!(parse_duration("0s"), None);
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("m"), None);
    assert_eq!(parse_duration("5 m"), None);
    assert_eq!(parse_duration("999999999999999h"), None);
}

#[test]
fn mount_paths() {
    assert_error(
        r#"
[[filesystem.mounts]]
host = "nope"
guest = "workspace"
[[filesystem.mounts]]
host = "../outside"
guest = "/a/../b"
[[filesystem.mounts]]
host = "Cargo.toml"
guest = "/proc/x"
[[filesystem.mounts]]
host = "~other/dir"
guest = "/"
"#,
        "test.toml:3:8: filesystem.mounts[0].host: host path \"nope\" (resolved to \"./nope\") does not exist; expected an existing directory\n\
         test.toml:4:9: filesystem.mounts[0].guest: invalid guest path \"workspace\": path is not absolute; expected an absolute path like \"/workspace\"\n\
         test.toml:6:8: filesystem.mounts[1].host: invalid host path \"../outside\": `..` is not allowed\n\
         test.toml:7:9: filesystem.mounts[1].guest: invalid guest path \"/a/../b\": `..` is not allowed; expected an absolute path like \"/workspace\"\n\
         test.toml:9:8: filesystem.mounts[2].host: host path \"Cargo.toml\" (resolved to \"./Cargo.toml\") is not a directory; expected a directory\n\
         test.toml:10:9: filesystem.mounts[2].guest: guest path \"/proc/x\" would hide a guest system directory; expected a path outside /, /proc, /sys and /dev\n\
         test.toml:12:8: filesystem.mounts[3].host: invalid host path \"~other/dir\": only `~` and `~/...` are expanded, not `~user`\n\
         test.toml:13:9: filesystem.mounts[3].guest: guest path \"/\" would hide a guest system directory; expected a path outside /, /proc, /sys and /dev",
    );
}

#[test]
fn mount_sources() {
    assert_error(
        "[[filesystem.mounts]]\nhost = \"src\"\nworkspace = true\nguest = \"/a\"\n[[filesystem.mounts]]\nguest = \"/b\"\n",
        "test.toml:3:13: filesystem.mounts[0].workspace: both `host` and `workspace = true` are set; expected exactly one\n\
         test.toml:5:1: filesystem.mounts[1]: neither `host` nor `workspace = true` is set; expected exactly one",
    );
}

#[test]
fn mounts_resolve_and_duplicates_are_refused() {
    assert_error(
        "[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/w\"\n[[filesystem.mounts]]\nhost = \"~/src\"\nguest = \"/w/\"\n",
        "test.toml:6:9: filesystem.mounts[1].guest: guest path \"/w\" is already mounted by filesystem.mounts[0]; expected each guest path once",
    );
    let p = load("[[filesystem.mounts]]\nhost = \"~/src\"\nguest = \"/src/./\"\n[[filesystem.mounts]]\nhost = \"./src\"\nguest = \"/src2\"\nmode = \"rw\"\n").unwrap();
    let src = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/src")).unwrap();
    assert_eq!(
        p.mounts(),
        &[
            Mount {
                host: MountHost::Path(src.clone()),
                guest: "/src".to_owned(),
                mode: MountMode::Ro,
                workspace: false,
                protected: true,
                rule: "filesystem.mounts[0] \"/src\"".to_owned(),
            },
            Mount {
                host: MountHost::Path(src),
                guest: "/src2".to_owned(),
                mode: MountMode::Rw,
                workspace: false,
                protected: true,
                rule: "filesystem.mounts[1] \"/src2\"".to_owned(),
            },
        ]
    );
}

#[test]
fn mount_protected_defaults_to_true_and_must_be_a_bool() {
    let p = load(
        "[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/a\"\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/b\"\nprotected = true\n",
    )
    .unwrap();
    assert!(p.mounts().iter().all(|m| m.protected));
    assert_eq!(p.unprotected_mounts().count(), 0);
    assert_error(
        "[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/a\"\nprotected = \"no\"\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/b\"\nprotected = 0\n",
        "test.toml:4:13: filesystem.mounts[0].protected: wrong type: found string \"no\", expected boolean\n\
         test.toml:8:13: filesystem.mounts[1].protected: wrong type: found integer 0, expected boolean",
    );
}

#[test]
fn unprotected_mounts() {
    let p = load(
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"rw\"\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/home/agent\"\nmode = \"rw\"\nprotected = false\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/ref\"\nprotected = false\n",
    )
    .unwrap();
    let open: Vec<&str> = p.unprotected_mounts().map(|m| m.guest.as_str()).collect();
    assert_eq!(open, ["/home/agent", "/ref"]);
    assert!(p.mounts()[0].protected);
    // The workspace is read by tools on the host: it always keeps the protected paths.
    assert_error(
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"rw\"\nprotected = false\n",
        "test.toml:5:13: filesystem.mounts[0].protected: `protected = false` is not allowed with `workspace = true`: tools on the host run and read the workspace's git hooks, git config and agent settings; expected `protected = true` (the default) on the workspace mount",
    );
}

#[test]
fn unprotected_mount_may_not_hold_a_protected_share() {
    let root = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    let src = root.join("src");
    // The same directory, or one holding another share's, would make that share's protected
    // paths writable under other names.
    assert_error(
        "[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/a\"\nmode = \"rw\"\n[[filesystem.mounts]]\nhost = \".\"\nguest = \"/b\"\nmode = \"rw\"\nprotected = false\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/c\"\nprotected = false\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/d\"\n",
        &format!(
            "test.toml:9:13: filesystem.mounts[1].protected: `protected = false` on host directory {root:?}, which is or holds host directory {src:?} of filesystem.mounts[0] \"/a\"; expected `protected = false` only on a directory that holds no share keeping its protected paths\n\
             test.toml:9:13: filesystem.mounts[1].protected: `protected = false` on host directory {root:?}, which is or holds host directory {src:?} of filesystem.mounts[3] \"/d\"; expected `protected = false` only on a directory that holds no share keeping its protected paths\n\
             test.toml:13:13: filesystem.mounts[2].protected: `protected = false` on host directory {src:?}, which is or holds host directory {src:?} of filesystem.mounts[0] \"/a\"; expected `protected = false` only on a directory that holds no share keeping its protected paths\n\
             test.toml:13:13: filesystem.mounts[2].protected: `protected = false` on host directory {src:?}, which is or holds host directory {src:?} of filesystem.mounts[3] \"/d\"; expected `protected = false` only on a directory that holds no share keeping its protected paths",
        ),
    );
    // An unprotected directory inside a protected share's is allowed (its own files are what
    // it opens up), and so are two overlapping unprotected ones.
    let text = "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"rw\"\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/home/agent\"\nmode = \"rw\"\nprotected = false\n[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/other\"\nprotected = false\n";
    let p = load(text).unwrap();
    assert!(p.clone().with_workspace(&root).is_ok());
    // The workspace is checked when it is bound.
    let ws = src.join("decide");
    assert_eq!(
        p.with_workspace(&ws).unwrap_err().to_string(),
        format!(
            "{}: workspace: `protected = false` on host directory {src:?}, which is or holds host directory {ws:?} of filesystem.mounts[0] \"/workspace\"; expected `protected = false` only on a directory that holds no share keeping its protected paths",
            ws.display()
        )
    );
    // A gateway loading with host directories checked elsewhere checks them again.
    let source = crate::PolicySource {
        text: text.to_owned(),
        origin: PathBuf::from("test.toml"),
        workspace: Some(ws.clone()),
        home: None,
        reserved: Vec::new(),
    };
    let err = source
        .load_checked_elsewhere(&[Some(ws.clone()), Some(src.clone()), Some(root.clone())])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("test.toml: filesystem.mounts: `protected = false` on host directory"),
        "{err}"
    );
    assert!(
        source
            .load_checked_elsewhere(&[Some(root.clone()), Some(src.clone()), Some(src)])
            .is_ok()
    );
}

#[test]
fn home_must_be_set_for_tilde() {
    let e = load_with(
        "[[filesystem.mounts]]\nhost = \"~\"\nguest = \"/h\"\n",
        Path::new("test.toml"),
        &Env {
            home: None,
            trusted_hosts: false,
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "test.toml:2:8: filesystem.mounts[0].host: cannot expand `~` in \"~\": HOME is not set"
    );
}

#[test]
fn workspace_binding() {
    let p =
        load("[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"rw\"\n")
            .unwrap();
    assert!(p.needs_workspace());
    let bound = p
        .clone()
        .with_workspace(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    assert!(!bound.needs_workspace());
    assert_eq!(
        bound.mounts()[0].host,
        MountHost::Path(std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap())
    );
    assert_eq!(
        p.with_workspace(Path::new("/nonexistent/ws"))
            .unwrap_err()
            .to_string(),
        "/nonexistent/ws: workspace: host path \"/nonexistent/ws\" (resolved to \"/nonexistent/ws\") does not exist; expected an existing directory"
    );
}

#[test]
fn globs() {
    assert_error(
        r#"
[filesystem]
deny_read = ["a[", "../etc/**", "secrets/", "."]
deny_write = ["ok/**", "x/{a,b"]
protect = ["/tmp/../x"]
"#,
        "test.toml:3:14: filesystem.deny_read[0]: invalid glob \"a[\": invalid glob: unclosed character class; missing ']'\n\
         test.toml:3:20: filesystem.deny_read[1]: invalid glob \"../etc/**\": `..` is not allowed\n\
         test.toml:3:33: filesystem.deny_read[2]: invalid glob \"secrets/\": trailing `/`; write `dir/**` for a directory's contents\n\
         test.toml:3:45: filesystem.deny_read[3]: invalid glob \".\": empty path\n\
         test.toml:4:24: filesystem.deny_write[1]: invalid glob \"x/{a,b\": invalid glob: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)\n\
         test.toml:5:12: filesystem.protect[0]: invalid glob \"/tmp/../x\": `..` is not allowed",
    );
}

#[test]
fn protect_and_unprotect() {
    assert_error(
        "[filesystem]\nprotect = [\".vscode/**\"]\nunprotect = [\".vscode/**\", \".git/hooks\"]\n",
        "test.toml:3:14: filesystem.unprotect[0]: \".vscode/**\" is also in `filesystem.protect`; expected it in only one of the two lists\n\
         test.toml:3:28: filesystem.unprotect[1]: \".git/hooks\" is not a built-in protected entry, expected one of: .git/hooks/**, .git/config, .git/config.worktree, .git/commondir, .git/modules/**/hooks/**, .git/modules/**/config, .git/worktrees/*/commondir, .git/worktrees/*/config.worktree, .hg/hgrc, .jj/**, .gitmodules, .husky/**, .pre-commit-config.yaml, .claude/**, .codex/**, .gemini/**, .cursor/**, .mcp.json, .vscode/**, .idea/**, .devcontainer/**, .envrc, .direnv/**, .npmrc, .yarnrc, .yarnrc.yml, .pnpmfile.cjs, mise.toml, .mise.toml, .tool-versions, .zed/**, .bashrc, .bash_profile, .bash_login, .profile, .zshrc, .zprofile, .zshenv",
    );
    let p = load("[filesystem]\nunprotect = [\".vscode/**\", \".vscode/**\"]\n").unwrap();
    assert_eq!(p.unprotected(), [".vscode/**".to_owned()]);
}

#[test]
fn network_entries() {
    assert_error(
        r#"
[network]
allow = ["*", "*.com", "*.co.uk:443", "a.*.example", "::1:443", "example.com:0", "example.com:70000"]
deny = ["10.0.0.1/8", "0.0.0.0/0", "exa mple.com", "1.2.3.999", "[::1"]
"#,
        "test.toml:3:10: network.allow[0]: invalid host pattern \"*\": over-broad pattern: matches every host; use network.default = \"allow\" instead\n\
         test.toml:3:15: network.allow[1]: invalid host pattern \"*.com\": over-broad pattern: covers every host under the public suffix \"com\"\n\
         test.toml:3:24: network.allow[2]: invalid host pattern \"*.co.uk:443\": over-broad pattern: covers every host under the public suffix \"co.uk\"\n\
         test.toml:3:39: network.allow[3]: invalid host pattern \"a.*.example\": `*` is only allowed as the whole first label, as in *.example.com\n\
         test.toml:3:54: network.allow[4]: invalid host pattern \"::1:443\": ambiguous IPv6 address: the last group could be a port; write [addr] or [addr]:port\n\
         test.toml:3:65: network.allow[5]: invalid host pattern \"example.com:0\": port must be a number from 1 to 65535\n\
         test.toml:3:82: network.allow[6]: invalid host pattern \"example.com:70000\": port must be a number from 1 to 65535\n\
         test.toml:4:9: network.deny[0]: invalid host pattern \"10.0.0.1/8\": CIDR block has host bits set after the prefix\n\
         test.toml:4:23: network.deny[1]: invalid host pattern \"0.0.0.0/0\": over-broad pattern: matches every host; use network.default = \"allow\" instead\n\
         test.toml:4:36: network.deny[2]: invalid host pattern \"exa mple.com\": invalid character ' ' in host\n\
         test.toml:4:52: network.deny[3]: invalid host pattern \"1.2.3.999\": numeric host is not a valid IPv4 address\n\
         test.toml:4:65: network.deny[4]: invalid host pattern \"[::1\": not a valid IPv6 address",
    );
}

#[test]
fn same_entry_in_allow_and_deny_is_not_an_error() {
    let p = load(
        "[network]\ndefault = \"allow\"\nallow = [\"a.example:443\"]\ndeny = [\"a.example:443\"]\n",
    )
    .unwrap();
    assert!(!p.decide_connect("a.example", 443).is_allowed());
}

#[test]
fn http_rules() {
    assert_error(
        r#"
[[network.http]]
host = "*"
methods = ["GET", "PO ST", ""]
path = "v1/**"
action = "allow"
[[network.http]]
host = "a.example"
path = "/v1/../admin"
action = "deny"
[[network.http]]
host = "a.example"
path = "/v1/[x"
action = "deny"
"#,
        "test.toml:3:8: network.http[0].host: invalid host pattern \"*\": over-broad pattern: matches every host; use network.default = \"allow\" instead\n\
         test.toml:4:19: network.http[0].methods[1]: invalid HTTP method \"PO ST\", expected letters and `-` only, like \"GET\"\n\
         test.toml:4:28: network.http[0].methods[2]: invalid HTTP method \"\", expected letters and `-` only, like \"GET\"\n\
         test.toml:5:8: network.http[0].path: invalid HTTP path \"v1/**\": does not start with `/`; expected a glob starting with `/`, like \"/v1/**\"\n\
         test.toml:9:8: network.http[1].path: invalid HTTP path \"/v1/../admin\": `.` and `..` segments are not allowed; expected a glob starting with `/`, like \"/v1/**\"\n\
         test.toml:13:8: network.http[2].path: invalid HTTP path \"/v1/[x\": unclosed character class; missing ']'; expected a glob starting with `/`, like \"/v1/**\"",
    );
}

#[test]
fn process_settings() {
    assert_error(
        "[process]\nuser = \"Root User\"\nno_new_privs = false\n",
        "test.toml:2:8: process.user: invalid user name \"Root User\", expected up to 32 lower-case letters, digits, `_` or `-`, starting with a letter or `_`\n\
         test.toml:3:16: process.no_new_privs: `no_new_privs = false` requires `seccomp = \"unconfined\"` (the unprivileged workload cannot install a seccomp filter without no_new_privs); found seccomp = \"default\"",
    );
    let p = load("[process]\nseccomp = \"unconfined\"\nno_new_privs = false\n").unwrap();
    assert_eq!(
        *p.process(),
        ProcessPolicy {
            user: "agent".to_owned(),
            seccomp: SeccompProfile::Unconfined,
            no_new_privs: false,
        }
    );
}

#[test]
fn audit_settings() {
    assert_error(
        "[audit]\npath = \"../audit.jsonl\"\nredact = [\"sk-[a-z\", \"ok\"]\nredact_env = [\"GITHUB_TOKEN\", \"1BAD\", \"A-B\"]\n",
        "test.toml:2:8: audit.path: invalid host path \"../audit.jsonl\": `..` is not allowed\n\
         test.toml:3:11: audit.redact[0]: invalid regular expression \"sk-[a-z\": unclosed character class\n\
         test.toml:4:31: audit.redact_env[1]: invalid environment variable name \"1BAD\", expected letters, digits and `_`, not starting with a digit\n\
         test.toml:4:39: audit.redact_env[2]: invalid environment variable name \"A-B\", expected letters, digits and `_`, not starting with a digit",
    );
    assert_error(
        "[audit]\nguest_rate = 0\n",
        "test.toml:2:14: audit.guest_rate: out of range: found 0, expected an integer from 1 to 1000000",
    );
    let p = load("[audit]\npath = \"logs/audit.jsonl\"\nredact = [\"sk-ant-[A-Za-z0-9_-]+\"]\nredact_env = [\"ANTHROPIC_API_KEY\"]\nguest_rate = 50\n").unwrap();
    assert_eq!(
        *p.audit(),
        AuditPolicy {
            path: Some(PathBuf::from("./logs/audit.jsonl")),
            redact: vec!["sk-ant-[A-Za-z0-9_-]+".to_owned()],
            redact_env: vec!["ANTHROPIC_API_KEY".to_owned()],
            guest_rate: 50,
        }
    );
    assert_eq!(load("").unwrap().audit().guest_rate, 2000);
}

#[test]
fn monitor_rules() {
    assert_error(
        r#"
[[monitor.rules]]
action = "kill"
[[monitor.rules]]
kind = "net.{connect"
host = "*.com"
action = "alert"
[[monitor.rules]]
path = "a["
action = "pause"
"#,
        "test.toml:2:1: monitor.rules[0]: rule has no match field; expected at least one of kind, decision, path, host\n\
         test.toml:5:8: monitor.rules[1].kind: invalid glob \"net.{connect\": invalid glob: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)\n\
         test.toml:6:8: monitor.rules[1].host: invalid host pattern \"*.com\": over-broad pattern: covers every host under the public suffix \"com\"\n\
         test.toml:9:8: monitor.rules[2].path: invalid glob \"a[\": invalid glob: unclosed character class; missing ']'",
    );
    let p = load(
        "[[monitor.rules]]\nkind = \"net.*\"\ndecision = \"deny\"\nhost = \"*.example.com\"\naction = \"kill\"\n[[monitor.rules]]\npath = \"**/.env\"\naction = \"alert\"\n",
    )
    .unwrap();
    let rules = p.monitor_rules();
    assert_eq!(
        rules[0].rule,
        "monitor.rules[0] \"kind=net.* decision=deny host=*.example.com\""
    );
    assert_eq!(rules[0].action, MonitorAction::Kill);
    let ev = |kind, decision, path, host| MonitorEvent {
        kind,
        decision,
        path,
        host,
        port: Some(443),
    };
    use EventDecisionAlias as D;
    assert!(rules[0].matches(&ev("net.connect", D::Deny, None, Some("a.example.com"))));
    assert!(!rules[0].matches(&ev("net.connect", D::Allow, None, Some("a.example.com"))));
    assert!(!rules[0].matches(&ev("net.connect", D::Deny, None, Some("example.com"))));
    assert!(!rules[0].matches(&ev("fs.open", D::Deny, None, Some("a.example.com"))));
    assert!(!rules[0].matches(&ev("net.connect", D::Deny, None, None)));
    assert!(rules[1].matches(&ev("fs.open", D::Allow, Some("app/.env"), None)));
    assert!(!rules[1].matches(&ev("fs.open", D::Allow, None, None)));
}

use crate::schema::EventDecision as EventDecisionAlias;

#[test]
fn extends_unknown_profile_still_reports_other_errors() {
    assert_error(
        "extends = \"claude\"\n[sandbox]\ncpus = 0\n",
        "test.toml:1:11: extends: unknown profile \"claude\", expected one of: default, offline, claude-code, codex, gemini, aider, container, docker\n\
         test.toml:3:8: sandbox.cpus: found 0, expected at least 1",
    );
}

#[test]
fn extends_merges_lists_scalars_and_mounts() {
    let p = load(
        r#"
extends = "claude-code"
[sandbox]
memory = "4GiB"
[[filesystem.mounts]]
workspace = true
guest = "/workspace"
mode = "ro"
[[filesystem.mounts]]
host = "src"
guest = "/ref"
[network]
allow = ["crates.io:443"]
deny = ["sentry.io:443"]
"#,
    )
    .unwrap();
    // Scalars override, unset ones are inherited.
    assert_eq!(p.sandbox().memory_bytes, 4 << 30);
    assert_eq!(p.sandbox().image, "debian");
    // A mount at the same guest path replaces the profile's, in place.
    assert_eq!(p.mounts().len(), 2);
    assert_eq!(p.mounts()[0].mode, MountMode::Ro);
    assert_eq!(p.mounts()[0].rule, "filesystem.mounts[0] \"/workspace\"");
    // Lists append; entries from the profile name it.
    let allowed = p.decide_connect("api.anthropic.com", 443);
    assert_eq!(
        allowed.rule,
        "network.allow[0] \"api.anthropic.com:443\" (profile claude-code)"
    );
    assert_eq!(
        p.decide_connect("crates.io", 443).rule,
        "network.allow[0] \"crates.io:443\""
    );
    // A deny of equal specificity takes a profile's allow away.
    assert_eq!(
        p.decide_connect("sentry.io", 443).rule,
        "network.deny[0] \"sentry.io:443\""
    );
    assert!(!p.decide_connect("sentry.io", 443).is_allowed());
}

#[test]
fn every_bad_entry_is_reported_at_once() {
    let text = "[sandbox]\ncpus = 0\npids = 0\n[network]\nallow = [\"*\", \"ok.example\", \"*.io\"]\n[filesystem]\ndeny_write = [\"a[\"]\n";
    assert_eq!(errors(text).lines().count(), 5);
}

#[test]
fn required_protections_are_checked_by_name() {
    let p = load("[sandbox]\nrequire = [\"kvm\", \"host-cgroups\", \"kvm\"]\n").unwrap();
    assert_eq!(p.sandbox().require, ["kvm", "host-cgroups"]);
    let err = load("[sandbox]\nrequire = [\"kvm\", \"selinux\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains(":2:19: sandbox.require[1]"), "{err}");
    assert!(
        err.contains("unknown protection \"selinux\", expected one of: kvm"),
        "{err}"
    );
}

#[test]
fn the_source_loads_the_same_policy_again() {
    let dir = std::env::temp_dir();
    let text = "extends = \"default\"\n[network]\nallow = [\"example.com:443\"]\n";
    let p = crate::load_str(text, Path::new("/etc/airlock/p.toml"))
        .unwrap()
        .with_workspace(&dir)
        .unwrap();
    let again = p.source().load().unwrap();
    assert_eq!(again.source(), p.source());
    assert_eq!(again.mounts(), p.mounts());
    assert_eq!(again.sandbox(), p.sandbox());
    assert_eq!(p.source().origin, Path::new("/etc/airlock/p.toml"));
}

#[test]
fn max_open_has_a_default_and_a_range() {
    assert_eq!(load("").unwrap().max_open(), 8192);
    assert_eq!(
        load("[filesystem]\nmax_open = 100\n").unwrap().max_open(),
        100
    );
    assert_error(
        "[filesystem]\nmax_open = 8\n",
        "test.toml:2:12: filesystem.max_open: out of range: found 8, expected an integer from 16 to 1048576",
    );
}

#[test]
fn layers_are_checked_by_name() {
    let p = load("[sandbox]\nimage = \"debian\"\nlayers = [\"docker\", \"docker\"]\n").unwrap();
    assert_eq!(p.sandbox().layers, ["docker"]);
    assert!(load("[sandbox]\n").unwrap().sandbox().layers.is_empty());
    let err = load("[sandbox]\nlayers = [\"docker\", \"podman\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":2:21: sandbox.layers[1]: unknown layer \"podman\", expected one of: docker"),
        "{err}"
    );
}
