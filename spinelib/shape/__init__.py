"""The spine's shape: the six curves at K levels (``curves``) and the ellipse reconstruction
of the 3D spine from them (``reconstruct``).
"""
