"""The package layering of the architecture: albert never imports bio, no
bio package imports one above it, scripts are imported by nothing, and the
project's modules have no import cycle. Read from the source with `ast`, so
lazy imports inside functions count too."""
import ast
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SCRIPTS = {"run_pretraining", "run_ner", "create_pretraining_data"}

# What each bio package may import (besides itself, albert and bio.paths).
ALLOWED = {
    "bio.text": set(),
    "bio.corpus": {"bio.text"},
    # bio.beam.tag runs bio.serving.tag's code per file (and so needs what
    # bio.serving imports).
    "bio.beam": {"bio.text", "bio.corpus", "bio.serving", "bio.ner"},
    "bio.ner": {"bio.text"},
    "bio.serving": {"bio.text", "bio.corpus", "bio.ner"},  # tags literature
    # Experiments build corpora and fine-tune (through the tools).
    "bio.experiments": {"bio.text", "bio.corpus", "bio.ner"},
    "bio.demo": {"bio.text", "bio.corpus", "bio.ner", "bio.serving",
                 "bio.experiments"},
    "bio.paths": set(),
    "bio.console": set(),  # runs tools by module name, imports none
}


def _module_name(path):
  rel = os.path.relpath(path, ROOT)[:-len(".py")]
  parts = rel.split(os.sep)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def _project_modules():
  found = {}
  for top in ("albert", "bio"):
    for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
      for name in names:
        if name.endswith(".py"):
          path = os.path.join(dirpath, name)
          found[_module_name(path)] = path
  for script in SCRIPTS:
    found[script] = os.path.join(ROOT, script + ".py")
  return found


def _imports(path, modules):
  """Project modules imported by the file at `path`."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [node.module] + ["%s.%s" % (node.module, a.name)
                               for a in node.names]
    else:
      continue
    out.update(n for n in names if n in modules)
  return out


def _graph():
  modules = _project_modules()
  return {name: _imports(path, modules) for name, path in modules.items()}


def _package(name):
  """bio.ner.runner -> bio.ner; albert.x -> albert; scripts unchanged."""
  parts = name.split(".")
  return ".".join(parts[:2]) if parts[0] == "bio" else parts[0]


def test_graph_is_read():
  graph = _graph()
  assert "bio.ner.iob" in graph["bio.ner.datasets"]
  assert "albert.modeling" in graph["albert.run_pretraining"]


def test_albert_never_imports_bio_and_nothing_imports_a_script():
  for name, deps in _graph().items():
    if name.startswith("albert"):
      assert not [d for d in deps if d.startswith("bio")], name
    assert not deps & SCRIPTS, name


def test_bio_packages_import_only_below_them():
  for name, deps in _graph().items():
    if not name.startswith("bio.") or name == "bio":
      continue
    own = _package(name)
    allowed = ALLOWED[own] | {own, "bio.paths", "bio"}
    for dep in deps:
      if dep.startswith("bio"):
        assert _package(dep) in allowed, "%s imports %s" % (name, dep)


def test_no_import_cycle():
  graph = _graph()
  state = {}

  def visit(node, stack):
    state[node] = "open"
    for dep in sorted(graph[node]):
      if state.get(dep) == "open":
        cycle = stack[stack.index(dep):] + [dep]
        raise AssertionError("import cycle: " + " -> ".join(cycle))
      if dep not in state:
        visit(dep, stack + [dep])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
