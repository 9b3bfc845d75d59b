#!/usr/bin/env python3
"""make oci-push: dist/'s OCI image to a registry, as one manifest with its
digest unchanged (skopeo copy --preserve-digests), then prints the reference
to pin. Fails when the registry reports another digest than the layout's.

Usage: tools/oci_push.py --dist dist --image registry/repo:tag [--skopeo-flags "..."]
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile


def split_image(image):
    """registry/repo[:tag] -> (registry/repo, tag or None)."""
    head, _, last = image.rpartition("/")
    if "@" in last:
        raise SystemExit("--image takes a tag, not a digest: %s" % image)
    if ":" in last:
        name, tag = last.split(":", 1)
        return (head + "/" if head else "") + name, tag
    return image, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dist", default="dist")
    ap.add_argument("--image", required=True)
    ap.add_argument("--skopeo-flags", default="")
    a = ap.parse_args()

    layout = os.path.join(a.dist, "oci")
    with open(os.path.join(layout, "index.json")) as f:
        (entry,) = json.load(f)["manifests"]
    ref = entry["annotations"]["org.opencontainers.image.ref.name"]
    with open(os.path.join(a.dist, "jwt_jwks.oci-digest")) as f:
        want = f.read().strip()
    if entry["digest"] != want:
        raise SystemExit("dist/ is inconsistent: index.json names %s, jwt_jwks.oci-digest %s"
                         % (entry["digest"], want))
    repo, tag = split_image(a.image)
    dest = "docker://%s:%s" % (repo, tag or ref)
    with tempfile.TemporaryDirectory() as tmp:
        digestfile = os.path.join(tmp, "digest")
        cmd = (["skopeo", "copy", "--preserve-digests", "--digestfile", digestfile]
               + shlex.split(a.skopeo_flags) + ["oci:%s:%s" % (layout, ref), dest])
        print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
        subprocess.run(cmd, check=True)
        with open(digestfile) as f:
            got = f.read().strip()
    if got != want:
        raise SystemExit("the registry stored %s, the layout's manifest is %s" % (got, want))
    print("pushed %s\npin:    %s@%s" % (dest[len("docker://"):], repo, got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
