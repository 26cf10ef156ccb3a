//! A private Docker engine inside the sandbox (`--profile docker`): the Debian image with the
//! `docker` package layer (built on first use, needs root), dockerd started by the guest at
//! boot. Images come from a `docker save` archive built offline here (umoci from
//! busybox-static, skopeo to docker-archive), so no registry is needed; a pull from a registry
//! the profile does not list is refused by the egress gateway and audited.

use super::image::debian_image;
use airlock_testkit::audit::{Decision, kind, net_is};
use airlock_testkit::{Airlock, require_root, text};
use std::path::Path;

use airlock_testkit::host_tool as tool;

/// Writes `dir/busybox.tar`, a `docker save` archive of `busybox:latest`: busybox-static and
/// the applets the tests run, one layer, `Cmd ["sh"]`.
fn busybox_archive(dir: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    tool("umoci", &["init", "--layout", "img"], s);
    tool("umoci", &["new", "--image", "img:busybox"], s);
    tool("umoci", &["unpack", "--image", "img:busybox", "b"], s);
    let bin = s.join("b/rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    tool("umoci", &["repack", "--image", "img:busybox", "b"], s);
    tool(
        "umoci",
        &["config", "--image", "img:busybox", "--config.cmd", "sh"],
        s,
    );
    let archive = dir.join("busybox.tar");
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "oci:img:busybox",
            &format!("docker-archive:{}:busybox:latest", archive.display()),
        ],
        s,
    );
}

#[test]
fn docker_loads_runs_and_builds_inside_the_sandbox_only() {
    if !require_root("the docker layer is built with apt in a chroot") {
        return;
    }
    debian_image();
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    busybox_archive(ws.path());
    std::fs::write(
        ws.path().join("Dockerfile"),
        "FROM busybox\nRUN echo built > /x\n",
    )
    .unwrap();
    // The engine is the guest's (its name is the guest's hostname, its data on the sandbox
    // disk), and the workspace is the only share: nothing of the host's Docker is in reach.
    let script = "set -e
docker load -i busybox.tar >&2
docker run --rm busybox echo hi
docker build --network none -t airlock-built . >&2
docker run --rm airlock-built cat /x
docker info --format 'engine {{.Name}} {{.DockerRootDir}} {{.Driver}}'
echo shares $(grep -c ' virtiofs ' /proc/mounts)";
    let out = a.run([
        "run",
        "--profile",
        "docker",
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (
            Some(0),
            "hi\nbuilt\nengine airlock /var/lib/docker overlay2\nshares 1\n"
        ),
        "{}",
        text(&out.stderr)
    );
    let log = a.audit();
    let bind = log
        .first(kind::SANDBOX_BIND)
        .detail
        .clone()
        .unwrap_or_default();
    let only_workspace = format!("shares: {} at /workspace (rw); bound", ws.path().display());
    assert!(bind.contains(&only_workspace), "{bind}");
    a.assert_clean();
}

#[test]
fn docker_pulls_from_an_unlisted_registry_are_refused_and_audited() {
    if !require_root("the docker layer is built with apt in a chroot") {
        return;
    }
    debian_image();
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let out = a.run([
        "run",
        "--profile",
        "docker",
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "docker",
        "pull",
        "registry.airlock-denied.example/team/app:1",
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let log = a.audit();
    assert!(
        log.has(|e| net_is(
            kind::NET_CONNECT,
            Decision::Deny,
            "registry.airlock-denied.example"
        )(e) && e.rule.as_deref() == Some("network.default")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn layers_need_the_debian_image_and_the_error_says_so() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let p = airlock_testkit::write_policy(
        ws.path(),
        "extends = \"docker\"\n[sandbox]\nimage = \"tiny\"\n",
    );
    let out = a.run([
        "run",
        "--policy",
        &p,
        "--workspace",
        ws.path().to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "sandbox.layers = [\"docker\"] go over a Debian image, not \"tiny\"; set sandbox.image = \"debian\""
        ),
        "{}",
        text(&out.stderr)
    );
    a.assert_clean();
}
