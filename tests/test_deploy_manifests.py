"""Offline checks of deploy/: nothing here needs Docker, a cluster or the network.

* Every Kubernetes manifest of ``deploy/k8s`` validates against the Kubernetes JSON schemas that the
  ``kubernetes-validate`` package ships (strict: an unknown field is an error).
* What a schema cannot see: Service selectors and target ports reach a Deployment's pods, probes
  name declared container ports, the HPAs scale existing Deployments that request CPU, and every
  ``INFERSCALE_*_ADDRESS`` (and Triton, and the OTLP endpoint) names an existing Service and port,
  which routes to the port the addressed service listens on.
* ``deploy/compose.yaml``: depends_on names defined services, mounted files exist in the
  repository, images are pinned, addresses name services and their listening ports.
* The Grafana dashboard parses and queries only metrics that the monitor (or Triton) exposes.

Each check is a function returning a list of problems, so the tests at the end can break a copy of
a manifest and see the check catch it.
"""

from __future__ import annotations

import copy
import functools
import json
import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_CPU = DEPLOY / "compose.cpu.yaml"
SETTINGS_ENV = DEPLOY / "settings.env"
# Where deploy/build-images.sh puts the wheelhouses it resolves on the host, in the build context.
BUILD_OUTPUTS = "build/wheels/"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "inferscale.json"
GRAFANA_DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
GRAFANA_DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"

# The Kubernetes version the manifests are validated for (one that kubernetes-validate bundles).
KUBERNETES_VERSION = "1.30"
NAMESPACE = "inferscale"
SERVICES = ("router", "orchestrator", "cache", "monitor")
# Services with several replicas, whose callers balance over every pod.
BALANCED = ("orchestrator", "cache")
AUTOSCALED = {"router", "orchestrator"}

# The metric names the monitor exposes (services/monitor/metrics.py); dashboards use no other.
MONITOR_METRICS = frozenset(
    {
        "inferscale_events_recorded_total",
        "inferscale_events_dropped_total",
        "inferscale_requests_total",
        "inferscale_request_errors_total",
        "inferscale_request_compute_cost_total",
        "inferscale_request_latency_seconds_bucket",
        "inferscale_request_latency_seconds_sum",
        "inferscale_request_latency_seconds_count",
        "inferscale_steps_total",
        "inferscale_step_compute_cost_total",
        "inferscale_step_mean_confidence",
        "inferscale_step_latency_seconds_bucket",
        "inferscale_step_latency_seconds_sum",
        "inferscale_step_latency_seconds_count",
        "inferscale_cache_lookups_total",
        "inferscale_cache_audits_total",
        "inferscale_cache_entries",
        "inferscale_cache_bytes",
        "inferscale_cache_evictions_total",
        "inferscale_cache_compute_saved_total",
        "inferscale_triton_compute_seconds_total",
        "inferscale_triton_inferences_total",
        "inferscale_model_accuracy",
        "inferscale_model_expected_calibration_error",
        "inferscale_model_tokens_total",
    }
)
# Triton's own metrics (its /metrics on 8002) that a dashboard may query.
TRITON_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_pending_request_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_gpu_utilization",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_gpu_power_limit",
        "nv_energy_consumption",
        "nv_cpu_utilization",
        "nv_cpu_memory_total_bytes",
        "nv_cpu_memory_used_bytes",
    }
)
INFERSCALE_METRIC = re.compile(r"inferscale_[a-z_]+")
TRITON_METRIC = re.compile(r"nv_[a-z_]+")
ADDRESS_VARIABLE = re.compile(r"INFERSCALE_([A-Z]+)_ADDRESS")
SETTING = re.compile(r"INFERSCALE_[A-Z][A-Z0-9_]*[A-Z0-9]")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


# --- loading -------------------------------------------------------------------------------------


@functools.cache
def _k8s_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return tuple(docs)


def k8s_documents() -> list[dict[str, Any]]:
    """Every Kubernetes object of deploy/k8s (a fresh copy each call, free to break)."""
    return copy.deepcopy([doc for _, doc in _k8s_documents()])


