# Vedette — developer entry points. `make run` and `make test` work on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
# Debian packages the test suite drives (promtool, systemd-analyze, attack and lab tools;
# python3-venv builds the .deb's venv on Debian's own python3 in tests/test_deb.py).
TEST_DEBS := prometheus systemd iproute2 tcpdump nmap hping3 masscan hydra dsniff iodine \
             openssh-server openssh-client tcpreplay fail2ban curl sshpass python3-venv sqlite3 \
             ncat socat gcc logrotate nftables ncrack medusa rsync ptunnel-ng \
             slowhttptest
# Extra packages only the benchmarks compare against.
BENCH_DEBS := prometheus-node-exporter

# The real Elasticsearch of the tests (tests/es_server/real_node.py): Elastic's test distribution
# from Maven Central, cached in .cache/elasticsearch/ (keep in step with real_node.ES_VERSION).
ES_VERSION := 9.2.0

.PHONY: run test lint typecheck unit bench venv dev-venv debs clean lock test-latest deb es-dist

# Installs come from the committed lock files (exact versions, sha256 hashes: pip --require-hashes);
# pyproject.toml keeps the version ranges for people who install the wheel into their own env.
LOCK     := requirements.txt
DEVLOCK  := requirements-dev.txt
PIP      := $(BIN)/pip install --quiet --disable-pip-version-check
# uv only resolves the lock (make lock / make test-latest); installs use plain pip.
UV_VERSION := 0.13.9
TOOLS    := .tools
UV       := $(TOOLS)/bin/uv
UV_COMPILE = $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
             --no-header pyproject.toml requirements-build.in

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes --no-deps -r $(LOCK)
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(DEVSTAMP): pyproject.toml $(DEVLOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes --no-deps -r $(DEVLOCK)
	$(PIP) --no-deps --no-build-isolation -e .
	touch $(STAMP) $@

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r requirements-tools.txt
	$(UV) --version | grep -q ' $(UV_VERSION)' || { echo "requirements-tools.txt does not pin uv $(UV_VERSION)" >&2; exit 1; }

# Re-resolve both lock files from pyproject.toml's ranges (newest versions that fit).
lock: $(UV)
	$(UV_COMPILE) -o $(LOCK)
	$(UV_COMPILE) --extra dev -o $(DEVLOCK)
	echo 'uv==$(UV_VERSION)' | $(UV) pip compile --quiet --universal --python-version 3.11 \
	  --generate-hashes --no-header - -o requirements-tools.txt
	@echo "lock files re-resolved; review 'git diff $(LOCK) $(DEVLOCK)', run make test, commit"

# The suite against freshly resolved latest versions, in a throwaway venv (.venv-latest), so
# upstream drift is found on purpose instead of by CI. The committed lock is not touched.
test-latest: $(UV)
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	$(UV_COMPILE) --extra dev --upgrade -o .venv-latest/requirements-latest.txt
	.venv-latest/bin/pip install --quiet --require-hashes --no-deps -r .venv-latest/requirements-latest.txt
	.venv-latest/bin/pip install --quiet --no-deps --no-build-isolation -e .
	.venv-latest/bin/ruff check agent tests bench
	.venv-latest/bin/mypy
	.venv-latest/bin/pytest -q

venv: $(STAMP)
dev-venv: $(DEVSTAMP)

run: $(STAMP)
	$(BIN)/vedette run

debs:
	@missing=""; for p in $(TEST_DEBS) $(EXTRA_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages (tests needing them will skip):$$missing"; fi; \
	fi

# On CI a failure to fetch is a failure; elsewhere the real-ES tests then skip, saying why.
es-dist: $(DEVSTAMP)
	@bash tests/es_server/fetch-distribution.sh $(ES_VERSION) $(BIN)/python || { \
	  if [ -n "$${CI:-}" ]; then echo "cannot fetch the Elasticsearch test distribution" >&2; exit 1; fi; \
	  echo "warning: no Elasticsearch test distribution; the real-ES tests will skip" >&2; }

lint: $(DEVSTAMP)
	$(BIN)/ruff check agent tests bench

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

unit: $(DEVSTAMP)
	$(BIN)/pytest -q

test: $(DEVSTAMP) debs es-dist lint typecheck
	$(BIN)/pytest -q

bench: $(DEVSTAMP) es-dist
	$(MAKE) debs EXTRA_DEBS="$(BENCH_DEBS)"
	$(BIN)/python -m bench

# The Debian package (dist/vedette_<version>_<arch>.deb): the agent in its own venv under
# /opt/vedette built from the lock file, unit, sysusers/tmpfiles, conffile, rules, a wheelhouse
# for offline installs. Needs only python3-venv and dpkg-deb (packaging/deb/build.sh).
deb: $(STAMP)
	bash packaging/deb/build.sh

clean:
	rm -rf $(VENV) .venv-latest $(TOOLS) .pytest_cache .mypy_cache .ruff_cache build dist
