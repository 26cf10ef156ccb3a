//! Gateway start-up checks and serving over a real vhost-user socket.

use std::io::Read;
use std::time::Instant;

use super::*;
use crate::events::NoEvents;

fn policy(host: &Path) -> Arc<Policy> {
    let text = format!(
        "[[filesystem.mounts]]\nhost = {:?}\nguest = \"/workspace\"\nmode = \"rw\"\n",
        host.display().to_string()
    );
    Arc::new(
        airlock_policy::load_str(&text, Path::new("/test/policy.toml"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn share(host: &Path, mode: MountMode) -> Share {
    Share {
        host_dir: host.to_owned(),
        guest_path: "/workspace".to_owned(),
        mode,
    }
}

fn start(dir: &Path, mode: MountMode) -> Result<FsGateway, FsError> {
    let host = dir.join("share");
    std::fs::create_dir_all(&host).unwrap();
    FsGateway::start(
        &dir.join("fs.sock"),
        share(&host, mode),
        policy(&host),
        Arc::new(NoEvents),
    )
}

#[test]
fn listens_at_once_and_stops_without_a_frontend() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path(), MountMode::Rw).unwrap();
    let sock = dir.path().join("fs.sock");
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!gw.is_finished());
    let t = Instant::now();
    gw.stop();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!sock.exists(), "socket removed");
}

#[test]
fn serving_ends_when_the_frontend_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path(), MountMode::Ro).unwrap();
    let client = UnixStream::connect(gw.socket()).unwrap();
    drop(client);
    let t = Instant::now();
    while !gw.is_finished() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "serve did not return"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.stop();
}

#[test]
fn stop_cuts_a_frontend_that_stays_connected() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path(), MountMode::Rw).unwrap();
    let mut client = UnixStream::connect(gw.socket()).unwrap();
    // let the gateway accept it
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    gw.stop();
    assert!(t.elapsed() < Duration::from_secs(5));
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap_or(0), 0, "connection closed");
}

#[test]
fn drop_stops_too() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path(), MountMode::Rw).unwrap();
    drop(gw);
    assert!(!dir.path().join("fs.sock").exists());
}

#[test]
fn refuses_what_it_cannot_enforce() {
    let dir = tempfile::tempdir().unwrap();
    // an overlay share must be an overlay's copy, not a plain directory
    let err = start(dir.path(), MountMode::Overlay).unwrap_err();
    assert!(matches!(err, FsError::Overlay { .. }), "{err}");
    assert!(!dir.path().join("fs.sock").exists());

    let host = dir.path().join("share");
    let other = Share {
        guest_path: "/data".to_owned(),
        ..share(&host, MountMode::Rw)
    };
    let err = FsGateway::start(
        &dir.path().join("s"),
        other,
        policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::UnknownMount(_)), "{err}");

    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let err = FsGateway::start(
        &dir.path().join("s"),
        share(&elsewhere, MountMode::Rw),
        policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::HostMismatch { .. }), "{err}");

    let text = format!(
        "[[filesystem.mounts]]\nhost = {:?}\nguest = \"/workspace\"\nmode = \"overlay\"\n",
        host.display().to_string()
    );
    let overlay = Arc::new(airlock_policy::load_str(&text, Path::new("/t.toml")).unwrap());
    let err = FsGateway::start(
        &dir.path().join("s"),
        share(&host, MountMode::Rw),
        overlay,
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::OverlayNeedsCopy { .. }), "{err}");

    let missing = share(&dir.path().join("missing"), MountMode::Rw);
    let err = FsGateway::start(
        &dir.path().join("s"),
        missing,
        policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::HostDir { .. }), "{err}");

    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = FsGateway::start(
        &dir.path().join("s"),
        share(&file, MountMode::Rw),
        policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::NotADirectory(_)), "{err}");

    let err = FsGateway::start(
        &dir.path().join("no/such/dir/s"),
        share(&host, MountMode::Rw),
        policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::Listen { .. }), "{err}");
}

fn overlay_policy(host: &Path) -> Arc<Policy> {
    let text = format!(
        "[[filesystem.mounts]]\nhost = {:?}\nguest = \"/workspace\"\nmode = \"overlay\"\n",
        host.display().to_string()
    );
    Arc::new(airlock_policy::load_str(&text, Path::new("/t.toml")).unwrap())
}

#[test]
fn serves_an_overlay_copy() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("share");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "x").unwrap();
    let overlay = crate::Overlay::create(&host, &dir.path().join("ov"), None).unwrap();
    let share = Share {
        host_dir: overlay.upper().to_owned(),
        guest_path: "/workspace".to_owned(),
        mode: MountMode::Overlay,
    };
    let sock = dir.path().join("fs.sock");
    let gw = FsGateway::start(
        &sock,
        share.clone(),
        overlay_policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap();
    assert!(sock.exists());
    assert!(!gw.is_finished());
    gw.stop();
    assert!(!sock.exists());

    // an `rw` policy mount of the same directory accepts the copy too (writes stay in it)
    let gw = FsGateway::start(&sock, share.clone(), policy(&host), Arc::new(NoEvents)).unwrap();
    gw.stop();

    // the policy must share the directory the overlay copied
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let err = FsGateway::start(
        &sock,
        share.clone(),
        overlay_policy(&elsewhere),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::OverlayHostMismatch { .. }), "{err}");

    // the host directory itself is not an overlay copy
    let err = FsGateway::start(
        &sock,
        Share {
            host_dir: host.clone(),
            ..share.clone()
        },
        overlay_policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::Overlay { .. }), "{err}");

    // nor is a subdirectory of the copy
    std::fs::create_dir(overlay.upper().join("sub")).unwrap();
    let err = FsGateway::start(
        &sock,
        Share {
            host_dir: overlay.upper().join("sub"),
            ..share.clone()
        },
        overlay_policy(&host),
        Arc::new(NoEvents),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::Overlay { .. }), "{err}");

    // an overlay policy mount refuses the host directory served `rw` or `ro`
    for mode in [MountMode::Rw, MountMode::Ro] {
        let err = FsGateway::start(
            &sock,
            Share {
                host_dir: host.clone(),
                guest_path: "/workspace".to_owned(),
                mode,
            },
            overlay_policy(&host),
            Arc::new(NoEvents),
        )
        .unwrap_err();
        assert!(matches!(err, FsError::OverlayNeedsCopy { .. }), "{err}");
    }
    assert!(!sock.exists());
}

#[test]
fn config_keeps_passthrough_inside_the_share() {
    let cfg = passthrough_config("/srv/share", 100);
    assert_eq!(cfg.root_dir, "/srv/share");
    assert!(!cfg.announce_submounts && !cfg.xattr && !cfg.writeback);
    assert_eq!(cfg.inode_file_handles, InodeFileHandlesMode::Prefer);
    assert!(matches!(cfg.cache_policy, CachePolicy::Auto));
    assert_eq!(cfg.guest_fd_limit, 100);
}
