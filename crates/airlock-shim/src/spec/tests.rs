#![allow(clippy::indexing_slicing)]

use super::*;
use proptest::prelude::*;

fn spec(json: serde_json::Value) -> Result<ContainerSpec, SpecError> {
    let spec: Spec = serde_json::from_value(json).unwrap();
    ContainerSpec::from_spec(&spec)
}

fn base() -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {
            "args": ["sh", "-c", "echo hi"],
            "env": ["PATH=/bin:/usr/bin", "EMPTY=", "EQ=a=b"],
            "cwd": "/srv",
            "user": {"uid": 1000, "gid": 100}
        }
    })
}

#[test]
fn a_plain_container_runs_alone_with_its_process() {
    let s = spec(base()).unwrap();
    assert_eq!(s.role, Role::Alone);
    assert_eq!(s.group("c1"), "c1");
    assert_eq!(s.process.args, ["sh", "-c", "echo hi"]);
    assert_eq!(
        s.process.env,
        [
            ("PATH".to_string(), "/bin:/usr/bin".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("EQ".to_string(), "a=b".to_string())
        ]
    );
    assert_eq!(s.process.cwd, "/srv");
    assert_eq!(s.process.user, "1000:100");
    assert_eq!(s.process.tty, None);
    assert_eq!(
        (s.cpus, s.memory_mib, s.pids, s.profile),
        (None, None, None, None)
    );
}

#[test]
fn cri_annotations_group_containers_by_pod() {
    let mut j = base();
    j["annotations"] = serde_json::json!({
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": "pod1",
        "io.airlock.profile": " strict "
    });
    let s = spec(j.clone()).unwrap();
    assert_eq!(s.role, Role::PodSandbox);
    assert_eq!(s.group("pod1"), "pod1");
    assert_eq!(s.profile.as_deref(), Some("strict"));
    j["annotations"]["io.kubernetes.cri.container-type"] = "container".into();
    let s = spec(j.clone()).unwrap();
    assert_eq!(s.role, Role::PodMember { pod: "pod1".into() });
    assert_eq!(s.group("app"), "pod1");
    j["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("io.kubernetes.cri.sandbox-id");
    assert!(
        spec(j.clone())
            .unwrap_err()
            .to_string()
            .contains("sandbox-id is missing")
    );
    j["annotations"]["io.kubernetes.cri.container-type"] = "vm".into();
    assert!(
        spec(j)
            .unwrap_err()
            .to_string()
            .contains("\"vm\" is neither")
    );
}

#[test]
fn resources_become_vm_sizes() {
    let mut j = base();
    j["linux"] = serde_json::json!({"resources": {
        "memory": {"limit": 300 * 1024 * 1024 + 1},
        "cpu": {"quota": 150000, "period": 100000},
        "pids": {"limit": 64}
    }});
    let s = spec(j).unwrap();
    assert_eq!(
        (s.cpus, s.memory_mib, s.pids),
        (Some(2), Some(301), Some(64))
    );
}

#[test]
fn unusable_processes_are_refused_by_field() {
    for (patch, field) in [
        (serde_json::json!({"args": []}), "process.args"),
        (serde_json::json!({"env": ["NOEQUALS"]}), "process.env"),
        (serde_json::json!({"env": ["=x"]}), "process.env"),
        (serde_json::json!({"cwd": "relative"}), "process.cwd"),
    ] {
        let mut j = base();
        for (k, v) in patch.as_object().unwrap() {
            j["process"][k] = v.clone();
        }
        let e = spec(j).unwrap_err().to_string();
        assert!(e.starts_with(field), "{e}");
    }
    let mut j = base();
    j.as_object_mut().unwrap().remove("process");
    assert_eq!(spec(j).unwrap_err().to_string(), "process: missing");
}

#[test]
fn terminals_get_the_console_size_or_a_default() {
    let mut j = base();
    j["process"]["terminal"] = true.into();
    assert_eq!(
        spec(j.clone()).unwrap().process.tty,
        Some(WindowSize { rows: 24, cols: 80 })
    );
    j["process"]["consoleSize"] = serde_json::json!({"height": 50, "width": 132});
    assert_eq!(
        spec(j).unwrap().process.tty,
        Some(WindowSize {
            rows: 50,
            cols: 132
        })
    );
}

#[test]
fn exec_specs_parse_and_bad_ones_are_named() {
    let p = exec_process(br#"{"args":["ls","-l"],"cwd":"/","user":{"uid":0,"gid":0}}"#).unwrap();
    assert_eq!(p.args, ["ls", "-l"]);
    assert!(
        exec_process(b"{")
            .unwrap_err()
            .to_string()
            .starts_with("exec process spec:")
    );
}

#[test]
fn bundles_without_config_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = ContainerSpec::read(dir.path()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
}

proptest! {
    #[test]
    fn exec_specs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = exec_process(&bytes);
    }
}
