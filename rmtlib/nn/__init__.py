"""Network building blocks: low-rank layers, parameter/MAC counting, checkpoints, model factories."""
