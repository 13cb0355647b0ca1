# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration eval bench clean lock

$(STAMP): pyproject.toml setup.py streams/_avrofast.c detectors/_kernels.c detectors/_join.c detectors/_extraction.c detectors/_input_anomaly.c detectors/_slots.h requirements.lock requirements-build.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-build.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# Byte-compile once at install: with PYTHONDONTWRITEBYTECODE set (as on CI) every worker start would
	@# otherwise recompile its imports (about 1 s); a few files in dependencies are not Python 3, hence || true.
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mlsentry demo

test: $(STAMP)
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit

test-integration: $(STAMP)
	$(PY) -m pytest -q -m integration

# Re-resolve pinned dependencies (with hashes) after changing pyproject.toml.
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements.lock
	$(VENV)/bin/uv pip compile requirements-build.in --generate-hashes --python-version 3.11 -o requirements-build.lock

# Detection-quality evaluation (bench/detection). Peer libraries live in their own venvs because
# their pins clash with ours; if a peer cannot be installed, eval still runs and reports it missing.
PEER_STAMPS := .venv-peers-frouros/.installed .venv-peers-menelaus/.installed

.venv-peers-frouros/.installed:
	( test -x .venv-peers-frouros/bin/python || $(PYTHON) -m venv .venv-peers-frouros ) && \
	.venv-peers-frouros/bin/python -m pip install --quiet --disable-pip-version-check frouros==0.9.0 && \
	touch $@ || echo "frouros peer venv not installed; make eval will report it as missing"

.venv-peers-menelaus/.installed:
	( test -x .venv-peers-menelaus/bin/python || $(PYTHON) -m venv .venv-peers-menelaus ) && \
	.venv-peers-menelaus/bin/python -m pip install --quiet --disable-pip-version-check menelaus==0.2.0 && \
	touch $@ || echo "menelaus peer venv not installed; make eval will report it as missing"

eval: $(STAMP) $(PEER_STAMPS)
	$(PY) -m bench.detection

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis

# Performance: transport ceiling vs worker vs replay, latency, memory, scaling (results in bench/results/).
bench: $(STAMP)
	$(PY) -m bench.perf

# Long reliability runs (not part of `make test`): memory ceiling with a million distinct principals.
.PHONY: soak
soak: $(STAMP)
	$(PY) -m bench.soak.memory 1000000 1536
