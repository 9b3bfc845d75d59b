"""The upstream API definitions the fleet manifests are checked against,
transcribed field by field (names, types, enums, bounds, cross-field rules)
from the files and commits named at each kind. Only the parts of an API the
manifests touch are spelled out in depth; an open field is `Any`.

Transcribed from:
- Istio: istio/api b8f8791d9653b2edc77a071d48887e582cfe84bf
  (kubernetes/customresourcedefinitions.gen.yaml, the OpenAPI schemas and CEL
  rules of the CRDs; extensions/v1alpha1/wasm.proto,
  extensions/v1alpha1/traffic_extension.proto (also in tag 1.30.0,
  a283232d9647368b02c7e4049fa130e2c08db85d),
  networking/v1alpha3/service_entry.proto, destination_rule.proto); istiod's
  extra checks from istio/istio 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c
  pkg/config/validation/validation.go (ValidateWasmPlugin).
- Envoy Gateway: envoyproxy/gateway v1.9.0 (39763b1c07ec30a5526fe70434a2cfe4181de642)
  api/v1alpha1/envoyextensionypolicy_types.go, api/v1alpha1/wasm_types.go,
  api/v1alpha1/backend_types.go and
  charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_*.yaml;
  HTTPRoute from the Gateway API v1.6.1 that it pins (apis/v1/httproute_types.go).
- Kong: Kong/kong tags 3.4.0 (03a1dc10297fedad9b00f6685ea2148467a08ae9) to
  3.9.0 (0118b3c220681d4f0327540ae1a5e8f271081bf6):
  kong/db/schema/entities/filter_chains.lua, kong/db/schema/others/wasm_filter.lua
  (3.9), kong/runloop/wasm/plugins.lua (3.9 filters as plugins),
  kong/db/schema/entities/{routes,services,plugins}.lua.
"""

from schema import Any, Arr, Bool, Enum, Int, MapOf, Obj, Str

INT32 = Int()
PORT = Int(1, 65535)


def count(value, *names):
    return sum(1 for n in names if n in value)


def k8s(api_version, kind, spec):
    return Obj({
        "apiVersion": Enum(api_version),
        "kind": Enum(kind),
        "metadata": Obj({
            "name": Str(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_len=253),
            "namespace": Str(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_len=63),
            "labels": MapOf(Str()),
            "annotations": MapOf(Str()),
        }, required=["name"]),
        "spec": spec,
    }, required=["apiVersion", "kind", "metadata", "spec"])


# ------------------------------------------------------------------- Istio
# WasmPlugin url: CEL "url must have schema one of [http, https, file, oci]";
# no scheme means oci://.
def _url_scheme_ok(url):
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return scheme in ("", "http", "https", "oci", "file")


