#!/usr/bin/env python3
"""Instructions and simulated cache misses per request, under callgrind (`make bench-callgrind`).

    .venv/bin/python tools/cgbench.py [--requests 400] [--only native,wasm_host]

`make bench` times CPU per request, which moves by several percent from run to run
on a shared machine. This counts instead: one Envoy (the same listeners as
`make bench`, see tools/bench.py) runs under valgrind's callgrind with
instrumentation off until the measured requests, and each scenario's requests are
counted on their own: instructions (Ir), first-level instruction and data cache
misses (I1, D1: simulated 32 KiB caches), last-level misses (LL) and mispredicted
conditional branches (Bcm). The same binary, module and requests give the same
counts, whatever else the machine does; they are not time, but where the time of
`make bench` goes: an I1 or D1 miss costs about 10-15 cycles, a mispredicted
branch about 15, an LL miss about 150.

Each column is per request, minus the `none` listener's. Envoy's own timers and the
filter's 100 ms tick keep running while valgrind slows everything about 50 times;
their cost per second is measured first, on an idle Envoy, and taken off each run
in proportion to its length. "wasm" is the share of the counts in code outside
every mapped file above 4 GiB, where V8 puts the module's compiled code.

Needs valgrind (Debian package `valgrind`); installs nothing. Prints numbers and
never judges a run: exit 0 unless something could not run (1) or a tool is missing (2).
"""

import argparse
import glob
import http.client
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402  (tools/bench.py: listeners, keys, tokens, Envoy process)

SCENARIOS = ["none", "wasm_floor", "wasm_noop", "native", "native_cache", "wasm_host", "wasm_host_rev",
             "wasm_alt", "wasm_cache", "wasm_cache_alt", "wasm_cache_identity", "wasm_cache_claims",
             "wasm_cache_strip", "wasm_cache_rules", "wasm_cache_rev", "wasm_pure",
             "wasm_cache_opaque",
             "wasm_opaque_call"]
EVENTS = ("Ir", "I1mr", "D1mr", "D1mw", "DLmr", "DLmw", "ILmr", "Bcm")


def real_envoy(path):
    """The Envoy binary itself: valgrind must start it, not the venv's Python
    launcher (which execs it, out of valgrind's sight)."""
    with open(path, "rb") as f:
        if f.read(2) != b"#!":
            return path
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    found = sorted(glob.glob(os.path.join(root, "lib", "python*", "site-packages", "envoy",
                                          "_bin", "envoy")))
    if not found:
        raise bench.BenchError("%s is a launcher script and no envoy/_bin/envoy is beside "
                               "it" % path)
    return found[0]


def read_dump(path):
    """{event: total, "wasm": {event: total}} of one callgrind dump."""
    events, totals = None, None
    wasm = dict.fromkeys(EVENTS, 0)
    names = {"ob": {}, "fn": {}}
    ob = fn = ""
    skip_next = False
    with open(path, errors="replace") as f:
        for line in f:
            if skip_next:  # the inclusive cost of a call, not this function's own
                skip_next = False
                continue
            head = line[:1]
            if head.isdigit() or head in "+-*":
                if events and ob == "???" and fn.startswith("0x") and int(fn.split("'")[0], 16) >= 1 << 32:
                    for ev, v in zip(events, line.split()[1:]):
                        if ev in wasm:
                            wasm[ev] += int(v)
            elif line.startswith(("ob=", "fn=", "cob=", "cfn=")):
                # Compressed names: "(id) name" defines, "(id)" refers; a
                # call target's cob/cfn share the ids of ob/fn.
                key, rest = line.rstrip("\n").split("=", 1)
                kind = key[-2:]
                m = re.match(r"\((\d+)\)\s*(.*)", rest)
                if m:
                    if m.group(2):
                        names[kind][m.group(1)] = m.group(2)
                    rest = names[kind].get(m.group(1), "")
                if key == "ob":
                    ob = rest.strip()
                elif key == "fn":
                    fn = rest.strip()
            elif line.startswith("calls="):
                skip_next = True
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                totals = [int(x) for x in line.split()[1:]]
    if events is None or totals is None:
        raise bench.BenchError("no totals in %s" % path)
    out = dict(zip(events, totals))
    out["wasm"] = wasm
    return out


