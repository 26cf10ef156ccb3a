#![allow(clippy::indexing_slicing)]

use super::*;
use proptest::prelude::*;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;

/// One tar entry: raw path bytes, type, data or link target, mode.
#[derive(Debug, Clone)]
enum E {
    Dir(&'static str, u32),
    File(Vec<u8>, &'static [u8], u32),
    Sym(Vec<u8>, Vec<u8>),
    Hard(Vec<u8>, Vec<u8>),
}

fn f(path: &str, data: &'static [u8]) -> E {
    E::File(path.as_bytes().to_vec(), data, 0o644)
}

/// A tar stream with raw names (the `tar` crate's setters refuse `..`, which layers may hold).
fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, kind, data, link, mode): (&[u8], tar::EntryType, &[u8], &[u8], u32) = match e {
            E::Dir(p, m) => (p.as_bytes(), tar::EntryType::Directory, b"", b"", *m),
            E::File(p, d, m) => (p, tar::EntryType::Regular, d, b"", *m),
            E::Sym(p, t) => (p, tar::EntryType::Symlink, b"", t, 0o777),
            E::Hard(p, t) => (p, tar::EntryType::Link, b"", t, 0o644),
        };
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

struct Fx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"host file").unwrap();
    Fx {
        _dir: dir,
        root,
        outside,
    }
}

fn apply(fx: &Fx, layers: &[Vec<u8>]) -> Result<UnpackStats, UnpackError> {
    let tree = Tree::open(&fx.root).unwrap();
    let mut stats = UnpackStats::default();
    for (i, l) in layers.iter().enumerate() {
        tree.apply(i + 1, l.as_slice(), &mut stats)?;
    }
    Ok(stats)
}

fn read(fx: &Fx, p: &str) -> Option<String> {
    std::fs::read_to_string(fx.root.join(p)).ok()
}