ISTIO_SELECTOR = Obj({"matchLabels": MapOf(Str(max_len=63))})
ISTIO_TARGET_REF = Obj({
    "group": Str(max_len=253),
    "kind": Str(pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$", min_len=1, max_len=63),
    "name": Str(min_len=1, max_len=253),
    "namespace": Str(max_len=0),
}, required=["kind", "name"])
ISTIO_MATCH = Obj({
    "mode": Enum("UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"),
    "ports": Arr(Obj({"number": PORT}, required=["number"])),
})
ISTIO_VM_CONFIG = Obj({"env": Arr(Obj({
    "name": Str(min_len=1, max_len=256),
    "value": Str(max_len=2048),
    "valueFrom": Enum("INLINE", "HOST"),
}, required=["name"], rules=[
    ("value may only be set when valueFrom is INLINE",
     lambda e: e.get("valueFrom", "") != "HOST" or "value" not in e),
]), max_items=256)})
ISTIO_MODULE_FIELDS = {
    "url": Str(min_len=1),
    "sha256": Str(pattern=r"(^$|^[a-f0-9]{64}$)"),
    "imagePullPolicy": Enum("UNSPECIFIED_POLICY", "IfNotPresent", "Always"),
    "imagePullSecret": Str(min_len=1, max_len=253),
    "verificationKey": Str(),
    "pluginConfig": Any(),
    "pluginName": Str(min_len=1, max_len=256),
    "failStrategy": Enum("FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"),
    "vmConfig": ISTIO_VM_CONFIG,
    "type": Enum("UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"),
}
URL_RULE = ("url must have schema one of [http, https, file, oci]",
            lambda s: _url_scheme_ok(s.get("url", "")))

WASM_PLUGIN = k8s("extensions.istio.io/v1alpha1", "WasmPlugin", Obj(dict(
    ISTIO_MODULE_FIELDS,
    selector=ISTIO_SELECTOR,
    targetRef=ISTIO_TARGET_REF,
    targetRefs=Arr(ISTIO_TARGET_REF, max_items=16),
    phase=Enum("UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"),
    priority=INT32,
    match=Arr(ISTIO_MATCH),
), required=["url"], rules=[
    URL_RULE,
    ("only one of selector, targetRef, targetRefs",
     lambda s: count(s, "selector", "targetRef", "targetRefs") <= 1),
]))

TRAFFIC_EXTENSION = k8s("extensions.istio.io/v1alpha1", "TrafficExtension", Obj({
    "selector": ISTIO_SELECTOR,
    "targetRefs": Arr(ISTIO_TARGET_REF, max_items=16),
    "match": Arr(ISTIO_MATCH),
    "phase": Enum("UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"),
    "priority": INT32,
    "wasm": Obj(ISTIO_MODULE_FIELDS, required=["url"], rules=[URL_RULE]),
    "lua": Obj({"inlineCode": Str(min_len=1, max_len=65536)}, required=["inlineCode"]),
}, rules=[
    ("exactly one of wasm or lua must be set", lambda s: count(s, "wasm", "lua") == 1),
    ("only one of selector, targetRefs", lambda s: count(s, "selector", "targetRefs") <= 1),
]))

SERVICE_ENTRY = k8s("networking.istio.io/v1", "ServiceEntry", Obj({
    "hosts": Arr(Str(pattern=r"^[^*]|^\*.+"), min_items=1, max_items=256),
    "addresses": Arr(Str(max_len=64), max_items=256),
    "ports": Arr(Obj({
        "number": PORT,
        "name": Str(max_len=256),
        # service_entry.proto: MUST be one of HTTP|HTTPS|GRPC|HTTP2|MONGO|TCP|TLS
        "protocol": Enum("HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"),
        "targetPort": PORT,
    }, required=["number", "name"]), max_items=256),
    "location": Enum("MESH_EXTERNAL", "MESH_INTERNAL"),
    "resolution": Enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"),
    "endpoints": Arr(Obj({
        "address": Str(max_len=256), "ports": MapOf(PORT), "labels": MapOf(Str()),
        "network": Str(), "locality": Str(), "weight": Int(0), "serviceAccount": Str(),
    }), max_items=4096),
    "workloadSelector": Obj({"labels": MapOf(Str())}),
    "exportTo": Arr(Str()),
    "subjectAltNames": Arr(Str()),
}, required=["hosts"], rules=[
    ("only one of workloadSelector or endpoints",
     lambda s: count(s, "workloadSelector", "endpoints") <= 1),
    ("NONE cannot have endpoints",
     lambda s: s.get("resolution", "NONE") != "NONE" or not s.get("endpoints")),
]))

ISTIO_TLS = Obj({
    "mode": Enum("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"),
    "sni": Str(), "caCertificates": Str(), "clientCertificate": Str(), "privateKey": Str(),
    "credentialName": Str(), "caCrl": Str(), "subjectAltNames": Arr(Str()),
    "insecureSkipVerify": Bool(),
})
DESTINATION_RULE = k8s("networking.istio.io/v1", "DestinationRule", Obj({
    "host": Str(min_len=1),
    "subsets": Any(),
    "exportTo": Arr(Str()),
    "workloadSelector": Any(),
    "trafficPolicy": Obj({
        "tls": ISTIO_TLS,
        "portLevelSettings": Arr(Obj({
            "port": Obj({"number": PORT}),
            "tls": ISTIO_TLS,
            "loadBalancer": Any(), "connectionPool": Any(), "outlierDetection": Any(),
        })),
        "loadBalancer": Any(), "connectionPool": Any(), "outlierDetection": Any(),
        "tunnel": Any(), "proxyProtocol": Any(), "retryBudget": Any(),
    }),
}, required=["host"]))

# ----------------------------------------------------------- Envoy Gateway
EG_ROUTE_KINDS = ("Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute",
                  "TLSRoute")
EG_TARGET_REF = Obj({
    "group": Str(), "kind": Str(), "name": Str(min_len=1), "sectionName": Str(),
}, required=["group", "kind", "name"], rules=[
    ("targetRef group must be gateway.networking.k8s.io",
     lambda r: r.get("group") == "gateway.networking.k8s.io"),
    ("targetRef kind must be one of " + ", ".join(EG_ROUTE_KINDS),
     lambda r: r.get("kind") in EG_ROUTE_KINDS),
])
EG_TLS = Obj({"caCertificateRef": Any()}, required=["caCertificateRef"])
EG_WASM = Obj({
    "name": Str(),
    "rootID": Str(),
    "code": Obj({
        # The CRD stacks two enums (allOf [HTTP, Image] and [HTTP, Image,
        # ConfigMap]): only HTTP and Image validate.
        "type": Enum("HTTP", "Image"),
        "http": Obj({"url": Str(min_len=1), "sha256": Str(), "tls": EG_TLS}, required=["url"]),
        "image": Obj({"url": Str(min_len=1), "sha256": Str(), "pullSecretRef": Any(),
                      "tls": EG_TLS}, required=["url"]),
        "pullPolicy": Enum("IfNotPresent", "Always"),
    }, required=["type"], rules=[
        ("http must be set exactly when type is HTTP",
         lambda c: (c.get("type") == "HTTP") == ("http" in c)),
        ("image must be set exactly when type is Image",
         lambda c: (c.get("type") == "Image") == ("image" in c)),
    ]),
    "config": Any(),
    "failOpen": Bool(),
    "env": Obj({"hostKeys": Arr(Str())}),
}, required=["code"])
ENVOY_EXTENSION_POLICY = k8s("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy", Obj({
    "targetRef": EG_TARGET_REF,
    "targetRefs": Arr(EG_TARGET_REF),
    "targetSelectors": Any(),
    "mergeType": Enum("StrategicMerge", "JSONMerge"),
    "wasm": Arr(EG_WASM, max_items=16),
    "extProc": Any(),
    "lua": Any(),
    "dynamicModule": Any(),
}, rules=[
    ("either targetRef or targetRefs must be used",
     lambda s: count(s, "targetRef", "targetRefs") == 1 or bool(s.get("targetSelectors"))),
]))

BACKEND = k8s("gateway.envoyproxy.io/v1alpha1", "Backend", Obj({
    "type": Enum("Endpoints", "DynamicResolver"),
    "endpoints": Arr(Obj({
        "fqdn": Obj({"hostname": Str(min_len=1, max_len=253), "port": Int(0, 65535)},
                    required=["hostname", "port"]),
        "ip": Obj({"address": Str(min_len=3, max_len=45), "port": Int(0, 65535)},
                  required=["address", "port"]),
        "unix": Obj({"path": Str(max_len=108)}, required=["path"]),
        "hostname": Str(max_len=253),
        "zone": Str(),
    }, rules=[("exactly one of fqdn, ip, unix", lambda e: count(e, "fqdn", "ip", "unix") == 1)]),
        min_items=1, max_items=256),
    "appProtocols": Arr(Enum("gateway.envoyproxy.io/h2c", "gateway.envoyproxy.io/ws",
                             "gateway.envoyproxy.io/wss")),
    "fallback": Bool(),
    "tls": Obj({
        "caCertificateRefs": Arr(Any(), max_items=8),
        "wellKnownCACertificates": Enum("System"),
        "insecureSkipVerify": Bool(),
        "sni": Str(min_len=1, max_len=253),
        "autoSNIFromEndpointHostname": Bool(),
        "clientCertificateRef": Any(),
        "minVersion": Enum("Auto", "1.0", "1.1", "1.2", "1.3"),
        "maxVersion": Enum("Auto", "1.0", "1.1", "1.2", "1.3"),
        "ciphers": Arr(Str()), "ecdhCurves": Arr(Str()), "signatureAlgorithms": Arr(Str()),
        "alpnProtocols": Arr(Str()),
    }, rules=[
        ("not both caCertificateRefs and wellKnownCACertificates",
         lambda t: count(t, "caCertificateRefs", "wellKnownCACertificates") <= 1),
        ("sni and autoSNIFromEndpointHostname exclude each other",
         lambda t: count(t, "sni", "autoSNIFromEndpointHostname") <= 1),
    ]),
}, rules=[
    ("fqdn endpoints cannot be mixed with others",
     lambda s: all("fqdn" in e for e in s.get("endpoints", []))
     or not any("fqdn" in e for e in s.get("endpoints", []))),
]))

HTTP_ROUTE = k8s("gateway.networking.k8s.io/v1", "HTTPRoute", Obj({
    "parentRefs": Arr(Obj({
        "group": Str(), "kind": Str(), "namespace": Str(), "name": Str(min_len=1),
        "sectionName": Str(), "port": PORT,
    }, required=["name"])),
    "hostnames": Arr(Str()),
    "rules": Arr(Obj({
        "name": Str(),
        "matches": Arr(Obj({
            "path": Obj({"type": Enum("Exact", "PathPrefix", "RegularExpression"),
                         "value": Str(max_len=1024)}),
            "headers": Any(), "queryParams": Any(), "method": Str(),
        })),
        "filters": Any(),
        "backendRefs": Arr(Obj({
            "group": Str(), "kind": Str(), "name": Str(min_len=1), "namespace": Str(),
            "port": PORT, "weight": Int(0, 1000000), "filters": Any(),
        }, required=["name"], rules=[
            ("Must have port for Service reference",
             lambda b: b.get("kind", "Service") != "Service" or "port" in b),
        ])),
        "timeouts": Any(), "retry": Any(), "sessionPersistence": Any(),
    })),
}))

K8S_KINDS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): WASM_PLUGIN,
    ("extensions.istio.io/v1alpha1", "TrafficExtension"): TRAFFIC_EXTENSION,
    ("networking.istio.io/v1", "ServiceEntry"): SERVICE_ENTRY,
    ("networking.istio.io/v1", "DestinationRule"): DESTINATION_RULE,
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"): ENVOY_EXTENSION_POLICY,
    ("gateway.envoyproxy.io/v1alpha1", "Backend"): BACKEND,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
}

