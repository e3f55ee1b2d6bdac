"""The public names of ``nas`` and ``nas.search_spaces`` are imported on first use (PEP 562). A
submodule with the same name as one of them would replace it the moment anything imports that
submodule (Python sets the package attribute), so ``nas.complexity(config)`` would raise
"'module' object is not callable" depending on what was imported before."""

import subprocess
import sys

PROBE = """
import importlib, pkgutil, types
import nas, nas.search_spaces
for pkg in (nas, nas.search_spaces):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if ".cli" not in info.name:
            importlib.import_module(info.name)
bad = [f"{pkg.__name__}.{name}" for pkg, names in ((nas, nas._PUBLIC), (nas.search_spaces, nas.search_spaces._EXPORTS))
       for name in names if isinstance(getattr(pkg, name), types.ModuleType)]
print(" ".join(bad) or "ok")
"""


def test_public_names_survive_importing_every_submodule():
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "ok"
