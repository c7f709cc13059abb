from locoad.models.seven_feature.lightning_model import SevenFeatureModule
from locoad.models.seven_feature.torch_model import SevenFeatureModel

__all__ = ["SevenFeatureModel", "SevenFeatureModule"]
