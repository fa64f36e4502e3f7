"""Plumbing every layer may use: atomic writes (``atomic``), digests (``hashing``), plain-data
records on disk (``records``) and the one fan-out of per-subject work (``workers``).
"""
