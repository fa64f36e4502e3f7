"""Interactive rotating 3D spines (Plotly) for the book and for ``spinelib predict``.

Display axes: x = DXA column-mm (the patient's right on the left, as on the DXA),
y = depth above the table (anterior up the axis), z = minus DXA row-mm (superior up).
Figures are written with ``include_plotlyjs=False`` for the book, which ships
plotly.js in ``_static``, or with the library embedded for a self-contained file.

Framing: every scene of a figure shares fixed axis ranges (the meshes' bounding box,
padded) drawn in true proportion, and the camera stands far enough away
(:func:`fit_camera_distance`) that the whole box -- hence the whole spine -- stays in
view at every angle of the turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..util.atomic import write_text_atomic
from ..errors import InvalidArgumentError, ShapeError

__all__ = ["SpineMesh", "fit_camera_distance", "rotating_spines_figure", "subject_picker_figure", "figure_html",
           "write_figure_html"]

TRUE_COLOUR = "#4c72b0"
PRED_COLOUR = "#dd8452"


@dataclass(frozen=True)
class SpineMesh:
    """A triangle mesh in the DXA-aligned frame: ``verts`` (V, 3) mm (row, col, depth), ``faces`` (F, 3)."""

    verts: np.ndarray
    faces: np.ndarray
    name: str
    colour: str = TRUE_COLOUR

    def __post_init__(self) -> None:
        v, f = np.asarray(self.verts), np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise ShapeError(f"mesh {self.name!r}: verts must be (V, 3) and faces (F, 3), got {v.shape}, {f.shape}")
        if len(v) == 0 or len(f) == 0:
            raise InvalidArgumentError(f"mesh {self.name!r} is empty")


def _trace(mesh: SpineMesh, *, visible: bool = True):
    import plotly.graph_objects as go

    v = np.asarray(mesh.verts, dtype=float)
    f = np.asarray(mesh.faces)
    return go.Mesh3d(
        x=v[:, 1], y=v[:, 2], z=-v[:, 0], i=f[:, 0], j=f[:, 1], k=f[:, 2],
        color=mesh.colour, opacity=1.0, name=mesh.name, showlegend=True, visible=visible,
        flatshading=False, lighting=dict(ambient=0.45, diffuse=0.8, specular=0.25, roughness=0.6),
        lightposition=dict(x=200, y=300, z=400), hovertemplate=f"{mesh.name}<extra></extra>",
    )


#: Vertical field of view of plotly.js's perspective 3D camera (gl-plot3d's default, radians).
PLOTLY_FOVY = np.pi / 4
#: Narrowest scene viewport (width / height) the framing is computed for: a wider one
#: only adds room left and right (the vertical field of view is fixed).
MIN_VIEW_ASPECT = 0.5
#: Fraction of the half-view the scene box may fill (room for the axes' tick labels).
VIEW_FILL = 0.85
#: Camera elevation: the eye's height over its horizontal distance (about 8 degrees).
EYE_ELEVATION = 0.14
#: Padding of the axis ranges around the meshes, as a fraction of each span.
RANGE_PAD = 0.04


def _scene_box(mesh_list: Sequence[SpineMesh]) -> tuple[np.ndarray, np.ndarray]:
    """Display-axis ranges ``(lo, hi)`` (x, y, z; mm) of all meshes, padded, and the
    aspect ratio: the box's sides in plotly's normalised scene units (longest side 1)."""
    allv = np.concatenate([np.asarray(m.verts, dtype=float) for m in mesh_list])
    disp = np.stack([allv[:, 1], allv[:, 2], -allv[:, 0]], axis=1)  # the traces' x, y, z
    lo, hi = disp.min(axis=0), disp.max(axis=0)
    pad = RANGE_PAD * np.maximum(hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad
    span = hi - lo
    return np.stack([lo, hi]), span / span.max()


def _view_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera right and up unit vectors of an eye on ``direction`` looking at the origin,
    with plotly's default up (+z)."""
    forward = -direction / np.linalg.norm(direction)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return right, np.cross(right, forward)


def _eye_direction(angle_deg: float, elevation: float = EYE_ELEVATION) -> np.ndarray:
    """Unit vector from the scene centre to the eye: azimuth ``angle_deg`` from the front
    (the DXA's view, looking along +y), ``elevation`` its height per horizontal unit."""
    t = np.deg2rad(angle_deg)
    d = np.array([np.sin(t), -np.cos(t), elevation])
    return d / np.linalg.norm(d)


