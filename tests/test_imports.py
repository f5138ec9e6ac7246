"""Dependencies point one way: pipelines -> components -> trainer.

Every import statement of the project's modules (module level and inside
functions) is read with `ast`, and each rule below is checked on the whole graph.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("trainer", "components", "pipelines")
# Command-line modules: edges of the graph, imported by nobody (pipelines.cli reaches the
# others by name, through importlib).
CLI_MODULES = {"pipelines.cli", "trainer.train", "trainer.export_cli",
               "components.tokenize_pack.cli", "components.glue_eval.cli"}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, pathlib.Path]:
  return {_module_name(path): path for package in PACKAGES
          for path in sorted((ROOT / package).rglob("*.py"))}


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The project modules `path` imports (`from a import b` counts a.b when that is a module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
    else:
      continue
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        found.add(name)
  return found


GRAPH = {name: _imports(path, set(_project_modules())) - {name}
         for name, path in _project_modules().items()}


def _component(module: str) -> str | None:
  """components.glue_eval.report -> glue_eval; None outside components/."""
  parts = module.split(".")
  return parts[1] if parts[0] == "components" and len(parts) > 1 else None


def _violations(rule) -> list[str]:
  return sorted(f"{source} imports {target}" for source, targets in GRAPH.items()
                for target in targets if rule(source, target))


def test_the_walk_sees_the_graph():
  # A walk that found nothing would pass every rule below.
  assert "trainer.contract" in GRAPH["trainer.task"]
  assert "components.tokenize_pack.config" in GRAPH["components.tokenize_pack.component"]
  assert "pipelines.pipeline" in GRAPH["pipelines.local_runner"]
  assert len(GRAPH) > 40


def test_trainer_imports_neither_components_nor_pipelines():
  assert _violations(lambda s, t: s.startswith("trainer") and
                     not t.startswith("trainer")) == []


def test_components_import_only_trainer_common_and_themselves():
  def crosses(source, target):
    if not source.startswith("components") or target.startswith("trainer"):
      return False
    if target.startswith("pipelines"):
      return True
    allowed = {_component(source), "common", None}  # None: the components package itself
    return _component(target) not in allowed

  assert _violations(crosses) == []


def test_common_imports_no_component():
  assert _violations(lambda s, t: _component(s) == "common" and _component(t) not in (
      "common", None) and t.startswith("components")) == []


def test_nothing_imports_a_cli_module():
  assert _violations(lambda s, t: t in CLI_MODULES) == []


def test_there_is_no_import_cycle():
  cycles = []

  def visit(module, path, on_path, done):
    if module in on_path:
      cycles.append(" -> ".join(path[path.index(module):] + [module]))
      return
    if module in done:
      return
    on_path.add(module)
    for target in sorted(GRAPH.get(module, ())):
      # A package's __init__ re-exporting its own submodules is not a cycle between modules.
      if not target.startswith(module + ".") and not module.startswith(target + "."):
        visit(target, [*path, module], on_path, done)
    on_path.discard(module)
    done.add(module)

  done: set[str] = set()
  for module in sorted(GRAPH):
    visit(module, [], set(), done)
  assert cycles == []


@pytest.mark.parametrize("module", sorted(CLI_MODULES))
def test_every_cli_module_exists(module):
  assert module in GRAPH
