"""Training: loops, penalties and MP-scheduled splitting, data loaders, distributed helpers."""
