"""A small CRI client for the containerd tests (crictl has no Debian package).

Usage: cri_client.py SOCKET COMMAND [ARGS...]; prints one JSON object per call.
  version
  run-pod NAME HANDLER LOG_DIR [ANNOTATION=VALUE...]   -> {"id": POD_ID}
  create POD_ID POD_NAME POD_LOG_DIR NAME IMAGE LOG_PATH CMD...   -> {"id": CONTAINER_ID}
  start ID | status ID | stop-pod POD_ID | remove-pod POD_ID
The protos are compiled at start from cri.proto beside this file (grpcio-tools).
"""

import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def load(out):
    rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--grpc_python_out={out}", "cri.proto"])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    return importlib.import_module("cri_pb2"), importlib.import_module("cri_pb2_grpc")


def pod_config(pb, name, log_dir, annotations):
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=name + "-uid", namespace="default"),
        hostname=name,
        log_directory=log_dir,
        annotations=annotations,
        # Host network: no CNI plugin is needed on the test machine.
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE)
            )
        ),
    )


def main():
    sock, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    with tempfile.TemporaryDirectory(prefix="cri-py-") as out:
        run(sock, cmd, args, *load(out))


def run(sock, cmd, args, pb, rpc):
    stub = rpc.RuntimeServiceStub(grpc.insecure_channel("unix://" + sock))
    t = 600
    if cmd == "version":
        r = stub.Version(pb.VersionRequest(version="v1"), timeout=t)
        out = {"runtime": r.runtime_name, "version": r.runtime_version}
    elif cmd == "run-pod":
        name, handler, log_dir = args[:3]
        ann = dict(a.split("=", 1) for a in args[3:])
        r = stub.RunPodSandbox(
            pb.RunPodSandboxRequest(config=pod_config(pb, name, log_dir, ann), runtime_handler=handler),
            timeout=t,
        )
        out = {"id": r.pod_sandbox_id}
    elif cmd == "create":
        pod_id, pod_name, pod_log_dir, name, image, log_path = args[:6]
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=image),
            command=args[6:],
            log_path=log_path,
        )
        r = stub.CreateContainer(
            pb.CreateContainerRequest(
                pod_sandbox_id=pod_id,
                config=config,
                sandbox_config=pod_config(pb, pod_name, pod_log_dir, {}),
            ),
            timeout=t,
        )
        out = {"id": r.container_id}
    elif cmd == "start":
        stub.StartContainer(pb.StartContainerRequest(container_id=args[0]), timeout=t)
        out = {}
    elif cmd == "status":
        s = stub.ContainerStatus(pb.ContainerStatusRequest(container_id=args[0]), timeout=t).status
        out = {
            "state": pb.ContainerState.Name(s.state),
            "exit_code": s.exit_code,
            "reason": s.reason,
            "message": s.message,
        }
    elif cmd == "stop-pod":
        stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=args[0]), timeout=t)
        out = {}
    elif cmd == "remove-pod":
        stub.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=args[0]), timeout=t)
        out = {}
    else:
        sys.exit(f"unknown command {cmd!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        sys.exit(f"{sys.argv[2]}: {e.code().name}: {e.details()}")
