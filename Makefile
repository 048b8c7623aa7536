# Two commands do all the set-up on a fresh machine:
#   make demo   install, then super-resolve the bundled offline sample
#   make test   install (with the CPU build of torch and the test services), then run the tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test bench clean

install:
	PYTHON=$(PY) scripts/install.sh demo

install-test:
	PYTHON=$(PY) scripts/install.sh test

demo: install
	$(BIN)/s2sr search --catalog sample --bbox -75.71,37.725,-75.69,37.745 --run --out demo-output --overwrite

test: install-test
	$(BIN)/python -m pytest -q -n 4 --dist loadfile

bench: install-test
	$(BIN)/python bench/cpu_throughput.py

clean:
	rm -rf demo-output build dist *.egg-info
