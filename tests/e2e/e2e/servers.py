"""Small HTTP servers for the tests, each in its own thread on 127.0.0.1.

JwksServer  serves a JWKS document (changeable at run time), counts requests,
            can answer with another status, a raw body, after a delay, or be
            "down" (listening socket closed, or connections reset). Optional TLS.
EchoServer  the upstream behind Envoy: answers 200 with JSON describing the
            request it got ({"path", "method", "headers", "body"}).

Both answer every method and path. All sockets are closed by stop().
"""

import json
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .ports import HOST

JWKS_PATH = "/.well-known/jwks.json"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, handler, owner, ssl_context=None):
        self.owner = owner
        self.ssl_context = ssl_context
        self._conns = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        conn = request
        with self._conns_lock:
            self._conns.add(conn)
        try:
            request.settimeout(30)
            if self.ssl_context is not None:
                conn = self.ssl_context.wrap_socket(request, server_side=True)
                with self._conns_lock:
                    self._conns.add(conn)
            self.RequestHandlerClass(conn, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
                self._conns.discard(request)
            if conn is not request:
                try:
                    conn.close()
                except OSError:
                    pass

    def close_connections(self):
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # connection resets/timeouts are expected (Envoy gives up, tests stop
        # servers); anything else is printed.
        import sys
        import traceback

        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError)):
            return
        traceback.print_exc()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers are written as headers then body: without TCP_NODELAY a
    # keep-alive peer (Envoy) waits for a delayed ACK on every request.
    disable_nagle_algorithm = True
    server_version = "e2e-test-server"
    sys_version = ""

    def log_message(self, fmt, *args):  # keep pytest output clean
        pass

    def __getattr__(self, name):
        # any method (GET, POST, OPTIONS, PURGE, ...) goes to the owner
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self):
        self.server.owner.handle(self)

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body=b"", content_type="application/json", headers=(), close=False):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


class ThreadedServer:
    """Start/stop of a threaded HTTP server on 127.0.0.1. Subclasses define
    handle(h), h being the request handler (h.command, h.path, h.headers,
    h.read_body(), h.reply(status, body, content_type, headers))."""

    def __init__(self, port=0, ssl_context=None):
        self._requested_port = port
        self.ssl_context = ssl_context
        self._httpd = None
        self._thread = None
        self.port = None

    def _serve(self, port):
        httpd = _HTTPServer((HOST, port), _Handler, self, self.ssl_context)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="%s:%d" % (type(self).__name__, self.port), daemon=True,
        )
        self._thread.start()

    def start(self):
        self._serve(self._requested_port)
        return self

    def _halt(self):
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self):
        self._halt()

    @property
    def running(self):
        return self._httpd is not None

    @property
    def scheme(self):
        return "https" if self.ssl_context is not None else "http"

    @property
    def authority(self):
        return "%s:%d" % (HOST, self.port)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RequestRecord:
    def __init__(self, method, path, headers, at):
        self.method = method
        self.path = path
        self.headers = headers
        self.at = at

    def __repr__(self):
        return "RequestRecord(%s %s)" % (self.method, self.path)


