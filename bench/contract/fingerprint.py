"""The code hash of a recipe module: the same on every CPython from 3.10 on, computed with the stdlib alone.

Why: a record is evidence for the fingerprint it carries; if the hash of the same source differed
between interpreters (Python 3.12 adds `type_params=[]` to every function in `ast.dump`, 3.13 hides
empty fields by default), a user on another Python, or the GPU machine, would see every committed
record as an older fingerprint. So the tree is written out by this module's own serializer, which
gives what `ast.dump(tree)` gave on CPython 3.10 and 3.11 (the interpreters that pinned
recipes/FROZEN.json) and ignores fields later versions add while they are empty.

What counts: the module's syntax tree without docstrings, imports and the metadata assignments
(CLAIMS, ASSUMPTIONS, CONSTRAINTS, VARIANTS, DOCUMENT_LOG), so comments, prose and claims never
change a fingerprint and code always does.

`python -m bench.contract.fingerprint [RECIPES_DIR]` prints one `label code-hash` line per reading (a recipe,
then its variants, read from the source without importing it): any interpreter can check FROZEN.json.
"""
from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path
from typing import Optional

METADATA = ("CLAIMS", "ASSUMPTIONS", "CONSTRAINTS", "VARIANTS", "DOCUMENT_LOG")
# Fields that CPython added to existing nodes after 3.11; empty on any code 3.10 and 3.11 can parse.
LATER_FIELDS = frozenset({"type_params"})
ROOT = Path(__file__).resolve().parents[2]          # the repository (or the installed tree): bench/ and recipes/
RECIPES_DIR = ROOT / "recipes"


class _CodeOnly(ast.NodeTransformer):
    """Drops what does not change what a recipe computes: docstrings, imports, metadata assignments."""

    def generic_visit(self, node):
        super().generic_visit(node)
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
        return node

    def visit_Import(self, node):
        return None

    visit_ImportFrom = visit_Import

    def visit_Assign(self, node):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        return None if names and len(names) == len(node.targets) and set(names) <= set(METADATA) else node

    def visit_AnnAssign(self, node):
        return None if isinstance(node.target, ast.Name) and node.target.id in METADATA else node


def dump(node) -> str:
    """`ast.dump(node)` as CPython 3.10/3.11 writes it (annotated fields, no positions), on any version:
    an optional field left at None is omitted, every other field is shown, a later version's new
    field only when it holds something."""
    if isinstance(node, ast.AST):
        parts = []
        for name in node._fields:
            try:
                value = getattr(node, name)
            except AttributeError:
                continue
            if value is None and getattr(type(node), name, ...) is None:
                continue
            if name in LATER_FIELDS and not value:
                continue
            parts.append(f"{name}={dump(value)}")
        return f"{type(node).__name__}({', '.join(parts)})"
    if isinstance(node, list):
        return "[" + ", ".join(dump(x) for x in node) + "]"
    return repr(node)


def code_hash(path: Path) -> str:
    """Hash of what the module computes: its syntax tree without docstrings, imports and metadata."""
    tree = _CodeOnly().visit(ast.parse(Path(path).read_text(encoding="utf-8")))
    return hashlib.sha256(dump(tree).encode()).hexdigest()[:16]


def variant_names(path: Path) -> list[str]:
    """The names of a module's VARIANTS, read from its source: each `Variant("name", ...)` in the list."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == "VARIANTS" for t in targets) and node.value is not None:
            return [call.args[0].value for call in getattr(node.value, "elts", [])
                    if isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)]
    return []


def readings(folder: Path = RECIPES_DIR, unreadable: Optional[dict] = None) -> list[tuple[str, str]]:
    """(label, code hash) of every reading in a recipes folder, recipes in name order, variants after each; a
    module that does not parse is left out (and named in `unreadable`, name -> why, when given)."""
    out = []
    for path in sorted(Path(folder).glob("*.py")):
        if path.stem.startswith("_"):
            continue
        try:
            code = code_hash(path)
        except (SyntaxError, ValueError, UnicodeDecodeError, OSError) as exc:
            if unreadable is not None:
                unreadable[path.stem] = f"{exc.__class__.__name__}: {exc}"
            continue
        out += [(path.stem, code)] + [(f"{path.stem}:{v}", code) for v in variant_names(path)]
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else RECIPES_DIR
    if not folder.is_dir():
        print(f"error: {folder} is not a folder of recipe modules", file=sys.stderr)
        return 2
    unreadable: dict[str, str] = {}
    for label, code in readings(folder, unreadable):
        print(label, code)
    for name, why in unreadable.items():
        print(f"error: recipes/{name}.py cannot be read ({why})", file=sys.stderr)
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