#[test]
fn files_dirs_links_and_modes_are_kept() {
    let fx = fx();
    apply(
        &fx,
        &[layer(&[
            E::Dir("bin/", 0o755),
            E::File(b"bin/tool".to_vec(), b"#!/bin/sh\n", 0o4755),
            f("etc/motd", b"hello\n"),
            E::Sym(b"bin/sh".to_vec(), b"tool".to_vec()),
            E::Hard(b"bin/tool2".to_vec(), b"bin/tool".to_vec()),
        ])],
    )
    .unwrap();
    let tool = std::fs::metadata(fx.root.join("bin/tool")).unwrap();
    assert_eq!(
        tool.permissions().mode() & 0o7777,
        0o4755,
        "set-id bits survive the chown"
    );
    assert_eq!(read(&fx, "etc/motd").as_deref(), Some("hello\n"));
    assert_eq!(
        std::fs::read_link(fx.root.join("bin/sh")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        std::fs::metadata(fx.root.join("bin/tool2")).unwrap().ino(),
        tool.ino()
    );
}

#[test]
fn whiteouts_remove_what_lower_layers_made_and_opaque_dirs_keep_only_this_layer() {
    let fx = fx();
    apply(
        &fx,
        &[
            layer(&[
                f("etc/a", b"a"),
                f("etc/b", b"b"),
                f("opt/old/x", b"x"),
                f("opt/keep", b"k"),
            ]),
            layer(&[
                f("etc/.wh.a", b""),
                f("opt/new", b"n"),
                f("opt/.wh..wh..opq", b""),
                f("opt/later", b"l"),
                f(".wh.nothing-here", b""),
            ]),
        ],
    )
    .unwrap();
    assert!(!fx.root.join("etc/a").exists());
    assert_eq!(read(&fx, "etc/b").as_deref(), Some("b"));
    assert!(!fx.root.join("opt/old").exists() && !fx.root.join("opt/keep").exists());
    assert_eq!(
        read(&fx, "opt/new").as_deref(),
        Some("n"),
        "same-layer entries stay"
    );
    assert_eq!(read(&fx, "opt/later").as_deref(), Some("l"));
    assert!(
        !fx.root.join(".wh.nothing-here").exists(),
        "a whiteout is never a file"
    );
    assert!(!fx.root.join("opt/.wh..wh..opq").exists());
}

#[test]
fn an_entry_replaces_a_different_kind_of_entry() {
    let fx = fx();
    apply(
        &fx,
        &[
            layer(&[f("x", b"file"), E::Dir("y/", 0o755), f("y/inner", b"i")]),
            layer(&[E::Dir("x/", 0o755), f("y", b"now a file")]),
        ],
    )
    .unwrap();
    assert!(fx.root.join("x").is_dir());
    assert_eq!(read(&fx, "y").as_deref(), Some("now a file"));
}

#[test]
fn names_and_links_never_lead_out_of_the_tree() {
    let fx = fx();
    let outside = fx.outside.to_str().unwrap().as_bytes().to_vec();
    let mut escape = outside.clone();
    escape.extend_from_slice(b"/evil");
    let _ = apply(
        &fx,
        &[
            layer(&[
                f("../../evil", b"1"),
                E::File(escape.clone(), b"2", 0o644),
                E::Sym(b"abs".to_vec(), outside.clone()),
                E::Sym(b"rel".to_vec(), b"../../../../../../../..".to_vec()),
                f("abs/evil", b"3"),
                f("rel/evil", b"4"),
            ]),
            layer(&[E::Hard(b"stolen".to_vec(), {
                let mut k = outside.clone();
                k.extend_from_slice(b"/keep");
                k
            })]),
        ],
    );
    let outside_now: Vec<_> = std::fs::read_dir(&fx.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside_now,
        vec![std::ffi::OsString::from("keep")],
        "nothing was written outside"
    );
    assert_eq!(
        std::fs::read(fx.outside.join("keep")).unwrap(),
        b"host file"
    );
    // What was written landed inside, where it would inside the image.
    assert_eq!(
        read(&fx, "evil").as_deref(),
        Some("4"),
        "../ and symlinks resolve within the root"
    );
    assert!(
        !fx.root.join("stolen").exists(),
        "a hard link to a host file is refused"
    );
}

#[test]
fn a_whiteout_without_a_name_or_garbage_is_an_error_that_names_the_layer() {
    let fx = fx();
    let err = apply(&fx, &[layer(&[f("dir/.wh.", b"")])]).unwrap_err();
    assert!(
        err.to_string().contains("layer 1") && err.to_string().contains("whiteout"),
        "{err}"
    );
    let err = apply(&fx, &[b"not a tar at all, just text".repeat(40)]).unwrap_err();
    assert!(err.to_string().contains("layer 1"), "{err}");
}

proptest! {
    /// Whatever names and link targets a layer holds, nothing outside the root changes.
    #[test]
    fn no_layer_writes_outside_the_root(
        entries in proptest::collection::vec(
            (0u8..4, proptest::collection::vec(prop_oneof![Just("a"), Just(".."), Just("b"), Just(".wh.a"), Just(".wh..wh..opq"), Just(""), Just("outside")], 1..5), proptest::collection::vec(prop_oneof![Just("a"), Just(".."), Just("/"), Just("outside"), Just("keep")], 0..5)),
            1..12,
        )
    ) {
        let fx = fx();
        let list: Vec<E> = entries.iter().map(|(k, path, target)| {
            let p = path.join("/").into_bytes();
            let t = target.join("/").into_bytes();
            match k {
                0 => E::File(p, b"data", 0o644),
                1 => E::Dir("d/", 0o755),
                2 => E::Sym(p, t),
                _ => E::Hard(p, t),
            }
        }).collect();
        let _ = apply(&fx, &[layer(&list)]);
        let names: Vec<_> = std::fs::read_dir(&fx.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(names, vec![std::ffi::OsString::from("keep")]);
        prop_assert_eq!(std::fs::read(fx.outside.join("keep")).unwrap(), b"host file".to_vec());
    }
}
