"""Training: LightningModules, losses and metrics. Models stay plain torch."""
