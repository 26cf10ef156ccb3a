//! containerd's runtime shim for airlock (`--runtime io.containerd.airlock.v2`); installed next
//! to `airlock`, whose gateways it starts. See `airlock-shim` and docs/kubernetes.md.

fn main() -> std::process::ExitCode {
    airlock_shim::main()
}
