"""Kubernetes Pod Security Standards, "restricted" profile, as a checker for the pod specs
in `examples/deploy`. The rules are those the Kubernetes documentation lists for the
baseline and restricted levels (Pod Security Standards, "Restricted" and "Baseline"
tables, policy version 1.30): what the `restricted` admission label would refuse. Plus
two of our own for the deployment examples: a read-only root filesystem and no service
account token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SECCOMP = {"RuntimeDefault", "Localhost"}
BASELINE_CAPABILITIES = {"NET_BIND_SERVICE"}


def pod_specs(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each pod template of a workload document, named."""
    kind = document.get("kind")
    name = f"{kind}/{document.get('metadata', {}).get('name')}"
    spec = document.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        yield name, spec["template"]["spec"]
    elif kind == "CronJob":
        yield name, spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        yield name, spec


def violations(pod: dict[str, Any]) -> list[str]:
    found: list[str] = []
    context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(f"{flag} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume.get('name')} uses {sorted(kinds - ALLOWED_VOLUMES)}")
    if pod.get("automountServiceAccountToken") is not False:
        found.append("automountServiceAccountToken is not false")
    containers = [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]
    for container in containers:
        name = container.get("name")
        own = container.get("securityContext") or {}
        if own.get("privileged"):
            found.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        non_root = own.get("runAsNonRoot", context.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", context.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser is 0")
        seccomp = (own.get("seccompProfile") or context.get("seccompProfile") or {}).get("type")
        if seccomp not in SAFE_SECCOMP:
            found.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
        capabilities = own.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities do not drop ALL")
        added = set(capabilities.get("add") or []) - BASELINE_CAPABILITIES
        if added:
            found.append(f"{name}: adds capabilities {sorted(added)}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{name}: hostPort {port['hostPort']}")
        if own.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
    return found
