"""A Lab owns the servers and Envoys of one test (or module) and stops them
all, newest first, on close(). The pytest fixtures in conftest.py make one
per module (`module_lab`) and one per test (`lab`)."""

import itertools
import os
import threading

from . import certs
from .envoy import Envoy
from .servers import EchoServer, JwksServer, server_ssl_context

_counter = itertools.count(1)
_registry_lock = threading.Lock()
RUNNING_ENVOYS = []  # every Envoy started by a Lab and not yet stopped


class Lab:
    def __init__(self, workdir, envoy_bin, wasm_path):
        """wasm_path: a path, or a callable returning one (so that only labs
        that load the filter need it)."""
        self.workdir = workdir
        self.envoy_bin = envoy_bin
        self._wasm_path = wasm_path
        self._stack = []
        self._pki = None
        os.makedirs(workdir, exist_ok=True)

    @property
    def wasm_path(self):
        return self._wasm_path() if callable(self._wasm_path) else self._wasm_path

    def add(self, obj):
        self._stack.append(obj)
        return obj

    def pki(self):
        if self._pki is None:
            self._pki = certs.make_pki(os.path.join(self.workdir, "pki"))
        return self._pki

    def jwks(self, document=None, tls=False, **kw):
        """A started JwksServer (TLS with the lab's test CA when tls=True)."""
        if tls:
            p = self.pki()
            kw["ssl_context"] = server_ssl_context(p.server_cert, p.server_key)
        srv = JwksServer(document, **kw)
        self.add(srv)
        return srv.start()

    def echo(self):
        srv = EchoServer()
        self.add(srv)
        return srv.start()

    def envoy(self, listeners, upstream=None, jwks_servers=(), clusters=(),
              start=True, timeout=30.0, **kw):
        """An Envoy (started unless start=False) with an echo upstream (a new
        one unless `upstream` is given)."""
        if upstream is None:
            upstream = self.echo()
        items = listeners.items() if isinstance(listeners, dict) else listeners
        needs_wasm = any(cfg is not None for _, cfg in items)
        name = "envoy-%d" % next(_counter)
        env = Envoy(
            self.envoy_bin,
            os.path.join(self.workdir, name),
            upstream_port=upstream.port,
            listeners=listeners,
            wasm=self.wasm_path if needs_wasm else None,
            jwks_servers=jwks_servers,
            clusters=clusters,
            name=name,
            **kw,
        )
        env.upstream = upstream
        self.add(_Tracked(env))
        if start:
            env.start(timeout=timeout)
        return env

    def close(self):
        errors = []
        while self._stack:
            obj = self._stack.pop()
            try:
                obj.stop()
            except Exception as e:  # keep stopping the rest
                errors.append(e)
        if errors:
            raise errors[0]


class _Tracked:
    """Registers an Envoy in RUNNING_ENVOYS (for log tails on failure)."""

    def __init__(self, env):
        self.env = env
        with _registry_lock:
            RUNNING_ENVOYS.append(env)

    def stop(self):
        try:
            self.env.stop()
        finally:
            with _registry_lock:
                if self.env in RUNNING_ENVOYS:
                    RUNNING_ENVOYS.remove(self.env)
