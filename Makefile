# The README's two commands. Both create .venv on first use (pinned versions
# from pyproject.toml) and need nothing but Python 3.11 and the package index.
#   make smoke [BENCH=<folder>]   one CPU run on synthetic data, checked and timed
#   make test                     the whole test suite
#   make dryrun                   every benchmark x its required runs, packaged and scored (resumable)
BENCH ?= resnet50
VENV ?= .venv
PYTHON ?= python3
# torchrec's metadata requires the CUDA fbgemm-gpu; the `dlrm` extra brings FBGEMM's CPU build
# and torchrec's other dependencies, so torchrec itself is installed without its deps.
TORCHREC := torchrec==1.9.2
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: smoke test dryrun venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[test,dali,dlrm]'
	$(VENV)/bin/python -m pip install --quiet --no-deps $(TORCHREC)
	rm -f $(VENV)/.installed-* && touch $@

smoke: $(STAMP)
	bash common/smoke.sh $(BENCH)

dryrun: $(STAMP)
	$(VENV)/bin/python -m compliance.dryrun $(DRYRUN_ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf results data
