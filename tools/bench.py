#!/usr/bin/env python3
"""Benchmark: the jwt-jwks filter side by side with Envoy's native jwt_authn (`make bench`).

    .venv/bin/python tools/bench.py [--rounds 3] [--duration 3] [--connections 16]

Environment (as the e2e harness): JWT_JWKS_WASM (default
target/wasm32-wasip1/release/jwt_jwks.wasm), ENVOY_BIN (default .venv/bin/envoy).
Needs `wrk` on PATH (Debian package `wrk`; this script installs nothing).

What it starts, all on 127.0.0.1, and stops (by process group) when it ends:
  * a JWKS server (thread) publishing one key per algorithm: RS256, ES256, PS256, EdDSA;
  * ONE Envoy, --concurrency 1 (pinned to CPU 0 when there are 2 CPUs or more), one
    listener per scenario, every route a `direct_response` 200 (no upstream, so the
    upstream costs nothing and the same for every scenario):
        none          no filter
        native        envoy.filters.http.jwt_authn, remote_jwks (fetched at start)
        native_cache  the same with jwt_cache_config {jwt_cache_size: 10000}
        wasm_noop     this filter, single rule {"path_prefix": "/", "auth": "public"}
        wasm_host     this filter, host_crypto "on",  token_cache_size 0
        wasm_host_id  the same with the identity filter-state property on
        wasm_pure     this filter, host_crypto "off", token_cache_size 0
        wasm_cache    this filter, defaults (token cache on, identity property off)
        wasm_cache_identity  the same with identity_property "jwt_jwks_identity" (its price)
        wasm_cache_claims  the same with claims_to_headers of two claims (two headers set
                      on every allowed request, and incoming copies looked for); its
                      ratio column is to wasm_cache
        wasm_cache_strip   the same with forward_token false (the token's header removed on
                      every allowed request); its ratio column is to wasm_cache
        wasm_cache_rules   the same with 20 route rules, the request matching the last (RS256
                      only); its ratio column is to wasm_cache
        wasm_floor    only with --floor WASM: a module that returns Continue (tools/noop),
                      the cost of any wasm filter
        wasm_host_rev, wasm_cache_rev   wasm_host and wasm_cache with 100,000 deny
                      entries pulled from a revocation list (issue 17); their ratio
                      column is to the same scenario without them
        wasm_cache_status  wasm_cache with status_list on: the repeated token names a
                      Token Status List (issue 17), checked on every cache hit; its
                      ratio column is to wasm_cache (the same token, lists off)
        wasm_cache_opaque  wasm_cache's configuration plus an introspection block; one
                      repeated opaque token (issue 16), introspected once, then answered
                      from the cache; its ratio column is to wasm_cache RS256
        wasm_opaque_call   the same with cache_ttl 0 and unique opaque tokens: one
                      introspection call per request (a local test authorization
                      server answering RFC 7662 JSON), the uncached cost
        wasm_alt      only with --alt WASM: that module, wasm_host's configuration, a VM
                      of its own (make bench-floor: the floor variant, tools/floor.patch)
        wasm_cache_alt  only with --alt WASM: that module with wasm_cache's configuration
                      (two builds' repeated path side by side in one run); its ratio
                      column is to wasm_cache
    Like native jwt_authn by default, the filter scenarios forward nothing but the
    request (identity_property is off by default), except wasm_host_id and
    wasm_cache_identity, which show that cost.
  * wrk (1 thread, pinned to CPU 1), a Lua script rotating through a file of tokens.

Runs: unique tokens (a pool of --tokens pre-minted tokens, distinct `jti`) for none,
wasm_noop, native, wasm_host(_rev), wasm_pure; one repeated token for native_cache and
wasm_cache(_rev). Algorithms: RS256 and ES256 everywhere; PS256 and EdDSA for native and
wasm_pure. Every listener is checked before measuring (valid token 200, forged
signature 401, no token 401). After one warm-up pass the runs are interleaved
for --rounds rounds (a fresh random order each round). For each run Envoy's CPU
time (utime+stime of /proc/<pid>/stat) is read before and after and divided by the
requests wrk completed: CPU us per request; "added" is that minus `none` of the same
round; the ratio is added / added of native (unique tokens) or native_cache (repeated
tokens) of the same algorithm and round. The table shows medians over rounds.

Then: Envoy start-up to /ready and RSS (no filter, one wasm listener, all listeners),
cold start (Envoy ready -> first answer to a request sent at once, JWKS answering at
once or late), and key rotation (a new kid published: time to its first 200; JWKS
fetches under a burst of unknown kids, for the filter and for native jwt_authn).

It prints numbers and never judges a run: exit 0, unless something could not run
(1: a scenario failed its correctness check or Envoy did not start; 2: missing tools).
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "e2e"))

from e2e import jose, procs  # noqa: E402
from e2e.ports import HOST, free_port  # noqa: E402
from e2e.authserver import AuthServer  # noqa: E402
from e2e.authserver import CLIENT_ID as AUTH_CLIENT_ID  # noqa: E402
from e2e.authserver import CLIENT_SECRET as AUTH_CLIENT_SECRET  # noqa: E402
from e2e.servers import JwksServer  # noqa: E402

DEFAULT_WASM = os.path.join("target", "wasm32-wasip1", "release", "jwt_jwks.wasm")
DEFAULT_ENVOY = os.path.join(".venv", "bin", "envoy")

ISS = "https://issuer.bench.test"
AUD = "bench-api"
ALGS = ("RS256", "ES256", "PS256", "EdDSA")
WASM_ALLOWED = ["RS256", "ES256", "PS256", "EdDSA"]
NATIVE_CACHE_SIZE = 10000
VM_ID = "jwt_jwks_bench"

# scenario -> (token mode, algorithms, whether it checks tokens)
SCENARIOS = {
    "none": ("unique", ("-",), False),
    "wasm_noop": ("unique", ("-",), False),
    "native": ("unique", ALGS, True),
    "native_cache": ("repeated", ("RS256", "ES256"), True),
    "wasm_host": ("unique", ("RS256", "ES256"), True),
    "wasm_host_id": ("unique", ("RS256", "ES256"), True),
    "wasm_pure": ("unique", ALGS, True),
    "wasm_cache": ("repeated", ("RS256", "ES256"), True),
    "wasm_alt": ("unique", ("RS256", "ES256"), True),
    "wasm_cache_alt": ("repeated", ("RS256", "ES256"), True),
    "wasm_floor": ("unique", ("-",), False),
    "wasm_cache_identity": ("repeated", ("RS256", "ES256"), True),
    "wasm_cache_claims": ("repeated", ("RS256", "ES256"), True),
    "wasm_cache_strip": ("repeated", ("RS256", "ES256"), True),
    "wasm_cache_rules": ("repeated", ("RS256",), True),
    "wasm_host_rev": ("unique", ("RS256", "ES256"), True),
    "wasm_cache_rev": ("repeated", ("RS256", "ES256"), True),
    "wasm_cache_status": ("repeated", ("RS256", "ES256"), True),
    "wasm_cache_opaque": ("repeated", ("opaque",), False),
    "wasm_opaque_call": ("unique", ("opaque",), False),
}
# the opaque-token rows (issue 16): introspected at a local authorization server
OPAQUE = ("wasm_cache_opaque", "wasm_opaque_call")
# revocation rows: the same scenario with REVOKED_ENTRIES deny entries loaded
# from a pulled list (issue 17); compared with the scenario without
REV_OF = {"wasm_host_rev": "wasm_host", "wasm_cache_rev": "wasm_cache"}
REVOKED_ENTRIES = 100_000
REVOKED_JTI = "bench-revoked"
LIST_PATH = "/revoked.json"
# the status-list row: the repeated tokens name index STATUS_IDX of the list at
# STATUS_PATH (served by the revocation list server); compared with the scenario
# without status lists, which gets the same token
STATUS_OF = {"wasm_cache_status": "wasm_cache"}
STATUS_PATH = "/statuslists/1"
STATUS_IDX, STATUS_REVOKED_IDX = 3, 5
ORDER = ["none", "wasm_floor", "wasm_noop", "native", "native_cache", "wasm_host", "wasm_host_rev",
         "wasm_alt", "wasm_host_id", "wasm_pure", "wasm_cache", "wasm_cache_alt", "wasm_cache_identity",
         "wasm_cache_claims", "wasm_cache_strip", "wasm_cache_rules",
         "wasm_cache_rev", "wasm_cache_status", "wasm_cache_opaque", "wasm_opaque_call"]
# the scenarios whose ratio is to native jwt_authn of the same algorithm (unique tokens)
VS_NATIVE = ("wasm_host", "wasm_host_id", "wasm_pure", "wasm_alt")
# (scenario, alg) pairs that may be missing without it being a failure
OPTIONAL = {("native", "PS256"), ("native", "EdDSA")}
# fields a build may not know yet: dropped (and the dependent scenario listed as
# unavailable) when Envoy refuses the configuration because of them
OPTIONAL_FIELDS = ("host_crypto", "token_cache_size")

LUA = r"""-- tools/bench.py: one request per token of a file, in turn (args: file, offset)
local reqs = {}
local n = 0
local i = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format("GET", "/", {["Authorization"] = "Bearer " .. line})
    end
  end
  f:close()
  i = (tonumber(args[2] or "0") or 0) % n
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------- processes
def proc_cpu_ticks(pid):
    """utime + stime of a process (every thread), in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def proc_status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def http_get(port, path, headers=None, timeout=10.0):
    """(status, body) of one request on a fresh connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def bearer(token):
    return {"Authorization": "Bearer " + token}


