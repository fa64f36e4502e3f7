# The two commands of the README. Both create .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= 2
COHORT ?= results/cohort-default
RUN    ?= results/default
SHIFTED ?= results/cohort-shifted

.PHONY: book test venv browser clean-book

venv: $(STAMP)

# torch/torchvision/timm are pinned together in pyproject.toml; the index's matching
# builds are used, never a stray local wheel of another build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import torch, torchvision, timm; torchvision.ops.nms  # noqa: B018" \
	  || { echo "torch/torchvision/timm do not import together" >&2; exit 1; }
	@touch $(STAMP)

# Debian's Chromium for the browser test of the built book (headless, offline).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing Chromium (Debian package) for the browser test"; \
	    SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The shifted cohort (another seed, scoliosis twice as severe) measures generalisation.
book: $(STAMP)
	$(BIN)/spinelib synth --out $(COHORT) --profile default --jobs $(JOBS)
	$(BIN)/spinelib synth --out $(SHIFTED) --profile default --n 200 --seed 1001 \
	  -p scoliosis_severity 2.0 --jobs $(JOBS)
	$(BIN)/spinelib run --profile default --data $(COHORT)/manifest.csv --out $(RUN) \
	  -p shifted_data $(CURDIR)/$(SHIFTED)/manifest.csv
	$(BIN)/spinelib book --run $(RUN)

test: $(STAMP) browser
	$(BIN)/python -m pytest

clean-book:
	rm -rf book/_build
