"""Generate an Envoy bootstrap, run Envoy, read its stats and logs.

    env = Envoy(envoy_bin, workdir, wasm=wasm_path, upstream_port=echo.port,
                listeners={"main": {"jwks_uri": jwks.url}, "plain": None},
                jwks_servers=[jwks])
    env.start()                       # waits for /ready and every listener
    env.request("main", "GET", "/x", headers=[...])
    env.stat("jwt_jwks_allowed")      # sum of counters whose name contains it
    env.stop()

Listener values are the filter's JSON configuration (a dict, or a str sent as
is), or None for a listener without the wasm filter. Every JWKS server given in
jwks_servers gets a STATIC cluster named after its authority ("127.0.0.1:PORT"),
the filter's default jwks_upstream. Extra clusters: Cluster(...).

access_logs={"main": IDENTITY_LOG_FORMAT} gives listener "main" a file access
log with that format (env.access_log_lines("main"), env.wait_for_access_log());
Envoy then flushes its log files every 50 ms.
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

from . import client, procs
from .ports import HOST, accepts_connections, free_port

WASM_FILTER_NAME = "jwt_jwks"
UPSTREAM_CLUSTER = "upstream"
# The filter's identity (set_property "jwt_jwks_identity"), which Envoy keeps
# in filter state as "wasm.jwt_jwks_identity"; one line per request.
IDENTITY_LOG_FORMAT = "%FILTER_STATE(wasm.jwt_jwks_identity:PLAIN)%\n"


# ---------------------------------------------------------------- YAML
def _scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    # a JSON string is a valid YAML double-quoted scalar
    return json.dumps(str(v))


def to_yaml(obj, indent=0):
    """Block-style YAML for dict/list/scalars (enough for an Envoy bootstrap)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            key = _scalar(k) if not str(k).replace("_", "").isalnum() else str(k)
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(v, indent + 1)))
            elif isinstance(v, (dict, list)):
                lines.append("%s%s: %s\n" % (pad, key, "{}" if isinstance(v, dict) else "[]"))
            else:
                lines.append("%s%s: %s\n" % (pad, key, _scalar(v)))
        return "".join(lines)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 1)
                # put the first line after the dash
                first, rest = sub[len(pad) + 2:].split("\n", 1)
                lines.append("%s- %s\n%s" % (pad, first, rest))
            else:
                lines.append("%s- %s\n" % (pad, _scalar(item) if not isinstance(item, (dict, list)) else ("{}" if isinstance(item, dict) else "[]")))
        return "".join(lines)
    return pad + _scalar(obj) + "\n"


# ---------------------------------------------------------------- config
class Cluster:
    """A STATIC cluster with one endpoint on 127.0.0.1. With tls_ca, the
    upstream connection uses TLS (SNI `sni`) and verifies the server with
    that CA file (and, if san is given, the certificate's DNS SAN)."""

    def __init__(self, name, port, host=HOST, tls_ca=None, sni="localhost",
                 san=None, connect_timeout="1s"):
        self.name = name
        self.port = port
        self.host = host
        self.tls_ca = tls_ca
        self.sni = sni
        self.san = san
        self.connect_timeout = connect_timeout

    def to_dict(self):
        c = {
            "name": self.name,
            "type": "STATIC",
            "connect_timeout": self.connect_timeout,
            "load_assignment": {
                "cluster_name": self.name,
                "endpoints": [{
                    "lb_endpoints": [{
                        "endpoint": {"address": {"socket_address": {
                            "address": self.host, "port_value": self.port}}}
                    }]
                }],
            },
        }
        if self.tls_ca:
            validation = {"trusted_ca": {"filename": self.tls_ca}}
            if self.san:
                validation["match_typed_subject_alt_names"] = [
                    {"san_type": "DNS", "matcher": {"exact": self.san}}
                ]
            c["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": self.sni,
                    "common_tls_context": {"validation_context": validation},
                },
            }
        return c


class WithVmEnv:
    """A filter configuration whose VM gets environment variables: the
    names in host_env_keys, read from Envoy's own environment
    (vm_config.environment_variables.host_env_keys)."""

    def __init__(self, config, host_env_keys):
        self.config = config
        self.host_env_keys = list(host_env_keys)


