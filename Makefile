# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
# FIMLSP_SHARED points at the real model configs and tokenizers (default: ../shared).
export FIMLSP_SHARED ?= $(abspath ../shared)
VENV := .venv/bin

.PHONY: demo test lint setup clean

demo:
	@bash scripts/setup.sh
	$(VENV)/fimlsp demo

test:
	@bash scripts/setup.sh test
	$(VENV)/ruff check fimlsp tests
	$(VENV)/python -m pytest -q -rs -p no:cacheprovider

lint:
	$(VENV)/ruff check fimlsp tests

clean:
	rm -rf .venv .pytest_cache
