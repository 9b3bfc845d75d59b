#!/usr/bin/env python3
"""Run the jwt-jwks filter locally, in the foreground (`make run`).

Starts, all on 127.0.0.1:
  * a demo issuer   (:18080) serving its JWKS at /.well-known/jwks.json (an RS256
                    and an ES256 key, made at start) and minting tokens at
                    GET/POST /token?sub=alice&aud=demo-api&alg=RS256|ES256&ttl=300;
                    opaque tokens at GET /opaque?sub=alice&ttl=300, which it
                    introspects at POST /introspect (Accept: application/jwt:
                    the phantom JWT, 204 when unknown or expired)
  * a demo API      (:18081) that echoes each request it gets as JSON
  * Envoy           (:10000, admin :9901) with envoy/envoy.yaml and the filter

then prints curl commands to try. Ctrl-C stops everything and exits 0.

Ports and paths can be changed with environment variables (or options):
  DEMO_GATEWAY_PORT, DEMO_ADMIN_PORT, DEMO_ISSUER_PORT, DEMO_UPSTREAM_PORT,
  DEMO_ADMIN_TOKEN, DEMO_AUDIENCE, JWT_JWKS_WASM, ENVOY_BIN.

--self-test starts everything, checks a few requests and exits (0 = all good).
"""

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "e2e"))

from e2e import client, jose  # noqa: E402
from e2e.envoy import Envoy, EnvoyStartError  # noqa: E402
from e2e.ports import HOST, port_is_free  # noqa: E402
from e2e.servers import EchoServer, ThreadedServer  # noqa: E402

TEMPLATE = os.path.join(REPO_ROOT, "envoy", "envoy.yaml")
DEFAULT_WASM = os.path.join(REPO_ROOT, "target", "wasm32-wasip1", "release", "jwt_jwks.wasm")
DEFAULT_ENVOY = os.path.join(REPO_ROOT, ".venv", "bin", "envoy")


class Issuer(ThreadedServer):
    """Serves the JWKS and mints demo tokens."""

    def __init__(self, port, audience):
        super().__init__(port)
        self.audience = audience
        self.keys = {
            "RS256": jose.rsa_key(2048, kid="demo-rs256"),
            "ES256": jose.ec_key("P-256", kid="demo-es256"),
        }
        self.minted = 0
        self.opaque = {}
        self.introspections = 0
        self._lock = threading.Lock()

    @property
    def issuer(self):
        return "http://%s:%d" % (HOST, self.port)

    def jwks(self):
        return {"keys": [k.jwk(alg=alg) for alg, k in self.keys.items()]}

    def mint(self, params):
        alg = params.get("alg", "RS256")
        if alg not in self.keys:
            raise ValueError("alg must be one of %s" % ", ".join(self.keys))
        try:
            ttl = int(params.get("ttl", 300))
        except ValueError:
            raise ValueError("ttl must be an integer (seconds)")
        if not 1 <= ttl <= 86400:
            raise ValueError("ttl must be between 1 and 86400")
        extra = {}
        if params.get("scope"):
            extra["scope"] = params["scope"]
        payload = jose.claims(iss=self.issuer, aud=params.get("aud", self.audience),
                              sub=params.get("sub", "alice"), exp_in=ttl, **extra)
        with self._lock:
            self.minted += 1
        return jose.sign(self.keys[alg], alg, payload), ttl

    def mint_opaque(self, params):
        """An opaque token; the claims its phantom JWT will carry."""
        token, ttl = self.mint(dict(params, alg="RS256"))
        opaque = "demo_" + secrets.token_urlsafe(24)
        with self._lock:
            self.opaque[opaque] = token
        return opaque, ttl

    def introspect(self, h, body):
        """RFC 7662 with Accept: application/jwt (the phantom token form)."""
        expected = "Basic " + base64.b64encode(b"demo-gateway:demo-gateway-secret").decode()
        if h.headers.get("Authorization") != expected:
            h.reply(401, {"error": "invalid_client"})
            return
        token = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"))).get("token", "")
        with self._lock:
            self.introspections += 1
            phantom = self.opaque.get(token)
        if phantom is None or jose.decode(phantom)[1]["exp"] <= time.time():
            h.send_response(204)
            h.send_header("Connection", "close")
            h.close_connection = True
            h.end_headers()
            return
        h.reply(200, phantom, content_type="application/jwt")

    def handle(self, h):
        url = urllib.parse.urlsplit(h.path)
        body = h.read_body()
        if url.path == "/introspect" and h.command == "POST":
            self.introspect(h, body)
            return
        if url.path == "/opaque" and h.command == "GET":
            try:
                opaque, _ = self.mint_opaque(dict(urllib.parse.parse_qsl(url.query)))
            except ValueError as e:
                h.reply(400, {"error": "invalid_request", "message": str(e)})
                return
            h.reply(200, opaque + "\n", content_type="text/plain")
            return
        if url.path == "/.well-known/jwks.json" and h.command in ("GET", "HEAD"):
            h.reply(200, self.jwks(), headers=[("Cache-Control", "max-age=300")])
            return
        if url.path == "/token" and h.command in ("GET", "POST"):
            params = dict(urllib.parse.parse_qsl(url.query))
            if h.command == "POST" and body:
                ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
                try:
                    if ctype == "application/json":
                        params.update({k: str(v) for k, v in json.loads(body).items()})
                    else:
                        params.update(dict(urllib.parse.parse_qsl(body.decode())))
                except (ValueError, AttributeError):
                    h.reply(400, {"error": "invalid_request",
                                  "message": "body must be a JSON object or a form"})
                    return
            try:
                token, ttl = self.mint(params)
            except ValueError as e:
                h.reply(400, {"error": "invalid_request", "message": str(e)})
                return
            if params.get("format") == "raw":
                h.reply(200, token + "\n", content_type="text/plain")
            else:
                h.reply(200, {"access_token": token, "token_type": "Bearer",
                              "expires_in": ttl})
            return
        if url.path in ("/.well-known/jwks.json", "/token"):
            h.reply(405, {"error": "method not allowed"})
            return
        h.reply(404, {"error": "not found",
                      "paths": ["/.well-known/jwks.json", "/token"]})


