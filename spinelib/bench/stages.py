"""Benchmark entries of the per-subject stages: what one subject costs a worker.

``stage_synth``, ``stage_align_targets``, ``stage_predict`` and ``stage_evaluate_3d`` run
their stage on :data:`N_STAGE_SUBJECTS` subjects of the profile's cohort in the bench's
own process, with one job (the view of one cluster worker), after one untimed warm-up
subject. Each reports, per subject, the wall time (min/median/max over repeats), the
bytes the process read and wrote (``/proc/self/io`` ``rchar``/``wchar``: every file byte,
compressed as stored) and the peak resident memory of the process (imports included: a
worker holds them too). :func:`stage_costs` gathers them into the table the book's
scaling page multiplies out.

Ingestion is not among them: its cost is reading UK Biobank's DICOM zips, which this
project cannot ship (see the scaling page).
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .harness import BenchWorkload
from ..errors import InvalidArgumentError
from ..io.checks import check_integer
from ..profiles import get_profile

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["N_STAGE_SUBJECTS", "STAGE_ENTRIES", "io_bytes", "stage_costs", "scale_up"]

#: Subjects each stage entry processes per repeat.
N_STAGE_SUBJECTS = 4
#: Bench entry -> the stage it measures, in pipeline order.
STAGE_ENTRIES: dict[str, str] = {
    "stage_synth": "synthesis (one subject's DXA and MRI files)",
    "stage_align_targets": "alignment + targets",
    "stage_predict": "cohort prediction (four outputs per scan)",
    "stage_evaluate_3d": "3D evaluation (one model and the ceiling)",
}


def io_bytes() -> tuple[int, int]:
    """Bytes this process has read and written through system calls: ``(rchar, wchar)``.

    ``(0, 0)`` where ``/proc/self/io`` does not exist (not Linux).
    """
    try:
        with open("/proc/self/io") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return int(fields["rchar"]), int(fields["wchar"])
    except (OSError, KeyError, ValueError):
        return 0, 0


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _stage_workload(workdir: Path, profile: str, name: str,
                    setup: Callable[[Path, dict, int], Callable[[int], None]]) -> BenchWorkload:
    """A workload running ``setup``'s stage function on subjects 1..N (0 warms up)."""
    params = get_profile(profile)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stage = setup(workdir, params, N_STAGE_SUBJECTS + 1)
    stage(0)  # warm-up: imports, model load, first-call caches
    read, written, repeat = [], [], [0]

    def run() -> int:
        repeat[0] += 1
        r0, w0 = io_bytes()
        for i in range(1, N_STAGE_SUBJECTS + 1):
            stage(i)
        r1, w1 = io_bytes()
        read.append((r1 - r0) / N_STAGE_SUBJECTS / 2**20)
        written.append((w1 - w0) / N_STAGE_SUBJECTS / 2**20)
        return N_STAGE_SUBJECTS

    extra: dict = {"stage": STAGE_ENTRIES[name], "subjects_per_repeat": N_STAGE_SUBJECTS, "jobs": 1}

    def teardown() -> None:
        extra["mib_read_per_subject"] = _summary(read)
        extra["mib_written_per_subject"] = _summary(written)
        shutil.rmtree(workdir, ignore_errors=True)

    def report(entry: dict) -> str:
        s = entry["seconds"]
        n = entry["items"]
        return (f"    per subject {s['median'] / n:.3f} s (min {s['min'] / n:.3f}, max {s['max'] / n:.3f}), "
                f"read {entry['mib_read_per_subject']['median']:.2f} MiB, "
                f"written {entry['mib_written_per_subject']['median']:.2f} MiB")

    return BenchWorkload(run=run, unit="subjects", teardown=teardown, extra=extra, report=report,
                         description=f"{STAGE_ENTRIES[name]}, profile {profile}, one job")


def _cohort(workdir: Path, params: dict, n: int) -> Path:
    from ..synth.cohort import generate_cohort
    from ..synth.config import SynthConfig

    return generate_cohort(workdir / "cohort", SynthConfig.from_profile(params).with_subjects(n), progress=False)


def _synth(workdir: Path, params: dict, n: int) -> Callable[[int], None]:
    from ..synth.cohort import write_subject
    from ..synth.config import SynthConfig

    config = SynthConfig.from_profile(params)
    out = workdir / "cohort"
    out.mkdir(parents=True, exist_ok=True)

    def stage(i: int) -> None:
        folder = out / f"s{i}"
        shutil.rmtree(folder, ignore_errors=True)
        write_subject(folder, i, config)

    return stage


def _rows(workdir: Path, params: dict, n: int) -> list[dict]:
    from ..io import read_manifest

    return [dict(r) for r in read_manifest(_cohort(workdir, params, n)).to_dict(orient="records")]


def _align(workdir: Path, params: dict, n: int) -> Callable[[int], None]:
    from ..study.config import TargetConfig
    from ..study.subject_targets import subject_targets

    rows = _rows(workdir, params, n)
    config = TargetConfig.from_profile(params)

    def stage(i: int) -> None:
        subject_targets(rows[i], config)

    return stage


def _predict(workdir: Path, params: dict, n: int) -> Callable[[int], None]:
    from ..learn.predict import Predictor
    from ..run.prediction_files import read_scan, write_prediction
    from .predict import random_checkpoint

    rows = _rows(workdir, params, n)
    predictor = Predictor.from_checkpoint(random_checkpoint(workdir / "best.pt", params, "resnet_bot"))
    options = dict(allow_pickle=False, pixel_spacing_mm=None, flip_vertical=False, flip_horizontal=False)

    def stage(i: int) -> None:
        pred = predictor.predict(read_scan(rows[i]["dxa_path"], **options))
        write_prediction(pred, workdir / "predictions" / f"s{i}", source="dxa.npz", model="resnet_bot")

    return stage


