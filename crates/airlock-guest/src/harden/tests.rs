//! Unit tests of the hardening helpers.
use super::*;

#[test]
fn oom_kill_counter() {
    let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n";
    assert_eq!(parse_oom_kills(events), 2);
    assert_eq!(parse_oom_kills("oom 1\n"), 0);
    assert_eq!(parse_oom_kills("oom_kill x\n"), 0);
}

#[test]
fn profiles_compile() {
    assert!(filters(SeccompProfile::Unconfined).unwrap().is_empty());
    let d = filters(SeccompProfile::Default).unwrap();
    let s = filters(SeccompProfile::Strict).unwrap();
    assert_eq!(d.len(), 2);
    assert!(s[0].len() > d[0].len(), "strict adds rules");
}

#[test]
fn cached_programs_are_the_compiled_ones_per_profile() {
    for profile in [
        SeccompProfile::Default,
        SeccompProfile::Strict,
        SeccompProfile::Unconfined,
    ] {
        let fresh = filters(profile).unwrap();
        let first = filters_cached(profile).unwrap();
        let mut second = filters_cached(profile).unwrap();
        assert_eq!(first, fresh, "{profile:?}");
        // Each caller gets its own copy: rewriting one for notifications leaves the cache.
        if let Some(p) = second.first_mut() {
            notify_denials(p);
        }
        assert_eq!(filters_cached(profile).unwrap(), fresh, "{profile:?}");
    }
}

#[test]
fn denials_become_notifications_but_enosys_stays() {
    let mut d = filters(SeccompProfile::Default).unwrap();
    let eperm = libc::SECCOMP_RET_ERRNO | 1;
    assert!(d[0].iter().any(|i| i.k == eperm));
    notify_denials(&mut d[0]);
    assert!(!d[0].iter().any(|i| i.code == 0x06 && i.k == eperm));
    assert!(d[0].iter().any(|i| i.k == libc::SECCOMP_RET_USER_NOTIF));
    assert_eq!(describe(libc::SYS_keyctl), ("keyctl", "kernel keyring"));
}

#[test]
fn every_denial_has_a_reason() {
    for d in DEFAULT_DENY.iter().chain(STRICT_DENY) {
        assert!(!d.reason.is_empty(), "syscall {} has no reason", d.nr);
    }
}

#[test]
fn users() {
    let passwd =
        "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\nbad:x:y\n";
    assert_eq!(
        lookup_user(passwd, "agent"),
        Some(Account {
            uid: 1000,
            gid: 1000,
            home: "/home/agent".into()
        })
    );
    assert_eq!(lookup_user(passwd, "root").map(|a| a.uid), Some(0));
    assert_eq!(lookup_user(passwd, "bad"), None);
    assert_eq!(lookup_user(passwd, "nobody"), None);
    let group = "root:x:0:\nagent:x:1000:\nwheel:x:10:agent\n";
    let r = |s: &str| resolve_user(passwd, group, s).map(|a| (a.uid, a.gid, a.home));
    assert_eq!(r("agent"), Some((1000, 1000, "/home/agent".into())));
    assert_eq!(r("1000"), Some((1000, 1000, "/home/agent".into())));
    assert_eq!(r("4321"), Some((4321, 0, "/".into())));
    assert_eq!(r("4321:77"), Some((4321, 77, "/".into())));
    assert_eq!(r("agent:wheel"), Some((1000, 10, "/home/agent".into())));
    assert_eq!(r("agent:nogroup"), None);
    assert_eq!(r("ghost"), None);
    assert_eq!(r(""), None);
}