def env_int(name, default):
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        sys.exit("demo: %s must be a port number, not %r" % (name, value))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gateway-port", type=int, default=env_int("DEMO_GATEWAY_PORT", 10000))
    p.add_argument("--admin-port", type=int, default=env_int("DEMO_ADMIN_PORT", 9901))
    p.add_argument("--issuer-port", type=int, default=env_int("DEMO_ISSUER_PORT", 18080))
    p.add_argument("--upstream-port", type=int, default=env_int("DEMO_UPSTREAM_PORT", 18081))
    p.add_argument("--admin-token", default=os.environ.get("DEMO_ADMIN_TOKEN") or "")
    p.add_argument("--audience", default=os.environ.get("DEMO_AUDIENCE") or "demo-api")
    p.add_argument("--wasm", default=os.environ.get("JWT_JWKS_WASM") or DEFAULT_WASM)
    p.add_argument("--envoy", default=os.environ.get("ENVOY_BIN") or DEFAULT_ENVOY)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--log-level", default="info", help="Envoy log level")
    p.add_argument("--self-test", action="store_true",
                   help="start, check a few requests, stop; exit 0 when all passed")
    return p.parse_args(argv)


def render(template, values):
    text = template
    for k, v in values.items():
        text = text.replace("{{%s}}" % k, str(v))
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise SystemExit("demo: unknown placeholder(s) in %s: %s"
                         % (TEMPLATE, ", ".join(sorted(set(left)))))
    return text


def check_inputs(args):
    problems = []
    for path, what in ((args.wasm, "the filter (run `make build`, or set JWT_JWKS_WASM)"),
                       (args.envoy, "Envoy (pip install -r tests/requirements.txt, "
                                    "or set ENVOY_BIN)")):
        if not os.path.isfile(path):
            problems.append("missing %s: %s" % (what, path))
    ports = [("gateway", args.gateway_port, "DEMO_GATEWAY_PORT"),
             ("Envoy admin", args.admin_port, "DEMO_ADMIN_PORT"),
             ("issuer", args.issuer_port, "DEMO_ISSUER_PORT"),
             ("upstream", args.upstream_port, "DEMO_UPSTREAM_PORT")]
    seen = {}
    for name, port, var in ports:
        if port in seen:
            problems.append("%s and %s both use port %d" % (seen[port], name, port))
        seen[port] = name
        if not port_is_free(port):
            problems.append("port %d (%s) is already in use: stop what uses it or "
                            "set %s" % (port, name, var))
    if problems:
        sys.exit("demo: cannot start:\n  " + "\n  ".join(problems))


