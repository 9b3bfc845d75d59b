"""A CNCF distribution registry (Debian's docker-registry) on 127.0.0.1, with
a configuration of its own (never the package's, which listens on every
interface), storing under the test's folder; stopped by process group."""

import os
import subprocess
import time
import urllib.error
import urllib.request

from e2e.ports import HOST, free_port
from e2e.procs import stop_group

BINARY = "/usr/bin/docker-registry"

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: false
http:
  addr: {host}:{port}
"""


class Registry:
    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        self.proc = None
        os.makedirs(workdir, exist_ok=True)
        self.config_path = os.path.join(workdir, "registry.yml")
        self.log_path = os.path.join(workdir, "registry.log")

    @property
    def authority(self):
        return "%s:%d" % (HOST, self.port)

    def start(self, timeout=15.0):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError("%s is missing (make oci-tools installs it)" % BINARY)
        with open(self.config_path, "w") as f:
            f.write(CONFIG.format(root=os.path.join(self.workdir, "data"), host=HOST,
                                  port=self.port))
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([BINARY, "serve", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the registry exited: %s" % self.log())
            try:
                with urllib.request.urlopen("http://%s/v2/" % self.authority, timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the registry did not answer /v2/: %s" % self.log())

    def stop(self):
        stop_group(self.proc)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def get(self, path, accept=None):
        """(headers, body) of GET http://registry/v2/<path>."""
        req = urllib.request.Request("http://%s/v2/%s" % (self.authority, path))
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers, r.read()
