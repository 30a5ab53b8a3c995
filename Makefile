# Two commands for a newcomer:  `make demo` (train the char LM end to end)  and  `make test`.
# Each does its own set-up first: an isolated .venv with the CPU build of torch, then the package.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned and installed first so the package's torch range adds nothing (no CUDA download
# on a CPU machine). Elsewhere, point pip at PyTorch's CPU wheel index: make TORCH_PIP_ARGS="--index-url URL"
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=
EXTRAS ?= all
STAMP  := $(VENV)/.installed-$(EXTRAS)

.PHONY: setup browser docs demo test test-fast test-floors bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)" numpy 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import torch; print('torch', torch.__version__)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import nl_lightning, lightning; print('nl_lightning', nl_lightning.__version__, 'lightning', lightning.__version__)"
	touch $@

# tests/docs/test_browser.py opens the built docs in a real headless browser: Debian's chromium,
# installed here once (a no-op when CHROMIUM is already on PATH). Elsewhere: make CHROMIUM=/path/to/chrome.
CHROMIUM ?= chromium
browser:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium (the headless browser of the docs check)"; \
	    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	      chromium fonts-dejavu-core) >/tmp/nl-lightning-chromium-install.log 2>&1 \
	    || { tail -20 /tmp/nl-lightning-chromium-install.log; \
	         echo "make browser: apt-get install chromium failed (log above)"; exit 1; }; \
	  else \
	    echo "make browser: '$(CHROMIUM)' is not on PATH and cannot be installed here (apt-get needs root)."; \
	    echo "  Install Chromium or Chrome yourself and pass it: make setup CHROMIUM=/path/to/chromium"; exit 1; \
	  fi; }
	@$(CHROMIUM) --version 2>/dev/null

setup: $(STAMP) browser

demo: $(STAMP)    # the demo needs no browser
	$(BIN)/nl-lightning fit --config configs/char_lm.yaml
	$(BIN)/nl-lightning generate --ckpt_path runs/char_lm --prompt "The " --max_new_tokens 300

# The documentation site into docs/_build/html, from scratch, warnings as errors (docs/_scripts/build.py);
# its notebooks and gallery run small trainings (a few minutes). `make test` builds it too
# (tests/docs/test_site.py, on one pytest worker while the other runs the rest of the suite).
docs: $(STAMP)
	$(BIN)/python docs/_scripts/build.py

# Two pytest workers (pytest-xdist), one test file per worker at a time: the suite is mostly
# single-threaded tiny models, so two processes use both cores of a small CI machine.
PYTEST_WORKERS ?= 2
test: setup
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile
	$(MAKE) test-floors

# The fast suite again on the lowest versions pyproject.toml declares (.ci/floors.py): the core
# dependencies and the FLOORS_EXTRAS pinned to their floors, the other extras resolved around them.
FLOORS_VENV  ?= .venv-floors
FLOORS_EXTRAS := data serve
FLOORS_STAMP := $(FLOORS_VENV)/.installed
$(FLOORS_STAMP): pyproject.toml .ci/floors.py
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)" 2>&1 | grep -v "^WARNING: Location" || true
	$(PYTHON) .ci/floors.py $(FLOORS_EXTRAS) > $(FLOORS_VENV)/floors.txt
	$(FLOORS_VENV)/bin/python -m pip install -q -r $(FLOORS_VENV)/floors.txt 2>&1 | grep -v "^WARNING: Location" || true
	sed 's/\[[^]]*\]//' $(FLOORS_VENV)/floors.txt > $(FLOORS_VENV)/constraints.txt
	$(FLOORS_VENV)/bin/python -m pip install -q -e ".[all]" -c $(FLOORS_VENV)/constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(FLOORS_VENV)/bin/python .ci/floors.py --check $(FLOORS_EXTRAS)
	touch $@

# docs/reliability.md quotes the messages of the current versions (older jsonargparse words some differently).
test-floors: $(FLOORS_STAMP)
	$(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" \
		--deselect tests/test_reliability.py::test_docs_table_is_what_users_see

test-fast: setup
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

bench: setup
	for b in benchmarks/*.py; do case $$b in */_results.py|*/report.py|*/isa_mask.py) continue;; esac; \
		$(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf runs lightning_logs .pytest_cache docs/_build docs/_generated docs/api docs/benchmarks docs/notebooks
