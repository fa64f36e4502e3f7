"""Figures: matplotlib for print, Plotly for the interactive rotating spines."""
