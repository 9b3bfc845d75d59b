"""Run the end-to-end scenarios on nginx + ngx_wasm_module (Kong's proxy-wasm
host) instead of Envoy.

    env = Nginx(nginx_bin, workdir, wasm=wasm_path, upstream_port=echo.port,
                listeners={"main": {"jwks_uri": jwks.url}, "plain": None},
                jwks_servers=[jwks])
    env.start()                       # waits until every listener accepts
    env.request("main", "GET", "/x", headers=[...])
    env.stop()

The interface is the Envoy launcher's (e2e/envoy.py), so the scenarios run
unchanged. As a pytest plugin it swaps the host of the whole suite:

    NGX_WASM_NGINX=/path/to/nginx ENVOY_BIN=/path/to/nginx PYTHONPATH=tests/e2e \\
        .venv/bin/python -m pytest tests/e2e -p e2e.nginx

The nginx binary must be built with ngx_wasm_module (any runtime). What this
host cannot do, and the launcher therefore refuses, rather than pretending:
- metrics: plain nginx exposes proxy-wasm metrics nowhere (Kong reads them
  through its Lua library), so stats()/stat() raise HostLimitation;
- Envoy's admin interface and access-log command operators (filter state);
- named upstream clusters: dispatch_http_call takes host:port here, so a
  filter configuration naming an Envoy cluster in jwks_upstream is passed as
  written and its callouts fail (`resolver failure`), as they would in Kong.
A Cluster with tls_ca turns on certificate and host verification for every
wasm socket (tls_verify_cert/tls_verify_host with that CA), and "localhost"
resolves to 127.0.0.1 for callouts (resolver_add).
"""

import json
import os
import subprocess
import time

from . import procs
from .ports import HOST, accepts_connections, free_port

WASM_FILTER_NAME = "jwt_jwks"
NGINX_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")


class HostLimitation(NotImplementedError):
    """Something the Envoy launcher offers that nginx + ngx_wasm_module has not."""


class NginxStartError(RuntimeError):
    pass


