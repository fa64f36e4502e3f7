"""Real data in: UK Biobank bulk zips (whole-body DXA, Dixon MRI) to a spinelib cohort.

* :mod:`.dicomzip` -- DICOM files inside a bulk zip, bulk file names;
* :mod:`.ukb_dxa` -- the tissue and bone whole-body images and their pixel spacing;
* :mod:`.ukb_mri` -- fat and water stations stitched and blended on one RAS+ grid;
* :mod:`.subject` -- one participant visit into one subject folder (segmentation included);
* :mod:`.cohort` -- :func:`ingest_ukb`: subject folders, manifest, failures, resume;
* :mod:`.segment` -- TotalSegmentator's MR outputs in our label convention, built on
  :mod:`.vertebra_body` (a whole vertebra's body) and :mod:`.discs` (discs to their gaps).

``spinelib ingest ukb --dxa-zips DIR --mri-zips DIR [--seg DIR] --out COHORT`` calls
:func:`ingest_ukb`.
"""

from __future__ import annotations

from .cohort import FAILURES_FILE, IngestReport, find_bulk_zips, ingest_ukb, split_participants
from .dicomzip import BulkName, parse_bulk_name
from .subject import NO_SEGMENTATION
from .ukb_dxa import UKBDXA, read_ukb_dxa
from .ukb_mri import UKBMRI, read_ukb_mri

__all__ = [
    "ingest_ukb",
    "IngestReport",
    "NO_SEGMENTATION",
    "FAILURES_FILE",
    "find_bulk_zips",
    "split_participants",
    "BulkName",
    "parse_bulk_name",
    "UKBDXA",
    "read_ukb_dxa",
    "UKBMRI",
    "read_ukb_mri",
]
