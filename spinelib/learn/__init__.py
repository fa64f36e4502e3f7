"""Learning: crops and augmentation (``data``), the networks declared as data (``models``), the
training loop (``train``), the ridge baseline (``summaries``), the paper's released checkpoint
(``paper_checkpoint``), orientation checks (``orientation``) and ``Predictor``, the one inference
path (``predict``).

Nothing is imported here, so that a light submodule does not pull in torch.
"""
