#![allow(clippy::indexing_slicing)]

use super::*;
use sha2::Digest as _;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A one-file layer as an uncompressed tar.
fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("hello.txt").unwrap();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"hi\n"[..]).unwrap();
    b.into_inner().unwrap()
}

fn config_json(diff_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["A=1"], "Cmd": ["echo", "hi"], "WorkingDir": "/w", "User": "7:8"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    }))
    .unwrap()
}

/// A `docker save` directory with one image tagged `t:1`.
fn docker_dir(dir: &Path, diff_id: Option<&str>) {
    let layer = layer_tar();
    std::fs::create_dir_all(dir.join("abc")).unwrap();
    std::fs::write(dir.join("abc/layer.tar"), &layer).unwrap();
    let want = diff_id.map_or_else(|| sha(&layer), str::to_string);
    std::fs::write(dir.join("cfg.json"), config_json(&want)).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        br#"[{"Config":"cfg.json","RepoTags":["t:1"],"Layers":["abc/layer.tar"]}]"#,
    )
    .unwrap();
}

/// An OCI layout with one image named `one`.
fn oci_dir(dir: &Path) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let layer = layer_tar();
    let layer_d = put(&layer);
    let config_d = put(&config_json(&layer_d));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}]
    }))
    .unwrap();
    let manifest_d = put(&manifest);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "one"}}]
        }))
        .unwrap(),
    )
    .unwrap();
    manifest_d
}

/// `dir` packed as a tar archive at `out`.
fn tar_of(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

fn opts(source: &Path, reference: Option<&str>) -> ImportOptions {
    ImportOptions {
        source: source.to_owned(),
        name: "x".into(),
        reference: reference.map(str::to_string),
    }
}

#[test]
fn an_oci_layout_and_its_archive_give_the_same_plan() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let digest = oci_dir(&layout);
    let p = plan(&opts(&layout, None), &t.path().join("s1")).unwrap();
    assert_eq!(
        (p.format, p.digest.as_str(), p.reference.as_deref()),
        ("oci-layout", digest.as_str(), Some("one"))
    );
    assert_eq!(p.layers.len(), 1);
    let c = run_config(&p);
    assert_eq!(c.env, vec!["A=1"]);
    assert_eq!(c.cmd, vec!["echo", "hi"]);
    assert_eq!(
        (c.working_dir.as_deref(), c.user.as_deref()),
        (Some("/w"), Some("7:8"))
    );
    let archive = t.path().join("image.tar");
    tar_of(&layout, &archive);
    let p = plan(&opts(&archive, Some("one")), &t.path().join("s2")).unwrap();
    assert_eq!(
        (p.format, p.digest.as_str()),
        ("oci-archive", digest.as_str())
    );
    let err = plan(&opts(&layout, Some("two")), &t.path().join("s3")).unwrap_err();
    assert!(
        err.to_string().contains("no image \"two\"") && err.to_string().contains("one"),
        "{err}"
    );
}

#[test]
fn a_tampered_blob_is_refused_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    oci_dir(&layout);
    let blobs = layout.join("blobs/sha256");
    let config = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|s| s.contains("diff_ids")))
        .unwrap();
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("A=1", "A=2"),
    )
    .unwrap();
    let err = plan(&opts(&layout, None), &t.path().join("s")).unwrap_err();
    assert!(err.to_string().contains("should have digest"), "{err}");
}

#[test]
fn a_docker_save_archive_is_read_and_its_diff_ids_checked() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("docker");
    docker_dir(&d, None);
    let archive = t.path().join("saved.tar");
    tar_of(&d, &archive);
    let p = plan(&opts(&archive, Some("t:1")), &t.path().join("s1")).unwrap();
    assert_eq!(
        (p.format, p.reference.as_deref()),
        ("docker-archive", Some("t:1"))
    );
    assert_eq!(p.layers[0].digest, sha(&layer_tar()));
    let bad = t.path().join("bad");
    docker_dir(&bad, Some(&format!("sha256:{}", "0".repeat(64))));
    let err = plan(&opts(&bad, None), &t.path().join("s2")).unwrap_err();
    assert!(err.to_string().contains("should have diff id"), "{err}");
}

#[test]
fn paths_in_a_docker_manifest_stay_inside_the_archive() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("docker");
    docker_dir(&d, None);
    std::fs::write(
        d.join("manifest.json"),
        br#"[{"Config":"../../etc/passwd","RepoTags":["t:1"],"Layers":[]}]"#,
    )
    .unwrap();
    let err = plan(&opts(&d, None), &t.path().join("s")).unwrap_err();
    assert!(err.to_string().contains("outside the archive"), "{err}");
}

#[test]
fn something_else_is_named_for_what_it_is_not() {
    let t = tempfile::tempdir().unwrap();
    let err = plan(&opts(t.path(), None), &t.path().join("s")).unwrap_err();
    assert!(
        err.to_string().contains("neither an OCI image layout"),
        "{err}"
    );
    let missing = t.path().join("nope");
    assert!(plan(&opts(&missing, None), &t.path().join("s2")).is_err());
}
