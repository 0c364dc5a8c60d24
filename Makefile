# The commands the README gives; each bootstraps uv into .tools/ when missing.
UV := .tools/bin/uv

.PHONY: run test fast-test slow-test style
$(UV):
	python3 -m venv .tools && .tools/bin/pip install -q uv==0.13.8

run: $(UV)
	$(UV) run --locked --no-default-groups marginwatch run

test: $(UV)
	$(UV) run --locked pytest

fast-test: $(UV)
	$(UV) run --locked pytest -m "not slow"

slow-test: $(UV)
	$(UV) run --locked pytest -m slow

style: $(UV)
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked mypy

.PHONY: bench bench-book bench-fetch reliability
bench: $(UV)
	$(UV) run --locked python -m benchmarks.quality
	$(UV) run --locked python -m benchmarks.risk

# Book scale; sizes as options, e.g. make bench-book ARGS="--loans 1000 5000 10000 --symbols 2000 --sessions 2520"
bench-book: $(UV)
	$(UV) run --locked python -m benchmarks.book $(ARGS)

bench-fetch: $(UV)
	$(UV) run --locked python -m benchmarks.fetch $(ARGS)

reliability: $(UV)
	$(UV) run --locked pytest -m reliability
