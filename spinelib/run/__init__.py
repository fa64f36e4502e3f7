"""Running the study.

The section notebooks as data (``sections``), a run's parameters (``parameters``), the cache
of section records and the pure decision of what is stale (``state``), the plan of a run
(``plan``), papermill execution in a kernel (``kernel``), ``provenance.json`` (``provenance``),
terminal progress (``progress``) and the short loop that ties them (``pipeline``); the book
(``book``, its generated pages ``book_pages`` and the offline check ``book_offline``);
re-running a finished run and comparing two runs (``repro``, ``compare``); pseudonymised ids
(``privacy``); where the notebook and book sources are (``sources``); and what
``spinelib predict`` writes: one scan's files (``prediction_files``), the scans a cohort source
names (``scan_list``) and the cohort loop (``cohort_prediction``).
"""
