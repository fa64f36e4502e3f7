"""The ``spinelib`` command: a thin layer over the Python API.

Each subcommand parses its arguments and calls one public function; errors of
spinelib (``SpineLibError``) are printed as one clear line with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import SpineLibError

log = logging.getLogger("spinelib")

#: subcommand name -> (help, add_arguments, handler); handlers import lazily so that
#: ``spinelib --help`` does not pay for torch.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator: register the handler of subcommand ``name`` with its ``add_arguments``."""

    def bind(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = (help, add_arguments, handler)
        return handler

    return bind


# --------------------------------------------------------------------------- fan-out flags
def _fanout_args(p: argparse.ArgumentParser, *, what: str = "subjects") -> None:
    """``--jobs``, ``--engine``, ``--scheduler`` and ``--shard`` of a per-subject command."""
    g = p.add_argument_group("where the work runs (spinelib.util.workers)")
    g.add_argument("--jobs", type=int, default=1, help="worker processes (or LocalCluster workers with --engine dask)")
    g.add_argument("--engine", choices=("local", "dask"), default=None,
                   help="local processes (default) or a Dask cluster")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://host:8786 (implies --engine dask)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help=f"do only shard I of N of the {what} (0-based; a SLURM array of N tasks covers them once)")


def _param_arg(p: argparse.ArgumentParser, help: str = "override one profile parameter (repeatable)") -> None:
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help=help)


def _run_profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, help="smoke | default | paper (default: the run folder's, else default)")


def _overrides(ns: argparse.Namespace, profile: str | None) -> dict:
    """The ``-p NAME VALUE`` overrides, parsed as ``profile`` types them."""
    from .profiles import parse_override

    return {k: parse_override(k, v, profile=profile) for k, v in ns.param}


def _engine(ns: argparse.Namespace):
    from .util.workers import Engine

    return Engine.from_params({"jobs": ns.jobs, "engine": ns.engine, "scheduler": ns.scheduler})


def _shard(ns: argparse.Namespace):
    from .util.workers import Shard

    return Shard.parse(ns.shard) if ns.shard else None


# --------------------------------------------------------------------------- synth
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="cohort folder to write (created; resumable)")
    p.add_argument("--n", type=int, default=None, help="number of subjects (profile's n_subjects by default)")
    p.add_argument("--seed", type=int, default=None, help="cohort seed (profile's seed by default)")
    p.add_argument("--profile", default="default", help="smoke | default | paper")
    _param_arg(p, help="override one profile parameter")
    _fanout_args(p)


@command("synth", "generate a synthetic paired DXA/MRI cohort", _synth_args)
def _synth(ns: argparse.Namespace) -> int:
    from .profiles import get_profile
    from .synth.cohort import generate_cohort
    from .synth.config import SynthConfig

    overrides = _overrides(ns, ns.profile)
    if ns.n is not None:
        overrides["n_subjects"] = ns.n
    if ns.seed is not None:
        overrides["seed"] = ns.seed
    params = get_profile(ns.profile, overrides)
    manifest = generate_cohort(ns.out, SynthConfig.from_profile(params), jobs=_engine(ns), shard=_shard(ns))
    if manifest is None:
        log.info("shard %s written to %s; the manifest comes with the last shard", ns.shard, ns.out)
    else:
        log.info("cohort written: %s", manifest)
    return 0


