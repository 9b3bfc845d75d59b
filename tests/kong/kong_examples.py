"""Every jwt_jwks configuration shown in the repository, as (name, config) pairs.

Sources: the ```json blocks of README.md, the filter configuration embedded in
envoy/envoy.yaml (its {{PLACEHOLDERS}} replaced by plausible values), every
jwt_jwks filter or plugin in kong/kong.yml, kong/kong-3.4.yml and kong/kong-3.9.yml, the Admin API
bodies in kong/examples/, and the filter configuration of every fleet manifest
template (envoy/remote.yaml, envoy/istio/, envoy/envoy-gateway/; their
{{PLACEHOLDERS}} replaced by FLEET_PLACEHOLDERS). test_schema.py checks each against the schema and checks that a
copy sits in tests/config_corpus/valid/, where the Rust parser reads it too.

    python tests/kong/kong_examples.py --write   # (re)writes those copies
"""

import hashlib
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "config_corpus"
FILTER = "jwt_jwks"

# Values for envoy/envoy.yaml's placeholders (tools/demo.py's defaults).
ENVOY_PLACEHOLDERS = {
    "GATEWAY_PORT": "10000",
    "ADMIN_PORT": "9901",
    "ISSUER_PORT": "18080",
    "UPSTREAM_PORT": "18081",
    "WASM_PATH": "/opt/jwt-jwks/jwt_jwks.wasm",
    "ISSUER": "http://127.0.0.1:18080",
    "AUDIENCE": "demo-api",
    "ADMIN_TOKEN": "demo-admin-token-0123456789abcdef",
}


def strict_json(text):
    """json.loads that refuses what serde_json refuses (NaN, Infinity) and
    duplicate members (ambiguous for a corpus)."""

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate member in {keys}")
        return dict(pairs)

    return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)


def doc_pages():
    """The README and the reference pages it links to (docs/)."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def readme_configs():
    blocks = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        blocks += re.findall(r"^```json\n(.*?)^```", text, flags=re.S | re.M)
    return [(f"readme_example_{i + 1}", strict_json(b)) for i, b in enumerate(blocks)]


def envoy_configs():
    text = (ROOT / "envoy" / "envoy.yaml").read_text(encoding="utf-8")

    def fill(m):
        name = m.group(1)
        if name not in ENVOY_PLACEHOLDERS:
            raise KeyError(f"envoy.yaml placeholder {{{{{name}}}}} has no test value")
        return ENVOY_PLACEHOLDERS[name]

    doc = yaml.safe_load(re.sub(r"\{\{([A-Z_]+)\}\}", fill, text))
    return [(f"envoy_yaml_{i + 1}", c) for i, c in enumerate(envoy_wasm_configs(doc))]


def dicts(node):
    """Every mapping in a parsed YAML/JSON tree, depth first."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from dicts(v)
    elif isinstance(node, list):
        for v in node:
            yield from dicts(v)


def wasm_filter_nodes(doc):
    """The `config` of every jwt_jwks wasm filter of an Envoy bootstrap."""
    return [d for d in dicts(doc) if d.get("root_id") == FILTER and "configuration" in d]


# Values for the fleet templates' placeholders (make dist fills in real ones).
FLEET_PLACEHOLDERS = {
    "IMAGE": "registry.example.com/jwt-jwks",
    "VERSION": "0.0.0",
    "OCI_DIGEST": "sha256:" + "0" * 64,
    "OCI_DIGEST_HEX": "0" * 64,
    "WASM_SHA256": "1" * 64,
    "WASM_URL": "https://downloads.example.com/jwt_jwks.wasm",
    "FILTER_NAME": FILTER,
}


def render(text, values):
    """A template with every {{NAME}} replaced; an unknown name is an error."""
    def fill(m):
        return values[m.group(1)]
    return re.sub(r"\{\{([A-Z0-9_]+)\}\}", fill, text)


def kong_yml(name="kong.yml"):
    text = (ROOT / "kong" / name).read_text(encoding="utf-8")
    return yaml.safe_load(render(text, FLEET_PLACEHOLDERS))


