"""Learning: finding and cutting the crop (``crop``), prepared scans, augmentation and datasets
(``data``), the models declared as data (``config``), the networks (``networks``) and their
checkpoints (``checkpoint``), the loss (``loss``) and the training loop (``train``), the input
recipes (``recipe``) and sanity checks (``sanity``), the image summaries (``summaries``) and
the ridge baseline on them (``ridge``), the paper's released checkpoint (``paper_checkpoint``),
orientation checks (``orientation``) and ``Predictor``, the one inference path (``predict``).

Nothing is imported here, so that a light submodule does not pull in torch.
"""
