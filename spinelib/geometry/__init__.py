"""Geometry shared by the modalities: the planar rigid transform between a DXA and the MRI
coronal plane (``transform``).
"""