# --------------------------------------------------------------------------- ingest
def _ingest_args(p: argparse.ArgumentParser) -> None:
    sources = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    ukb = sources.add_parser("ukb", help="UK Biobank bulk zips: whole-body DXA (field 20158) and Dixon MRI (20201)",
                             description="Turn UK Biobank bulk zips into a cohort folder with manifest.csv "
                                         "(resumable; bad zips are reported and skipped).")
    ukb.add_argument("--dxa-zips", required=True, help="folder of <eid>_20158_<instance>_<array>.zip")
    ukb.add_argument("--mri-zips", required=True, help="folder of <eid>_20201_<instance>_<array>.zip")
    ukb.add_argument("--seg", default=None, metavar="DIR",
                     help="segmentations: DIR/<id>/seg.nii.gz, or TotalSegmentator's DIR/<id>/vertebrae_mr.nii.gz "
                          "and DIR/<id>/total_mr.nii.gz")
    ukb.add_argument("--out", required=True, help="cohort folder to write (created; a rerun resumes)")
    _fanout_args(ukb, what="participant visits (then run once without --shard to write the manifest)")
    ukb.add_argument("--seed", type=int, default=0, help="seed of the participant-level train/val/test split")
    ukb.add_argument("--no-id-check", action="store_true",
                     help="accept DICOM PatientIDs that differ from the eid in the file names")


@command("ingest", "turn real data (UK Biobank bulk zips) into a cohort", _ingest_args)
def _ingest(ns: argparse.Namespace) -> int:
    from .ingest import ingest_ukb

    shard = _shard(ns)
    report = ingest_ukb(ns.dxa_zips, ns.mri_zips, ns.out, seg_dir=ns.seg, jobs=_engine(ns), seed=ns.seed,
                        check_ids=not ns.no_id_check, shard=shard)
    print(report.summary())
    if shard is not None and not shard.is_whole:
        return 0 if report.ingested or not report.failures else 1
    return 0 if report.manifest_path is not None else 1


# --------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", default=None, help="entry name (repeatable)")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions per entry")
    p.add_argument("--profile", default="default", help="profile whose sizes the workloads use")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--list", action="store_true", help="list the entries and exit")


@command("bench", "run the project's benchmarks", _bench_args)
def _bench(ns: argparse.Namespace) -> int:
    from .bench.harness import ENTRIES, run_bench

    if ns.list:
        for name in ENTRIES:
            print(name)
        return 0
    run_bench(ns.only, repeat=ns.repeat, profile=ns.profile, out=ns.out)
    return 0


# --------------------------------------------------------------------------- predict
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dxa", help="a DXA file (dxa.npz, a UK Biobank preprocessing pickle with --allow-pickle, or a "
                               "PNG/TIFF), or a cohort: a folder of DXA files, a text list of paths (.txt) or a "
                               "manifest.csv (column dxa_path)")
    p.add_argument("--checkpoint", required=True,
                   help="trained model (best.pt of a run), or the paper's released state dict")
    p.add_argument("--out", required=True, help="output folder for curves.csv, spine3d.nii.gz, spine3d.html, "
                                                "measures.json (a cohort: one folder per scan, measures.csv, "
                                                "failures.csv)")
    p.add_argument("--pixel-spacing", type=float, nargs="+", default=None, metavar="MM",
                   help="pixel spacing in mm (one value or row col); required for images")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow reading a pickle (runs code from the file: only for files you trust)")
    p.add_argument("--flip-vertical", action="store_true",
                   help="flip the image top-bottom first (a scan stored upside down is refused otherwise)")
    p.add_argument("--flip-horizontal", action="store_true",
                   help="flip the image left-right first (a mirrored scan cannot be detected)")
    p.add_argument("--batch-size", type=int, default=8, help="cohort: scans per forward pass")
    p.add_argument("--no-progress", action="store_true", help="cohort: no progress bar")
    _fanout_args(p, what="scans (cohort)")


def _is_cohort_source(path: str) -> bool:
    from .run.scan_list import COHORT_SUFFIXES

    p = Path(path)
    return p.is_dir() or p.suffix.lower() in COHORT_SUFFIXES


