"""``spinelib bench``: the project's benchmark command.

Each entry runs a real workload several times and reports median, min and max of
wall time, items per second and peak memory, on the terminal and as JSON, with the
machine described. Entries are declared as data (``ENTRIES``: name -> factory path)
so that importing this module stays cheap; every capability adds its own entry.

A factory has the signature ``factory(workdir: Path, profile: str) -> BenchWorkload``:
it does its one-off setup (outside the timing) and returns the callable to time.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InvalidArgumentError

__all__ = ["BenchWorkload", "ENTRIES", "run_bench", "machine_description", "peak_rss_mb"]


@dataclass
class BenchWorkload:
    """What a benchmark entry times.

    Attributes
    ----------
    run : called once per repeat; returns the number of items it processed.
    unit : what an item is ("subjects", "pairs", "images", ...).
    description : one line shown with the results.
    teardown : called once after all repeats.
    extra : figures of the entry beyond the common ones (merged into its results).
    report : a further line for the terminal from the entry's results (e.g. per-subject costs).
    """

    run: Callable[[], int]
    unit: str
    description: str = ""
    teardown: Callable[[], None] | None = None
    extra: dict = field(default_factory=dict)
    report: Callable[[dict], str] | None = None


#: name -> "module:factory". Later capabilities append their own entries here.
ENTRIES: dict[str, str] = {
    "synth_cohort": "spinelib.bench.synth:cohort_workload",
    "align_pair": "spinelib.bench.align:pair_workload",
    "predict_warm_default": "spinelib.bench.predict:warm_default_workload",
    "predict_warm_paper": "spinelib.bench.predict:warm_paper_workload",
    "predict_cold": "spinelib.bench.predict:cold_workload",
    "train_throughput": "spinelib.bench.train:train_throughput_workload",
    "stage_synth": "spinelib.bench.stages:synth_workload",
    "stage_align_targets": "spinelib.bench.stages:align_workload",
    "stage_predict": "spinelib.bench.stages:predict_workload",
    "stage_evaluate_3d": "spinelib.bench.stages:evaluate_workload",
}


def machine_description() -> dict:
    """CPU, core count, memory and software versions of this machine."""
    desc = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    desc["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            desc["memory_gb"] = round(int(fh.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    import numpy

    desc["numpy"] = numpy.__version__
    try:
        import torch

        desc["torch"] = torch.__version__
        desc["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return desc


def _reset_peak_rss() -> bool:
    # Linux lets a process reset its own high-water mark (VmHWM) since 4.0.
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory in MiB of this process (or of its waited-for children)."""
    import resource

    if not children:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def _load(name: str) -> Callable[..., BenchWorkload]:
    if name not in ENTRIES:
        raise InvalidArgumentError(
            f"unknown benchmark {name!r}; available: {', '.join(sorted(ENTRIES))}"
        )
    module, func = ENTRIES[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_bench(
    only: list[str] | None = None,
    *,
    repeat: int = 3,
    profile: str = "default",
    out: str | Path | None = None,
    workdir: str | Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run benchmark entries and return (and optionally write) their results.

    Parameters
    ----------
    only : entry names to run; all when ``None``.
    repeat : timed repetitions per entry (>= 1).
    profile : profile whose sizes the workloads use.
    out : JSON file to write atomically.
    workdir : scratch folder (a temporary one when ``None``).
    """
    if repeat < 1:
        raise InvalidArgumentError(f"repeat must be >= 1, got {repeat}")
    names = list(ENTRIES) if not only else list(only)
    factories = {n: _load(n) for n in names}  # validate every name before any work
    results = {"machine": machine_description(), "profile": profile, "repeat": repeat, "entries": {}}
    with tempfile.TemporaryDirectory(prefix="spinelib-bench-", dir=workdir) as tmp:
        for name, factory in factories.items():
            wl = factory(Path(tmp) / name, profile)
            entry = _entry(wl, *_time(wl, repeat))
            results["entries"][name] = entry
            echo(
                f"{name:<24} {entry['items']:>6} {wl.unit:<10} "
                f"median {entry['seconds']['median']:.3f}s (min {entry['seconds']['min']:.3f}, "
                f"max {entry['seconds']['max']:.3f})  {entry['items_per_second']['median']:.2f} {wl.unit}/s  "
                f"peak {entry['peak_rss_mb']['max']:.0f} MiB"
            )
            if wl.report is not None:
                echo(wl.report(entry))
    if out is not None:
        from ..util.atomic import write_json_atomic

        write_json_atomic(Path(out), results)
        echo(f"wrote {out}")
    return results


def _time(wl: BenchWorkload, repeat: int) -> tuple[list[float], list[int], list[float]]:
    """Run a workload ``repeat`` times, then its teardown: seconds, items and peak MiB of each run."""
    times, items, peaks = [], [], []
    for _ in range(repeat):
        _reset_peak_rss()
        t0 = time.perf_counter()
        n = wl.run()
        times.append(time.perf_counter() - t0)
        items.append(n)
        peaks.append(max(peak_rss_mb(), peak_rss_mb(children=True)))
    if wl.teardown:
        wl.teardown()
    return times, items, peaks


def _entry(wl: BenchWorkload, times: list[float], items: list[int], peaks: list[float]) -> dict:
    """An entry's results: median, min and max of its timings, rates and peaks, and its extras."""
    rates = [n / t for n, t in zip(items, times) if t > 0]
    return {
        "description": wl.description,
        "unit": wl.unit,
        "items": items[0],
        "seconds": {"median": statistics.median(times), "min": min(times), "max": max(times)},
        "per_item_seconds_median": statistics.median(times) / max(items[0], 1),
        "items_per_second": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
        "peak_rss_mb": {"median": statistics.median(peaks), "max": max(peaks)},
        **wl.extra,
    }