def wasm_filter(wasm_path, filter_config, vm_id=WASM_FILTER_NAME):
    env_keys = []
    if isinstance(filter_config, WithVmEnv):
        env_keys, filter_config = filter_config.host_env_keys, filter_config.config
    if isinstance(filter_config, (dict, list)):
        value = json.dumps(filter_config)
    else:
        value = str(filter_config)
    out = {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": WASM_FILTER_NAME,
                "root_id": WASM_FILTER_NAME,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value,
                },
                "fail_open": False,
            },
        },
    }
    if env_keys:
        out["typed_config"]["config"]["vm_config"]["environment_variables"] = {
            "host_env_keys": env_keys}
    return out


def file_access_log(path, log_format):
    """An HttpConnectionManager access_log entry writing `log_format` lines
    (Envoy's command operators, e.g. %FILTER_STATE(key:PLAIN)%) to `path`."""
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"text_format_source": {"inline_string": log_format}},
        },
    }


def listener(name, port, wasm_path=None, filter_config=None, route_timeout="30s",
             access_log=None):
    """access_log: None, or (path, format) for a file access log."""
    filters = []
    if filter_config is not None:
        if not wasm_path:
            raise ValueError("listener %r has a filter config but no wasm path" % name)
        filters.append(wasm_filter(wasm_path, filter_config))
    filters.append({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    })
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_" + name,
        "codec_type": "AUTO",
        "route_config": {
            "name": "route_" + name,
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{
                    "match": {"prefix": "/"},
                    "route": {"cluster": UPSTREAM_CLUSTER, "timeout": route_timeout},
                }],
            }],
        },
        "http_filters": filters,
    }
    if access_log is not None:
        hcm["access_log"] = [file_access_log(*access_log)]
    return {
        "name": "listener_" + name,
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm,
            }],
        }],
    }


def bootstrap(admin_port, listeners, upstream_port, clusters=(), wasm_path=None,
              access_logs=None):
    """listeners: list of (name, port, filter_config or None);
    access_logs: {listener name: (path, format)}."""
    access_logs = access_logs or {}
    all_clusters = [Cluster(UPSTREAM_CLUSTER, upstream_port).to_dict()]
    all_clusters += [c.to_dict() for c in clusters]
    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [listener(n, p, wasm_path, cfg, access_log=access_logs.get(n))
                          for n, p, cfg in listeners],
            "clusters": all_clusters,
        },
    }


# ---------------------------------------------------------------- process
class EnvoyStartError(RuntimeError):
    pass


