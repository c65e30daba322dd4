#!/usr/bin/env python3
"""Helpers for deploy/k8s/validate. Run by it, with the tools venv's Python.

  check.py split OUT SCHEMAS RENDERED...
      Sorts every object of the rendered streams by kind: core Kubernetes
      kinds go to OUT/core/<stream>.yaml (for kubernetes-validate), custom
      resources to OUT/cr/<schema>/<stream>-<n>.json (for check-jsonschema
      with SCHEMAS/<schema>). An object of a kind with neither is an error.

  check.py invariants RENDERED_DIR
      The project's own rules, which no schema can express: the restricted
      security context, probes and shutdown timing, no fault injection,
      ingress to the HTTP port by pod label, bearer-token auth from a Secret
      in production, the example Secrets' shape, and that each overlay's
      database settings match the database manifests. A Deployment running
      `dedupd proxy` has its probes and metrics under /_dedupd/, an
      upstream, a drain that outlasts a forwarded request, and its claim
      namespace in the namespaces file.

      An overlay is production when its directory is overlays/production*
      or its Deployment carries the annotation dedupd.io/environment:
      production (components/production sets it).

  check.py equivalent OVERLAY_STREAM CHART_STREAM
      Compares a stream rendered from the Helm chart with the overlay it
      stands for, where it matters (container args, env, probes, ports,
      security context, resources, HPA, PDB, NetworkPolicies, Service,
      ServiceMonitor, PrometheusRule, dashboard), and prints each difference.

  check.py mutations
      Lists the self-test's deliberate breakages (name<TAB>description).

  check.py mutate ROOT NAME
      Applies one breakage to a copy of deploy/k8s at ROOT and prints the
      text that validate's output must contain when it catches it.
"""

import base64
import json
import os
import posixpath
import re
import sys

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the backport pinned in requirements.txt
    import tomli as tomllib

# API groups served by Kubernetes itself: kubernetes-validate has schemas
# for these. Everything else must have a schema in deploy/k8s/schemas.
CORE_GROUPS = {
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
}

# Custom resources and the hand-written schema each is checked against.
CUSTOM_SCHEMAS = {
    ("scylla.scylladb.com/v1", "ScyllaCluster"): "scyllacluster-v1.json",
    ("k8ssandra.io/v1alpha1", "K8ssandraCluster"): "k8ssandracluster-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-v1.json",
}


# Pods labelled so may call dedupd's HTTP port (base/networkpolicy.yaml).
CLIENT_LABELS = {"dedupd.io/client": "true"}
# Labels the Prometheus Operator gives every Prometheus pod; the keys of
# PROMETHEUS_INSTANCE_KEYS name one Prometheus and may hold any value.
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus",
                         "app.kubernetes.io/managed-by": "prometheus-operator"}
PROMETHEUS_INSTANCE_KEYS = {"prometheus", "app.kubernetes.io/instance", "operator.prometheus.io/name",
                            "operator.prometheus.io/shard"}
PRODUCTION_ANNOTATION = "dedupd.io/environment"
# The Secret holding the [auth] table, and its example.
AUTH_SECRET = "dedupd-auth"
AUTH_EXAMPLE = "base/auth-secret.example.yaml"
FAILPOINTS = "DEDUPD_FAILPOINTS"
# Streams rendered from the Helm chart are named overlay-helm*: checked like
# the overlays, and compared with the overlay each stands for.
CHART_STREAM = "helm"
TOKEN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# dedupd's own endpoints, by the subcommand the container runs. `dedupd
# proxy` forwards every other path to its upstream, /livez and /metrics
# included: a probe or a scrape there would ask the API behind it.
OWN_PATHS = {
    "serve": {"livez": "/livez", "readyz": "/readyz", "metrics": "/metrics"},
    "proxy": {"livez": "/_dedupd/livez", "readyz": "/_dedupd/readyz", "metrics": "/_dedupd/metrics"},
}
# What `dedupd proxy --upstream` accepts: plain HTTP, a host, an optional
# path prefix, no query.
PROXY_UPSTREAM = re.compile(r"http://[^/?#@\s]+(/[^?#\s]*)?")
# dedupd's defaults for the settings the proxy's timing checks read.
PROXY_UPSTREAM_TIMEOUT_MS = 30000
REQUEST_DEADLINE_MS = 10000
PROXY_NAMESPACE = "proxy"


def load_stream(path):
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def describe(obj):
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


# ---------------------------------------------------------------- split


def split(out, schemas, rendered):
    errors = []
    os.makedirs(os.path.join(out, "core"), exist_ok=True)
    for path in rendered:
        stream = os.path.splitext(os.path.basename(path))[0]
        try:
            docs = load_stream(path)
        except yaml.YAMLError as error:
            errors.append(f"{stream}: not YAML: {error}")
            continue
        core = []
        custom_count = 0
        for doc in docs:
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                errors.append(f"{stream}: an object without apiVersion and kind: {str(doc)[:80]}")
                continue
            api_version, kind = doc["apiVersion"], doc["kind"]
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            schema = CUSTOM_SCHEMAS.get((api_version, kind))
            if schema:
                if not os.path.exists(os.path.join(schemas, schema)):
                    errors.append(f"{stream}: {describe(doc)}: schema {schema} is missing")
                    continue
                directory = os.path.join(out, "cr", schema)
                os.makedirs(directory, exist_ok=True)
                custom_count += 1
                name = f"{stream}-{custom_count}-{kind.lower()}.json"
                with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
                    json.dump(doc, handle, indent=1, default=str)
            elif group in CORE_GROUPS:
                core.append(doc)
            else:
                errors.append(
                    f"{stream}: {describe(doc)} is a {kind} of {api_version}, a kind with no "
                    f"schema: add one to deploy/k8s/schemas and to CUSTOM_SCHEMAS in {__file__}"
                )
        if core:
            with open(os.path.join(out, "core", f"{stream}.yaml"), "w", encoding="utf-8") as handle:
                yaml.safe_dump_all(core, handle, sort_keys=False)
        print(f"  {stream}: {len(core)} core objects, {custom_count} custom resources")
    for error in errors:
        print(f"ERROR {error}")
    return 1 if errors else 0


# ---------------------------------------------------------------- invariants


class Problems:
    def __init__(self):
        self.items = []

    def check(self, condition, where, message):
        if not condition:
            self.items.append(f"{where}: {message}")
        return condition


def quantity_present(resources, section, name):
    return bool(((resources or {}).get(section) or {}).get(name))


def check_pod_template(problems, where, template):
    spec = template.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    problems.check(spec.get("automountServiceAccountToken") is False, where,
                   "automountServiceAccountToken must be false")
    problems.check(pod_sc.get("runAsNonRoot") is True, where, "pod runAsNonRoot must be true")
    problems.check(pod_sc.get("runAsUser") == 65532, where, "pod runAsUser must be 65532")
    problems.check((pod_sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where,
                   "pod seccompProfile must be RuntimeDefault")
    for container in spec.get("containers") or []:
        cwhere = f"{where} container {container.get('name')}"
        sc = container.get("securityContext") or {}
        problems.check(sc.get("allowPrivilegeEscalation") is False, cwhere,
                       "allowPrivilegeEscalation must be false")
        problems.check(sc.get("readOnlyRootFilesystem") is True, cwhere,
                       "readOnlyRootFilesystem must be true")
        problems.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), cwhere,
                       "capabilities must drop ALL")
        resources = container.get("resources")
        for section, name in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            problems.check(quantity_present(resources, section, name), cwhere,
                           f"resources.{section}.{name} must be set")
        for env in container.get("env") or []:
            if env.get("name") in ("DEDUPD_CQL_PASSWORD", "DEDUPD_CQL_USERNAME"):
                problems.check("secretKeyRef" in (env.get("valueFrom") or {}), cwhere,
                               f"{env['name']} must come from a Secret (secretKeyRef)")


