"""The package surface: lazy re-exports, layering of the stages."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

STAGES = ["space", "studies", "metadataset", "prior", "sampler", "runners", "review", "cli"]


def test_import_is_light_and_every_export_resolves():
    code = (
        "import sys, tuner\n"
        "assert 'torch' not in sys.modules, 'import tuner must not import torch'\n"
        "for name in tuner.__all__: getattr(tuner, name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_stages_import_only_earlier_stages():
    """The data flow goes one way: space -> studies -> ... -> review -> cli."""
    for i, stage in enumerate(STAGES):
        for path in (REPO / "tuner" / stage).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[0] == "tuner" and len(parts) > 1 and parts[1] in STAGES:
                        later = STAGES.index(parts[1])
                        assert later <= i, f"{path} imports later stage {node.module}"


def _module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_of_the_package_imports_another_in_a_cycle():
    """Modules form a DAG, counting imports inside functions too (a lazy import is still a cycle
    a reader must untangle); a package's ``__init__`` re-exporting its own children is fine."""
    paths = list((REPO / "tuner").rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = _module_name(path)
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                own_child = path.name == "__init__.py" and target.startswith(name + ".")
                if target in modules and target != name and not own_child:
                    deps.add(target)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_the_cli_answers_help_without_torch_or_optuna():
    """``mttune --help``, ``--version`` and usage errors do not import the heavy stages."""
    code = (
        "import sys\n"
        "from tuner.cli import main\n"
        "for argv in (['--help'], ['--version'], ['no-such-command']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted({'torch', 'optuna', 'ray'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert re.search(r"review +how far to trust", out.stdout) and "invalid choice" in out.stderr


def test_every_command_has_its_full_help(capsys):
    from tuner.cli import main

    for command, option in [
        ("run", "--sampler"),
        ("meta-train", "--inner-steps"),
        ("prior", "show"),
        ("review", "--top-k"),
        ("verify", "--repeats"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: mttune {command}") and option in out


@pytest.mark.parametrize("command", ["run", "meta-train", "review", "verify"])
@pytest.mark.parametrize("seed", ["-1", "4294967296", "abc"])
def test_every_seed_flag_refuses_what_numpy_would_crash_on(capsys, command, seed):
    from tuner.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--seed", seed])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed: must be" in err and seed in err


@pytest.mark.parametrize("package", ["tuner.prior", "tuner.runners"])
def test_lazy_packages_export_every_name_and_import_only_what_is_asked(package):
    code = (
        "import importlib, sys\n"
        f"p = importlib.import_module({package!r})\n"
        "assert 'torch' not in sys.modules and 'ray' not in sys.modules\n"
        "for name in p.__all__: getattr(p, name)\n"
        "assert sorted(dir(p)) == sorted(p.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
