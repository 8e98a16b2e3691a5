"""Models: plain torch. Never imports data, Lightning, Hydra or W&B."""

from mstr.models.backbone import BackboneConfig, MultiScaleSTResNet, build_backbone, model_cost

__all__ = ["BackboneConfig", "MultiScaleSTResNet", "build_backbone", "model_cost"]
