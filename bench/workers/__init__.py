"""Entry points of the benchmark's own subprocesses (``python -m bench.workers.<name> '<json>'``)."""
