//! From a request to a bootable sandbox: the one place where `airlock run` and the daemon turn
//! "this policy (file, text or profile), this workspace, this image, these overrides" into a
//! [`SandboxConfig`] and [`Images`], and build the [`ExecRequest`] of each command.
//!
//! Both callers therefore refuse the same things (policy errors, unmet `sandbox.require`, `pause`
//! monitor rules, unbuilt images), share the same directories the same way (including overlay
//! copies), and audit to the same place. Errors that are the caller's fault are
//! [`LaunchError::Invalid`] and name the request field, so the API can answer 400 with it.

mod env;
mod error;
mod image_config;
mod layers;
mod reserved;
mod shares;

pub use env::{DEFAULT_BOOT_TIMEOUT_SECS, boot_timeout, resolver, tls_ports};
pub use error::LaunchError;
pub use image_config::apply_image_config;
pub use reserved::airlock_files;
pub use shares::{OverlayMeta, PolicySource, overlays_dir, prepare_shares};

use crate::{AuditConfig, Images, Notifier, Redactor, SandboxConfig, default_audit_dir};
use airlock_image::debian::OpenedImage;
use airlock_image::{Cache, ImageError};
use airlock_policy::{MountMode, Policy, PolicyErrors};
use airlock_proto::{ExecRequest, WindowSize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicyChoice {
    /// A policy file on this host.
    File(PathBuf),
    /// Policy text; `origin` names it in messages and anchors its relative host paths.
    Text {
        /// The TOML text.
        text: String,
        /// A path whose directory relative host paths resolve against.
        origin: PathBuf,
    },
    /// A shipped profile (`default`, `offline`, ...).
    Profile(String),
}

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The policy.
    pub policy: PolicyChoice,
    /// Host directory bound to the policy's workspace mount; required when it has one.
    pub workspace: Option<PathBuf>,
    /// Guest image, overriding the policy's `sandbox.image`.
    pub image: Option<String>,
    /// vCPUs, overriding `sandbox.cpus`.
    pub cpus: Option<u32>,
    /// Memory in MiB, overriding `sandbox.memory`.
    pub memory_mib: Option<u64>,
    /// Keep the state dir after shutdown.
    pub keep: bool,
    /// Environment the caller passes to commands (for `audit.redact_env`).
    pub env: Vec<(String, String)>,
    /// Where lines for the user go (overlay copy progress, monitor alerts).
    pub notify: Notifier,
    /// An agent kit layered over the image.
    pub kit: Option<airlock_image::kit::Kit>,
}

/// A policy as loaded, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The validated policy, workspace bound.
    pub policy: Policy,
    /// How to name it in messages (`profile default`, a file path).
    pub origin: String,
    /// Its text and workspace, kept with overlays so `apply` decides the same way.
    pub source: PolicySource,
}

/// Everything needed to boot one sandbox.
pub struct Launch {
    /// The sandbox id (chosen before boot: overlays and logs are named after it).
    pub id: String,
    /// The supervisor's configuration.
    pub config: SandboxConfig,
    /// Kernel, initramfs and root image.
    pub images: Images,
    /// A built image, verified and held in use while the sandbox runs.
    pub image: Option<OpenedImage>,
    /// The image name.
    pub image_name: String,
    /// The agent kit's layer, verified and held in use while the sandbox runs.
    pub kit: Option<airlock_image::kit::store::OpenedKit>,
    /// The package layers, verified.
    pub layers: Vec<airlock_image::layer::store::OpenedLayer>,
    /// The policy.
    pub policy: Arc<Policy>,
    /// How the policy is named.
    pub origin: String,
    /// Whether a mount works on an overlay copy.
    pub has_overlay: bool,
    /// The workspace host directory, if the policy shares one.
    pub workspace: Option<PathBuf>,
}

impl Launch {
    /// Where commands start by default: the workspace mount, if any.
    pub fn default_cwd(&self) -> Option<String> {
        default_cwd(&self.policy)
    }
}

/// The guest path of the policy's workspace mount.
pub fn default_cwd(policy: &Policy) -> Option<String> {
    policy
        .mounts()
        .iter()
        .find(|m| m.workspace)
        .map(|m| m.guest.clone())
}

