//! Binding a booted guest to a policy and its shares: the egress gateway starts with the
//! policy, each share is bound to a filesystem gateway and mounted in the guest, and the
//! binding is recorded (`sandbox.bind`). A cold start and a warm-pool claim both come here.

use crate::config::SandboxConfig;
use crate::{Sandbox, SandboxError};
use airlock_audit::{Decision, Event, Source, kind};
use airlock_proto::PROXY_PORT;
use airlock_vm::Vm;
use std::time::{Duration, Instant};
use tracing::Instrument;

impl Sandbox {
    /// Starts the egress gateway with `config`'s policy, binds each share to a filesystem
    /// gateway and mounts it in the guest; returns the `sandbox.bind` record to write.
    pub(crate) async fn bind(&mut self, config: &SandboxConfig) -> Result<Event, SandboxError> {
        if self.bound {
            return Err(SandboxError::AlreadyBound);
        }
        if config.shares.len() > self.fs.len() {
            return Err(SandboxError::TooManyShares {
                shares: config.shares.len(),
                devices: self.fs.len(),
            });
        }
        self.bound = true;
        let t0 = Instant::now();
        if self.egress.is_none() {
            self.egress = Some(
                start_egress(
                    &self.backend,
                    &self.recorder,
                    self.state.path(),
                    &self.span,
                    config,
                )
                .await?,
            );
        }
        let tls = config.egress_tls.as_ref();
        if let Some(tls) = tls
            && (!tls.guest_ca.is_empty() || !tls.guest_env.is_empty())
        {
            self.control
                .configure(&tls.guest_ca, &tls.guest_env)
                .await?;
        }
        bind_slots(&mut self.fs, config).await?;
        for (i, share) in config.shares.iter().enumerate() {
            let read_only = share.mode == airlock_policy::MountMode::Ro;
            self.control
                .mount(&format!("fs{i}"), &share.guest_path, read_only)
                .await?;
        }
        let shares: Vec<String> = config
            .shares
            .iter()
            .map(|s| {
                format!(
                    "{} at {} ({})",
                    s.host_dir.display(),
                    s.guest_path,
                    s.mode.as_str()
                )
            })
            .collect();
        let source = config.policy.source();
        Ok(Event::new(Source::Host, kind::SANDBOX_BIND)
            .with_decision(Decision::Allow)
            .with_detail(format!(
                "policy {} (sha256 {}); shares: {}; bound in {:.0} ms",
                source.origin.display(),
                sha256_hex(source.text.as_bytes()),
                if shares.is_empty() {
                    "none".to_string()
                } else {
                    shares.join(", ")
                },
                ms(t0.elapsed())
            )))
    }

    /// Shares one more directory into the running sandbox: binds the first free filesystem
    /// gateway to `share`, decided by `policy` (which must have a mount at the share's guest
    /// path), mounts it in the guest and records `sandbox.share`. The sandbox must have been
    /// booted with a spare slot (`Machine::fs_slots`); devices cannot be added to a running VM.
    pub async fn add_share(
        &mut self,
        policy: &airlock_policy::Policy,
        share: &airlock_fs::Share,
    ) -> Result<(), SandboxError> {
        let devices = self.fs.len();
        let i = self
            .fs
            .iter()
            .position(|s| !s.is_bound())
            .ok_or(SandboxError::TooManyShares {
                shares: devices + 1,
                devices,
            })?;
        let bind = airlock_fs::process::FsBind::new(policy, share, None);
        self.bind_slot(i, &bind, share).await?;
        if let Some(r) = self.recorder.get() {
            r.record(
                Event::new(Source::Host, kind::SANDBOX_SHARE)
                    .with_decision(Decision::Allow)
                    .with_detail(format!(
                        "{} at {} ({}), device fs{i}",
                        share.host_dir.display(),
                        share.guest_path,
                        share.mode.as_str()
                    )),
            );
        }
        Ok(())
    }

    /// Binds filesystem gateway `i` to `share` and mounts it in the guest as device `fs{i}`.
    async fn bind_slot(
        &mut self,
        i: usize,
        bind: &airlock_fs::process::FsBind,
        share: &airlock_fs::Share,
    ) -> Result<(), SandboxError> {
        let slot = self.fs.get_mut(i).ok_or(SandboxError::TooManyShares {
            shares: i + 1,
            devices: i,
        })?;
        slot.bind(bind)
            .await
            .map_err(|source| SandboxError::FsGateway {
                what: share.guest_path.clone(),
                source,
            })?;
        let read_only = share.mode == airlock_policy::MountMode::Ro;
        self.control
            .mount(&format!("fs{i}"), &share.guest_path, read_only)
            .await
    }

    /// Records the binding and starts publishing counters for `airlock stats`.
    pub(crate) fn finish_bind(&mut self, bind: Event) {
        let Some(r) = self.recorder.get().cloned() else {
            return;
        };
        r.record(bind);
        let (id, path, pid) = (
            self.id.clone(),
            self.state.path().join("stats.json"),
            self.vm.pid(),
        );
        let mut usage = crate::stats::UsageLog::new(r.path());
        self.stats_task = Some(tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let stats = r.stats(&id, pid);
                    usage.append(&stats);
                    if let Ok(json) = serde_json::to_vec(&stats) {
                        let tmp = path.with_extension("json.tmp");
                        if std::fs::write(&tmp, json).is_ok() {
                            let _ = std::fs::rename(&tmp, &path);
                        }
                    }
                }
            }
            .instrument(self.span.clone()),
        ));
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Maps the guest's `agent` (uid/gid 1000) onto the owner of a shared directory, so the agent can
/// work on the user's files and what it creates belongs to that user on the host.
pub(crate) fn owner_map(dir: &std::path::Path) -> Option<airlock_fs::OwnerMap> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    Some(airlock_fs::OwnerMap {
        guest_uid: AGENT_ID,
        guest_gid: AGENT_ID,
        host_uid: meta.uid(),
        host_gid: meta.gid(),
    })
}