class EnvoyProc:
    """One Envoy started from a JSON bootstrap, in its own process group."""

    def __init__(self, binary, workdir, name, config, admin_port, ports, cpu=None,
                 log_level="warn", concurrency=1):
        self.concurrency = concurrency
        self.binary = binary
        self.name = name
        self.config = config
        self.admin_port = admin_port
        self.ports = ports
        self.cpu = cpu
        self.log_level = log_level
        self.config_path = os.path.join(workdir, name + ".json")
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.spawned_at = None

    def spawn(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=1)
        cmd = [self.binary, "-c", self.config_path, "--concurrency", str(self.concurrency),
               "--log-level", self.log_level, "--disable-hot-restart"]
        if self.cpu is not None:
            cmd = ["taskset", "-c", str(self.cpu)] + cmd  # taskset execs: same pid
        logf = open(self.log_path, "ab")
        try:
            self.spawned_at = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()

    def live(self):
        try:
            with urllib.request.urlopen("http://%s:%d/ready" % (HOST, self.admin_port),
                                        timeout=1) as r:
                return r.status == 200 and b"LIVE" in r.read()
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout=60.0, interval=0.005):
        """Seconds from spawn to /ready answering LIVE. Raises BenchError when
        Envoy exits or is not ready in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("envoy %s exited with code %s during start-up"
                                 % (self.name, self.proc.returncode))
            if self.live():
                return time.monotonic() - self.spawned_at
            time.sleep(interval)
        raise BenchError("envoy %s not ready after %.0f s" % (self.name, timeout))

    def start(self, timeout=60.0):
        self.spawn()
        return self.wait_ready(timeout)

    @property
    def pid(self):
        return self.proc.pid

    def cpu_ticks(self):
        return proc_cpu_ticks(self.proc.pid)

    def rss_kb(self):
        return proc_status_kb(self.proc.pid, "VmRSS")

    def stats(self, regex="jwt|downstream_rq_total"):
        """{name: value} of counters and gauges matching regex (admin /stats),
        after the filter's next metric flush (every 100 ms)."""
        time.sleep(0.25)
        url = "http://%s:%d/stats?format=json&filter=%s" % (
            HOST, self.admin_port, urllib.parse.quote(regex))
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        return {s["name"]: s["value"] for s in doc.get("stats", [])
                if "name" in s and isinstance(s.get("value"), (int, float))}

    def log_text(self):
        return procs.read_log(self.log_path)

    def error_lines(self, n=12):
        lines = [l for l in self.log_text().splitlines()
                 if "][error][" in l or "][critical][" in l]
        return lines[-n:]

    def stop(self, grace=5.0):
        procs.stop_group(self.proc, grace)
        self.proc = None


# ---------------------------------------------------------------- Envoy config
def jwks_cluster(srv):
    """A STATIC cluster named like the JWKS authority (the filter's default
    jwks_upstream); native jwt_authn uses it too."""
    return {
        "name": srv.cluster_name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": srv.cluster_name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": HOST, "port_value": srv.port}}}}]}],
        },
    }


def wasm_http_filter(wasm_path, cfg, vm_id=VM_ID):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "jwt_jwks",
                "root_id": "jwt_jwks",
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.dumps(cfg),
                },
                "fail_open": False,
            },
        },
    }


def native_http_filter(srv, cache_size=None):
    provider = {
        "issuer": ISS,
        "audiences": [AUD],
        "remote_jwks": {
            "http_uri": {"uri": srv.url, "cluster": srv.cluster_name, "timeout": "5s"},
            "cache_duration": "3600s",
            "async_fetch": {},  # fetched at start; the listener waits for it
        },
        "forward": True,
    }
    if cache_size:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache_size}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def listener(name, port, http_filters):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {
            "name": "route_" + name,
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"},
                            "direct_response": {"status": 200,
                                                "body": {"inline_string": "ok\n"}}}],
            }],
        },
        "http_filters": list(http_filters) + [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    return {
        "name": "listener_" + name,
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}],
    }


def bootstrap(admin_port, listeners, clusters):
    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def distinct_ports(n):
    ports = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


def make_envoy(ctx, name, filters_by_listener, jwks_servers, cpu=None, concurrency=1):
    """filters_by_listener: [(listener name, [http filters])]."""
    ports = distinct_ports(len(filters_by_listener) + 1)
    admin_port = ports.pop()
    lmap = {}
    listeners = []
    for (lname, filters), port in zip(filters_by_listener, ports):
        lmap[lname] = port
        listeners.append(listener(lname, port, filters))
    cfg = bootstrap(admin_port, listeners, [jwks_cluster(s) for s in jwks_servers])
    env = EnvoyProc(ctx.envoy_bin, ctx.workdir, name, cfg, admin_port, lmap, cpu=cpu,
                    concurrency=concurrency)
    ctx.envoys.append(env)
    return env


def wasm_base(srv, **extra):
    cfg = {"jwks_uri": srv.url, "issuers": [ISS], "audiences": [AUD],
           "allowed_algorithms": WASM_ALLOWED}
    cfg.update(extra)
    return cfg


