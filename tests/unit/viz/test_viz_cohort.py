from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from spinelib.profiles import get_profile  # noqa: E402
from spinelib.synth.cohort import generate_cohort  # noqa: E402
from spinelib.synth.subject import make_subject  # noqa: E402
from spinelib.viz.cohort import plot_cohort_distributions, show_subject  # noqa: E402
from spinelib.synth.config import SynthConfig  # noqa: E402


def test_show_subject_from_memory_and_folder(tmp_path):
    import matplotlib.pyplot as plt

    p = get_profile("smoke", {"n_subjects": 1, "seed": 3})
    fig = show_subject(make_subject(0, SynthConfig.from_profile(p)))
    assert len(fig.axes) == 7
    plt.close(fig)
    generate_cohort(tmp_path, SynthConfig.from_profile(p), progress=False)
    fig = show_subject(tmp_path / "S00000")
    assert "Cobb" in fig._suptitle.get_text()
    fig.savefig(tmp_path / "s.png")
    plt.close(fig)


def test_plot_cohort_distributions():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    truths = [{"angles": {"cobb_deg": float(c), "kyphosis_deg": float(k), "lordosis_deg": float(lo)}}
              for c, k, lo in zip(rng.gamma(1.5, 5, 50), rng.normal(35, 8, 50), rng.normal(37, 13, 50))]
    fig = plot_cohort_distributions(truths)
    assert len(fig.axes) == 3
    plt.close(fig)
