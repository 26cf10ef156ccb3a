//! Pure argv builder for QEMU microvm; tested without starting QEMU.

use crate::accel::Accel;
use crate::engine::{BootSpec, EngineError};
use std::ffi::OsString;

/// TCG's translated-code cache, MiB. QEMU's default (1 GiB) lets a busy sandbox's cache grow
/// to a gibibyte of host memory; booting a tiny guest fills about 40 MiB. 256 bounds the
/// growth and leaves room for large runtimes' code before QEMU has to flush and retranslate.
const TCG_TB_MIB: u32 = 256;

/// Kernel command line every guest gets. `reboot=t` plus `-no-reboot` turns the guest's reboot
/// syscall into a QEMU exit (microvm has no ACPI power-off); `panic=-1` does the same on panic.
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

/// QEMU's built-in seccomp policy (`-sandbox`).
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The balloon device, for free page reporting only.
pub const BALLOON: &str = "virtio-balloon-device,free-page-reporting=on";

/// virtio-mmio transports QEMU's microvm machine has; every virtio device takes one.
pub const VIRTIO_TRANSPORTS: usize = 8;

/// The argv (without the binary) that boots `spec`.
pub fn args(spec: &BootSpec) -> Result<Vec<OsString>, EngineError> {
    // The vsock device, one per share, one per drive; the balloon only takes a spare one.
    let devices = 1 + spec.fs_devices.len() + spec.drives.len();
    if devices > VIRTIO_TRANSPORTS {
        return Err(EngineError::InvalidSpec(format!(
            "{devices} virtio devices (vsock, {} shares, {} drives): the microvm machine has \
             {VIRTIO_TRANSPORTS}",
            spec.fs_devices.len(),
            spec.drives.len()
        )));
    }
    if spec.cpus == 0 || spec.memory_mib < 64 {
        return Err(EngineError::InvalidSpec(format!(
            "need at least 1 cpu and 64 MiB (got {} cpus, {} MiB)",
            spec.cpus, spec.memory_mib
        )));
    }
    let check = |p: &std::path::Path| {
        let s = p.to_string_lossy();
        if s.contains(',') {
            return Err(EngineError::InvalidSpec(format!(
                "path {s:?} contains ',' which QEMU options cannot carry"
            )));
        }
        Ok(s.into_owned())
    };
    let mem = spec.memory_mib;
    let mut a: Vec<String> = vec![
        // rtc=on: without kvmclock the kernel otherwise waits ~1 s for a missing RTC.
        "-M".into(),
        "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off,memory-backend=mem".into(),
        // vhost-user devices map guest memory, so it must be a shared memfd.
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
        "-m".into(),
        format!("{mem}M"),
        "-smp".into(),
        spec.cpus.to_string(),
    ];
    match spec.accel {
        Accel::Kvm => a.extend(["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]),
        Accel::Tcg => a.extend([
            "-accel".into(),
            format!("tcg,thread=multi,tb-size={TCG_TB_MIB}"),
            "-cpu".into(),
            "max".into(),
        ]),
    }
    a.extend([
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        // QEMU's own seccomp filter: no obsolete syscalls, no privilege changes, no fork/exec,
        // no scheduler or resource changes.
        "-sandbox".into(),
        SANDBOX.into(),
        "-chardev".into(),
        format!("file,id=console,path={}", check(&spec.console_log)?),
        "-serial".into(),
        "chardev:console".into(),
        "-chardev".into(),
        format!("socket,id=vsock,path={}", check(&spec.vsock_socket)?),
        "-device".into(),
        "vhost-user-vsock-device,chardev=vsock".into(),
    ]);
    if devices < VIRTIO_TRANSPORTS {
        // Free page reporting only: the guest reports free blocks and QEMU drops them from the
        // memfd, so an idle sandbox holds what it uses, not what it once touched. The host
        // never inflates the balloon. A VM that needs every transport goes without it.
        a.extend(["-device".into(), BALLOON.into()]);
    }
    for (i, (socket, tag)) in spec.fs_devices.iter().enumerate() {
        if tag.is_empty()
            || tag.len() > 36
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(EngineError::InvalidSpec(format!(
                "virtio-fs tag {tag:?} must be 1-36 of [A-Za-z0-9_-]"
            )));
        }
        a.extend([
            "-chardev".into(),
            format!("socket,id=fs{i},path={}", check(socket)?),
            "-device".into(),
            format!("vhost-user-fs-device,chardev=fs{i},tag={tag}"),
        ]);
    }
    for (i, drive) in spec.drives.iter().enumerate() {
        let serial = &drive.serial;
        if serial.is_empty()
            || serial.len() > 20
            || !serial
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(EngineError::InvalidSpec(format!(
                "drive serial {serial:?} must be 1-20 of [A-Za-z0-9_-]"
            )));
        }
        // discard/detect-zeroes: space the guest frees is given back to the sparse host file.
        // cache=unsafe: the writable disk lives and dies with the sandbox, so the guest's flushes
        // (its sync before goodbye) need not wait for the host's own disk: on a host busy with
        // writes, each fdatasync took 100+ ms. Written data still reaches the host file.
        let mode = if drive.read_only {
            "read-only=on"
        } else {
            "read-only=off,cache=unsafe,discard=unmap,detect-zeroes=unmap"
        };
        a.extend([
            "-drive".into(),
            format!(
                "file={},if=none,id=drive{i},format=raw,{mode}",
                check(&drive.path)?
            ),
            "-device".into(),
            format!("virtio-blk-device,drive=drive{i},serial={serial}"),
        ]);
    }
    a.extend([
        "-kernel".into(),
        check(&spec.kernel)?,
        "-initrd".into(),
        check(&spec.initrd)?,
        "-append".into(),
        if spec.cmdline.is_empty() {
            BASE_CMDLINE.to_string()
        } else {
            format!("{BASE_CMDLINE} {}", spec.cmdline)
        },
    ]);
    Ok(a.into_iter().map(OsString::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Drive;
    use std::path::PathBuf;

    fn spec(accel: Accel) -> BootSpec {
        BootSpec {
            kernel: PathBuf::from("/k/vmlinux"),
            initrd: PathBuf::from("/k/initrd"),
            cmdline: String::new(),
            cpus: 2,
            memory_mib: 512,
            state_dir: PathBuf::from("/s"),
            accel,
            console_log: PathBuf::from("/s/console.log"),
            engine_log: PathBuf::from("/s/qemu.log"),
            vsock_socket: PathBuf::from("/s/vsock.sock"),
            fs_devices: vec![],
            drives: vec![],
            host_limits: None,
        }
    }

    fn joined(s: &BootSpec) -> String {
        args(s)
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn drives_by_serial() {
        let mut s = spec(Accel::Tcg);
        s.drives = vec![
            Drive {
                path: PathBuf::from("/s/disk.img"),
                read_only: false,
                serial: "airlock-disk".into(),
            },
            Drive {
                path: PathBuf::from("/i/rootfs.squashfs"),
                read_only: true,
                serial: "airlock-root".into(),
            },
        ];
        let a = joined(&s);
        assert!(a.contains(
            "-drive file=/s/disk.img,if=none,id=drive0,format=raw,read-only=off,cache=unsafe,"
        ));
        assert!(a.contains("-device virtio-blk-device,drive=drive0,serial=airlock-disk"));
        assert!(a.contains("file=/i/rootfs.squashfs,if=none,id=drive1,format=raw,read-only=on "));
        s.drives[1].serial = "bad serial".into();
        assert!(args(&s).is_err());
    }

    #[test]
    fn tcg_microvm_without_nic() {
        let a = joined(&spec(Accel::Tcg));
        assert!(a.starts_with("-M microvm,"), "{a}");
        assert!(a.contains("-accel tcg,thread=multi,tb-size=256 -cpu max"));
        assert!(a.contains("memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(a.contains("-nodefaults"));
        assert!(a.contains(&format!("-sandbox {SANDBOX}")), "{a}");
        assert!(a.contains("-smp 2"));
        assert!(a.contains("vhost-user-vsock-device,chardev=vsock"));
        assert!(a.contains("file,id=console,path=/s/console.log"));
        assert!(!a.contains("-netdev") && !a.contains("-nic") && !a.contains("virtio-net"));
        assert!(a.ends_with("-append console=ttyS0 reboot=t panic=-1 quiet"));
    }

    #[test]
    fn fs_devices_get_a_chardev_each() {
        let mut s = spec(Accel::Tcg);
        s.fs_devices = vec![(PathBuf::from("/s/fs0.sock"), "ws".into())];
        let a = joined(&s);
        assert!(a.contains("-chardev socket,id=fs0,path=/s/fs0.sock -device vhost-user-fs-device,chardev=fs0,tag=ws"), "{a}");
        s.fs_devices = vec![(PathBuf::from("/s/fs0.sock"), "bad,tag".into())];
        assert!(args(&s).is_err());
    }

    #[test]
    fn more_devices_than_microvm_transports_are_refused() {
        let mut s = spec(Accel::Tcg);
        s.drives = vec![Drive {
            path: PathBuf::from("/s/disk.img"),
            read_only: false,
            serial: "airlock-disk".into(),
        }];
        s.fs_devices = (0..6)
            .map(|i| (PathBuf::from(format!("/s/fs{i}.sock")), format!("fs{i}")))
            .collect();
        assert!(args(&s).is_ok());
        // Eight transports in use: no room left for the balloon, and none is needed.
        assert!(!joined(&s).contains(BALLOON));
        s.fs_devices.pop();
        assert!(joined(&s).contains(BALLOON));
        s.fs_devices
            .push((PathBuf::from("/s/fs5.sock"), "fs5".into()));
        s.fs_devices
            .push((PathBuf::from("/s/fs6.sock"), "fs6".into()));
        let e = args(&s).unwrap_err().to_string();
        assert!(
            e.contains("9 virtio devices (vsock, 7 shares, 1 drives)"),
            "{e}"
        );
    }

    #[test]
    fn kvm_uses_host_cpu() {
        assert!(joined(&spec(Accel::Kvm)).contains("-accel kvm -cpu host"));
    }

    #[test]
    fn rejects_unusable_specs() {
        let mut s = spec(Accel::Tcg);
        s.console_log = PathBuf::from("/a,b/console.log");
        assert!(matches!(args(&s), Err(EngineError::InvalidSpec(m)) if m.contains("','")));
        let mut s = spec(Accel::Tcg);
        s.cpus = 0;
        assert!(args(&s).is_err());
    }
}