def scenario_filters(ctx, name, srv, dropped):
    """The http filters of a scenario's listener (None: unavailable with this build)."""
    def wasm(cfg, path=ctx.wasm, vm_id=VM_ID):
        cfg = {k: v for k, v in cfg.items() if k not in dropped}
        return [wasm_http_filter(path, cfg, vm_id)]

    if name == "none":
        return []
    if name == "native":
        return [native_http_filter(srv)]
    if name == "native_cache":
        return [native_http_filter(srv, NATIVE_CACHE_SIZE)]
    if name == "wasm_floor":  # a module that only returns Continue (tools/noop)
        return wasm({}, ctx.args.floor, VM_ID + "_floor")
    if name == "wasm_cache_identity":  # the identity property's price
        return wasm(wasm_base(srv, identity_property="jwt_jwks_identity"))
    if name == "wasm_cache_claims":  # two claims forwarded as headers
        return wasm(wasm_base(srv, claims_to_headers={"iss": "x-jwt-iss", "aud": "x-jwt-aud"}))
    if name == "wasm_cache_strip":  # the token kept from the upstream
        return wasm(wasm_base(srv, forward_token=False))
    if name == "wasm_cache_rules":  # 19 rules that do not match GET /, then one that does
        rules = [{"path_prefix": "/api/v%d/" % i, "methods": ["GET", "POST"]} for i in range(19)]
        return wasm(wasm_base(srv, rules=rules + [{"path_prefix": "/", "auth": "required"}]))
    if name == "wasm_noop":
        return wasm({"jwks_uri": srv.url, "rules": [{"path_prefix": "/", "auth": "public"}]})
    if name in ("wasm_host", "wasm_alt"):
        if "host_crypto" in dropped:
            return None
        cfg = wasm_base(srv, host_crypto="on", token_cache_size=0)
        if name == "wasm_alt":  # another module (--alt), in a VM of its own
            return wasm(cfg, ctx.args.alt, VM_ID + "_alt")
        return wasm(cfg)
    if name == "wasm_host_id":
        if "host_crypto" in dropped:
            return None
        return wasm(wasm_base(srv, host_crypto="on", token_cache_size=0,
                              identity_property="jwt_jwks_identity"))
    if name == "wasm_pure":
        return wasm(wasm_base(srv, host_crypto="off", token_cache_size=0))
    if name == "wasm_cache":
        return wasm(wasm_base(srv))
    if name == "wasm_cache_alt":  # another module (--alt), in a VM of its own
        return wasm(wasm_base(srv), ctx.args.alt, VM_ID + "_alt")
    if name in OPAQUE:
        auth = ctx.auth_server()
        block = {"endpoint": auth.url_for("/introspect"), "upstream": auth.cluster_name,
                 "client_id": AUTH_CLIENT_ID, "client_secret": AUTH_CLIENT_SECRET,
                 "cache_ttl": 0 if name == "wasm_opaque_call" else 300,
                 "negative_cache_ttl": 0 if name == "wasm_opaque_call" else 10}
        return wasm(dict(wasm_base(srv), issuers=[ISS, auth.issuer], audiences=[AUD, "api"],
                         introspection=block))
    if name in STATUS_OF:
        lists = ctx.revocation_list()
        return wasm(wasm_base(srv, status_list=True, status_list_upstream=lists.cluster_name))
    if name in REV_OF:
        lists = ctx.revocation_list()
        rev = {"revocation_uri": lists.url_for(LIST_PATH), "revocation_upstream": lists.cluster_name,
               "max_revocation_entries": REVOKED_ENTRIES + 1}
        if name == "wasm_host_rev":
            if "host_crypto" in dropped:
                return None
            return wasm(wasm_base(srv, host_crypto="on", token_cache_size=0, **rev))
        return wasm(wasm_base(srv, **rev))
    raise ValueError(name)


# ---------------------------------------------------------------- tokens
def _mint_chunk(alg, pem, kid, start, count, now, exp_in):
    from cryptography.hazmat.primitives import serialization

    key = jose.Key(serialization.load_pem_private_key(pem.encode(), None), kid)
    out = []
    for i in range(start, start + count):
        c = jose.claims(iss=ISS, aud=AUD, sub="user-%d" % (i % 997), exp_in=exp_in, now=now,
                        jti="%08d-%s" % (i, secrets.token_hex(6)))
        out.append(jose.sign(key, alg, c))
    return out


