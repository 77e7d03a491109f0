"""Cells that only show something (tag `demo`) are skipped while a hand-in is graded, unless grading needs them.

An instructor tags `demo` the locked cells of the source notebook that only show something: a training run, generation
demos, TensorBoard, a bonus, plots, time estimates. While a hand-in is graded (GradedExecute, coursekit/scoring.py),
such a cell is skipped, unless a cell that does run reads a name it binds. The rules:

- the decision is the instructor's only: a cell is a demo cell when the *source* notebook's cell of the same nbgrader
  grade_id carries the tag and is locked (nbgrader's OverwriteCells has restored its source in the hand-in before
  anything runs: a student can't change what it does), and is neither a solution, a test (or any graded) cell nor a
  grader-only cell (`problems` says why a tagged cell is not valid; such a tag is ignored). A hand-in's own metadata and
  tags never make anything skip;
- every other cell runs: solution cells, unlocked cells, cells a student added, test cells;
- dependencies are kept, per hand-in: a demo cell runs when a later cell that runs reads a name it binds, and then, in
  turn, the demo cells before it whose names it reads. Names come from Python's `ast` and `symtable`, after IPython's
  syntax is turned into Python: what a cell binds (assignments, def, class, import, for targets, with-as, walrus,
  `del`, `global` names assigned in its functions, and objects it changes through an attribute or an item), and the
  global names it reads, at its top level (a name bound earlier in the same cell, unconditionally, is not read from
  outside) and inside its functions, classes, lambdas and comprehensions (a parameter or local variable is not a
  global);
- a cell that can't be parsed, or that reaches names dynamically (globals(), vars(), locals(), eval, exec,
  get_ipython (IPython's magics become calls of it), __main__, sys.modules, __import__, frames' globals), reads
  anything: every demo cell before it runs.

What is not followed: a demo cell's effects other than the names it binds (files it writes, objects changed in place
by a method call, the random generators' state). Tag only cells whose effects no check and no exercise needs.
"""

import ast
import functools
import symtable
from dataclasses import dataclass

from . import answers

DEMO = "demo"  # the tag of the source notebook's cells that grading may skip
GRADER_ONLY = "grader-only"  # (coursekit/scoring.py's tag, repeated here: scoring imports this module)

# Names and attributes through which code reaches global names that no static analysis sees.
DYNAMIC_NAMES = frozenset({"globals", "vars", "locals", "eval", "exec", "get_ipython", "__import__", "__main__",
                           "__builtins__", "__builtin__", "builtins", "__dict__"})
DYNAMIC_ATTRIBUTES = frozenset({"modules", "__dict__", "f_globals", "f_locals", "__globals__", "__builtins__"})
COMPREHENSIONS = frozenset({"listcomp", "setcomp", "dictcomp"})  # run at once where they are (a genexpr may wait)
ANYTHING = None  # the reads of a cell that may read any name


@dataclass(frozen=True)
class Names:
    """The global names a cell binds, and those it reads from outside (ANYTHING: it may read any)."""
    binds: frozenset
    reads: frozenset | None


def tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", []) or []


def problems(cell) -> list[str]:
    """Why a source cell tagged `demo` can't be skipped (none for a valid demo cell, or an untagged cell)."""
    if DEMO not in tags(cell):
        return []
    meta = cell.get("metadata", {}).get("nbgrader", {})
    found = []
    if cell.get("cell_type") != "code":
        found.append("not a code cell")
    if not meta.get("grade_id"):
        found.append("no nbgrader grade_id")
    if not meta.get("locked"):
        found.append("not locked")
    if meta.get("solution"):
        found.append("a solution cell")
    if meta.get("grade"):
        found.append("a graded (test) cell")
    if GRADER_ONLY in tags(cell):
        found.append("a grader-only cell")
    return found


def demo_ids(source_cells: list) -> set[str]:
    """The grade_ids of the source notebook's valid demo cells."""
    return {answers.grade_id(c) for c in source_cells if DEMO in tags(c) and not problems(c)}


