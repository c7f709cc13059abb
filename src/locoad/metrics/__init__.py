"""Metrics that know nothing of Lightning."""

from locoad.metrics.image import auroc, f1_floor, f1_max, image_metrics
from locoad.metrics.pixel import pixel_auroc

__all__ = ["auroc", "f1_floor", "f1_max", "image_metrics", "pixel_auroc"]
