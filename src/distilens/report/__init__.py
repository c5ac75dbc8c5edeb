"""The report: figures rendered to PNG bytes and one self-contained HTML page."""

from .figures import feature_importance_bars, heatmap_grid, training_curves
from .html import render_report, write_report

__all__ = ["render_report", "write_report", "heatmap_grid", "feature_importance_bars", "training_curves"]
