"""Benchmarks: ``python bench/run.py [name] [args...]`` (see ``bench/run.py``)."""
