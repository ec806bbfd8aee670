# Fresh machine: `make search` or `make test`. Both create .venv on first use.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SPACE   ?= dense_additive
# The embedded default: the search's tuned proxy (fashion-10, 600 images a class, 3 epochs, recipe sprint,
# T=1, width 1/4), the paper's 12 seed networks plus 4 sampled ones, the top 3 at 2400 images a class.
# Two single-thread worker processes: 1.21x the trials per hour of one two-thread process on 2 cores (2 repeats: 1.17, 1.25)
# (bench/search_workers.py, bench/results/search_workers.json).
SEARCH_ARGS ?= --trials 16 --promote 3 --workers 2

.PHONY: setup test search data clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST (the embedded default data) and PostgreSQL (scale-out tests) from Debian, when
# missing and the machine allows it; a machine that cannot install them gets one clear line.
data:
	@bash scripts/install_system_deps.sh

test: setup
	$(VPY) -m pytest -q

search: setup
	$(VPY) scripts/search.py --space $(SPACE) $(SEARCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
