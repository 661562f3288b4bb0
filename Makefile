# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
# Real model configs and tokenizers come from $FIMLSP_SHARED, ../shared or the Hugging Face cache
# (fimlsp/tools/fixtures.py); `python -m fimlsp.tools.fixtures where` says which.
VENV := .venv/bin

.PHONY: demo test test-fast lint setup clean

demo:
	@bash scripts/setup.sh
	$(VENV)/fimlsp demo

test:
	@bash scripts/setup.sh test
	$(VENV)/ruff check fimlsp fimlsp_bench tests scripts
	$(VENV)/python -m pytest -q -rs -p no:cacheprovider

# The developer's loop (README "Developing"): everything that does not start a server, an editor or a
# serving engine, or replay a benchmark (the `slow` marker). `make test` runs all of it; CI runs that.
test-fast:
	@bash scripts/setup.sh test
	$(VENV)/ruff check fimlsp fimlsp_bench tests scripts
	$(VENV)/python -m pytest -q -rs -p no:cacheprovider -m "not slow"

lint:
	$(VENV)/ruff check fimlsp fimlsp_bench tests scripts

clean:
	rm -rf .venv .pytest_cache
