#!/usr/bin/env python3
"""Tests of the Helm chart in helm/switchyard.

Renders the chart with Helm's own engine (helm-python-sdk binds Helm's Go SDK)
for several value profiles: the defaults, the HA profile (values-ha.yaml) and
the files in scripts/chart/good-values. For each it
  - validates every manifest against the Kubernetes OpenAPI schemas in strict
    mode (kubernetes-validate; unknown fields are errors),
  - checks what the chart promises: non-root containers with a read-only root
    filesystem, probes, secrets referenced rather than inlined, the admin
    token read from its Secret, every provider key reference resolvable inside
    the data plane and every API key reference inside the control plane,
    Services and budgets that select the right pods, and only flags and
    variables the binaries define (read from their clap definitions in the
    Rust sources),
  - runs helm lint --strict.
Then every file in scripts/chart/bad-values must be rejected, by
values.schema.json or by the templates, with the message its first line
names ("# expect: <text>").

Run with the venv of `scripts/services.sh clients DIR`:
    DIR/clients/bin/python scripts/chart_test.py
Exits 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "switchyard"
FIXTURES = ROOT / "scripts" / "chart"
# The newest Kubernetes whose schemas kubernetes-validate ships.
KUBE_VERSION = "1.37.0"

# Where each container's flags are defined (clap derive).
BINARY_SOURCES = {
    "control-plane": ["control-plane/src/config.rs", "control-plane/src/main.rs"],
    "data-plane": ["data-plane/src/config.rs", "data-plane/src/main.rs"],
}


@dataclass
class Profile:
    name: str
    values_files: list[Path]
    release: str
    namespace: str
    # Facts the profile promises beyond what merged values imply.
    expect: dict[str, Any] = field(default_factory=dict)


PROFILES = [
    Profile("default", [], "switchyard", "switchyard",
            {"cp_replicas": 3, "etcd": "bundled", "hpa_min": 2, "api_keys": 0}),
    Profile("ha", [CHART / "values-ha.yaml"], "prod", "gateway",
            {"cp_replicas": 3, "etcd": "external", "hpa_min": 3, "service_monitor": True, "api_keys": 1}),
    Profile("options", [FIXTURES / "good-values" / "options.yaml"], "demo", "demo",
            {"cp_replicas": 2, "etcd": "bundled", "database_secret_rendered": True, "api_keys": 2}),
    Profile("single", [FIXTURES / "good-values" / "single.yaml"], "switchyard", "solo",
            {"cp_replicas": 1, "etcd": "none", "api_keys": 0}),
    Profile("tls", [FIXTURES / "good-values" / "tls.yaml"], "switchyard", "secure",
            {"cp_replicas": 3, "etcd": "bundled", "hpa_min": 2, "service_monitor": True, "api_keys": 0}),
]


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.scope = ""

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL [{self.scope}] {what}")
        return ok


R = Results()


# --- the binaries' flags ------------------------------------------------------

ARG_RE = re.compile(r"#\[arg\((?P<attr>.*?)\)\]\s*(?:pub\s+)?(?P<field>[a-z_][a-z0-9_]*)\s*:", re.S)


def binary_flags(sources: list[str]) -> tuple[set[str], set[str]]:
    """Long flags and environment variables of clap fields in these files."""
    flags: set[str] = set()
    envs: set[str] = set()
    for source in sources:
        text = (ROOT / source).read_text()
        for m in ARG_RE.finditer(text):
            attr, name = m.group("attr"), m.group("field")
            explicit = re.search(r'\blong\s*=\s*"([^"]+)"', attr)
            if explicit:
                flags.add(explicit.group(1))
            elif re.search(r"\blong\b", attr):
                flags.add(name.replace("_", "-"))
            env = re.search(r'\benv\s*=\s*"([^"]+)"', attr)
            if env:
                envs.add(env.group(1))
    return flags, envs


# --- rendering ----------------------------------------------------------------


def load_values(files: list[Path]) -> dict[str, Any]:
    """Values files merged in order, parsed by Helm's own YAML reader."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = deep_merge(merged, helm.values_from_yaml(path.read_text()))
    return merged


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def manifests(rendered: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((template, doc))
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any] | None:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    return found[0] if len(found) == 1 else None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def flag_values(args: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out.setdefault(name, []).append(value)
    return out


# --- checks -------------------------------------------------------------------


def check_schemas(docs: list[tuple[str, dict[str, Any]]]) -> None:
    for template, doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} ({template})"
        if doc.get("kind") == "ServiceMonitor":
            # A CRD: kubernetes-validate has no schema; checked in check_monitoring.
            R.check(doc.get("apiVersion") == "monitoring.coreos.com/v1", f"{what}: apiVersion")
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            R.check(True, what)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            R.check(False, f"{what} invalid for Kubernetes {KUBE_VERSION}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            R.check(False, f"{what}: {e.message}")


def check_pods(docs: list[dict[str, Any]], flags: dict[str, tuple[set[str], set[str]]]) -> None:
    for workload in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        psc = spec.get("securityContext", {})
        R.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 1) != 0,
                f"{name}: pod runs as non-root")
        R.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                f"{name}: RuntimeDefault seccomp profile")
        R.check(spec.get("automountServiceAccountToken") is False,
                f"{name}: no service account token mounted")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            R.check(sc.get("readOnlyRootFilesystem") is True, f"{where}: read-only root filesystem")
            R.check(sc.get("allowPrivilegeEscalation") is False, f"{where}: no privilege escalation")
            R.check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: non-root")
            R.check(sc.get("privileged") is not True, f"{where}: not privileged")
            R.check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: drops all capabilities")
            res = c.get("resources", {})
            R.check({"cpu", "memory"} <= set(res.get("requests", {})) and "memory" in res.get("limits", {}),
                    f"{where}: CPU and memory requests and a memory limit")
            R.check("readinessProbe" in c and "livenessProbe" in c, f"{where}: readiness and liveness probes")
            for m in c.get("volumeMounts", []):
                R.check(m["name"] in volumes or m["name"] in claims, f"{where}: mount {m['name']} has a volume")
            for env in c.get("env", []):
                R.check(not looks_secret(str(env.get("value", ""))), f"{where}: env {env['name']} holds no secret")
            for arg in c.get("args", []) + c.get("command", []):
                R.check(not looks_secret(arg), f"{where}: argument {arg!r} holds no secret")
            if c["name"] in flags:
                defined, envs = flags[c["name"]]
                used = flag_values(c.get("args", []))
                for flag, values in used.items():
                    R.check(flag in defined, f"{where}: --{flag} is a flag of switchyard-{c['name']}")
                    R.check(len(values) == 1, f"{where}: --{flag} given once")
                for env in c.get("env", []):
                    if env["name"].startswith("SWITCHYARD_"):
                        R.check(env["name"] in envs, f"{where}: {env['name']} is read by switchyard-{c['name']}")
                    R.check(env["name"].removeprefix("SWITCHYARD_").lower().replace("_", "-") not in used,
                            f"{where}: {env['name']} is not also given as a flag")


