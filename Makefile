# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
# Real model configs and tokenizers come from $FIMLSP_SHARED, ../shared or the Hugging Face cache
# (fimlsp/tools/fixtures.py); `python -m fimlsp.tools.fixtures where` says which.
VENV := .venv/bin

.PHONY: demo test lint setup clean

demo:
	@bash scripts/setup.sh
	$(VENV)/fimlsp demo

test:
	@bash scripts/setup.sh test
	$(VENV)/ruff check fimlsp fimlsp_bench tests scripts
	$(VENV)/python -m pytest -q -rs -p no:cacheprovider

lint:
	$(VENV)/ruff check fimlsp fimlsp_bench tests scripts

clean:
	rm -rf .venv .pytest_cache
