//! The shim's lifecycle for containerd: `start` (one shim process per pod, found by the CRI
//! sandbox id), `delete` (clean up a bundle after a shim died) and serving the task service.

use crate::config::ShimConfig;
use crate::service::Service;
use crate::spec::ContainerSpec;
use async_trait::async_trait;
use containerd_shim::asynchronous::{ExitSignal, Shim, spawn};
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, Flags, StartOpts};
use std::path::Path;
use std::sync::Arc;

/// The shim as the `containerd-shim` crate drives it.
pub struct AirlockShim {
    namespace: String,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for AirlockShim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        AirlockShim {
            namespace: args.namespace.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // containerd runs `start` in the bundle: containers of one pod share one shim (and VM).
        let spec = ContainerSpec::read(Path::new("."))
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let group = spec.group(&opts.id);
        let address = spawn(opts, &group, Vec::new()).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        // The shim died: leave no mount behind; the VM died with it (its children have
        // PDEATHSIG set).
        let rootfs = Path::new("rootfs");
        if let Some(t) = std::fs::canonicalize(rootfs)
            .ok()
            .as_deref()
            .and_then(Path::to_str)
        {
            let _ = containerd_shim::mount::umount_recursive(Some(t), libc::MNT_DETACH);
        }
        Ok(DeleteResponse {
            exit_status: 128 + 9,
            exited_at: containerd_shim::protos::protobuf::MessageField::some(
                containerd_shim::util::timestamp()?,
            ),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let config = match ShimConfig::load() {
            Ok(c) => c,
            Err(e) => {
                // Serve anyway so containerd gets the reason on Create, not a dead socket.
                tracing::error!("{e}");
                return Service::refusing(
                    publisher,
                    self.namespace.clone(),
                    e.to_string(),
                    self.exit.clone(),
                );
            }
        };
        init_logging(&config, &self.namespace);
        Service::new(publisher, self.namespace.clone(), config, self.exit.clone())
    }
}

/// Logs go to `<audit dir>/shim-<namespace>.log` (containerd shows none of a shim's output).
fn init_logging(config: &ShimConfig, namespace: &str) {
    let _ = std::fs::create_dir_all(&config.audit_dir);
    let path = config.audit_dir.join(format!("shim-{namespace}.log"));
    if let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .try_init();
    }
}
