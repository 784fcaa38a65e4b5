"""AutoIF's stages: augmentation, verification with cross-validation in the sandbox, and their rules."""
