"""The spine's shape: the six curves at K levels and their crop normalisation (``curves``), the
DXA-aligned 3D frame (``frame``), the scanner table plane in the MRI (``table_plane``), the curves
read off a label volume (``extract``) and the ellipse reconstruction of the 3D spine from them
(``reconstruct``).
"""
