"""The ``spinelib`` command: a thin layer over the Python API.

Each subcommand parses its arguments and calls one public function; errors of
spinelib (``SpineLibError``) are printed as one clear line with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from .errors import SpineLibError

log = logging.getLogger("spinelib")

#: subcommand name -> (help, add_arguments, handler); handlers import lazily so that
#: ``spinelib --help`` does not pay for torch.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register ``add_arguments`` / handler pair for subcommand ``name``."""

    def deco(add_arguments):
        def bind(handler):
            _COMMANDS[name] = (help, add_arguments, handler)
            return handler

        return bind

    return deco


# --------------------------------------------------------------------------- synth
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="cohort folder to write (created; resumable)")
    p.add_argument("--n", type=int, default=None, help="number of subjects (profile's n_subjects by default)")
    p.add_argument("--seed", type=int, default=None, help="cohort seed (profile's seed by default)")
    p.add_argument("--profile", default="default", help="smoke | default | paper")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override one profile parameter")


@command("synth", "generate a synthetic paired DXA/MRI cohort")(_synth_args)
def _synth(ns: argparse.Namespace) -> int:
    from .profiles import get_profile, parse_override
    from .synth.cohort import generate_cohort

    overrides = {k: parse_override(k, v, profile=ns.profile) for k, v in ns.param}
    if ns.n is not None:
        overrides["n_subjects"] = ns.n
    if ns.seed is not None:
        overrides["seed"] = ns.seed
    params = get_profile(ns.profile, overrides)
    manifest = generate_cohort(ns.out, params, jobs=ns.jobs)
    log.info("cohort written: %s", manifest)
    return 0


# --------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", default=None, help="entry name (repeatable)")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions per entry")
    p.add_argument("--profile", default="default", help="profile whose sizes the workloads use")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--list", action="store_true", help="list the entries and exit")


@command("bench", "run the project's benchmarks")(_bench_args)
def _bench(ns: argparse.Namespace) -> int:
    from .bench import ENTRIES, run_bench

    if ns.list:
        for name in ENTRIES:
            print(name)
        return 0
    run_bench(ns.only, repeat=ns.repeat, profile=ns.profile, out=ns.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinelib",
        description="3D spine shape from a single 2D DXA: the paper's companion, end to end.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spinelib`` console script."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
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
