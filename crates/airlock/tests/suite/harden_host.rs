//! The host stays out of the guest's reach where a policy or a terminal would let it in by
//! accident: cloud metadata addresses stay closed under `allow_private`, and the command's
//! output cannot set the host terminal's clipboard or title.

use airlock_testkit::audit::{Decision, kind};
use airlock_testkit::{Airlock, text, write_policy};

#[test]
fn metadata_addresses_stay_closed_under_allow_private_and_are_recorded() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let p = write_policy(
        ws.path(),
        "extends = \"default\"\n[network]\ndefault = \"allow\"\nallow_private = true\n",
    );
    // Plain HTTP through the egress gateway, as the guest's tools reach the network.
    let script = "wget -q -O- http://169.254.170.2/v2/credentials; echo ecs=$?; \
                  wget -q -O- http://100.100.100.200/latest/meta-data/; echo alibaba=$?";
    let out = a.run([
        "run",
        "--policy",
        &p,
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for name in ["ecs", "alibaba"] {
        assert!(
            stdout.contains(&format!("{name}=")) && !stdout.contains(&format!("{name}=0")),
            "the request to {name} must fail: {stdout}"
        );
    }
    let log = a.audit();
    for host in ["169.254.170.2", "100.100.100.200"] {
        assert!(
            log.has(|e| e.kind == kind::NET_HTTP
                && e.decision == Some(Decision::Deny)
                && e.rule.as_deref() == Some("network.metadata")
                && e.reason.as_deref() == Some("metadata_address")
                && e.net.as_ref().and_then(|n| n.host.as_deref()) == Some(host)),
            "no metadata_address denial of {host} in\n{log}"
        );
    }
    a.assert_clean();
}

/// An OSC 52 clipboard write, an OSC 2 title, and a colour, on stdout and on stderr.
const SCRIPT: &str = "printf '\\033]52;c;cHduZWQ=\\007\\033]2;pwned\\033\\\\\\033[31mred\\033[0m\\n'; \
                      printf '\\033]52;c;cHduZWQ=\\007err\\n' >&2";
const COLOUR: &[u8] = b"\x1b[31mred\x1b[0m\n";
const CLIPBOARD: &[u8] = b"\x1b]52;c;cHduZWQ=\x07";
const TITLE: &[u8] = b"\x1b]2;pwned\x1b\\";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn guest_output_cannot_set_the_host_clipboard_or_title_unless_allowed() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "sh", "-c", SCRIPT]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        out.stdout.escape_ascii().to_string(),
        COLOUR.escape_ascii().to_string()
    );
    assert!(
        contains(&out.stderr, b"err\n") && !contains(&out.stderr, b"\x1b]"),
        "{}",
        out.stderr.escape_ascii()
    );
    assert!(
        text(&out.stderr).contains(
            "airlock: removed 3 terminal title or clipboard sequence(s) from the command's \
             output (--allow-title-and-clipboard lets them through)"
        ),
        "{}",
        text(&out.stderr)
    );

    let out = a.run([
        "run",
        "--allow-title-and-clipboard",
        "--",
        "sh",
        "-c",
        SCRIPT,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        out.stdout.escape_ascii().to_string(),
        [CLIPBOARD, TITLE, COLOUR]
            .concat()
            .escape_ascii()
            .to_string()
    );
    assert!(
        contains(&out.stderr, &[CLIPBOARD, b"err\n"].concat()),
        "{}",
        out.stderr.escape_ascii()
    );
    assert!(
        !text(&out.stderr).contains("removed"),
        "{}",
        text(&out.stderr)
    );
    a.assert_clean();
}