/// Turns all errors of a policy into one text listing each on its own line.
pub fn policy_errors(errors: &PolicyErrors) -> String {
    format!("invalid policy:\n{errors}")
}

/// Loads the policy and binds the workspace.
///
/// Fails closed: a policy asking for something this build cannot enforce is refused. Asking for
/// less than the policy allows only makes the sandbox stricter.
pub fn load_policy(
    choice: &PolicyChoice,
    workspace: Option<&Path>,
) -> Result<LoadedPolicy, LaunchError> {
    let (text, origin_path, origin, field) = match choice {
        PolicyChoice::File(file) => (
            std::fs::read_to_string(file).map_err(|source| LaunchError::PolicyFile {
                path: file.clone(),
                source,
            })?,
            file.clone(),
            file.display().to_string(),
            "policy",
        ),
        PolicyChoice::Text { text, origin } => (
            text.clone(),
            origin.clone(),
            origin.display().to_string(),
            "policy",
        ),
        PolicyChoice::Profile(name) => {
            let names = airlock_policy::profile_names();
            let Some(text) =
                airlock_policy::profile_text(name).filter(|_| names.contains(&&**name))
            else {
                return Err(LaunchError::invalid(
                    "profile",
                    format!(
                        "unknown profile {name:?}; shipped profiles: {}",
                        names.join(", ")
                    ),
                ));
            };
            (
                text.to_string(),
                PathBuf::from(format!("{name}.toml")),
                format!("profile {name}"),
                "profile",
            )
        }
    };
    let policy = airlock_policy::load_str(&text, &origin_path)
        .map_err(|e| LaunchError::invalid(field, policy_errors(&e)))?;
    if let Some(rule) = policy
        .monitor_rules()
        .iter()
        .find(|r| r.action == airlock_policy::MonitorAction::Pause)
    {
        return Err(LaunchError::invalid(
            field,
            format!(
                "{origin}: {} uses action \"pause\", which this build cannot enforce (no engine \
                 pause yet); use \"alert\" or \"kill\"",
                rule.rule
            ),
        ));
    }
    let workspace = if policy.needs_workspace() {
        let dir = workspace.ok_or_else(|| {
            LaunchError::invalid(
                "workspace",
                format!("{origin} shares a workspace: give the host directory to share"),
            )
        })?;
        if !dir.is_absolute() {
            return Err(LaunchError::invalid(
                "workspace",
                format!("{} is not an absolute path", dir.display()),
            ));
        }
        if !dir.is_dir() {
            return Err(LaunchError::invalid(
                "workspace",
                format!("{} is not a directory on the host", dir.display()),
            ));
        }
        Some(dir.to_path_buf())
    } else {
        None
    };
    let policy = match &workspace {
        Some(dir) => policy
            .with_workspace(dir)
            .map_err(|e| LaunchError::invalid(field, policy_errors(&e)))?,
        None => policy,
    };
    Ok(LoadedPolicy {
        policy,
        origin,
        source: PolicySource {
            text,
            origin_path,
            workspace,
        },
    })
}

