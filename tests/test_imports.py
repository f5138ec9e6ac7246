"""Dependencies point one way: pipelines -> components -> trainer.

Every import statement of the project's modules (module level and inside
functions) is read with `ast`, and each rule below is checked on the whole graph.
"""

import ast
import pathlib
from collections.abc import Iterable, Mapping

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
  """The project modules `path` imports: `import a.b` and `from a import b` (b a module) import
  a.b; `from a import name` (a name defined in a) imports a. Relative imports count too."""
  source = _module_name(path)
  package = source if path.name == "__init__.py" else source.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
      names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
               for alias in node.names]
    else:
      continue
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        found.add(name)
  return found - {source}


# module -> the project modules its import statements name.
IMPORTS = {name: _imports(path, set(_project_modules()))
           for name, path in _project_modules().items()}


def _packages_of(module: str) -> list[str]:
  """a.b.c -> [a, a.b]: the packages whose __init__ runs before a.b.c does."""
  parts = module.split(".")
  return [".".join(parts[:i]) for i in range(1, len(parts))]


def runs_first(imports: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
  """module -> the modules that importing it runs, directly: the ones it imports, and the
  packages those sit in, since importing a.b.c runs a/__init__.py and a/b/__init__.py first.

  A module's own packages are left out of the second kind: by the time it runs they have run,
  or are running and imported it (a package's __init__ importing its own submodules), and
  importing a sibling submodule then needs nothing more of them. Importing a name from its
  own package (`from a import name` in a.b) does need the package's __init__ to have run to
  that name, so that import stays an edge.
  """
  graph = {}
  for module, targets in imports.items():
    own = {module, *_packages_of(module)}
    graph[module] = set(targets) - {module}
    for target in targets:
      graph[module] |= set(_packages_of(target)) - own
  return graph


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
  """The cycles a depth-first walk closes, each as [a, b, ..., a]; [] exactly when the graph
  has no cycle (a walk closes one on every back edge, and a graph with a cycle has one)."""
  cycles: list[list[str]] = []
  path: list[str] = []
  done: set[str] = set()

  def visit(module: str) -> None:
    path.append(module)
    for target in sorted(graph.get(module, ())):
      if target in path:
        cycles.append([*path[path.index(target):], target])
      elif target not in done:
        visit(target)
    path.pop()
    done.add(module)

  for module in sorted(graph):
    if module not in done:
      visit(module)
  return cycles


def _component(module: str) -> str | None:
  """components.glue_eval.report -> glue_eval; None outside components/."""
  parts = module.split(".")
  return parts[1] if parts[0] == "components" and len(parts) > 1 else None


def _violations(rule) -> list[str]:
  return sorted(f"{source} imports {target}" for source, targets in IMPORTS.items()
                for target in targets if rule(source, target))


def test_the_walk_sees_the_graph():
  # A walk that found nothing would pass every rule below.
  assert "trainer.contract" in IMPORTS["trainer.task"]
  assert "components.tokenize_pack.config" in IMPORTS["components.tokenize_pack.component"]
  assert "pipelines.pipeline" in IMPORTS["pipelines.local_runner"]
  assert len(IMPORTS) > 40


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
  assert [" -> ".join(cycle) for cycle in find_cycles(runs_first(IMPORTS))] == []


def test_the_cycle_finder_finds_a_planted_cycle():
  graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"a"}}
  assert find_cycles(graph) == [["a", "b", "c", "a"]]
  assert find_cycles({**graph, "c": set()}) == []


def test_a_cycle_through_a_package_init_is_found():
  # The cycle this project had: the task imported the export's Hugging Face loader, whose
  # package __init__ imports the run export, which imported the task.
  imports = {"task": {"export.huggingface"}, "export": {"export.huggingface", "export.run"},
             "export.huggingface": set(), "export.run": {"task", "export.huggingface"}}
  graph = runs_first(imports)
  assert graph["task"] == {"export.huggingface", "export"}
  assert find_cycles(graph) == [["export", "export.run", "task", "export"]]


def test_a_package_init_importing_its_own_submodules_is_no_cycle():
  imports = {"p": {"p.a", "p.b"}, "p.a": {"p.b"}, "p.b": set(), "q": {"p.a"}}
  assert find_cycles(runs_first(imports)) == []
  # Unless a submodule imports a name from the package back.
  assert find_cycles(runs_first({**imports, "p.b": {"p"}})) == [["p", "p.a", "p.b", "p"]]


@pytest.mark.parametrize("module", sorted(CLI_MODULES))
def test_every_cli_module_exists(module):
  assert module in IMPORTS
