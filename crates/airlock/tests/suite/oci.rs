//! Imported OCI images as sandbox roots: built offline with Debian's umoci from busybox (two
//! layers, the second deleting a file), converted to a `docker save` archive with skopeo,
//! imported, and run with their own Env, WorkingDir, User and Cmd.

use airlock_testkit::{Airlock, text};
use std::path::Path;

use airlock_testkit::host_tool as tool;

/// An OCI layout at `dir/img` holding `app`: busybox, a user `app` (1234), `FOO=bar`, working
/// dir `/data`, `Cmd ["echo", "from-cmd"]`; layer 1 has `/etc/removed.txt`, layer 2 deletes it.
fn build_image(dir: &Path) {
    tool("umoci", &["init", "--layout", "img"], dir);
    tool("umoci", &["new", "--image", "img:app"], dir);
    tool("umoci", &["unpack", "--image", "img:app", "b1"], dir);
    let root = dir.join("b1/rootfs");
    for d in ["bin", "etc", "data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "id", "pwd", "echo", "test", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/data:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1234:\n").unwrap();
    std::fs::write(root.join("etc/removed.txt"), "doomed\n").unwrap();
    tool("umoci", &["repack", "--image", "img:app", "b1"], dir);
    tool("umoci", &["unpack", "--image", "img:app", "b2"], dir);
    std::fs::remove_file(dir.join("b2/rootfs/etc/removed.txt")).unwrap();
    std::fs::write(dir.join("b2/rootfs/data/layer2.txt"), "second\n").unwrap();
    tool("umoci", &["repack", "--image", "img:app", "b2"], dir);
    tool(
        "umoci",
        &[
            "config",
            "--image",
            "img:app",
            "--config.env",
            "FOO=bar",
            "--config.workingdir",
            "/data",
            "--config.user",
            "app",
            "--config.cmd",
            "echo",
            "--config.cmd",
            "from-cmd",
        ],
        dir,
    );
}

/// Removes the test's image from the cache when dropped.
struct CachedImage(String);

impl Drop for CachedImage {
    fn drop(&mut self) {
        if let Ok(cache) = airlock_image::Cache::from_env() {
            let _ = std::fs::remove_dir_all(cache.root().join("images").join(&self.0));
        }
    }
}

#[test]
fn an_imported_oci_image_runs_with_its_own_config_and_layers() {
    let a = Airlock::start();
    let dir = tempfile::tempdir().unwrap();
    build_image(dir.path());
    let name = format!("oci-test-{}", std::process::id());
    let _cleanup = CachedImage(name.clone());
    let layout = dir.path().join("img");
    let out = a
        .command([
            "image",
            "import",
            layout.to_str().unwrap(),
            "--name",
            &name,
            "--ref",
            "app",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let digest = text(&out.stdout).trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest:?}"
    );
    assert!(
        text(&out.stderr).contains("2 layer(s)"),
        "{}",
        text(&out.stderr)
    );

    let ls = a.command(["image", "ls"]).output().unwrap();
    let listed = text(&ls.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("oci") && l.contains(&digest)),
        "{listed}"
    );

    let image = format!("oci:{name}");
    let ws = tempfile::tempdir().unwrap();
    let ws_arg = ws.path().to_str().unwrap();
    let run = a.run([
        "run", "--image", &image, "--workspace", ws_arg, "--", "sh", "-c",
        "id -u; id -g; pwd; echo FOO=$FOO; test -e /etc/removed.txt && echo still-there || echo removed; cat /data/layer2.txt",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        text(&run.stdout),
        "1234\n1234\n/data\nFOO=bar\nremoved\nsecond\n",
        "{}",
        text(&run.stderr)
    );
    // No command: the image's Entrypoint + Cmd.
    let run = a.run(["run", "--image", &image, "--workspace", ws_arg]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "from-cmd\n");
    // The same image as a `docker save` archive.
    let archive = dir.path().join("app.tar");
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "oci:img:app",
            &format!("docker-archive:{}:localhost/app:latest", archive.display()),
        ],
        dir.path(),
    );
    let out = a
        .command([
            "image",
            "import",
            archive.to_str().unwrap(),
            "--name",
            &name,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("docker-archive localhost/app:latest"),
        "{}",
        text(&out.stderr)
    );
    let run = a.run([
        "run",
        "--image",
        &image,
        "--workspace",
        ws_arg,
        "--",
        "sh",
        "-c",
        "id -un; test -e /etc/removed.txt || cat layer2.txt",
    ]);
    assert_eq!(text(&run.stdout), "app\nsecond\n", "{}", text(&run.stderr));
    a.assert_clean();
}

#[test]
fn oci_names_only_imported_images_and_bad_sources_are_named() {
    let a = Airlock::start();
    let run = a.run(["run", "--image", "oci:tiny", "--", "true"]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("not an imported one"),
        "{}",
        text(&run.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.tar"), b"not an archive").unwrap();
    let out = a
        .command([
            "image",
            "import",
            dir.path().join("junk.tar").to_str().unwrap(),
            "--name",
            "junk-test",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("junk.tar"),
        "{}",
        text(&out.stderr)
    );
    let out = a
        .command([
            "image",
            "import",
            dir.path().to_str().unwrap(),
            "--name",
            "Bad Name",
        ])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("invalid image name"),
        "{}",
        text(&out.stderr)
    );
    let run = a.run(["run", "--"]);
    assert!(
        text(&run.stderr).contains("no command"),
        "{}",
        text(&run.stderr)
    );
}
