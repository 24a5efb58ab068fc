"""Benchmarks: each target of issue 8 measured as medians, with ratios taken in the same run.

Run ``python bench/run.py`` from the repository root; see ``bench/README.md``. Nothing
here is collected by the project's ``pytest`` run (its ``testpaths`` is ``tests``).
"""
