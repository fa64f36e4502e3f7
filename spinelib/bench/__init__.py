"""Benchmarks: the harness (``harness``) and its entries, per pipeline stage (``stages``,
``synth``, ``align``), for ``spinelib predict`` (``predict``) and for training (``train``).
"""