def mint_pool(key, alg, count, workers, exp_in):
    now = int(time.time())
    pem = key.private_pem()
    chunk = max(1, min(2000, (count + workers - 1) // workers))
    jobs = [(s, min(chunk, count - s)) for s in range(0, count, chunk)]
    if workers <= 1 or count <= 500:
        return [t for s, n in jobs for t in _mint_chunk(alg, pem, key.kid, s, n, now, exp_in)]
    ex = concurrent.futures.ProcessPoolExecutor(max_workers=workers)
    try:
        futs = [ex.submit(_mint_chunk, alg, pem, key.kid, s, n, now, exp_in) for s, n in jobs]
        return [t for f in futs for t in f.result()]
    finally:  # on an interrupt, the queued chunks are dropped
        ex.shutdown(wait=True, cancel_futures=True)


def valid_token(key, alg, **extra):
    return jose.sign(key, alg, jose.claims(iss=ISS, aud=AUD, exp_in=7200, **extra))


def forged_token(key, alg):
    """Known kid and valid claims, signed by another key of the same type."""
    other = jose.key_for_alg(alg, kid=key.kid)
    return jose.sign(key, alg, jose.claims(iss=ISS, aud=AUD, exp_in=7200), signing_key=other)


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- wrk
class Wrk:
    def __init__(self, ctx):
        self.ctx = ctx
        self.script = os.path.join(ctx.workdir, "tokens.lua")
        with open(self.script, "w") as f:
            f.write(LUA)
        self.proc = None

    def run(self, port, token_file, duration, offset=0):
        a = self.ctx.args
        cmd = ["wrk", "-t", str(a.threads), "-c", str(a.connections), "-d", "%ds" % duration,
               "--latency", "--timeout", "5s", "-s", self.script,
               "http://%s:%d/" % (HOST, port), "--", token_file, str(offset)]
        if self.ctx.wrk_cpu is not None:
            cmd = ["taskset", "-c", str(self.ctx.wrk_cpu)] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = self.proc.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError("wrk did not finish")
        code = self.proc.returncode
        self.proc = None
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("BENCH "):
                return json.loads(line[6:])
        raise BenchError("wrk exited %s without a summary: %s %s"
                         % (code, out.decode()[-400:], err.decode()[-400:]))

    def kill(self):
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait(timeout=10)
        self.proc = None


# ---------------------------------------------------------------- main benchmark
class Ctx:
    def __init__(self, args):
        self.args = args
        self.wasm = args.wasm
        self.envoy_bin = args.envoy
        self.workdir = tempfile.mkdtemp(prefix="jwt-jwks-bench-")
        self.envoys = []
        self.servers = []
        self.wrk = None
        self.problems = []  # what could not run (-> exit 1)
        self.notes = []
        pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
        self.envoy_cpu = 0 if pin else None
        self.wrk_cpu = 1 if pin else None

    def jwks(self, doc, **kw):
        srv = JwksServer(doc, **kw)
        self.servers.append(srv)
        return srv.start()

    def auth_server(self):
        """The authorization server of the opaque-token rows."""
        if getattr(self, "_auth", None) is None:
            self._auth = AuthServer().start()
            self.servers.append(self._auth)
        return self._auth

    def revocation_list(self):
        """The list server of the revocation rows: REVOKED_ENTRIES jti entries
        of ISS, none of them a benchmark token's but REVOKED_JTI."""
        if getattr(self, "_lists", None) is None:
            exp = int(time.time()) + 86400
            entries = [{"type": "jti", "value": "rev-%06d" % i, "iss": ISS, "exp": exp}
                       for i in range(REVOKED_ENTRIES - 1)]
            entries.append({"type": "jti", "value": REVOKED_JTI, "iss": ISS, "exp": exp})
            self._lists = self.jwks({"keys": []})
            self._lists.documents[LIST_PATH] = {"entries": entries}
        return self._lists

    def cleanup(self):
        if self.wrk is not None:
            self.wrk.kill()
        for env in reversed(self.envoys):
            try:
                env.stop()
            except Exception as e:  # keep stopping the rest
                log("stopping %s: %s" % (env.name, e))
        for srv in reversed(self.servers):
            try:
                srv.stop()
            except Exception as e:
                log("stopping a server: %s" % e)


class Spec:
    """One measured run: scenario x algorithm x token mode."""

    def __init__(self, scenario, alg, mode, token_file):
        self.scenario = scenario
        self.alg = alg
        self.mode = mode
        self.token_file = token_file
        self.results = []  # one dict per round

    @property
    def key(self):
        return (self.scenario, self.alg, self.mode)


def start_main_envoy(ctx, srv, scenarios):
    """Start the benchmark Envoy; drop fields this build refuses. Returns
    (envoy, seconds to ready, {scenario: reason unavailable})."""
    dropped = set()
    unavailable = {}
    for _ in range(len(OPTIONAL_FIELDS) + 1):
        listeners = []
        for name in scenarios:
            filters = scenario_filters(ctx, name, srv, dropped)
            if filters is None:
                unavailable[name] = ("this build refuses the `host_crypto` field "
                                     "(Envoy would not start with it)")
                continue
            listeners.append((name, filters))
        lists = any(n in REV_OF or n in STATUS_OF for n in scenarios)
        servers = [srv] + ([ctx.revocation_list()] if lists else [])
        if any(n in OPAQUE for n in scenarios):
            servers.append(ctx.auth_server())
        env = make_envoy(ctx, "bench-envoy-%d" % len(ctx.envoys), listeners, servers,
                         cpu=ctx.envoy_cpu)
        try:
            return env, env.start(), unavailable
        except BenchError as e:
            errors = env.error_lines()
            env.stop()
            text = "\n".join(errors)
            field = next((f for f in OPTIONAL_FIELDS
                          if f not in dropped and ("`%s`" % f) in text), None)
            if field is None:
                raise BenchError("%s\n%s" % (e, text or env.log_text()[-3000:]))
            log("Envoy refused the field `%s`: retrying without it" % field)
            ctx.notes.append("this build refuses `%s`: left out of every configuration" % field)
            dropped.add(field)
    raise BenchError("Envoy would not start")


def check_listener(env, name, keys, algs, checks_tokens):
    """Correctness before measuring. Returns {alg: problem or None}."""
    port = env.ports[name]
    out = {}
    status, _ = http_get(port, "/")
    missing_ok = (status == 401) if checks_tokens else (status == 200)
    for alg in algs:
        if alg == "opaque":  # checked with the authorization server's tokens
            out[alg] = None if status == 401 else "no token -> %d" % status
            continue
        if alg == "-":
            alg_k = "RS256"
        else:
            alg_k = alg
        key = keys[alg_k]
        problems = []
        if not missing_ok:
            problems.append("no token -> %d" % status)
        s_valid = http_get(port, "/", bearer(valid_token(key, alg_k)))[0]
        if s_valid != 200:
            problems.append("valid %s token -> %d" % (alg_k, s_valid))
        s_forged = http_get(port, "/", bearer(forged_token(key, alg_k)))[0]
        want = 401 if checks_tokens else 200
        if s_forged != want:
            problems.append("forged %s token -> %d (want %d)" % (alg_k, s_forged, want))
        out[alg] = "; ".join(problems) or None
    return out


def wait_keys(env, name, key, alg, timeout=15.0):
    """Until a valid token is accepted (the JWKS is loaded)."""
    deadline = time.monotonic() + timeout
    tok = valid_token(key, alg)
    status = None
    while time.monotonic() < deadline:
        status = http_get(env.ports[name], "/", bearer(tok))[0]
        if status == 200:
            return True
        time.sleep(0.05)
    return False


def status_ref(ctx, idx):
    """The `status` claim of a token at `idx` of the benchmark's status list."""
    return {"status_list": {"idx": idx, "uri": ctx.revocation_list().url_for(STATUS_PATH)}}


def wait_status(env, name, key, ctx, timeout=30.0):
    """Until a token at the list's revoked index is refused: the list is in."""
    deadline = time.monotonic() + timeout
    tok = valid_token(key, "RS256", status=status_ref(ctx, STATUS_REVOKED_IDX))
    while time.monotonic() < deadline:
        if http_get(env.ports[name], "/", bearer(tok))[0] == 401:
            return True
        time.sleep(0.2)
    return False


def wait_revoked(env, name, key, timeout=60.0):
    """Until the token with REVOKED_JTI is refused: the whole list is loaded."""
    deadline = time.monotonic() + timeout
    tok = valid_token(key, "RS256", jti=REVOKED_JTI)
    while time.monotonic() < deadline:
        if http_get(env.ports[name], "/", bearer(tok))[0] == 401:
            return True
        time.sleep(0.2)
    return False


CHECK_STATS = {
    # scenario: (label, stat name suffix; for native the listener's stat prefix is added)
    "native": ("allowed", "jwt_authn.allowed"),
    "native_cache": ("cache hit", "jwt_authn.jwt_cache_hit"),
    "wasm_host": ("host verify", "jwt_jwks_host_verifications"),
    "wasm_host_id": ("host verify", "jwt_jwks_host_verifications"),
    "wasm_alt": ("host verify", "jwt_jwks_host_verifications"),
    "wasm_pure": ("allowed", "jwt_jwks_allowed"),
    "wasm_cache": ("cache hit", "jwt_jwks_token_cache_hit"),
    "wasm_cache_identity": ("cache hit", "jwt_jwks_token_cache_hit"),
    "wasm_cache_alt": ("cache hit", "jwt_jwks_token_cache_hit"),
    "wasm_cache_claims": ("cache hit", "jwt_jwks_token_cache_hit"),
    "wasm_cache_strip": ("cache hit", "jwt_jwks_token_cache_hit"),
    "wasm_cache_rules": ("cache hit", "jwt_jwks_token_cache_hit"),
    "wasm_host_rev": ("host verify", "jwt_jwks_host_verifications"),
    "wasm_cache_rev": ("cache hit", "jwt_jwks_token_cache_hit"),
    "wasm_cache_status": ("cache hit", "jwt_jwks_token_cache_hit"),
}


def stat_of(stats, scenario, suffix=None):
    """A counter of a scenario: its check counter, or (suffix given) a counter of
    its listener's HTTP connection manager. The filter's own counters are
    per VM, not per listener: the runs take turns, so a delta is one run's."""
    if suffix is None:
        spec = CHECK_STATS.get(scenario)
        if spec is None:
            return None
        suffix = spec[1]
    if scenario.startswith("native") or suffix == "downstream_rq_total":
        names = [n for n in stats if n.startswith("http.%s." % scenario) and n.endswith(suffix)]
    else:
        names = [n for n in stats if n.endswith(suffix)]
    if not names:
        return None
    return sum(stats[n] for n in names)


def measure(ctx, env, spec, duration, offset, record=True):
    before_stats = env.stats() if record else {}
    t0 = env.cpu_ticks()
    res = ctx.wrk.run(env.ports[spec.scenario], spec.token_file, duration, offset)
    t1 = env.cpu_ticks()
    if not record:
        return res
    after_stats = env.stats()
    n = max(1, res["requests"])
    res["cpu_us"] = (t1 - t0) * 1e6 / CLK_TCK / n
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["errors"] = res["connect"] + res["read"] + res["write"] + res["timeout"]
    # the check counter against the requests Envoy saw on this listener (wrk's
    # count leaves out the ones in flight when it stopped)
    a, b = stat_of(before_stats, spec.scenario), stat_of(after_stats, spec.scenario)
    ra = stat_of(before_stats, spec.scenario, "downstream_rq_total")
    rb = stat_of(after_stats, spec.scenario, "downstream_rq_total")
    res["envoy_requests"] = None if ra is None or rb is None else rb - ra
    seen = res["envoy_requests"] or n
    res["check"] = None if a is None or b is None else (b - a) / seen
    spec.results.append(res)
    return res


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run_benchmark(ctx, report):
    a = ctx.args
    keys = {alg: jose.key_for_alg(alg, kid="bench-" + alg.lower()) for alg in ALGS}
    doc = {"keys": [keys[alg].jwk(alg=alg) for alg in ALGS]}

    scenarios = [s for s in ORDER if s in ("none",) or not a.only or s in a.only]
    for alt in ("wasm_alt", "wasm_cache_alt"):
        if not a.alt and alt in scenarios:
            scenarios.remove(alt)
    if not a.floor and "wasm_floor" in scenarios:
        scenarios.remove("wasm_floor")
    pools = {}
    need_unique = {alg for s in scenarios for alg in SCENARIOS[s][1]
                   if SCENARIOS[s][0] == "unique"}
    if "-" in need_unique:
        need_unique.discard("-")
        need_unique.add("RS256")
    t = time.monotonic()
    workers = os.cpu_count() or 1
    for alg in ALGS:
        if alg in need_unique:
            toks = mint_pool(keys[alg], alg, a.tokens, workers, exp_in=3 * 3600)
            if len(set(toks)) != len(toks):
                raise BenchError("token pool for %s has duplicates" % alg)
            pools[(alg, "unique")] = write_lines(
                os.path.join(ctx.workdir, "unique-%s.txt" % alg), toks)
    # The repeated tokens name the status list (its server starts after the
    # pools are minted: no server thread while the pool forks); only the
    # status-list row checks it, and every repeated row gets the same token.
    status = status_ref(ctx, STATUS_IDX)
    ctx.revocation_list().documents[STATUS_PATH] = jose.status_list_token(
        keys["ES256"], status["status_list"]["uri"], revoked=[STATUS_REVOKED_IDX],
        size=1 << 16, ttl=3600)
    for alg in ALGS:
        one = jose.sign(keys[alg], alg, jose.claims(iss=ISS, aud=AUD, exp_in=3 * 3600,
                                                     jti="repeated-" + alg, status=status))
        pools[(alg, "repeated")] = write_lines(
            os.path.join(ctx.workdir, "repeated-%s.txt" % alg), [one])
    if any(s in OPAQUE for s in scenarios):
        auth = ctx.auth_server()
        pools[("opaque", "repeated")] = write_lines(
            os.path.join(ctx.workdir, "repeated-opaque.txt"), [auth.issue(exp_in=3 * 3600)])
        pools[("opaque", "unique")] = write_lines(
            os.path.join(ctx.workdir, "unique-opaque.txt"),
            [auth.issue(exp_in=3 * 3600) for _ in range(a.tokens)])
    log("minted %d unique tokens for each of %s in %.1f s"
        % (a.tokens, ", ".join(sorted(need_unique)), time.monotonic() - t))
    srv = ctx.jwks(doc)  # after minting: no server thread while the pool forks

    env, ready_s, unavailable = start_main_envoy(ctx, srv, scenarios)
    report["startup"]["all listeners (%d wasm)" % sum(
        1 for s in scenarios if s.startswith("wasm") and s not in unavailable)] = {
        "ready_s": ready_s, "rss_kb": env.rss_kb(), "n": 1}
    log("benchmark Envoy (pid %d) ready in %.2f s, listeners %s"
        % (env.pid, ready_s, ", ".join("%s:%d" % kv for kv in env.ports.items())))

    # every listener's keys loaded, then correctness
    for s in scenarios:
        if s in unavailable or not SCENARIOS[s][2]:
            continue
        if not wait_keys(env, s, keys["RS256"], "RS256"):
            unavailable[s] = "a valid RS256 token is never accepted (JWKS not loaded?)"
        elif s in REV_OF and not wait_revoked(env, s, keys["RS256"]):
            unavailable[s] = "the %d-entry revocation list never loaded" % REVOKED_ENTRIES
        elif s in STATUS_OF and not wait_status(env, s, keys["RS256"], ctx):
            unavailable[s] = "the status list never loaded"
    for s in scenarios:
        if s in OPAQUE and s not in unavailable:
            tok = ctx.auth_server().issue()
            if http_get(env.ports[s], "/", bearer(tok))[0] != 200:
                unavailable[s] = "an opaque token is not accepted (introspection failed)"
            elif http_get(env.ports[s], "/", bearer("op_unknown_token"))[0] != 401:
                unavailable[s] = "an unknown opaque token is not refused"
    specs = []
    for s in scenarios:
        mode, algs, checks = SCENARIOS[s]
        if s in unavailable:
            continue
        problems = check_listener(env, s, keys, algs, checks)
        for alg in algs:
            if problems[alg]:
                msg = "%s %s: %s" % (s, alg, problems[alg])
                if (s, alg) in OPTIONAL:
                    ctx.notes.append("not measured (optional): " + msg)
                else:
                    ctx.problems.append("correctness check failed, not measured: " + msg)
                continue
            pool_alg = "RS256" if alg == "-" else alg
            if alg == "opaque":
                specs.append(Spec(s, alg, mode, pools[("opaque", mode)]))
                continue
            specs.append(Spec(s, alg, mode, pools[(pool_alg, mode)]))
    for s, why in unavailable.items():
        ctx.notes.append("%s unavailable: %s" % (s, why))
    if not any(sp.scenario == "none" for sp in specs):
        raise BenchError("the `none` listener does not work; nothing to compare with")
    report["rss_after_ready_kb"] = env.rss_kb()

    ctx.wrk = Wrk(ctx)
    est = len(specs) * (a.warmup + a.rounds * a.duration + (a.rounds + 1) * 0.3)
    log("%d runs per round, %d rounds of %g s (about %.0f s with warm-up)"
        % (len(specs), a.rounds, a.duration, est))
    if a.warmup > 0:
        for sp in specs:
            measure(ctx, env, sp, a.warmup, random.randrange(a.tokens), record=False)
    for r in range(a.rounds):
        # A fresh random order each round: a rotation keeps every run behind the
        # same neighbour, whose leftovers (caches, allocator) would then weigh on
        # the same scenario in every round.
        order = list(specs)
        random.shuffle(order)
        for sp in order:
            res = measure(ctx, env, sp, a.duration, random.randrange(a.tokens))
            res["round"] = r
        log("round %d/%d done" % (r + 1, a.rounds))
    report["rss_after_load_kb"] = env.rss_kb()
    report["hwm_kb"] = proc_status_kb(env.pid, "VmHWM")
    env.stop()
    return specs


def summarize(specs, rounds):
    """Rows with medians; added and ratios computed per round, then the median."""
    by_key = {sp.key: sp for sp in specs}
    none = by_key[("none", "-", "unique")]
    floor = by_key.get(("wasm_floor", "-", "unique"))

    def per_round(sp, r):
        for res in sp.results:
            if res["round"] == r:
                return res
        return None

    rows = []
    for sp in specs:
        added, ratio, above = [], [], []
        if sp.scenario in VS_NATIVE:
            ref = by_key.get(("native", sp.alg, "unique"))
        elif sp.scenario == "wasm_cache":
            ref = by_key.get(("native_cache", sp.alg, "repeated"))
        elif sp.scenario in REV_OF:
            ref = by_key.get((REV_OF[sp.scenario], sp.alg, sp.mode))
        elif sp.scenario in STATUS_OF:
            ref = by_key.get((STATUS_OF[sp.scenario], sp.alg, sp.mode))
        elif sp.scenario == "wasm_cache_opaque":
            ref = by_key.get(("wasm_cache", "RS256", "repeated"))
        elif sp.scenario in ("wasm_cache_alt", "wasm_cache_claims", "wasm_cache_strip",
                             "wasm_cache_rules"):
            ref = by_key.get(("wasm_cache", sp.alg, "repeated"))
        else:
            ref = None
        for r in range(rounds):
            mine, base = per_round(sp, r), per_round(none, r)
            if mine is None or base is None:
                continue
            add = mine["cpu_us"] - base["cpu_us"]
            added.append(add)
            low = per_round(floor, r) if floor is not None and sp not in (floor, none) else None
            if low is not None:
                above.append(mine["cpu_us"] - low["cpu_us"])
            if ref is not None:
                theirs = per_round(ref, r)
                if theirs is not None:
                    ref_add = theirs["cpu_us"] - base["cpu_us"]
                    ratio.append(add / ref_add if ref_add > 0 else None)
        res = sp.results
        rows.append({
            "scenario": sp.scenario,
            "alg": sp.alg,
            "tokens": sp.mode,
            "rps": median([x["rps"] for x in res]),
            "p50_ms": median([x["p50_us"] / 1000 for x in res]),
            "p99_ms": median([x["p99_us"] / 1000 for x in res]),
            "cpu_us": median([x["cpu_us"] for x in res]),
            "added_us": median(added),
            "added_min": min(added) if added else None,
            "added_max": max(added) if added else None,
            "ratio": median(ratio) if ref is not None else None,
            "ratio_to": ref.scenario if ref is not None else None,
            # CPU above the do-nothing module's in the same round, median
            "above_floor_us": median(above) if above else None,
            "check_label": CHECK_STATS.get(sp.scenario, ("", ""))[0],
            "check": median([x["check"] for x in res]),
            "non2xx": sum(x["status"] for x in res),
            "socket_errors": sum(x["errors"] for x in res),
            "requests": sum(x["requests"] for x in res),
            "rounds": len(res),
        })
    return rows


def fmt(v, spec="%.1f", none="-"):
    return none if v is None else spec % v


def print_table(headers, rows, out):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i < 3 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(headers, widths)))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))), file=out)