def python_source(source: str) -> str:
    """A cell's source as plain Python: IPython's syntax (magics, `!` commands) made into calls of get_ipython()."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


@functools.lru_cache(maxsize=512)  # the locked cells are the same in every hand-in a worker grades
def names_of(source: str) -> Names:
    """What a cell binds and reads (see the module's docstring); a cell that can't be parsed reads anything."""
    try:
        code = python_source(source)
        tree = ast.parse(code)
        table = symtable.symtable(code, "<cell>", "exec")
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return Names(frozenset(), ANYTHING)
    binds = frozenset(_binds(tree, table))
    return Names(binds, ANYTHING if _is_dynamic(tree) else frozenset(_reads(tree, table)))


def _is_dynamic(tree: ast.AST) -> bool:
    """Whether code reaches names in a way no analysis sees (DYNAMIC_NAMES, DYNAMIC_ATTRIBUTES, "__main__")."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in DYNAMIC_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ATTRIBUTES:
            return True
        if isinstance(node, ast.alias) and {node.name, *node.name.split(".")} & DYNAMIC_NAMES:
            return True
        if isinstance(node, ast.Constant) and node.value == "__main__":
            return True
    return False


def _binds(tree: ast.Module, table: symtable.SymbolTable) -> set[str]:
    """The global names a cell binds: at its top level (symtable), `global` names its functions assign, and the names
    of the objects it changes through an attribute or an item (x.a = ..., x[i] = ..., del x[i])."""
    names = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    for scope in _descendants(table):
        names |= {s.get_name() for s in scope.get_symbols() if s.is_declared_global() and s.is_assigned()}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
    return names


def _descendants(table: symtable.SymbolTable):
    for child in table.get_children():
        yield child
        yield from _descendants(child)


def _reads(tree: ast.Module, table: symtable.SymbolTable) -> set[str]:
    """The global names a cell reads from outside: at its top level and in what runs at once (class bodies,
    comprehensions), those not bound unconditionally earlier in the cell; in functions, lambdas and generator
    expressions (they run later, when a global may hold anything), every global they read."""
    later, at_once = _scope_reads(table)
    reads, bound = set(later), set()
    for statement in tree.body:
        start, end = statement.lineno, statement.end_lineno
        now = _top_level_loads(statement) | {name for line, name in at_once if start <= line <= end}
        reads |= now - bound
        bound |= _definite_binds(statement)
    return reads


def _scope_reads(table: symtable.SymbolTable, deferred: bool = False) -> tuple[set[str], list]:
    """The global names the nested scopes of `table` read: (those read later, [(line, name)] of those read at once)."""
    later, at_once = set(), []
    for child in table.get_children():
        waits = deferred or (child.get_type() == "function" and child.get_name() not in COMPREHENSIONS)
        read = {s.get_name() for s in child.get_symbols() if s.is_referenced() and s.is_global()}
        if waits:
            later |= read
        else:
            at_once += [(child.get_lineno(), name) for name in read]
        deeper_later, deeper_at_once = _scope_reads(child, waits)
        later |= deeper_later
        at_once += [(child.get_lineno(), name) for _, name in deeper_at_once]
    return later, at_once


class _TopLevelLoads(ast.NodeVisitor):
    """The names a statement loads in the module's own scope: not inside the bodies of its functions, lambdas, classes
    or comprehensions (symtable's nested scopes), but in their decorators, defaults, bases and first iterables."""

    def __init__(self):
        self.names = set()

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self.names.add(node.id)

    def visit_AugAssign(self, node):  # x += 1 reads x first
        if isinstance(node.target, ast.Name):
            self.names.add(node.target.id)
        self.generic_visit(node)

    def _arguments(self, args: ast.arguments):
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.visit(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)

    def visit_FunctionDef(self, node):
        for expression in [*node.decorator_list, node.returns]:
            if expression is not None:
                self.visit(expression)
        self._arguments(node.args)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self._arguments(node.args)

    def visit_ClassDef(self, node):
        for expression in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expression)

    def _comprehension(self, node):
        self.visit(node.generators[0].iter)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def _top_level_loads(statement: ast.stmt) -> set[str]:
    visitor = _TopLevelLoads()
    visitor.visit(statement)
    return visitor.names


def _definite_binds(statement: ast.stmt) -> set[str]:
    """The names a top-level statement binds whenever it completes (for loops, ifs and tries may bind nothing)."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name.split(".")[0]) for a in statement.names if a.name != "*"}
    targets = {ast.Assign: lambda s: s.targets, ast.AnnAssign: lambda s: [s.target] if s.value else [],
               ast.AugAssign: lambda s: [s.target], ast.With: lambda s: [i.optional_vars for i in s.items],
               ast.AsyncWith: lambda s: [i.optional_vars for i in s.items]}.get(type(statement))
    if targets is None:
        return set()
    return {n.id for t in targets(statement) if t is not None for n in ast.walk(t)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def skipped(cells: list, source_cells: list) -> set[int]:
    """The indices of the hand-in's `cells` that grading skips: its demo cells (by grade_id, per the source notebook's
    `source_cells`) that no cell that runs needs, directly or through other demo cells."""
    demos = demo_ids(source_cells)
    candidates = {i for i, c in enumerate(cells) if c.get("cell_type") == "code" and answers.grade_id(c) in demos}
    if not candidates:
        return set()
    names = {i: names_of(_code_of(c, source_cells)) for i, c in enumerate(cells) if c.get("cell_type") == "code"}
    needed, pending = set(), [i for i in names if i not in candidates]
    while pending:
        reader = pending.pop()
        reads = names[reader].reads
        for i in sorted(candidates - needed):
            if i < reader and (reads is ANYTHING or names[i].binds & reads):
                needed.add(i)
                pending.append(i)
    return candidates - needed


def _code_of(cell, source_cells: list) -> str:
    """The code a hand-in's cell runs while graded: the source notebook's for a locked cell (nbgrader restored it; the
    grader runs its own test cells), the hand-in's otherwise."""
    grade_id = answers.grade_id(cell)
    if grade_id:
        for source in source_cells:
            meta = source.get("metadata", {}).get("nbgrader", {})
            if answers.grade_id(source) == grade_id and meta.get("locked") and not meta.get("solution"):
                return source.get("source", "")
    return cell.get("source", "")
