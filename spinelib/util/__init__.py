"""Plumbing every layer may use: atomic writes (``atomic``), digests (``hashing``), plain-data
records on disk (``records``), the section log a notebook kernel and its workers write to
(``section_log``) and the one fan-out of per-subject work (``workers``).
"""