# ---------------------------------------------------------------- start-up, cold start, rotation
def startup_phase(ctx, report):
    """Envoy start -> /ready and RSS: no filter, one wasm listener."""
    srv = ctx.jwks({"keys": []})
    variants = [
        ("no filter", [("none", [])]),
        ("one wasm listener", [("w", [wasm_http_filter(ctx.wasm, {
            "jwks_uri": srv.url, "rules": [{"path_prefix": "/", "auth": "public"}]})])]),
    ]
    for label, listeners in variants:
        times, rss = [], []
        for _ in range(ctx.args.startups):
            env = make_envoy(ctx, "startup-%d" % len(ctx.envoys), listeners, [srv])
            try:
                times.append(env.start())
                time.sleep(0.3)  # let the worker settle before reading RSS
                rss.append(env.rss_kb())
            finally:
                env.stop()
        report["startup"][label] = {"ready_s": median(times), "rss_kb": median(rss),
                                    "n": len(times)}
    # Envoy with 1, 2, 4 and 8 workers (one VM each, plus the main thread's),
    # once every worker has verified tokens: the cost of a worker
    key = jose.key_for_alg("RS256", kid="mem-rs256")
    keysrv = ctx.jwks({"keys": [key.jwk(alg="RS256")]})
    tok = valid_token(key, "RS256")
    for conc in (1, 2, 4, 8):
        times, rss = [], []
        for _ in range(ctx.args.startups):
            env = make_envoy(ctx, "startup-%d" % len(ctx.envoys),
                             [("w", [wasm_http_filter(ctx.wasm, wasm_base(keysrv))])], [keysrv],
                             concurrency=conc)
            try:
                times.append(env.start())
                for _ in range(conc * 8):  # fresh connections: spread over the workers
                    http_get(env.ports["w"], "/", bearer(tok))
                time.sleep(0.3)
                rss.append(env.rss_kb())
            finally:
                env.stop()
        report["startup"]["filter, --concurrency %d, tokens verified" % conc] = {
            "ready_s": median(times), "rss_kb": median(rss), "n": len(times)}