/// Checks the policy and request against this host, chooses an id, prepares the shares and the
/// audit log config, and opens the image. `base` are the kernel and initramfs, resolved once.
pub async fn prepare(options: &LaunchOptions, base: &Images) -> Result<Launch, LaunchError> {
    let LoadedPolicy {
        policy,
        origin,
        source,
    } = load_policy(&options.policy, options.workspace.as_deref())?;
    let field = match options.policy {
        PolicyChoice::Profile(_) => "profile",
        _ => "policy",
    };
    // An agent keeps its home per workspace; without a workspace it starts fresh each run.
    let policy = match (&options.kit, &source.workspace) {
        (Some(kit), Some(ws)) => {
            let home = crate::homes::ensure(&kit.name, ws).map_err(LaunchError::Home)?;
            policy
                .with_home(&home)
                .map_err(|e| LaunchError::invalid("agent", policy_errors(&e)))?
        }
        _ => policy,
    };
    // airlock's own files inside a share: read-only or hidden there, whatever the policy says.
    let policy_file = match &options.policy {
        PolicyChoice::File(f) => Some(f.as_path()),
        PolicyChoice::Text { origin, .. } => Some(origin.as_path()),
        PolicyChoice::Profile(_) => None,
    };
    let files = airlock_files(policy_file, &policy);
    let policy = reserved::reserve(policy, &files)
        .map_err(|e| LaunchError::invalid(field, policy_errors(&e)))?;
    // Fail closed: a required protection this host lacks stops the launch before anything starts.
    crate::protections::check_required(&policy.sandbox().require)
        .map_err(|why| LaunchError::invalid(field, format!("{origin}: sandbox.require: {why}")))?;
    if let Some(cpus) = options.cpus
        && !(1..=16).contains(&cpus)
    {
        return Err(LaunchError::invalid(
            "cpus",
            format!("{cpus} is out of range 1..=16"),
        ));
    }
    if let Some(mib) = options.memory_mib
        && !(64..=65536).contains(&mib)
    {
        return Err(LaunchError::invalid(
            "memory_mib",
            format!("{mib} is out of range 64..=65536"),
        ));
    }
    let image_name = options
        .image
        .clone()
        .unwrap_or_else(|| policy.sandbox().image.clone());
    // `oci:NAME` names an image imported with `airlock image import`, and nothing else.
    let (image_name, want_oci) = match image_name.strip_prefix("oci:") {
        Some(name) => (name.to_string(), true),
        None => (image_name, false),
    };
    let mut images = base.clone();
    if want_oci && image_name == "tiny" {
        let f = if options.image.is_some() {
            "image"
        } else {
            field
        };
        return Err(LaunchError::invalid(
            f,
            "`tiny` is airlock's built-in image, not an imported one: name it without `oci:`",
        ));
    }
    let image = if image_name == "tiny" {
        None
    } else {
        // A built image is verified against its manifest and held (not collected) while used.
        let name = image_name.clone();
        let cache = Cache::from_env().map_err(|source| LaunchError::Image {
            what: "opening the image cache".into(),
            source: Box::new(source),
        })?;
        let opened =
            tokio::task::spawn_blocking(move || airlock_image::debian::open(&cache, &name))
                .await
                .map_err(|_| LaunchError::Task("the image check task failed"))?;
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                let (field, what) = match &options.image {
                    Some(_) => ("image", format!("image {image_name:?}")),
                    None => (field, format!("{origin}: sandbox.image = {image_name:?}")),
                };
                return Err(match e {
                    ImageError::NotBuilt { .. } => {
                        LaunchError::invalid(field, format!("{what}: {e}"))
                    }
                    source => LaunchError::Image {
                        what,
                        source: Box::new(source),
                    },
                });
            }
        };
        if want_oci && opened.manifest.oci.is_none() {
            let f = if options.image.is_some() {
                "image"
            } else {
                field
            };
            return Err(LaunchError::invalid(
                f,
                format!(
                    "image {image_name:?} was built by airlock ({}), not imported: name it \
                     without `oci:`",
                    opened.manifest.kind
                ),
            ));
        }
        images.rootfs = Some(opened.rootfs.clone());
        Some(opened)
    };
    let kit = match &options.kit {
        None => None,
        Some(_) if image.is_none() => {
            return Err(LaunchError::invalid(
                "agent",
                format!(
                    "agent kits run on a Debian image, not {image_name:?}; build one with \
                     `airlock image build --kind debian`"
                ),
            ));
        }
        Some(kit) => {
            let cache = Cache::from_env().map_err(|source| LaunchError::Image {
                what: "opening the image cache".into(),
                source: Box::new(source),
            })?;
            let k = kit.clone();
            let opened =
                tokio::task::spawn_blocking(move || airlock_image::kit::store::open(&cache, &k))
                    .await
                    .map_err(|_| LaunchError::Task("the kit check task failed"))?;
            let opened = opened.map_err(|e| match e {
                ImageError::KitNotInstalled { .. } => LaunchError::invalid("agent", e.to_string()),
                source => LaunchError::Image {
                    what: format!("agent kit {}", kit.name),
                    source: Box::new(source),
                },
            })?;
            images.kit = Some(opened.layer.clone());
            Some(opened)
        }
    };
    let (image, layers) = layers::open(&policy, image, &image_name, field, &origin).await?;
    images.layers = layers.iter().map(|l| l.layer.clone()).collect();
    let egress_tls = crate::credentials::prepare(&policy)
        .await
        .map_err(LaunchError::Credentials)?;
    if let Some(tls) = &egress_tls
        && tls.secrets.is_empty()
        && !tls.skipped.is_empty()
    {
        options.notify.note(&format!(
            "no credential on the host ({} not set): the sandbox gets no key from airlock",
            tls.skipped.join(", ")
        ));
    }
    let id = crate::new_sandbox_id().map_err(LaunchError::Id)?;
    let shares = prepare_shares(&id, &policy, &source, &options.notify)?;
    let has_overlay = shares.iter().any(|s| s.mode == MountMode::Overlay);
    let limits = policy.sandbox();
    let config = SandboxConfig {
        cpus: options.cpus.unwrap_or(limits.cpus),
        memory_mib: options
            .memory_mib
            .unwrap_or(limits.memory_bytes.div_ceil(1024 * 1024)),
        disk_bytes: limits.disk_bytes,
        require_host_limits: limits.require.iter().any(|r| r == "host-cgroups"),
        keep: options.keep,
        boot_timeout: boot_timeout()?,
        accel: airlock_vm::accel::probe(),
        audit: Some(audit_config(&policy, &options.env, options.notify.clone())?),
        description: match (&image, &kit) {
            (Some(i), Some(k)) => format!(
                "policy {origin}, image {} (build {}), agent kit {} {} (build {})",
                i.name, i.build_id, k.name, k.manifest.version, k.build_id
            ),
            (Some(i), None) => {
                format!("policy {origin}, image {} (build {})", i.name, i.build_id)
            }
            (None, _) => format!("policy {origin}, image {image_name}"),
        } + &layers::describe(&layers),
        shares,
        spare_shares: 0,
        id: Some(id.clone()),
        resolver: resolver()?,
        tls_ports: tls_ports()?,
        egress_tls,
        policy: Arc::new(policy.clone()),
    };
    Ok(Launch {
        id,
        policy: config.policy.clone(),
        config,
        images,
        image,
        image_name,
        kit,
        layers,
        origin,
        has_overlay,
        workspace: source.workspace,
    })
}

