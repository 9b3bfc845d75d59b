#!/usr/bin/env python3
"""Benchmark on Kong's engine: nginx + ngx_wasm_module (Wasmtime) (`make bench-kong`).

    NGX_WASM_NGINX=/path/to/nginx .venv/bin/python tools/bench_kong.py \\
        [--rounds 5] [--duration 3] [--connections 16]

The nginx must be built with ngx_wasm_module (see kong/README.md); this script
builds nothing and installs nothing. It starts, all on 127.0.0.1, and stops by
process group when it ends:
  * a JWKS server publishing one key per algorithm (RS256, ES256, EdDSA) and a
    test authorization server (opaque tokens, RFC 7662 answers);
  * ONE nginx, one worker (pinned to CPU 0 when there are 2 CPUs or more), a
    server per scenario, each proxying to a `return 200` server of the same nginx
    (so the upstream costs the same in every scenario, `none` included):
        none           no filter
        wasm_floor     a module whose on_http_request_headers returns Continue
                       (tools/noop): the cost of any proxy-wasm filter here
        wasm_pure      this filter, token_cache_size 0: every token verified in wasm
                       (RS256, ES256, EdDSA; unique tokens)
        wasm_cache     this filter with its defaults: one repeated RS256 token
        wasm_cache_opaque  the same with an introspection block: one repeated
                       opaque token, introspected once, then from the cache
  * wrk (pinned to CPU 1), the Lua script of tools/bench.py rotating through tokens.

CPU per request: utime+stime of the nginx worker (/proc) over the run divided by
the requests wrk completed; "added" is that minus `none` of the same round;
medians over rounds, runs interleaved in a fresh random order each round.

Then memory and start-up: nginx with 1, 2 and 4 workers and the filter on one
server (the module is compiled by Wasmtime when nginx starts): time from spawn to
the first answer of every worker, and the RSS of master and workers once each has
answered a valid token.

Prints numbers and never judges a run: exit 0, unless something could not run
(1) or a tool is missing (2).
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402  (tools/bench.py: tokens, wrk, servers, tables)
from bench import AUD, ISS, BenchError, bearer, http_get, jose, log  # noqa: E402
from e2e.authserver import CLIENT_ID, CLIENT_SECRET  # noqa: E402
from e2e.nginx import nginx_quote  # noqa: E402
from e2e.ports import HOST, free_ports  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGS = ("RS256", "ES256", "EdDSA")
# scenario: (token mode, algorithms, filter)
SCENARIOS = {
    "none": ("unique", ("-",), None),
    "wasm_floor": ("unique", ("-",), "noop"),
    "wasm_pure": ("unique", ALGS, "jwt_jwks"),
    "wasm_cache": ("repeated", ("RS256",), "jwt_jwks"),
    "wasm_cache_opaque": ("repeated", ("opaque",), "jwt_jwks"),
}
ORDER = list(SCENARIOS)


def filter_config(name, jwks, auth):
    base = {"jwks_uri": jwks.url, "issuers": [ISS], "audiences": [AUD],
            "allowed_algorithms": list(ALGS)}
    if name == "wasm_pure":
        base["token_cache_size"] = 0
    if name == "wasm_cache_opaque":
        base["issuers"].append(auth.issuer)
        base["audiences"].append("api")
        base["introspection"] = {"endpoint": auth.url_for("/introspect"),
                                 "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    return base


def nginx_conf(workdir, wasm, noop, servers, upstream_port, workers, flags=()):
    """servers: [(name, port, module or None, filter config or None)]."""
    tmp = os.path.join(workdir, "tmp")
    lines = [
        "daemon off;",
        "master_process on;",
        "worker_processes %d;" % workers,
        "error_log %s warn;" % os.path.join(workdir, "error.log"),
        "pid %s;" % os.path.join(workdir, "nginx.pid"),
        "events { worker_connections 4096; }",
        "wasm {",
        "    module jwt_jwks %s;" % wasm,
        "    module noop %s;" % noop,
        "    shm_kv jwt_jwks 64m;",
    ]
    if flags:  # Kong: nginx_wasm_wasmtime_<name> = <value> in kong.conf
        lines.append("    wasmtime {")
        lines += ["        flag %s %s;" % tuple(f.split("=", 1)) for f in flags]
        lines.append("    }")
    lines += [
        "}",
        "http {",
        "    access_log off;",
        "    client_body_temp_path %s/body;" % tmp,
        "    proxy_temp_path %s/proxy;" % tmp,
        "    upstream backend { server %s:%d; keepalive 64; }" % (HOST, upstream_port),
        "    server { listen %s:%d; location / { return 200 'ok'; } }" % (HOST, upstream_port),
    ]
    for name, port, module, cfg in servers:
        lines += ["    server {  # %s" % name,
                  "        listen %s:%d;" % (HOST, port),
                  "        location / {"]
        if module == "noop":
            lines.append("            proxy_wasm noop;")
        elif module:
            lines.append("            proxy_wasm jwt_jwks %s;" % nginx_quote(json.dumps(cfg)))
        lines += ["            proxy_http_version 1.1;",
                  "            proxy_set_header Connection \"\";",
                  "            proxy_pass http://backend;",
                  "        }",
                  "    }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                text = f.read()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(p))
    return out


class NginxProc:
    """One nginx, in its own process group; the interface bench.measure uses."""

    def __init__(self, binary, workdir, conf, ports, cpu=None):
        self.binary, self.workdir, self.ports, self.cpu = binary, workdir, ports, cpu
        os.makedirs(os.path.join(workdir, "tmp"), exist_ok=True)
        self.conf_path = os.path.join(workdir, "nginx.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.proc = None
        self.name = "nginx"

    def start(self, timeout=60.0):
        cmd = [self.binary, "-p", self.workdir, "-c", self.conf_path]
        if self.cpu is not None:
            cmd = ["taskset", "-c", str(self.cpu)] + cmd
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + timeout
        port = next(iter(self.ports.values()))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("nginx exited %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                http_get(port, "/", timeout=2)
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.02)
        raise BenchError("nginx did not answer within %.0f s" % timeout)

    def log_tail(self):
        try:
            with open(os.path.join(self.workdir, "error.log")) as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def workers(self):
        return children(self.proc.pid)

    def cpu_ticks(self):
        return sum(bench.proc_cpu_ticks(p) for p in [self.proc.pid] + self.workers())

    def rss_kb(self):
        return sum(bench.proc_status_kb(p, "VmRSS") or 0 for p in [self.proc.pid] + self.workers())

    def stats(self):
        return {}

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.proc = None


def wait_ok(port, token, want=200, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_get(port, "/", bearer(token))[0] == want:
            return True
        time.sleep(0.1)
    return False


def run(ctx, a, noop):
    keys = {alg: jose.key_for_alg(alg, kid="bench-" + alg.lower()) for alg in ALGS}
    doc = {"keys": [keys[alg].jwk(alg=alg) for alg in ALGS]}
    workers = os.cpu_count() or 1
    pools = {}
    for alg in ALGS:
        toks = bench.mint_pool(keys[alg], alg, a.tokens, workers, exp_in=3 * 3600)
        pools[(alg, "unique")] = bench.write_lines(
            os.path.join(ctx.workdir, "unique-%s.txt" % alg), toks)
    pools[("-", "unique")] = pools[("RS256", "unique")]
    one = jose.sign(keys["RS256"], "RS256", jose.claims(iss=ISS, aud=AUD, exp_in=3 * 3600))
    pools[("RS256", "repeated")] = bench.write_lines(
        os.path.join(ctx.workdir, "repeated-RS256.txt"), [one])
    jwks = ctx.jwks(doc)
    auth = ctx.auth_server()
    opaque = auth.issue(exp_in=3 * 3600)
    pools[("opaque", "repeated")] = bench.write_lines(
        os.path.join(ctx.workdir, "repeated-opaque.txt"), [opaque])

    names = [s for s in ORDER if s == "none" or not a.only or s in a.only]
    ports = dict(zip(names + ["upstream"], free_ports(len(names) + 1)))
    servers = [(s, ports[s], SCENARIOS[s][2], filter_config(s, jwks, auth)) for s in names]
    ndir = os.path.join(ctx.workdir, "nginx-bench")
    conf = nginx_conf(ndir, ctx.wasm, noop, servers, ports["upstream"], 1, a.wasmtime_flag)
    env = NginxProc(a.nginx, ndir, conf, {s: ports[s] for s in names}, cpu=ctx.envoy_cpu)
    ctx.envoys.append(env)
    ready = env.start()
    log("nginx (pid %d, 1 worker) answering in %.2f s" % (env.pid, ready))

    # correctness before measuring
    for s in names:
        mode, algs, module = SCENARIOS[s]
        if module != "jwt_jwks":
            continue
        for alg in algs:
            tok = opaque if alg == "opaque" else (
                one if mode == "repeated" else bench.valid_token(keys[alg], alg))
            if not wait_ok(ports[s], tok):
                raise BenchError("%s %s: a valid token is not accepted" % (s, alg))
            bad = "op_unknown" if alg == "opaque" else bench.forged_token(keys[alg], alg)
            if http_get(ports[s], "/", bearer(bad))[0] != 401:
                raise BenchError("%s %s: a bad token is not refused" % (s, alg))

    specs = [bench.Spec(s, alg, SCENARIOS[s][0], pools[(alg, SCENARIOS[s][0])])
             for s in names for alg in SCENARIOS[s][1]]
    ctx.wrk = bench.Wrk(ctx)
    offsets = {}
    for sp in specs:  # warm-up
        bench.measure(ctx, env, sp, a.warmup, 0, record=False)
    for r in range(a.rounds):
        order = specs[:]
        random.shuffle(order)
        for sp in order:
            off = offsets.get(sp.key, 0)
            res = bench.measure(ctx, env, sp, a.duration, off)
            offsets[sp.key] = off + res["requests"]
        log("round %d/%d done" % (r + 1, a.rounds))
    env.stop()
    return specs


def memory_phase(ctx, a, noop):
    """nginx with 1, 2, 4 workers and the filter: time to every worker's first
    answer, RSS once each worker has verified a token."""
    key = jose.key_for_alg("RS256", kid="mem-rs256")
    jwks = ctx.jwks({"keys": [key.jwk(alg="RS256")]})
    tok = bench.valid_token(key, "RS256")
    rows = []
    for workers in (1, 2, 4):
        port, up = free_ports(2)
        cfg = {"jwks_uri": jwks.url, "issuers": [ISS], "audiences": [AUD]}
        ndir = os.path.join(ctx.workdir, "nginx-mem-%d" % workers)
        conf = nginx_conf(ndir, ctx.wasm, noop, [("main", port, "jwt_jwks", cfg)], up, workers,
                          a.wasmtime_flag)
        env = NginxProc(a.nginx, ndir, conf, {"main": port})
        ctx.envoys.append(env)
        ready = env.start()
        # fresh connections, which the kernel spreads over the workers; each
        # worker compiled the module at start and verifies a token here
        for _ in range(workers * 8):
            if http_get(port, "/", bearer(tok))[0] != 200:
                raise BenchError("memory phase: a valid token is refused")
        time.sleep(0.5)
        rows.append((workers, ready, env.rss_kb(),
                     [bench.proc_status_kb(p, "VmRSS") for p in env.workers()]))
        env.stop()
    return rows


def report(ctx, a, specs, mem, out=sys.stdout):
    none = {i: r for i, r in enumerate(next(sp for sp in specs if sp.scenario == "none").results)}
    w = lambda s="": print(s, file=out)  # noqa: E731
    version = subprocess.run([a.nginx, "-v"], capture_output=True, text=True).stderr.strip()
    w("jwt-jwks on Kong's engine (nginx + ngx_wasm_module, Wasmtime), %s UTC"
      % time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    w("machine: %d CPUs; %s; 1 worker%s; wrk -c%d, %d rounds x %d s, medians"
      % (os.cpu_count() or 1, version, " pinned to CPU 0" if ctx.envoy_cpu is not None else "",
         a.connections, a.rounds, a.duration))
    w("wasm:    %s (%d bytes)" % (ctx.wasm, os.path.getsize(ctx.wasm)))
    w("wasmtime flags: %s" % (", ".join(a.wasmtime_flag) or "none (ngx_wasm_module's defaults)"))
    w()
    rows = []
    for sp in specs:
        added = [r["cpu_us"] - none[i]["cpu_us"] for i, r in enumerate(sp.results)]
        rows.append([sp.scenario, sp.alg, sp.mode,
                     "%.0f" % statistics.median(r["rps"] for r in sp.results),
                     "%.1f" % statistics.median(r["cpu_us"] for r in sp.results),
                     "%.1f" % statistics.median(added) if sp.scenario != "none" else "0.0",
                     "%.0f..%.0f" % (min(added), max(added)) if sp.scenario != "none" else "-",
                     str(sum(r["errors"] + r["status"] for r in sp.results))])
    bench.print_table(["scenario", "alg", "tokens", "rps", "CPU us/req", "added us",
                       "(min..max)", "errors"], rows, out)
    w()
    w("memory and start-up (nginx with the filter on one server; RSS of master + workers):")
    for workers, ready, rss, each in mem:
        w("  %d worker(s): first answer %.2f s, RSS %.1f MiB (workers: %s MiB)"
          % (workers, ready, rss / 1024, ", ".join("%.1f" % (x / 1024) for x in each if x)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nginx", default=os.environ.get("NGX_WASM_NGINX"))
    p.add_argument("--wasm", default=os.environ.get("JWT_JWKS_WASM") or os.path.join(
        ROOT, "target/wasm32-wasip1/release/jwt_jwks.wasm"))
    p.add_argument("--noop", default=os.path.join(
        ROOT, "tools/noop/target/wasm32-wasip1/release/noop.wasm"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokens", type=int, default=20000)
    p.add_argument("--only", default="", help="comma-separated scenarios (none always runs)")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--wasmtime-flag", action="append", default=[], metavar="NAME=VALUE",
                   help="a `flag NAME VALUE;` in wasmtime{} (e.g. opt_level=speed)")
    a = p.parse_args(argv)
    a.only = [s for s in a.only.split(",") if s]
    missing = [what for what, ok in (
        ("NGX_WASM_NGINX (an nginx built with ngx_wasm_module)", a.nginx and os.path.isfile(a.nginx)),
        ("the filter (make build)", os.path.isfile(a.wasm)),
        ("tools/noop (make bench builds it)", os.path.isfile(a.noop)),
        ("wrk", shutil.which("wrk"))) if not ok]
    if missing:
        print("bench-kong: missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    a.wasm, a.noop = os.path.abspath(a.wasm), os.path.abspath(a.noop)
    ctx = bench.Ctx(argparse.Namespace(wasm=a.wasm, envoy=None, no_pin=a.no_pin,
                                       threads=a.threads, connections=a.connections))
    try:
        specs = run(ctx, a, a.noop)
        mem = [] if a.skip_memory else memory_phase(ctx, a, a.noop)
        report(ctx, a, specs, mem)
    except BenchError as e:
        print("bench-kong: %s" % e, file=sys.stderr)
        return 1
    finally:
        ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
