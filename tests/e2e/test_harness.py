"""The test harness itself: token minting, the servers and Envoy without the
filter. These tests do not need the wasm module."""

import json
import os
import socket
import ssl

import pytest
from cryptography.exceptions import InvalidSignature

from e2e import client, jose
from e2e.envoy import Cluster, Envoy, to_yaml
from e2e.ports import accepts_connections, free_port


# ---------------------------------------------------------------- jose
@pytest.fixture(scope="module")
def keys():
    return {alg: jose.key_for_alg(alg) for alg in jose.ALL_ALGS}


@pytest.mark.parametrize("alg", jose.ALL_ALGS)
def test_minted_tokens_verify_with_the_public_key(keys, alg):
    key = keys[alg]
    token = jose.sign(key, alg, jose.claims(iss="i", aud="a"))
    header, payload, sig = jose.decode(token)
    assert header == {"alg": alg, "typ": "JWT", "kid": key.kid}
    assert payload["iss"] == "i" and payload["exp"] - payload["iat"] == 300
    assert jose.verify(token, key)["aud"] == "a"
    other = jose.key_for_alg(alg)
    with pytest.raises(InvalidSignature):
        jose.verify(token, other)


@pytest.mark.parametrize("alg,size", [("ES256", 64), ("ES384", 96), ("ES512", 132)])
def test_ecdsa_signatures_are_raw_r_s_of_fixed_size(keys, alg, size):
    for _ in range(5):
        token = jose.sign(keys[alg], alg)
        assert len(jose.decode(token)[2]) == size


def test_pss_uses_salt_length_equal_to_hash_length(keys):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    token = jose.sign(keys["PS384"], "PS384")
    h, p, s = token.split(".")
    pub = keys["PS384"].public_key
    pub.verify(jose.b64u_decode(s), ("%s.%s" % (h, p)).encode(),
               padding.PSS(padding.MGF1(hashes.SHA384()), 48), hashes.SHA384())


def test_public_jwks_have_the_expected_members(keys):
    rsa = keys["RS256"].jwk(alg="RS256")
    assert set(rsa) == {"kty", "n", "e", "kid", "alg", "use"}
    assert rsa["e"] == "AQAB" and len(jose.b64u_decode(rsa["n"])) == 256
    for alg, crv, size in [("ES256", "P-256", 32), ("ES384", "P-384", 48), ("ES512", "P-521", 66)]:
        j = keys[alg].jwk(use=None)
        assert j["kty"] == "EC" and j["crv"] == crv and "use" not in j and "alg" not in j
        assert len(jose.b64u_decode(j["x"])) == size == len(jose.b64u_decode(j["y"]))
    ed = keys["EdDSA"].jwk(kid=False)
    assert ed["kty"] == "OKP" and ed["crv"] == "Ed25519" and "kid" not in ed
    assert len(jose.b64u_decode(ed["x"])) == 32
    assert jose.rsa_key(1024).public_key.key_size == 1024


def test_public_pem_is_spki(keys):
    pem = keys["ES256"].public_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_hs256_and_none_and_raw_parts():
    token = jose.sign(b"secret", "HS256", jose.claims())
    assert jose.decode(token)[0]["alg"] == "HS256" and len(jose.decode(token)[2]) == 32
    none = jose.sign(b"", "none", jose.claims())
    assert none.endswith(".")
    raw = jose.compact({"alg": "RS256"}, b"not json", "sig")
    assert jose.b64u_decode(raw.split(".")[1]) == b"not json" and raw.endswith(".sig")
    assert jose.compact("!!", "??", "") == "!!.??."


def test_claims_helper_fills_times():
    c = jose.claims(iss="x", aud=["a", "b"], exp_in=-10, nbf_in=5, now=1000, scope="s")
    assert c == {"iss": "x", "aud": ["a", "b"], "sub": "alice", "iat": 1000,
                 "exp": 990, "nbf": 1005, "scope": "s"}


