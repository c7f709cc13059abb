"""locoad: few-shot detection of logical and structural anomalies, Hydra + Lightning."""

from pathlib import Path

__version__ = "0.1.0"
# The Hydra config folder: an absolute path works for `python -m locoad` and the console script alike.
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
