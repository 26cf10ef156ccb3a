//! GatedFs tests: descriptors bounded by the resident budget however many nodes the guest
//! knows, evicted nodes revived by name and checked by identity, names swapped on the host
//! never followed, and the open-file limit.
#![allow(clippy::indexing_slicing)]

use std::fs;
use std::io::Read;

use airlock_policy::{MountMode, Verdict};
use virtiofsd::filesystem::FileSystem;

use super::tests::{c, ctx, errno, fixture_limited};
use crate::reason;
use airlock_audit::kind;

/// Reads a file through the gateway: open, then the host file the handle names.
fn read_through(f: &super::tests::Fixture, inode: u64) -> std::io::Result<()> {
    f.fs.open(ctx(), inode, false, libc::O_RDONLY as u32)
        .map(drop)
}

#[test]
fn descriptors_stay_within_the_resident_budget_and_evicted_nodes_come_back() {
    let f = fixture_limited(MountMode::Rw, u64::MAX, 16);
    for d in 0..10 {
        fs::create_dir(f.host(&format!("d{d}"))).unwrap();
        for i in 0..20 {
            fs::write(f.host(&format!("d{d}/f{i}")), format!("{d}.{i}")).unwrap();
        }
    }
    let mut nodes = Vec::new();
    for d in 0..10 {
        let dir = f.lookup(super::tests::ROOT, &format!("d{d}")).unwrap();
        for i in 0..20 {
            nodes.push((f.lookup(dir, &format!("f{i}")).unwrap(), format!("{d}.{i}")));
        }
        assert!(f.fs.resident() <= 16, "{} resident", f.fs.resident());
    }
    assert_eq!(nodes.len(), 200);
    // Every node still works: attributes, and opening it (revived by name when evicted).
    for (inode, _) in &nodes {
        let (attr, _) = f.fs.getattr(ctx(), *inode, None).unwrap();
        assert_eq!(attr.mode & libc::S_IFMT, libc::S_IFREG);
        read_through(&f, *inode).unwrap();
        assert!(f.fs.resident() <= 16);
    }
    // A repeated lookup of a known (possibly evicted) file gives the guest the same node.
    let d3 = f.lookup(super::tests::ROOT, "d3").unwrap();
    assert_eq!(f.lookup(d3, "f7").unwrap(), nodes[3 * 20 + 7].0);
    assert!(f.events().iter().all(|e| e.3 == Verdict::Allow));
}

#[test]
fn a_name_swapped_on_the_host_is_refused_and_recorded_resident_or_not() {
    for max_resident in [16, 2048] {
        let f = fixture_limited(MountMode::Rw, u64::MAX, max_resident);
        fs::create_dir(f.host("d")).unwrap();
        fs::write(f.host("d/f"), "inside").unwrap();
        for i in 0..40 {
            fs::write(f.host(&format!("pad{i}")), "x").unwrap();
        }
        let d = f.lookup(super::tests::ROOT, "d").unwrap();
        let file = f.lookup(d, "f").unwrap();
        // Enough other nodes to evict `d` and `f` under the small budget.
        for i in 0..40 {
            f.lookup(super::tests::ROOT, &format!("pad{i}")).unwrap();
        }
        f.events();
        // The host moves the directory out of the share and puts a link in its place.
        let away = f.outside.with_file_name("away");
        fs::rename(f.host("d"), &away).unwrap();
        let evil = f.outside.with_file_name("evil");
        fs::create_dir(&evil).unwrap();
        fs::write(evil.join("f"), "host secret").unwrap();
        std::os::unix::fs::symlink(&evil, f.host("d")).unwrap();
        assert_eq!(
            errno(read_through(&f, file)),
            libc::ESTALE,
            "{max_resident}"
        );
        assert_eq!(
            errno(f.fs.lookup(ctx(), d, &c("f"))),
            libc::ESTALE,
            "{max_resident}"
        );
        let events = f.events();
        assert!(
            events.iter().any(|e| e.0 == kind::FS_OPEN
                && e.1 == "d/f"
                && e.3 == Verdict::Deny
                && e.4 == reason::rule::IDENTITY
                && e.5 == reason::REPLACED_ON_HOST),
            "{max_resident}: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.0 == kind::FS_LOOKUP && e.1 == "d" && e.5 == reason::REPLACED_ON_HOST),
            "{max_resident}: {events:?}"
        );
        // Neither file was read or changed.
        let mut s = String::new();
        fs::File::open(away.join("f"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
    }
}

#[test]
fn the_open_file_limit_refuses_with_enfile_and_records_once() {
    let f = fixture_limited(MountMode::Rw, 4, 2048);
    for i in 0..6 {
        fs::write(f.host(&format!("f{i}")), "x").unwrap();
    }
    let mut handles = Vec::new();
    for i in 0..4 {
        let inode = f.lookup(super::tests::ROOT, &format!("f{i}")).unwrap();
        let (h, _) =
            f.fs.open(ctx(), inode, false, libc::O_RDONLY as u32)
                .unwrap();
        handles.push((inode, h.unwrap()));
    }
    for i in 4..6 {
        let inode = f.lookup(super::tests::ROOT, &format!("f{i}")).unwrap();
        assert_eq!(errno(read_through(&f, inode)), libc::ENFILE);
    }
    let limits: Vec<_> = f
        .events
        .take()
        .into_iter()
        .filter(|e| e.op == kind::FS_LIMIT)
        .collect();
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(limits[0].count, Some(4));
    assert_eq!(limits[0].rule, reason::rule::MAX_OPEN);
    // Closing one lets the next open through.
    let (inode, h) = handles.pop().unwrap();
    f.fs.release(ctx(), inode, 0, h, false, false, None)
        .unwrap();
    let inode = f.lookup(super::tests::ROOT, "f5").unwrap();
    read_through(&f, inode).unwrap();
}
