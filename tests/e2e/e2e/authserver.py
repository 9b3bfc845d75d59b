"""An authorization server for the introspection tests, on 127.0.0.1.

It issues opaque tokens and answers for them, counting every call:

    srv = AuthServer().start()
    tok = srv.issue(sub="alice", scope="read write", exp_in=300)
    srv.revoke(tok)                     # inactive from now on
    srv.url                             -> its JWKS (the provider's jwks_uri)
    srv.url_for("/introspect")          RFC 7662 introspection, three formats by Accept:
                                          application/json: {"active": ..., claims}
                                            (+ "jwt": phantom JWT when srv.jwt_member)
                                          application/jwt: the phantom JWT, 204 when inactive
                                          application/token-introspection+jwt: RFC 9701
    srv.url_for("/token")               RFC 8693 token exchange: {"access_token": phantom}
    srv.calls("/introspect")            calls so far (thread-safe)
    srv.delay = 0.5                     answer late (seconds)
    srv.status = 503                    answer every call with this status
    srv.cache_control = "no-store"      a Cache-Control header on answers
    srv.tamper = True                   phantom JWTs with a broken signature
    srv.down() / srv.up()               refuse connections / serve again

Phantom JWTs are RS256, signed by srv.key (served in its JWKS), with the
token's claims, `iss` srv.issuer and `aud` "api". The gateway's client
credentials: CLIENT_ID / CLIENT_SECRET, by Basic auth or in the form.
"""

import base64
import json
import secrets
import threading
import time
import urllib.parse

from . import jose
from .servers import RequestRecord, ThreadedServer

CLIENT_ID = "gateway client"
CLIENT_SECRET = "s3cret:with%chars"
ISSUER = "https://as.test"


class AuthServer(ThreadedServer):
    def __init__(self, port=0):
        super().__init__(port)
        self.key = jose.rsa_key(kid="as-key")
        self.issuer = ISSUER
        self.tokens = {}
        self.requests = []
        self._lock = threading.Lock()
        self.delay = 0.0
        self.status = None
        self.cache_control = None
        self.tamper = False
        self.jwt_member = False
        self._down = False

    # --- what the tests drive
    def issue(self, sub="alice", scope="read", exp_in=300, **claims):
        tok = "op_" + secrets.token_urlsafe(24)
        now = int(time.time())
        c = {"sub": sub, "scope": scope, "iss": self.issuer, "aud": "api",
             "iat": now, "exp": now + exp_in, "client_id": "mobile-app"}
        c.update(claims)
        with self._lock:
            self.tokens[tok] = {"claims": c, "active": True}
        return tok

    def revoke(self, tok):
        with self._lock:
            self.tokens[tok]["active"] = False

    def calls(self, path="/introspect"):
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def bodies(self, path="/introspect"):
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    def down(self):
        self._down = True
        self._halt()

    def up(self):
        self._down = False
        self._serve(self.port)

    @property
    def url(self):
        return self.url_for("/jwks")

    def url_for(self, path):
        return "http://%s%s" % (self.authority, path)

    @property
    def cluster_name(self):
        return self.authority

    # --- answers
    def phantom(self, claims):
        jwt = jose.sign(self.key, "RS256", payload=claims)
        if self.tamper:
            head, _, sig = jwt.rpartition(".")
            jwt = head + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
        return jwt

    def _authorized(self, h, form):
        basic = h.headers.get("Authorization") or ""
        if basic.startswith("Basic "):
            raw = base64.b64decode(basic[6:]).decode()
            cid, _, secret = raw.partition(":")
            cid, secret = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
        else:
            cid, secret = form.get("client_id"), form.get("client_secret")
        return cid == CLIENT_ID and secret == CLIENT_SECRET

    def handle(self, h):
        body = h.read_body()
        path = h.path.split("?", 1)[0]
        rec = RequestRecord(h.command, path, {k.lower(): v for k, v in h.headers.items()},
                            time.time())
        rec.body = body.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(rec)
        if path == "/jwks":
            h.reply(200, jose.jwks(self.key), close=True)
            return
        if self.delay:
            time.sleep(self.delay)
        if self.status is not None:
            h.reply(self.status, {"error": "forced"}, close=True)
            return
        form = dict(urllib.parse.parse_qsl(rec.body))
        if h.command != "POST" or not self._authorized(h, form):
            h.reply(401, {"error": "invalid_client"}, close=True)
            return
        headers = [("Cache-Control", self.cache_control)] if self.cache_control else []
        with self._lock:
            known = dict(self.tokens.get(form.get("token") or form.get("subject_token")) or {})
        active = bool(known.get("active"))
        claims = known.get("claims") or {}
        accept = h.headers.get("Accept") or ""
        if path == "/token":
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" \
                    or not active:
                h.reply(400, {"error": "invalid_grant"}, close=True)
                return
            out = {"access_token": self.phantom(claims),
                   "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
                   "token_type": "N_A", "expires_in": 120}
            h.reply(200, out, headers=headers, close=True)
            return
        if path != "/introspect":
            h.reply(404, {"error": "not found"}, close=True)
            return
        if "application/token-introspection+jwt" in accept:
            ti = dict(claims, active=True) if active else {"active": False}
            payload = {"iss": self.issuer, "aud": CLIENT_ID, "iat": int(time.time()),
                       "token_introspection": ti}
            jwt = jose.sign(self.key, "RS256", payload=payload,
                            header={"typ": "token-introspection+jwt"})
            h.reply(200, jwt, content_type="application/token-introspection+jwt",
                    headers=headers, close=True)
        elif "application/jwt" in accept:
            if not active:
                # RFC 9110 section 8.6: no Content-Length on a 204.
                h.send_response(204)
                for k, v in headers:
                    h.send_header(k, v)
                h.send_header("Connection", "close")
                h.close_connection = True
                h.end_headers()
                return
            h.reply(200, self.phantom(claims), content_type="application/jwt",
                    headers=headers, close=True)
        else:
            doc = dict(claims, active=True) if active else {"active": False}
            if active and self.jwt_member:
                doc["jwt"] = self.phantom(claims)
            h.reply(200, doc, headers=headers, close=True)
