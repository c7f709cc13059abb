"""Experiment loggers: the factory, an offline-first W&B logger, its mode decision and group.

Pictures of a run are not drawn here: :mod:`locoad.viz` draws them once for the local gallery
and hands the same panels to every logger that takes images.
"""

from locoad.loggers.factory import build_loggers, finish_loggers
from locoad.loggers.hydra_group import default_group
from locoad.loggers.wandb_logger import LocoadWandbLogger
from locoad.loggers.wandb_mode import resolve_mode

__all__ = ["LocoadWandbLogger", "build_loggers", "default_group", "finish_loggers", "resolve_mode"]
