"""The README's architecture list names files that exist, and every step of the data path in
`monitor/` and `liveness/` has its place in it."""

from __future__ import annotations

import re

from tests.conftest import ROOT

# Plumbing a newcomer finds by its Django or Python name, not a step of the data path.
NOT_STEPS = {
    "monitor/__init__.py", "monitor/admin.py", "monitor/apps.py", "monitor/celery.py",
    "monitor/settings.py", "monitor/urls.py", "monitor/urls_labelling.py", "monitor/urls_review.py",
    "monitor/wsgi.py", "monitor/staticfinders.py", "monitor/converters.py", "monitor/errors.py",
}  # fmt: skip


def architecture() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]


def named_paths() -> set[str]:
    """Every `path` in the section; `views/x.py` and `models/x.py` are short for `monitor/...`."""
    found = set()
    for name in re.findall(r"`([\w./-]+/[\w./-]*|[\w-]+\.py)`", architecture()):
        found.add(f"monitor/{name}" if name.startswith(("views/", "models/")) else name)
    return found


def test_it_names_only_files_that_exist():
    missing = sorted(p for p in named_paths() if not (ROOT / p.split(" ")[0]).exists())
    assert not missing, f"README architecture names files that are not there: {missing}"


def test_it_names_every_module_of_the_data_path():
    named = named_paths()
    # A sub-folder named whole covers its files; `monitor/` itself covers nothing.
    folders = {p.rstrip("/") for p in named if (ROOT / p).is_dir() and "/" in p.rstrip("/")}
    modules = []
    for package in ("monitor", "liveness"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if {"migrations", "tests"} & set(path.parts) or rel in NOT_STEPS or path.name == "__init__.py":
                continue
            if rel in named or any(rel.startswith(f"{f}/") for f in folders):
                continue
            modules.append(rel)
    assert not modules, f"README architecture does not say where these belong: {modules}"
