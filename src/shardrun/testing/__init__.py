"""Contract suites every provider runs, importable (like fsspec.tests.abstract)."""
