"""The import rules of the layout, read from the sources with ``ast`` (nothing is imported).

- No module imports a test module (``test_*.py``) or a ``conftest.py``: helpers shared by
  tests live in the builders module of their tier (tests/{unit,integration,e2e}/builders.py).
- ``domain/`` imports none of ``projections/``, ``streams/`` and ``adapters/``.
- Only the CLI (a module under ``adapters/`` whose path contains ``cli``) imports
  ``streams/`` among the production packages; tests and benchmarks drive workers directly.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("domain", "projections", "streams", "adapters", "tests", "bench")
OUTER = ("projections", "streams", "adapters")

Sources = Mapping[str, str]
"""Repository-relative POSIX path of a module -> its source."""


def repository_sources() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for top in SCANNED
        for path in sorted((ROOT / top).rglob("*.py"))
    }


def module_of(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: str, source: str) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Per import statement (lazy imports inside functions included), every module it may
    name: ``from a.b import c`` names both ``a.b`` and ``a.b.c`` (``c`` may be a submodule)."""
    package = module_of(path).split(".")
    if not path.endswith("/__init__.py"):
        package = package[:-1]
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            yield node.lineno, tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            yield node.lineno, (base, *(f"{base}.{alias.name}" for alias in node.names))


def offending(
    sources: Sources, scanned: Callable[[str], bool], forbidden: Callable[[str], bool]
) -> Iterator[tuple[str, int, str]]:
    """``(path, line, module)`` for each import statement of a scanned module that names a
    forbidden module (the first such name)."""
    for path, source in sources.items():
        if not scanned(path):
            continue
        for line, modules in imported_modules(path, source):
            bad = [module for module in modules if forbidden(module)]
            if bad:
                yield path, line, bad[0]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_test_module(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name == "conftest.py" or (name.startswith("test_") and name.endswith(".py"))


def imports_of_test_modules(sources: Sources) -> list[str]:
    test_modules = {module_of(path) for path in sources if is_test_module(path)}
    return [
        f"{path}:{line} imports the test module {module}"
        for path, line, module in offending(sources, lambda _: True, test_modules.__contains__)
    ]


def domain_imports(sources: Sources) -> list[str]:
    return [
        f"{path}:{line} imports {module}: domain/ depends on no other folder"
        for path, line, module in offending(
            sources,
            lambda path: path.startswith("domain/"),
            lambda module: any(within(module, outer) for outer in OUTER),
        )
    ]


def streams_imports(sources: Sources) -> list[str]:
    return [
        f"{path}:{line} imports {module}: only the CLI (adapters/**cli*) imports streams/"
        for path, line, module in offending(
            sources,
            lambda path: (
                path.split("/", 1)[0] in ("domain", "projections", "adapters")
                and not (path.startswith("adapters/") and "cli" in path)
            ),
            lambda module: within(module, "streams"),
        )
    ]


# ---------------------------------------------------------------- the repository
def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    assert imports_of_test_modules(repository_sources()) == []


def test_the_domain_imports_no_other_folder() -> None:
    assert domain_imports(repository_sources()) == []


def test_only_the_cli_imports_the_stream_workers() -> None:
    assert streams_imports(repository_sources()) == []


# ---------------------------------------------------------------- the checks themselves
def test_every_form_of_importing_a_test_module_is_caught() -> None:
    sources = {
        "tests/__init__.py": "",
        "tests/unit/__init__.py": "",
        "tests/unit/conftest.py": "",
        "tests/unit/builders.py": "",
        "tests/unit/test_a.py": "from tests.unit.builders import x\n",
        "tests/unit/test_b.py": "from tests.unit.test_a import helper\n",
        "tests/unit/test_c.py": "from tests.unit import test_a, builders\n",
        "tests/unit/test_d.py": "import tests.unit.conftest\n",
        "tests/unit/test_e.py": "def f() -> None:\n    from .test_a import helper\n",
        "tests/unit/test_f.py": "from . import conftest\n",
        "bench/run.py": "from tests.unit.test_a import helper\n",
    }
    assert sorted(line.split(":")[0] for line in imports_of_test_modules(sources)) == [
        "bench/run.py",
        "tests/unit/test_b.py",
        "tests/unit/test_c.py",
        "tests/unit/test_d.py",
        "tests/unit/test_e.py",
        "tests/unit/test_f.py",
    ]


def test_the_domain_importing_an_outer_folder_is_caught() -> None:
    sources = {
        "domain/a.py": "from projections.core import Event\nfrom domain.values import Money\n",
        "domain/b.py": "def f() -> None:\n    import adapters.relay\n",
        "domain/c.py": "from streams import inbound\n",
        "domain/d.py": "from adapters_extra import x\nimport projectionsx\n",
        "projections/e.py": "from domain.events import X\n",
    }
    assert [line.split(":")[0] for line in domain_imports(sources)] == [
        "domain/a.py",
        "domain/b.py",
        "domain/c.py",
    ]


def test_a_streams_import_outside_the_cli_is_caught() -> None:
    sources = {
        "adapters/cli.py": "from streams.worker import WorkerProcess\n",
        "adapters/driving/cli/workers.py": "def f() -> None:\n    from streams import worker\n",
        "adapters/relay.py": "from streams.topics import ORDERS\n",
        "projections/core.py": "import streams.worker\n",
        "domain/x.py": "from streams.inbound import to_command\n",
        "streams/inbound.py": "from streams.worker import WorkerProcess\n",
        "tests/integration/test_w.py": "from streams.worker import WorkerProcess\n",
        "bench/inbound.py": "from streams.inbound import process_batch\n",
    }
    assert sorted(line.split(":")[0] for line in streams_imports(sources)) == [
        "adapters/relay.py",
        "domain/x.py",
        "projections/core.py",
    ]
