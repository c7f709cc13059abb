"""locoad: few-shot detection of logical and structural anomalies, Hydra + Lightning."""

__version__ = "0.1.0"
