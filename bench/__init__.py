"""Accuracy and speed benchmarks of the judge against its peers (not part of the test suite).

`python -m bench.run CORPUS` replays a corpus; see docs/benchmarks.md.
"""
