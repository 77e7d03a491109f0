"""An assignment's own material, found by convention in source_text/<assignment>/ (see layout.MATERIAL).

- notebook.py: the instructor notebook's text twin (read by `make notebook`, written by `make notebook-text`);
- catalogue.py: `ENTRIES`, its catalogue of right and wrong answers (coursekit.catalogue.Entry), and
  `DEMO_MISTAKES`, the names of the entries that the demo's "mistakes" hand-in makes;
- bench_training.py (optional): its training benchmark, a `main(...)` that `make bench-training` calls.

The kit imports these files by their path; it holds no assignment's content itself.
"""

import importlib.util
import sys
from types import ModuleType

from .layout import Assignment


class NoMaterial(LookupError):
    pass


def module(assignment: Assignment, name: str) -> ModuleType:
    """The assignment's source_text/<assignment>/<name>.py, imported (once) as coursekit_material.<assignment>.<name>."""
    path = assignment.material_file(f"{name}.py")
    if path is None:
        raise NoMaterial(f"{assignment} has no {name}.py in {assignment.material}")
    qualified = f"coursekit_material.{assignment.name}.{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[qualified]
            raise
    return sys.modules[qualified]


def has(assignment: Assignment, name: str) -> bool:
    return assignment.material_file(f"{name}.py") is not None