class Envoy(procs.ServerProcess):
    def __init__(self, binary, workdir, upstream_port, listeners, wasm=None,
                 jwks_servers=(), clusters=(), concurrency=1, log_level="info",
                 component_log_level="wasm:debug", extra_args=(), name="envoy",
                 static_config=None, admin_port=None, access_logs=None):
        """static_config: a ready-made config text to run instead of a generated
        one; then admin_port and listeners ({name: port}) must be given.
        access_logs: {listener name: format} for file access logs (written to
        <workdir>/<name>-<listener>.access.log)."""
        self.binary = os.path.abspath(binary) if os.sep in binary else binary
        self.workdir = os.path.abspath(workdir)
        self.wasm = os.path.abspath(wasm) if wasm else None
        self.upstream_port = upstream_port
        if isinstance(listeners, dict):
            listeners = list(listeners.items())
        self.listener_configs = list(listeners)
        self.clusters = [Cluster(s.cluster_name, s.port) for s in jwks_servers]
        self.clusters += list(clusters)
        self.concurrency = concurrency
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.extra_args = list(extra_args)
        self.name = name
        self.proc = None
        self.static_config = static_config
        self.ports = dict(self.listener_configs) if static_config is not None else {}
        self.admin_port = admin_port
        os.makedirs(workdir, exist_ok=True)
        self.config_path = os.path.join(workdir, name + ".yaml")
        self.log_path = os.path.join(workdir, name + ".log")
        self.access_logs = {
            lname: (os.path.join(self.workdir, "%s-%s.access.log" % (name, lname)), fmt)
            for lname, fmt in (access_logs or {}).items()
        }
        if self.access_logs and "--file-flush-interval-msec" not in self.extra_args:
            self.extra_args += ["--file-flush-interval-msec", "50"]

    # --- config
    def write_config(self):
        if self.static_config is not None:
            with open(self.config_path, "w") as f:
                f.write(self.static_config)
            return None
        self.admin_port = free_port()
        used = {self.admin_port}
        self.ports = {}
        for lname, _ in self.listener_configs:
            p = free_port()
            while p in used:
                p = free_port()
            used.add(p)
            self.ports[lname] = p
        cfg = bootstrap(
            self.admin_port,
            [(n, self.ports[n], c) for n, c in self.listener_configs],
            self.upstream_port,
            self.clusters,
            self.wasm,
            self.access_logs,
        )
        with open(self.config_path, "w") as f:
            f.write(to_yaml(cfg))
        return cfg

    def command(self):
        cmd = [
            self.binary,
            "-c", self.config_path,
            "--concurrency", str(self.concurrency),
            "--log-level", self.log_level,
            "--disable-hot-restart",
        ]
        if self.component_log_level:
            cmd += ["--component-log-level", self.component_log_level]
        return cmd + self.extra_args

    # --- lifecycle
    def _spawn(self):
        if self.wasm is not None and not os.path.isfile(self.wasm):
            raise EnvoyStartError("wasm module not found: %s" % self.wasm)
        self.write_config()
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: killpg on stop
                cwd=self.workdir,
            )
        finally:
            logf.close()

    def _is_ready(self):
        try:
            with urllib.request.urlopen(
                "http://%s:%d/ready" % (HOST, self.admin_port), timeout=1
            ) as r:
                if r.status != 200 or b"LIVE" not in r.read():
                    return False
        except (urllib.error.URLError, OSError):
            return False
        return all(accepts_connections(p) for p in self.ports.values())

    def start(self, timeout=30.0):
        self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise EnvoyStartError(
                    "envoy exited with code %s during start-up; %s"
                    % (code, self._failure_report()))
            if self._is_ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise EnvoyStartError(
            "envoy not ready after %.0fs; %s" % (timeout, self._failure_report()))

    def admin(self, path, method="GET"):
        return client.request(self.admin_port, method, path, timeout=10)

    # --- observation
    def error_lines(self):
        """Log lines at error/critical level (e.g. the filter refusing its
        configuration)."""
        return [l for l in self.log_text().splitlines()
                if "][error][" in l or "][critical][" in l]

    def interesting_tail(self, n=60):
        """The last n log lines without Envoy's start-up banner (extension
        lists, header maps), which says nothing about the filter."""
        lines = []
        for line in self.log_text().splitlines():
            if "][info][main] [source/server/server.cc:" in line:
                continue
            if line.startswith(" ") or line.startswith("\t"):
                continue
            lines.append(line)
        return "\n".join(lines[-n:])

    # The filter adds its counts to Envoy's counters on each tick (100 ms),
    # not per request: a read waits for the next flush of every worker.
    METRIC_FLUSH_S = 0.25

    def stats(self):
        """{name: value} for counters and gauges (from /stats?format=json),
        once the filter's pending counts have been flushed."""
        time.sleep(self.METRIC_FLUSH_S)
        r = self.admin("/stats?format=json")
        if r.status != 200:
            raise RuntimeError("admin /stats failed: %r" % r)
        out = {}
        for entry in r.json().get("stats", []):
            if "name" in entry and "value" in entry:
                out[entry["name"]] = entry["value"]
        return out

    def stats_matching(self, substring):
        return {k: v for k, v in self.stats().items() if substring in k}

    def stat(self, substring):
        """Sum of every counter/gauge whose name contains `substring`
        (Envoy may prefix custom metric names, e.g. wasmcustom.)."""
        return sum(v for v in self.stats_matching(substring).values()
                   if isinstance(v, (int, float)))

    def access_log_lines(self, listener_name):
        """The lines written so far to a listener's access log."""
        path = self.access_logs[listener_name][0]
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_for_access_log(self, listener_name, predicate, timeout=10.0):
        """Poll a listener's access log until a line satisfies predicate (a
        callable, or a substring); returns that line, or None."""
        if isinstance(predicate, str):
            text = predicate
            predicate = lambda line: text in line  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            for line in self.access_log_lines(listener_name):
                if predicate(line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def wait_for_log(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return True
            time.sleep(0.1)
        return False
