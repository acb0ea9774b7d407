# The README's make targets. smoke, test, dryrun and gpu-check DEVICE=cpu create .venv on first use
# (pinned versions from pyproject.toml) and need nothing but Python 3.11 and the package index.
#   make smoke [BENCH=<folder>]   one CPU run on synthetic data, checked and timed
#   make test                     the whole test suite
#   make dryrun                   every benchmark x its required runs, packaged and scored (resumable)
#   make gpu-check [DEVICE=cpu]   every benchmark's GPU path and speed in one budgeted call (tools/gpu_check.py);
#                                 on the GPU machine it runs on its own python3 (no venv: it has no network)
BENCH ?= resnet50
VENV ?= .venv
PYTHON ?= python3
DEVICE ?= cuda
GPU_CHECK_OUT ?= results/gpu_check
# torchrec's metadata requires the CUDA fbgemm-gpu; the `dlrm` extra brings FBGEMM's CPU build
# and torchrec's other dependencies, so torchrec itself is installed without its deps.
TORCHREC := torchrec==1.9.2
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: smoke test dryrun gpu-check venv clean

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

gpu-check: $(if $(filter cpu,$(DEVICE)),$(STAMP))
	$(if $(filter cpu,$(DEVICE)),$(VENV)/bin/python,python3) -m tools.gpu_check --device $(DEVICE) \
	    --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf results data
