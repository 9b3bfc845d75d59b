"""kong/jwt_jwks.meta.json against the configuration corpus and the Kong examples.

The corpus (tests/config_corpus/) is classified twice: here by the JSON Schema
that Kong applies when a filter chain or plugin is created, and by the filter's
own parser (Config::parse) in a Rust integration test. Both must agree:

    valid/            schema: accepted   parser: accepted
    invalid/          schema: refused    parser: refused
    cross_field/      schema: accepted   parser: refused  (rules JSON Schema cannot express)
    schema_stricter/  schema: refused    parser: accepted (deliberate, see kong/README.md)

Kong validates with lua-resty-ljsonschema as draft 4, patterns through
ngx.re (PCRE, byte mode) and integers as whole numbers; the schema keeps to
what behaves the same there and in Python's jsonschema (Draft4Validator).
"""

import json
import pathlib
import re

import pytest
import yaml
from jsonschema import Draft4Validator

import kong_examples as ex

ROOT = ex.ROOT
META = ROOT / "kong" / "jwt_jwks.meta.json"
CORPUS = ex.CORPUS
EXPECT = {"valid": True, "invalid": False, "cross_field": True, "schema_stricter": False}

# Keywords of JSON Schema draft 4 (validation and metadata). A keyword outside
# this list would be silently ignored by Kong's draft-4 validator.
DRAFT4_KEYWORDS = {
    "$schema", "$ref", "id", "title", "description", "default", "type", "enum",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "items", "additionalItems", "maxItems",
    "minItems", "uniqueItems", "maxProperties", "minProperties", "required",
    "properties", "patternProperties", "additionalProperties", "dependencies",
    "allOf", "anyOf", "oneOf", "not", "definitions",
}
# Members whose values are maps of names to schemas (not keywords themselves).
SCHEMA_MAPS = {"properties", "patternProperties", "definitions", "dependencies"}


def load_meta():
    return ex.strict_json(META.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator():
    return Draft4Validator(load_meta()["config_schema"])


def corpus_cases():
    cases = []
    for kind in EXPECT:
        for path in sorted((CORPUS / kind).glob("*.json")):
            cases.append(pytest.param(kind, path, id=f"{kind}/{path.stem}"))
    return cases


# ------------------------------------------------------------ the file itself

def test_meta_json_is_what_kong_loads():
    meta = load_meta()
    # Kong's FILTER_META_SCHEMA: an object with config_schema and metrics.
    assert set(meta) <= {"config_schema", "metrics"}
    schema = meta["config_schema"]
    Draft4Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert schema["type"] == "object" and schema["additionalProperties"] is False


def test_schema_uses_only_draft4_keywords():
    unknown = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in DRAFT4_KEYWORDS:
                    unknown.append(f"{path}/{k}")
                if k in SCHEMA_MAPS:
                    for name, sub in v.items():
                        walk(sub, f"{path}/{k}/{name}")
                elif k in ("items", "additionalItems", "additionalProperties", "not"):
                    walk(v, f"{path}/{k}")
                elif k in ("allOf", "anyOf", "oneOf") or (k == "items" and isinstance(v, list)):
                    for i, sub in enumerate(v):
                        walk(sub, f"{path}/{k}/{i}")

    walk(load_meta()["config_schema"], "")
    assert not unknown, f"not draft-4 keywords (Kong would ignore them): {unknown}"


def test_patterns_avoid_engine_specific_syntax():
    """Patterns must mean the same in PCRE (Kong), Python and ECMA 262: no
    inline flags, no \\u escapes (PCRE has none), no \\d \\w \\s (their meaning
    beyond ASCII differs), and a `$` that could match before a final newline
    must be guarded where the pattern's classes exclude newlines."""
    patterns = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "pattern":
                    patterns.append(v)
                elif k == "patternProperties":
                    patterns.extend(v)
                    walk(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(load_meta()["config_schema"])
    assert patterns
    for p in patterns:
        re.compile(p)
        assert "(?i" not in p and "\\u" not in p, p
        assert not re.search(r"\\[dDwWsS]", p), p


# ------------------------------------------------------------------ corpus

def test_corpus_is_large_and_strict_json():
    counts = {k: len(list((CORPUS / k).glob("*.json"))) for k in EXPECT}
    assert counts["valid"] + counts["invalid"] >= 40, counts
    assert all(counts.values()), counts
    for kind in EXPECT:
        for path in (CORPUS / kind).glob("*.json"):
            ex.strict_json(path.read_text(encoding="utf-8"))


def test_corpus_sets_every_field(validator):
    """Every top-level and nested field appears in at least one valid and one
    invalid configuration."""
    schema = load_meta()["config_schema"]
    defs = schema["definitions"]
    fields = {"top": set(schema["properties"]),
              "provider": set(defs["provider"]["properties"]),
              "rule": set(defs["rule"]["properties"])}

    def seen(kind):
        out = {k: set() for k in fields}
        for path in (CORPUS / kind).glob("*.json"):
            cfg = ex.strict_json(path.read_text(encoding="utf-8"))
            if not isinstance(cfg, dict):
                continue
            out["top"] |= set(cfg)
            for p in cfg.get("providers") or []:
                if isinstance(p, dict):
                    out["provider"] |= set(p)
            for r in cfg.get("rules") or [] if isinstance(cfg.get("rules"), list) else []:
                if isinstance(r, dict):
                    out["rule"] |= set(r)
        return out

    for kind in ("valid", "invalid"):
        got = seen(kind)
        missing = {k: sorted(fields[k] - got[k]) for k in fields if fields[k] - got[k]}
        assert not missing, f"fields never set in {kind}/: {missing}"


@pytest.mark.parametrize("kind,path", corpus_cases())
def test_schema_classifies_corpus(validator, kind, path):
    cfg = ex.strict_json(path.read_text(encoding="utf-8"))
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(cfg)]
    if EXPECT[kind]:
        assert not errors, errors
    else:
        assert errors, f"{path.name} should be refused by the schema"


# ---------------------------------------------------------------- examples

def test_every_example_passes_the_schema_and_is_in_the_corpus(validator):
    examples = ex.all_configs()
    names = {n.rsplit("_", 1)[0] for n, _ in examples}
    assert {"readme_example", "envoy_yaml", "kong_yml"} <= names, names
    have = {ex.canonical(ex.strict_json(p.read_text(encoding="utf-8")))
            for p in (CORPUS / "valid").glob("*.json")}
    missing = []
    for name, cfg in examples:
        errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(cfg)]
        assert not errors, f"{name}: {errors}"
        if ex.canonical(cfg) not in have:
            missing.append(ex.corpus_file_name(name, cfg))
    assert not missing, ("examples without a copy in tests/config_corpus/valid (run "
                         f"`python tests/kong/kong_examples.py --write`): {missing}")