def env_of(configmaps, container):
    """The environment the container gets from its envFrom ConfigMaps."""
    merged = {}
    for source in container.get("envFrom") or []:
        ref = (source.get("configMapRef") or {}).get("name")
        if ref in configmaps:
            merged.update(configmaps[ref].get("data") or {})
    return merged


def database_endpoints(streams):
    """What the database manifests offer: host names -> (dc, nodes, namespace, ports, pod labels)."""
    endpoints = {}
    for docs in streams.values():
        for doc in docs:
            kind = doc.get("kind")
            meta = doc.get("metadata") or {}
            namespace = meta.get("namespace", "default")
            spec = doc.get("spec") or {}
            if kind == "ScyllaCluster":
                dc = (spec.get("datacenter") or {}).get("name")
                nodes = sum(int(r.get("members") or 0) for r in (spec.get("datacenter") or {}).get("racks") or [])
                service = f"{meta['name']}-client"
                info = {"dc": dc, "nodes": nodes, "namespace": namespace, "source": describe(doc),
                        "pod_labels": {"scylla/cluster": meta["name"]}}
                for host in (f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}.svc"):
                    endpoints[host] = info
            elif kind == "K8ssandraCluster":
                cassandra = spec.get("cassandra") or {}
                cluster = cassandra.get("clusterName") or meta["name"]
                cluster = re.sub(r"[^a-z0-9-]", "-", cluster.lower())
                for dc in cassandra.get("datacenters") or []:
                    dc_meta = dc.get("metadata") or {}
                    service = f"{cluster}-{dc_meta.get('name')}-service"
                    dc_ns = dc_meta.get("namespace", namespace)
                    info = {"dc": dc.get("datacenterName") or dc_meta.get("name"),
                            "nodes": int(dc.get("size") or 0), "namespace": dc_ns,
                            "source": describe(doc),
                            "pod_labels": {"cassandra.datastax.com/cluster": cluster}}
                    for host in (f"{service}.{dc_ns}.svc.cluster.local", f"{service}.{dc_ns}.svc"):
                        endpoints[host] = info
    return endpoints


def parse_replication(raw):
    raw = (raw or "").strip()
    if raw.isdigit():
        return {"*": int(raw)}
    result = {}
    for part in raw.split(","):
        dc, _, factor = part.partition(":")
        if not factor.strip().isdigit():
            return None
        result[dc.strip()] = int(factor)
    return result


def egress_allows(policy, namespace, pod_labels, port):
    for rule in (policy.get("spec") or {}).get("egress") or []:
        ports = [p.get("port") for p in rule.get("ports") or []]
        if port not in ports:
            continue
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            if "ipBlock" in peer:
                continue
            if "namespaceSelector" in peer:
                # Only the namespace-name label is known without a cluster.
                ns_labels = (peer["namespaceSelector"] or {}).get("matchLabels") or {}
                if ns_labels.get("kubernetes.io/metadata.name", namespace) != namespace:
                    continue
            elif (policy.get("metadata") or {}).get("namespace") != namespace:
                continue  # a bare podSelector means the policy's own namespace
            selector = ((peer.get("podSelector") or {}).get("matchLabels")) or {}
            if all(pod_labels.get(k) == v for k, v in selector.items()):
                return True
    return False


