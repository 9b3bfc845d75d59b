"""Hostile peers and load helpers for the robustness tests (test_hostile_*.py,
test_workers.py) and tools/soak.py.

HostileJwksServer  a JwksServer that can be switched to misbehave on the JWKS
                   path: answer late, cut the body short, send a huge body, a
                   raw body with any status/content type/headers (redirects,
                   HTML error pages, ...). Without a misbehaviour it is an
                   ordinary JwksServer (set_document, status, down/up, ...).
raw_request        one HTTP/1.1 request written byte for byte on a socket (for
                   header values http.client would refuse or rewrite).
KeepAliveClient    a persistent HTTP/1.1 connection, reconnecting when closed.
NoDelayEchoServer  an EchoServer answering without Nagle delays (for load).
Helpers            cache_info (admin path), envoy_is_live, worker connection
                   counts from Envoy's per-worker listener stats, RSS of a pid.
"""

import http.client
import json
import socket
import threading
import time

from . import client
from .ports import HOST
from .servers import EchoServer, JwksServer, RequestRecord


# ---------------------------------------------------------------- JWKS server
class HostileJwksServer(JwksServer):
    """srv.misbehave(HostileJwksServer.slow(3.0)) ... srv.behave()

    A misbehaviour is a callable (server, handler) run for each request to the
    JWKS path after it has been counted (srv.count, wait_for_count and
    requests keep working). The factories below build the usual ones."""

    def __init__(self, document=None, **kw):
        super().__init__(document, **kw)
        self._behaviour = None
        self._stopping = threading.Event()

    def misbehave(self, behaviour):
        self._behaviour = behaviour

    def behave(self):
        self._behaviour = None

    @property
    def misbehaving(self):
        return self._behaviour is not None

    def stop(self):
        self._stopping.set()  # wakes slow answers
        super().stop()

    def handle(self, h):
        behaviour = self._behaviour
        path_only = h.path.split("?", 1)[0]
        if behaviour is None or self.mode is not None or path_only != self.path:
            return super().handle(h)
        h.read_body()
        with self._cond:
            self.requests.append(_record(h))
            self._count += 1
            self._cond.notify_all()
        try:
            behaviour(self, h)
        except OSError:  # the peer (Envoy) gave up first
            h.close_connection = True

    # --- misbehaviour factories
    @staticmethod
    def slow(seconds, document=None):
        """Answer the (current or given) document after `seconds`."""

        def run(srv, h):
            if srv._stopping.wait(seconds):
                h.close_connection = True
                return
            h.reply(200, document if document is not None else srv.document, close=True)

        return run

    @staticmethod
    def truncated(document=None, fraction=0.5):
        """Headers with the full Content-Length, part of the body, then close."""

        def run(srv, h):
            doc = document if document is not None else srv.document
            body = json.dumps(doc).encode()
            cut = max(1, int(len(body) * fraction))
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[:cut])
            h.wfile.flush()
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        return run

    @staticmethod
    def raw(body, status=200, content_type="application/json", headers=()):
        """Any status, body, content type and extra headers."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()

        def run(srv, h):
            h.reply(status, body, content_type=content_type, headers=list(headers), close=True)

        return run

    @staticmethod
    def redirect(status, location):
        return HostileJwksServer.raw(
            b'{"moved": true}', status=status, headers=[("Location", location)])


def _record(h):
    return RequestRecord(h.command, h.path, {k.lower(): v for k, v in h.headers.items()},
                         time.time())


def padded_jwks(document, size):
    """A valid JWKS of exactly `size` bytes: `document` plus a padding member."""
    doc = dict(document)
    doc["x-padding"] = ""
    base = len(json.dumps(doc).encode())
    if base > size:
        raise ValueError("document is already %d bytes" % base)
    doc["x-padding"] = "p" * (size - base)
    body = json.dumps(doc).encode()
    assert len(body) == size, len(body)
    return body


# ---------------------------------------------------------------- upstream
# Every server of the harness now sets TCP_NODELAY (servers._Handler); the
# name stays for the soak and tests that asked for it explicitly.
NoDelayEchoServer = EchoServer


# ---------------------------------------------------------------- raw client
class RawResponse(client.Response):
    """A client.Response read off a raw socket (no reason phrase kept)."""

    def __init__(self, status, headers, body):
        super().__init__(status, "", headers, body)


def raw_request(port, request_bytes, timeout=10.0):
    """Send bytes as they are; read one response. status None when the peer
    closed without answering."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(request_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return RawResponse(None, [], data)
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        length = None
        chunked = False
        for k, v in headers:
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            while not rest.endswith(b"0\r\n\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            body, buf = b"", rest
            while buf:
                size_line, _, buf = buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    break
                body += buf[:size]
                buf = buf[size + 2:]
            return RawResponse(status, headers, body)
        if length is not None:
            while len(rest) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            return RawResponse(status, headers, rest[:length])
        return RawResponse(status, headers, rest)


def build_request(method, path, headers, host="gw"):
    """Request bytes; header names/values are bytes or str (latin-1)."""

    def b(x):
        return x if isinstance(x, bytes) else x.encode("latin-1")

    out = b(method) + b" " + b(path) + b" HTTP/1.1\r\nHost: " + b(host) + b"\r\n"
    for k, v in headers:
        out += b(k) + b": " + b(v) + b"\r\n"
    return out + b"Connection: close\r\n\r\n"


# ---------------------------------------------------------------- keep-alive client
class KeepAliveClient:
    """One persistent HTTP/1.1 connection; reconnects after a close or error.
    get() returns (status, body bytes) or (None, error text)."""

    def __init__(self, port, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.connects = 0

    def _connect(self):
        self.close()
        self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        self.connects += 1

    def get(self, path="/", headers=()):
        for attempt in (1, 2):
            if self.conn is None:
                self._connect()
            try:
                self.conn.putrequest("GET", path, skip_accept_encoding=True)
                for k, v in headers:
                    self.conn.putheader(k, v)
                self.conn.endheaders()
                resp = self.conn.getresponse()
                body = resp.read()
                if (resp.getheader("connection") or "").lower() == "close":
                    self.close()
                return resp.status, body
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError, http.client.BadStatusLine) as e:
                # a keep-alive connection closed by the peer between requests
                self.close()
                if attempt == 2:
                    return None, repr(e)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                return None, repr(e)
        return None, "unreachable"

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


# ---------------------------------------------------------------- observation
def cache_info(env, listener, admin_token):
    """The filter's cache/info document (asserts a 200)."""
    r = env.request(listener, "GET", "/jwt-jwks/cache/info", client.bearer(admin_token),
                    timeout=10)
    assert r.status == 200, r
    return r.json()


def provider_info(env, listener, admin_token, index=0):
    return cache_info(env, listener, admin_token)["providers"][index]


def envoy_is_live(env):
    """Envoy's process runs and its admin /ready answers LIVE."""
    if not env.running:
        return False
    try:
        r = env.admin("/ready")
    except OSError:
        return False
    return r.status == 200 and b"LIVE" in r.body


def worker_connections(env, listener):
    """{worker index: downstream connections accepted} for a listener, from
    Envoy's per-worker listener stats."""
    marker = "listener.%s_%d.worker_" % (HOST, env.port(listener))
    out = {}
    for name, value in env.stats().items():
        if name.startswith(marker) and name.endswith(".downstream_cx_total"):
            worker = name[len(marker):].split(".", 1)[0]
            out[int(worker)] = value
    return out


def rss_kb(pid):
    """VmRSS of a process in KiB (from /proc/<pid>/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)
