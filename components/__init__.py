"""TFX components: one folder each, with its Beam/TF logic and its component definition."""


def __getattr__(name: str):
  # Vertex's TFX entrypoint imports a custom artifact type by its schema title, which must
  # read `namespace.Title` (components.PretrainDataStatistics): this is that namespace. Lazy,
  # so that importing a component's Beam or CLI module does not import TFX.
  if name == "PretrainDataStatistics":
    from components.common.artifacts import PretrainDataStatistics

    return PretrainDataStatistics
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
