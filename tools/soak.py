#!/usr/bin/env python3
"""Soak test: Envoy (2 workers) with the jwt-jwks filter under mixed load while
the JWKS rotates keys and goes down now and then.

    tools/soak.py --duration 600      # `make soak`
    tools/soak.py --duration 60       # the short run of `make test`

Starts, all on 127.0.0.1 (ephemeral ports): a JWKS server, an echo upstream
and Envoy (--concurrency 2) with the filter (cache_ttl 20 s, refresh_ahead_time
5 s, min_refresh_interval 5 s, timeout 1000 ms, retry_delay 200 ms).

Client threads (keep-alive connections) send a mix of valid tokens of the
current signing key (a small pool sent again and again, which the filter's
verified-token cache answers, and freshly signed ones, which fill it),
tokens that expire during the run (sent before and after their exp; the
filter runs with clock_skew 1 so that this happens within seconds), and
invalid ones: expired, bad signature, wrong issuer, random kid, alg
confusion (none / HS256 keyed with the public key), garbage, no token.

The JWKS rotates like a real issuer: every --rotate-every seconds (60, or 20
for runs shorter than 3 minutes) it publishes the next key; signing moves to
it once at least one refresh period (cache_ttl - refresh_ahead_time) has
passed and the JWKS has served the new document at least once; the old key
is removed a few seconds after the last token signed with it was sent.
Between rotations the JWKS is down for random stretches (503, or connections
refused), each shorter than cache_ttl.

The JWKS server counts the requests it receives; the run fails if they exceed
what the filter's schedule allows (see fetch_bound).

A wrong answer is a valid token refused (any non-200 for a token whose key was
published when it was sent) or an invalid token accepted (any 200); a
short-lived token is not judged within 1.5 s of exp + clock_skew. Envoy's
RSS (VmRSS) is sampled after the warm-up and at the end.

Exit code 0 only when there were no wrong answers and the RSS grew by at most
--max-growth percent (10) after the warm-up; otherwise the failed checks are
printed. Ctrl-C (or SIGTERM) stops everything it started.
"""

import argparse
import collections
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "e2e"))

from e2e import jose  # noqa: E402
from e2e.hostile import KeepAliveClient, NoDelayEchoServer, rss_kb  # noqa: E402
from e2e.lab import Lab  # noqa: E402
from e2e.servers import JwksServer  # noqa: E402

DEFAULT_WASM = os.path.join(REPO_ROOT, "target", "wasm32-wasip1", "release", "jwt_jwks.wasm")
DEFAULT_ENVOY = os.path.join(REPO_ROOT, ".venv", "bin", "envoy")

ISS = "https://issuer.soak.test"
AUD = "soak-api"
CACHE_TTL = 20
REFRESH_AHEAD = 5
REFRESH_PERIOD = CACHE_TTL - REFRESH_AHEAD
FILTER = {
    "cache_ttl": CACHE_TTL,
    "refresh_ahead_time": REFRESH_AHEAD,
    "min_refresh_interval": 5,
    "timeout": 1000,
    "retry_count": 3,
    "retry_delay": 200,
    "issuers": [ISS],
    "audiences": [AUD],
    "allowed_algorithms": ["RS256", "ES256"],
    "clock_skew": 1,
}
SKEW = FILTER["clock_skew"]
# The unknown-kid refresh budget (src/keys/kid_budget.rs).
KID_BUDGET = 8


def fetch_bound(seconds):
    """The most JWKS requests the filter's schedule allows in `seconds`, all
    workers together: rounds of at most retry_count + 1 attempts starting at
    least min_refresh_interval apart (a fetch, or a rest after the last
    retry), plus the unknown-kid budget and its refills (one per interval)."""
    interval = max(FILTER["min_refresh_interval"], 1)
    rounds = seconds / interval + 1
    return int((FILTER["retry_count"] + 1) * rounds + KID_BUDGET + seconds / interval)

# (kind, weight); "valid" is the only kind that must get 200
KINDS = [("valid", 40), ("valid_fresh", 8), ("short_lived", 6), ("expired", 8),
         ("bad_signature", 8), ("wrong_issuer", 8), ("random_kid", 7), ("alg_confusion", 5),
         ("garbage", 6), ("no_token", 4)]
TOKENS_PER_KIND = 16


def log(msg):
    print("soak: " + msg, flush=True)