def usage_text(args, issuer):
    gw = "http://%s:%d" % (HOST, args.gateway_port)
    tok = "http://%s:%d/token" % (HOST, args.issuer_port)
    return "\n".join([
        "",
        "jwt-jwks demo is running (Ctrl-C to stop)",
        "  gateway (Envoy + filter)  %s" % gw,
        "  Envoy admin               http://%s:%d" % (HOST, args.admin_port),
        "  issuer                    %s   (JWKS: %s/.well-known/jwks.json)"
        % (issuer.issuer, issuer.issuer),
        "  upstream (echo)           http://%s:%d" % (HOST, args.upstream_port),
        "",
        "Try:",
        "  # get a token (alg=RS256 or ES256; JSON form: drop &format=raw)",
        "  TOKEN=$(curl -s '%s?sub=alice&aud=%s&alg=RS256&ttl=300&format=raw')"
        % (tok, args.audience),
        "  curl -s -X POST -H 'Content-Type: application/json' "
        "-d '{\"sub\":\"bob\",\"alg\":\"ES256\"}' %s" % tok,
        "",
        "  # call the API with the token (200, echoed by the upstream)",
        "  curl -i -H \"Authorization: Bearer $TOKEN\" %s/hello" % gw,
        "  # an opaque token: introspected by the gateway, the API gets its phantom JWT",
        "  OPAQUE=$(curl -s '%s/opaque?sub=carol&ttl=300')" % issuer.issuer,
        "  curl -s -H \"Authorization: Bearer $OPAQUE\" %s/hello | grep -o '\"authorization\": \"[^\"]*'"
        % gw,
        "  # without a token (401) / with a broken one (401 invalid_token)",
        "  curl -i %s/hello" % gw,
        "  curl -i -H 'Authorization: Bearer not.a.jwt' %s/hello" % gw,
        "",
        "  # the filter's cache, with the admin token",
        "  curl -s -H 'Authorization: Bearer %s' %s/jwt-jwks/cache/info"
        % (args.admin_token, gw),
        "  curl -s -X POST -H 'Authorization: Bearer %s' %s/jwt-jwks/cache/clear"
        % (args.admin_token, gw),
        "",
        "  # the filter's counters",
        "  curl -s http://%s:%d/stats | grep jwt_jwks" % (HOST, args.admin_port),
        "",
    ])


