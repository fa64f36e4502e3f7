"""spinelib.learn.predict and `spinelib predict`: one DXA in, curves / 3D spine / measures out.

Everything is built here (a smoke subject written with write_dxa, checkpoints fitted or
drawn in the test), so the tests need no run folder.
"""

from __future__ import annotations

import json
import pickle

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spinelib import cli
from spinelib.shape.curves import to_crop
from spinelib.learn.data import prepare_scan
from spinelib.errors import (
    CheckpointError,
    InvalidArgumentError,
    MissingFileError,
    UnreadableFileError,
    UnsafeLoadError,
)
from spinelib.io import read_dxa, write_dxa
from spinelib.metrics import clinical_measures
from spinelib.learn.checkpoint import CorruptCheckpointError, MissingCheckpointError, save_checkpoint
from spinelib.learn.config import config_from_profile
from spinelib.learn.networks import build_model
from spinelib.learn.operating_point import OperatingPoint, scoliosis_calls, write_operating_point
from spinelib.learn.predict import Predictor, frame_to_ras_affine
from spinelib.learn.sanity import MAX_FOV_MM, MIN_SPINE_FOV_MM
from spinelib.run.prediction_files import predict_file
from spinelib.bench.predict import random_checkpoint, synthetic_examples, write_synthetic_dxa
from spinelib.profiles import get_profile
from spinelib.shape.reconstruct import Grid3D
from spinelib.spine import CURVE_NAMES

PARAMS = get_profile("smoke")
OUTPUTS = ("curves.csv", "spine3d.nii.gz", "spine3d.html", "measures.json")


@pytest.fixture(scope="module")
def subject():
    """Smoke subject 0: its DXA (with lateral view) and its true curves."""
    dxas, curves = synthetic_examples(1, PARAMS)
    return dxas[0], curves[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory, subject):
    """dxa.npz of subject 0, and a mean_shape checkpoint whose mean IS subject 0's target."""
    d = tmp_path_factory.mktemp("predict")
    dxa_path = write_synthetic_dxa(d / "dxa.npz", PARAMS, index=0)
    dxa, truth = subject
    scan = prepare_scan(read_dxa(dxa_path), pixel_mm=PARAMS["crop_pixel_mm"], image_size=PARAMS["image_size"])
    cfg = config_from_profile(PARAMS, "mean_shape")
    model = build_model(cfg).fit(to_crop(truth, scan.crop)[None])
    ckpt = save_checkpoint(d / "mean.pt", model, cfg, {"crop_pixel_mm": PARAMS["crop_pixel_mm"]})
    bot = random_checkpoint(d / "bot.pt", PARAMS, "resnet_bot")
    return {"dir": d, "dxa": dxa_path, "mean": ckpt, "bot": bot, "crop": scan.crop}


def run_cli(*args) -> int:
    return cli.main(["predict", *map(str, args)])


# ----------------------------------------------------------------------------- known answers


def test_mean_shape_of_the_subject_predicts_its_true_curves(files, subject):
    # the crop is found from the image alone, the same way at fit and at predict time, so a
    # model that outputs this subject's own normalised target must give back its curves in mm
    _, truth = subject
    pred = Predictor.from_checkpoint(files["mean"]).predict(read_dxa(files["dxa"]))
    np.testing.assert_allclose(pred.curves.values, truth.values, atol=1e-3)
    np.testing.assert_allclose(pred.curves.extent_mm, truth.extent_mm, atol=1e-3)
    assert pred.crop == files["crop"]
    assert pred.measures == {**clinical_measures(pred.curves), **scoliosis_calls(pred.measures["cobb_deg"], None)}


