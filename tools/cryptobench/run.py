#!/usr/bin/env python3
"""Signature-check cost inside wasm under V8 (`make bench-crypto`).

    .venv/bin/python tools/cryptobench/run.py [--budget-ms 1500] [ALG ...]

Mints one throwaway key and one token per algorithm (Python `cryptography`,
through the e2e harness), builds tools/cryptobench for wasm32-wasip1 and runs
it under node's WASI (node embeds V8, the engine Envoy's wasm runtime is).
The numbers are the filter's `PublicKey::verify` alone: no hostcalls, no
header or claims work. `make bench` measures the whole request in Envoy.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from e2e import jose  # noqa: E402

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA"]
RUNNER = r"""
const { WASI } = require('node:wasi');
const fs = require('node:fs');
const [wasmPath, dir, budget] = process.argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: ['cryptobench', '/data/cases.json', budget],
                        preopens: { '/data': dir } });
const mod = new WebAssembly.Module(fs.readFileSync(wasmPath));
const imports = wasi.getImportObject();
// The filter's proxy-wasm hostcalls are linked in but never called here.
for (const imp of WebAssembly.Module.imports(mod)) {
  if (!(imp.module in imports)) imports[imp.module] = {};
  if (!(imp.name in imports[imp.module]))
    imports[imp.module][imp.name] = () => { throw new Error('hostcall ' + imp.name); };
}
const inst = new WebAssembly.Instance(mod, imports);
// proxy-wasm's `_initialize` export makes node take this for a reactor; run it as a command.
process.exitCode = wasi.start({ exports: { memory: inst.exports.memory, _start: inst.exports._start } });
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-ms", type=int, default=1500)
    ap.add_argument("algs", nargs="*", default=ALGS)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1"],
                   cwd=HERE, check=True)
    wasm = os.path.join(HERE, "target", "wasm32-wasip1", "release", "cryptobench.wasm")
    cases = []
    for alg in a.algs:
        key = jose.key_for_alg(alg, kid="bench-" + alg)
        token = jose.sign(key, alg, jose.claims(iss="https://issuer.test", aud="api"))
        cases.append({"alg": alg, "jwk": key.jwk(alg=alg), "token": token})
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "cases.json"), "w") as f:
            json.dump({"cases": cases}, f)
        js = os.path.join(d, "run.js")
        with open(js, "w") as f:
            f.write(RUNNER)
        r = subprocess.run(["node", "--no-warnings", js, wasm, d, str(a.budget_ms)])
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