@functools.cache
def _compose(path: pathlib.Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def compose(path: pathlib.Path = COMPOSE) -> dict[str, Any]:
    return copy.deepcopy(_compose(path))


def settings_env() -> dict[str, str]:
    """deploy/settings.env: the settings every platform gives the services."""
    lines = (line.strip() for line in SETTINGS_ENV.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def known_settings() -> set[str]:
    """The INFERSCALE_* variables the code names, and each service's _LISTEN and _ADDRESS."""
    names = {f"INFERSCALE_{s.upper()}_{kind}" for s in SERVICES for kind in ("LISTEN", "ADDRESS")}
    for path in [
        *ROOT.glob("services/**/*.py"),
        *ROOT.glob("inferscale/*.py"),
        *ROOT.glob("inferscale/triton/*.py"),
    ]:
        names.update(SETTING.findall(path.read_text()))
    return names


# --- helpers -------------------------------------------------------------------------------------


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container_ports(deployment: dict[str, Any]) -> dict[str | int, int]:
    """Each container port, by number and by name, to its number."""
    ports: dict[str | int, int] = {}
    for container in containers(deployment):
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def split_host_port(address: str) -> tuple[str, int]:
    """The host and port of "host:port", or of a gRPC target "dns:///host:port"."""
    host, _, port = address.removeprefix("dns:///").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def container_env(
    container: dict[str, Any], config_maps: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """The literal environment of a container: envFrom ConfigMaps first, then env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and ref["name"] in config_maps:
            prefix = source.get("prefix", "")
            env.update(
                {prefix + k: v for k, v in (config_maps[ref["name"]].get("data") or {}).items()}
            )
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def image_problems(image: str, where: str) -> list[str]:
    """An image must name a tag (or a digest) other than latest."""
    if "@sha256:" in image:
        return []
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return [f"{where}: image {image!r} has no tag"]
    if last.rsplit(":", 1)[1] in ("", "latest"):
        return [f"{where}: image {image!r} uses the latest tag"]
    return []


def listen_port(deployment: dict[str, Any], service: str) -> int | None:
    for container in containers(deployment):
        for var in container.get("env", []):
            if var["name"] == f"INFERSCALE_{service.upper()}_LISTEN":
                return split_host_port(var["value"])[1]
    return None


# --- Kubernetes checks ---------------------------------------------------------------------------


def schema_problems(doc: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{name_of(doc)}: {path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{name_of(doc)}: {exc.message}"]
    return []


def namespace_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    if NAMESPACE not in of_kind(docs, "Namespace"):
        problems.append(f"no Namespace {NAMESPACE}")
    for doc in docs:
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{name_of(doc)}: namespace is not {NAMESPACE}")
    seen: set[str] = set()
    for doc in docs:
        if name_of(doc) in seen:
            problems.append(f"{name_of(doc)} is defined twice")
        seen.add(name_of(doc))
    return problems


def deployment_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Selectors, probes, resources, images and references to ConfigMaps, Secrets and claims."""
    problems = []
    config_maps = of_kind(docs, "ConfigMap")
    claims = of_kind(docs, "PersistentVolumeClaim")
    for name, dep in of_kind(docs, "Deployment").items():
        where = f"Deployment/{name}"
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        selector = dep["spec"]["selector"].get("matchLabels", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{where}: selector {selector} does not match its pod labels {labels}")
        ports = container_ports(dep)
        for container in containers(dep):
            cwhere = f"{where} container {container['name']}"
            problems += image_problems(container.get("image", ""), cwhere)
            for probe_name in PROBES:
                probe = container.get(probe_name)
                if probe is None:
                    continue
                for handler in ("grpc", "httpGet", "tcpSocket"):
                    if handler in probe and probe[handler]["port"] not in ports:
                        problems.append(
                            f"{cwhere}: {probe_name} port {probe[handler]['port']!r} "
                            "is not a declared containerPort"
                        )
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        problems.append(f"{cwhere}: no {kind}.{resource}")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and ref["name"] not in config_maps and not ref.get("optional"):
                    problems.append(f"{cwhere}: envFrom names no ConfigMap {ref['name']!r}")
        for volume in dep["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
                problems.append(f"{where}: volume {volume['name']} names no ConfigMap")
            if (
                "persistentVolumeClaim" in volume
                and volume["persistentVolumeClaim"]["claimName"] not in claims
            ):
                problems.append(f"{where}: volume {volume['name']} names no PersistentVolumeClaim")
    return problems


def service_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every Service selects a Deployment's pods and targets ports those pods declare."""
    problems = []
    deployments = of_kind(docs, "Deployment")
    for name, svc in of_kind(docs, "Service").items():
        selector = svc["spec"].get("selector") or {}
        matching = [
            dep
            for dep in deployments.values()
            if selector
            and all(
                dep["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                for k, v in selector.items()
            )
        ]
        if not matching:
            problems.append(f"Service/{name}: selector {selector} matches no Deployment's pods")
            continue
        for dep in matching:
            ports = container_ports(dep)
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if target not in ports:
                    problems.append(
                        f"Service/{name}: port {port['port']} targets {target!r}, "
                        f"not a containerPort of Deployment/{dep['metadata']['name']}"
                    )
    return problems


def service_port_target(
    docs: list[dict[str, Any]], service: str, port: int
) -> tuple[dict[str, Any], int] | None:
    """The Deployment behind Service ``service`` and the container port its ``port`` reaches."""
    svc = of_kind(docs, "Service").get(service)
    if svc is None:
        return None
    selector = svc["spec"].get("selector") or {}
    for sp in svc["spec"]["ports"]:
        if sp["port"] != port:
            continue
        for dep in of_kind(docs, "Deployment").values():
            labels = dep["spec"]["template"]["metadata"].get("labels", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                target = container_ports(dep).get(sp.get("targetPort", port))
                if target is not None:
                    return dep, target
    return None


def address_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Addresses in the environment name Services and ports that reach the addressed listener."""
    problems = []
    config_maps = of_kind(docs, "ConfigMap")
    deployments = of_kind(docs, "Deployment")
    settings = known_settings()
    for dep_name, dep in deployments.items():
        for container in containers(dep):
            where = f"Deployment/{dep_name} container {container['name']}"
            env = container_env(container, config_maps)
            for var, value in env.items():
                if var.startswith("INFERSCALE_") and var not in settings:
                    problems.append(f"{where}: {var} is no setting the code reads")
                addressed = ADDRESS_VARIABLE.fullmatch(var)
                if addressed:
                    if value == "off":
                        continue
                    targets = [(value, addressed.group(1).lower())]
                elif var == "INFERSCALE_TRITON_URL":
                    targets = [(url.strip(), "triton") for url in value.split(",")]
                elif var == "OTEL_EXPORTER_OTLP_ENDPOINT":
                    parts = urlsplit(value)
                    targets = [(f"{parts.hostname}:{parts.port}", None)]
                else:
                    continue
                for address, expected in targets:
                    try:
                        host, port = split_host_port(address)
                    except ValueError as exc:
                        problems.append(f"{where}: {var}: {exc}")
                        continue
                    labels = host.split(".")
                    service = labels[0]
                    if len(labels) > 1 and labels[1] != NAMESPACE:
                        problems.append(f"{where}: {var}={value} is outside namespace {NAMESPACE}")
                    if expected is not None and service != expected:
                        problems.append(
                            f"{where}: {var}={value} names Service {service!r}, not {expected!r}"
                        )
                    reached = service_port_target(docs, service, port)
                    if reached is None:
                        problems.append(
                            f"{where}: {var}={value}: no Service {service!r} with port {port}"
                        )
                        continue
                    target_dep, container_port = reached
                    if addressed:
                        listen = listen_port(target_dep, service)
                        if listen != container_port:
                            problems.append(
                                f"{where}: {var}={value} reaches port {container_port} but "
                                f"{service} listens on {listen}"
                            )
    return problems


def inferscale_service_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Each of the four services: its command, listen port, native gRPC probes on that port."""
    problems = []
    deployments = of_kind(docs, "Deployment")
    for service in SERVICES:
        dep = deployments.get(service)
        if dep is None:
            problems.append(f"no Deployment/{service}")
            continue
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        if container.get("command") != ["python", "-m", f"services.{service}.server"]:
            problems.append(
                f"Deployment/{service}: command is not python -m services.{service}.server"
            )
        listen = listen_port(dep, service)
        if listen is None:
            problems.append(f"Deployment/{service}: no INFERSCALE_{service.upper()}_LISTEN")
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = container.get(probe_name, {})
            if probe.get("grpc", {}).get("port") != listen:
                problems.append(
                    f"Deployment/{service}: {probe_name} is not a gRPC probe on {listen}"
                )
        if service not in of_kind(docs, "Service"):
            problems.append(f"no Service/{service}")
    return problems


def hpa_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    deployments = of_kind(docs, "Deployment")
    targets = set()
    for name, hpa in of_kind(docs, "HorizontalPodAutoscaler").items():
        ref = hpa["spec"]["scaleTargetRef"]
        targets.add(ref["name"])
        if (
            ref.get("kind") != "Deployment"
            or ref.get("apiVersion") != "apps/v1"
            or ref["name"] not in deployments
        ):
            problems.append(
                f"HorizontalPodAutoscaler/{name}: targets no existing Deployment ({ref})"
            )
            continue
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            problems.append(f"HorizontalPodAutoscaler/{name}: minReplicas > maxReplicas")
        dep = deployments[ref["name"]]
        if "replicas" in dep["spec"]:
            problems.append(f"Deployment/{ref['name']}: sets replicas, which its HPA owns")
        for metric in hpa["spec"].get("metrics", []):
            if metric["type"] == "Resource":
                resource = metric["resource"]["name"]
                for container in dep["spec"]["template"]["spec"]["containers"]:
                    if resource not in container.get("resources", {}).get("requests", {}):
                        problems.append(
                            f"HorizontalPodAutoscaler/{name}: scales on {resource} but "
                            f"Deployment/{ref['name']} requests none"
                        )
    if targets != AUTOSCALED:
        problems.append(f"HPAs scale {sorted(targets)}, expected {sorted(AUTOSCALED)}")
    return problems


def triton_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Triton: a GPU, GPU nodes, the model repository on a claim, HTTP health probes on 8000."""
    dep = of_kind(docs, "Deployment").get("triton")
    if dep is None:
        return ["no Deployment/triton"]
    problems = []
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    if str(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")) != "1":
        problems.append("Deployment/triton: limits nvidia.com/gpu is not 1")
    if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
        problems.append("Deployment/triton: no toleration for nvidia.com/gpu")
    if not any(k.startswith("nvidia.com/gpu") for k in pod.get("nodeSelector", {})):
        problems.append("Deployment/triton: no nodeSelector for GPU nodes")
    for probe_name, path in (
        ("livenessProbe", "/v2/health/live"),
        ("readinessProbe", "/v2/health/ready"),
    ):
        http = container.get(probe_name, {}).get("httpGet", {})
        if http.get("path") != path or container_ports(dep).get(http.get("port")) != 8000:
            problems.append(f"Deployment/triton: {probe_name} is not GET {path} on 8000")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    claimed = [v["name"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v]
    args = container.get("args", [])
    repository = next(
        (a.split("=", 1)[1] for a in args if a.startswith("--model-repository=")), None
    )
    if not any(mounts.get(v) == repository for v in claimed):
        problems.append(f"Deployment/triton: the model repository {repository} is not on a claim")
    if "--model-control-mode=poll" not in args:
        problems.append("Deployment/triton: not --model-control-mode=poll")
    return problems


def otel_configmap_problems(docs: list[dict[str, Any]]) -> list[str]:
    config_map = of_kind(docs, "ConfigMap").get("otel-collector-config")
    if config_map is None:
        return ["no ConfigMap/otel-collector-config"]
    in_k8s = yaml.safe_load(config_map["data"]["config.yaml"])
    if in_k8s != yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text()):
        return ["ConfigMap/otel-collector-config differs from deploy/otel-collector.yaml"]
    return collector_problems(in_k8s, set(of_kind(docs, "Service")))


def kustomization_problems(kustomization: dict[str, Any], docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    listed = kustomization.get("resources", [])
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    if sorted(listed) != present:
        problems.append(f"kustomization resources {sorted(listed)} are not the manifests {present}")
    if kustomization.get("namespace") != NAMESPACE:
        problems.append(f"kustomization namespace is not {NAMESPACE}")
    used = {
        c["image"].rsplit(":", 1)[0]
        for d in of_kind(docs, "Deployment").values()
        for c in containers(d)
    }
    for image in kustomization.get("images", []):
        if image["name"] not in used:
            problems.append(f"kustomization image {image['name']} is used by no container")
    return problems


def balancing_problems(docs: list[dict[str, Any]]) -> list[str]:
    """The replicated services are headless Services, and their callers address them as dns:/// targets.

    A ClusterIP Service is one virtual IP: a gRPC connection to it stays on one pod, so new
    replicas would take no calls from callers already connected.
    """
    problems = []
    settings = of_kind(docs, "ConfigMap")["inferscale-settings"]["data"]
    for name in BALANCED:
        service = of_kind(docs, "Service").get(name)
        if service is None or service["spec"].get("clusterIP") != "None":
            problems.append(f"Service/{name} is not headless (clusterIP: None)")
        address = settings.get(f"INFERSCALE_{name.upper()}_ADDRESS", "")
        if not address.startswith("dns:///"):
            problems.append(f"INFERSCALE_{name.upper()}_ADDRESS={address} is not a dns:/// target")
    return problems


def secret_env(container: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """The container's variables set from a Secret: name -> (secret, optional)."""
    refs = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[var["name"]] = (ref["name"], bool(ref.get("optional")))
    return refs


def credential_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Each service gets the service token, and Triton and the orchestrator one repository key, from required Secrets."""
    problems = []
    deployments = of_kind(docs, "Deployment")
    for name in SERVICES:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        if secret_env(container).get("INFERSCALE_SERVICE_TOKEN") != ("inferscale-service", False):
            problems.append(f"Deployment/{name}: INFERSCALE_SERVICE_TOKEN is not from the required Secret inferscale-service")
    for name in ("triton", "orchestrator"):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        if secret_env(container).get("INFERSCALE_TRITON_REPOSITORY_KEY") != ("inferscale-triton-repository", False):
            problems.append(f"Deployment/{name}: INFERSCALE_TRITON_REPOSITORY_KEY is not from the required Secret")
    (triton,) = deployments["triton"]["spec"]["template"]["spec"]["containers"]
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        expected = f"{flag}=model-repository:inferscale-repository-key=$(INFERSCALE_TRITON_REPOSITORY_KEY)"
        if expected not in triton.get("args", []):
            problems.append(f"Deployment/triton: no {expected}")
    return problems


# --- network policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Something that sends or receives traffic: a Deployment's pods, or a stand-in for pods elsewhere."""

    name: str
    namespace: str
    labels: dict[str, str]
    # (port, name, protocol) it listens on.
    ports: tuple[tuple[int, str, str], ...] = ()


# Stand-ins for pods outside the namespace: any client (also any server on the internet, on 443),
# a Prometheus, and the cluster DNS.
OUTSIDE = (
    Peer("client", "elsewhere", {}, ((443, "https", "TCP"),)),
    Peer("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    Peer("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, ((53, "dns", "UDP"), (53, "dns-tcp", "TCP"))),
)
# The paths of the design (DESIGN.md, deploy/README.md "Network policy"): (from, to, "port/protocol").
TELEMETRY_SOURCES = ("router", "orchestrator", "cache", "monitor", "triton")
WITH_DNS = ("router", "orchestrator", "cache", "monitor", "triton", "redis", "otel-collector", "jaeger")
DESIGNED_PATHS = frozenset(
    {
        # Clients may be anywhere: whatever lies outside the namespace reaches the router.
        *((outside.name, "router", "50051/TCP") for outside in OUTSIDE),
        ("router", "orchestrator", "50052/TCP"),
        ("router", "cache", "50053/TCP"),
        ("router", "monitor", "50054/TCP"),
        ("orchestrator", "triton", "8001/TCP"),
        ("orchestrator", "cache", "50053/TCP"),
        ("orchestrator", "monitor", "50054/TCP"),
        ("cache", "redis", "6379/TCP"),
        ("cache", "monitor", "50054/TCP"),
        ("monitor", "triton", "8001/TCP"),
        ("prometheus", "monitor", "9464/TCP"),
        ("prometheus", "triton", "8002/TCP"),
        ("otel-collector", "jaeger", "4317/TCP"),
        *((source, "otel-collector", "4318/TCP") for source in TELEMETRY_SOURCES),
        *((source, "kube-dns", f"53/{protocol}") for source in WITH_DNS for protocol in ("UDP", "TCP")),
    }
)


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only; an empty one selects everything) selects ``labels``."""
    if selector and selector.get("matchExpressions"):
        raise ValueError("the check reads matchLabels only; matchExpressions would need reading too")
    return all(labels.get(k) == v for k, v in ((selector or {}).get("matchLabels") or {}).items())


def namespace_labels(docs: list[dict[str, Any]], peer: Peer) -> dict[str, str]:
    declared = of_kind(docs, "Namespace").get(peer.namespace, {}).get("metadata", {}).get("labels", {})
    return {**declared, "kubernetes.io/metadata.name": peer.namespace}


def rule_peer_matches(docs: list[dict[str, Any]], rule_peers: list[dict[str, Any]] | None, peer: Peer) -> bool:
    """Whether a rule's from/to list lets ``peer`` through (a missing or empty list lets everyone)."""
    if not rule_peers:
        return True
    for item in rule_peers:
        if "ipBlock" in item:
            continue  # addresses outside the cluster; none of the peers here
        if "namespaceSelector" in item:
            in_namespace = selects(item["namespaceSelector"], namespace_labels(docs, peer))
        else:
            in_namespace = peer.namespace == NAMESPACE
        if in_namespace and selects(item.get("podSelector"), peer.labels):
            return True
    return False


def rule_port_matches(rule_ports: list[dict[str, Any]] | None, port: tuple[int, str, str]) -> bool:
    if not rule_ports:
        return True
    number, name, protocol = port
    for item in rule_ports:
        if item.get("protocol", "TCP") != protocol:
            continue
        wanted = item.get("port")
        if wanted is None or wanted == name or (
            isinstance(wanted, int) and wanted <= number <= item.get("endPort", wanted)
        ):
            return True
    return False


def allows(docs: list[dict[str, Any]], subject: Peer, direction: str, other: Peer, port: tuple[int, str, str]) -> bool:
    """Whether the policies let ``subject`` send to (Egress) or receive from (Ingress) ``other`` on ``port``."""
    if subject.namespace != NAMESPACE:
        return True  # the namespace's policies do not hold pods elsewhere
    policies = [
        p
        for p in of_kind(docs, "NetworkPolicy").values()
        if direction in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not policies:
        return True  # a pod no policy isolates takes and sends anything
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return any(
        rule_peer_matches(docs, rule.get(peers_key), other) and rule_port_matches(rule.get("ports"), port)
        for p in policies
        for rule in p["spec"].get(key) or []
    )


def peers(docs: list[dict[str, Any]]) -> list[Peer]:
    inside = [
        Peer(
            name,
            NAMESPACE,
            dep["spec"]["template"]["metadata"].get("labels", {}),
            tuple(
                (port["containerPort"], port.get("name", ""), port.get("protocol", "TCP"))
                for container in containers(dep)
                for port in container.get("ports", [])
            ),
        )
        for name, dep in of_kind(docs, "Deployment").items()
    ]
    return [*inside, *OUTSIDE]


def allowed_paths(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (from, to, "port/protocol") with an end in the namespace that the policies let through, both ends considered."""
    everyone = peers(docs)
    return {
        (source.name, target.name, f"{port[0]}/{port[2]}")
        for source in everyone
        for target in everyone
        if source is not target and NAMESPACE in (source.namespace, target.namespace)
        for port in target.ports
        if allows(docs, source, "Egress", target, port) and allows(docs, target, "Ingress", source, port)
    }


def network_policy_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every Deployment is isolated both ways and named by a policy of its own; the paths allowed are the design's."""
    problems = []
    policies = of_kind(docs, "NetworkPolicy")
    default_deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not default_deny:
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for name, dep in of_kind(docs, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        if not any(p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], labels) for p in policies.values()):
            problems.append(f"Deployment/{name}: no NetworkPolicy of its own")
    allowed = allowed_paths(docs)
    for path in sorted(allowed - DESIGNED_PATHS):
        problems.append(f"the network policies allow {path[0]} -> {path[1]} {path[2]}, which the design does not")
    for path in sorted(DESIGNED_PATHS - allowed):
        problems.append(f"the network policies block {path[0]} -> {path[1]} {path[2]}, a path of the design")
    return problems


# --- compose checks ------------------------------------------------------------------------------


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def compose_listen_port(service: dict[str, Any], name: str) -> int | None:
    value = compose_environment(service).get(f"INFERSCALE_{name.upper()}_LISTEN")
    return split_host_port(value)[1] if value else None


def bind_sources(service: dict[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                yield source
        elif volume.get("type") == "bind":
            yield volume["source"]


def compose_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    services: dict[str, dict[str, Any]] = spec.get("services", {})
    volumes = spec.get("volumes") or {}
    for name, service in services.items():
        where = f"compose service {name}"
        depends = service.get("depends_on", [])
        for dependency in depends if isinstance(depends, list) else depends.keys():
            if dependency not in services:
                problems.append(f"{where}: depends_on names no service {dependency!r}")
        if "image" not in service:
            problems.append(f"{where}: no image")
        else:
            problems += image_problems(service["image"], where)
        build = service.get("build")
        if build is not None:
            context = DEPLOY / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            if not context.is_dir() or not dockerfile.is_file():
                problems.append(f"{where}: build context or Dockerfile missing ({dockerfile})")
        for source in bind_sources(service):
            path = (DEPLOY / source).resolve()
            if not path.exists():
                problems.append(f"{where}: mounts {source}, which does not exist")
            elif not path.is_relative_to(ROOT):
                problems.append(f"{where}: mounts {source}, outside the repository")
        for volume in service.get("volumes", []):
            named = (
                isinstance(volume, str) and not volume.startswith((".", "/", "~")) and ":" in volume
            )
            if named and volume.split(":", 1)[0] not in volumes:
                problems.append(
                    f"{where}: named volume {volume.split(':', 1)[0]!r} is not declared"
                )
        for var, value in compose_environment(service).items():
            addressed = ADDRESS_VARIABLE.fullmatch(var)
            if addressed and value != "off":
                host, port = split_host_port(value)
                target = addressed.group(1).lower()
                if host != target or host not in services:
                    problems.append(f"{where}: {var}={value} does not name service {target}")
                elif compose_listen_port(services[host], host) != port:
                    problems.append(
                        f"{where}: {var}={value} but {host} listens on "
                        f"{compose_listen_port(services[host], host)}"
                    )
            elif var == "INFERSCALE_TRITON_URL":
                for url in value.split(","):
                    host, port = split_host_port(url.strip())
                    if host not in services or port != 8001:
                        problems.append(
                            f"{where}: {var}={value} is not a service's Triton gRPC port"
                        )
            elif var == "OTEL_EXPORTER_OTLP_ENDPOINT" and urlsplit(value).hostname not in services:
                problems.append(f"{where}: {var}={value} names no service")
    for name in SERVICES:
        service = services.get(name)
        if service is None:
            problems.append(f"compose has no service {name}")
            continue
        port = compose_listen_port(service, name)
        test = service.get("healthcheck", {}).get("test", [])
        if (
            port is None
            or not any("grpc_health" in str(part) for part in test)
            or str(port) not in map(str, test)
        ):
            problems.append(
                f"compose service {name}: no gRPC health check on its listen port {port}"
            )
        if service.get("command") != ["python", "-m", f"services.{name}.server"]:
            problems.append(
                f"compose service {name}: command is not python -m services.{name}.server"
            )
    return problems


def triton_compose_problems(spec: dict[str, Any]) -> list[str]:
    triton = spec["services"].get("triton")
    if triton is None:
        return ["compose has no service triton"]
    problems = []
    command = " ".join(triton.get("command", []))
    for flag in (
        "--model-control-mode=poll",
        "--trace-config mode=opentelemetry",
        "--trace-config opentelemetry,url=otel-collector:4318/v1/traces",
        "--trace-config rate=1",
        "--trace-config level=TIMESTAMPS",
        "--grpc-restricted-protocol=model-repository:inferscale-repository-key=${INFERSCALE_TRITON_REPOSITORY_KEY:?",
        "--http-restricted-api=model-repository:inferscale-repository-key=${INFERSCALE_TRITON_REPOSITORY_KEY:?",
    ):
        if flag not in command:
            problems.append(f"compose triton: command lacks {flag}")
    devices = (
        triton.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    )
    if not any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices):
        problems.append("compose triton: reserves no nvidia GPU")
    if not any(source.rstrip("/").endswith("model_repository") for source in bind_sources(triton)):
        problems.append("compose triton: model_repository is not mounted")
    return problems


def collector_problems(config: dict[str, Any], hosts: set[str]) -> list[str]:
    """Pipelines use defined components; exporters send to known hosts."""
    problems = []
    for pipeline, parts in config["service"]["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            for component in parts.get(section, []):
                if component not in (config.get(section) or {}):
                    problems.append(
                        f"collector pipeline {pipeline}: {section} {component!r} is not defined"
                    )
    for extension in config["service"].get("extensions", []):
        if extension not in (config.get("extensions") or {}):
            problems.append(f"collector extension {extension!r} is not defined")
    for name, exporter in (config.get("exporters") or {}).items():
        endpoint = (exporter or {}).get("endpoint")
        if endpoint:
            host = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").hostname
            if host not in hosts:
                problems.append(f"collector exporter {name}: {endpoint} names no known host")
    return problems


def prometheus_problems(config: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    problems = []
    services = spec["services"]
    targets = {
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    }
    monitor_port = compose_environment(services["monitor"]).get("INFERSCALE_MONITOR_METRICS_PORT")
    for required in (f"monitor:{monitor_port}", "triton:8002"):
        if required not in targets:
            problems.append(f"prometheus scrapes no {required}")
    for target in targets:
        host, _ = split_host_port(target)
        if host not in services and host != "localhost":
            problems.append(f"prometheus target {target} names no compose service")
    return problems


def dockerfile_problems(path: pathlib.Path) -> list[str]:
    """FROM images are pinned; COPY sources (relative to the repository root, the context) exist,
    or are wheelhouses that deploy/build-images.sh puts into the context."""
    problems = []
    lines = re.sub(r"\\\n", " ", path.read_text()).splitlines()
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM":
            problems += image_problems(words[1], path.name)
        if words[0].upper() in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
            for source in [w for w in words[1:-1] if not w.startswith("--")]:
                if source.startswith(BUILD_OUTPUTS):
                    if BUILD_OUTPUTS not in (DEPLOY / "build-images.sh").read_text():
                        problems.append(f"{path.name}: {source}: deploy/build-images.sh makes no {BUILD_OUTPUTS}")
                elif not (ROOT / source).exists():
                    problems.append(
                        f"{path.name}: {words[0]} {source}: no such path in the repository"
                    )
    return problems


# --- compose.cpu.yaml checks: one CPU host, every container on the host's network ---------------

VARIABLE_DEFAULT = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")
# How many containers of compose.cpu.yaml run each of the suite's services and Triton.
CPU_REPLICAS = {"router": 2, "orchestrator": 1, "cache": 2, "monitor": 1, "triton": 2}
RESTART_POLICIES = ("always", "unless-stopped", "on-failure")


def with_defaults(value: str) -> str:
    """``value`` with each ``${VARIABLE:-default}`` read as an unset variable reads: its default."""
    return VARIABLE_DEFAULT.sub(lambda match: match.group(1), value)


def loopback_ports(target: str) -> list[int]:
    """The ports of a gRPC target on this host: "127.0.0.1:P" or "ipv4:127.0.0.1:P,127.0.0.1:Q"."""
    ports = []
    for address in with_defaults(target).removeprefix("ipv4:").split(","):
        host, port = split_host_port(address.strip())
        if host != "127.0.0.1":
            raise ValueError(f"{target!r} names {host}, not 127.0.0.1")
        ports.append(port)
    return ports


def kind_of(name: str) -> str:
    """The suite's service (or triton) that a compose service runs: router-a and router-b run router."""
    kind, _, replica = name.rpartition("-")
    return kind if kind and len(replica) == 1 else name


def flag_value(command: list[str], flag: str) -> str | None:
    """The value of ``--flag=value`` in a command, defaults read."""
    for word in command:
        if word.startswith(f"{flag}="):
            return with_defaults(word.split("=", 1)[1])
    return None


def cpu_compose_problems(spec: dict[str, Any]) -> list[str]:
    """Host network, restart policies, replicas, gRPC health checks, and addresses that reach every replica."""
    problems = []
    services: dict[str, dict[str, Any]] = spec.get("services", {})
    replicas: dict[str, list[str]] = {}
    listens: dict[str, int] = {}
    bound: list[int] = []
    for name, service in services.items():
        where = f"compose.cpu service {name}"
        kind = kind_of(name)
        replicas.setdefault(kind, []).append(name)
        if service.get("network_mode") != "host":
            problems.append(f"{where}: not on the host network")
        if service.get("restart") not in RESTART_POLICIES:
            problems.append(f"{where}: no restart policy")
        problems += image_problems(service.get("image", ""), where)
        depends = service.get("depends_on", [])
        for dependency in depends if isinstance(depends, list) else depends.keys():
            if dependency not in services:
                problems.append(f"{where}: depends_on names no service {dependency!r}")
        for source in bind_sources({"volumes": [with_defaults(v) if isinstance(v, str) else v for v in service.get("volumes", [])]}):
            if not (DEPLOY / source).resolve().exists():
                problems.append(f"{where}: mounts {source}, which does not exist")
        test = [with_defaults(str(part)) for part in service.get("healthcheck", {}).get("test", [])]
        if kind in SERVICES:
            listen = compose_environment(service).get(f"INFERSCALE_{kind.upper()}_LISTEN")
            port = loopback_ports(listen)[0] if listen else None
            if port is None or not any("grpc_health" in part for part in test) or str(port) not in test:
                problems.append(f"{where}: no gRPC health check on its listen port {port}")
            if port is not None:
                listens[name] = port
                bound.append(port)
            if service.get("command") != ["python", "-m", f"services.{kind}.server"]:
                problems.append(f"{where}: command is not python -m services.{kind}.server")
            if service.get("env_file") != SETTINGS_ENV.name:
                problems.append(f"{where}: does not read {SETTINGS_ENV.name}")
        if kind == "triton":
            command = service.get("command", [])
            ports = {flag: flag_value(command, flag) for flag in ("--http-port", "--grpc-port", "--metrics-port")}
            if None in ports.values():
                problems.append(f"{where}: does not set all three of its ports")
                continue
            listens[name] = int(ports["--grpc-port"] or 0)
            bound += [int(port or 0) for port in ports.values()]
            if ports["--http-port"] not in test or "/v2/health/ready" not in " ".join(test):
                problems.append(f"{where}: no readiness check on its HTTP port")
            for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
                if "${INFERSCALE_TRITON_REPOSITORY_KEY:?" not in (flag_value(command, flag) or ""):
                    problems.append(f"{where}: {flag} does not restrict the repository API to the key")
        if name == "monitor":
            bound.append(int(with_defaults(compose_environment(service).get("INFERSCALE_MONITOR_METRICS_PORT", "0"))))
    for kind, count in CPU_REPLICAS.items():
        if len(replicas.get(kind, [])) != count:
            problems.append(f"compose.cpu runs {len(replicas.get(kind, []))} {kind} containers, not {count}")
    duplicates = sorted({port for port in bound if bound.count(port) > 1})
    if duplicates:
        problems.append(f"compose.cpu binds ports {duplicates} more than once on the host network")
    for name, service in services.items():
        for var, value in compose_environment(service).items():
            addressed = ADDRESS_VARIABLE.fullmatch(var)
            kind = addressed.group(1).lower() if addressed else "triton" if var == "INFERSCALE_TRITON_URL" else None
            if kind is None or value == "off":
                continue
            wanted = sorted(listens[replica] for replica in replicas.get(kind, []) if replica in listens)
            try:
                ports = sorted(loopback_ports(value) if addressed else [split_host_port(with_defaults(u).strip())[1] for u in value.split(",")])
            except ValueError as error:
                problems.append(f"compose.cpu service {name}: {var}: {error}")
                continue
            if ports != wanted:
                problems.append(f"compose.cpu service {name}: {var}={value} reaches ports {ports}, but {kind} listens on {wanted}")
    return problems


def cpu_prometheus_problems(config: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Prometheus of compose.cpu.yaml scrapes the monitor and every Triton on their default ports."""
    services = spec["services"]
    targets = {t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    wanted = {f"127.0.0.1:{with_defaults(compose_environment(services['monitor'])['INFERSCALE_MONITOR_METRICS_PORT'])}"}
    wanted |= {
        f"127.0.0.1:{flag_value(service['command'], '--metrics-port')}" for name, service in services.items() if kind_of(name) == "triton"
    }
    return [f"prometheus.cpu.yml scrapes no {target}" for target in sorted(wanted - targets)]


def settings_problems(docs: list[dict[str, Any]], specs: dict[str, dict[str, Any]]) -> list[str]:
    """settings.env names settings the code reads; the ConfigMap holds them all, and no compose
    service of the suite sets one of them otherwise than through settings.env."""
    settings = settings_env()
    known = known_settings()
    problems = [f"settings.env: {var} is read by no code" for var in settings if var.startswith("INFERSCALE_") and var not in known]
    data = of_kind(docs, "ConfigMap")["inferscale-settings"].get("data") or {}
    problems += [
        f"ConfigMap inferscale-settings: {var}={data.get(var)!r}, settings.env says {value!r}"
        for var, value in settings.items()
        if data.get(var) != value
    ]
    for file, spec in specs.items():
        for name, service in spec["services"].items():
            if kind_of(name) not in SERVICES:
                continue
            if service.get("env_file") != SETTINGS_ENV.name:
                problems.append(f"{file} service {name}: does not read {SETTINGS_ENV.name}")
            overridden = sorted(set(compose_environment(service)) & set(settings))
            if overridden:
                problems.append(f"{file} service {name}: sets {overridden} beside settings.env")
    return problems


# --- Grafana checks ------------------------------------------------------------------------------


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p.get("targets", []) if "expr" in t]


def dashboard_problems(board: dict[str, Any], datasource_uids: set[str]) -> list[str]:
    problems = []
    ids = [p["id"] for p in board["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("dashboard panel ids are not unique")
    for panel in board["panels"]:
        where = f"panel {panel.get('title')!r}"
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: wider than the 24-column grid")
        if panel["type"] == "row":
            continue
        if not panel.get("targets") or not all(t.get("expr") for t in panel["targets"]):
            problems.append(f"{where}: a query without expr")
        for ds in [
            panel.get("datasource"),
            *(t.get("datasource") for t in panel.get("targets", [])),
        ]:
            if ds is not None and ds.get("uid") not in datasource_uids:
                problems.append(f"{where}: data source {ds} is not provisioned")
    for expr in exprs(board):
        for metric in INFERSCALE_METRIC.findall(expr):
            if metric not in MONITOR_METRICS:
                problems.append(f"dashboard queries {metric}, which the monitor does not expose")
        for metric in TRITON_METRIC.findall(expr):
            if metric not in TRITON_METRICS:
                problems.append(f"dashboard queries {metric}, which Triton does not expose")
    return problems


def provisioned_datasource_uids() -> set[str]:
    uids = set()
    for path in GRAFANA_DATASOURCES.glob("*.yaml"):
        uids.update(ds["uid"] for ds in yaml.safe_load(path.read_text())["datasources"])
    return uids


# --- tests: Kubernetes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in _k8s_documents()],
    ids=[f"{f}:{name_of(d)}" for f, d in _k8s_documents()],
)
def test_k8s_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    assert schema_problems(doc) == []


def test_k8s_has_every_component() -> None:
    docs = k8s_documents()
    deployments = set(of_kind(docs, "Deployment"))
    assert {*SERVICES, "triton", "redis", "otel-collector"} <= deployments
    assert deployments <= set(of_kind(docs, "Service"))
    assert "inferscale-settings" in of_kind(docs, "ConfigMap")


def test_k8s_objects_are_in_the_inferscale_namespace() -> None:
    assert namespace_problems(k8s_documents()) == []


def test_k8s_deployments_are_consistent() -> None:
    assert deployment_problems(k8s_documents()) == []


def test_k8s_services_select_pods_and_their_ports() -> None:
    assert service_problems(k8s_documents()) == []


def test_k8s_addresses_name_services_that_reach_the_listener() -> None:
    assert address_problems(k8s_documents()) == []


def test_k8s_inferscale_services_probe_their_grpc_port() -> None:
    assert inferscale_service_problems(k8s_documents()) == []


def test_k8s_autoscalers_target_deployments() -> None:
    assert hpa_problems(k8s_documents()) == []


def test_k8s_triton_runs_on_a_gpu_with_the_repository_on_a_claim() -> None:
    assert triton_problems(k8s_documents()) == []


def test_k8s_collector_config_is_compose_config() -> None:
    assert otel_configmap_problems(k8s_documents()) == []


def test_k8s_replicated_services_are_headless_and_addressed_as_dns_targets() -> None:
    assert balancing_problems(k8s_documents()) == []


def test_k8s_tokens_and_the_triton_repository_key_come_from_required_secrets() -> None:
    assert credential_problems(k8s_documents()) == []


def test_k8s_network_policies_cover_every_deployment_and_allow_only_the_designed_paths() -> None:
    assert network_policy_problems(k8s_documents()) == []


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization_problems(kustomization, k8s_documents()) == []


# --- tests: compose, images, collector, Prometheus, Grafana --------------------------------------


def test_compose_is_consistent() -> None:
    assert compose_problems(compose()) == []


def test_compose_triton_is_traced_polled_and_on_a_gpu() -> None:
    assert triton_compose_problems(compose()) == []


@pytest.mark.parametrize(
    "name",
    ["base.Dockerfile", "Dockerfile", "triton-cpu.Dockerfile", "triton.Dockerfile", "redis.Dockerfile", "prometheus.Dockerfile"],
)
def test_dockerfile_pins_its_base_and_copies_existing_paths(name: str) -> None:
    assert dockerfile_problems(DEPLOY / name) == []


def test_cpu_compose_runs_replicas_on_the_host_network_health_checked_and_addressed() -> None:
    assert cpu_compose_problems(compose(COMPOSE_CPU)) == []


def test_cpu_prometheus_scrapes_the_monitor_and_both_tritons() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.cpu.yml").read_text())
    assert cpu_prometheus_problems(config, compose(COMPOSE_CPU)) == []


def test_settings_env_is_the_one_source_of_the_settings_on_every_platform() -> None:
    specs = {"compose.yaml": compose(), "compose.cpu.yaml": compose(COMPOSE_CPU)}
    assert settings_problems(k8s_documents(), specs) == []


def test_collector_config_is_consistent() -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    assert collector_problems(config, set(compose()["services"])) == []


def test_prometheus_scrapes_monitor_and_triton() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert prometheus_problems(config, compose()) == []


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    (provider,) = yaml.safe_load((GRAFANA_DASHBOARD_PROVIDERS / "inferscale.yaml").read_text())[
        "providers"
    ]
    grafana = compose()["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "prometheus" in provisioned_datasource_uids()


def test_dashboard_queries_only_exposed_metrics() -> None:
    assert dashboard_problems(dashboard(), provisioned_datasource_uids()) == []


def test_dashboard_has_the_panels_asked_for() -> None:
    queries = "\n".join(exprs(dashboard()))
    for needle in (
        "rate(inferscale_requests_total",
        "histogram_quantile(0.5, sum by (le, strategy) (rate(inferscale_request_latency_seconds",
        "histogram_quantile(0.99, sum by (le, strategy) (rate(inferscale_request_latency_seconds",
        'inferscale_steps_total{decision="DECISION_ESCALATE"}',
        "histogram_quantile(0.99, sum by (le, model) (rate(inferscale_step_latency_seconds_bucket",
        "rate(inferscale_request_compute_cost_total",
        'inferscale_cache_lookups_total{result="hit"}',
        'inferscale_cache_audits_total{result="false_hit"}',
        "inferscale_cache_bytes",
        "inferscale_events_dropped_total",
    ):
        assert needle in queries


def test_monitor_metric_list_matches_the_monitor() -> None:
    from services.monitor.aggregates import Aggregates
    from services.monitor.metrics import AggregatesCollector

    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    exposed = {
        family.name + suffix
        for family in AggregatesCollector(Aggregates()).collect()
        for suffix in suffixes[family.type]
    }
    assert exposed == MONITOR_METRICS


# --- tests: the checks catch broken manifests ----------------------------------------------------


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return of_kind(docs, kind)[name]


def _router_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _find(docs, "Deployment", "router")["spec"]["template"]["spec"]["containers"][0]


def _break_schema(docs: list[dict[str, Any]]) -> list[str]:
    _router_container(docs)["readinessProbe"]["grpc"]["prot"] = 1
    return schema_problems(_find(docs, "Deployment", "router"))


def _break_selector(docs: list[dict[str, Any]]) -> list[str]:
    _find(docs, "Service", "cache")["spec"]["selector"]["app.kubernetes.io/name"] = "cashe"
    return service_problems(docs)


def _break_probe(docs: list[dict[str, Any]]) -> list[str]:
    _router_container(docs)["livenessProbe"]["grpc"]["port"] = 50059
    return deployment_problems(docs)


def _break_hpa(docs: list[dict[str, Any]]) -> list[str]:
    _find(docs, "HorizontalPodAutoscaler", "orchestrator")["spec"]["scaleTargetRef"]["name"] = (
        "orchestrater"
    )
    return hpa_problems(docs)


def _break_address(docs: list[dict[str, Any]]) -> list[str]:
    _find(docs, "ConfigMap", "inferscale-settings")["data"]["INFERSCALE_CACHE_ADDRESS"] = (
        "cache:50054"
    )
    return address_problems(docs)


def _break_listen(docs: list[dict[str, Any]]) -> list[str]:
    container = _find(docs, "Deployment", "monitor")["spec"]["template"]["spec"]["containers"][0]
    next(v for v in container["env"] if v["name"] == "INFERSCALE_MONITOR_LISTEN")["value"] = (
        "[::]:50055"
    )
    return address_problems(docs)


def _break_headless(docs: list[dict[str, Any]]) -> list[str]:
    del _find(docs, "Service", "cache")["spec"]["clusterIP"]
    return balancing_problems(docs)


def _break_secret(docs: list[dict[str, Any]]) -> list[str]:
    container = _find(docs, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    next(v for v in container["env"] if v["name"] == "INFERSCALE_TRITON_REPOSITORY_KEY")["valueFrom"]["secretKeyRef"]["optional"] = True
    return credential_problems(docs)


def _break_open_egress(docs: list[dict[str, Any]]) -> list[str]:
    _find(docs, "NetworkPolicy", "cache")["spec"]["egress"][0] = {}
    return network_policy_problems(docs)


def _break_wide_ingress(docs: list[dict[str, Any]]) -> list[str]:
    del _find(docs, "NetworkPolicy", "triton")["spec"]["ingress"][1]["from"]
    return network_policy_problems(docs)


def _break_default_deny(docs: list[dict[str, Any]]) -> list[str]:
    docs[:] = [d for d in docs if name_of(d) != "NetworkPolicy/default-deny"]
    return network_policy_problems(docs)


def _break_uncovered(docs: list[dict[str, Any]]) -> list[str]:
    _find(docs, "Deployment", "jaeger")["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "tracing"
    return network_policy_problems(docs)


def _break_triton(docs: list[dict[str, Any]]) -> list[str]:
    del _find(docs, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]["limits"]["nvidia.com/gpu"]
    return triton_problems(docs)


@pytest.mark.parametrize(
    "breaker",
    [
        _break_schema,
        _break_selector,
        _break_probe,
        _break_hpa,
        _break_address,
        _break_listen,
        _break_triton,
        _break_headless,
        _break_secret,
        _break_open_egress,
        _break_wide_ingress,
        _break_default_deny,
        _break_uncovered,
    ],
    ids=lambda f: f.__name__.removeprefix("_break_"),
)
def test_k8s_checks_catch_a_broken_manifest(breaker: Any) -> None:
    assert breaker(k8s_documents()) != []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "router", "depends_on"), {"orchestrater": {"condition": "service_healthy"}}),
        (("services", "redis", "image"), "redis:latest"),
        (("services", "jaeger", "image"), "jaegertracing/all-in-one"),
        (
            ("services", "prometheus", "volumes"),
            ["./prometheus.yaml:/etc/prometheus/prometheus.yml:ro"],
        ),
        (("services", "router", "environment", "INFERSCALE_CACHE_ADDRESS"), "cache:50052"),
    ],
    ids=["depends_on", "latest", "untagged", "missing-file", "address"],
)
def test_compose_checks_catch_a_broken_file(path: tuple[str, ...], value: Any) -> None:
    spec = compose()
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert compose_problems(spec) != []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "router-a", "environment", "INFERSCALE_CACHE_ADDRESS"), "127.0.0.1:${INFERSCALE_CACHE_A_PORT:-50053}"),
        (("services", "router-b", "healthcheck"), {}),
        (("services", "triton-b", "command", 7), "--grpc-port=${INFERSCALE_TRITON_B_GRPC_PORT:-8001}"),
        (("services", "cache-b", "network_mode"), "bridge"),
        (("services", "monitor", "restart"), "no"),
    ],
    ids=["one-cache-replica", "no-health-check", "port-twice", "bridge", "no-restart"],
)
def test_cpu_compose_checks_catch_a_broken_file(path: tuple[Any, ...], value: Any) -> None:
    spec = compose(COMPOSE_CPU)
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert cpu_compose_problems(spec) != []


def test_settings_check_catches_a_setting_that_differs_by_platform() -> None:
    docs = k8s_documents()
    _find(docs, "ConfigMap", "inferscale-settings")["data"]["INFERSCALE_CONFIDENCE_THRESHOLD"] = "0.80"
    assert settings_problems(docs, {"compose.cpu.yaml": compose(COMPOSE_CPU)}) != []
    spec = compose(COMPOSE_CPU)
    spec["services"]["router-a"]["environment"]["INFERSCALE_REQUEST_TIMEOUT_SECONDS"] = "5"
    assert settings_problems(k8s_documents(), {"compose.cpu.yaml": spec}) != []


def test_dashboard_check_catches_an_unknown_metric() -> None:
    board = dashboard()
    board["panels"][1]["targets"][0]["expr"] = "sum(rate(inferscale_requests_totl[5m]))"
    assert dashboard_problems(board, provisioned_datasource_uids()) != []