@command("predict", "predict the coronal and sagittal curves and the 3D spine from one DXA or a cohort", _predict_args)
def _predict(ns: argparse.Namespace) -> int:
    from .learn.operating_point import operating_point_path
    from .metrics.clinical import SCOLIOSIS_DEG
    from .run.cohort_prediction import predict_scans
    from .run.prediction_files import predict_file

    flips = dict(flip_vertical=ns.flip_vertical, flip_horizontal=ns.flip_horizontal)
    if _is_cohort_source(ns.dxa):
        # one warm model for the whole cohort; a bad scan is listed, the others go on
        res = predict_scans(ns.dxa, ns.checkpoint, ns.out, allow_pickle=ns.allow_pickle,
                            pixel_spacing_mm=ns.pixel_spacing, batch_size=ns.batch_size,
                            progress=not ns.no_progress, jobs=_engine(ns), shard=_shard(ns), **flips)
        print(res.summary(), file=sys.stderr if res.n_failed else sys.stdout)
        code = 0 if res.n_failed == 0 else 1
    else:
        paths = predict_file(ns.dxa, ns.checkpoint, ns.out, allow_pickle=ns.allow_pickle,
                             pixel_spacing_mm=ns.pixel_spacing, **flips)
        for name, path in paths.items():
            print(f"{name:>9}: {path}")
        code = 0
    point = operating_point_path(ns.checkpoint)
    if not point.is_file():
        print(f"note: no {point.name} beside {ns.checkpoint}: scoliosis is called by the clinical rule "
              f"only (Cobb >= {SCOLIOSIS_DEG:g} deg)", file=sys.stderr)
    return code


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paper_checkpoint", help="the paper's released state dict (epoch-996-...pt)")
    p.add_argument("--out", required=True, help="spinelib checkpoint to write (for spinelib predict --checkpoint)")


@command("convert-paper-checkpoint",
         "convert the paper's released RegressionModel_Transformer weights into a spinelib checkpoint", _convert_args)
def _convert(ns: argparse.Namespace) -> int:
    from .learn.paper_checkpoint import convert_paper_checkpoint

    print(convert_paper_checkpoint(ns.paper_checkpoint, ns.out))
    return 0


# --------------------------------------------------------------------------- align
def _run_overrides(ns: argparse.Namespace, run_dir: Path) -> dict:
    """The ``-p NAME VALUE`` overrides of a run folder's command, typed by the profile it runs."""
    from .run.parameters import run_profile

    return _overrides(ns, run_profile(run_dir, ns.profile))


def _align_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder whose alignment section will read the results")
    p.add_argument("--data", required=True, help="manifest.csv of the cohort")
    _run_profile_arg(p)
    _param_arg(p)
    _fanout_args(p)


@command("align", "align every subject and read its targets into the run's cache "
                  "(the alignment section's per-subject half; shardable)", _align_args)
def _align(ns: argparse.Namespace) -> int:
    from .run.steps import align_step

    run_dir = Path(ns.run)
    print(align_step(run_dir, profile=ns.profile, data=ns.data, overrides=_run_overrides(ns, run_dir),
                     jobs=_engine(ns), shard=_shard(ns)))
    return 0


# --------------------------------------------------------------------------- train
def _train_args(p: argparse.ArgumentParser) -> None:
    # --run-dir: under torchrun, whose own parser takes "--run" for an abbreviation of its --run-path
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run folder holding targets.npz (written by the alignment section); "
                        "spell it --run-dir under torchrun")
    p.add_argument("--data", required=True, help="manifest.csv of the cohort the targets belong to")
    p.add_argument("--models", default=None,
                   help="comma-separated models to train (default: every trained model of spinelib.learn.config."
                        "TRAINED_MODELS; mean_shape and visible_summaries are always fitted)")
    _run_profile_arg(p)
    _param_arg(p)


@command("train", "train the models on a run's targets (works under torchrun for DDP)", _train_args)
def _train(ns: argparse.Namespace) -> int:
    from .errors import InvalidArgumentError
    from .run.steps import train_step

    if int(os.environ.get("RANK", "0")) != 0:  # one voice: the other ranks report problems only
        logging.getLogger().setLevel(logging.WARNING)
    run_dir = Path(ns.run)
    names = None if ns.models is None else [n.strip() for n in ns.models.split(",") if n.strip()]
    if names == []:
        raise InvalidArgumentError(f"--models {ns.models!r} names no model")
    summary = train_step(run_dir, names=names, profile=ns.profile, data=ns.data,
                         overrides=_run_overrides(ns, run_dir))
    if summary is not None:
        print(summary.to_string(index=False))
    return 0