# ---------------------------------------------------------------- JWKS
class SoakJwks(JwksServer):
    """A JwksServer that remembers when it last served a good document and
    which kids were in it."""

    def __init__(self, document):
        super().__init__(document)
        self.good_answers = []  # (time, frozenset of kids)

    def handle(self, h):
        path_only = h.path.split("?", 1)[0]
        good = path_only == self.path and self.mode is None and self.status == 200
        kids = frozenset(k.get("kid") for k in self.document.get("keys", []))
        super().handle(h)
        if good:
            with self._lock:
                self.good_answers.append((time.time(), kids))

    def served_since(self, t, kid):
        with self._lock:
            return any(at >= t and kid in kids for at, kids in self.good_answers)


# ---------------------------------------------------------------- keys and tokens
class KeyPool:
    """A signing key and tokens made with it (valid and invalid kinds)."""

    def __init__(self, n):
        kid = "soak-%d-%s" % (n, os.urandom(3).hex())
        if n % 2:
            self.key, self.alg = jose.ec_key("P-256", kid=kid), "ES256"
        else:
            self.key, self.alg = jose.rsa_key(2048, kid=kid), "RS256"
        self.kid = kid
        self.made_at = time.time()
        other = jose.ec_key("P-256") if self.alg == "ES256" else jose.rsa_key(2048)
        sign = self._sign
        self.tokens = {
            "valid": [sign(jose.claims(iss=ISS, aud=AUD, sub="u%d" % i, exp_in=900))
                      for i in range(TOKENS_PER_KIND)],
            "expired": [sign(jose.claims(iss=ISS, aud=AUD, exp_in=-600 - i, iat_offset=-1200))
                        for i in range(TOKENS_PER_KIND)],
            "bad_signature": [jose.sign(self.key, self.alg, jose.claims(iss=ISS, aud=AUD, n=i),
                                        signing_key=other) for i in range(TOKENS_PER_KIND)],
            "wrong_issuer": [sign(jose.claims(iss="https://evil.example", aud=AUD, n=i))
                             for i in range(TOKENS_PER_KIND)],
            "alg_confusion": [jose.sign(self.key, alg, jose.claims(iss=ISS, aud=AUD, n=i))
                              for i, alg in enumerate(["none", "HS256"] * (TOKENS_PER_KIND // 2))],
        }

    def _sign(self, payload):
        return jose.sign(self.key, self.alg, payload)

    def fresh(self, rnd, exp_in=900):
        """A valid token never sent before."""
        return self._sign(jose.claims(iss=ISS, aud=AUD, sub="u%d" % rnd.getrandbits(40),
                                      exp_in=exp_in, jti="%016x" % rnd.getrandbits(64)))

    def jwk(self):
        return self.key.jwk(alg=self.alg)


def random_kid_token(pool, rnd):
    return jose.sign(pool.key, pool.alg, jose.claims(iss=ISS, aud=AUD),
                     kid="rnd-%016x" % rnd.getrandbits(64))


def garbage_token(rnd):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 600)))


