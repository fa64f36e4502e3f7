"""A tiny cohort on disk whose coronal curves the image shows (imported by path, not collected).

Used by the tests of the training section: DXA files of a bone column bent sideways, and
targets that follow it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spinelib.io import write_dxa
from spinelib.study.targets import TargetSet


def disk_cohort(folder: Path, n: int, k: int, seed: int = 0) -> tuple[pd.DataFrame, TargetSet]:
    """``n`` DXA files of a bone column bent sideways by a subject's amplitude, and targets
    at ``k`` levels whose coronal centre follows it (sagittal curves unrelated to the image).

    The last 8 subjects are the validation (4) and test (4) splits; returns the manifest
    (``subject_id``, ``dxa_path``) and the targets.
    """
    rng = np.random.default_rng(seed)
    px, h, w = 4.4, 173, 114
    rows_mm, cols_mm = np.arange(h) * px, np.arange(w) * px
    top, bottom = 150.0, 650.0
    levels = top + (np.arange(k) + 0.5) * (bottom - top) / k
    recs, values = [], []
    for i in range(n):
        amp, sag = rng.uniform(-30, 30), rng.uniform(-10, 10)
        centre = lambda r: 250.0 + amp * np.sin(np.pi * (r - top) / (bottom - top))  # noqa: E731
        bone = np.where((rows_mm[:, None] >= top) & (rows_mm[:, None] < bottom)
                        & (np.abs(cols_mm[None, :] - centre(rows_mm)[:, None]) <= 20.0), 1.0, 0.0)
        tissue = np.where((cols_mm[None, :] > 100) & (cols_mm[None, :] < 400), 15.0, 0.0) * np.ones((h, 1))
        path = write_dxa(folder / f"S{i:03d}.npz", bone, tissue, px)
        recs.append({"subject_id": f"S{i:03d}", "dxa_path": str(path)})
        c = centre(levels)
        s = 80.0 + sag * np.sin(np.pi * (levels - top) / (bottom - top))
        values.append(np.stack([c - 20, c, c + 20, s - 15, s, s + 15]))
    split = np.array(["train"] * (n - 8) + ["val"] * 4 + ["test"] * 4)
    vals = np.stack(values)
    ext = np.tile([top, bottom], (n, 1))
    targets = TargetSet(subject_id=np.array([r["subject_id"] for r in recs]), split=split, values=vals,
                        extent_mm=ext, table_y_mm=np.zeros(n), values_true=vals, extent_true_mm=ext)
    return pd.DataFrame(recs), targets
