"""viz.splat, viz.qualitative_case and viz.qualitative: the Gaussian-splat renderer, Figure 5, its helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spinelib.shape.extract import column_curves  # noqa: E402
from spinelib.shape.frame import SubjectFrame  # noqa: E402
from spinelib.errors import (  # noqa: E402
    EmptySegmentationError,
    InvalidArgumentError,
    NonFiniteError,
    ShapeError,
    SpineLibError,
)
from spinelib.io import DXAImage  # noqa: E402
from spinelib.shape.reconstruct import Grid3D  # noqa: E402
from spinelib.spine import DISC_LABEL  # noqa: E402
from spinelib.geometry.transform import PlanarTransform  # noqa: E402
from spinelib.viz.png import save_png  # noqa: E402
from spinelib.viz.qualitative import case_meshes, figure5, turntable_figure  # noqa: E402
from spinelib.viz.qualitative_case import QualitativeCase, qualitative_case, select_by_severity  # noqa: E402
from spinelib.viz.splat import gaussian_splat, mask_surface_points, splat_rgb, splat_window  # noqa: E402

ORIGIN = np.zeros(3)
HALF = np.array([20.0, 20.0])  # 41 x 41 pixels at 1 mm, centre pixel (20, 20)


def _peak(img):
    return tuple(int(i) for i in np.unravel_index(np.argmax(img), img.shape))


# --------------------------------------------------------------------------- splatting


def test_single_point_is_a_gaussian_at_its_pixel():
    p = np.array([[10.0, 5.0, 0.0]])  # 10 mm below the centre, 5 mm towards the image's right
    img = gaussian_splat(p, view_deg=0.0, pixel_mm=1.0, sigma_mm=2.0, centre_mm=ORIGIN, half_size_mm=HALF)
    assert img.shape == (41, 41)
    assert _peak(img) == (30, 25)
    # separable Gaussian: the profile through the peak falls as exp(-x^2 / 2 sigma^2)
    # (pixel integrals, so compare at 1e-2 against point samples)
    row = img[30] / img[30, 25]
    x = np.arange(41) - 25.0
    np.testing.assert_allclose(row[20:31], np.exp(-x[20:31] ** 2 / 8.0), atol=1.5e-2)
    assert img.sum() == pytest.approx(1.0, abs=1e-6)


def test_default_window_centres_a_single_point():
    img = gaussian_splat(np.array([[100.0, -40.0, 7.0]]), view_deg=33.0, pixel_mm=0.5, sigma_mm=1.0)
    h, w = img.shape
    assert h % 2 == 1 and w % 2 == 1
    assert _peak(img) == (h // 2, w // 2)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=30), st.integers(min_value=0, max_value=10_000))
def test_sum_is_preserved(n, seed):
    rng = np.random.default_rng(seed)
    p = rng.normal(scale=30.0, size=(n, 3))
    w = rng.uniform(0.1, 3.0, size=n)
    img = gaussian_splat(p, view_deg=float(rng.uniform(-180, 180)), pixel_mm=1.7, sigma_mm=2.5, weights=w)
    assert img.sum() == pytest.approx(w.sum(), rel=3e-4)
    assert np.all(img >= 0)


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=-360.0, max_value=360.0, allow_nan=False))
def test_rotation_moves_points_as_expected(angle):
    """A point 15 mm towards the patient's left and one 15 mm anterior land at
    u = 15 cos t and u = 15 sin t."""
    t = np.deg2rad(angle)
    for offset, expected_u in (((0.0, 15.0, 0.0), 15.0 * np.cos(t)), ((0.0, 0.0, 15.0), 15.0 * np.sin(t))):
        img = gaussian_splat(np.array([offset]), view_deg=angle, pixel_mm=1.0, sigma_mm=1.5,
                             centre_mm=ORIGIN, half_size_mm=HALF)
        # sub-pixel centre of mass of the Gaussian along the image's columns
        u = (img.sum(axis=0) * (np.arange(img.shape[1]) - 20)).sum() / img.sum()
        assert u == pytest.approx(expected_u, abs=1e-3)
        assert _peak(img)[0] == 20


def test_quarter_turns():
    p = np.array([[0.0, 10.0, 0.0]])
    kw = dict(pixel_mm=1.0, sigma_mm=1.0, centre_mm=ORIGIN, half_size_mm=HALF)
    assert _peak(gaussian_splat(p, view_deg=0.0, **kw)) == (20, 30)
    assert _peak(gaussian_splat(p, view_deg=90.0, **kw)) == (20, 20)
    assert _peak(gaussian_splat(p, view_deg=180.0, **kw)) == (20, 10)


def test_depth_shading_brightens_the_near_point():
    # two points side by side, one 20 mm nearer the front-view camera
    p = np.array([[0.0, -10.0, 20.0], [0.0, 10.0, 0.0]])
    kw = dict(pixel_mm=1.0, sigma_mm=1.0, centre_mm=ORIGIN, half_size_mm=HALF, depth_shading=0.8)
    front = gaussian_splat(p, view_deg=0.0, **kw)
    assert front[20, 10] == pytest.approx(5 * front[20, 30], rel=1e-9)  # 1 vs 1 - 0.8
    # from behind, the far point is the near one, and left and right swap
    back = gaussian_splat(p, view_deg=180.0, **kw)
    assert back[20, 10] == pytest.approx(5 * back[20, 30], rel=1e-9)


def test_window_does_not_depend_on_the_angle():
    rng = np.random.default_rng(0)
    p = rng.normal(scale=(50, 20, 10), size=(200, 3))
    shapes = {gaussian_splat(p, view_deg=a, pixel_mm=2.0, sigma_mm=2.0).shape for a in (0, 37, 90, 200)}
    assert len(shapes) == 1
    c, h = splat_window([p, p + 100.0], sigma_mm=1.0)
    np.testing.assert_allclose(c, 0.5 * (np.minimum(p.min(0), p.min(0) + 100) + np.maximum(p.max(0), p.max(0) + 100)))
    assert np.all(h > 0)


def test_splat_rgb_front_surface_and_background():
    # a cylinder of points along the rows: opaque in the middle, background outside
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    r = np.arange(0.0, 60.0, 2.0)
    rr, tt = np.meshgrid(r, t)
    p = np.stack([rr.ravel(), 10 * np.cos(tt.ravel()), 10 * np.sin(tt.ravel())], axis=1)
    img = splat_rgb(p, view_deg=0.0, pixel_mm=1.0, sigma_mm=1.5, colour="#ff0000")
    h, w, three = img.shape
    assert three == 3 and np.all((img >= 0) & (img <= 1))
    np.testing.assert_allclose(img[0, 0], [1.0, 1.0, 1.0], atol=1e-3)  # corner: background
    mid = img[h // 2, w // 2]
    assert mid[0] > 0.5 and mid[1] < 0.1 and mid[2] < 0.1  # opaque red
    # Lambert shading: the limbs of the cylinder are darker than its lit side
    row = img[h // 2, :, 0]
    inside = np.nonzero(row < 0.99)[0]
    assert row[inside[len(inside) // 3]] > row[inside[-3]]


@pytest.mark.parametrize(
    "points, kwargs, error",
    [
        (np.zeros((3, 2)), {}, ShapeError),
        (np.zeros((0, 3)), {}, InvalidArgumentError),
        (np.array([[0.0, np.nan, 0.0]]), {}, NonFiniteError),
        (np.zeros((1, 3)), {"pixel_mm": 0.0}, InvalidArgumentError),
        (np.zeros((1, 3)), {"sigma_mm": -1.0}, InvalidArgumentError),
        (np.zeros((1, 3)), {"view_deg": float("inf")}, NonFiniteError),
        (np.zeros((1, 3)), {"view_deg": "front"}, InvalidArgumentError),
        (np.zeros((2, 3)), {"weights": np.ones(3)}, ShapeError),
        (np.zeros((2, 3)), {"weights": -np.ones(2)}, InvalidArgumentError),
        (np.zeros((1, 3)), {"depth_shading": 1.5}, InvalidArgumentError),
        (np.zeros((1, 3)), {"centre_mm": np.zeros(2)}, ShapeError),
        (np.zeros((1, 3)), {"half_size_mm": np.array([1.0, 0.0])}, InvalidArgumentError),
    ],
)
def test_gaussian_splat_bad_inputs(points, kwargs, error):
    kw = dict(view_deg=0.0, pixel_mm=1.0, sigma_mm=1.0)
    kw.update(kwargs)
    with pytest.raises(error):
        gaussian_splat(points, **kw)


def test_splat_rgb_bad_inputs():
    p = np.zeros((1, 3))
    with pytest.raises(InvalidArgumentError):
        splat_rgb(p, view_deg=0, pixel_mm=1, sigma_mm=1, colour="not-a-colour")
    with pytest.raises(InvalidArgumentError):
        splat_rgb(p, view_deg=0, pixel_mm=1, sigma_mm=1, opacity=0)
    with pytest.raises(InvalidArgumentError):
        splat_rgb(p, view_deg=0, pixel_mm=1, sigma_mm=1, ambient=2)
    with pytest.raises(InvalidArgumentError):
        splat_window([], sigma_mm=1.0)


# --------------------------------------------------------------------------- helpers


def test_mask_surface_points_of_a_cube():
    g = Grid3D((10.0, 20.0, 30.0), (2.0, 2.0, 2.0), (7, 7, 7))
    m = np.zeros(g.shape, bool)
    m[1:6, 1:6, 1:6] = True
    p = mask_surface_points(m, g)
    assert len(p) == 125 - 27
    assert p.min(axis=0).tolist() == [12.0, 22.0, 32.0]
    assert p.max(axis=0).tolist() == [20.0, 30.0, 40.0]
    assert not np.any(np.all(p == [16.0, 26.0, 36.0], axis=1))  # the cube's centre is inside
    with pytest.raises(EmptySegmentationError):
        mask_surface_points(np.zeros(g.shape, bool), g)
    with pytest.raises(ShapeError):
        mask_surface_points(np.zeros((3, 3, 3), bool), g)
    with pytest.raises(InvalidArgumentError):
        mask_surface_points(m.astype(np.uint8), g)


def test_select_by_severity():
    cobb = np.array([5.0, 40.0, 1.0, 12.0, 25.0, 8.0, 3.0])  # by value: 1, 3, 5, 8, 12, 25, 40
    np.testing.assert_array_equal(select_by_severity(cobb, 3), [2, 5, 1])  # ranks 0, 3, 6
    np.testing.assert_array_equal(select_by_severity(cobb, 1), [2])
    assert sorted(select_by_severity(cobb, 10).tolist()) == list(range(7))
    with pytest.raises(InvalidArgumentError):
        select_by_severity(cobb, 0)
    with pytest.raises(ShapeError):
        select_by_severity(np.zeros((2, 2)), 1)
    with pytest.raises(NonFiniteError):
        select_by_severity(np.array([1.0, np.nan]), 1)


# --------------------------------------------------------------------------- Figure 5


def _phantom(amp_mm: float):
    """A tiny column: 17 bodies and discs along z, an elliptic section swept along a
    coronal sine of amplitude ``amp_mm``; identity-like transform and a 2 mm grid."""
    vox = 3.0
    shape = (40, 30, 70)
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = [-(shape[0] - 1) / 2 * vox, -30.0, -(shape[2] - 1) / 2 * vox]
    x = aff[0, 3] + np.arange(shape[0]) * vox
    y = aff[1, 3] + np.arange(shape[1]) * vox
    z = aff[2, 3] + np.arange(shape[2]) * vox
    seg = np.zeros(shape, np.uint8)
    z0, z1 = z[5], z[-6]
    for k, zk in enumerate(z):
        if not z0 <= zk <= z1:
            continue
        f = (z1 - zk) / (z1 - z0)  # 0 at the top (superior, large z)... 1 at the bottom
        xc = amp_mm * np.sin(np.pi * f)
        inside = ((x[:, None] - xc) / 18.0) ** 2 + ((y[None, :] - 20.0) / 14.0) ** 2 <= 1.0
        level = min(int(f * 17 * 2), 33)
        seg[:, :, k][inside] = level // 2 + 1 if level % 2 == 0 else DISC_LABEL
    mri = (seg > 0).astype(np.float32) + 0.2
    dxa_shape, sp = (80, 50), (3.0, 3.0)
    bone = np.zeros(dxa_shape, np.float32)
    bone[20:60, 20:30] = 1.0
    dxa = DXAImage(bone, bone * 0.1, np.array(sp))
    tr = PlanarTransform(0.0, 0.0, 0.0)
    true = column_curves(seg, aff, SubjectFrame(tr, dxa_shape, sp, -30.0), 12)
    shifted = true.values.copy()
    shifted[:3] += 4.0  # the "prediction": the column moved 4 mm in the coronal plane
    from spinelib.shape.curves import SpineCurves

    pred = SpineCurves(shifted, true.extent_mm)
    return dict(dxa=dxa, mri=mri, seg=seg, affine=aff, transform=tr, table_y_mm=-30.0, true=true,
                preds={"resnet_bot": pred, "biplanar": true})


@pytest.fixture(scope="module")
def cases():
    out = []
    for sid, amp in (("S1", 30.0), ("S0", 0.0)):
        ph = _phantom(amp)
        out.append(qualitative_case(sid, ph["dxa"], ph["mri"], ph["seg"], ph["affine"], ph["transform"],
                                    ph["table_y_mm"], ph["true"], ph["preds"], spacing_mm=2.0))
    return out


def test_qualitative_case_contents(cases):
    curved, straight = cases
    assert curved.cobb_deg > straight.cobb_deg + 5
    for c in cases:
        assert c.true_mask.shape == c.grid.shape and c.true_mask.any()
        assert c.mri_slice.shape == c.true_slice.shape == (c.slice_rows_mm.size, c.slice_depth_mm.size)
        # the slice follows the spine: most of the true column's slice rows hold the mask
        in_column = (c.slice_rows_mm > c.true.extent_mm[0] + 5) & (c.slice_rows_mm < c.true.extent_mm[1] - 5)
        assert c.true_slice[in_column].any(axis=1).mean() > 0.9
        assert c.pred_slices["biplanar"][in_column].any(axis=1).mean() > 0.9
        # the exact curves rebuild the column well; a 4 mm shift costs IoU
        assert c.iou["biplanar"] > 0.6
        assert c.iou["resnet_bot"] < c.iou["biplanar"]


def test_figure5_layout_and_order(cases, tmp_path):
    fig = figure5(cases, models=["resnet_bot", "biplanar"], pixel_mm=2.0, sigma_mm=3.0)
    axes = fig.axes
    n_cols = 1 + 1 + 2 + 1 + 2 + 1 + 2
    assert len(axes) == 2 * n_cols
    # rows in increasing Cobb: the straight phantom first
    assert axes[0].get_ylabel().startswith("S0")
    assert axes[n_cols].get_ylabel().startswith("S1")
    out = save_png(fig, tmp_path / "figure5.png", dpi=40)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = figure5(cases[:1], models=["resnet_bot"], pixel_mm=2.0, sigma_mm=3.0)
    assert len(one.axes) == 7
    import matplotlib.pyplot as plt

    plt.close("all")


def test_turntable_and_meshes(cases):
    c = cases[0]
    fig = turntable_figure([("true", mask_surface_points(c.true_mask, c.grid), "#4c72b0")],
                           angles_deg=(0, 90), pixel_mm=2.0, sigma_mm=3.0)
    assert len(fig.axes) == 2
    meshes = case_meshes(c, models=["resnet_bot"], step_size=2)
    assert [m.name for m in meshes] == ["true", "resnet_bot"]
    finer = case_meshes(c, models=["resnet_bot"], step_size=1)
    assert len(meshes[0].verts) < len(finer[0].verts)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_figure5_bad_inputs(cases):
    with pytest.raises(InvalidArgumentError):
        figure5([])
    with pytest.raises(InvalidArgumentError):
        figure5(cases, models=["nope"])
    with pytest.raises(InvalidArgumentError):
        figure5(["not a case"])
    with pytest.raises(InvalidArgumentError):
        case_meshes(cases[0], step_size=0)


def test_qualitative_case_bad_inputs():
    ph = _phantom(0.0)
    args = [ph["dxa"], ph["mri"], ph["seg"], ph["affine"], ph["transform"], ph["table_y_mm"], ph["true"]]
    with pytest.raises(InvalidArgumentError):
        qualitative_case("S", *args, {})
    with pytest.raises(InvalidArgumentError):
        qualitative_case("S", *args, {"m": "curves"})
    bad = list(args)
    bad[1] = ph["mri"][..., :10]
    with pytest.raises(ShapeError):
        qualitative_case("S", *bad, ph["preds"])
    bad = list(args)
    bad[5] = float("nan")
    with pytest.raises(NonFiniteError):
        qualitative_case("S", *bad, ph["preds"])
    with pytest.raises(InvalidArgumentError):
        qualitative_case("S", *args, ph["preds"], spacing_mm=-1.0)
    with pytest.raises(SpineLibError):
        qualitative_case("S", "not a dxa", *args[1:], ph["preds"])
    assert isinstance(qualitative_case("S", *args, ph["preds"], spacing_mm=3.0), QualitativeCase)


# --------------------------------------------------------------------------- the notebook


def test_notebook_05_follows_the_rules():
    """One parameters cell of plain profile values, no def/class in cells; outputs of
    sections 01-02 only (the notebook itself is run by the pipeline's notebook tests)."""
    import ast
    from pathlib import Path

    import nbformat

    from spinelib.run.parameters import RUN_PARAMETERS, notebook_parameters
    from spinelib.profiles import get_profile

    path = Path(__file__).resolve().parents[3] / "notebooks" / "05_qualitative.ipynb"
    declared = notebook_parameters(path)
    smoke = get_profile("smoke")
    assert set(RUN_PARAMETERS) <= set(declared)
    for name, value in declared.items():
        if name not in RUN_PARAMETERS:
            # papermill reports defaults as source text
            assert name in smoke and ast.literal_eval(str(value)) == smoke[name], name
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tree = ast.parse(cell.source)
            assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda)) for n in ast.walk(tree))
            assert "fig.show()" not in cell.source
    text = "\n".join(c.source for c in nb.cells)
    for later in ("03_curve", "04_recon", "metrics.json", "read_metrics"):
        assert later not in text