def fit_camera_distance(aspect: np.ndarray, angles_deg: Sequence[float], *,
                        elevation: float = EYE_ELEVATION, view_aspect: float = MIN_VIEW_ASPECT,
                        fill: float = VIEW_FILL) -> float:
    """Smallest eye distance at which a box of sides ``aspect`` stays in view at every angle.

    plotly.js draws a 3D scene's axis ranges as a box of sides ``aspectratio`` centred
    on the origin and looks at it from ``camera.eye`` (same units) through a perspective
    camera of vertical field of view :data:`PLOTLY_FOVY`. A corner ``p`` seen from
    ``D u`` (``u`` the unit eye direction) projects to ``f (p . e) / (D - p . u)`` along
    a screen axis ``e`` (``f = 1 / tan(fovy / 2)``, divided by the viewport's width/height
    ratio horizontally); requiring ``|.| <= fill`` gives ``D >= p . u + f |p . e| / fill``.

    Parameters
    ----------
    aspect : (3,) box sides (x, y, z), normalised units.
    angles_deg : azimuths of the eye (degrees).
    elevation : eye height per unit of horizontal distance.
    view_aspect : the narrowest viewport width/height ratio to fit.
    fill : fraction of the half-view the box may use, in (0, 1].

    Returns
    -------
    float, the eye distance from the box centre (normalised units).
    """
    a = np.asarray(aspect, dtype=float)
    if a.shape != (3,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise InvalidArgumentError(f"aspect must be 3 positive numbers, got {aspect!r}")
    if not (0 < fill <= 1) or not view_aspect > 0:
        raise InvalidArgumentError(f"fill must be in (0, 1] and view_aspect > 0, got {fill!r}, {view_aspect!r}")
    angles = np.asarray(list(angles_deg), dtype=float)
    if angles.size == 0 or not np.all(np.isfinite(angles)):
        raise InvalidArgumentError("angles_deg must hold at least one finite angle")
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * a / 2.0
    f = 1.0 / np.tan(PLOTLY_FOVY / 2.0)
    need = 0.0
    for angle in angles:
        u = _eye_direction(float(angle), elevation)
        right, up = _view_basis(u)
        along = corners @ u
        need = max(need, float(np.max(along + f * np.abs(corners @ up) / fill)),
                   float(np.max(along + f / view_aspect * np.abs(corners @ right) / fill)))
    return need


def _scene(mesh_list: Sequence[SpineMesh]) -> tuple[dict, float]:
    """Shared scene layout (fixed ranges, true proportions) and the eye distance that keeps
    the whole box in view at every azimuth."""
    (lo, hi), aspect = _scene_box(mesh_list)
    distance = fit_camera_distance(aspect, np.arange(0.0, 360.0, 5.0))
    axis = dict(showbackground=False, autorange=False)
    scene = dict(
        xaxis=dict(axis, title="column (mm)", range=[float(lo[0]), float(hi[0])]),
        yaxis=dict(axis, title="depth (mm)", range=[float(lo[1]), float(hi[1])]),
        zaxis=dict(axis, title="-row (mm)", range=[float(lo[2]), float(hi[2])]),
        aspectmode="manual",
        aspectratio=dict(x=float(aspect[0]), y=float(aspect[1]), z=float(aspect[2])),
    )
    return scene, distance


def _eye(angle_deg: float, distance: float) -> dict:
    d = distance * _eye_direction(angle_deg)
    return dict(x=float(d[0]), y=float(d[1]), z=float(d[2]))


def _camera(angle_deg: float, distance: float) -> dict:
    return dict(eye=_eye(angle_deg, distance), center=dict(x=0.0, y=0.0, z=0.0),
                up=dict(x=0.0, y=0.0, z=1.0), projection=dict(type="perspective"))


def rotating_spines_figure(meshes: Sequence[SpineMesh], *, title: str = "", n_frames: int = 36,
                           height: int = 560):
    """Side-by-side 3D spines turning together about the vertical axis.

    One 3D scene per mesh, cameras locked to the same angle; an animation of
    ``n_frames`` steps over a full turn with a play/pause button and a slider over the
    angle (degrees).

    Parameters
    ----------
    meshes : one or more meshes (typically true and predicted spine of one subject).
    n_frames : frames per turn (>= 4).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    mesh_list = list(meshes)
    if not mesh_list:
        raise InvalidArgumentError("rotating_spines_figure needs at least one mesh")
    if n_frames < 4:
        raise InvalidArgumentError(f"n_frames must be >= 4, got {n_frames}")
    n = len(mesh_list)
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n],
                        subplot_titles=[m.name for m in mesh_list], horizontal_spacing=0.02)
    scene, distance = _scene(mesh_list)
    for i, m in enumerate(mesh_list):
        fig.add_trace(_trace(m), row=1, col=i + 1)
    scene_keys = ["scene" if i == 0 else f"scene{i + 1}" for i in range(n)]
    angles = np.linspace(0.0, 360.0, n_frames, endpoint=False)
    fig.update_layout(**{k: dict(scene, camera=_camera(0.0, distance)) for k in scene_keys})
    fig.frames = [
        go.Frame(name=f"{a:.0f}", layout={k: dict(camera=_camera(a, distance)) for k in scene_keys})
        for a in angles
    ]
    play = dict(label="play", method="animate",
                args=[None, dict(frame=dict(duration=80, redraw=True), fromcurrent=True, mode="immediate",
                                 transition=dict(duration=0))])
    pause = dict(label="pause", method="animate",
                 args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")])
    slider = dict(
        active=0, currentvalue=dict(prefix="angle: ", suffix=" deg"), pad=dict(t=30),
        steps=[dict(label=f"{a:.0f}", method="animate",
                    args=[[f"{a:.0f}"], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
               for a in angles],
    )
    fig.update_layout(
        title=title or None, height=height, margin=dict(l=0, r=0, t=60 if title else 30, b=0),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=0.0, xanchor="left", yanchor="top",
                          buttons=[play, pause], pad=dict(t=30, r=10))],
        sliders=[slider], legend=dict(orientation="h", y=1.02),
    )
    return fig


def subject_picker_figure(subjects: Sequence[tuple[str, Sequence[SpineMesh]]], *, height: int = 560):
    """One 3D scene per mesh slot with a drop-down that picks the subject shown.

    Parameters
    ----------
    subjects : ``(label, meshes)`` per subject; every subject has the same number of meshes
        (for example true and predicted), shown side by side.
    """
    from plotly.subplots import make_subplots

    subs = list(subjects)
    if not subs:
        raise InvalidArgumentError("subject_picker_figure needs at least one subject")
    n = len(subs[0][1])
    if any(len(m) != n for _, m in subs):
        raise InvalidArgumentError("every subject must have the same number of meshes")
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n],
                        subplot_titles=[m.name for m in subs[0][1]], horizontal_spacing=0.02)
    for s, (_, meshes) in enumerate(subs):
        for i, m in enumerate(meshes):
            fig.add_trace(_trace(m, visible=s == 0), row=1, col=i + 1)
    scene, distance = _scene([m for _, ms in subs for m in ms])
    fig.update_layout(**{("scene" if i == 0 else f"scene{i + 1}"): dict(scene, camera=_camera(30.0, distance))
                         for i in range(n)})
    buttons = []
    for s, (label, _) in enumerate(subs):
        vis = [t == s for t in range(len(subs)) for _ in range(n)]
        buttons.append(dict(label=label, method="update", args=[{"visible": vis}, {"title": label}]))
    fig.update_layout(height=height, title=subs[0][0], margin=dict(l=0, r=0, t=60, b=0),
                      updatemenus=[dict(type="dropdown", buttons=buttons, x=0.0, y=1.12, xanchor="left")])
    return fig


def figure_html(fig, *, self_contained: bool = False) -> str:
    """HTML of a figure: with plotly.js embedded (a file that opens anywhere, offline)
    or without it (for pages that load the vendored plotly.js, such as the book)."""
    return fig.to_html(include_plotlyjs=True if self_contained else False, full_html=self_contained,
                       auto_play=False, config={"displaylogo": False})


def write_figure_html(fig, path: str | Path, *, self_contained: bool = True) -> Path:
    """Write :func:`figure_html` atomically; returns the path."""
    return write_text_atomic(path, figure_html(fig, self_contained=self_contained))