class JwksServer(ThreadedServer):
    """Serve a JWKS document.

    srv = JwksServer({"keys": [...]}).start()
    srv.url                      -> http://127.0.0.1:PORT/.well-known/jwks.json
    srv.set_document(doc)        change what is served
    srv.set_raw(b"{not json")    serve a raw body instead (until set_document)
    srv.status = 500             answer with this status (body: error JSON)
    srv.delay = 1.5              sleep before answering (seconds)
    srv.down("refuse"|"reset")   close the listening socket / reset connections
    srv.up()                     serve again on the same port
    srv.count                    requests to the JWKS path (thread-safe)
    srv.fail_next(2, 500)        answer the next 2 JWKS requests with 500
    srv.documents[path] = doc    serve other documents too (not counted in count;
                                 see count_path)
    srv.headers = {"Cache-Control": "max-age=60"}   extra headers on JWKS answers
    srv.etag = '"v1"'            send this ETag, and answer 304 to a matching
                                 If-None-Match (counted; see not_modified)
    """

    def __init__(self, document=None, path=JWKS_PATH, port=0, ssl_context=None,
                 status=200, delay=0.0):
        super().__init__(port, ssl_context)
        self.path = path
        self._lock = threading.Lock()
        self._doc = document if document is not None else {"keys": []}
        self._raw = None
        self.status = status
        self.delay = delay
        self.mode = None  # None | "reset" | "refuse"
        self.documents = {}
        self.headers = {}
        self.etag = None
        self._not_modified = 0
        self._fail_next = []  # statuses for the next JWKS requests
        self.requests = []  # every request, any path (RequestRecord)
        self.answered_at = []  # time.time() of each JWKS answer sent
        self._count = 0
        self._resets = 0
        self._cond = threading.Condition(self._lock)

    # --- content
    def set_document(self, document):
        with self._lock:
            self._doc = document
            self._raw = None

    @property
    def document(self):
        with self._lock:
            return self._doc

    def set_raw(self, body, content_type="application/json"):
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._raw = (body, content_type)

    def fail_next(self, n, status=500):
        with self._lock:
            self._fail_next = [status] * n

    # --- availability
    def down(self, mode="refuse"):
        """refuse: close the listening socket (connection refused).
        reset: keep listening but close every connection without answering."""
        if mode not in ("refuse", "reset"):
            raise ValueError(mode)
        self.mode = mode
        if mode == "refuse":
            self._halt()
        else:
            if self._httpd is not None:
                self._httpd.close_connections()

    def up(self):
        self.mode = None
        if self._httpd is None:
            self._serve(self.port)

    # --- counters
    @property
    def count(self):
        with self._lock:
            return self._count

    @property
    def resets(self):
        with self._lock:
            return self._resets

    @property
    def not_modified(self):
        """JWKS requests answered 304."""
        with self._lock:
            return self._not_modified

    def count_path(self, path):
        """Requests for `path` (any document), query string ignored."""
        with self._lock:
            return sum(1 for r in self.requests if r.path.split("?", 1)[0] == path)

    def paths_requested(self):
        with self._lock:
            return [r.path for r in self.requests]

    def wait_for_count(self, n, timeout=10.0):
        """Block until count >= n; returns the count."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._count

    @property
    def url(self):
        return "%s://%s%s" % (self.scheme, self.authority, self.path)

    def url_for(self, path, host=None):
        return "%s://%s:%d%s" % (self.scheme, host or HOST, self.port, path)

    @property
    def cluster_name(self):
        """The filter's default jwks_upstream: the authority of jwks_uri."""
        return self.authority

    # --- request handling
    def handle(self, h):
        if self.mode == "reset":
            with self._cond:
                self._resets += 1
                self._cond.notify_all()
            try:
                h.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            except OSError:
                pass
            h.close_connection = True
            h.connection.close()
            return
        h.read_body()
        path_only = h.path.split("?", 1)[0]
        with self._cond:
            self.requests.append(
                RequestRecord(h.command, h.path, {k.lower(): v for k, v in h.headers.items()},
                              time.time())
            )
            counted = path_only == self.path
            forced = None
            if counted:
                self._count += 1
                if self._fail_next:
                    forced = self._fail_next.pop(0)
            doc = self._doc
            raw = self._raw
            extra = self.documents.get(path_only)
            self._cond.notify_all()
        if self.delay:
            time.sleep(self.delay)
        if not counted:
            if extra is not None:
                h.reply(200, extra, close=True)
            else:
                h.reply(404, {"error": "not found"}, close=True)
            return
        status = forced or self.status
        if status != 200:
            h.reply(status, {"error": "status %d" % status}, close=True)
            return
        with self._lock:
            extra_headers = list(self.headers.items())
            etag = self.etag
        if etag is not None:
            extra_headers.append(("ETag", etag))
            if h.headers.get("If-None-Match") == etag:
                with self._lock:
                    self._not_modified += 1
                h.reply(304, b"", headers=extra_headers, close=True)
                return
        if raw is not None:
            h.reply(200, raw[0], content_type=raw[1], headers=extra_headers, close=True)
        else:
            h.reply(200, doc, headers=extra_headers, close=True)
        with self._lock:
            self.answered_at.append(time.time())


class EchoServer(ThreadedServer):
    """Upstream that echoes each request as JSON:
    {"path": ..., "method": ..., "headers": {lower-case name: value}, "body": ...}.
    Repeated headers are joined with ", "."""

    def __init__(self, port=0):
        super().__init__(port)
        self._lock = threading.Lock()
        self.requests = []

    @property
    def count(self):
        with self._lock:
            return len(self.requests)

    def handle(self, h):
        body = h.read_body()
        headers = {}
        for k, v in h.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        doc = {
            "path": h.path,
            "method": h.command,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
        }
        with self._lock:
            self.requests.append(RequestRecord(h.command, h.path, headers, time.time()))
        h.reply(200, doc, headers=[("X-Echo", "1")])


def server_ssl_context(certfile, keyfile):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx
