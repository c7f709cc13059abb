"""Metrics that know nothing of Lightning."""

from locoad.metrics.alignment import alignment_accuracy, foreground_iou, reference_part_lut
from locoad.metrics.image import auroc, f1_floor, f1_max, image_metrics
from locoad.metrics.pixel import pixel_auroc

__all__ = ["alignment_accuracy", "auroc", "f1_floor", "f1_max", "foreground_iou", "image_metrics", "pixel_auroc",
           "reference_part_lut"]
