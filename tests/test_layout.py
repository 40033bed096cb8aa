"""The layout's rules, read from the source with `ast` (nothing is imported): no import cycles among the
project's modules, no branching on an architecture name outside its family package, and imports of the
project's own modules at the top of the file.

A function-local import of a project module is allowed only where it keeps a heavy package away from a
module that is otherwise free of it: the imported module reaches torch or an optional heavy package
(HEAVY) through its top-level imports, and the importing module does not. That is what keeps torch out of
`lipsync --help` (cli.py imports the training package inside `lipsync train`).

Each rule is also run on a small made-up tree holding the defect, so a checker that finds nothing
because it looks at nothing fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lipsync_cli"
HEAVY = {"torch", "torchvision", "diffusers", "transformers", "ray", "dlib", "mediapipe", "face_alignment"}
FAMILIES_DIR = ("lipsync_cli", "generators")  # lipsync_cli/generators/<family>/ may name its own architecture
ARCH_OPS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot)


def read_package(root: Path = PACKAGE) -> dict[str, tuple[str, str]]:
    """module name → (path relative to the package's parent, source)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = (rel.as_posix(), path.read_text())
    return out


def _imported(node: ast.AST, module: str, modules: dict) -> list[str]:
    """The modules an import statement names: `from a.b import c` → a.b.c when that is a module, else a.b
    (a package's __init__ that runs only because a submodule is imported is, as for `import a.b.c`, no edge)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative import: resolved against the importing module's package
        is_pkg = modules[module][0].endswith("__init__.py")
        pkg = module.split(".") if is_pkg else module.split(".")[:-1]
        pkg = pkg[:len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
    return subs + ([base] if len(subs) < len(node.names) else [])


def _top_level_imports(tree: ast.Module) -> list[ast.AST]:
    """Import statements run when the module is imported: module level, also inside if/try/class there."""
    found = []

    def walk(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, (ast.If, ast.Try, ast.ClassDef, ast.With)):
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    walk(handler.body)

    walk(tree.body)
    return found


def import_graph(modules: dict) -> tuple[dict[str, set], dict[str, set], dict[str, list]]:
    """(project edges, third-party top packages, function-local project imports as (line, target)) per module,
    from top-level imports only for the first two."""
    edges, third, local = {}, {}, {}
    for name, (_, source) in modules.items():
        tree = ast.parse(source)
        top = _top_level_imports(tree)
        edges[name], third[name], local[name] = set(), set(), []
        for node in top:
            for target in _imported(node, name, modules):
                if target.split(".")[0] == "lipsync_cli":
                    edges[name].update({target} & modules.keys())
                else:
                    third[name].add(target.split(".")[0])
        top_ids = set(map(id, top))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top_ids:
                for target in _imported(node, name, modules):
                    if target in modules:
                        local[name].append((node.lineno, target))
    return edges, third, local


def find_cycle(edges: dict[str, set]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, colouring visited modules)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def heavy_modules(edges: dict[str, set], third: dict[str, set]) -> set[str]:
    """Modules whose top-level imports reach a HEAVY package, directly or through project modules."""
    heavy = {m for m in edges if third[m] & HEAVY}
    grew = True
    while grew:
        grew = False
        for m in edges:
            if m not in heavy and edges[m] & heavy:
                heavy.add(m)
                grew = True
    return heavy


def misplaced_local_imports(modules: dict) -> list[str]:
    """'path:line imports target' for every function-local project import that the rule does not allow."""
    edges, third, local = import_graph(modules)
    heavy = heavy_modules(edges, third)
    return [f"{modules[m][0]}:{line} imports {target} inside a function"
            for m, found in local.items() for line, target in found
            if m in heavy or target not in heavy]


def _names_arch(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "arch") or \
        (isinstance(node, ast.Attribute) and node.attr == "arch")


def _names_a_family(node: ast.AST) -> bool:
    """A string written in the code ("refs"), or a literal list/tuple/set holding one."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return any(_names_a_family(x) for x in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def arch_branches(modules: dict) -> list[str]:
    """'path:line' of every comparison of an `arch` value with an architecture's name written in the code
    (`arch == "refs"`, `model.arch in ("wav2lip", "refs")`) outside lipsync_cli/generators/<family>/.
    Generic checks (`arch is None`, `arch not in ARCHITECTURES`, two checkpoints' arch equal) are no branch."""
    found = []
    for path, source in modules.values():
        parts = Path(path).parts
        if parts[:2] == FAMILIES_DIR and len(parts) > 3:  # lipsync_cli/generators/<family>/...
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Compare) and any(isinstance(op, ARCH_OPS) for op in node.ops) \
                    and any(_names_arch(x) for x in [node.left, *node.comparators]) \
                    and any(_names_a_family(x) for x in [node.left, *node.comparators]):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


# ---- the project itself --------------------------------------------------------------------------


def test_no_import_cycle():
    edges, _, _ = import_graph(read_package())
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"