# A URL with a password, a provider key, a Switchyard API key, a bearer credential.
SECRET_PATTERNS = [re.compile(p) for p in (
    r"://[^/\s:@]+:[^/\s@]+@", r"\bsk-[A-Za-z0-9]", r"\bsy-[A-Za-z0-9]{24,}", r"(?i)bearer\s")]


def check_tls_files(workload: dict[str, Any], c: dict[str, Any], flags: dict[str, list[str]],
                    secret: str | None, want: dict[str, str], who: str) -> None:
    """With TLS, every TLS flag names a file of the plane's Secret, mounted
    read-only; without it, no TLS flag at all."""
    if secret is None:
        R.check(not any(f in flags for f in want), f"{who}: no TLS flags without tls.enabled")
        return
    files = secret_files(workload, c)
    for flag, key in want.items():
        path = flags.get(flag, [""])[0]
        R.check(files.get(path) == (secret, key), f"{who}: --{flag} {path} is {key} of Secret {secret}")


def duration_seconds(text: str) -> float:
    """Seconds of a simple humantime duration: 90s, 2m, 1h30m, 500ms."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return float("nan")
    return sum(int(n) * units[u] for n, u in parts)


def looks_secret(text: str) -> bool:
    return any(p.search(text) for p in SECRET_PATTERNS)


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec(workload)["containers"] if c["name"] == name)


def port_of(c: dict[str, Any], name: str) -> int | None:
    return next((p["containerPort"] for p in c.get("ports", []) if p["name"] == name), None)


def secret_files(workload: dict[str, Any], c: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Files container c sees from Secret volumes: path -> (Secret, key)."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    files: dict[str, tuple[str, str]] = {}
    for m in c.get("volumeMounts", []):
        secret = volumes.get(m["name"], {}).get("secret")
        if secret:
            R.check(m.get("readOnly") is True and "subPath" not in m,
                    f"key volume {m['name']} is read-only and follows Secret updates (no subPath)")
            for item in secret.get("items", []):
                files[f"{m['mountPath'].rstrip('/')}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def bootstrap_of(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The bootstrap file of the one bootstrap ConfigMap, if there is one."""
    cms = [d for d in by_kind(docs, "ConfigMap") if "switchyard.yaml" in d.get("data", {})]
    return yaml.safe_load(cms[0]["data"]["switchyard.yaml"]) if len(cms) == 1 else None


