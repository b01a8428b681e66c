"""The `trainlab` command line (also `python -m trainlab`)."""