def fleet_docs(rel):
    """The YAML documents of a fleet template, placeholders filled in."""
    text = (ROOT / rel).read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(render(text, FLEET_PLACEHOLDERS)) if d is not None]


def envoy_wasm_configs(doc):
    """The filter configuration (a JSON string) of every wasm filter of an
    Envoy bootstrap."""
    return [strict_json(d["configuration"]["value"]) for d in wasm_filter_nodes(doc)]


def fleet_configs():
    out = []
    for i, cfg in enumerate(envoy_wasm_configs(fleet_docs("envoy/remote.yaml")[0])):
        out.append((f"envoy_remote_{i + 1}", cfg))
    for name in ("wasmplugin", "trafficextension"):
        for doc in fleet_docs(f"envoy/istio/{name}.yaml"):
            spec = doc["spec"]
            out.append((f"istio_{name}_1", (spec.get("wasm") or spec)["pluginConfig"]))
    for name in ("extension-policy-image", "extension-policy-http"):
        for doc in fleet_docs(f"envoy/envoy-gateway/{name}.yaml"):
            for j, w in enumerate(doc["spec"]["wasm"]):
                out.append((f"envoy_gateway_{name.replace('-', '_')}_{j + 1}", w["config"]))
    for name in ("kong-3.4.yml", "kong-3.9.yml"):
        for i, (_, entry) in enumerate(kong_filter_entries(kong_yml(name))):
            out.append((f"{name[:-4].replace('-', '_').replace('.', '_')}_yml_{i + 1}",
                        filter_config(entry)))
    return out


def kong_filter_entries(doc):
    """(where, entry) for every jwt_jwks filter of a filter chain and every
    jwt_jwks plugin, at any nesting depth of a declarative document."""
    out = []

    def walk(node, where):
        if isinstance(node, dict):
            for chain in node.get("filter_chains") or []:
                for f in chain.get("filters") or []:
                    if f.get("name") == FILTER:
                        out.append((f"{where}/{chain.get('name')}", f))
            for p in node.get("plugins") or []:
                if p.get("name") == FILTER:
                    out.append((f"{where}/plugin", p))
            for k, v in node.items():
                if k not in ("filter_chains", "plugins"):
                    walk(v, f"{where}/{node.get('name', k)}" if isinstance(v, (dict, list)) else where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    walk(doc, "")
    return out


def filter_config(entry):
    """A filter's config as the filter receives it (Kong 3.4 takes a JSON string)."""
    cfg = entry.get("config")
    return strict_json(cfg) if isinstance(cfg, str) else cfg


def kong_configs():
    out = []
    for i, (_, entry) in enumerate(kong_filter_entries(kong_yml())):
        out.append((f"kong_yml_{i + 1}", filter_config(entry)))
    for path in sorted((ROOT / "kong" / "examples").glob("*.json")):
        body = strict_json(path.read_text(encoding="utf-8"))
        entries = [body] if body.get("name") == FILTER else [
            f for f in body.get("filters", []) if f.get("name") == FILTER]
        for j, entry in enumerate(entries):
            out.append((f"kong_examples_{path.stem.replace('-', '_').replace('.', '_')}_{j + 1}",
                        filter_config(entry)))
    return out


def all_configs():
    return readme_configs() + envoy_configs() + kong_configs() + fleet_configs()


def canonical(cfg):
    return json.dumps(cfg, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def corpus_file_name(name, cfg):
    """Named by source and content, so editing or adding an example adds a file
    and renumbering the README changes nothing."""
    source = name.rsplit("_", 1)[0]
    digest = hashlib.sha256(canonical(cfg).encode()).hexdigest()[:10]
    return f"{source}_{digest}.json"


def write_corpus_copies():
    """Adds a copy of every example that tests/config_corpus/valid lacks."""
    have = {canonical(strict_json(p.read_text(encoding="utf-8"))) for p in (CORPUS / "valid").glob("*.json")}
    for name, cfg in all_configs():
        if canonical(cfg) in have:
            continue
        path = CORPUS / "valid" / corpus_file_name(name, cfg)
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        have.add(canonical(cfg))
        print("added", path.relative_to(ROOT))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_corpus_copies()
    else:
        for name, cfg in all_configs():
            print(name, json.dumps(cfg)[:100])
