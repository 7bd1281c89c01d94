# `make demo`: create .venv with the runtime requirements only, run the MNIST attack demo (figures in results/demo).
# `make test`: add the test requirements (notebook runner, pytest, PyTorch, JAX, Dask), run the suite (what CI runs).
# `make lab`:  add the notebook requirements and open JupyterLab on notebooks/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# TensorFlow's C++ start-up lines (INFO/WARNING) off, unless the caller set a level
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup setup-notebooks setup-test demo test lab notebooks clean

# One stamp per requirement set: each target installs only what it needs, and a later target adds to the same venv.
$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.notebooks: $(VENV)/.runtime requirements-notebooks.txt
	$(BIN)/python -m pip install -q -r requirements-notebooks.txt
	touch $@

$(VENV)/.test: $(VENV)/.notebooks requirements-test.txt
	$(BIN)/python -m pip install -q -r requirements-test.txt
	touch $@

setup: $(VENV)/.runtime
setup-notebooks: $(VENV)/.notebooks
setup-test: $(VENV)/.test

demo: setup
	$(BIN)/python demo.py $(DEMO_ARGS)

# Two pytest-xdist workers (CI has 2 cores; tests/conftest.py gives each its share of them); TEST_WORKERS=0 runs
# everything in one process.
TEST_WORKERS ?= 2
# The whole suite on TensorFlow (the default backend), then the backend-sensitive tests (marker `backend`) again on
# Keras' JAX backend; it fails if either fails.
test: setup-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS); tf=$$?; \
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m backend $(PYTEST_ARGS); jx=$$?; \
	echo "make test: TensorFlow suite exit $$tf, JAX backend suite exit $$jx"; \
	if [ $$tf -ne 0 ]; then exit $$tf; fi; exit $$jx

lab: setup-notebooks
	$(BIN)/jupyter lab notebooks

# Execute every notebook in place (SPLITNN_MODE=full on a GPU machine for the papers' budgets).
notebooks: setup-notebooks
	$(BIN)/python -m splitnn.run_notebooks

clean:
	rm -rf $(VENV) results .pytest_cache