def _evaluate(workdir: Path, params: dict, n: int) -> Callable[[int], None]:
    from ..evaluate.volume3d import evaluate_subject, subject_job
    from ..io import read_truth
    from ..study.config import TargetConfig
    from ..study.subject_targets import subject_targets
    from ..geometry.transform import PlanarTransform

    jobs = []
    config = TargetConfig.from_profile(params)
    for row in _rows(workdir, params, n):
        _, _, truth = subject_targets(row, config)
        if not truth["has_truth_targets"]:
            raise InvalidArgumentError(f"bench subject {row['subject_id']} has no truth targets: {truth['reason']}")
        true = PlanarTransform.from_dict(read_truth(row["truth_path"])["transform"])
        curves = truth["curves"]
        # the "model" is the target shifted by 3 mm: the scores are computed as for any model
        shifted = curves.values.copy()
        shifted[:2] += 3.0
        jobs.append(subject_job(row["subject_id"], row["seg_path"], row["dxa_path"], true, truth["table_y_mm"],
                                (curves.values, curves.extent_mm), {"model": (shifted, curves.extent_mm)},
                                grid_mm=params["eval_grid_mm"]))
    def stage(i: int) -> None:
        evaluate_subject(jobs[i])

    return stage


def synth_workload(workdir: Path, profile: str) -> BenchWorkload:
    """``stage_synth``: write one subject folder."""
    return _stage_workload(workdir, profile, "stage_synth", _synth)


def align_workload(workdir: Path, profile: str) -> BenchWorkload:
    """``stage_align_targets``: load, align and read the targets (and truth targets) of one subject."""
    return _stage_workload(workdir, profile, "stage_align_targets", _align)


def predict_workload(workdir: Path, profile: str) -> BenchWorkload:
    """``stage_predict``: read one DXA, predict (resnet_bot, random weights) and write the four outputs."""
    return _stage_workload(workdir, profile, "stage_predict", _predict)


def evaluate_workload(workdir: Path, profile: str) -> BenchWorkload:
    """``stage_evaluate_3d``: the 3D scores of one subject for one model and the ceiling."""
    return _stage_workload(workdir, profile, "stage_evaluate_3d", _evaluate)


def stage_costs(results: dict) -> "pd.DataFrame":
    """Per-subject cost of each stage from :func:`spinelib.bench.harness.run_bench` results.

    Parameters
    ----------
    results : the dict ``run_bench`` returns (or its JSON), holding some ``stage_*`` entries.

    Returns
    -------
    DataFrame, one row per stage entry found, in pipeline order: ``entry``, ``stage``,
    ``seconds_median``, ``seconds_min``, ``seconds_max`` (per subject, one job),
    ``mib_read``, ``mib_written`` (per subject, medians), ``peak_rss_mib`` (max).
    """
    import pandas as pd

    entries = (results or {}).get("entries") or {}
    rows = []
    for name in STAGE_ENTRIES:
        e = entries.get(name)
        if e is None:
            continue
        n = max(int(e["items"]), 1)
        rows.append({"entry": name, "stage": e["stage"],
                     **{f"seconds_{k}": float(e["seconds"][k]) / n for k in ("median", "min", "max")},
                     "mib_read": float(e["mib_read_per_subject"]["median"]),
                     "mib_written": float(e["mib_written_per_subject"]["median"]),
                     "peak_rss_mib": float(e["peak_rss_mb"]["max"])})
    if not rows:
        raise InvalidArgumentError(f"no stage entries ({', '.join(STAGE_ENTRIES)}) in the bench results")
    return pd.DataFrame(rows)


def scale_up(costs: "pd.DataFrame", n_subjects: int, *, cores: int, workers: int) -> "pd.DataFrame":
    """What ``n_subjects`` cost at the per-subject figures of :func:`stage_costs`.

    Parameters
    ----------
    costs : :func:`stage_costs`'s table.
    n_subjects : participants to process (each stage once per participant).
    cores : cores of one machine (this one): ``days_one_machine`` runs ``cores`` jobs.
    workers : single-core cluster workers: ``hours_cluster`` runs that many jobs.

    Returns
    -------
    ``costs``' ``entry`` and ``stage`` with ``core_hours`` (median seconds x subjects),
    ``days_one_machine``, ``hours_cluster``, ``tib_read`` and ``tib_written``; a last row
    ``"total"`` sums them. Perfect scaling is assumed: the figures are lower bounds.
    """
    import pandas as pd

    for name, value in (("n_subjects", n_subjects), ("cores", cores), ("workers", workers)):
        check_integer(value, name, 1)
    missing = {"entry", "stage", "seconds_median", "mib_read", "mib_written"} - set(costs.columns)
    if missing:
        raise InvalidArgumentError(f"costs lacks columns {sorted(missing)} (expected stage_costs' table)")
    core_hours = costs["seconds_median"].to_numpy(float) * n_subjects / 3600.0
    out = pd.DataFrame({
        "entry": costs["entry"], "stage": costs["stage"], "core_hours": core_hours,
        "days_one_machine": core_hours / cores / 24.0, "hours_cluster": core_hours / workers,
        "tib_read": costs["mib_read"].to_numpy(float) * n_subjects / 2**20,
        "tib_written": costs["mib_written"].to_numpy(float) * n_subjects / 2**20,
    })
    total = out.drop(columns=["entry", "stage"]).sum().to_dict()
    return pd.concat([out, pd.DataFrame([{"entry": "total", "stage": "all stages", **total}])], ignore_index=True)
