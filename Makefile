# Two commands on a fresh clone; each sets up .venv first (bash setup.sh: skipped when .venv is complete).
#   make all    the workflow's default suite -> results/   (CORES=N, CONFIG=FILE for another suite,
#               SNAKEMAKE_ARGS='...' for more options or targets)
#   make test   the tests (PYTEST_ARGS='-m "not slurm"' leaves out the SLURM tests, which need root)
#   make setup  the set-up alone
CORES ?= $(shell nproc)
CONFIG ?=
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=
PYTHON ?= python3
# What `source .venv/bin/activate` would do for the commands below.
VENV := PATH="$(CURDIR)/.venv/bin:$$PATH" VIRTUAL_ENV="$(CURDIR)/.venv"

.PHONY: all test setup

# --configfile=FILE with `=`: snakemake's --configfile takes every word after it as another config file.
all: setup
	$(VENV) .venv/bin/snakemake --cores $(CORES) $(if $(CONFIG),--configfile=$(CONFIG)) $(SNAKEMAKE_ARGS) all

test: setup
	$(VENV) .venv/bin/python -m pytest --durations=15 $(PYTEST_ARGS)

setup:
	bash setup.sh $(PYTHON)