/// uid and gid of the `agent` account in airlock's images.
const AGENT_ID: u32 = 1000;

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Answers the egress gateway's requests for fresh credential values: each source is read
/// again on the host (a `command:` run again) and the value written to the gateway's stdin.
async fn answer_refreshes(
    mut input: tokio::process::ChildStdin,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<airlock_net::process::RefreshWhat>,
    sources: std::sync::Arc<Vec<(String, airlock_policy::CredentialSource)>>,
) {
    use tokio::io::AsyncWriteExt;
    while let Some(req) = requests.recv().await {
        let value = match sources.iter().find(|(n, _)| *n == req.name) {
            Some((name, source)) => crate::credentials::read(name, source)
                .await
                .map_err(|e| e.to_string()),
            None => Err(format!("no credential named {:?}", req.name)),
        };
        if let Err(why) = &value {
            tracing::warn!(credential = %req.name, %why, "credential could not be read again");
        } else {
            tracing::debug!(credential = %req.name, "credential read again");
        }
        let answer = airlock_net::process::RefreshAnswer { id: req.id, value };
        let Ok(mut line) = serde_json::to_vec(&answer) else {
            continue;
        };
        line.push(b'\n');
        if input.write_all(&line).await.is_err() || input.flush().await.is_err() {
            return;
        }
    }
}

/// Starts the egress gateway for `config`'s policy, in a jailed process of its own: the guest's
/// 127.0.0.1:3128 tunnels arrive on the vsock listener it inherits.
pub(crate) async fn start_egress(
    backend: &airlock_vm::vsock::VsockBackend,
    recorder: &crate::config::RecorderSlot,
    state_dir: &std::path::Path,
    span: &tracing::Span,
    config: &SandboxConfig,
) -> Result<airlock_jail::gateway::GatewayProcess, SandboxError> {
    // The egress gateway, in a jailed process of its own: the guest's 127.0.0.1:3128
    // tunnels arrive on this listener, which it inherits.
    let listener = backend
        .listen(PROXY_PORT)?
        .into_std()
        .map_err(|source| SandboxError::Io {
            context: "preparing the egress listener",
            source,
        })?;
    let dns = match config.resolver.spec() {
        Some(airlock_net::ResolverSpec::System) => None,
        Some(airlock_net::ResolverSpec::Dns(server)) => Some(server),
        None => return Err(SandboxError::Resolver),
    };
    let tls = config.egress_tls.as_ref();
    let spec = airlock_net::process::EgressSpec {
        policy: config.policy.source().clone(),
        dns,
        tls_ports: config.tls_ports.clone(),
        authority: tls.and_then(|t| t.authority.clone()),
        roots: tls.map(|t| t.roots.clone()).unwrap_or_default(),
        secrets: tls.map(|t| t.secrets.clone()).unwrap_or_default(),
    };
    let sink = recorder.clone();
    // The gateway asks for fresh credential values on its stdout; they are read on the
    // host and answered on its stdin.
    let (refresh_tx, refresh_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut egress = airlock_net::client::spawn(
        &spec,
        std::os::fd::OwnedFd::from(listener),
        &state_dir.join("egress.log"),
        move |line| {
            if let Some(l) = airlock_net::NetLine::parse(line) {
                if let Some(r) = sink.get() {
                    r.record(l.to_event());
                }
            } else if let Some(req) = airlock_net::process::RefreshRequest::parse(line) {
                let _ = refresh_tx.send(req.refresh);
            } else {
                tracing::warn!("malformed line from the egress gateway");
                if let Some(r) = sink.get() {
                    r.record(crate::audit::malformed_line("egress"));
                }
            }
        },
    )
    .await
    .map_err(SandboxError::Egress)?;
    if let (Some(input), Some(tls)) = (egress.take_input(), tls) {
        tokio::spawn(
            answer_refreshes(input, refresh_rx, tls.sources.clone()).instrument(span.clone()),
        );
    }
    Ok(egress)
}

/// Binds the filesystem gateways to `config`'s shares, each with the policy and the owner map
/// of its host directory; slots already bound are left alone. The guest mounts nothing here.
pub(crate) async fn bind_slots(
    fs: &mut [airlock_fs::client::FsSlot],
    config: &SandboxConfig,
) -> Result<(), SandboxError> {
    if config.shares.len() > fs.len() {
        return Err(SandboxError::TooManyShares {
            shares: config.shares.len(),
            devices: fs.len(),
        });
    }
    for (share, slot) in config.shares.iter().zip(fs.iter_mut()) {
        if slot.is_bound() {
            continue;
        }
        let bind = airlock_fs::process::FsBind::new(
            &config.policy,
            share,
            owner_map(&share.host_dir).map(|m| [m.guest_uid, m.guest_gid, m.host_uid, m.host_gid]),
        );
        slot.bind(&bind)
            .await
            .map_err(|source| SandboxError::FsGateway {
                what: share.guest_path.clone(),
                source,
            })?;
    }
    Ok(())
}
