"""Pictures of a run: per test image a panel, a local HTML gallery, the same panels for every logger."""

from locoad.viz.callback import Visualiser, log_panels
from locoad.viz.gallery import write_gallery
from locoad.viz.panels import panel

__all__ = ["Visualiser", "log_panels", "panel", "write_gallery"]
