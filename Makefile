# caffe-xent: `make demo` (the main job) and `make test` set everything up on
# a fresh machine. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# CUDA variant: AUTO builds it when nvcc is found; ON forces, OFF skips it.
CAFFE_XENT_CUDA ?= AUTO
export CAFFE_XENT_CUDA
NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
WITH_CUDA := $(if $(filter OFF,$(CAFFE_XENT_CUDA)),,$(if $(filter ON,$(CAFFE_XENT_CUDA)),yes,$(NVCC)))
# Where the caches live is defined once, in scripts/cache-env.sh.
cache_env = $(shell scripts/cache-env.sh $(1))
export CCACHE_DIR := $(call cache_env,CCACHE_DIR)
export CCACHE_BASEDIR := $(call cache_env,CCACHE_BASEDIR)
export CCACHE_MAXSIZE := $(call cache_env,CCACHE_MAXSIZE)
export PATH := $(PATH):/usr/local/cuda/bin
BUILD_DIR := build/cmake
PYTEST_ARGS ?=
# pip-installs groups of pyproject.toml's requirements, where every version is
# pinned (build-system, project or an extra; scripts/requirements.py).
pip_install = $(PY) scripts/requirements.py $(1) | $(PIP) install -q -r /dev/stdin

.PHONY: build test cpp-test py-test demo bench gpu-bundle gpu-bundle-test clean help

help:
	@echo "make demo   set up everything, then train the multi-label demo"
	@echo "make test   set up everything, then run the C++ and Python tests"
	@echo "make build  set up .venv with the custom Caffe (CAFFE_XENT_CUDA=AUTO|ON|OFF)"
	@echo "make bench  benchmarks side by side with the peers (writes docs/benchmarks.md)"
	@echo "make gpu-bundle  the self-contained folder a GPU machine runs (see docs/gpu.md)"

build:
	scripts/setup-system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call pip_install,build-system project test demo)
	$(if $(WITH_CUDA),$(call pip_install,cuda gpu-bundle))
	mkdir -p build
	@echo "building the custom Caffe (log: build/pip-install.log)"
	$(PIP) install -v --no-build-isolation --no-deps . > build/pip-install.log 2>&1 || { tail -n 60 build/pip-install.log; exit 1; }
	$(PY) -c "import caffe, caffe_xent; print('caffe-xent built:', 'CUDA' if caffe_xent._harness.cuda_build() else 'CPU-only')"

cpp-test:
	@# upstream's suites open their test data relative to the source root
	cd $(BUILD_DIR)/caffe-upstream && ../caffe_xent_cpp_tests

py-test:
	$(PY) -m pytest tests $(PYTEST_ARGS)

test: build
	@# PyTorch (CPU) is the reference of the comparison tests; where it cannot
	@# be installed those tests are reported as skipped, with the reason.
	$(call pip_install,torch) || echo "note: $$($(PY) scripts/requirements.py torch) not installable here"
	$(PY) scripts/requirements.py timm-reference | $(PIP) install -q --no-deps -r /dev/stdin || echo "note: $$($(PY) scripts/requirements.py timm-reference) not installable here"
	$(MAKE) --no-print-directory cpp-test py-test

demo: build
	$(PY) examples/multilabel_digits/run_demo.py $(DEMO_ARGS)

bench: build
	$(call pip_install,torch) || echo "note: $$($(PY) scripts/requirements.py torch) not installable here: no PyTorch column"
	scripts/build-pristine.sh
	$(PY) bench/run.py --pristine build/pristine/stage --out docs/benchmarks.md $(BENCH_ARGS)

# The GPU bundle (docs/gpu.md): from the normal CUDA build, one folder a bare
# GPU machine runs with `gpu-bundle/run OUTDIR`.
gpu-bundle: build
	$(if $(WITH_CUDA),,$(error the GPU bundle needs the CUDA variant: nvcc not found or CAFFE_XENT_CUDA=OFF))
	$(PY) scripts/gpu-bundle/make_bundle.py

# Its CPU leg in a scrubbed environment (part of make test where nvcc exists).
gpu-bundle-test:
	$(PY) -m pytest tests/test_gpu_bundle.py $(PYTEST_ARGS)

clean:
	rm -rf build gpu-bundle
