"""Benchmarks: each reports ratios against an anchor measured in the same run (`python -m bench`)."""
