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

.PHONY: bench reliability
bench: $(UV)
	$(UV) run --locked python -m benchmarks.quality
	$(UV) run --locked python -m benchmarks.risk

reliability: $(UV)
	$(UV) run --locked pytest -m reliability
