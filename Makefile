# The two commands of the README. Each installs what a fresh machine lacks.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
OUT ?= atomdesc-example.zarr

.PHONY: example test install system-deps

system-deps:  ## gfortran (with OpenMP) from Debian's packages, if missing
	@command -v gfortran >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gfortran; }

install: system-deps
	$(PYTHON) -m pip install --quiet ".[test]"

example: install  ## featurize the bundled example structures
	$(PYTHON) -m atomdesc.cli example -o $(OUT)

test: install  ## the test suite, against the installed package
	$(PYTHON) -m pytest
