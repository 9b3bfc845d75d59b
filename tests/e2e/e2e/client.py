"""A tiny HTTP/1.1 client (stdlib http.client) for the tests.

request() never raises on 4xx/5xx, sends headers exactly as given (a list of
pairs may repeat a name, e.g. two Authorization headers) and any method.
"""

import http.client
import json

from .ports import HOST


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body

    def header(self, name, default=None):
        """First value of a header (case-insensitive)."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return bool(self.header_all(name))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        body = self.text
        if len(body) > 400:
            body = body[:400] + "..."
        return "<Response %d headers=%r body=%r>" % (self.status, self.headers, body)


def _header_pairs(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def request(port, method="GET", path="/", headers=None, body=None, host=HOST,
            timeout=20.0, ssl_context=None):
    """Send one request on a fresh connection and return a Response."""
    if ssl_context is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        pairs = _header_pairs(headers)
        names = {k.lower() for k, _ in pairs}
        conn.putrequest(method, path, skip_host="host" in names,
                        skip_accept_encoding=True)
        for k, v in pairs:
            conn.putheader(k, v)
        if isinstance(body, str):
            body = body.encode()
        if body is not None and "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        elif body is None and method in ("POST", "PUT", "PATCH") and "content-length" not in names:
            conn.putheader("Content-Length", "0")
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.getheaders(), data)
    finally:
        conn.close()


def bearer(token):
    return [("Authorization", "Bearer " + token)]