def selector_matches(selector, labels, any_value=()):
    """Whether a LabelSelector selects a pod with these labels; keys in
    any_value match whatever value the selector asks for."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if key not in any_value and labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if key in any_value:
            continue
        present = key in labels
        if ((operator == "In" and not (present and labels[key] in values))
                or (operator == "NotIn" and present and labels[key] in values)
                or (operator == "Exists" and not present)
                or (operator == "DoesNotExist" and present)):
            return False
    return True


def rule_covers_port(rule, port_name, port_number):
    ports = rule.get("ports") or []
    if not ports:
        return True  # no ports: every port
    for entry in ports:
        if (entry.get("protocol") or "TCP") != "TCP":
            continue
        port = entry.get("port")
        if port is None or port == port_name:
            return True
        if isinstance(port, int) and port <= port_number <= (entry.get("endPort") or port):
            return True
    return False


def http_peers(policies, pod_labels):
    """(policy, peer) for every ingress peer admitted to the server's HTTP
    port; peer None stands for a rule without `from` (every source)."""
    for policy in policies:
        spec = policy.get("spec") or {}
        if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
            continue
        if not selector_matches(spec.get("podSelector"), pod_labels):
            continue
        for rule in spec.get("ingress") or []:
            if rule_covers_port(rule, "http", 8080):
                for peer in rule.get("from") or [None]:
                    yield policy, peer


def peer_admits(peer, labels, any_value=(), other_namespace=False):
    """Whether an ingress peer admits a pod with these labels (from another
    namespace than the policy's, if other_namespace)."""
    if peer is None:
        return True
    if "ipBlock" in peer:
        return False
    if other_namespace and "namespaceSelector" not in peer:
        return False  # a bare podSelector means the policy's own namespace
    return selector_matches(peer.get("podSelector"), labels, any_value)


def check_ingress(problems, name, policies, pod_labels, production, scraped, metrics_path="/metrics"):
    peers = list(http_peers(policies, pod_labels))
    client = ", ".join(f"{k}={v}" for k, v in CLIENT_LABELS.items())
    problems.check(any(peer_admits(peer, CLIENT_LABELS) for _, peer in peers), name,
                   f"no NetworkPolicy admits pods labelled {client} to port http: callers cannot reach dedupd")
    if scraped:
        prometheus = ", ".join(f"{k}={v}" for k, v in PROMETHEUS_POD_LABELS.items())
        problems.check(any(peer_admits(peer, PROMETHEUS_POD_LABELS, PROMETHEUS_INSTANCE_KEYS, True)
                           for _, peer in peers), name,
                       f"no NetworkPolicy admits the Prometheus pods ({prometheus}) of another namespace "
                       f"to port http: the ServiceMonitor's scrapes of {metrics_path} would time out")
    if not production:
        return
    for policy, peer in peers:
        if peer is None:
            problems.check(False, name, f"{describe(policy)} admits port http from every source (an ingress "
                           "rule without `from`): production admits only pods selected by label")
        elif not ((peer.get("podSelector") or {}).get("matchLabels")):
            problems.check(False, name, f"{describe(policy)} admits port http from all pods (ingress peer "
                           f"{json.dumps(peer, sort_keys=True)} has no podSelector with matchLabels): "
                           "production admits only labelled client and Prometheus pods")


def pod_templates(docs):
    """(workload, pod spec) of every object that runs pods."""
    for doc in docs:
        spec = doc.get("spec") or {}
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield doc, (spec.get("template") or {}).get("spec") or {}
        elif doc.get("kind") == "CronJob":
            yield doc, ((((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {})
                        .get("spec") or {})
        elif doc.get("kind") == "Pod":
            yield doc, spec


def check_failpoints(problems, name, docs, configmaps):
    """Fault injection is a test facility: no overlay may turn it on."""
    for configmap in configmaps.values():
        problems.check(FAILPOINTS not in (configmap.get("data") or {}), name,
                       f"{describe(configmap)} defines {FAILPOINTS}: fault injection is for tests, "
                       "never a deployed manifest")
    for workload, pod in pod_templates(docs):
        for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            cwhere = f"{name} {describe(workload)} container {container.get('name')}"
            for env in container.get("env") or []:
                problems.check(env.get("name") != FAILPOINTS, cwhere,
                               f"sets {FAILPOINTS} in its env: fault injection is for tests, never a deployed manifest")
            for source in container.get("envFrom") or []:
                prefix = source.get("prefix") or ""
                ref = (source.get("configMapRef") or {}).get("name")
                if prefix and ref in configmaps:
                    problems.check(not any(prefix + key == FAILPOINTS for key in configmaps[ref].get("data") or {}),
                                   cwhere, f"gets {FAILPOINTS} from ConfigMap {ref} with prefix {prefix}: "
                                   "fault injection is for tests, never a deployed manifest")


def check_config_files(problems, name, configmaps, production):
    """TOML files in ConfigMaps parse, and hold no token hashes."""
    for configmap in configmaps.values():
        for key, text in (configmap.get("data") or {}).items():
            if not key.endswith(".toml"):
                continue
            cwhere = f"{name} {describe(configmap)} {key}"
            try:
                parsed = tomllib.loads(text)
            except tomllib.TOMLDecodeError as error:
                problems.check(False, cwhere, f"is not TOML: {error}")
                continue
            auth = parsed.get("auth")
            if not isinstance(auth, dict):
                continue
            problems.check(not auth.get("tokens"), cwhere,
                           f"lists [[auth.tokens]]: token hashes go in the Secret {AUTH_SECRET} "
                           "(DEDUPD_AUTH_CONFIG), not a ConfigMap")
            problems.check(not production, cwhere,
                           "has an [auth] table, which DEDUPD_AUTH_CONFIG replaces: put it in the Secret "
                           f"{AUTH_SECRET}")


def innermost_mount(container, path):
    """The volume mount of the container that holds `path` (normalized), the
    innermost when mounts nest; None when no mount does."""
    mounts = [m for m in container.get("volumeMounts") or []
              if path == posixpath.normpath(m.get("mountPath") or "")
              or path.startswith(posixpath.normpath(m.get("mountPath") or "").rstrip("/") + "/")]
    return max(mounts, key=lambda m: len(posixpath.normpath(m["mountPath"])), default=None)


def check_auth(problems, where, pod, container, env, example_secrets):
    """Production serves with bearer tokens: DEDUPD_AUTH_CONFIG names a file
    of the Secret dedupd-auth, mounted read-only."""
    literal = next((e for e in container.get("env") or [] if e.get("name") == "DEDUPD_AUTH_CONFIG"), None)
    path = env.get("DEDUPD_AUTH_CONFIG")
    if literal is not None:
        if not problems.check("value" in literal, where, "DEDUPD_AUTH_CONFIG must be a literal path (value), "
                              "so that validate can see which Secret provides it"):
            return
        path = literal["value"]
    if not problems.check(bool(path), where, "serves without auth: DEDUPD_AUTH_CONFIG is not set "
                          f"(components/production points it at the Secret {AUTH_SECRET})"):
        return
    path = posixpath.normpath(path)
    mount = innermost_mount(container, path)
    if not problems.check(mount is not None, where, f"serves without auth: DEDUPD_AUTH_CONFIG ({path}) is on no "
                          "volume mounted into the container, so no Secret provides it"):
        return
    volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), {})
    secret = volume.get("secret")
    if not problems.check(isinstance(secret, dict), where, f"serves without auth from a Secret: "
                          f"DEDUPD_AUTH_CONFIG ({path}) is on volume {mount.get('name')!r}, which is not a "
                          "Secret volume"):
        return
    problems.check(mount.get("readOnly") is True, where,
                   f"volume mount {mount.get('name')!r} of the auth config must be readOnly")
    problems.check(secret.get("optional") is not True, where,
                   "the auth Secret volume must not be optional: a pod must not start without it")
    problems.check(secret.get("secretName") == AUTH_SECRET, where,
                   f"the auth config must come from the Secret {AUTH_SECRET} ({AUTH_EXAMPLE}), "
                   f"not {secret.get('secretName')!r}")
    inner, key = volume_key(mount, secret, path)
    if not problems.check(key is not None, where, f"DEDUPD_AUTH_CONFIG ({path}) names {inner!r}, a file "
                          "the Secret volume's items do not provide"):
        return
    known = example_secrets.get(secret.get("secretName"))
    if known is not None:
        problems.check(key in known, where, f"DEDUPD_AUTH_CONFIG ({path}) reads key {key!r} of Secret "
                       f"{secret.get('secretName')}, whose example has {sorted(known)}")


def volume_key(mount, source, path):
    """Which key of a Secret or ConfigMap volume `source` the file at `path`
    (inside `mount`) is: (the path inside the volume, the key), the key None
    when the volume lists `items` and none of them is that path."""
    inner = posixpath.relpath(path, posixpath.normpath(mount["mountPath"]))
    if mount.get("subPath"):
        inner = posixpath.normpath(posixpath.join(mount["subPath"], inner))
    items = source.get("items")
    if not items:
        return inner, inner
    return inner, next((i.get("key") for i in items if posixpath.normpath(i.get("path") or "") == inner), None)


def configmap_file(problems, where, pod, container, configmaps, variable, path):
    """The text of the file that `variable` (`path`) names, when a ConfigMap
    rendered with the overlay provides it; else None, with a problem when
    the container cannot have the file at all."""
    path = posixpath.normpath(path)
    mount = innermost_mount(container, path)
    if not problems.check(mount is not None, where, f"{variable} ({path}) is on no volume mounted into "
                          "the container: dedupd cannot read it and exits at start"):
        return None
    volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), {})
    source = volume.get("configMap")
    if not isinstance(source, dict) or source.get("name") not in configmaps:
        return None  # a Secret, or a ConfigMap made elsewhere: nothing to read here
    inner, key = volume_key(mount, source, path)
    if not problems.check(key is not None, where, f"{variable} ({path}) names {inner!r}, a file the "
                          f"volume {mount.get('name')!r}'s items do not provide"):
        return None
    data = configmaps[source["name"]].get("data") or {}
    if not problems.check(key in data, where, f"{variable} ({path}) reads key {key!r} of ConfigMap "
                          f"{source['name']}, which has {sorted(data)}"):
        return None
    return data[key]


def check_proxy(problems, where, pod, container, configmaps, env):
    """`dedupd proxy`: an upstream to forward to, a drain that lets a
    forwarded request finish, and a claim namespace that the namespaces
    file lists (the proxy refuses to start otherwise). `env` is the
    container's whole environment."""
    upstream = env.get("DEDUPD_PROXY_UPSTREAM")
    if problems.check(bool(upstream), where, "dedupd proxy needs DEDUPD_PROXY_UPSTREAM "
                      "(http://host:port[/prefix] of the API it fronts): without it the container exits at start"):
        problems.check(PROXY_UPSTREAM.fullmatch(upstream) is not None, where,
                       f"DEDUPD_PROXY_UPSTREAM {upstream!r} is not http://host:port[/prefix]: the proxy "
                       "speaks plain HTTP/1.1 and takes no query string")

    # A request in flight when the drain starts may wait for the upstream
    # and then store its response. Cut in between, its claim stays in
    # progress until the lease lapses, and the client's retry reaches the
    # upstream a second time.
    try:
        upstream_ms = int(env.get("DEDUPD_PROXY_UPSTREAM_TIMEOUT_MS", PROXY_UPSTREAM_TIMEOUT_MS))
        deadline_ms = int(env.get("DEDUPD_REQUEST_DEADLINE_MS", REQUEST_DEADLINE_MS))
        drain_secs = int(env.get("DEDUPD_DRAIN_TIMEOUT_SECS", 20))
    except ValueError:
        problems.check(False, where, "DEDUPD_PROXY_UPSTREAM_TIMEOUT_MS, DEDUPD_REQUEST_DEADLINE_MS or "
                       "DEDUPD_DRAIN_TIMEOUT_SECS is not a number")
    else:
        problems.check(1000 <= upstream_ms <= 600000, where,
                       f"DEDUPD_PROXY_UPSTREAM_TIMEOUT_MS ({upstream_ms}) must be 1000 to 600000")
        problems.check(drain_secs * 1000 >= upstream_ms + deadline_ms, where,
                       f"DEDUPD_DRAIN_TIMEOUT_SECS ({drain_secs} s) must cover DEDUPD_PROXY_UPSTREAM_TIMEOUT_MS "
                       f"({upstream_ms}) + DEDUPD_REQUEST_DEADLINE_MS ({deadline_ms}): a request the drain cuts "
                       "after the upstream acted leaves its claim to lapse, and the retry runs it again")

    namespace, named_by = PROXY_NAMESPACE, "the default without DEDUPD_PROXY_CONFIG"
    proxy_config = env.get("DEDUPD_PROXY_CONFIG")
    if proxy_config:
        text = configmap_file(problems, where, pod, container, configmaps, "DEDUPD_PROXY_CONFIG", proxy_config)
        if text is None:
            return
        try:
            namespace = tomllib.loads(text).get("namespace", PROXY_NAMESPACE)
            named_by = "DEDUPD_PROXY_CONFIG's `namespace`"
        except tomllib.TOMLDecodeError:
            return  # check_config_files reports it
    config = env.get("DEDUPD_CONFIG")
    if not config:
        return  # no namespaces file: every namespace exists
    text = configmap_file(problems, where, pod, container, configmaps, "DEDUPD_CONFIG", config)
    if text is None:
        return
    try:
        listed = tomllib.loads(text).get("namespaces") or {}
    except tomllib.TOMLDecodeError:
        return
    problems.check(not listed or namespace in listed, where,
                   f"the proxy's claim namespace {namespace!r} ({named_by}) is not listed "
                   f"in DEDUPD_CONFIG ({config}), which lists {sorted(listed)}: dedupd proxy refuses to start")


def secret_text(secret, key):
    if key in (secret.get("stringData") or {}):
        return secret["stringData"][key]
    if key in (secret.get("data") or {}):
        return base64.b64decode(secret["data"][key]).decode("utf-8")
    return None


def check_auth_example(problems, secret, where=None, key="auth.toml"):
    """The example auth.toml (or the one the chart writes) is one dedupd
    would accept, with auth on."""
    where = where or f"{AUTH_EXAMPLE} {describe(secret)}"
    text = secret_text(secret, key)
    if not problems.check(text is not None, where, "must show the key auth.toml"):
        return
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        problems.check(False, where, f"auth.toml is not TOML: {error}")
        return
    problems.check(set(parsed) == {"auth"}, where,
                   f"auth.toml must hold the [auth] table alone (has {sorted(parsed)})")
    auth = parsed.get("auth") if isinstance(parsed.get("auth"), dict) else {}
    unknown = set(auth) - {"protect_metrics", "protect_health", "tokens"}
    problems.check(not unknown, where, f"[auth] has unknown keys {sorted(unknown)}")
    problems.check(auth.get("protect_health", False) is False, where,
                   "protect_health must stay false: Kubernetes probes send no token")
    tokens = auth.get("tokens") or []
    problems.check(bool(tokens), where, "lists no [[auth.tokens]], which turns auth off")
    for token in tokens:
        tname = token.get("name")
        problems.check(isinstance(tname, str) and TOKEN_NAME.fullmatch(tname) is not None, where,
                       f"token name {tname!r} is not [A-Za-z0-9_.-]{{1,64}}")
        problems.check(isinstance(token.get("sha256"), str) and SHA256_HEX.fullmatch(token["sha256"]) is not None,
                       where, f"token {tname}: sha256 must be 64 hex digits")
        namespaces = token.get("namespaces")
        problems.check(isinstance(namespaces, list) and bool(namespaces)
                       and all(n == "*" or (isinstance(n, str) and NAMESPACE.fullmatch(n)) for n in namespaces),
                       where, f"token {tname}: namespaces must be a list of namespaces or [\"*\"]")
        unknown = set(token) - {"name", "sha256", "namespaces"}
        problems.check(not unknown, where, f"token {tname} has unknown keys {sorted(unknown)}")


def check_overlay(problems, name, docs, endpoints, example_secrets):
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}

    for secret in by_kind.get("Secret", []):
        # The chart may write the auth Secret from hashes given at install
        # (auth.create); it is held to the example's rules. Nothing else.
        if name.startswith(CHART_STREAM) and (secret.get("metadata") or {}).get("name") == AUTH_SECRET:
            check_auth_example(problems, secret, f"{name} {describe(secret)}")
            continue
        problems.check(False, name, f"renders {describe(secret)}: Secrets are created by hand, never "
                       "committed in a kustomization (see base/secret.example.yaml)")
    check_failpoints(problems, name, docs, configmaps)

    deployments = by_kind.get("Deployment", [])
    if not problems.check(len(deployments) == 1, name, "expected exactly one Deployment"):
        return
    deployment = deployments[0]
    where = f"{name} {describe(deployment)}"
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    production = name.startswith("production") or annotations.get(PRODUCTION_ANNOTATION) == "production"
    check_config_files(problems, name, configmaps, production)
    spec = deployment["spec"]
    template = spec["template"]
    check_pod_template(problems, where, template)
    pod = template["spec"]
    containers = pod.get("containers") or []
    container = next((c for c in containers if c.get("name") == "dedupd"), None)
    if not problems.check(container is not None, where, "no container named dedupd"):
        return
    args = container.get("args")
    mode = args[0] if isinstance(args, list) and args and args[0] in OWN_PATHS else None
    problems.check(mode is not None and args == [mode], where,
                   "container dedupd must run `dedupd serve` or `dedupd proxy` (args [\"serve\"] or "
                   f"[\"proxy\"], settings in the environment), not args {args!r}")
    own = OWN_PATHS[mode or "serve"]
    forwarded = " (dedupd proxy forwards every other path to its upstream)" if mode == "proxy" else ""
    problems.check(((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable") == 0,
                   where, "rollingUpdate.maxUnavailable must be 0")
    problems.check((spec.get("minReadySeconds") or 0) > 0, where, "minReadySeconds must be set")
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    problems.check(ports.get("http") == 8080, where, "container port `http` must be 8080")
    for probe, path in (("readinessProbe", own["readyz"]), ("livenessProbe", own["livez"]),
                        ("startupProbe", own["livez"])):
        if probe == "startupProbe" and probe not in container:
            continue  # optional; when present, it asks what liveness asks
        get = ((container.get(probe) or {}).get("httpGet")) or {}
        problems.check(get.get("path") == path and get.get("port") == "http", where,
                       f"{probe} must GET {path} on port http{forwarded}")
    keys = {c.get("topologyKey") for c in pod.get("topologySpreadConstraints") or []}
    problems.check({"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, where,
                   "topologySpreadConstraints must cover zone and hostname")

    env = env_of(configmaps, container)
    # With the container's own env, which wins over envFrom as in Kubernetes.
    full_env = effective_env(configmaps, container)
    for key in ("DEDUPD_CQL_NODES", "DEDUPD_LOCAL_DC", "DEDUPD_REPLICATION"):
        problems.check(bool(env.get(key)), where, f"{key} is not set (a components/<database> sets it)")
    problems.check(env.get("DEDUPD_LOG_FORMAT") == "json", where, "DEDUPD_LOG_FORMAT must be json")
    if production:
        check_auth(problems, where, pod, container, env, example_secrets)
    if mode == "proxy":
        check_proxy(problems, where, pod, container, configmaps, full_env)

    # Shutdown: the kubelet must not kill the pod while it drains.
    pre_stop = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
    if problems.check(isinstance(pre_stop, int), where, "lifecycle.preStop.sleep.seconds must be set"):
        try:
            delay = int(full_env.get("DEDUPD_SHUTDOWN_DELAY_SECS", 5))
            drain = int(full_env.get("DEDUPD_DRAIN_TIMEOUT_SECS", 20))
        except ValueError:
            delay, drain = 5, 20
            problems.check(False, where, "DEDUPD_SHUTDOWN_DELAY_SECS/DEDUPD_DRAIN_TIMEOUT_SECS are not numbers")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        needed = pre_stop + delay + drain
        problems.check(grace > needed, where,
                       f"terminationGracePeriodSeconds ({grace}) must exceed preStop ({pre_stop}) + "
                       f"DEDUPD_SHUTDOWN_DELAY_SECS ({delay}) + DEDUPD_DRAIN_TIMEOUT_SECS ({drain}) = {needed}")

    # Replicas: the HPA owns the count when there is one.
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if hpas:
        hpa = hpas[0]["spec"]
        problems.check("replicas" not in spec, where,
                       "has spec.replicas while an HPA scales it: every apply would reset the count")
        problems.check(hpa.get("scaleTargetRef", {}).get("name") == deployment["metadata"]["name"], name,
                       "the HPA does not target the Deployment")
        min_replicas = hpa.get("minReplicas", 1)
    else:
        problems.check(isinstance(spec.get("replicas"), int), where,
                       "has no HPA, so spec.replicas must be set to a number")
        min_replicas = spec.get("replicas", 1)
    if production:
        problems.check(min_replicas >= 3, name, f"production runs at least 3 replicas (has {min_replicas})")
        problems.check(bool(hpas), name, "production has an HPA")
        problems.check(bool(by_kind.get("PodDisruptionBudget")), name, "production has a PDB")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        pspec = pdb["spec"]
        if "minAvailable" in pspec:
            problems.check(isinstance(pspec["minAvailable"], int) and pspec["minAvailable"] < min_replicas,
                           name, f"{describe(pdb)} minAvailable would block every node drain at "
                           f"{min_replicas} replica(s)")
        else:
            problems.check(pspec.get("maxUnavailable") not in (0, "0%"), name,
                           f"{describe(pdb)} maxUnavailable 0 blocks every node drain")

    # Service and ServiceMonitor agree on the port name and select the pods.
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    services = by_kind.get("Service", [])
    problems.check(len(services) == 1, name, "expected exactly one Service")
    for service in services:
        sspec = service["spec"]
        problems.check(all(pod_labels.get(k) == v for k, v in (sspec.get("selector") or {}).items()),
                       name, f"{describe(service)} does not select the Deployment's pods")
        problems.check(any(p.get("name") == "http" and p.get("targetPort") == "http"
                           for p in sspec.get("ports") or []), name,
                       f"{describe(service)} must expose port `http` to targetPort `http`")
        for monitor in by_kind.get("ServiceMonitor", []):
            mspec = monitor["spec"]
            wanted = (mspec.get("selector") or {}).get("matchLabels") or {}
            labels = service["metadata"].get("labels") or {}
            problems.check(all(labels.get(k) == v for k, v in wanted.items()), name,
                           f"{describe(monitor)} does not select {describe(service)}")
            port_names = {p.get("name") for p in sspec.get("ports") or []}
            for endpoint in mspec.get("endpoints") or []:
                problems.check(endpoint.get("port") in port_names, name,
                               f"{describe(monitor)} scrapes port {endpoint.get('port')!r}, "
                               f"which {describe(service)} does not name")
                problems.check(endpoint.get("path") == own["metrics"], name,
                               f"{describe(monitor)} path must be {own['metrics']}{forwarded}")

    # The migration Job: same image, bounded retries.
    jobs = by_kind.get("Job", [])
    problems.check(len(jobs) == 1, name, "expected one migration Job")
    for job in jobs:
        jwhere = f"{name} {describe(job)}"
        jspec = job["spec"]
        check_pod_template(problems, jwhere, jspec["template"])
        problems.check(isinstance(jspec.get("backoffLimit"), int) and jspec["backoffLimit"] <= 6, jwhere,
                       "backoffLimit must be set, at most 6")
        jcontainer = (jspec["template"]["spec"].get("containers") or [{}])[0]
        problems.check(jcontainer.get("args") == ["migrate"], jwhere, "must run `dedupd migrate`")
        problems.check(jcontainer.get("image") == container.get("image"), jwhere,
                       f"image {jcontainer.get('image')} differs from the server's {container.get('image')}")

    # Every dedupd pod is fenced in by a NetworkPolicy, both ways.
    policies = by_kind.get("NetworkPolicy", [])
    for workload, pod_template in [(deployment, template)] + [(j, j["spec"]["template"]) for j in jobs]:
        labels = (pod_template.get("metadata") or {}).get("labels") or {}
        covering = [p for p in policies
                    if all(labels.get(k) == v for k, v in
                           (((p["spec"].get("podSelector") or {}).get("matchLabels")) or {}).items())
                    and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes") or [])]
        problems.check(bool(covering), name,
                       f"no NetworkPolicy restricts both ingress and egress of {describe(workload)}'s pods")
    check_ingress(problems, name, policies, pod_labels, production, bool(by_kind.get("ServiceMonitor")),
                  own["metrics"])

    # The database settings match a database this repository deploys.
    local_dc = env.get("DEDUPD_LOCAL_DC")
    replication = parse_replication(env.get("DEDUPD_REPLICATION"))
    problems.check(replication is not None, where, f"DEDUPD_REPLICATION {env.get('DEDUPD_REPLICATION')!r} is not `n` or `dc:n,...`")
    for node in (env.get("DEDUPD_CQL_NODES") or "").split(","):
        host, _, port = node.strip().rpartition(":")
        if not problems.check(host in endpoints, where,
                              f"DEDUPD_CQL_NODES names {host!r}, which no database manifest here "
                              f"serves (known: {', '.join(sorted(endpoints)) or 'none'})"):
            continue
        db = endpoints[host]
        problems.check(port == "9042", where, f"contact point {node!r} is not the CQL port 9042")
        problems.check(local_dc == db["dc"], where,
                       f"DEDUPD_LOCAL_DC is {local_dc!r} but {db['source']} names its datacenter {db['dc']!r}")
        if replication:
            factor = replication.get(db["dc"], replication.get("*"))
            problems.check(factor == 3, where,
                           f"DEDUPD_REPLICATION gives datacenter {db['dc']!r} a factor of {factor}, not 3")
            problems.check(factor is None or factor <= db["nodes"], where,
                           f"replication factor {factor} exceeds the {db['nodes']} nodes of {db['source']}")
            unknown = set(replication) - {"*", db["dc"]}
            problems.check(not unknown, where, f"DEDUPD_REPLICATION names datacenters {sorted(unknown)} "
                           f"that {db['source']} does not have")
        for policy in policies:
            problems.check(egress_allows(policy, db["namespace"], db["pod_labels"], 9042), name,
                           f"{describe(policy)} does not let the pods reach {db['source']} "
                           f"(namespace {db['namespace']}) on 9042")


def check_database(problems, name, docs):
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for doc in docs:
        where = f"{name} {describe(doc)}"
        spec = doc.get("spec") or {}
        if doc["kind"] == "ScyllaCluster":
            racks = (spec.get("datacenter") or {}).get("racks") or []
            members = sum(int(r.get("members") or 0) for r in racks)
            problems.check(members == 3, where, f"has {members} members, dedupd's replication expects 3")
            for rack in racks:
                config = rack.get("scyllaConfig")
                if problems.check(config in configmaps, where,
                                  f"rack {rack.get('name')} uses scyllaConfig {config!r}, not defined here"):
                    text = (configmaps[config].get("data") or {}).get("scylla.yaml", "")
                    settings = yaml.safe_load(text) or {}
                    problems.check(settings.get("authenticator") == "PasswordAuthenticator", where,
                                   f"{config} must turn on PasswordAuthenticator")
        elif doc["kind"] == "K8ssandraCluster":
            cassandra = spec.get("cassandra") or {}
            problems.check(spec.get("auth", True) is True, where, "auth must stay on")
            problems.check(str(cassandra.get("serverVersion", "")).startswith("5.0."), where,
                           "serverVersion must be a Cassandra 5.0.x release")
            yaml_config = ((cassandra.get("config") or {}).get("cassandraYaml")) or {}
            for dc in cassandra.get("datacenters") or []:
                dc_yaml = dict(yaml_config)
                dc_yaml.update(((dc.get("config") or {}).get("cassandraYaml")) or {})
                dc_name = (dc.get("metadata") or {}).get("name")
                problems.check(dc_yaml.get("paxos_variant") == "v2", where,
                               f"datacenter {dc_name} must set paxos_variant: v2 (it has "
                               f"{dc_yaml.get('paxos_variant')!r})")
                problems.check(dc.get("size") == 3, where,
                               f"datacenter {dc_name} has {dc.get('size')} nodes, dedupd's replication expects 3")


def invariants(rendered_dir):
    streams = {}
    for entry in sorted(os.listdir(rendered_dir)):
        if entry.endswith(".yaml"):
            streams[entry[:-5]] = load_stream(os.path.join(rendered_dir, entry))
    problems = Problems()
    databases = {k: v for k, v in streams.items() if k.startswith("database-")}
    overlays = {k[len("overlay-"):]: v for k, v in streams.items() if k.startswith("overlay-")}
    examples = [d for k, v in streams.items() if k.startswith("example-") for d in v if d.get("kind") == "Secret"]
    example_secrets = {(d.get("metadata") or {}).get("name"): set(d.get("stringData") or {}) | set(d.get("data") or {})
                       for d in examples}
    endpoints = database_endpoints(databases)
    auth_examples = [d for d in examples if (d.get("metadata") or {}).get("name") == AUTH_SECRET]
    problems.check(bool(auth_examples), AUTH_EXAMPLE, f"no example of the Secret {AUTH_SECRET}")
    for secret in auth_examples:
        check_auth_example(problems, secret)
    for name, docs in databases.items():
        check_database(problems, name, docs)
    for name, docs in overlays.items():
        check_overlay(problems, name, docs, endpoints, example_secrets)
    for item in problems.items:
        print(f"ERROR invariant: {item}")
    if not problems.items:
        print(f"  {len(overlays)} overlays and {len(databases)} database manifests agree")
    return 1 if problems.items else 0


# ---------------------------------------------------------------- equivalence


def effective_env(configmaps, container):
    """Name -> value of a container's environment, ConfigMap values resolved
    and Secret references shown as secret:NAME/KEY."""
    env = dict(env_of(configmaps, container))
    for entry in container.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        env[entry["name"]] = f"secret:{ref.get('name')}/{ref.get('key')}" if ref else entry.get("value")
    return env


def workload_view(configmaps, pod_template):
    """What a pod does, without the names of generated objects."""
    pod = pod_template.get("spec") or {}
    volumes = {}
    for volume in pod.get("volumes") or []:
        if "configMap" in volume:
            ref = configmaps.get(volume["configMap"].get("name")) or {}
            volumes[volume["name"]] = {"configMap": {k: (tomllib.loads(v) if k.endswith(".toml") else v)
                                                     for k, v in (ref.get("data") or {}).items()},
                                       "defaultMode": volume["configMap"].get("defaultMode")}
        else:
            volumes[volume["name"]] = {k: v for k, v in volume.items() if k != "name"}
    containers = {}
    for container in pod.get("containers") or []:
        containers[container["name"]] = {
            "image repository": (container.get("image") or "").split("@")[0].rsplit(":", 1)[0],
            "env": effective_env(configmaps, container),
            **{key: container.get(key) for key in (
                "args", "command", "ports", "startupProbe", "livenessProbe", "readinessProbe", "lifecycle",
                "resources", "securityContext", "imagePullPolicy")},
            # Order carries no meaning here.
            "volumeMounts": {m["name"]: m for m in container.get("volumeMounts") or []},
        }
    return {
        "containers": containers,
        "volumes": volumes,
        **{key: pod.get(key) for key in (
            "securityContext", "automountServiceAccountToken", "enableServiceLinks",
            "terminationGracePeriodSeconds", "restartPolicy", "topologySpreadConstraints")},
        "pod labels": {k: v for k, v in ((pod_template.get("metadata") or {}).get("labels") or {}).items()
                       if k in SELECTOR_LABELS},
    }


# Labels that select pods; the others (version, managed-by, chart) differ by
# tool and are not compared.
SELECTOR_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")


def stream_view(docs):
    """The parts of a rendered stream that must agree between the overlay
    and the chart, by kind and name."""
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    view = {}
    for doc in docs:
        kind, meta, spec = doc["kind"], doc.get("metadata") or {}, doc.get("spec") or {}
        key = f"{kind}/{meta.get('name')}"
        if kind == "Deployment":
            view[key] = {
                "environment": (meta.get("annotations") or {}).get(PRODUCTION_ANNOTATION),
                "pod": workload_view(configmaps, spec.get("template") or {}),
                **{k: spec.get(k) for k in ("replicas", "strategy", "minReadySeconds", "selector",
                                              "revisionHistoryLimit", "progressDeadlineSeconds")},
            }
        elif kind == "Job":
            view[key] = {
                "pod": workload_view(configmaps, spec.get("template") or {}),
                **{k: spec.get(k) for k in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished")},
            }
        elif kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Service",
                      "ServiceMonitor", "PrometheusRule"):
            view[key] = spec
        elif kind == "ServiceAccount":
            view[key] = {"automountServiceAccountToken": doc.get("automountServiceAccountToken")}
        elif kind == "ConfigMap" and (meta.get("labels") or {}).get("grafana_dashboard") == "1":
            view[key] = {k: json.loads(v) for k, v in (doc.get("data") or {}).items()}
    return view


def differences(path, left, right, out):
    if isinstance(left, dict) and isinstance(right, dict):
        for k in sorted(set(left) | set(right), key=str):
            if k not in right:
                out.append(f"{path}.{k}: only in the overlay: {json.dumps(left[k], default=str)[:160]}")
            elif k not in left:
                out.append(f"{path}.{k}: only in the chart: {json.dumps(right[k], default=str)[:160]}")
            else:
                differences(f"{path}.{k}", left[k], right[k], out)
    elif isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for i, (a, b) in enumerate(zip(left, right)):
            differences(f"{path}[{i}]", a, b, out)
    elif left != right:
        out.append(f"{path}: overlay {json.dumps(left, default=str)[:160]}, chart {json.dumps(right, default=str)[:160]}")


def equivalent(overlay_path, chart_path):
    """The chart renders what the overlay renders where it matters: args,
    env, probes, ports, security context, resources, HPA, PDB, policies,
    monitoring. Objects only one of them has are differences too."""
    overlay, chart = stream_view(load_stream(overlay_path)), stream_view(load_stream(chart_path))
    found = []
    differences("", overlay, chart, found)
    left, right = os.path.basename(overlay_path)[:-5], os.path.basename(chart_path)[:-5]
    for item in found:
        print(f"ERROR equivalence: {right} differs from {left} at {item.lstrip('.')}")
    if not found:
        print(f"  {right} matches {left} ({len(chart)} objects compared)")
    return 1 if found else 0


# ---------------------------------------------------------------- self-test


def edit_yaml(path, change):
    with open(path, encoding="utf-8") as handle:
        docs = list(yaml.safe_load_all(handle))
    change(docs)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump_all(docs, handle, sort_keys=False)


def edit_text(path, old, new):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if old not in text:
        raise SystemExit(f"self-test is stale: {old!r} not found in {path}")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace(old, new, 1))


def append_text(path, text):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def dedupd_container(docs):
    return docs[0]["spec"]["template"]["spec"]["containers"][0]


def auth_volume_from_configmap(docs):
    volume = docs[0]["spec"]["template"]["spec"]["volumes"][0]
    del volume["secret"]
    volume["configMap"] = {"name": "dedupd-auth"}


# name -> (description, file under deploy/k8s, change, text validate must print)
MUTATIONS = {
    "core-wrong-type": (
        "Deployment spec.replicas: \"two\" (a string) in overlays/dev",
        "overlays/dev/deployment.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"].update(replicas="two")),
        "spec.replicas: 'two' is not of type 'integer'",
    ),
    "core-unknown-field": (
        "unknown field `livenessprobe` (lower case) in the Deployment's container, under --strict",
        "base/deployment.yaml",
        lambda p: edit_yaml(p, lambda d: dedupd_container(d).update(livenessprobe={"periodSeconds": 10})),
        "'livenessprobe' was unexpected",
    ),
    "core-removed-api": (
        "PodDisruptionBudget as policy/v1beta1 (gone since 1.25): kubernetes-validate only warns",
        "base/pdb.yaml",
        lambda p: edit_yaml(p, lambda d: d[0].update(apiVersion="policy/v1beta1")),
        "Couldn't find schema for kind PodDisruptionBudget",
    ),
    "scylla-wrong-type": (
        "ScyllaCluster rack members: \"1\" (a string)",
        "scylla/scyllacluster.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"]["datacenter"]["racks"][0].update(members="1")),
        "'1' is not of type 'integer'",
    ),
    "scylla-misspelled-field": (
        "ScyllaCluster spec.developerMod (misspelled)",
        "scylla/scyllacluster.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"].update(developerMod=False)),
        "'developerMod' was unexpected",
    ),
    "k8ssandra-wrong-type": (
        "K8ssandraCluster datacenter size: \"3\" (a string)",
        "cassandra/k8ssandracluster.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"]["cassandra"]["datacenters"][0].update(size="3")),
        "'3' is not of type 'integer'",
    ),
    "servicemonitor-wrong-port-type": (
        "ServiceMonitor endpoint port: 8080 (a number; it must name the Service port)",
        "base/servicemonitor.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"]["endpoints"][0].update(port=8080)),
        "8080 is not of type 'string'",
    ),
    "render-missing-resource": (
        "kustomization listing a file that does not exist",
        "base/kustomization.yaml",
        lambda p: edit_text(p, "  - migrate-job.yaml\n", "  - migrate-job.yaml\n  - missing.yaml\n"),
        "render failed",
    ),
    "invariant-local-dc": (
        "components/cassandra with DEDUPD_LOCAL_DC=dc2, a datacenter the K8ssandraCluster lacks",
        "components/cassandra/kustomization.yaml",
        lambda p: edit_text(p, "DEDUPD_LOCAL_DC=dc1", "DEDUPD_LOCAL_DC=dc2"),
        "DEDUPD_LOCAL_DC is 'dc2'",
    ),
    "invariant-egress-namespace": (
        "components/scylla's NetworkPolicy patch letting CQL out to namespace scylladb, not scylla",
        "components/scylla/kustomization.yaml",
        lambda p: edit_text(p, "kubernetes.io/metadata.name: scylla\n", "kubernetes.io/metadata.name: scylladb\n"),
        "does not let the pods reach ScyllaCluster/scylla",
    ),
    "invariant-grace-period": (
        "terminationGracePeriodSeconds 25, shorter than preStop + shutdown delay + drain",
        "base/deployment.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=25)),
        "terminationGracePeriodSeconds (25) must exceed",
    ),
    "invariant-paxos-v1": (
        "K8ssandraCluster with paxos_variant: v1",
        "cassandra/k8ssandracluster.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"]["cassandra"]["config"]["cassandraYaml"].update(paxos_variant="v1")),
        "must set paxos_variant: v2",
    ),
    "invariant-secret-rendered": (
        "secret.example.yaml added to the base kustomization",
        "base/kustomization.yaml",
        lambda p: edit_text(p, "  - migrate-job.yaml\n", "  - migrate-job.yaml\n  - secret.example.yaml\n"),
        "Secrets are created by hand",
    ),
    "invariant-auth-env-removed": (
        "components/production without DEDUPD_AUTH_CONFIG: production serving without auth",
        "components/production/deployment.yaml",
        lambda p: edit_yaml(p, lambda d: dedupd_container(d).pop("env")),
        "serves without auth: DEDUPD_AUTH_CONFIG is not set",
    ),
    "invariant-auth-mount-removed": (
        "components/production without the auth Secret's volumeMount (DEDUPD_AUTH_CONFIG names a missing file)",
        "components/production/deployment.yaml",
        lambda p: edit_yaml(p, lambda d: dedupd_container(d).pop("volumeMounts")),
        "is on no volume mounted into the container",
    ),
    "invariant-auth-not-secret": (
        "components/production's auth volume from a ConfigMap instead of the Secret",
        "components/production/deployment.yaml",
        lambda p: edit_yaml(p, auth_volume_from_configmap),
        "which is not a Secret volume",
    ),
    "invariant-failpoints-configmap": (
        "DEDUPD_FAILPOINTS in the dev overlay's dedupd-env ConfigMap (no overlay may inject faults)",
        "overlays/dev/kustomization.yaml",
        lambda p: edit_text(p, "      - RUST_LOG=info,dedupd=debug\n",
                            "      - RUST_LOG=info,dedupd=debug\n      - DEDUPD_FAILPOINTS=claim_insert=after:0.05\n"),
        "defines DEDUPD_FAILPOINTS",
    ),
    "invariant-failpoints-env": (
        "DEDUPD_FAILPOINTS in the env of base's dedupd container",
        "base/deployment.yaml",
        lambda p: edit_yaml(p, lambda d: dedupd_container(d)["env"].append(
            {"name": "DEDUPD_FAILPOINTS", "value": "claim_insert=after:0.05"})),
        "sets DEDUPD_FAILPOINTS in its env",
    ),
    "invariant-networkpolicy-open": (
        "the NetworkPolicy's client peer without its podSelector (namespaceSelector {} alone: every pod)",
        "base/networkpolicy.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"]["ingress"][0]["from"][0].pop("podSelector")),
        "admits port http from all pods",
    ),
    "invariant-networkpolicy-no-prometheus": (
        "the NetworkPolicy without its Prometheus peer (the ServiceMonitor could not scrape)",
        "base/networkpolicy.yaml",
        lambda p: edit_yaml(p, lambda d: d[0]["spec"]["ingress"][0]["from"].pop(1)),
        "no NetworkPolicy admits the Prometheus pods",
    ),
    # overlays/proxy: `dedupd proxy` in front of an API.
    "proxy-readiness-probe-path": (
        "overlays/proxy's readinessProbe on /readyz, a path the proxy forwards to the upstream",
        "overlays/proxy/deployment.yaml",
        lambda p: edit_text(p, "path: /_dedupd/readyz", "path: /readyz"),
        "readinessProbe must GET /_dedupd/readyz on port http",
    ),
    "proxy-upstream-missing": (
        "overlays/proxy without DEDUPD_PROXY_UPSTREAM (the proxy exits at start)",
        "overlays/proxy/deployment.yaml",
        lambda p: edit_yaml(p, lambda d: dedupd_container(d).update(env=[
            e for e in dedupd_container(d)["env"] if e["name"] != "DEDUPD_PROXY_UPSTREAM"])),
        "dedupd proxy needs DEDUPD_PROXY_UPSTREAM",
    ),
    "proxy-drain-short": (
        "overlays/proxy's upstream timeout raised to 60 s without a longer drain",
        "overlays/proxy/deployment.yaml",
        lambda p: edit_text(p, 'value: "30000"', 'value: "60000"'),
        "DEDUPD_DRAIN_TIMEOUT_SECS (45 s) must cover DEDUPD_PROXY_UPSTREAM_TIMEOUT_MS (60000)",
    ),
    "proxy-namespace-unlisted": (
        "overlays/proxy's namespaces file without the proxy's claim namespace",
        "overlays/proxy/namespaces.toml",
        lambda p: edit_text(p, "[namespaces.proxy]", "[namespaces.orders]"),
        "the proxy's claim namespace 'proxy' (DEDUPD_PROXY_CONFIG's `namespace`) is not listed",
    ),
    # The Helm chart (deploy/helm, rendered by validate as overlay-helm*).
    "chart-values-not-in-schema": (
        "a misspelled value (hpa.targetCPU) in deploy/helm/ci-values.yaml: values.schema.json refuses it",
        "../helm/ci-values.yaml",
        lambda p: append_text(p, "hpa:\n  targetCPU: 50\n"),
        "additional properties 'targetCPU' not allowed",
    ),
    "chart-values-production-replicas": (
        "hpa.minReplicas 2 with environment production: values.schema.json refuses it",
        "../helm/ci-values.yaml",
        lambda p: append_text(p, "hpa:\n  minReplicas: 2\n"),
        "minimum: got 2, want 3",
    ),
    "chart-values-failpoints": (
        "DEDUPD_FAILPOINTS in the chart's config: values.schema.json refuses it",
        "../helm/dedupd/values.yaml",
        lambda p: edit_text(p, "  DEDUPD_KEYSPACE: dedupd\n",
                            "  DEDUPD_KEYSPACE: dedupd\n  DEDUPD_FAILPOINTS: claim_insert=after:0.05\n"),
        "invalid propertyName 'DEDUPD_FAILPOINTS'",
    ),
    "chart-values-run-as-user": (
        "securityContext.runAsUser 1000 in ci-values.yaml (valid for the schema, not for the invariants)",
        "../helm/ci-values.yaml",
        lambda p: append_text(p, "securityContext:\n  runAsUser: 1000\n  runAsGroup: 65532\n"),
        "pod runAsUser must be 65532",
    ),
    "chart-values-grace-period": (
        "terminationGracePeriodSeconds 25 in ci-values.yaml, shorter than preStop + shutdown delay + drain",
        "../helm/ci-values.yaml",
        lambda p: append_text(p, "terminationGracePeriodSeconds: 25\n"),
        "terminationGracePeriodSeconds (25) must exceed",
    ),
    "chart-readiness-probe-path": (
        "the chart's readinessProbe on /livez instead of /readyz",
        "../helm/dedupd/templates/deployment.yaml",
        lambda p: edit_text(p, "path: /readyz", "path: /livez"),
        "readinessProbe must GET /readyz on port http",
    ),
    "chart-privilege-escalation": (
        "the chart's container securityContext with allowPrivilegeEscalation: true",
        "../helm/dedupd/templates/_helpers.tpl",
        lambda p: edit_text(p, "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
        "allowPrivilegeEscalation must be false",
    ),
    "chart-auth-secret-protect-health": (
        "the chart's auth Secret with protect_health = true (probes send no token)",
        "../helm/dedupd/templates/auth-secret.yaml",
        lambda p: edit_text(p, "protect_health = false", "protect_health = true"),
        "protect_health must stay false",
    ),
    "chart-equivalence-liveness": (
        "the chart's livenessProbe failureThreshold 5, the overlays' 3",
        "../helm/dedupd/templates/deployment.yaml",
        lambda p: edit_text(p, "periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 3",
                            "periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 5"),
        "overlay-helm differs from overlay-production at Deployment/dedupd.pod.containers.dedupd.livenessProbe.failureThreshold",
    ),
    "chart-equivalence-hpa": (
        "the chart's default hpa.maxReplicas 10, the production overlay's 12",
        "../helm/dedupd/values.yaml",
        lambda p: edit_text(p, "  maxReplicas: 12\n", "  maxReplicas: 10\n"),
        "overlay-helm differs from overlay-production at HorizontalPodAutoscaler/dedupd.maxReplicas",
    ),
    "chart-rule-unknown-field": (
        "a rule in deploy/monitoring/dedupd-rules.yaml with an unknown field: the chart's PrometheusRule fails its schema",
        "../monitoring/dedupd-rules.yaml",
        lambda p: edit_text(p, "      - record: dedupd:claims:rate5m\n",
                            "      - record: dedupd:claims:rate5m\n        severity: page\n"),
        "'severity' was unexpected",
    ),
    "chart-rules-missing": (
        "deploy/monitoring/dedupd-rules.yaml absent: the chart's link to it dangles",
        "../monitoring/dedupd-rules.yaml",
        os.remove,
        "links to ../../../monitoring/dedupd-rules.yaml, which does not exist",
    ),
}


def main(argv):
    if len(argv) >= 4 and argv[1] == "split":
        return split(argv[2], argv[3], argv[4:])
    if len(argv) == 3 and argv[1] == "invariants":
        return invariants(argv[2])
    if len(argv) == 4 and argv[1] == "equivalent":
        return equivalent(argv[2], argv[3])
    if len(argv) == 2 and argv[1] == "mutations":
        for name, (description, *_rest) in MUTATIONS.items():
            print(f"{name}\t{description}")
        return 0
    if len(argv) == 4 and argv[1] == "mutate":
        description, relative, change, expected = MUTATIONS[argv[3]]
        path = os.path.join(argv[2], relative)
        with open(path, encoding="utf-8") as handle:
            before = handle.read()
        change(path)
        if not os.path.exists(path):
            print(expected)
            return 0
        with open(path, encoding="utf-8") as handle:
            if handle.read() == before:
                raise SystemExit(f"self-test mutation {argv[3]} changed nothing in {relative}")
        print(expected)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