# ---------------------------------------------------------------- servers
def test_jwks_server_serves_counts_and_changes(lab):
    srv = lab.jwks({"keys": [1]})
    r = client.request(srv.port, "GET", srv.path)
    assert r.status == 200 and r.json() == {"keys": [1]}
    srv.set_document({"keys": [2]})
    assert client.request(srv.port, "GET", srv.path).json() == {"keys": [2]}
    assert srv.count == 2
    assert client.request(srv.port, "GET", "/other").status == 404
    assert srv.count == 2 and srv.paths_requested()[-1] == "/other"
    srv.set_raw(b"{broken")
    assert client.request(srv.port, "GET", srv.path).body == b"{broken"
    srv.status = 500
    assert client.request(srv.port, "GET", srv.path).status == 500
    assert srv.wait_for_count(4, timeout=1) == 4
    srv.status = 200
    srv.set_document({"keys": [3]})
    srv.fail_next(1, 502)
    assert client.request(srv.port, "GET", srv.path).status == 502
    assert client.request(srv.port, "GET", srv.path).json() == {"keys": [3]}


def test_jwks_server_down_modes_and_back_up(lab):
    srv = lab.jwks({"keys": []})
    port = srv.port
    srv.down("refuse")
    assert not accepts_connections(port)
    srv.up()
    assert srv.port == port and client.request(port, "GET", srv.path).status == 200
    srv.down("reset")
    with pytest.raises((ConnectionError, OSError)):
        client.request(port, "GET", srv.path, timeout=5)
    assert srv.resets == 1
    srv.up()
    assert client.request(port, "GET", srv.path).status == 200


def test_jwks_server_delay(lab):
    import time

    srv = lab.jwks({"keys": []}, delay=0.5)
    t0 = time.monotonic()
    assert client.request(srv.port, "GET", srv.path).status == 200
    assert time.monotonic() - t0 >= 0.45


def test_jwks_server_over_tls_verifies_with_the_test_ca(lab):
    srv = lab.jwks({"keys": ["tls"]}, tls=True)
    ctx = ssl.create_default_context(cafile=lab.pki().ca_cert)
    r = client.request(srv.port, "GET", srv.path, host="localhost", ssl_context=ctx)
    assert r.status == 200 and r.json() == {"keys": ["tls"]}
    r = client.request(srv.port, "GET", srv.path, host="127.0.0.1", ssl_context=ctx)
    assert r.status == 200
    with pytest.raises(ssl.SSLError):
        client.request(srv.port, "GET", srv.path, host="localhost",
                       ssl_context=ssl.create_default_context())


def test_echo_server_reports_method_path_and_repeated_headers(lab):
    echo = lab.echo()
    r = client.request(echo.port, "PURGE", "/a/b?c=1",
                       [("X-One", "1"), ("X-Dup", "a"), ("X-Dup", "b")], body="hi")
    doc = r.json()
    assert r.status == 200
    assert doc["method"] == "PURGE" and doc["path"] == "/a/b?c=1" and doc["body"] == "hi"
    assert doc["headers"]["x-one"] == "1" and doc["headers"]["x-dup"] == "a, b"
    assert echo.count == 1


# ---------------------------------------------------------------- envoy
def test_yaml_writer_output_is_plain_block_yaml():
    text = to_yaml({"a": [{"b": 1, "c": [True, None]}, "x"], "@type": "t", "e": {}})
    assert text == 'a:\n  - b: 1\n    c:\n      - true\n      - null\n  - "x"\n"@type": "t"\ne: {}\n'


