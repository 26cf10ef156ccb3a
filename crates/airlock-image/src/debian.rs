//! The `debian` image: a Debian bookworm root filesystem (minbase plus developer tools, with
//! every update from bookworm-updates and bookworm-security applied at build time) packed as a
//! zstd squashfs, with a manifest of every package and the archive it came from.
//!
//! Data flow: `airlock image build` calls [`build()`](fn@build) (debootstrap, apt, mksquashfs; needs root)
//! which installs `images/<name>/<build-id>/` and switches `current`; a sandbox calls [`open`],
//! which verifies the rootfs against the manifest and holds the build in use;
//! `airlock image check` fetches the archives' indices ([`mirror::fetch_all`]) and compares them
//! with the manifest ([`patch::check`]); `airlock image update` builds again and calls [`gc`].

pub mod build;
pub mod debver;
pub mod index;
pub mod manifest;
pub mod mirror;
pub mod patch;
pub mod store;

pub use build::{BuildOptions, Built, PACKAGES, build, missing_build_deps};
pub use manifest::ImageManifest;
pub use mirror::Mirrors;
pub use patch::{CheckReport, check};
pub use store::{
    BuildInfo, DEFAULT_NAME, GcReport, OpenedImage, current_build, doctor_findings, gc,
    last_report, list, open, save_report,
};
