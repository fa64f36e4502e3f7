"""Cohort files on disk: DXA images, NIfTI volumes, truth records and manifests.

Moving cohort data between files and arrays, validating it once on the way, with an
error from :mod:`spinelib.errors` whose message names the file. This package is the
public entry point: ``from spinelib.io import read_dxa`` and ``spinelib.io.read_dxa``
both work. Its modules:

``checks``
    the shared input checks (files, 2D images, pixel spacings, affines: :func:`check_affine`)
``arrays``
    named arrays in byte-deterministic ``.npz`` archives (:func:`write_arrays`, :func:`read_arrays`)
``dxa``
    DXA scans: :class:`DXAImage`, :func:`write_dxa`, :func:`read_dxa` (``.npz``, UK Biobank
    pickles, ``.png`` / ``.tif``)
``nifti``
    NIfTI volumes: :class:`Volume`, :func:`write_nifti`, :func:`read_volume`
``manifest``
    ``manifest.csv``: :data:`MANIFEST_COLUMNS`, :func:`validate_manifest`,
    :func:`write_manifest`, :func:`read_manifest`
``subject``
    one subject: :class:`Subject`, the truth record, :func:`load_subject`,
    :func:`check_subject`, :func:`check_cohort`
``quality``
    bad subjects of a cohort: which were left out, at which stage, and why
``runfolder``
    the run folder's layout, ``metrics.json`` and tables

A cohort folder::

    manifest.csv      one row per subject, paths relative to the manifest's folder
    <id>/dxa.npz      bone, tissue, pixel_spacing_mm (and a synthetic lateral view)
    <id>/*.nii.gz     fat and water MRI, segmentation
    <id>/truth.json   synthetic only: the generator's record

Every writer is atomic (:mod:`spinelib.util.atomic`) and byte-deterministic: the same
arrays give the same file bytes (fixed zip timestamps, gzip ``mtime`` 0 and no
file name in the gzip header), so cohorts can be compared by checksum.
"""

from __future__ import annotations

from ..util.atomic import write_json_atomic
from .arrays import read_arrays, write_arrays
from .checks import check_affine
from .dxa import DXA_KEYS, DXAImage, read_dxa, write_dxa
from .manifest import (
    MANIFEST_COLUMNS,
    PATH_COLUMNS,
    SPLITS,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from .nifti import Volume, read_volume, write_nifti
from .subject import Subject, check_cohort, check_subject, load_subject, read_truth, write_truth

__all__ = [
    "MANIFEST_COLUMNS",
    "PATH_COLUMNS",
    "SPLITS",
    "DXA_KEYS",
    "DXAImage",
    "Volume",
    "Subject",
    "write_dxa",
    "write_nifti",
    "write_truth",
    "write_manifest",
    "write_arrays",
    "read_arrays",
    "write_json_atomic",
    "read_dxa",
    "read_volume",
    "read_truth",
    "read_manifest",
    "validate_manifest",
    "load_subject",
    "check_affine",
    "check_subject",
    "check_cohort",
]