def test_envoy_without_the_filter_proxies_to_the_echo_upstream(lab):
    env = lab.envoy({"plain": None, "second": None})
    r = env.request("plain", "GET", "/hello", [("Authorization", "Bearer x")])
    assert r.status == 200 and r.json()["path"] == "/hello"
    assert r.json()["headers"]["authorization"] == "Bearer x"
    assert env.request("second", "POST", "/p").json()["method"] == "POST"
    # Envoy folds repeated Authorization headers into one comma-joined value
    # before any filter sees them (why the filter treats a comma as two tokens)
    r = env.request("plain", "GET", "/", [("Authorization", "Bearer a"),
                                          ("Authorization", "Bearer b")])
    assert r.json()["headers"]["authorization"] == "Bearer a,Bearer b"
    stats = env.stats()
    assert stats, "no stats"
    assert env.stat("http.ingress_plain.downstream_rq_completed") >= 1
    pid = env.proc.pid
    env.stop()
    assert env.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_listener_access_log_is_written_per_listener(lab):
    env = lab.envoy({"logged": None, "quiet": None},
                    access_logs={"logged": "probe=%REQ(x-probe)% %RESPONSE_CODE%\n"})
    assert env.request("logged", "GET", "/", [("X-Probe", "p-123")]).status == 200
    assert env.request("quiet", "GET", "/", [("X-Probe", "p-456")]).status == 200
    line = env.wait_for_access_log("logged", "p-123", timeout=5)
    assert line == "probe=p-123 200", env.access_log_lines("logged")
    assert "quiet" not in env.access_logs
    assert not any("p-456" in l for l in env.access_log_lines("logged"))


def test_envoy_config_has_wasm_filter_and_named_jwks_clusters(lab, tmp_path):
    jwks = lab.jwks({"keys": []})
    env = Envoy("/bin/false", str(tmp_path), upstream_port=1,
                listeners={"jwt": {"jwks_uri": jwks.url}, "plain": None},
                wasm="/x.wasm", jwks_servers=[jwks],
                clusters=[Cluster("jwks_tls", 2, tls_ca="/ca.pem", san="localhost")])
    cfg = env.write_config()
    names = [c["name"] for c in cfg["static_resources"]["clusters"]]
    assert names == ["upstream", "127.0.0.1:%d" % jwks.port, "jwks_tls"]
    tls = cfg["static_resources"]["clusters"][2]["transport_socket"]["typed_config"]
    assert tls["sni"] == "localhost"
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"] == {"filename": "/ca.pem"}
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm = hcm["http_filters"][0]["typed_config"]["config"]
    assert wasm["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert json.loads(wasm["configuration"]["value"]) == {"jwks_uri": jwks.url}
    assert wasm["fail_open"] is False and wasm["root_id"] == "jwt_jwks"
    plain = cfg["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in plain["http_filters"]] == ["envoy.filters.http.router"]


def test_envoy_validates_the_generated_wasm_config_shape(lab, tmp_path, envoy_bin):
    # --mode validate parses the bootstrap (including the Wasm typed_config)
    # without loading the module, so the config shape is checked even while
    # the filter is not built yet.
    jwks = lab.jwks({"keys": []})
    wasm = tmp_path / "missing.wasm"
    wasm.write_bytes(b"\0asm\1\0\0\0")
    env = Envoy(envoy_bin, str(tmp_path), upstream_port=free_port(),
                listeners={"jwt": {"jwks_uri": jwks.url}}, wasm=str(wasm),
                jwks_servers=[jwks], extra_args=["--mode", "validate"])
    res = env.start_expect_failure(timeout=30)
    assert res.exited, res
    # it got past parsing the typed_config and tried to load the module
    assert "Unable to parse JSON as proto" not in res.log, res.log[-3000:]
    assert "Unable to create Wasm plugin jwt_jwks" in res.log, res.log[-3000:]


def test_start_expect_failure_reports_a_refused_bootstrap(lab, tmp_path, envoy_bin):
    env = Envoy(envoy_bin, str(tmp_path), upstream_port=free_port(),
                listeners={"plain": None},
                clusters=[Cluster("bad", 1, connect_timeout="not-a-duration")])
    res = env.start_expect_failure(timeout=20)
    assert res.exited and res.returncode != 0 and not res.ready
    assert "connect_timeout" in res.log or "Duration" in res.log, res.log[-2000:]


def test_free_port_is_bindable():
    p = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))
