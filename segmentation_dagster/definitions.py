"""The Definitions object: everything in the ``defs/`` folder (see ``[tool.dg]`` in
pyproject.toml), loaded the way ``dg`` and ``dagster dev`` load it."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(project_root=Path(__file__).resolve().parent.parent)
