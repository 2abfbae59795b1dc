"""pygw benchmarks: `python -m benches <name> --help`."""