# --------------------------------------------------------------------------- rotating 3D spines


def _tube_mesh(name, *, top=40.0, bottom=500.0, col=200.0, depth=90.0, bend=25.0, bow=30.0, r=18.0, n=40, m=12):
    """A curved tube standing for a spine column: (row, col, depth) vertices and faces."""
    from spinelib.viz.spine3d import SpineMesh

    rows = np.linspace(top, bottom, n)
    s = np.sin(np.pi * (rows - top) / (bottom - top))
    t = np.linspace(0, 2 * np.pi, m, endpoint=False)
    cc = col + bend * s[:, None] + r * np.cos(t)[None, :]
    dd = depth + bow * s[:, None] + r * np.sin(t)[None, :]
    verts = np.stack([np.repeat(rows, m), cc.ravel(), dd.ravel()], axis=1)
    faces = []
    for i in range(n - 1):
        for j in range(m):
            a, b = i * m + j, i * m + (j + 1) % m
            faces += [[a, b, a + m], [b, b + m, a + m]]
    return SpineMesh(verts, np.array(faces), name)


def _project(points, eye, fovy, view_aspect):
    """Normalised device coordinates (x, y) of scene points seen by plotly's camera
    (look-at the origin, up +z, perspective with vertical field of view ``fovy``)."""
    eye = np.asarray(eye, float)
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = points - eye
    depth = rel @ forward
    assert np.all(depth > 0), "a point is behind the camera"
    f = 1.0 / np.tan(fovy / 2)
    return np.stack([f / view_aspect * (rel @ right) / depth, f * (rel @ up) / depth], axis=1)


