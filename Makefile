# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
# Real model configs and tokenizers come from $FIMLSP_SHARED, ../shared or the Hugging Face cache
# (fimlsp/fixtures.py); `python -m fimlsp.fixtures where` says which.
VENV := .venv/bin

.PHONY: demo test lint setup clean

demo:
	@bash scripts/setup.sh
	$(VENV)/fimlsp demo

test:
	@bash scripts/setup.sh test
	$(VENV)/ruff check fimlsp tests scripts
	$(VENV)/python -m pytest -q -rs -p no:cacheprovider

lint:
	$(VENV)/ruff check fimlsp tests scripts

clean:
	rm -rf .venv .pytest_cache
