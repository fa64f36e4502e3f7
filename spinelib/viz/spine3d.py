"""Interactive rotating 3D spines (Plotly) for the book and for ``spinelib predict``.

Display axes: x = DXA column-mm (the patient's right on the left, as on the DXA),
y = depth above the table (anterior up the axis), z = minus DXA row-mm (superior up).
Figures are written with ``include_plotlyjs=False`` for the book, which ships
plotly.js in ``_static``, or with the library embedded for a self-contained file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import write_text_atomic
from ..errors import InvalidArgumentError, ShapeError

__all__ = ["SpineMesh", "rotating_spines_figure", "subject_picker_figure", "figure_html", "write_figure_html"]

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


def _scene(mesh_list: Sequence[SpineMesh]) -> dict:
    allv = np.concatenate([m.verts for m in mesh_list])
    span = allv.max(axis=0) - allv.min(axis=0)
    rng = float(max(span.max(), 1.0))
    return dict(
        xaxis=dict(title="column (mm)", showbackground=False),
        yaxis=dict(title="depth (mm)", showbackground=False),
        zaxis=dict(title="-row (mm)", showbackground=False),
        aspectmode="manual",
        aspectratio=dict(x=span[1] / rng * 2.0, y=span[2] / rng * 2.0, z=span[0] / rng * 2.0),
    )


def _eye(angle_deg: float, radius: float = 1.9, height: float = 0.25) -> dict:
    t = np.deg2rad(angle_deg)
    return dict(x=float(radius * np.sin(t)), y=float(-radius * np.cos(t)), z=height)


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
    scene = _scene(mesh_list)
    for i, m in enumerate(mesh_list):
        fig.add_trace(_trace(m), row=1, col=i + 1)
    scene_keys = ["scene" if i == 0 else f"scene{i + 1}" for i in range(n)]
    angles = np.linspace(0.0, 360.0, n_frames, endpoint=False)
    fig.update_layout(**{k: dict(scene, camera=dict(eye=_eye(0.0))) for k in scene_keys})
    fig.frames = [
        go.Frame(name=f"{a:.0f}", layout={k: dict(camera=dict(eye=_eye(a))) for k in scene_keys})
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
    import plotly.graph_objects as go
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
    scene = _scene([m for _, ms in subs for m in ms])
    fig.update_layout(**{("scene" if i == 0 else f"scene{i + 1}"): dict(scene, camera=dict(eye=_eye(30.0)))
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
