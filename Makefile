# Vedette — developer entry points. `make run` and `make test` work on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
# Debian packages the test suite drives (promtool, systemd-analyze, attack and lab tools).
TEST_DEBS := prometheus systemd iproute2 tcpdump nmap hping3 masscan hydra dsniff iodine \
             openssh-server openssh-client tcpreplay fail2ban curl sshpass
# Extra packages only the benchmarks compare against.
BENCH_DEBS := prometheus-node-exporter

.PHONY: run test lint typecheck unit bench venv dev-venv debs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

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

lint: $(DEVSTAMP)
	$(BIN)/ruff check agent tests bench

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

unit: $(DEVSTAMP)
	$(BIN)/pytest -q

test: $(DEVSTAMP) debs lint typecheck
	$(BIN)/pytest -q

bench: $(DEVSTAMP)
	$(MAKE) debs EXTRA_DEBS="$(BENCH_DEBS)"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