/// The audit log path a sandbox with this config writes.
pub fn audit_log_path(config: &SandboxConfig, id: &str) -> Option<PathBuf> {
    let a = config.audit.as_ref()?;
    Some(
        a.path
            .clone()
            .unwrap_or_else(|| a.dir.join(format!("{id}.jsonl"))),
    )
}

/// Records `policy.unprotect` for each built-in protection the policy removed and each share
/// where the protected paths do not apply (`protected = false`, the agent home).
pub fn record_unprotected(sandbox: &crate::Sandbox, policy: &Policy, origin: &str) {
    use airlock_audit::{Decision, Event, Source, kind};
    if let Some(r) = sandbox.recorder() {
        for m in policy.unprotected_mounts() {
            let host = match &m.host {
                airlock_policy::MountHost::Path(p) => p.display().to_string(),
                airlock_policy::MountHost::Workspace => "the workspace".into(),
            };
            r.record(
                Event::new(Source::Host, kind::POLICY_UNPROTECT)
                    .with_decision(Decision::Allow)
                    .with_rule(m.rule())
                    .with_detail(format!(
                        "protected paths do not apply in the share of {host} at {}",
                        m.guest
                    )),
            );
        }
        for entry in policy.unprotected() {
            r.record(
                Event::new(Source::Host, kind::POLICY_UNPROTECT)
                    .with_decision(Decision::Allow)
                    .with_rule("filesystem.unprotect")
                    .with_detail(format!("built-in protection {entry:?} removed by {origin}")),
            );
        }
    }
}

