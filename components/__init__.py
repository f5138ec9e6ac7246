"""TFX components: one folder each, with its Beam/TF logic and its component definition."""