def _scene_points(fig, trace, key):
    """A trace's vertices in plotly's normalised scene units (the axis ranges' box of sides
    ``aspectratio`` centred on the origin)."""
    sc = fig.layout[key]
    lo = np.array([sc.xaxis.range[0], sc.yaxis.range[0], sc.zaxis.range[0]], float)
    hi = np.array([sc.xaxis.range[1], sc.yaxis.range[1], sc.zaxis.range[1]], float)
    ar = np.array([sc.aspectratio.x, sc.aspectratio.y, sc.aspectratio.z], float)
    v = np.stack([np.asarray(trace.x, float), np.asarray(trace.y, float), np.asarray(trace.z, float)], axis=1)
    assert np.all(v >= lo) and np.all(v <= hi), "a vertex lies outside the axis ranges"
    return (v - (lo + hi) / 2) / (hi - lo) * ar


def _bbox_corners(p):
    lo, hi = p.min(axis=0), p.max(axis=0)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def test_rotating_spines_frame_the_whole_spine_at_every_angle():
    from spinelib.viz.spine3d import MIN_VIEW_ASPECT, PLOTLY_FOVY, rotating_spines_figure

    true = _tube_mesh("true")
    pred = _tube_mesh("pred", top=60.0, bottom=470.0, bend=-15.0, bow=45.0, depth=100.0)
    fig = rotating_spines_figure([true, pred], n_frames=24)
    assert len(fig.frames) == 24
    keys = ("scene", "scene2")
    # both scenes share ranges, so the two spines compare in size and place
    assert fig.layout.scene.zaxis.range == fig.layout.scene2.zaxis.range
    # true proportions: the aspect ratio follows the ranges' spans
    sc = fig.layout.scene
    spans = [np.ptp(sc[a].range) for a in ("xaxis", "yaxis", "zaxis")]
    ar = [sc.aspectratio[a] for a in "xyz"]
    np.testing.assert_allclose(np.array(ar) / max(ar), np.array(spans) / max(spans), rtol=1e-9)
    fill = []
    for frame in fig.frames:
        for trace, key in zip(fig.data, keys):
            eye = frame.layout[key].camera.eye
            corners = _bbox_corners(_scene_points(fig, trace, key))
            for view_aspect in (MIN_VIEW_ASPECT, 1.0, 2.5):
                ndc = _project(corners, (eye.x, eye.y, eye.z), PLOTLY_FOVY, view_aspect)
                assert np.abs(ndc).max() <= 1.0, (frame.name, key, view_aspect, np.abs(ndc).max(axis=0))
            fill.append(np.abs(_project(corners, (eye.x, eye.y, eye.z), PLOTLY_FOVY, 1.0)[:, 1]).max())
    # ... and is not lost in a corner of it: the tall spine spans most of the view's height
    assert min(fill) > 0.6
    # the initial camera is the first frame's
    assert fig.layout.scene.camera.eye == fig.frames[0].layout.scene.camera.eye


