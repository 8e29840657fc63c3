"""Benchmarks, kept out of the test suite: `python -m bench <name>` runs bench/<name>.py's main()."""