# ---------------------------------------------------------------- the run
class Soak:
    def __init__(self, args):
        self.args = args
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.published = {}  # kid -> KeyPool (in the JWKS document now)
        self.signing = None  # KeyPool
        self.pools_made = 0
        self.by_status = collections.Counter()
        self.by_kind = collections.defaultdict(collections.Counter)
        self.wrong = []  # (t, kind, kid, status, detail)
        self.wrong_count = 0
        self.not_judged = 0
        self.requests = 0
        self.rotations = 0
        self.outages = []  # (mode, seconds)
        self.rss = []  # (t, kB)
        self.errors = []  # exceptions in helper threads
        self.threads = []
        self.t0 = None
        self.warm_cpu = None
        self.cpu_use = None

    # --- setup
    def new_pool(self):
        self.pools_made += 1
        return KeyPool(self.pools_made)

    def document(self):
        return {"keys": [p.jwk() for p in self.published.values()]}

    def start(self, lab):
        first = self.new_pool()
        self.published[first.kid] = first
        self.signing = first
        self.jwks = lab.add(SoakJwks(self.document()))
        self.jwks.start()
        cfg = dict(FILTER, jwks_uri=self.jwks.url)
        echo = lab.add(NoDelayEchoServer())
        echo.start()
        self.env = lab.envoy({"main": cfg}, upstream=echo, jwks_servers=[self.jwks],
                             concurrency=2, component_log_level="wasm:info", timeout=60)
        log("Envoy pid %d, listener 127.0.0.1:%d, admin 127.0.0.1:%d, JWKS %s"
            % (self.env.proc.pid, self.env.port("main"), self.env.admin_port, self.jwks.url))
        c = KeepAliveClient(self.env.port("main"), timeout=15)
        status, body = c.get("/", [("Authorization", "Bearer " + first.tokens["valid"][0])])
        c.close()
        if status != 200:
            raise RuntimeError("the first valid request got %s: %r" % (status, body[:300]))

    # --- traffic
    def pick_kind(self, rnd):
        total = sum(w for _, w in KINDS)
        x = rnd.uniform(0, total)
        for kind, weight in KINDS:
            x -= weight
            if x <= 0:
                return kind
        return KINDS[0][0]

    def client_loop(self, n):
        rnd = random.Random(self.args.seed * 1000 + n)
        c = KeepAliveClient(self.env.port("main"), timeout=15)
        short = None  # (pool, token, exp): this thread's short-lived token
        try:
            while not self.stop.is_set():
                kind = self.pick_kind(rnd)
                with self.lock:
                    pool = self.signing
                token = None
                expect = "refused"
                if kind in pool.tokens:
                    token = rnd.choice(pool.tokens[kind])
                    expect = "pass" if kind == "valid" else "refused"
                elif kind == "valid_fresh":
                    token, expect = pool.fresh(rnd), "pass"
                elif kind == "short_lived":
                    if short is None or time.time() > short[2] + SKEW + 4:
                        t = pool.fresh(rnd, exp_in=rnd.randint(2, 6))
                        short = (pool, t, jose.decode(t)[1]["exp"])
                    pool, token, exp = short
                    left = exp + SKEW - time.time()
                    expect = "pass" if left > 1.5 else "refused" if left < -1.5 else "either"
                elif kind == "random_kid":
                    token = random_kid_token(pool, rnd)
                elif kind == "garbage":
                    token = garbage_token(rnd)
                with self.lock:
                    published = pool.kid in self.published
                headers = [("Authorization", "Bearer " + token)] if token is not None else []
                status, body = c.get("/soak/%s" % kind, headers)
                self.record(kind, pool.kid, expect, published, status, body)
        finally:
            c.close()

    def record(self, kind, kid, expect, published, status, body):
        wrong = None
        if expect == "pass":
            if published and status != 200:
                wrong = "valid token refused"
        elif expect == "refused" and status == 200:
            wrong = "invalid token accepted"
        with self.lock:
            self.requests += 1
            self.by_status[status] += 1
            self.by_kind[kind][status] += 1
            if expect == "either":
                self.not_judged += 1
            if wrong:
                self.wrong_count += 1
                if len(self.wrong) < 20:
                    # an accepted request's echo would repeat the token: leave it out
                    detail = (b"(reached the upstream)" if status == 200 else
                              body[:200] if isinstance(body, bytes) else str(body)[:200])
                    self.wrong.append((time.time() - self.t0, kind, kid, status, wrong, detail))

    # --- the JWKS: rotations and outages
    def rotator(self):
        every = self.args.rotate_every
        next_at = self.t0 + every
        while not self.stop.wait(max(0.0, next_at - time.time())):
            old = self.signing
            new = self.new_pool()
            with self.lock:
                self.published[new.kid] = new
                self.jwks.set_document(self.document())
            published_at = time.time()
            # sign with it after a refresh period, once the JWKS served it
            while not self.stop.wait(0.2):
                if (time.time() - published_at >= REFRESH_PERIOD
                        and self.jwks.served_since(published_at, new.kid)):
                    break
            if self.stop.is_set():
                return
            with self.lock:
                self.signing = new
            # the last token with the old key is sent by now; remove it a bit later
            if self.stop.wait(2.0):
                return
            with self.lock:
                self.published.pop(old.kid, None)
                self.jwks.set_document(self.document())
            self.rotations += 1
            log("t=%5.1fs rotation %d: signing with %s, removed %s"
                % (time.time() - self.t0, self.rotations, new.kid, old.kid))
            next_at = max(next_at + every, time.time() + 1.0)

    def outager(self):
        rnd = random.Random(self.args.seed + 99)
        while not self.stop.wait(rnd.uniform(4.0, 12.0)):
            mode = rnd.choice(["503", "refuse"])
            seconds = rnd.uniform(2.0, min(10.0, CACHE_TTL - 5))
            if mode == "503":
                self.jwks.status = 503
            else:
                self.jwks.down("refuse")
            start = time.time()
            self.stop.wait(seconds)
            if mode == "503":
                self.jwks.status = 200
            else:
                self.jwks.up()
            self.outages.append((mode, time.time() - start))

    def guarded(self, fn, *a):
        def run():
            try:
                fn(*a)
            except Exception as e:  # reported at the end
                self.errors.append("%s: %r" % (fn.__name__, e))
                self.stop.set()
        t = threading.Thread(target=run, name=fn.__name__, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    # --- observation
    def cpu_seconds(self):
        """User + system CPU seconds Envoy has used so far."""
        with open("/proc/%d/stat" % self.env.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sample_rss(self):
        kb = rss_kb(self.env.proc.pid)
        self.rss.append((time.time() - self.t0, kb))
        return kb

    def fetch_stats(self):
        try:
            return (int(self.env.stat("jwt_jwks_jwks_fetch_success")),
                    int(self.env.stat("jwt_jwks_jwks_fetch_failure")))
        except Exception:
            return (None, None)

    def run(self):
        a = self.args
        self.t0 = time.time()
        for i in range(a.threads):
            self.guarded(self.client_loop, i)
        self.guarded(self.rotator)
        self.guarded(self.outager)
        end = self.t0 + a.duration
        warm_at = self.t0 + a.warmup
        warm_rss = None
        last_report = time.time()
        last_requests = 0
        while not self.stop.wait(0.5):
            now = time.time()
            if not self.env.running:
                self.errors.append("Envoy exited (code %s)" % self.env.proc.returncode)
                break
            if warm_rss is None and now >= warm_at:
                warm_rss = self.sample_rss()
                self.warm_cpu = (now, self.cpu_seconds(), os.times())
                log("t=%5.1fs warm-up over: Envoy RSS %d kB" % (now - self.t0, warm_rss))
            elif warm_rss is not None and now - self.rss[-1][0] - self.t0 >= 5:
                self.sample_rss()
            if now - last_report >= 10:
                with self.lock:
                    req, wrong = self.requests, self.wrong_count
                log("t=%5.1fs %d requests (%.0f rps), wrong %d, JWKS asked %d times, RSS %s kB"
                    % (now - self.t0, req, (req - last_requests) / (now - last_report), wrong,
                       self.jwks.count, self.rss[-1][1] if self.rss else "-"))
                last_report, last_requests = now, req
            if now >= end:
                break
        self.elapsed = time.time() - self.t0
        if self.env.running:
            self.sample_rss()
            if self.warm_cpu:
                t, cpu, own = self.warm_cpu
                now_own = os.times()
                span = time.time() - t
                self.cpu_use = (100.0 * (self.cpu_seconds() - cpu) / span,
                                100.0 * ((now_own.user + now_own.system)
                                         - (own.user + own.system)) / span)
        self.warm_rss = warm_rss
        self.stop.set()
        for t in self.threads:
            t.join(20)

    # --- report
    def report(self):
        a = self.args
        failed = []
        success, failure = self.fetch_stats()
        try:
            crit = [l for l in self.env.log_text().splitlines() if "][critical][" in l]
        except Exception:
            crit = []
        print()
        print("==== jwt-jwks soak ====")
        print("duration        %.1f s (warm-up %.0f s), %d client threads, Envoy --concurrency 2"
              % (self.elapsed, a.warmup, a.threads))
        print("requests        %d (%.0f rps)" % (self.requests, self.requests / self.elapsed))
        print("by status       %s" % ", ".join("%s: %d" % (k, v) for k, v in
                                               sorted(self.by_status.items(), key=str)))
        print("by kind")
        for kind, _ in KINDS:
            c = self.by_kind.get(kind, {})
            print("  %-14s %7d  %s" % (kind, sum(c.values()), ", ".join(
                "%s: %d" % (k, v) for k, v in sorted(c.items(), key=str))))
        print("wrong answers   %d (%d short-lived tokens near exp + clock_skew not judged)"
              % (self.wrong_count, self.not_judged))
        for t, kind, kid, status, what, detail in self.wrong[:10]:
            print("  t=%.1fs %s (%s, kid %s): status %s %r" % (t, what, kind, kid, status, detail))
        print("JWKS fetches    Envoy stats: %s success, %s failure; the JWKS server was asked "
              "%d times (%d good answers)" % (success, failure, self.jwks.count,
                                              len(self.jwks.good_answers)))
        bound = fetch_bound(self.elapsed + 5)
        print("fetch bound     %d requests the schedule allows in %.0f s (asked %d)"
              % (bound, self.elapsed, self.jwks.count))
        if self.jwks.count > bound:
            failed.append("the JWKS was asked %d times, more than the schedule allows (%d)"
                          % (self.jwks.count, bound))
        down = sum(s for _, s in self.outages)
        print("rotations       %d (every %.0f s)" % (self.rotations, a.rotate_every))
        print("outages         %d (%s), %.1f s down in total, longest %.1f s"
              % (len(self.outages),
                 ", ".join("%s: %d" % kv for kv in collections.Counter(
                     m for m, _ in self.outages).items()) or "none",
                 down, max([s for _, s in self.outages] or [0])))
        if self.warm_rss and self.rss:
            end_rss = self.rss[-1][1]
            growth = 100.0 * (end_rss - self.warm_rss) / self.warm_rss
            peak = max(kb for _, kb in self.rss)
            print("Envoy RSS       %d kB after warm-up, %d kB at the end (%+.1f%%), peak %d kB, "
                  "%d samples" % (self.warm_rss, end_rss, growth, peak, len(self.rss)))
            if growth > a.max_growth:
                failed.append("memory grew by %.1f%% (limit %.0f%%)" % (growth, a.max_growth))
        else:
            print("Envoy RSS       not measured (the run ended before the warm-up did)")
            failed.append("memory not measured: --duration must exceed --warmup")
        if self.cpu_use:
            print("CPU after warm-up  Envoy %.0f%%, this load generator %.0f%% (100%% = one core "
                  "of %d)" % (self.cpu_use[0], self.cpu_use[1], os.cpu_count()))
        if crit:
            print("Envoy log       %d critical lines, first: %s" % (len(crit), crit[0][:300]))
            failed.append("the filter logged %d critical lines (VM failure?)" % len(crit))
        if self.wrong_count:
            failed.append("%d wrong answers" % self.wrong_count)
        if self.requests == 0:
            failed.append("no requests were answered")
        for e in self.errors:
            failed.append("helper thread failed: %s" % e)
        print("result          %s" % ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
        return 0 if not failed else 1


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--rotate-every", type=float, default=None,
                   help="seconds between rotations (default: 60, or 20 under 3 minutes)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds before the first RSS sample (default: 10-20)")
    p.add_argument("--max-growth", type=float, default=10.0,
                   help="allowed RSS growth after warm-up, percent (default 10)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--wasm", default=os.environ.get("JWT_JWKS_WASM") or DEFAULT_WASM)
    p.add_argument("--envoy", default=os.environ.get("ENVOY_BIN") or DEFAULT_ENVOY)
    p.add_argument("--keep", action="store_true", help="keep Envoy's config and log")
    a = p.parse_args(argv)
    if a.rotate_every is None:
        a.rotate_every = 60.0 if a.duration >= 180 else 20.0
    if a.warmup is None:
        a.warmup = min(20.0, max(10.0, a.duration / 4))
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 30)
    if a.duration <= a.warmup:
        p.error("--duration must be longer than the warm-up (%.0f s)" % a.warmup)
    if a.rotate_every <= REFRESH_PERIOD + 3:
        p.error("--rotate-every must exceed the refresh period + 3 s (%d s)"
                % (REFRESH_PERIOD + 3))
    return a


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    for path, what in ((args.wasm, "the filter (make build)"), (args.envoy, "Envoy")):
        if not os.path.isfile(path):
            sys.exit("soak: missing %s: %s" % (what, path))
    workdir = tempfile.mkdtemp(prefix="jwt-jwks-soak-")
    lab = Lab(workdir, os.path.abspath(args.envoy), os.path.abspath(args.wasm))
    soak = Soak(args)
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        soak.stop.set()
        if soak.t0 is None:  # still starting: abort the start-up
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 1
    try:
        log("seed %d, duration %.0f s, rotation every %.0f s, workdir %s"
            % (args.seed, args.duration, args.rotate_every, workdir))
        soak.start(lab)
        soak.run()
        code = soak.report()
        if interrupted:
            log("interrupted")
            code = code or 130
    except KeyboardInterrupt:
        log("interrupted during start-up")
        code = 130
    except Exception as e:
        log("failed: %r" % (e,))
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        soak.stop.set()
        for t in soak.threads:
            t.join(20)
        try:
            lab.close()
        except Exception as e:
            log("while stopping: %r" % (e,))
        if code == 0 and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("Envoy's config and log kept in %s" % workdir)
    return code


if __name__ == "__main__":
    sys.exit(main())