def test_cli_writes_the_four_outputs(files, subject, tmp_path):
    _, truth = subject
    out = tmp_path / "out"
    assert run_cli(files["dxa"], "--checkpoint", files["mean"], "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)

    table = pd.read_csv(out / "curves.csv")
    assert list(table.columns) == ["level", "level_row_mm", *CURVE_NAMES]
    assert len(table) == PARAMS["n_levels"]
    np.testing.assert_allclose(table[list(CURVE_NAMES)].to_numpy().T, truth.values, atol=1e-3)
    np.testing.assert_allclose(table["level_row_mm"], truth.levels_mm, atol=1e-3)

    img = nib.load(out / "spine3d.nii.gz")
    mask = np.asarray(img.dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    # RAS+: superior (row 0) has the largest z, the patient's right (col 0) the largest x
    ijk = np.argwhere(mask)
    xyz = nib.affines.apply_affine(img.affine, ijk)
    top, bottom = xyz[:, 2].max(), xyz[:, 2].min()
    assert top - bottom == pytest.approx(truth.extent_mm[1] - truth.extent_mm[0], abs=4.0)
    # the mask's volume is that of the elliptic slabs: sum_k pi a_k b_k h
    v = truth.values
    expected = np.sum(np.pi * (v[2] - v[0]) / 2 * (v[5] - v[3]) / 2) * truth.level_height_mm
    got = mask.sum() * np.prod(img.header.get_zooms())
    assert got == pytest.approx(expected, rel=0.15)

    html = (out / "spine3d.html").read_text()
    assert len(html) > 1_000_000 and "plotly" in html.lower()  # plotly.js is inside
    assert 'src="http' not in html and "cdn.plot.ly" not in html.split("<script")[0]

    m = json.loads((out / "measures.json").read_text())
    assert "mirror" not in m["model"]
    for key in ("cobb_deg", "kyphosis_deg", "lordosis_deg", "apex_level_index"):
        assert np.isfinite(m[key])
    assert m["n_levels"] == PARAMS["n_levels"] and m["spine_length_mm"] > 0


def test_png_with_spacing_and_pickle_with_opt_in(files, tmp_path, subject):
    from PIL import Image

    dxa, _ = subject
    tif = tmp_path / "dxa.tif"  # float32 grey: calibrated values survive
    Image.fromarray(dxa.bone.astype(np.float32)).save(tif)
    assert run_cli(tif, "--checkpoint", files["bot"], "--out", tmp_path / "a",
                   "--pixel-spacing", *dxa.pixel_spacing_mm) == 0
    # the record says how the model was read: this network learnt mirrored crops, the mean shape did not
    assert json.loads((tmp_path / "a" / "measures.json").read_text())["model"].endswith("read with mirror averaging")
    png = tmp_path / "dxa.png"
    Image.fromarray((np.clip(dxa.bone, 0, 2.5) * 100).astype(np.uint8)).save(png)
    assert run_cli(png, "--checkpoint", files["mean"], "--out", tmp_path / "c",
                   "--pixel-spacing", *dxa.pixel_spacing_mm) == 0
    pkl = tmp_path / "dxa.pkl"
    pkl.write_bytes(pickle.dumps({"bone": dxa.bone, "tissue": dxa.tissue, "pixel_spacing": dxa.pixel_spacing_mm}))
    paths = predict_file(pkl, files["mean"], tmp_path / "b", allow_pickle=True)
    assert all(p.is_file() for p in paths.values())


def test_prediction_far_outside_the_crop_is_refused(files, tmp_path, subject):
    # an uncalibrated 16-bit image is ~10^4 times brighter than the g/cm^2 the model knows
    dxa, _ = subject
    bright = write_dxa(tmp_path / "bright.npz", dxa.bone * 1e4, dxa.tissue * 1e4, dxa.pixel_spacing_mm)
    with pytest.raises(InvalidArgumentError, match="outside the crop"):
        predict_file(bright, files["bot"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_channels_last_predictor_matches_the_plain_network(files):
    loaded = Predictor.from_checkpoint(files["bot"])
    pred = Predictor(loaded.model, loaded.config, pixel_mm=loaded.pixel_mm)  # one reading, no mirror
    crop = np.random.default_rng(0).random((2, *PARAMS["image_size"]), dtype=np.float32)
    plain = build_model(pred.config)
    plain.load_state_dict(pred.model.state_dict())
    with torch.no_grad():
        ref = plain.eval()(torch.from_numpy(crop)[None])[0].double().numpy()
    np.testing.assert_allclose(pred.forward(crop), ref, atol=1e-5)
    np.testing.assert_array_equal(pred.forward(crop), pred.forward(crop))  # deterministic


def test_without_reconstruction_the_mask_is_a_single_empty_voxel(files):
    pred = Predictor.from_checkpoint(files["mean"]).predict(read_dxa(files["dxa"]), reconstruct=False)
    assert pred.mask.shape == (1, 1, 1) and not pred.mask.any()


@settings(max_examples=30, deadline=None)
@given(origin=st.lists(st.floats(-500, 500), min_size=3, max_size=3),
       spacing=st.lists(st.floats(0.5, 5), min_size=3, max_size=3),
       ijk=st.lists(st.integers(0, 50), min_size=3, max_size=3))
def test_frame_to_ras_affine_maps_row_col_depth_to_minus_z_minus_x_y(origin, spacing, ijk):
    grid = Grid3D(tuple(origin), tuple(spacing), (51, 51, 51))
    row, col, depth = np.asarray(origin) + np.asarray(ijk) * np.asarray(spacing)
    xyz = frame_to_ras_affine(grid) @ np.array([*ijk, 1.0])
    np.testing.assert_allclose(xyz[:3], [-col, depth, -row], atol=1e-9)


# ----------------------------------------------------------------------------- bad checkpoints


def test_missing_checkpoint(files, tmp_path):
    with pytest.raises(MissingCheckpointError, match="does not exist"):
        predict_file(files["dxa"], tmp_path / "nope.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_random_bytes_checkpoint(files, tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CorruptCheckpointError, match="corrupt"):
        predict_file(files["dxa"], bad, tmp_path / "out")
    assert run_cli(files["dxa"], "--checkpoint", bad, "--out", tmp_path / "out") == 2
    assert not (tmp_path / "out").exists()


def test_bare_state_dict_is_not_a_checkpoint(files, tmp_path):
    bad = tmp_path / "weights.pt"
    torch.save(build_model(config_from_profile(PARAMS, "resnet")).state_dict(), bad)
    with pytest.raises(CorruptCheckpointError, match="not a spinelib model checkpoint"):
        Predictor.from_checkpoint(bad)


def test_weights_of_another_configuration(files, tmp_path):
    # a checkpoint whose stored configuration (K) does not fit its weights
    payload = torch.load(files["bot"], weights_only=True)
    payload["config"]["n_levels"] = PARAMS["n_levels"] + 1
    bad = tmp_path / "other.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        Predictor.from_checkpoint(bad)


def test_checkpoint_without_crop_pixel_size(tmp_path):
    cfg = config_from_profile(PARAMS, "resnet")
    ckpt = save_checkpoint(tmp_path / "x.pt", build_model(cfg), cfg, {"epoch": 3})
    with pytest.raises(CheckpointError, match="crop pixel size"):
        Predictor.from_checkpoint(ckpt)
    ckpt = save_checkpoint(tmp_path / "y.pt", build_model(cfg), cfg, {"crop_pixel_mm": -1.0})
    with pytest.raises(CheckpointError, match="invalid crop pixel size"):
        Predictor.from_checkpoint(ckpt)


def test_checkpoint_carries_its_input_scaling(files, tmp_path):
    from spinelib.learn.data import INPUT_SCALE
    from spinelib.learn.recipe import input_recipe

    extra = torch.load(files["bot"], weights_only=True)["extra"]
    assert extra["input_recipe"] == "spinelib" and extra["crop_pixel_mm"] == PARAMS["crop_pixel_mm"]
    assert {k: float(v) for k, v in extra["input_scale"].items()} == INPUT_SCALE
    cfg = config_from_profile(PARAMS, "resnet")
    other = {**input_recipe(PARAMS["crop_pixel_mm"]), "input_scale": {"bone": 1.0, "tissue": 40.0}}
    ckpt = save_checkpoint(tmp_path / "scaled.pt", build_model(cfg), cfg, other)
    with pytest.raises(CheckpointError, match="scaled by"):
        Predictor.from_checkpoint(ckpt)
    # a checkpoint from before the scaling was recorded is read with today's
    old = save_checkpoint(tmp_path / "old.pt", build_model(cfg), cfg, {"crop_pixel_mm": PARAMS["crop_pixel_mm"]})
    assert Predictor.from_checkpoint(old).input_recipe == "spinelib"
    with pytest.raises(InvalidArgumentError, match="pixel_mm"):
        input_recipe(0.0)


def test_biplanar_checkpoint_needs_a_lateral_view(files, tmp_path, subject):
    dxa, _ = subject
    ckpt = random_checkpoint(tmp_path / "bi.pt", PARAMS, "biplanar")
    ap_only = write_dxa(tmp_path / "ap.npz", dxa.bone, dxa.tissue, dxa.pixel_spacing_mm)
    with pytest.raises(InvalidArgumentError, match="lateral"):
        predict_file(ap_only, ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # with the lateral view it runs (random weights: the shape, not the quality, is checked)
    pred = Predictor.from_checkpoint(ckpt).predict(read_dxa(files["dxa"]))
    assert pred.curves.values.shape == (6, PARAMS["n_levels"]) and pred.mask.shape == tuple(pred.grid.shape)


# ----------------------------------------------------------------------------- bad DXA files


def test_text_file_is_not_a_dxa(files, tmp_path):
    for name in ("notes.txt", "dxa.npz", "dxa.png"):
        bad = tmp_path / name
        bad.write_text("this is not an image\n")
        with pytest.raises(UnreadableFileError):
            predict_file(bad, files["mean"], tmp_path / "out", pixel_spacing_mm=2.0)
    assert not (tmp_path / "out").exists()


def test_nifti_is_not_a_dxa(files, tmp_path):
    from spinelib.io import write_nifti

    vol = write_nifti(tmp_path / "seg.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    with pytest.raises(UnreadableFileError, match="not a DXA"):
        predict_file(vol, files["mean"], tmp_path / "out")
    assert run_cli(vol, "--checkpoint", files["mean"], "--out", tmp_path / "out") == 2


def test_missing_dxa_file(files, tmp_path):
    with pytest.raises(MissingFileError):
        predict_file(tmp_path / "none.npz", files["mean"], tmp_path / "out")


def test_png_without_pixel_spacing(files, tmp_path, subject, capsys):
    from PIL import Image

    png = tmp_path / "dxa.png"
    Image.fromarray((subject[0].bone * 100).astype(np.uint8)).save(png)
    assert run_cli(png, "--checkpoint", files["mean"], "--out", tmp_path / "out") == 2
    assert "pixel spacing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_implausible_pixel_spacing(files, tmp_path, subject):
    from PIL import Image

    png = tmp_path / "dxa.png"
    Image.fromarray((subject[0].bone * 100).astype(np.uint8)).save(png)
    rows = subject[0].bone.shape[0]
    small = 0.9 * MIN_SPINE_FOV_MM / rows  # a field of view too short for T1-L5
    with pytest.raises(InvalidArgumentError, match="field of view"):
        predict_file(png, files["mean"], tmp_path / "out", pixel_spacing_mm=small)
    with pytest.raises(InvalidArgumentError, match="plausible"):
        predict_file(png, files["mean"], tmp_path / "out", pixel_spacing_mm=0.05)
    tall = np.zeros((int(MAX_FOV_MM / 8) + 10, 50), np.float32)
    big = write_dxa(tmp_path / "tall.npz", tall, tall, 8.0)
    with pytest.raises(InvalidArgumentError, match="larger than any DXA"):
        predict_file(big, files["mean"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pickle_needs_opt_in(files, tmp_path, subject):
    pkl = tmp_path / "dxa.pkl"
    pkl.write_bytes(pickle.dumps({"bone": subject[0].bone, "tissue": subject[0].tissue, "pixel_spacing": 4.4}))
    with pytest.raises(UnsafeLoadError, match="allow_pickle"):
        predict_file(pkl, files["mean"], tmp_path / "out")
    assert run_cli(pkl, "--checkpoint", files["mean"], "--out", tmp_path / "out") == 2
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- bad arguments


def test_predictor_arguments(files):
    model = build_model(config_from_profile(PARAMS, "resnet"))
    cfg = config_from_profile(PARAMS, "resnet")
    with pytest.raises(InvalidArgumentError, match="pixel_mm"):
        Predictor(model, cfg, pixel_mm=0.0)
    with pytest.raises(InvalidArgumentError, match="grid_mm"):
        Predictor(model, cfg, pixel_mm=1.0, grid_mm=float("nan"))
    with pytest.raises(InvalidArgumentError, match="torch.nn.Module"):
        Predictor("model", cfg, pixel_mm=1.0)
    with pytest.raises(InvalidArgumentError, match="ModelConfig"):
        Predictor(model, cfg.to_dict(), pixel_mm=1.0)
    with pytest.raises(InvalidArgumentError, match="num_threads"):
        Predictor(model, cfg, pixel_mm=1.0, num_threads=0)
    with pytest.raises(InvalidArgumentError, match="DXAImage"):
        Predictor(model, cfg, pixel_mm=1.0).predict(np.zeros((100, 50)))


# ----------------------------------------------------------------------------- benchmarks


# ----------------------------------------------------------------------------- input sanity (issue 12)


def _grey_png(path, dxa):
    from PIL import Image

    Image.fromarray((np.clip(dxa.bone, 0, 2.5) * 100).astype(np.uint8)).save(path)
    return path


def test_png_with_one_or_two_spacing_values(files, tmp_path, subject):
    dxa, _ = subject
    png = _grey_png(tmp_path / "my_scan.png", dxa)
    sp = float(dxa.pixel_spacing_mm[0])
    # the documented form: one value (argparse hands over a list of one)
    assert run_cli(png, "--checkpoint", files["mean"], "--out", tmp_path / "one", "--pixel-spacing", sp) == 0
    assert run_cli(png, "--checkpoint", files["mean"], "--out", tmp_path / "two", "--pixel-spacing", sp, sp) == 0
    one, two = (pd.read_csv(tmp_path / d / "curves.csv") for d in ("one", "two"))
    pd.testing.assert_frame_equal(one, two)
    assert read_dxa(png, pixel_spacing_mm=[sp]).pixel_spacing_mm.tolist() == [sp, sp]
    with pytest.raises(InvalidArgumentError, match="scalar or"):
        read_dxa(png, pixel_spacing_mm=[sp, sp, sp])


def _flipped(dxa, path):
    return write_dxa(path, dxa.bone[::-1], dxa.tissue[::-1], dxa.pixel_spacing_mm,
                     lateral_bone=dxa.lateral_bone[::-1], lateral_tissue=dxa.lateral_tissue[::-1],
                     lateral_pixel_spacing_mm=dxa.lateral_pixel_spacing_mm)


def test_upside_down_scan_is_refused_and_flip_restores_it(files, tmp_path, subject, capsys):
    from spinelib.learn.orientation import OrientationError

    dxa, truth = subject
    flipped = _flipped(dxa, tmp_path / "flipped.npz")
    with pytest.raises(OrientationError, match="--flip-vertical"):
        predict_file(flipped, files["mean"], tmp_path / "out")
    assert run_cli(flipped, "--checkpoint", files["mean"], "--out", tmp_path / "out") == 2
    assert "upside down" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # flipped back explicitly: the very input of the upright scan, so the same curves, in
    # the head-up frame (row r of that frame is row H - 1 - r of the stored image)
    assert run_cli(flipped, "--checkpoint", files["bot"], "--out", tmp_path / "fixed", "--flip-vertical") == 0
    assert run_cli(files["dxa"], "--checkpoint", files["bot"], "--out", tmp_path / "upright") == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fixed" / "curves.csv"),
                                  pd.read_csv(tmp_path / "upright" / "curves.csv"))
    assert json.loads((tmp_path / "fixed" / "measures.json").read_text())["flipped"] == ["vertical"]


def test_orientation_rule_on_synthetic_scans():
    from spinelib.learn.orientation import UPSIDE_DOWN_RATIO, flip_dxa, orientation_ratio

    dxas, _ = synthetic_examples(6, PARAMS, start=3)
    for d in dxas:
        up = orientation_ratio(d)
        down = orientation_ratio(flip_dxa(d, vertical=True))
        assert up > 1.05 and down < UPSIDE_DOWN_RATIO, (up, down)
        # a left-right mirror does not change it (not detectable: documented)
        assert orientation_ratio(flip_dxa(d, horizontal=True)) == pytest.approx(up, rel=0.05)
    grey = flip_dxa(dxas[0], vertical=False)
    grey = type(grey)(grey.bone, grey.bone, grey.pixel_spacing_mm)
    assert orientation_ratio(grey) is None  # one channel: cannot be checked


def test_flip_dxa(subject):
    from spinelib.learn.orientation import flip_dxa

    dxa, _ = subject
    both = flip_dxa(dxa, vertical=True, horizontal=True)
    np.testing.assert_array_equal(both.bone, dxa.bone[::-1, ::-1])
    np.testing.assert_array_equal(both.lateral_bone, dxa.lateral_bone[::-1])  # depth columns stay
    back = flip_dxa(both, vertical=True, horizontal=True)
    np.testing.assert_array_equal(back.tissue, dxa.tissue)
    assert flip_dxa(dxa) is dxa
    with pytest.raises(InvalidArgumentError, match="DXAImage"):
        flip_dxa(dxa.bone, vertical=True)


# ----------------------------------------------------------------------------- cohorts (issue 12)


def test_predict_batch_equals_predict(files, tmp_path):
    from spinelib.learn.orientation import OrientationError, flip_dxa

    pred = Predictor.from_checkpoint(files["bot"])
    dxas, _ = synthetic_examples(3, PARAMS)
    one = [pred.predict(d, reconstruct=False) for d in dxas]
    many = pred.predict_batch(dxas, batch_size=2, reconstruct=False)
    for a, b in zip(one, many):
        np.testing.assert_allclose(b.curves.values, a.curves.values, atol=1e-4)
        assert a.crop == b.crop
    mixed = pred.predict_batch([dxas[0], flip_dxa(dxas[1], vertical=True), dxas[2]], on_error="return",
                               reconstruct=False)
    assert isinstance(mixed[1], OrientationError)
    np.testing.assert_allclose(mixed[2].curves.values, one[2].curves.values, atol=1e-4)
    with pytest.raises(OrientationError):
        pred.predict_batch([flip_dxa(dxas[1], vertical=True)])
    for kwargs, match in ((dict(batch_size=0), "batch_size"), (dict(on_error="skip"), "on_error")):
        with pytest.raises(InvalidArgumentError, match=match):
            pred.predict_batch(dxas, **kwargs)
    with pytest.raises(InvalidArgumentError, match="sequence"):
        pred.predict_batch(dxas[0])


def test_predict_scans_is_predict_batch_on_prepared_scans(files, subject):
    """The cohort path (prepared scans, several models on the same stacks) gives what the
    single-scan path gives; a scan the model cannot read is reported in its slot."""
    from spinelib.learn.data import PreparedScan

    pred = Predictor.from_checkpoint(files["bot"])
    dxas, _ = synthetic_examples(3, PARAMS)
    scans = [prepare_scan(d, pixel_mm=PARAMS["crop_pixel_mm"], image_size=PARAMS["image_size"], lateral=True)
             for d in dxas]  # 4 channels: the AP model cuts its 2
    ref = pred.predict_batch(dxas, reconstruct=False)
    got = pred.predict_scans(scans, batch_size=2)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b.curves.values, a.curves.values, atol=1e-4)
        assert a.crop == b.crop and b.mask.shape == (1, 1, 1)
    bright = PreparedScan(scans[1].stack * 1e4, scans[1].crop)
    mixed = pred.predict_scans([scans[0], bright, scans[2]], on_error="return", names=["a", "b", "c"])
    assert isinstance(mixed[1], InvalidArgumentError) and str(mixed[1]).startswith("b: ")
    np.testing.assert_allclose(mixed[2].curves.values, got[2].curves.values, atol=1e-4)
    with pytest.raises(InvalidArgumentError, match="outside the crop"):
        pred.predict_scans([bright])
    coarse = prepare_scan(dxas[0], pixel_mm=2 * PARAMS["crop_pixel_mm"], image_size=PARAMS["image_size"])
    for bad, match in (([coarse], "mm grid"), ([PreparedScan(scans[0].stack[:1], scans[0].crop)], "channels"),
                       ([dxas[0]], "PreparedScan")):
        with pytest.raises(InvalidArgumentError, match=match):
            pred.predict_scans(bad)
    with pytest.raises(InvalidArgumentError, match="names"):
        pred.predict_scans(scans, names=["a"])
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        pred.predict_scans(scans, batch_size=0)


def test_check_recipe_refuses_crops_of_another_scale(files):
    pred = Predictor.from_checkpoint(files["bot"])
    pred.check_recipe(PARAMS["crop_pixel_mm"], PARAMS["image_size"])
    with pytest.raises(CheckpointError, match=r"^bot.pt was trained on 96x64 crops of 6.6 mm, but 96x64 crops of 3.3 mm"):
        pred.check_recipe(3.3, PARAMS["image_size"], where="bot.pt")
    with pytest.raises(CheckpointError, match="192x96"):
        pred.check_recipe(PARAMS["crop_pixel_mm"], (192, 96))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, subject):
    """A folder of 3 good scans (<id>/dxa.npz), an upside-down one and a text file posing as a DXA."""
    d = tmp_path_factory.mktemp("cohort")
    for i in range(3):
        (d / f"s{i}").mkdir()
        write_synthetic_dxa(d / f"s{i}" / "dxa.npz", PARAMS, index=i, lateral=False)
    _flipped(subject[0], d / "upside_down.npz")
    (d / "broken.npz").write_text("not a scan\n")
    return d


def test_cohort_folder(files, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(cohort, "--checkpoint", files["mean"], "--out", out, "--no-progress") == 1  # some failed
    assert "3 of 5 scans predicted, 2 failed" in capsys.readouterr().err
    m = pd.read_csv(out / "measures.csv")
    assert sorted(m["scan"]) == ["s0", "s1", "s2"]
    for sid in m["scan"]:
        assert sorted(p.name for p in (out / sid).iterdir()) == sorted(OUTPUTS)
    f = pd.read_csv(out / "failures.csv").set_index("scan")
    assert sorted(f.index) == ["broken", "upside_down"]
    assert f.loc["upside_down", "error"] == "OrientationError" and "--flip-vertical" in f.loc["upside_down", "reason"]
    assert f.loc["broken", "error"] == "UnreadableFileError"
    # the cohort's numbers are the single-scan command's
    single = predict_file(cohort / "s1" / "dxa.npz", files["mean"], tmp_path / "single")
    js = json.loads(single["measures"].read_text())
    row = m.set_index("scan").loc["s1"]
    for key in ("cobb_deg", "kyphosis_deg", "lordosis_deg", "spine_length_mm"):
        assert row[key] == pytest.approx(js[key], abs=1e-3)
    pd.testing.assert_frame_equal(pd.read_csv(out / "s1" / "curves.csv"), pd.read_csv(single["curves"]))


def test_cohort_list_and_manifest(files, cohort, tmp_path):
    from spinelib.run.cohort_prediction import predict_scans
    from spinelib.run.scan_list import list_scans

    lst = tmp_path / "scans.txt"
    lst.write_text(f"# my cohort\n{cohort / 's0' / 'dxa.npz'}\n\n{cohort / 's2' / 'dxa.npz'}\nmissing.npz\n")
    res = predict_scans(lst, files["mean"], tmp_path / "a", progress=False, batch_size=2)
    assert (res.n_scans, res.n_failed, res.n_ok) == (3, 1, 2)
    f = pd.read_csv(res.failures_csv)
    assert f["scan"].tolist() == ["missing"] and f["error"].tolist() == ["MissingFileError"]
    man = tmp_path / "manifest.csv"
    pd.DataFrame({"subject_id": ["A 1", "B"], "dxa_path": [str(cohort / "s0" / "dxa.npz"),
                                                          str(cohort / "s2" / "dxa.npz")]}).to_csv(man, index=False)
    assert [s for s, _ in list_scans(man)] == ["A_1", "B"]
    res = predict_scans(man, files["mean"], tmp_path / "b", progress=False)
    assert res.n_failed == 0 and pd.read_csv(res.failures_csv).empty
    a, b = (pd.read_csv(tmp_path / d / "measures.csv") for d in ("a", "b"))
    np.testing.assert_allclose(a["cobb_deg"], b["cobb_deg"])
    assert "2 of 2 scans predicted" in res.summary()


def test_operating_point_beside_the_checkpoint_reaches_the_measures(files, cohort, tmp_path):
    """Every prediction is called scoliotic or not under the clinical rule, and at the network's
    operating point when one is stored beside its checkpoint; a cohort rerun after the point
    changed predicts its scans again instead of keeping the old calls."""
    import shutil

    from spinelib.run.cohort_prediction import predict_scans

    ckpt = tmp_path / "mean_shape" / "best.pt"
    ckpt.parent.mkdir()
    shutil.copy(files["mean"], ckpt)
    cobb = Predictor.from_checkpoint(ckpt).predict(read_dxa(files["dxa"]), reconstruct=False).measures["cobb_deg"]
    lst = tmp_path / "scans.txt"
    lst.write_text(f"{cohort / 's0' / 'dxa.npz'}\n{cohort / 's1' / 'dxa.npz'}\n")
    out = tmp_path / "cohort"
    first = pd.read_csv(predict_scans(lst, ckpt, out, progress=False).measures_csv)
    assert "scoliosis_decision_deg" not in first
    assert (first["scoliotic_clinical"] == (first["cobb_deg"] >= 10.0)).all()
    for decision, called in ((cobb + 0.5, False), (cobb, True)):  # just above and at this scan's angle
        write_operating_point(ckpt, OperatingPoint(decision, "a test", 10, 3, 1.0, 1.0))
        m = json.loads(predict_file(files["dxa"], ckpt, tmp_path / f"one-{called}")["measures"].read_text())
        assert m["scoliotic_at_decision"] is called and m["scoliosis_decision_deg"] == decision
        assert m["scoliotic_clinical"] is bool(cobb >= 10.0)
        table = pd.read_csv(predict_scans(lst, ckpt, out, progress=False).measures_csv)
        np.testing.assert_allclose(table["scoliosis_decision_deg"], decision, atol=1e-3)  # the table's 4 decimals
        np.testing.assert_allclose(table["cobb_deg"], first["cobb_deg"])
        for sid, row in table.set_index("scan").iterrows():
            rec = json.loads((out / sid / "measures.json").read_text())
            assert row["scoliotic_at_decision"] == rec["scoliotic_at_decision"] == (rec["cobb_deg"] >= decision)


def test_bad_cohort_sources(files, tmp_path):
    from spinelib.run.scan_list import list_scans

    with pytest.raises(MissingFileError):
        list_scans(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="names no DXA"):
        list_scans(tmp_path / "empty")
    bad = tmp_path / "m.csv"
    bad.write_text("subject_id,path\na,b\n")
    with pytest.raises(UnreadableFileError, match="dxa_path"):
        list_scans(bad)
    other = tmp_path / "scan.json"
    other.write_text("{}")
    with pytest.raises(InvalidArgumentError, match="neither a folder"):
        list_scans(other)
    dup = tmp_path / "dup.txt"
    dup.write_text("a/dxa.npz\nb/a.npz\na/dxa.npz\n")
    assert [s for s, _ in list_scans(dup)] == ["a", "a-2", "a-3"]


@settings(max_examples=60, deadline=None)
@given(k=st.integers(3, 40), scale=st.sampled_from([1e-3, 1.0, 37.0, 1e4]), seed=st.integers(0, 2**16))
def test_curves_csv_has_the_bytes_pandas_would_write(k, scale, seed):
    from spinelib.shape.curves import SpineCurves
    from spinelib.run.prediction_files import curves_csv
    from spinelib.spine import CURVE_NAMES

    rng = np.random.default_rng(seed)
    centre = rng.normal(0.0, scale, (2, k))
    half = np.abs(rng.normal(0.0, scale, (2, k)))
    values = np.stack([centre[0] - half[0], centre[0], centre[0] + half[0],  # left, centre, right
                       centre[1] - half[1], centre[1], centre[1] + half[1]])  # posterior, centre, anterior
    values[1, 0] = -0.0  # pandas keeps the sign of a negative zero
    c = SpineCurves(values, np.array([10.0, 10.0 + 17.3 * k]))
    ref = pd.DataFrame({"level": np.arange(k), "level_row_mm": c.levels_mm,
                        **{n: c.values[i] for i, n in enumerate(CURVE_NAMES)}}).to_csv(index=False, float_format="%.4f")
    assert curves_csv(c) == ref
    with pytest.raises(InvalidArgumentError):
        curves_csv(values)


def test_cli_says_when_the_checkpoint_has_no_operating_point(files, tmp_path, capsys):
    import shutil

    ckpt = tmp_path / "net" / "best.pt"
    ckpt.parent.mkdir()
    shutil.copy(files["mean"], ckpt)
    assert run_cli(files["dxa"], "--checkpoint", ckpt, "--out", tmp_path / "a") == 0
    assert "clinical rule only" in capsys.readouterr().err
    write_operating_point(ckpt, OperatingPoint(12.0, "a test", 10, 3, 1.0, 1.0))
    assert run_cli(files["dxa"], "--checkpoint", ckpt, "--out", tmp_path / "b") == 0
    assert "clinical rule only" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- mirror averaging


def _mirrored(crops: np.ndarray) -> np.ndarray:
    """The crops mirrored left-right as training mirrors them: AP channels only."""
    from spinelib.learn.data import AP_CHANNELS

    out = crops.copy()
    out[:, :AP_CHANNELS] = crops[:, :AP_CHANNELS, :, ::-1]
    return out


@pytest.mark.parametrize("name", ["resnet_bot", "biplanar"])
def test_mirror_averaging_is_the_mean_of_the_crop_and_its_mirror(tmp_path, name):
    from spinelib.learn.data import mirror_crop_vector

    ckpt = random_checkpoint(tmp_path / f"{name}.pt", PARAMS, name)
    averaged = Predictor.from_checkpoint(ckpt)
    assert averaged.mirror_average  # the smoke profile trains on mirrored crops
    cfg = averaged.config
    plain = Predictor(averaged.model, cfg, pixel_mm=averaged.pixel_mm)
    crops = np.random.default_rng(3).random((3, cfg.in_chans, *cfg.image_size)).astype(np.float32)
    cols = cfg.image_size[1]
    expected = 0.5 * (plain.forward_batch(crops) + mirror_crop_vector(plain.forward_batch(_mirrored(crops)), cols))
    np.testing.assert_allclose(averaged.forward_batch(crops), expected, atol=1e-6)
    # equivariant by construction: the mirrored crop reads as the mirror of the crop's reading
    np.testing.assert_allclose(averaged.forward_batch(_mirrored(crops)),
                               mirror_crop_vector(averaged.forward_batch(crops), cols), atol=1e-6)
    np.testing.assert_allclose(averaged.forward(crops[1]), expected[1], atol=1e-6)


def test_mirror_averaging_comes_from_the_checkpoint(files, tmp_path):
    from spinelib.learn.recipe import input_recipe, read_recipe

    cfg = config_from_profile(PARAMS, "resnet")
    for flag in (True, False):
        ckpt = save_checkpoint(tmp_path / f"m{flag}.pt", build_model(cfg), cfg,
                               input_recipe(PARAMS["crop_pixel_mm"], mirror_average=flag))
        assert Predictor.from_checkpoint(ckpt).mirror_average is flag
        assert read_recipe(torch.load(ckpt, weights_only=True)["extra"], ckpt).mirror_average is flag
    # a checkpoint from before mirror averaging was recorded is read on the crop alone, as it was then
    assert not Predictor.from_checkpoint(files["mean"]).mirror_average
    bad = save_checkpoint(tmp_path / "bad.pt", build_model(cfg), cfg,
                          {**input_recipe(PARAMS["crop_pixel_mm"]), "mirror_average": "yes"})
    with pytest.raises(CheckpointError, match="mirror_average"):
        Predictor.from_checkpoint(bad)
    with pytest.raises(InvalidArgumentError, match="mirror_average"):
        input_recipe(PARAMS["crop_pixel_mm"], mirror_average=1)


def test_mirror_averaging_refuses_bad_arguments(files):
    p = Predictor.from_checkpoint(files["bot"])
    with pytest.raises(InvalidArgumentError, match="mirror_average"):
        Predictor(p.model, p.config, pixel_mm=p.pixel_mm, mirror_average="yes")
    with pytest.raises(InvalidArgumentError, match="mirror averaging"):
        Predictor(p.model, p.config, pixel_mm=p.pixel_mm, input_recipe="paper_bone_rgb", mirror_average=True)