/// The request for one command under `policy`: its `[process]` section (user, `no_new_privs`,
/// seccomp), the pids limit and the Landlock write set. `cwd` defaults to the workspace mount.
pub fn exec_request(
    policy: &Policy,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    tty: Option<WindowSize>,
) -> ExecRequest {
    let process = policy.process();
    ExecRequest {
        argv,
        env,
        cwd: cwd.or_else(|| default_cwd(policy)),
        tty,
        user: (process.user != "root").then(|| process.user.clone()),
        no_new_privs: process.no_new_privs,
        seccomp: match process.seccomp {
            airlock_policy::SeccompProfile::Default => airlock_proto::SeccompProfile::Default,
            airlock_policy::SeccompProfile::Strict => airlock_proto::SeccompProfile::Strict,
            airlock_policy::SeccompProfile::Unconfined => airlock_proto::SeccompProfile::Unconfined,
        },
        pids_max: Some(policy.sandbox().pids),
        landlock_write: landlock_dirs(policy),
        root: None,
    }
}

/// Where the workload may write, for the guest's Landlock ruleset: its shares, the temporary
/// directories, its home (`~`) and `/dev` (terminals, `/dev/null`). `None` when the policy turns
/// `no_new_privs` off, which Landlock needs for an unprivileged workload.
pub fn landlock_dirs(policy: &airlock_policy::Policy) -> Option<Vec<String>> {
    if !policy.process().no_new_privs {
        return None;
    }
    let mut dirs: Vec<String> = ["/tmp", "/var/tmp", "/dev", "~"]
        .into_iter()
        .map(String::from)
        .collect();
    dirs.extend(
        policy
            .mounts()
            .iter()
            .filter(|m| m.mode != airlock_policy::MountMode::Ro)
            .map(|m| m.guest.clone()),
    );
    Some(dirs)
}

/// Where a sandbox's audit log and key live.
pub fn audit_config(
    policy: &Policy,
    cli_env: &[(String, String)],
    notify: Notifier,
) -> Result<AuditConfig, LaunchError> {
    let dir = default_audit_dir().ok_or(LaunchError::NoDir {
        what: "audit logs",
        vars: "AIRLOCK_AUDIT_DIR or HOME",
    })?;
    let key = airlock_audit::default_key_path().ok_or(LaunchError::NoDir {
        what: "the audit key",
        vars: "HOME",
    })?;
    Ok(AuditConfig {
        path: policy.audit().path.clone(),
        dir,
        key,
        monitor: policy.monitor_rules().to_vec(),
        redact: redactor(policy, cli_env)?,
        notify,
        guest_rate: policy.audit().guest_rate,
    })
}

/// The policy's redactions; `redact_env` names take their values from `env` or the host.
fn redactor(policy: &Policy, env: &[(String, String)]) -> Result<Redactor, LaunchError> {
    let audit = policy.audit();
    let mut values = Vec::new();
    for name in &audit.redact_env {
        values.extend(
            env.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        );
        values.extend(std::env::var(name).ok());
    }
    Redactor::new(&audit.redact, &values).map_err(LaunchError::Redact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_profile_names_the_field() {
        let err = load_policy(&PolicyChoice::Profile("nope".into()), None).unwrap_err();
        match err {
            LaunchError::Invalid { field, message } => {
                assert_eq!(field, "profile");
                assert!(message.contains("unknown profile \"nope\""), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn workspace_policies_need_a_directory() {
        let err = load_policy(&PolicyChoice::Profile("default".into()), None).unwrap_err();
        assert!(matches!(
            err,
            LaunchError::Invalid {
                field: "workspace",
                ..
            }
        ));
        let err = load_policy(
            &PolicyChoice::Profile("default".into()),
            Some(Path::new("relative")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not an absolute path"), "{err}");
    }

    #[test]
    fn bad_policy_text_is_invalid_input() {
        let err = load_policy(
            &PolicyChoice::Text {
                text: "[sandbox]\nbogus = 1\n".into(),
                origin: PathBuf::from("/api/policy.toml"),
            },
            None,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                LaunchError::Invalid {
                    field: "policy",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