# --------------------------------------------------------------------------- run
def _run_args(p: argparse.ArgumentParser) -> None:
    from .run.sections import SECTION_NAMES

    _run_profile_arg(p)
    p.add_argument("--data", default=None,
                   help="manifest.csv of the cohort (default: the run folder's previous one)")
    p.add_argument("--out", default=None,
                   help="run folder (default: results/<profile>)")
    p.add_argument("--sections", default=None,
                   help="comma-separated sections to run, in order: " + ",".join(SECTION_NAMES)
                   + " (later sections re-run when these do; default: all)")
    _param_arg(p)
    p.add_argument("--force", action="store_true",
                   help="execute the selected sections even when up to date")
    p.add_argument("--show-ids", action="store_true",
                   help="real cohorts: show participants' ids in the run and the book "
                        "(default: salted hashes; run parameter show_ids)")
    p.add_argument("--publish-images", action="store_true",
                   help="real cohorts: put per-subject images in the book (run parameter publish_images)")
    p.add_argument("--check", default=None, metavar="RUN_DIR",
                   help="re-run the finished run RUN_DIR from what it recorded (profile, data, "
                        "parameters) into --out (default RUN_DIR-check) and report every number of "
                        "metrics.json and tables/ that differs; exit status 1 when any does")
    p.add_argument("--rtol", type=float, default=0.0,
                   help="with --check: relative tolerance of the comparison (default 0: exact)")


@command("run", "run the paper's notebooks (papermill) into a run folder", _run_args)
def _run(ns: argparse.Namespace) -> int:
    from .run.parameters import run_profile
    from .run.pipeline import run_pipeline

    if ns.check is not None:
        return _run_check(ns)
    out = Path(ns.out) if ns.out else Path("results") / (ns.profile or "default")
    overrides = _overrides(ns, run_profile(out, ns.profile))
    for flag in ("show_ids", "publish_images"):  # --show-ids is -p show_ids true, spelled out
        if getattr(ns, flag, False):
            overrides[flag] = True
    result = run_pipeline(out, profile=ns.profile, data=ns.data, overrides=overrides,
                          sections=ns.sections, force=ns.force)
    print(result.run_dir)
    return 0


def _run_check(ns: argparse.Namespace) -> int:
    from .errors import InvalidArgumentError
    from .run.compare import CHECK_REPORT
    from .run.repro import check_run

    # a check repeats what the run recorded: options that would change it are refused
    changed = [opt for opt, v in (("--profile", ns.profile), ("--data", ns.data), ("-p", ns.param),
                                  ("--force", ns.force)) if v]
    if changed:
        raise InvalidArgumentError(f"--check repeats the recorded run; {changed[0]} cannot be combined with it")
    report = check_run(ns.check, out=ns.out, rtol=ns.rtol, sections=ns.sections)
    print(report.summary())
    print(f"report: {report.run_b}/{CHECK_REPORT}")
    return 0 if report.ok else 1


# --------------------------------------------------------------------------- book
def _book_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="results/default", help="run folder written by `spinelib run`")
    p.add_argument("--strict", action="store_true", help="treat Sphinx warnings as errors")


@command("book", "build the Jupyter Book (offline HTML) of a run", _book_args)
def _book(ns: argparse.Namespace) -> int:
    from .run.book import build_book

    index = build_book(ns.run, strict=ns.strict)
    print(index)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinelib", description="3D spine shape from a single 2D DXA: the paper's companion, end to end.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spinelib`` console script."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    handler = _COMMANDS[ns.command][2]
    try:
        return handler(ns)
    except SpineLibError as exc:
        print(f"spinelib {ns.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spinelib {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
