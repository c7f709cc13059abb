"""ULSAD (Patra & Ben Taieb, 2024): unified logical and structural anomaly detection."""

from locoad.models.ulsad.lightning_model import ULSADModule
from locoad.models.ulsad.torch_model import ULSADModel

__all__ = ["ULSADModel", "ULSADModule"]
