# Two commands do all the set-up on a fresh machine:
#   make lab    create .venv, install everything, open the tutorial in JupyterLab
#   make test   create .venv, install everything (and Debian's chromium), run every test
# Override TORCH to pick another wheel, e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: lab test test-fast lint format bench demo screenshots chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU torch first: a bare "torch" requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,dev]"
	touch $@

chromium:
	@command -v chromium >/dev/null || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -q && apt-get install -y -q chromium; }

# The URL Jupyter prints is its default_url: point it at the tutorial, so that opening the
# printed address (from a container or a remote machine, no browser here) opens the notebook.
TUTORIAL := notebooks/01_vanishing_gradients.ipynb
lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOT_FLAG) --LabApp.default_url=/lab/tree/$(TUTORIAL) $(TUTORIAL)

test: $(STAMP) chromium
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

# The edit loop: no browser, no slow tests (about a minute); `make test` runs everything.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not browser and not slow" -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/python -m mypy

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

demo: $(STAMP)
	$(BIN)/python -m gradwidget demo

bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks

# The README's pictures are six of the screenshots the browser tests take.
SHOTS := artifacts/screenshots
screenshots: $(STAMP) chromium
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m browser
	mkdir -p docs/img
	cp $(SHOTS)/lab-panel-training.png docs/img/panel.png
	cp $(SHOTS)/lab-readable-compare.png docs/img/comparison.png
	cp $(SHOTS)/lab-readable-gpt2.png docs/img/gpt2-panel.png
	cp $(SHOTS)/lab-readable-gpt2-dark.png docs/img/gpt2-panel-dark.png
	cp $(SHOTS)/notebook-resnet-managed.png docs/img/resnet-panel.png
	cp $(SHOTS)/lab-autofix.png docs/img/autofix.png

clean:
	rm -rf $(VENV) artifacts .pytest_cache .ruff_cache