def test_subject_picker_frames_every_subject_at_every_azimuth():
    from spinelib.viz.spine3d import MIN_VIEW_ASPECT, PLOTLY_FOVY, subject_picker_figure

    subjects = [("a", [_tube_mesh("true"), _tube_mesh("pred", bow=10.0)]),
                ("b", [_tube_mesh("true", top=10.0, bottom=540.0, bend=60.0), _tube_mesh("pred", col=150.0)])]
    fig = subject_picker_figure(subjects)
    eye = fig.layout.scene.camera.eye
    dist = np.linalg.norm([eye.x, eye.y, eye.z])
    direction = np.array([eye.x, eye.y, eye.z]) / dist
    elevation = direction[2] / np.hypot(direction[0], direction[1])
    for i, trace in enumerate(fig.data):
        key = "scene" if i % 2 == 0 else "scene2"
        corners = _bbox_corners(_scene_points(fig, trace, key))
        for angle in np.arange(0, 360, 15.0):
            t = np.deg2rad(angle)
            d = np.array([np.sin(t), -np.cos(t), elevation])
            ndc = _project(corners, dist * d / np.linalg.norm(d), PLOTLY_FOVY, MIN_VIEW_ASPECT)
            assert np.abs(ndc).max() <= 1.0, (trace.name, angle)


@pytest.mark.parametrize("kwargs", [dict(aspect=[1.0, 1.0]), dict(aspect=[1.0, 0.0, 1.0]),
                                    dict(aspect=[1.0, 1.0, 1.0], angles_deg=[]),
                                    dict(aspect=[1.0, 1.0, 1.0], fill=0.0),
                                    dict(aspect=[1.0, 1.0, 1.0], view_aspect=-1.0)])
def test_fit_camera_distance_bad_inputs(kwargs):
    from spinelib.viz.spine3d import fit_camera_distance

    kwargs.setdefault("angles_deg", [0.0])
    with pytest.raises(InvalidArgumentError):
        fit_camera_distance(**kwargs)


def test_fit_camera_distance_known_answer():
    """A unit cube seen head-on (no elevation): its front face is nearest, at D - 1/2, and
    its edges must project to ``fill``: D = 1/2 + f / (2 fill)."""
    from spinelib.viz.spine3d import PLOTLY_FOVY, fit_camera_distance

    f = 1 / np.tan(PLOTLY_FOVY / 2)
    d = fit_camera_distance(np.ones(3), [0.0], elevation=0.0, view_aspect=1.0, fill=0.8)
    assert d == pytest.approx(0.5 + f * 0.5 / 0.8)