def nginx_quote(text):
    """A single-quoted nginx argument holding `text` exactly (nginx turns
    \\\\, \\' and \\n, \\t, \\r inside quotes into characters)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def filter_config_text(cfg):
    return cfg if isinstance(cfg, str) else json.dumps(cfg)


def nginx_conf(workdir, wasm_path, listeners, upstream_port, workers=1, log_path=None,
               log_level="info", shm_size="16m", tls_ca=None, extra_wasm=(), extra_http=(),
               kong_upstream_uri=False):
    """listeners: list of (name, port, filter_config or None). With
    kong_upstream_uri, the location proxies like Kong's template, to
    `$upstream_uri`, which Kong builds from the router's path and `?$args`
    (`kong/runloop/handler.lua`, access phase); here `$uri$is_args$args`."""
    tmp = os.path.join(workdir, "tmp")
    lines = [
        "daemon off;",
        "master_process on;",
        # before wasm{}: ngx_wasm_module sizes its metrics from the worker count
        "worker_processes %d;" % workers,
        "error_log %s %s;" % (log_path or os.path.join(workdir, "error.log"), log_level),
        "pid %s;" % os.path.join(workdir, "nginx.pid"),
        "events { worker_connections 1024; }",
        "",
        "wasm {",
        "    module %s %s;" % (WASM_FILTER_NAME, wasm_path),
        "    socket_connect_timeout 10s;",
        "    socket_send_timeout 10s;",
        "    socket_read_timeout 10s;",
    ]
    if shm_size:
        # the filter's shared data lives under "jwt_jwks/..." keys
        lines.append("    shm_kv %s %s;" % (WASM_FILTER_NAME, shm_size))
    if tls_ca:
        lines += [
            "    tls_trusted_certificate %s;" % tls_ca,
            "    tls_verify_cert on;",
            "    tls_verify_host on;",
        ]
    lines += ["    %s" % l for l in extra_wasm]
    lines += [
        "}",
        "",
        "http {",
        "    access_log off;",
        "    client_body_temp_path %s/body;" % tmp,
        "    proxy_temp_path %s/proxy;" % tmp,
        "    fastcgi_temp_path %s/fastcgi;" % tmp,
        "    uwsgi_temp_path %s/uwsgi;" % tmp,
        "    scgi_temp_path %s/scgi;" % tmp,
        # in http{} it also feeds the wasm{} resolver that on_tick callouts
        # use (the directive is refused inside wasm{} at commit 3bed278)
        "    resolver_add 127.0.0.1 localhost;",
    ]
    lines += ["    %s" % l for l in extra_http]
    for name, port, cfg in listeners:
        lines += [
            "    server {  # listener %s" % name,
            "        listen %s:%d;" % (HOST, port),
            "        location / {",
        ]
        if kong_upstream_uri:
            lines.append("            set $upstream_uri $uri$is_args$args;")
        if cfg is not None:
            lines.append("            proxy_wasm %s %s;" % (WASM_FILTER_NAME,
                                                          nginx_quote(filter_config_text(cfg))))
        lines += [
            "            proxy_http_version 1.1;",
            "            proxy_set_header Connection \"\";",
            "            proxy_pass http://%s:%d%s;" % (HOST, upstream_port,
                                                "$upstream_uri" if kong_upstream_uri else ""),
            "        }",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


class Nginx(procs.ServerProcess):
    """Same constructor and methods as e2e.envoy.Envoy (see module doc)."""

    def __init__(self, binary, workdir, upstream_port, listeners, wasm=None,
                 jwks_servers=(), clusters=(), concurrency=1, log_level="info",
                 component_log_level=None, extra_args=(), name="nginx",
                 static_config=None, admin_port=None, access_logs=None,
                 shm_size="16m", extra_wasm=(), extra_http=(), kong_upstream_uri=False):
        self.kong_upstream_uri = kong_upstream_uri
        # Envoy access logs print filter state (the identity property), which
        # this host does not have: accepted here, refused when read.
        self.access_logs = dict(access_logs or {})
        self.binary = os.path.abspath(binary) if os.sep in binary else binary
        self.workdir = os.path.abspath(workdir)
        self.wasm = os.path.abspath(wasm) if wasm else None
        self.upstream_port = upstream_port
        if isinstance(listeners, dict):
            listeners = list(listeners.items())
        self.listener_configs = list(listeners)
        self.jwks_servers = list(jwks_servers)
        self.clusters = list(clusters)
        self.concurrency = concurrency
        self.log_level = log_level if log_level in NGINX_LEVELS else "info"
        self.extra_args = list(extra_args)
        self.name = name
        self.static_config = static_config
        self.shm_size = shm_size
        self.extra_wasm = list(extra_wasm)
        self.extra_http = list(extra_http)
        self.proc = None
        self.ports = dict(self.listener_configs) if static_config is not None else {}
        self.admin_port = admin_port
        os.makedirs(os.path.join(self.workdir, "tmp"), exist_ok=True)
        self.config_path = os.path.join(self.workdir, name + ".conf")
        self.log_path = os.path.join(self.workdir, name + ".log")

    # --- config
    def tls_ca(self):
        cas = {c.tls_ca for c in self.clusters if getattr(c, "tls_ca", None)}
        if len(cas) > 1:
            raise HostLimitation("one trusted CA for every wasm socket, got %r" % sorted(cas))
        return cas.pop() if cas else None

    def write_config(self):
        if self.static_config is not None:
            text = self.static_config
        else:
            used = set()
            self.ports = {}
            for lname, _ in self.listener_configs:
                p = free_port()
                while p in used:
                    p = free_port()
                used.add(p)
                self.ports[lname] = p
            if self.wasm is None and any(c is not None for _, c in self.listener_configs):
                raise NginxStartError("a listener has a filter config but no wasm path was given")
            text = nginx_conf(
                self.workdir, self.wasm or "/dev/null",
                [(n, self.ports[n], c) for n, c in self.listener_configs],
                self.upstream_port, workers=self.concurrency, log_path=self.log_path,
                log_level=self.log_level, shm_size=self.shm_size, tls_ca=self.tls_ca(),
                extra_wasm=self.extra_wasm, extra_http=self.extra_http,
                kong_upstream_uri=self.kong_upstream_uri,
            )
        with open(self.config_path, "w") as f:
            f.write(text)
        return text

    def command(self):
        return [self.binary, "-p", self.workdir, "-c", self.config_path,
                "-e", self.log_path] + self.extra_args

    # --- lifecycle
    def _spawn(self):
        if self.wasm is not None and not os.path.isfile(self.wasm):
            raise NginxStartError("wasm module not found: %s" % self.wasm)
        self.write_config()
        logf = open(os.path.join(self.workdir, self.name + ".stdout"), "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir)
        finally:
            logf.close()

    def _is_ready(self):
        if not all(accepts_connections(p) for p in self.ports.values()):
            return False
        started = self.log_text().count("start worker process")
        return started >= self.concurrency

    def start(self, timeout=30.0):
        self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise NginxStartError("nginx exited with code %s during start-up; %s"
                                      % (code, self._failure_report()))
            if self._is_ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise NginxStartError("nginx not ready after %.0fs; %s" % (timeout, self._failure_report()))

    def admin(self, path, method="GET"):
        raise HostLimitation("nginx has no Envoy admin interface (%s %s)" % (method, path))

    # --- observation
    def error_lines(self):
        return [l for l in self.log_text().splitlines()
                if any("[%s]" % lv in l for lv in ("error", "crit", "alert", "emerg"))]

    def trap_lines(self):
        """Lines of wasm traps and failed filter steps."""
        return [l for l in self.log_text().splitlines()
                if "trap" in l or "filter chain failed" in l or "on_configure failure" in l]

    def interesting_tail(self, n=60):
        return self.tail(n)

    def stats(self):
        raise HostLimitation("plain nginx exposes no proxy-wasm metrics (Kong reads them "
                             "through its Prometheus plugin)")

    def stats_matching(self, substring):
        return self.stats()

    def stat(self, substring):
        return self.stats()

    def access_log_lines(self, listener_name):
        raise HostLimitation("access logs with Envoy command operators")

    def wait_for_access_log(self, listener_name, predicate, timeout=10.0):
        raise HostLimitation("access logs with Envoy command operators")

    def wait_for_log(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return True
            time.sleep(0.1)
        return False


# ------------------------------------------------------------ pytest plugin
def pytest_configure(config):
    """With `-p e2e.nginx` and NGX_WASM_NGINX set, every Lab builds an Nginx
    where it would build an Envoy (ENVOY_BIN must name the same binary: the
    Lab passes it to the launcher)."""
    nginx_bin = os.environ.get("NGX_WASM_NGINX")
    if not nginx_bin:
        raise RuntimeError("-p e2e.nginx needs NGX_WASM_NGINX=/path/to/nginx")
    os.environ["ENVOY_BIN"] = nginx_bin
    from . import lab

    lab.Envoy = Nginx
