# `make demo`: create .venv, install everything, run the MNIST attack demo (figures in results/demo).
# `make test`: the test suite (the command CI runs), in 2 worker processes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test notebooks clean

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements-test.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python demo.py $(DEMO_ARGS)

# Two pytest-xdist workers (CI has 2 cores; tests/conftest.py gives each its share of them); TEST_WORKERS=0 runs
# everything in one process.
TEST_WORKERS ?= 2
# The whole suite on TensorFlow (the default backend), then the backend-sensitive tests (marker `backend`) again on
# Keras' JAX backend; it fails if either fails.
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS); tf=$$?; \
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m backend $(PYTEST_ARGS); jx=$$?; \
	echo "make test: TensorFlow suite exit $$tf, JAX backend suite exit $$jx"; \
	if [ $$tf -ne 0 ]; then exit $$tf; fi; exit $$jx

# Execute every notebook in place (SPLITNN_MODE=full on a GPU machine for the papers' budgets).
notebooks: setup
	$(BIN)/python -m splitnn.run_notebooks

clean:
	rm -rf $(VENV) results .pytest_cache
