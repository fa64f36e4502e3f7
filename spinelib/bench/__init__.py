"""Benchmarks: the harness (``harness``) and its entries, per pipeline stage (``stages``,
``synth``, ``align``) and for ``spinelib predict`` (``predict``).
"""