def test_kong_yml_is_a_declarative_config_with_a_guarded_admin_route():
    doc = ex.kong_yml()
    assert doc["_format_version"] == "3.0"
    entries = ex.kong_filter_entries(doc)
    assert len(entries) >= 2
    routes = [r for s in doc["services"] for r in s.get("routes", [])]
    admin_routes, public_routes = [], []
    for route in routes:
        for chain in route.get("filter_chains", []):
            for f in chain["filters"]:
                if f["name"] != ex.FILTER:
                    continue
                cfg = f["config"]
                if cfg.get("admin_token") or cfg.get("admin_token_sha256"):
                    admin_routes.append((route, cfg))
                else:
                    public_routes.append(route)
    assert public_routes and len(admin_routes) == 1
    route, cfg = admin_routes[0]
    prefix = cfg.get("admin_path_prefix") or "/jwt-jwks"
    assert route["paths"] == [prefix] and route.get("strip_path") is False
    assert route.get("service", None) is None  # nested under a service: it has one
    assert route.get("hosts"), "the admin route is limited to an internal host name"
    plugins = {p["name"]: p for p in route.get("plugins", [])}
    assert plugins["ip-restriction"]["config"]["allow"]
    # the public route's filter has no admin token, so the admin path is off there
    for r in public_routes:
        assert prefix not in r.get("paths", [])


def test_kong_examples_are_admin_api_bodies():
    for path in sorted((ROOT / "kong" / "examples").glob("*.json")):
        body = ex.strict_json(path.read_text(encoding="utf-8"))
        if "filters" in body:          # POST /routes/{route}/filter-chains
            assert [f["name"] for f in body["filters"]] == [ex.FILTER], path.name
        else:                          # POST /plugins (Kong 3.9)
            assert body["name"] == ex.FILTER and "route" in body, path.name
    three_four = ex.strict_json((ROOT / "kong" / "examples" / "filter-chain-3.4.json").read_text())
    assert isinstance(three_four["filters"][0]["config"], str), "Kong 3.4 takes the config as a string"


def test_kong_conf_fragment_names_the_essentials():
    text = (ROOT / "kong" / "kong.conf").read_text(encoding="utf-8")
    settings = dict(
        (k.strip(), v.strip())
        for k, v in (line.split("=", 1) for line in text.splitlines()
                     if line.strip() and not line.lstrip().startswith("#") and "=" in line)
    )
    assert settings["wasm"] == "on"
    assert settings["wasm_filters_path"].startswith("/")
    assert any(k.startswith("nginx_wasm_shm_kv") for k in settings), "no shm_kv zone"
    for key in ("nginx_wasm_tls_verify_cert", "nginx_wasm_tls_trusted_certificate",
                "nginx_wasm_resolver", "nginx_worker_processes"):
        assert key in settings, key
    # every name is a kong.conf property (Kong injects nginx_<block>_<directive>)
    for key in settings:
        assert re.fullmatch(r"wasm(_filters(_path)?)?|nginx_(wasm|http|main|worker)_[a-z0-9_]+|nginx_worker_processes",
                            key), key


def test_meta_json_sits_beside_the_filter_in_docs():
    """Kong reads <filter>.meta.json from wasm_filters_path: the README says to
    copy both files there."""
    readme = (ROOT / "kong" / "README.md").read_text(encoding="utf-8")
    assert "jwt_jwks.meta.json" in readme and "wasm_filters_path" in readme
