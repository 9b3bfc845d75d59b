"""tests/kong: the schema/corpus checks always; the ngx_wasm_module host checks
(test_ngx_wasm_host.py) only when NGX_WASM_NGINX names an nginx built with
ngx_wasm_module (`make test-kong`), so `pytest tests/kong` in CI needs no nginx."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(os.path.dirname(HERE), "e2e")
for path in (HERE, E2E):
    if path not in sys.path:
        sys.path.insert(0, path)

collect_ignore = [] if os.environ.get("NGX_WASM_NGINX") else ["test_ngx_wasm_host.py"]
