//! Entries that would protect less than they read as: filesystem globs written as a guest or
//! host path of a share, and allow blocks covering a cloud metadata address.

use super::{assert_error, env, errors, load};

#[test]
fn globs_written_as_guest_mount_points_are_refused() {
    assert_error(
        r#"
[[filesystem.mounts]]
workspace = true
guest = "/workspace"
[[filesystem.mounts]]
host = "src"
guest = "/workspace/data"
[filesystem]
deny_read = ["/workspace/.env", "/workspace/data/keys/*.pem", "/workspace"]
deny_write = ["/workspace/**"]
protect = ["/home/agent/.ssh/**"]
"#,
        "test.toml:9:14: filesystem.deny_read[0]: \"/workspace/.env\" starts with the guest mount point of filesystem.mounts[0] \"/workspace\", but globs are relative to each share's root, so it matches \"workspace/.env\" inside a share, never the path it names; write \".env\" (or \"workspace/.env\" for a directory of that name inside the share)\n\
         test.toml:9:33: filesystem.deny_read[1]: \"/workspace/data/keys/*.pem\" starts with the guest mount point of filesystem.mounts[1] \"/workspace/data\", but globs are relative to each share's root, so it matches \"workspace/data/keys/*.pem\" inside a share, never the path it names; write \"keys/*.pem\" (or \"workspace/data/keys/*.pem\" for a directory of that name inside the share)\n\
         test.toml:9:63: filesystem.deny_read[2]: \"/workspace\" starts with the guest mount point of filesystem.mounts[0] \"/workspace\", but globs are relative to each share's root, so it matches \"workspace\" inside a share, never the path it names; write \"**\" (or \"workspace\" for a directory of that name inside the share)\n\
         test.toml:10:15: filesystem.deny_write[0]: \"/workspace/**\" starts with the guest mount point of filesystem.mounts[0] \"/workspace\", but globs are relative to each share's root, so it matches \"workspace/**\" inside a share, never the path it names; write \"**\" (or \"workspace/**\" for a directory of that name inside the share)\n\
         test.toml:11:12: filesystem.protect[0]: \"/home/agent/.ssh/**\" starts with the agent home's mount point \"/home/agent\", but globs are relative to each share's root, so it matches \"home/agent/.ssh/**\" inside a share, never the path it names; write \".ssh/**\" (or \"home/agent/.ssh/**\" for a directory of that name inside the share)",
    );
}

#[test]
fn share_relative_globs_stay_valid() {
    // Without a leading `/`, a glob naming a directory called like a mount point is taken as
    // written; a leading `/` that names no mount is the documented root anchor.
    let p = load(
        r#"
extends = "default"
[filesystem]
deny_read = ["workspace/.env", "/workspacefoo/x", "/secrets/**", "/home/agentx", "**/.env"]
deny_write = [".env", "/.env"]
"#,
    );
    assert!(
        p.is_ok(),
        "{}",
        p.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

#[test]
fn a_profile_mount_point_counts_too() {
    assert_error(
        "extends = \"default\"\n[filesystem]\ndeny_read = [\"/workspace/secrets/**\"]\n",
        "test.toml:3:14: filesystem.deny_read[0]: \"/workspace/secrets/**\" starts with the guest mount point of filesystem.mounts[0] \"/workspace\" (profile default), but globs are relative to each share's root, so it matches \"workspace/secrets/**\" inside a share, never the path it names; write \"secrets/**\" (or \"workspace/secrets/**\" for a directory of that name inside the share)",
    );
}

#[test]
fn globs_written_as_host_directories_are_refused() {
    // `env()` sets HOME to the crate directory.
    let host = std::fs::canonicalize(env().home.unwrap().join("src")).unwrap();
    let host = host.to_str().unwrap();
    assert_error(
        &format!(
            "[[filesystem.mounts]]\nhost = \"~/src\"\nguest = \"/data\"\n[filesystem]\ndeny_read = [\"{host}/validate/*.rs\"]\n"
        ),
        &format!(
            "test.toml:5:14: filesystem.deny_read[0]: \"{host}/validate/*.rs\" starts with the host directory {host:?} of filesystem.mounts[0] \"/data\", but globs are relative to each share's root, so it matches \"{rel}/validate/*.rs\" inside a share, never the path it names; write \"validate/*.rs\" (or \"{rel}/validate/*.rs\" for a directory of that name inside the share)",
            rel = host.trim_start_matches('/'),
        ),
    );
}

#[test]
fn a_policy_mount_over_the_agent_home_is_the_one_named() {
    assert_error(
        "[[filesystem.mounts]]\nhost = \"src\"\nguest = \"/home\"\n[filesystem]\ndeny_read = [\"/home/agent/.ssh/**\"]\n",
        "test.toml:5:14: filesystem.deny_read[0]: \"/home/agent/.ssh/**\" starts with the guest mount point of filesystem.mounts[0] \"/home\", but globs are relative to each share's root, so it matches \"home/agent/.ssh/**\" inside a share, never the path it names; write \"agent/.ssh/**\" (or \"home/agent/.ssh/**\" for a directory of that name inside the share)",
    );
}

#[test]
fn allow_blocks_covering_a_metadata_address_are_refused() {
    let e = errors(
        r#"
[network]
allow_private = true
allow = ["169.254.0.0/16", "169.254.170.2", "100.64.0.0/10", "[fd00::/8]:443", "2002::/16", "10.0.0.0/8", "[fd00:ec2::254]", "metadata.example"]
deny = ["169.254.0.0/16"]
[[network.http]]
host = "192.0.0.0/24"
action = "allow"
[[network.http]]
host = "192.0.0.0/24"
action = "deny"
"#,
    );
    let tail = "no block opens a metadata address, only an entry naming the exact address, like \"169.254.169.254:80\": narrow the block to leave it out, and list each metadata address the sandbox needs";
    let link_local = "IPv4 link-local: instance metadata of AWS, GCP, Azure and OCI at 169.254.169.254, ECS task metadata and credentials at 169.254.170.2";
    assert_eq!(
        e,
        format!(
            "test.toml:4:10: network.allow[0]: \"169.254.0.0/16\" covers the cloud metadata block 169.254.0.0/16 ({link_local}); {tail}\n\
             test.toml:4:45: network.allow[2]: \"100.64.0.0/10\" covers the cloud metadata block 100.100.100.200/32 (Alibaba Cloud instance metadata); {tail}\n\
             test.toml:4:62: network.allow[3]: \"[fd00::/8]:443\" covers the cloud metadata block fd00:ec2::254/128 (AWS instance metadata over IPv6); {tail}\n\
             test.toml:4:80: network.allow[4]: \"2002::/16\" covers the cloud metadata block 2002:a9fe::/32 ({link_local}); {tail}\n\
             test.toml:7:8: network.http[0].host: \"192.0.0.0/24\" covers the cloud metadata block 192.0.0.192/32 (Oracle Cloud (Classic) instance metadata); {tail}"
        )
    );
}