def cold_start_phase(ctx, report):
    key = jose.key_for_alg("RS256", kid="cold-rs")
    doc = {"keys": [key.jwk(alg="RS256")]}
    token = valid_token(key, "RS256")
    for delay in ctx.args.cold_delays:
        for kind in ("wasm (auto)", "native"):
            srv = ctx.jwks(doc, delay=delay)
            if kind == "native":
                filters = [native_http_filter(srv)]
            else:
                filters = [wasm_http_filter(ctx.wasm, wasm_base(srv))]
            env = make_envoy(ctx, "cold-%d" % len(ctx.envoys), [("cold", filters)], [srv])
            try:
                ready_s = env.start()
                t = time.monotonic()
                try:
                    status = http_get(env.ports["cold"], "/", bearer(token), timeout=15)[0]
                except OSError as e:
                    status = "error: %s" % e
                first_s = time.monotonic() - t
                fetches = srv.count
            finally:
                env.stop()
                srv.stop()
            report["cold"].append({"kind": kind, "jwks_delay_s": delay, "ready_s": ready_s,
                                   "first_s": first_s, "status": status,
                                   "jwks_fetches": fetches})


def burst(port, tokens, concurrency):
    """Send one request per token from `concurrency` threads (keep-alive).
    Returns ({status: count}, seconds)."""
    counts = {}
    lock = threading.Lock()
    chunks = [tokens[i::concurrency] for i in range(concurrency)]

    def worker(toks):
        conn = http.client.HTTPConnection(HOST, port, timeout=20)
        start.wait()  # noqa: F821 (defined below, before any thread starts)
        for tok in toks:
            try:
                conn.request("GET", "/", headers=bearer(tok))
                r = conn.getresponse()
                r.read()
                st = r.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=20)
                st = "error"
            with lock:
                counts[st] = counts.get(st, 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in chunks if c]
    start = threading.Barrier(len(threads) + 1)
    for th in threads:
        th.start()
    start.wait()
    t = time.monotonic()
    for th in threads:
        th.join()
    return counts, time.monotonic() - t


def rotation_phase(ctx, report):
    a = ctx.args
    key_a = jose.key_for_alg("ES256", kid="rot-a")
    key_b = jose.key_for_alg("ES256", kid="rot-b")
    stranger = jose.key_for_alg("ES256", kid="x")
    doc_a = {"keys": [key_a.jwk(alg="ES256")]}
    doc_ab = {"keys": [key_a.jwk(alg="ES256"), key_b.jwk(alg="ES256")]}
    srv_w = ctx.jwks(doc_a)
    srv_n = ctx.jwks(doc_a)
    interval = a.min_refresh_interval
    wcfg = wasm_base(srv_w, min_refresh_interval=interval)
    env = make_envoy(ctx, "rotation", [
        ("wasm", [wasm_http_filter(ctx.wasm, wcfg)]),
        ("native", [native_http_filter(srv_n)]),
    ], [srv_w, srv_n])
    out = {"min_refresh_interval_s": interval, "burst": a.burst}
    try:
        env.start()
        for name in ("wasm", "native"):
            if not wait_keys(env, name, key_a, "ES256"):
                raise BenchError("rotation: %s never accepts the first key" % name)
        # a new key is published; the first token signed with it
        srv_w.set_document(doc_ab)
        srv_n.set_document(doc_ab)
        tok_b = valid_token(key_b, "ES256")
        for name, srv in (("wasm", srv_w), ("native", srv_n)):
            c0 = srv.count
            t = time.monotonic()
            status = http_get(env.ports[name], "/", bearer(tok_b), timeout=15)[0]
            out[name + "_new_kid"] = {"status": status, "seconds": time.monotonic() - t,
                                      "jwks_fetches": srv.count - c0}
        rotated_at = time.monotonic()

        def unknown(n):
            return [jose.sign(stranger, "ES256", jose.claims(iss=ISS, aud=AUD),
                              kid="unknown-" + secrets.token_hex(8)) for _ in range(n)]

        first, second, native_toks = unknown(a.burst), unknown(a.burst), unknown(a.burst)
        time.sleep(max(0.0, rotated_at + interval + 0.5 - time.monotonic()))
        # a burst of unknown kids after the interval: one refresh; a second one at
        # once: none (the interval has not passed)
        for label, toks in (("wasm_burst_1", first), ("wasm_burst_2", second)):
            c0 = srv_w.count
            counts, secs = burst(env.ports["wasm"], toks, a.burst_concurrency)
            time.sleep(0.3)  # a fetch still in flight is counted
            out[label] = {"statuses": counts, "seconds": secs, "jwks_fetches": srv_w.count - c0}
        c0 = srv_n.count
        counts, secs = burst(env.ports["native"], native_toks, a.burst_concurrency)
        time.sleep(0.3)
        out["native_burst"] = {"statuses": counts, "seconds": secs,
                               "jwks_fetches": srv_n.count - c0}
    finally:
        env.stop()
        srv_w.stop()
        srv_n.stop()
    report["rotation"] = out