class Callgrind:
    def __init__(self, workdir, pid):
        self.workdir = workdir
        self.pid = pid
        self.n = 0
        self.last = None

    def ctl(self, *args):
        subprocess.run(["callgrind_control"] + list(args) + [str(self.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def measure(self, action):
        """Counts of one action (instrumentation on around it) and its seconds."""
        self.ctl("-i", "on")
        self.ctl("-z")
        t = time.monotonic()
        action()
        secs = time.monotonic() - t
        self.ctl("-i", "off")
        self.ctl("-d")
        self.n += 1
        path = os.path.join(self.workdir, "callgrind.out.%d.%d" % (self.pid, self.n))
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.last = path
        return read_dump(path), secs


def requests(port, tokens):
    """One keep-alive connection, one request per token; {status: count}."""
    conn = http.client.HTTPConnection(bench.HOST, port, timeout=300)
    codes = {}
    try:
        for t in tokens:
            headers = {"Authorization": "Bearer " + t} if t else {}
            conn.request("GET", "/", headers=headers)
            r = conn.getresponse()
            r.read()
            codes[r.status] = codes.get(r.status, 0) + 1
    finally:
        conn.close()
    return codes


def per_request(counts, secs, idle, n):
    """Counts per request, less the idle rate for the run's length."""
    out = {ev: (counts.get(ev, 0) - idle[ev] * secs) / n for ev in EVENTS}
    out["wasm"] = {ev: (counts["wasm"][ev] - idle["wasm"][ev] * secs) / n for ev in EVENTS}
    return out


def run(args):
    ctx = bench.Ctx(args)
    try:
        return measure_all(ctx, args)
    finally:
        ctx.cleanup()


def measure_all(ctx, args):
    keys = {alg: bench.jose.key_for_alg(alg, kid="bench-" + alg.lower()) for alg in bench.ALGS}
    doc = {"keys": [keys[alg].jwk(alg=alg) for alg in bench.ALGS]}
    n, warm = args.requests, args.warm
    algs = [a for a in args.algs.split(",") if a]
    pools = {alg: bench.mint_pool(keys[alg], alg, n + warm, os.cpu_count() or 1, 3 * 3600)
             for alg in algs}
    repeated = {alg: bench.valid_token(keys[alg], alg) for alg in algs}
    srv = ctx.jwks(doc)

    wrapper = os.path.join(ctx.workdir, "envoy-callgrind")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\ncd '%s' || exit 1\nexec valgrind --tool=callgrind "
                "--instr-atstart=no --cache-sim=yes --branch-sim=yes "
                "--smc-check=all-non-file '%s' \"$@\"\n" % (ctx.workdir, real_envoy(args.envoy)))
    os.chmod(wrapper, 0o755)
    ctx.envoy_bin = wrapper
    scenarios = [s for s in SCENARIOS if s == "none" or not args.only or s in args.only]
    for alt in ("wasm_alt", "wasm_cache_alt"):
        if not args.alt and alt in scenarios:
            scenarios.remove(alt)
    if not args.floor and "wasm_floor" in scenarios:
        scenarios.remove("wasm_floor")
    listeners = [(s, bench.scenario_filters(ctx, s, srv, set())) for s in scenarios]
    servers = [srv] + ([ctx.revocation_list()] if any(s in bench.REV_OF for s in scenarios)
                       else [])
    opaque = {}
    if any(s in bench.OPAQUE for s in scenarios):
        auth = ctx.auth_server()
        servers.append(auth)
        one = auth.issue(exp_in=3 * 3600)
        # the repeated token, and a fresh one per request for the uncached row
        opaque["wasm_cache_opaque"] = [one] * (n + warm)
        opaque["wasm_opaque_call"] = [auth.issue(exp_in=3 * 3600) for _ in range(n + warm)]
    env = bench.make_envoy(ctx, "callgrind-envoy", listeners, servers)
    bench.log("starting Envoy under callgrind (slow)")
    env.start(timeout=900)
    for s in scenarios:
        if s != "none" and bench.SCENARIOS[s][2]:
            if not bench.wait_keys(env, s, keys["RS256"], "RS256", timeout=300):
                raise bench.BenchError("%s never accepts a valid token" % s)
            if s in bench.REV_OF and not bench.wait_revoked(env, s, keys["RS256"], timeout=600):
                raise bench.BenchError("%s never loads its revocation list" % s)
    cg = Callgrind(ctx.workdir, env.pid)
    plan = []
    for s in scenarios:
        mode, s_algs, checks = bench.SCENARIOS[s]
        for alg in (algs if checks else ["RS256"]):
            if checks and alg not in s_algs:
                continue
            toks = ([repeated[alg]] * (n + warm)) if mode == "repeated" else pools[alg]
            plan.append((s, alg if checks else "-", opaque.get(s, toks)))
    # Every scenario warmed before the idle rate is taken: V8 compiles hot
    # code again (optimized) in the background, which must not fall into
    # the idle measurement nor into a later scenario's.
    for s, _, toks in plan:
        requests(env.ports[s], toks[:warm])

    idle_counts, idle_secs = cg.measure(lambda: time.sleep(args.idle))
    idle = {ev: idle_counts.get(ev, 0) / idle_secs for ev in EVENTS}
    idle["wasm"] = {ev: idle_counts["wasm"][ev] / idle_secs for ev in EVENTS}
    bench.log("idle Envoy: %.0f instructions per second" % idle["Ir"])

    rows = {}
    for s, alg, toks in plan:
        requests(env.ports[s], toks[max(0, warm - 20):warm])
        codes = {}

        def act():
            codes.update(requests(env.ports[s], toks[warm:warm + n]))

        counts, secs = cg.measure(act)
        if codes != {200: n}:
            raise bench.BenchError("%s %s: answers %s, expected %d x 200" % (s, alg, codes, n))
        key = (s, alg)
        rows[key] = per_request(counts, secs, idle, n)
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            shutil.copy(cg.last, os.path.join(args.keep, "callgrind.%s.%s" % key))
        bench.log("%s %s: %.0f instructions per request" % (key + (rows[key]["Ir"],)))
    return rows


def estimate(d):
    """Cycles by callgrind's usual estimate: each instruction one cycle, a
    first-level miss or a mispredicted branch ten more, a last-level miss a
    hundred more. A model, not time; but the same every run."""
    return (d["Ir"] + 10 * (d["I1mr"] + d["D1mr"] + d["D1mw"] + d["Bcm"])
            + 100 * (d["ILmr"] + d["DLmr"] + d["DLmw"]))


def print_rows(rows, out=sys.stdout):
    base = rows[("none", "-")]
    head = ("scenario", "alg", "Ir", "I1 miss", "D1 miss", "LL miss", "Bcm",
            "wasm Ir", "wasm I1", "est. cycles", "x native")
    lines, est = [], {}
    for (s, alg), r in rows.items():
        b, bw = (base, base["wasm"]) if s != "none" else ({}, {})
        d = {ev: r[ev] - b.get(ev, 0) for ev in EVENTS}
        w = {ev: r["wasm"][ev] - bw.get(ev, 0) for ev in EVENTS}
        est[(s, alg)] = estimate(d)
        ref = est.get(("native", alg)) if s in bench.VS_NATIVE else None
        lines.append((s, alg, "%.0f" % d["Ir"], "%.0f" % d["I1mr"],
                      "%.0f" % (d["D1mr"] + d["D1mw"]),
                      "%.0f" % (d["ILmr"] + d["DLmr"] + d["DLmw"]), "%.0f" % d["Bcm"],
                      "%.0f" % w["Ir"], "%.0f" % w["I1mr"], "%.0f" % est[(s, alg)],
                      "%.2f" % (est[(s, alg)] / ref) if ref else "-"))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    fmt = "  ".join("%%-%ds" % w if i < 2 else "%%%ds" % w for i, w in enumerate(widths))
    print(fmt % head, file=out)
    print(fmt % tuple("-" * w for w in widths), file=out)
    for l in lines:
        print(fmt % l, file=out)
    print("\nPer request; every row but `none` less `none` (its own row: absolute).", file=out)
    print("wasm = code V8 compiled from the module (the filter, its SDK and crates).", file=out)
    print("est. cycles = Ir + 10 x (I1 + D1 misses + Bcm) + 100 x LL misses; x native: of the",
          file=out)
    print("native row of the same algorithm (same run, both less `none`).", file=out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=400, help="measured requests per run")
    p.add_argument("--algs", default="RS256,ES256")
    p.add_argument("--only", default="", help="comma-separated scenarios (none always runs)")
    p.add_argument("--warm", type=int, default=20,
                   help="requests per scenario before counting (V8 tiers up hot code)")
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle measurement")
    p.add_argument("--floor", metavar="WASM",
                   help="a do-nothing module (tools/noop), counted as wasm_floor")
    p.add_argument("--keep", metavar="DIR",
                   help="copy each scenario's callgrind dump here, for callgrind_annotate")
    p.add_argument("--alt", metavar="WASM",
                   help="another module, counted as wasm_alt with wasm_host's configuration "
                        "and as wasm_cache_alt with wasm_cache's")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    a.only = [s for s in a.only.split(",") if s]
    if {"wasm_alt", "wasm_cache_alt"} & set(a.only) and not a.alt:
        p.error("wasm_alt and wasm_cache_alt need --alt WASM")
    a.alt = a.alt and os.path.abspath(a.alt)
    a.floor = a.floor and os.path.abspath(a.floor)
    unknown = set(a.only) - set(SCENARIOS)
    if unknown or a.requests < 1:
        p.error("unknown scenario(s) %s or --requests < 1" % sorted(unknown))
    a.wasm = os.path.abspath(os.path.join(bench.REPO_ROOT, os.environ.get("JWT_JWKS_WASM")
                                          or bench.DEFAULT_WASM))
    a.envoy = os.path.abspath(os.path.join(bench.REPO_ROOT, os.environ.get("ENVOY_BIN")
                                           or bench.DEFAULT_ENVOY))
    a.no_pin, a.threads, a.connections = True, 1, 1
    missing = [t for t in ("valgrind", "callgrind_control") if not shutil.which(t)]
    if missing or not os.path.isfile(a.wasm) or not os.path.exists(a.envoy):
        print("cgbench: missing %s" % (missing or [a.wasm, a.envoy]), file=sys.stderr)
        return 2
    try:
        rows = run(a)
    except (bench.BenchError, subprocess.SubprocessError, OSError) as e:
        print("cgbench: %s" % e, file=sys.stderr)
        return 1
    print("\nEnvoy %s, module %s (%d bytes), %d requests per run, under callgrind\n"
          % (bench.envoy_version(a.envoy), os.path.relpath(a.wasm, bench.REPO_ROOT),
             os.path.getsize(a.wasm), a.requests))
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