def check_control_plane(docs: list[dict[str, Any]], values: dict[str, Any], p: Profile) -> None:
    cp = named(docs, "Deployment", "-control-plane")
    if not R.check(cp is not None, "one control-plane Deployment"):
        return
    assert cp is not None
    c = container(cp, "control-plane")
    flags = flag_values(c["args"])
    R.check(cp["spec"]["replicas"] == p.expect["cp_replicas"],
            f"control plane has {p.expect['cp_replicas']} replicas (got {cp['spec']['replicas']})")
    grpc, metrics = port_of(c, "grpc"), port_of(c, "metrics")
    R.check(flags.get("listen") == [f"0.0.0.0:{grpc}"], "control plane listens on its grpc container port")
    R.check(metrics is not None and metrics != grpc and flags.get("metrics-listen") == [f"0.0.0.0:{metrics}"],
            "control plane serves metrics on its metrics container port, apart from gRPC")
    tls = values["tls"]["enabled"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if tls:
            # The kubelet's gRPC probes cannot speak TLS.
            R.check(c.get(probe, {}).get("tcpSocket", {}).get("port") == "grpc",
                    f"control plane {probe} with TLS is the gRPC port open")
        else:
            R.check(c.get(probe, {}).get("grpc", {}).get("port") == grpc, f"control plane {probe} is gRPC on {grpc}")
    check_tls_files(cp, c, flags, values["tls"]["controlPlaneSecret"] if tls else None,
                    {"tls-cert": "tls.crt", "tls-key": "tls.key", "tls-client-ca": "ca.crt"},
                    "control plane")

    env = {e["name"]: e for e in c.get("env", [])}
    ref = env.get("SWITCHYARD_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
    if R.check(ref is not None, "database URL comes from a Secret"):
        db = values["controlPlane"]["database"]
        secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
        if p.expect.get("database_secret_rendered"):
            secret = secrets.get(ref["name"])
            R.check(secret is not None and ref["key"] in secret.get("stringData", {}),
                    "the database Secret the chart makes holds the referenced key")
        else:
            R.check(ref["name"] == db["existingSecret"] and ref["key"] == db["existingSecretKey"],
                    "database URL comes from controlPlane.database.existingSecret")
            R.check(not secrets, "no Secret rendered when the database Secret exists")
    R.check("node-id" not in flags and env.get("SWITCHYARD_NODE_ID", {}).get("valueFrom", {})
            .get("fieldRef", {}).get("fieldPath") == "metadata.name", "node id is the pod name")
    check_admin_token(docs, cp, c, values)
    check_api_keys(docs, cp, c, values, p)

    etcd_flag = flags.get("etcd-endpoints")
    if p.expect["etcd"] == "none":
        R.check(etcd_flag is None, "no etcd endpoints when no etcd is configured")
    elif R.check(etcd_flag is not None and len(etcd_flag) == 1, "etcd endpoints passed"):
        assert etcd_flag is not None
        urls = etcd_flag[0].split(",")
        etcd_sts = named(docs, "StatefulSet", "-etcd")
        if p.expect["etcd"] == "bundled":
            svc = named(docs, "Service", "-etcd")
            R.check(etcd_sts is not None and svc is not None, "bundled etcd rendered")
            if svc is not None:
                host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
                R.check(urls == [f"http://{host}:2379"], f"control plane elects on the bundled etcd ({urls})")
        else:
            R.check(etcd_sts is None, "no bundled etcd with external endpoints")
            R.check(urls == values["etcd"]["endpoints"], "control plane elects on etcd.endpoints")

    volumes = {v["name"]: v for v in pod_spec(cp).get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    if values["bootstrap"]["enabled"]:
        path = flags.get("bootstrap", [""])[0]
        mount = mounts.get(str(Path(path).parent))
        cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name") if mount else None
        cm = next((d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_name), None)
        R.check(cm is not None and Path(path).name in cm["data"],
                f"--bootstrap {path} is a key of a mounted, rendered ConfigMap")
        R.check("checksum/bootstrap" in cp["spec"]["template"]["metadata"].get("annotations", {}),
                "control plane rolls when the bootstrap changes")
    else:
        R.check("bootstrap" not in flags, "no --bootstrap when bootstrap is disabled")

    if values["controlPlane"]["replayViaDataPlane"]:
        dp_svc = named(docs, "Service", "-data-plane")
        scheme = "https" if tls else "http"
        want = (f"{scheme}://{dp_svc['metadata']['name']}.{dp_svc['metadata']['namespace']}.svc:"
                f"{next(x['port'] for x in dp_svc['spec']['ports'] if x['name'] == 'http')}") if dp_svc else None
        R.check(flags.get("replay-via") == [want], "replays go through the data-plane Service's HTTP port")
        if tls:
            R.check(flags.get("replay-ca") == flags.get("tls-client-ca"), "replays trust the fleet's CA")

    services = [s for s in by_kind(docs, "Service") if selects(s["spec"].get("selector", {}), pod_labels(cp))]
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    R.check(len(services) == 2 and len(headless) == 1, "control plane has a Service and a headless Service")
    for s in services:
        want = [("grpc", "grpc")] + ([("metrics", "metrics")] if s in headless else [])
        R.check([(x["name"], x["targetPort"]) for x in s["spec"]["ports"]] == want,
                f"{s['metadata']['name']} exposes {[n for n, _ in want]}")


def check_admin_token(docs: list[dict[str, Any]], cp: dict[str, Any], c: dict[str, Any],
                      values: dict[str, Any]) -> None:
    """The control plane refuses to start without the token: it must come from
    controlPlane.adminToken's Secret, as a mounted file or from a secretKeyRef."""
    admin = values["controlPlane"]["adminToken"]
    want = (admin["existingSecret"], admin["existingSecretKey"])
    flags = flag_values(c["args"])
    env = {e["name"]: e for e in c.get("env", [])}
    R.check("admin-token" not in flags and "value" not in env.get("SWITCHYARD_ADMIN_TOKEN", {}),
            "the admin token is never inlined in an argument or variable")
    path = flags.get("admin-token-file") or [v["value"] for v in [env.get("SWITCHYARD_ADMIN_TOKEN_FILE")]
                                             if v and "value" in v]
    from_env = env.get("SWITCHYARD_ADMIN_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef")
    R.check(len(path) + (from_env is not None) == 1, "the admin token is given exactly one way")
    if path:
        got = secret_files(cp, c).get(path[0])
        R.check(got == want, f"--admin-token-file {path[0]} is key {want[1]!r} of Secret {want[0]!r} "
                             f"mounted in the control plane (got {got})")
    elif from_env is not None:
        got = (from_env["name"], from_env["key"])
        R.check(got == want, f"SWITCHYARD_ADMIN_TOKEN comes from key {want[1]!r} of Secret {want[0]!r} (got {got})")
    R.check(all(s["metadata"]["name"] != want[0] for s in by_kind(docs, "Secret")),
            "the chart never creates the admin token's Secret")


def check_api_keys(docs: list[dict[str, Any]], cp: dict[str, Any], c: dict[str, Any],
                   values: dict[str, Any], p: Profile) -> None:
    """Every API key of the bootstrap is read, inside the control plane, from
    the Secret bootstrap.apiKeys names for it."""
    wanted = values["bootstrap"].get("apiKeys") or []
    R.check(len(wanted) == p.expect["api_keys"], f"{p.expect['api_keys']} API keys in the values")
    bootstrap = bootstrap_of(docs)
    if not values["bootstrap"]["enabled"] or bootstrap is None:
        R.check(not wanted, "no API keys without a bootstrap file")
        return
    keys = bootstrap.get("api_keys", [])
    R.check(len(keys) == len(wanted), f"the bootstrap registers every key of bootstrap.apiKeys ({len(keys)})")
    files = secret_files(cp, c)
    env_from_secrets = {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                        for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    for key, want in zip(keys, wanted):
        what = f"API key {key.get('name')!r} of workspace {key.get('workspace')!r}"
        R.check((key.get("workspace"), key.get("name")) == (want["workspace"], want["name"]),
                f"{what}: workspace and name as in the values")
        R.check(key.get("allowed_models", []) == (want.get("allowedModels") or []),
                f"{what}: allowed models as in the values")
        R.check(set(key) <= {"workspace", "name", "secret_ref", "allowed_models"}, f"{what}: no other field")
        ref = key.get("secret_ref", "")
        if ref.startswith("file:"):
            got = files.get(ref[5:])
        elif ref.startswith("env:"):
            got = env_from_secrets.get(ref[4:])
        else:
            got = None
        R.check(got == (want["existingSecret"], want["existingSecretKey"]),
                f"{what}: {ref} is key {want['existingSecretKey']!r} of Secret {want['existingSecret']!r} "
                f"in the control plane (got {got})")


def check_data_plane(docs: list[dict[str, Any]], values: dict[str, Any], p: Profile) -> None:
    dp = named(docs, "Deployment", "-data-plane")
    if not R.check(dp is not None, "one data-plane Deployment"):
        return
    assert dp is not None
    dpv = values["dataPlane"]
    c = container(dp, "data-plane")
    flags = flag_values(c["args"])
    http, grpc = port_of(c, "http"), port_of(c, "grpc")
    R.check(flags.get("http-listen") == [f"0.0.0.0:{http}"], "HTTP listens on the http container port")
    R.check(flags.get("grpc-listen") == [f"0.0.0.0:{grpc}"], "gRPC listens on the grpc container port")
    tls = values["tls"]["enabled"]
    scheme = "HTTPS" if tls else "HTTP"
    ready = c.get("readinessProbe", {}).get("httpGet", {})
    R.check(ready.get("path") == "/readyz" and ready.get("port") == "http" and ready.get("scheme") == scheme,
            f"readiness is {scheme} /readyz")
    if tls:
        live = c.get("livenessProbe", {}).get("httpGet", {})
        R.check(live.get("path") == "/healthz" and live.get("scheme") == "HTTPS",
                "liveness with TLS is HTTPS /healthz (the kubelet's gRPC probes cannot speak TLS)")
    else:
        R.check(c.get("livenessProbe", {}).get("grpc", {}).get("port") == grpc, f"liveness is gRPC on {grpc}")
    start = c.get("startupProbe", {}).get("httpGet", {})
    R.check(start.get("path") == "/healthz" and start.get("scheme") == scheme, f"startup is {scheme} /healthz")
    check_tls_files(dp, c, flags, values["tls"]["dataPlaneSecret"] if tls else None,
                    {"tls-cert": "tls.crt", "tls-key": "tls.key", "control-plane-ca": "ca.crt",
                     "control-plane-cert": "tls.crt", "control-plane-key": "tls.key"},
                    "data plane")

    # SIGTERM comes after the preStop sleep; the process then needs its
    # shutdown grace and a little to flush traces before the kubelet kills it.
    grace = flags.get("shutdown-grace", [""])[0]
    R.check(grace == dpv["shutdownGrace"], f"--shutdown-grace is dataPlane.shutdownGrace ({grace})")
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    budget = pod_spec(dp).get("terminationGracePeriodSeconds", 30)
    R.check(budget >= pre_stop + duration_seconds(grace) + 10,
            f"terminationGracePeriodSeconds {budget} covers preStop {pre_stop}s, grace {grace} and 10 s to flush")

    # The root filesystem is read-only: the state directory needs a writable volume.
    state = flags.get("state-dir", [""])[0]
    writable = [m for m in c.get("volumeMounts", [])
                if not m.get("readOnly") and (state + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    R.check(len(writable) == 1, f"--state-dir {state} is on a writable volume")

    # Control-plane URLs: this release's Service unless values name others.
    urls = flags.get("control-plane", [""])[0].split(",")
    if dpv["controlPlaneUrls"]:
        R.check(urls == dpv["controlPlaneUrls"], "data planes use dataPlane.controlPlaneUrls")
    else:
        cp_svc = next((s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-control-plane")), None)
        want = (f"{scheme.lower()}://{cp_svc['metadata']['name']}.{cp_svc['metadata']['namespace']}.svc:"
                f"{cp_svc['spec']['ports'][0]['port']}") if cp_svc else None
        R.check(urls == [want], f"data planes reach the control-plane Service ({urls})")

    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    if dpv["autoscaling"]["enabled"]:
        ok = len(hpa) == 1 and hpa[0]["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": dp["metadata"]["name"]}
        R.check(ok, "one HPA scales the data-plane Deployment")
        R.check("replicas" not in dp["spec"], "the HPA alone sets the data-plane replicas")
        if hpa:
            spec = hpa[0]["spec"]
            kinds = [m["type"] for m in spec["metrics"]]
            R.check(kinds[0] == "Resource" and spec["metrics"][0]["resource"]["name"] == "cpu", "HPA on CPU")
            R.check(("Pods" in kinds) == dpv["autoscaling"]["inFlightRequests"]["enabled"],
                    "HPA on in-flight requests exactly when enabled")
            if "hpa_min" in p.expect:
                R.check(spec["minReplicas"] == p.expect["hpa_min"], f"HPA keeps at least {p.expect['hpa_min']} data planes")
    else:
        R.check(not hpa and dp["spec"].get("replicas") == dpv["replicas"], "fixed data-plane replicas without HPA")

    svc = named(docs, "Service", "-data-plane")
    if R.check(svc is not None, "one data-plane Service"):
        assert svc is not None
        ports = {x["name"]: x for x in svc["spec"]["ports"]}
        R.check(set(ports) == {"http", "grpc"}, "data-plane Service has both HTTP and gRPC ports")
        R.check(all(x["targetPort"] in ("http", "grpc") and port_of(c, x["targetPort"]) for x in ports.values()),
                "data-plane Service targets the container's named ports")
        R.check(selects(svc["spec"]["selector"], pod_labels(dp)), "data-plane Service selects the data planes")
        others = [w for w in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet") if w is not dp]
        R.check(not any(selects(svc["spec"]["selector"], pod_labels(w)) for w in others),
                "data-plane Service selects nothing else")
    check_provider_keys(docs, dp, c, values)


def check_provider_keys(docs: list[dict[str, Any]], dp: dict[str, Any], c: dict[str, Any],
                        values: dict[str, Any]) -> None:
    """Every key reference of the bootstrap resolves inside the data plane."""
    key_files = secret_files(dp, c)
    env_from_secrets = {e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    cms = [d for d in by_kind(docs, "ConfigMap") if "switchyard.yaml" in d.get("data", {})]
    if not values["bootstrap"]["enabled"]:
        R.check(not cms, "no bootstrap ConfigMap when bootstrap is disabled")
        return
    if not R.check(len(cms) == 1, "one bootstrap ConfigMap"):
        return
    text = cms[0]["data"]["switchyard.yaml"]
    R.check(not looks_secret(text), "bootstrap ConfigMap holds no secret")
    bootstrap = yaml.safe_load(text)
    providers = {p["name"] for p in bootstrap.get("providers", [])}
    R.check(len(providers) == len(bootstrap.get("providers", [])), "provider names are unique")
    for m in bootstrap.get("models", []):
        R.check(m["provider"] in providers, f"model {m['name']} names a provider of the bootstrap")
    for p in bootstrap.get("providers", []):
        ref = p.get("api_key_ref", "")
        if ref.startswith("file:"):
            R.check(ref[5:] in key_files, f"{p['name']}: {ref} is a key file mounted from a Secret")
        elif ref.startswith("env:"):
            R.check(ref[4:] in env_from_secrets, f"{p['name']}: {ref} is set from a Secret")
        else:
            R.check(ref == "" and p["kind"] in ("simulated", "ollama"), f"{p['name']}: key reference {ref!r}")


def check_budgets_and_monitoring(docs: list[dict[str, Any]], values: dict[str, Any], p: Profile) -> None:
    workloads = by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        matched = [w["metadata"]["name"] for w in workloads if selects(sel, pod_labels(w))]
        R.check(matched == [pdb["metadata"]["name"]], f"PDB {pdb['metadata']['name']} covers its own pods ({matched})")
    want = {n for n, enabled in (("-control-plane", values["controlPlane"]["podDisruptionBudget"]["enabled"]),
                                 ("-data-plane", values["dataPlane"]["podDisruptionBudget"]["enabled"])) if enabled}
    got = {n for n in ("-control-plane", "-data-plane") if named(docs, "PodDisruptionBudget", n)}
    R.check(got == want, f"PodDisruptionBudgets for {sorted(want)}")
    for s in by_kind(docs, "Service"):
        R.check(any(selects(s["spec"].get("selector", {}), pod_labels(w)) for w in workloads),
                f"Service {s['metadata']['name']} selects some pods")

    monitors = by_kind(docs, "ServiceMonitor")
    R.check(bool(monitors) == values["metrics"]["serviceMonitor"]["enabled"], "ServiceMonitor exactly when enabled")
    if p.expect.get("service_monitor"):
        R.check(len(monitors) == 2, "HA profile scrapes both planes")
    scraped = set()
    for sm in monitors:
        name = sm["metadata"]["name"]
        selected = [s for s in by_kind(docs, "Service") if selects(sm["spec"]["selector"]["matchLabels"],
                                                                     s["metadata"]["labels"])]
        pods = {w["metadata"]["name"] for w in workloads for s in selected
                if selects(s["spec"].get("selector", {}), pod_labels(w))}
        R.check(len(pods) == 1, f"ServiceMonitor {name} scrapes the pods of one workload ({sorted(pods)})")
        scraped |= pods
        for ep in sm["spec"]["endpoints"]:
            having = [s for s in selected if ep["port"] in {x["name"] for x in s["spec"]["ports"]}]
            R.check(len(having) == 1 and ep["path"] == "/metrics",
                    f"ServiceMonitor {name} scrapes /metrics on port {ep['port']} of exactly one Service")
    if monitors:
        want = {w["metadata"]["name"] for w in workloads if w["metadata"]["name"].endswith(("-control-plane", "-data-plane"))}
        R.check(scraped == want, f"ServiceMonitors cover both planes ({sorted(scraped)})")


def check_profile(p: Profile, flags: dict[str, tuple[set[str], set[str]]]) -> None:
    R.scope = p.name
    values = load_values(p.values_files)
    with helm.Chart.load(CHART) as chart:
        try:
            rendered = chart.render(values, name=p.release, namespace=p.namespace, is_install=True)
        except helm.HelmError as e:
            R.check(False, f"render failed: {e}")
            return
        merged = chart.merge_values(values)
    lint = helm.lint(CHART, values, strict=True, namespace=p.namespace, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in lint["messages"] if m["severity"] >= 2]
    R.check(not problems and not lint["errors"], f"helm lint --strict: {problems or lint['errors']}")

    pairs = manifests(rendered)
    docs = [d for _, d in pairs]
    check_schemas(pairs)
    keys = Counter((d["kind"], d["metadata"]["name"]) for d in docs)
    R.check(all(n == 1 for n in keys.values()), f"object names are unique: {[k for k, n in keys.items() if n > 1]}")
    R.check(all(d["metadata"].get("namespace") == p.namespace for d in docs), "every object in the release namespace")
    check_pods(docs, flags)
    check_control_plane(docs, merged, p)
    check_data_plane(docs, merged, p)
    check_budgets_and_monitoring(docs, merged, p)
    notes = next((t for n, t in rendered.items() if n.endswith("NOTES.txt")), "")
    dp_name = next((d["metadata"]["name"] for d in by_kind(docs, "Service") if d["metadata"]["name"].endswith("-data-plane")), "?")
    R.check("grpcurl -plaintext" in notes and "curl -s http" in notes and f"svc/{dp_name}" in notes,
            "NOTES.txt shows how to try it with curl and grpcurl")
    check_notes_credentials(notes, merged)
    kinds = Counter(d["kind"] for d in docs)
    print(f"{p.name}: {len(docs)} manifests ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) "
          f"checked against Kubernetes {KUBE_VERSION} (strict)")


def check_notes_credentials(notes: str, values: dict[str, Any]) -> None:
    """Every call NOTES.txt shows carries its credential, and it says how to get both."""
    # Commands, their continuation lines joined.
    commands = re.sub(r"\\\n\s*", "", notes).splitlines()
    commands = [line.strip() for line in commands]
    curls = [line for line in commands if line.startswith("curl ") and "/v1/" in line]
    R.check(bool(curls) and all('-H "Authorization: Bearer $SWITCHYARD_API_KEY"' in line for line in curls),
            "NOTES.txt: every curl of /v1 sends the API key")
    calls = [line for line in commands if line.startswith("grpcurl ") and "switchyard.v1." in line]
    R.check(bool(calls) and all('-H "authorization: Bearer $SWITCHYARD_' in line for line in calls),
            "NOTES.txt: every grpcurl of a Switchyard service sends a credential")
    admin = values["controlPlane"]["adminToken"]
    R.check(f"get secret {admin['existingSecret']} " in notes and f".data.{admin['existingSecretKey']}" in notes,
            "NOTES.txt: how to read the admin token from its Secret")
    R.check("switchyard keys create" in notes and "switchyard.v1.AccessService/CreateApiKey" in notes,
            "NOTES.txt: how to create an API key with the CLI and grpcurl")


def check_bad_values() -> None:
    R.scope = "bad-values"
    files = sorted((FIXTURES / "bad-values").glob("*.yaml"))
    R.check(len(files) > 0, "bad-values fixtures exist")
    with helm.Chart.load(CHART) as chart:
        for path in files:
            first = path.read_text().splitlines()[0]
            expect = first.removeprefix("# expect:").strip()
            if not R.check(first.startswith("# expect:") and expect, f"{path.name}: first line names the expected error"):
                continue
            try:
                chart.render(load_values([path]), name="bad", namespace="bad")
                R.check(False, f"{path.name}: accepted, but should fail with {expect!r}")
            except (helm.HelmValuesError, helm.HelmRenderError) as e:
                R.check(expect in str(e), f"{path.name}: rejected, but not for {expect!r}: {e}")
    print(f"bad-values: {len(files)} values files, each must be rejected")


def main() -> int:
    flags = {name: binary_flags(sources) for name, sources in BINARY_SOURCES.items()}
    R.scope = "sources"
    R.check({"listen", "database-url", "bootstrap", "etcd-endpoints", "log-format", "admin-token-file"}
            <= flags["control-plane"][0],
            f"control-plane flags found in the sources: {sorted(flags['control-plane'][0])}")
    R.check({"SWITCHYARD_ADMIN_TOKEN", "SWITCHYARD_ADMIN_TOKEN_FILE"} <= flags["control-plane"][1],
            f"control-plane variables found in the sources: {sorted(flags['control-plane'][1])}")
    R.check({"http-listen", "grpc-listen", "control-plane", "state-dir", "log-format"} <= flags["data-plane"][0],
            f"data-plane flags found in the sources: {sorted(flags['data-plane'][0])}")
    for p in PROFILES:
        check_profile(p, flags)
    check_bad_values()
    print(f"chart: {R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
