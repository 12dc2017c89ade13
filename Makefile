# Developer shortcuts; CI runs .ci/run, which runs the README's test command.
.PHONY: install test lint typecheck snapshots-update bench

install:
	pip install -e '.[test]'

test:
	python -m pytest

lint:
	ruff check backend tui tests
	ruff format --check backend tui tests

typecheck:
	mypy backend tui tests

snapshots-update:
	python -m pytest tests/tui --snapshot-update

bench:
	python tests/bench/bench_pool.py
	python tests/bench/bench_tunnel.py
	python tests/bench/bench_cold_start.py
	python tests/bench/bench_api.py
	python tests/bench/bench_tui.py
	python tests/bench/bench_events.py
	python tests/bench/bench_kubernetes.py