# ---------------------------------------------------------------- output
def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return "%s, %d CPUs, %s MiB RAM, Linux %s" % (model, os.cpu_count() or 0, mem,
                                                   platform.release())


def envoy_version(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
        return out.strip().split("version:")[-1].strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def print_report(ctx, report, rows, out=sys.stdout):
    a = ctx.args
    w = lambda *x: print(*x, file=out)  # noqa: E731
    w()
    w("jwt-jwks benchmark, %s" % time.strftime("%Y-%m-%d %H:%M %Z"))
    w("machine: %s" % machine())
    w("envoy:   %s (--concurrency 1%s)" % (report["envoy_version"],
      ", pinned to CPU %d, wrk to CPU %d" % (ctx.envoy_cpu, ctx.wrk_cpu)
      if ctx.envoy_cpu is not None else ""))
    w("wasm:    %s (%d bytes, built %s)" % (ctx.wasm, report["wasm_size"],
                                           report["wasm_mtime"]))
    w("load:    wrk -t%d -c%d, %d rounds x %g s per run (+%g s warm-up), %d unique tokens "
      "per algorithm; direct_response 200; medians over rounds"
      % (a.threads, a.connections, a.rounds, a.duration, a.warmup, a.tokens))
    w()
    headers = ["scenario", "alg", "tokens", "rps", "p50 ms", "p99 ms", "CPU us/req",
               "added us", "(min..max)", "x native", "check"]
    table = []
    for r in rows:
        check = "-"
        if r["check"] is not None:
            check = "%s %.0f%%" % (r["check_label"], 100 * r["check"])
        if r["non2xx"]:
            check += " NON-2XX:%d" % r["non2xx"]
        if r["socket_errors"]:
            check += " sock-err:%d" % r["socket_errors"]
        ratio = fmt(r["ratio"], "%.2f")
        if r["ratio"] is not None and r["ratio_to"] == "native_cache":
            ratio += "c"
        table.append([r["scenario"], r["alg"], r["tokens"], fmt(r["rps"], "%.0f"),
                      fmt(r["p50_ms"], "%.2f"), fmt(r["p99_ms"], "%.2f"),
                      fmt(r["cpu_us"]), fmt(r["added_us"]),
                      "-" if r["scenario"] == "none" or r["added_min"] is None else
                      "%.0f..%.0f" % (r["added_min"], r["added_max"]),
                      ratio, check])
    print_table(headers, table, out)
    w()
    w("CPU us/req = Envoy's utime+stime over the run / requests wrk completed.")
    w("added = CPU us/req minus `none` of the same round (min..max over rounds).")
    w("x native = added / added of native (unique tokens) or of native_cache (repeated tokens,")
    w("marked c), same algorithm and round. check = the scenario's counter over the requests")
    w("its listener saw (native: jwt_authn allowed / jwt_cache_hit; wasm: host_verifications,")
    w("allowed, token_cache_hit).")

    by = {(r["scenario"], r["alg"]): r for r in rows}
    targets = []
    for alg in ("RS256", "ES256"):
        r = by.get(("wasm_host", alg))
        if r and r["ratio"] is not None:
            targets.append(("wasm_host %s unique: added / native added" % alg, "<= 1.10",
                            "%.2f" % r["ratio"], r["ratio"] <= 1.1))
    # repeated tokens: at most 5 us above a reference row (issue 5: the
    # filter's public route; issue 20: a module that does nothing)
    for scenario, ref_name, label in (("wasm_cache", "wasm_noop", "noop"),
                                      ("wasm_cache", "wasm_floor", "floor")):  # row medians
        ref = by.get((ref_name, "-"))
        for alg in ("RS256", "ES256"):
            r = by.get((scenario, alg))
            if r and ref and r["added_us"] is not None and ref["added_us"] is not None:
                lim = ref["added_us"] + 5
                targets.append(("%s %s repeated: added us" % (scenario, alg),
                                "<= %s+5 = %.1f" % (label, lim), "%.1f" % r["added_us"],
                                r["added_us"] <= lim))
    # issue 20: a module that does nothing; CPU above it, per round, median
    for alg in ("RS256", "ES256"):
        r = by.get(("wasm_cache", alg))
        if r and r.get("above_floor_us") is not None:
            targets.append(("wasm_cache %s repeated: us above wasm_floor, per round" % alg,
                            "<= 5", "%.1f" % r["above_floor_us"], r["above_floor_us"] <= 5))
    for rev, base_name in REV_OF.items():
        for alg in ("RS256", "ES256"):
            r, b = by.get((rev, alg)), by.get((base_name, alg))
            if r and b and r["added_us"] is not None and b["added_us"] is not None:
                delta = r["added_us"] - b["added_us"]
                targets.append(("%s %s: %d deny entries, added us - %s's"
                                % (rev, alg, REVOKED_ENTRIES, base_name),
                                "<= 2", "%.1f" % delta, delta <= 2))
    for scenario, base_name in STATUS_OF.items():
        for alg in ("RS256", "ES256"):
            r, b = by.get((scenario, alg)), by.get((base_name, alg))
            if r and b and r["added_us"] is not None and b["added_us"] is not None:
                delta = r["added_us"] - b["added_us"]
                targets.append(("%s %s: a status list, added us - %s's"
                                % (scenario, alg, base_name), "(reported)", "%.1f" % delta,
                                True))
    r, b = by.get(("wasm_cache_opaque", "opaque")), by.get(("wasm_cache", "RS256"))
    if r and b and r["added_us"] is not None and b["added_us"] is not None:
        lim = b["added_us"] + 5
        targets.append(("wasm_cache_opaque repeated: added us", "<= wasm_cache RS256+5 = %.1f" % lim,
                        "%.1f" % r["added_us"], r["added_us"] <= lim))
    r = by.get(("wasm_opaque_call", "opaque"))
    if r and r["added_us"] is not None:
        targets.append(("wasm_opaque_call: added us (one call per request)", "(reported)",
                        "%.1f" % r["added_us"], True))
    for alg, lim in (("RS256", 400), ("ES256", 400), ("EdDSA", 150)):
        r = by.get(("wasm_pure", alg))
        if r and r["added_us"] is not None:
            targets.append(("wasm_pure %s unique: added us" % alg, "<= %d" % lim,
                            "%.1f" % r["added_us"], r["added_us"] <= lim))
    targets.append((".wasm size", "<= 1048576", str(report["wasm_size"]),
                    report["wasm_size"] <= 1 << 20))
    w()
    w("issue 5 targets (information only; a benchmark does not pass or fail):")
    print_table(["target", "", "", "limit", "measured", "within"],
                [[t[0], "", "", t[1], t[2], "yes" if t[3] else "no"] for t in targets], out)

    w()
    w("start-up (Envoy spawn -> /ready LIVE; RSS once ready):")
    for label, v in report["startup"].items():
        w("  %-44s %6.3f s   RSS %7.1f MiB   (%s)"
          % (label, v["ready_s"], (v["rss_kb"] or 0) / 1024,
             "median of %d starts" % v["n"] if v["n"] > 1 else "the benchmark Envoy"))
    w("  benchmark Envoy RSS: %.1f MiB after ready, %.1f MiB after the load (VmHWM %.1f MiB)"
      % (report["rss_after_ready_kb"] / 1024, report["rss_after_load_kb"] / 1024,
         report["hwm_kb"] / 1024))
    base = report["startup"].get("no filter")
    one = report["startup"].get("one wasm listener")
    if base and one and base["rss_kb"] and one["rss_kb"]:
        w("  one wasm VM (main thread + 1 worker): +%.3f s to ready, +%.1f MiB RSS"
          % (one["ready_s"] - base["ready_s"], (one["rss_kb"] - base["rss_kb"]) / 1024))
    per = [(c, report["startup"].get("filter, --concurrency %d, tokens verified" % c))
           for c in (1, 2, 4, 8)]
    per = [(c, v) for c, v in per if v and v["rss_kb"]]
    if len(per) >= 2:
        (c0, v0), (c1, v1) = per[0], per[-1]
        w("  each worker beyond the first: +%.2f MiB RSS (concurrency %d -> %d)"
          % ((v1["rss_kb"] - v0["rss_kb"]) / 1024 / (c1 - c0), c0, c1))

    if report.get("cold"):
        w()
        w("cold start (a fresh Envoy; one request with a valid RS256 token sent as soon as "
          "/ready says LIVE):")
        for c in report["cold"]:
            w("  %-12s JWKS delay %4.2f s: spawn->ready %.3f s, ready->answer %.3f s, "
              "status %s, JWKS fetches %d" % (c["kind"], c["jwks_delay_s"], c["ready_s"],
                                             c["first_s"], c["status"], c["jwks_fetches"]))
    rot = report.get("rotation")
    if rot:
        w()
        w("key rotation (ES256; filter min_refresh_interval %d s; native jwt_authn "
          "cache_duration 3600 s):" % rot["min_refresh_interval_s"])
        for name in ("wasm", "native"):
            v = rot.get(name + "_new_kid")
            if v:
                w("  %-6s first token of a newly published kid: status %s after %.3f s, "
                  "JWKS fetches %d" % (name, v["status"], v["seconds"], v["jwks_fetches"]))

        def st(d):
            return ", ".join("%s x%d" % (k, n) for k, n in sorted(d.items(), key=str))
        for label, text in (("wasm_burst_1", "wasm   burst of %d unknown kids (interval passed)"),
                            ("wasm_burst_2", "wasm   the same at once again (within interval)"),
                            ("native_burst", "native burst of %d unknown kids")):
            v = rot.get(label)
            if v:
                w("  %s: JWKS fetches %d, in %.2f s, answers: %s"
                  % (text.replace("%d", str(rot["burst"])), v["jwks_fetches"], v["seconds"],
                     st(v["statuses"])))
    if ctx.notes:
        w()
        w("notes:")
        for n in ctx.notes:
            w("  - " + n)
    if ctx.problems:
        w()
        w("could not run:")
        for p in ctx.problems:
            w("  - " + p)


# ---------------------------------------------------------------- entry point
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--duration", type=int, default=3,
                   help="whole seconds per run (default 3; wrk takes whole seconds)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--warmup", type=int, default=1,
                   help="whole seconds per run of the warm-up pass (default 1; 0: none)")
    p.add_argument("--tokens", type=int, default=20000,
                   help="unique tokens per algorithm (default 20000)")
    p.add_argument("--only", default="",
                   help="comma-separated scenarios to measure (none is always measured)")
    p.add_argument("--startups", type=int, default=3, help="Envoy starts per start-up variant")
    p.add_argument("--cold-delays", default="0,0.2",
                   help="JWKS answer delays (s) for the cold-start runs (default 0,0.2)")
    p.add_argument("--min-refresh-interval", type=int, default=5,
                   help="the filter's min_refresh_interval in the rotation run (default 5)")
    p.add_argument("--burst", type=int, default=500, help="unknown kids per burst (default 500)")
    p.add_argument("--burst-concurrency", type=int, default=50)
    p.add_argument("--alt", metavar="WASM",
                   help="another module, measured as wasm_alt with wasm_host's configuration "
                        "and as wasm_cache_alt with wasm_cache's "
                        "(make bench-floor: the floor variant of tools/floor.patch)")
    p.add_argument("--floor", metavar="WASM",
                   help="a do-nothing module (tools/noop) for the wasm_floor row")
    p.add_argument("--no-pin", action="store_true", help="do not pin Envoy and wrk to CPUs")
    p.add_argument("--skip-extras", action="store_true",
                   help="only the load table (no start-up, cold start, rotation)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    a = p.parse_args(argv)
    a.only = {s.strip() for s in a.only.split(",") if s.strip()}
    unknown = a.only - set(SCENARIOS)
    if unknown:
        p.error("unknown scenario(s): %s (known: %s)" % (", ".join(sorted(unknown)),
                                                          ", ".join(ORDER)))
    if a.only & {"wasm_alt", "wasm_cache_alt"} and not a.alt:
        p.error("wasm_alt and wasm_cache_alt need --alt WASM")
    if a.alt:
        a.alt = os.path.abspath(a.alt)
        if not os.path.isfile(a.alt):
            p.error("--alt: no such file: %s" % a.alt)
    a.cold_delays = [float(x) for x in a.cold_delays.split(",") if x.strip()]
    if a.rounds < 1 or a.duration < 1 or a.warmup < 0 or a.connections < a.threads or a.tokens < 1:
        p.error("need --rounds >= 1, --duration >= 1, --warmup >= 0, --connections >= --threads, --tokens >= 1")
    a.wasm = os.path.abspath(os.path.join(REPO_ROOT, os.environ.get("JWT_JWKS_WASM")
                                          or DEFAULT_WASM))
    envoy = os.environ.get("ENVOY_BIN") or DEFAULT_ENVOY
    a.envoy = os.path.abspath(os.path.join(REPO_ROOT, envoy)) if os.sep in envoy else envoy
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    missing = []
    if not shutil.which("wrk"):
        missing.append("wrk is not on PATH (Debian: apt-get install -y wrk)")
    if not (shutil.which(args.envoy) or os.access(args.envoy, os.X_OK)):
        missing.append("Envoy not found: %s (set ENVOY_BIN)" % args.envoy)
    if not os.path.isfile(args.wasm):
        missing.append("filter not found: %s (make build, or set JWT_JWKS_WASM)" % args.wasm)
    if missing:
        for m in missing:
            print("bench: " + m, file=sys.stderr)
        return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_term)
    ctx = Ctx(args)
    st = os.stat(args.wasm)
    report = {"startup": {}, "cold": [], "rotation": None, "wasm_size": st.st_size,
              "wasm_mtime": time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime)),
              "envoy_version": envoy_version(args.envoy)}
    code = 0
    rows = []
    t0 = time.monotonic()
    try:
        specs = run_benchmark(ctx, report)
        rows = summarize(specs, args.rounds)
        for r in rows:
            if r["non2xx"] or r["socket_errors"]:
                ctx.notes.append("%s %s: %d non-2xx answers and %d socket errors under load "
                                 "(its numbers are suspect)" % (r["scenario"], r["alg"],
                                                               r["non2xx"], r["socket_errors"]))
        if not args.skip_extras:
            log("start-up, cold start and rotation")
            for phase in (startup_phase, cold_start_phase, rotation_phase):
                try:
                    phase(ctx, report)
                except BenchError as e:
                    ctx.problems.append("%s: %s" % (phase.__name__, e))
        print_report(ctx, report, rows)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"report": report, "rows": rows, "notes": ctx.notes,
                           "problems": ctx.problems,
                           "runs": [{"scenario": sp.scenario, "alg": sp.alg, "tokens": sp.mode,
                                     "results": sp.results} for sp in specs]}, f, indent=1)
        if ctx.problems:
            code = 1
    except BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        args.keep = True
        code = 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        code = 130
    finally:
        ctx.cleanup()
        if args.keep:
            log("work directory kept: %s" % ctx.workdir)
        else:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
        log("total %.0f s" % (time.monotonic() - t0))
    return code


if __name__ == "__main__":
    sys.exit(main())