def self_test(args, issuer, envoy):
    """A few requests through the gateway; returns a list of failures."""
    failures = []
    checked = []

    def expect(what, cond, detail):
        print("  %-58s %s" % (what, "ok" if cond else "FAILED"), flush=True)
        checked.append(what)
        if not cond:
            failures.append("%s: %s" % (what, detail))

    r = client.request(args.issuer_port, "GET", "/token?sub=alice&alg=RS256")
    expect("issuer mints a token (GET /token)", r.status == 200, r)
    token = r.json().get("access_token", "") if r.status == 200 else ""
    r = client.request(args.issuer_port, "POST", "/token",
                       [("Content-Type", "application/json")],
                       json.dumps({"sub": "bob", "alg": "ES256"}))
    expect("issuer mints a token (POST /token, ES256)", r.status == 200, r)
    es_token = r.json().get("access_token", "") if r.status == 200 else ""
    for label, tok in (("RS256", token), ("ES256", es_token)):
        r = envoy.request("gateway", "GET", "/hello", client.bearer(tok))
        ok = r.status == 200 and r.json().get("path") == "/hello"
        expect("API call with a valid %s token -> 200" % label, ok, r)
    r = client.request(args.issuer_port, "GET", "/opaque?sub=carol")
    opaque = r.text.strip() if r.status == 200 else ""
    r = envoy.request("gateway", "GET", "/hello", client.bearer(opaque))
    seen = r.json().get("headers", {}).get("authorization", "") if r.status == 200 else ""
    phantom = seen.split(" ", 1)[-1]
    ok = r.status == 200 and phantom.count(".") == 2 and opaque not in json.dumps(r.json())
    expect("opaque token -> 200, the API gets the phantom JWT", ok, r)
    r = envoy.request("gateway", "GET", "/hello", client.bearer("demo_unknown_token"))
    expect("unknown opaque token -> 401", r.status == 401, r)
    r = envoy.request("gateway", "GET", "/hello")
    expect("API call without a token -> 401", r.status == 401, r)
    r = envoy.request("gateway", "GET", "/hello", client.bearer("not.a.jwt"))
    expect("API call with a broken token -> 401", r.status == 401, r)
    r = envoy.request("gateway", "GET", "/jwt-jwks/cache/info",
                      client.bearer(args.admin_token))
    expect("cache info with the admin token -> 200", r.status == 200, r)
    r = envoy.request("gateway", "POST", "/jwt-jwks/cache/clear",
                      client.bearer(args.admin_token))
    expect("cache clear with the admin token -> 200", r.status == 200, r)
    r = envoy.request("gateway", "GET", "/again", client.bearer(token))
    expect("API call after the clear -> 200", r.status == 200, r)
    return len(checked), failures


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if not args.admin_token:
        args.admin_token = "demo-admin-" + secrets.token_hex(8)
    if not all(c.isalnum() or c in "-_." for c in args.admin_token):
        sys.exit("demo: the admin token may only use letters, digits, '-', '_' and '.'")
    args.wasm = os.path.abspath(args.wasm)
    args.envoy = os.path.abspath(args.envoy)
    check_inputs(args)

    stop = threading.Event()
    serving = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        if not serving.is_set():  # still starting: abort the start-up
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    workdir = tempfile.mkdtemp(prefix="jwt-jwks-demo-")
    started = []
    code = 0
    try:
        issuer = Issuer(args.issuer_port, args.audience).start()
        started.append(issuer)
        echo = EchoServer(args.upstream_port).start()
        started.append(echo)
        with open(TEMPLATE) as f:
            config = render(f.read(), {
                "GATEWAY_PORT": args.gateway_port,
                "ADMIN_PORT": args.admin_port,
                "ISSUER_PORT": args.issuer_port,
                "UPSTREAM_PORT": args.upstream_port,
                "WASM_PATH": args.wasm,
                "ISSUER": issuer.issuer,
                "AUDIENCE": args.audience,
                "ADMIN_TOKEN": args.admin_token,
            })
        envoy = Envoy(args.envoy, workdir, upstream_port=args.upstream_port,
                      listeners={"gateway": args.gateway_port}, wasm=args.wasm,
                      concurrency=args.concurrency, log_level=args.log_level,
                      component_log_level=None, static_config=config,
                      admin_port=args.admin_port, name="envoy")
        started.append(envoy)
        print("demo: starting Envoy (log: %s)" % envoy.log_path, flush=True)
        try:
            envoy.start(timeout=60)
        except EnvoyStartError:
            errors = envoy.error_lines()
            print("demo: Envoy did not start (full log: %s)" % envoy.log_path, file=sys.stderr)
            for line in errors[-10:] or envoy.tail(30).splitlines():
                print("  " + line, file=sys.stderr)
            code = 1
            return code

        if args.self_test:
            print("demo: self-test")
            total, failures = self_test(args, issuer, envoy)
            for f in failures:
                print("FAILED %s" % f, file=sys.stderr)
            print("demo: %d passed, %d failed" % (total - len(failures), len(failures)))
            code = 1 if failures else 0
            return code

        print(usage_text(args, issuer), flush=True)
        serving.set()
        while not stop.wait(0.5):
            if not envoy.running:
                print("demo: Envoy exited with code %s; last log lines:\n%s"
                      % (envoy.proc.returncode, envoy.tail(40)), file=sys.stderr)
                code = 1
                break
        if stop.is_set():
            print("\ndemo: stopping", flush=True)
    except KeyboardInterrupt:
        print("\ndemo: interrupted during start-up, stopping", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for obj in reversed(started):
            try:
                obj.stop()
            except Exception as e:  # keep stopping the rest
                print("demo: while stopping %r: %s" % (obj, e), file=sys.stderr)
        if code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("demo: Envoy's config and log kept in %s" % workdir, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
