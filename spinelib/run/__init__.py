"""Running the study: the section notebooks through papermill (``pipeline``), the book (``book``),
re-running a finished run (``repro``), pseudonymised ids (``privacy``), where the notebook and
book sources are (``sources``) and what ``spinelib predict`` writes (``prediction_files``).
"""