# ------------------------------------------------------------------- Kong
KONG_FILTER = Obj({"name": Str(min_len=1), "config": Any(), "enabled": Bool()},
                  required=["name"])
KONG_FILTER_CHAIN = Obj({
    "id": Str(), "name": Str(), "enabled": Bool(), "route": Any(), "service": Any(),
    "filters": Arr(KONG_FILTER, min_items=1), "tags": Arr(Str()),
    "created_at": Int(0), "updated_at": Int(0),
}, required=["filters"])
KONG_PLUGIN = Obj({
    "id": Str(), "name": Str(min_len=1), "instance_name": Str(), "config": Any(),
    "enabled": Bool(), "protocols": Arr(Str()), "tags": Arr(Str()), "route": Any(),
    "service": Any(), "consumer": Any(), "ordering": Any(),
}, required=["name"])
KONG_ROUTE = Obj({
    "id": Str(), "name": Str(), "protocols": Arr(Enum("http", "https", "grpc", "grpcs",
                                                       "tcp", "tls", "udp", "tls_passthrough",
                                                       "ws", "wss")),
    "methods": Arr(Str()), "hosts": Arr(Str()), "paths": Arr(Str()), "headers": Any(),
    "https_redirect_status_code": Enum(426, 301, 302, 307, 308), "regex_priority": Int(),
    "strip_path": Bool(), "path_handling": Enum("v0", "v1"), "preserve_host": Bool(),
    "request_buffering": Bool(), "response_buffering": Bool(), "snis": Arr(Str()),
    "sources": Any(), "destinations": Any(), "tags": Arr(Str()), "service": Any(),
    "expression": Str(), "priority": Int(0),
    "plugins": Arr(KONG_PLUGIN), "filter_chains": Arr(KONG_FILTER_CHAIN),
})
KONG_SERVICE = Obj({
    "id": Str(), "name": Str(), "retries": Int(0, 32767),
    "protocol": Enum("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp",
                     "ws", "wss"),
    "host": Str(), "port": PORT, "path": Str(), "connect_timeout": Int(1),
    "write_timeout": Int(1), "read_timeout": Int(1), "tags": Arr(Str()),
    "client_certificate": Any(), "tls_verify": Bool(), "tls_verify_depth": Int(0, 64),
    "ca_certificates": Arr(Str()), "enabled": Bool(), "url": Str(),
    "routes": Arr(KONG_ROUTE), "plugins": Arr(KONG_PLUGIN),
    "filter_chains": Arr(KONG_FILTER_CHAIN),
})
KONG_DECLARATIVE = Obj({
    "_format_version": Enum("1.1", "2.1", "3.0"),
    "_transform": Bool(),
    "services": Arr(KONG_SERVICE),
    "routes": Arr(KONG_ROUTE),
    "plugins": Arr(KONG_PLUGIN),
    "filter_chains": Arr(KONG_FILTER_CHAIN),
}, required=["_format_version"])
