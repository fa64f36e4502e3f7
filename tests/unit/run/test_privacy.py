"""Safe publishing: a real cohort's ids and images stay out of the run folder and the book.

A small cohort copied from the session smoke cohort is made "real": its subjects get ids
that look like a biobank's and no truth files. The alignment, training and curve-accuracy
sections run on it (1 epoch), the book is built, and no raw id may appear anywhere in the
built HTML or the run folder (the private salt aside); with ``show_ids`` they do appear.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest

from spinelib import cli
from spinelib.run.book import BOOK_DIR, build_book
from spinelib.errors import InvalidArgumentError, MissingFileError, UnreadableFileError
from spinelib.run.pipeline import run_pipeline
from spinelib.run.sections import SECTIONS
from spinelib.run.privacy import (
    PRIVATE_DIR,
    SALT_FILE,
    Publication,
    display_ids,
    is_real_cohort,
    publication,
    run_manifest,
    run_salt,
)

# two per split: the smallest cohort that trains (train/val) and evaluates (test); and one more
# whose DXA is missing, so that a failure message quoting a file path under its id is published
PICK = ["S00000", "S00001", "S00002", "S00005", "S00010", "S00018", "S00004", "S00011", "S00013"]
BROKEN = 8
OVERRIDES = {"min_subjects": 3, "epochs": 1, "n_figure_subjects": 1, "n_bootstrap": 50}


def make_real_cohort(smoke_manifest: Path, dest: Path) -> tuple[Path, list[str]]:
    """Copy :data:`PICK` under 7-digit ids (folders named by them), truth paths blanked;
    subject :data:`BROKEN` loses its DXA file."""
    src = Path(smoke_manifest).parent
    man = pd.read_csv(smoke_manifest, dtype=str, keep_default_na=False).set_index("subject_id")
    dest.mkdir(parents=True)
    rows = []
    for i, sid in enumerate(PICK):
        new = str(4812000 + 37 * i)
        shutil.copytree(src / sid, dest / new)
        (dest / new / "truth.json").unlink()
        if i == BROKEN:
            (dest / new / "dxa.npz").unlink()
        r = man.loc[sid]
        rows.append({"subject_id": new, "split": r["split"],
                     **{c: r[c].replace(sid, new) for c in ("dxa_path", "mri_fat_path", "mri_water_path",
                                                             "seg_path")},
                     "truth_path": ""})
    pd.DataFrame(rows).to_csv(dest / "manifest.csv", index=False)
    return dest / "manifest.csv", [r["subject_id"] for r in rows]


def _book(run: Path, where: Path) -> Path:
    book = where / "book"
    shutil.copytree(BOOK_DIR, book, ignore=shutil.ignore_patterns("_build"))
    return build_book(run, book_dir=book, stream=None).parent


def _files_holding(root: Path, needles: list[str], *, skip: str | None = None) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in root.rglob("*"):
        if not f.is_file() or (skip and skip in f.relative_to(root).parts):
            continue
        data = f.read_bytes()
        hits = [n for n in needles if n.encode() in data]
        if hits:
            found[str(f.relative_to(root))] = hits
    return found


@pytest.fixture(scope="module")
def real_cohort(smoke_cohort, tmp_path_factory):
    return make_real_cohort(Path(smoke_cohort), tmp_path_factory.mktemp("real") / "cohort")


@pytest.fixture(scope="module")
def hidden(real_cohort, tmp_path_factory):
    """(run folder, built html folder) of the real cohort with ids hidden (the default)."""
    manifest, _ = real_cohort
    base = tmp_path_factory.mktemp("hidden")
    run = base / "run"
    run_pipeline(run, profile="smoke", data=manifest, table=SECTIONS[:3], overrides=OVERRIDES,
                 stream=None, progress_bar=False)
    return run, _book(run, base)


# --------------------------------------------------------------------------- units
def _rows(ids, truth=True, **extra):
    return pd.DataFrame([{"subject_id": s, "split": "train", "truth_path": f"{s}/truth.json" if truth else "",
                          **extra} for s in ids])


def test_is_real_cohort():
    assert not is_real_cohort(_rows(["a", "b"]))
    assert is_real_cohort(_rows(["a", "b"], truth=False))
    mixed = _rows(["a", "b"])
    mixed.loc[1, "truth_path"] = ""
    assert is_real_cohort(mixed)  # the safe side
    assert is_real_cohort(_rows(["a"], real="TRUE"))
    assert not is_real_cohort(_rows(["a"], real="0"))
    with pytest.raises(InvalidArgumentError):
        is_real_cohort(pd.DataFrame({"id": ["a"]}))


def test_display_ids_are_salted_stable_and_checked():
    salt = bytes(range(32))
    a = display_ids(["1000123", "1000456"], salt=salt)
    assert a == display_ids(["1000123", "1000456"], salt=salt)
    assert a != display_ids(["1000123", "1000456"], salt=bytes(range(1, 33)))
    assert all(d.startswith("P") and len(d) == 13 and "1000" not in d for d in a)
    assert len(set(a)) == 2
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        display_ids(["x"], salt=b"short")


def test_run_salt_is_private_drawn_once_and_checked(tmp_path):
    with pytest.raises(MissingFileError):
        run_salt(tmp_path, create=False)
    s = run_salt(tmp_path)
    path = tmp_path / PRIVATE_DIR / SALT_FILE
    assert len(s) == 32 and run_salt(tmp_path) == s
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert run_salt(tmp_path / "other") != s  # random per run
    path.write_text("not a salt")
    with pytest.raises(UnreadableFileError, match="id salt"):
        run_salt(tmp_path)


def test_publication_scrubs_ids_in_text_and_tables(tmp_path):
    man = _rows(["12", "1234567"], truth=False)
    pub = publication(tmp_path, man)
    assert pub.real and pub.hide_ids and not pub.images
    d12, d7 = pub.display_id("12"), pub.display_id("1234567")
    msg = "load failed: /data/1234567/dxa.npz and 12_seg.nii.gz, not 123 nor A12"
    assert pub.scrub(msg) == f"load failed: /data/{d7}/dxa.npz and {d12}_seg.nii.gz, not 123 nor A12"
    table = pd.DataFrame({"subject_id": ["12"], "reason": ["file /x/12/a"], "score": [0.5]})
    out = pub.scrub_frame(table)
    assert out.loc[0, "subject_id"] == d12 and out.loc[0, "reason"] == f"file /x/{d12}/a"
    assert out.loc[0, "score"] == 0.5 and table.loc[0, "subject_id"] == "12"
    shown = publication(tmp_path, man, show_ids=True, publish_images=True)
    assert shown.display_id("12") == "12" and shown.scrub(msg) == msg and shown.images
    synthetic = publication(tmp_path / "syn", _rows(["S00000"]))
    assert not synthetic.hide_ids and synthetic.images
    assert not (tmp_path / "syn" / PRIVATE_DIR).exists()  # no salt drawn when nothing is hidden
    assert "left out of this book" in Publication(real=True).withheld("Figure 2").data


def test_run_manifest_is_the_one_entry(real_cohort, tmp_path):
    manifest, raw = real_cohort
    m1, pub, dup = run_manifest(tmp_path, manifest)
    m2, _, _ = run_manifest(tmp_path, manifest)
    assert m1["subject_id"].tolist() == m2["subject_id"].tolist()  # stable within a run
    assert not set(m1["subject_id"]) & set(raw) and len(dup) == 0
    assert (m1["truth_path"] == "").all() and pub.hide_ids
    m3, _, _ = run_manifest(tmp_path / "another", manifest)
    assert not set(m3["subject_id"]) & set(m1["subject_id"])  # another run, another salt


def test_cli_flags_become_run_parameters(monkeypatch, tmp_path):
    import spinelib.run.pipeline as pipeline

    seen = {}

    def fake(run_dir, **kw):
        seen.update(kw)
        return pipeline.RunResult(run_dir=Path(run_dir), params={})

    monkeypatch.setattr(pipeline, "run_pipeline", fake)
    args = ["run", "--out", str(tmp_path / "r"), "--profile", "smoke", "--data", "m.csv"]
    assert cli.main(args + ["--show-ids", "--publish-images"]) == 0
    assert seen["overrides"] == {"show_ids": True, "publish_images": True}
    assert cli.main(args) == 0
    assert seen["overrides"] == {}


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_no_raw_id_in_the_book_or_the_run_folder(hidden, real_cohort):
    run, html = hidden
    _, raw = real_cohort
    assert (html / "notebooks" / "03_curve_accuracy_2d.html").is_file()
    assert _files_holding(html, raw) == {}
    assert _files_holding(run, raw, skip=PRIVATE_DIR) == {}
    # the run does name subjects, by their display ids, consistently
    align = pd.read_csv(run / "tables" / "alignment.csv", dtype=str)
    per_subject = pd.read_csv(run / "tables" / "curve_errors_per_subject.csv", dtype=str)
    assert len(align) == len(raw) and align["subject_id"].str.fullmatch(r"P[0-9a-f]{12}").all()
    assert set(per_subject["subject_id"]) <= set(align["subject_id"])
    bad = pd.read_csv(run / "tables" / "bad_subjects.csv", dtype=str)
    # the one unreadable DXA; smoke's coarse grid may also reject a genuine pair or two
    assert set(bad["stage"]) <= {"load", "alignment"}
    load = bad[bad["stage"] == "load"].reset_index(drop=True)
    assert len(load) == 1
    hashed = load.loc[0, "subject_id"]
    assert f"/{hashed}/dxa.npz" in load.loc[0, "reason"]  # the path is published hashed too
    assert hashed in (html / "notebooks" / "01_alignment.html").read_text()


@pytest.mark.slow
def test_salt_stays_private(hidden):
    run, html = hidden
    salt = (run / PRIVATE_DIR / SALT_FILE).read_text().strip()
    assert _files_holding(html, [salt, SALT_FILE]) == {}
    assert _files_holding(run, [salt], skip=PRIVATE_DIR) == {}


@pytest.mark.slow
def test_per_subject_images_left_out_with_a_sentence(hidden):
    run, html = hidden
    assert not list((run / "figures").glob("figure2_*.png"))
    assert not list((run / "figures").glob("curves_*.png"))
    for page, n in (("01_alignment", 2), ("03_curve_accuracy_2d", 1)):
        text = (html / "notebooks" / f"{page}.html").read_text()
        assert text.count("left out of this book") == n, page
    text = (html / "notebooks" / "01_alignment.html").read_text()
    assert "Figure 2 is left out of this book" in text


@pytest.mark.slow
def test_show_ids_puts_them_back(real_cohort, tmp_path):
    manifest, raw = real_cohort
    run = tmp_path / "run"
    run_pipeline(run, profile="smoke", data=manifest, table=SECTIONS[:1],
                 overrides={**OVERRIDES, "show_ids": True, "publish_images": True},
                 stream=None, progress_bar=False)
    assert not (run / PRIVATE_DIR).exists()
    align = pd.read_csv(run / "tables" / "alignment.csv", dtype=str)
    assert sorted(align["subject_id"]) == sorted(raw)
    html = _book(run, tmp_path)
    page = (html / "notebooks" / "01_alignment.html").read_text()
    assert raw[BROKEN] in page  # the bad subjects' list names it
    assert "left out of this book" not in page
    assert list((run / "figures").glob("figure2_*.png"))