def test_no_architecture_branch_outside_its_family():
    assert arch_branches(read_package()) == []


def test_project_imports_are_at_the_top():
    assert misplaced_local_imports(read_package()) == []


def test_the_checks_see_the_whole_package():
    modules = read_package()
    edges, _, _ = import_graph(modules)
    assert {"lipsync_cli.cli", "lipsync_cli.pipeline", "lipsync_cli.generators.base",
            "lipsync_cli.evaluation.lse"} <= modules.keys()
    assert "lipsync_cli.generators.base" in edges["lipsync_cli.generators.registry"]
    assert "lipsync_cli.train" in heavy_modules(edges, import_graph(modules)[1])  # torch, at its top


def test_base_and_registry_import_no_family():
    edges, _, _ = import_graph(read_package())
    for module in ("lipsync_cli.generators.base", "lipsync_cli.generators.registry"):
        assert not {e for e in edges[module] if e.startswith("lipsync_cli.generators.") and e.count(".") >= 3}


# ---- each check finds its defect (made-up trees) -------------------------------------------------


def _tree(**sources: str) -> dict[str, tuple[str, str]]:
    """module name (dots as __) → source, laid out as files would be."""
    out = {}
    for key, source in sources.items():
        name = key.replace("__", ".")
        is_pkg = name in {"lipsync_cli", "lipsync_cli.generators", "lipsync_cli.generators.refs"}
        path = name.replace(".", "/") + ("/__init__.py" if is_pkg else ".py")
        out[name] = (path, source)
    return out


def test_a_cycle_is_found():
    modules = _tree(lipsync_cli="", lipsync_cli__a="from lipsync_cli import b\n",
                    lipsync_cli__b="from lipsync_cli.c import f\n", lipsync_cli__c="import lipsync_cli.a\n")
    assert find_cycle(import_graph(modules)[0]) == ["lipsync_cli.a", "lipsync_cli.b", "lipsync_cli.c", "lipsync_cli.a"]
    # the same imports inside functions are no cycle at import time
    modules["lipsync_cli.c"] = ("lipsync_cli/c.py", "def f():\n    import lipsync_cli.a\n")
    assert find_cycle(import_graph(modules)[0]) is None


def test_an_arch_branch_is_found_outside_a_family_only():
    branch = ("def f(model, arch, ckpt):\n    if model.arch == 'refs' or arch not in ('wav2lip', 'refs'):\n"
              "        return arch is None or ckpt.arch != model.arch\n")
    modules = _tree(lipsync_cli="", lipsync_cli__pipeline=branch, lipsync_cli__generators="",
                    lipsync_cli__generators__registry=branch, lipsync_cli__generators__refs="",
                    lipsync_cli__generators__refs__generator=branch)
    hits = arch_branches(modules)
    assert len(hits) == 4  # both comparisons, in both modules outside a family package
    assert {hit.split(":")[0] for hit in hits} == {"lipsync_cli/pipeline.py", "lipsync_cli/generators/registry.py"}


def test_a_local_import_is_found_unless_it_keeps_torch_out():
    modules = _tree(lipsync_cli="", lipsync_cli__net="import torch\n", lipsync_cli__tools="X = 1\n",
                    lipsync_cli__cli="def run():\n    from lipsync_cli import net\n"
                                     "    from lipsync_cli.tools import X\n",
                    lipsync_cli__train="import torch\n\ndef f():\n    from lipsync_cli import net\n")
    assert misplaced_local_imports(modules) == ["lipsync_cli/cli.py:3 imports lipsync_cli.tools inside a function",
                                                "lipsync_cli/train.py:4 imports lipsync_cli.net inside a function"]


# ---- the registry maps a name, file or folder to its family --------------------------------------


def test_registry_maps_names_files_and_folders_to_families(tmp_path):
    from ckpt_utils import write_public_checkpoint

    from lipsync_cli.generators import registry
    from lipsync_cli.generators.refs.generator import ReferenceAttentionGenerator
    from lipsync_cli.generators.refs.network import RefsGenerator
    from lipsync_cli.generators.wav2lip.generator import Wav2LipGenerator
    from lipsync_cli.models import save_checkpoint

    assert registry.claiming_family("musetalk") == "musetalk"
    assert registry.claiming_family(str(tmp_path)) == "musetalk"  # a folder: a MuseTalk models/ folder
    wav2lip = write_public_checkpoint(tmp_path / "w.pth", "wav2lip", seed=0)
    refs = save_checkpoint(tmp_path / "refs.pt", RefsGenerator(96, 2, 8))
    assert registry.claiming_family(str(wav2lip)) is None  # a file: its checkpoint names the family
    assert type(registry.load_generator(str(wav2lip), device="cpu")) is Wav2LipGenerator
    gen = registry.load_generator(str(refs), device="cpu")
    assert type(gen) is ReferenceAttentionGenerator and gen.predicts_mask and gen.n_refs == 2
