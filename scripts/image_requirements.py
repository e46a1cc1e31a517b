#!/usr/bin/env python3
"""Third-party requirements of local packages, for the image builds' dependency layer.

    image_requirements.py /src/libs/core /src/services/asr[serve] > requirements.txt
    image_requirements.py --constraints constraints.txt --skip-installed > constraints-left.txt

The first form reads only each package's pyproject.toml (so the Dockerfiles can install the
dependencies in a layer that a source change does not invalidate) and prints its dependencies
and the named extras, leaving out the local ``omoai-*`` packages themselves. The second prints the
pins of constraints.txt for packages not installed yet: after vLLM has installed the torch and
transformers it was built against, the rest is still pinned without contradicting it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(specs: list[str]) -> list[str]:
    out: list[str] = []
    for spec in specs:
        path, _, extras = spec.partition("[")
        project = tomllib.loads((Path(path) / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        deps = list(project.get("dependencies", []))
        for extra in filter(None, (e.strip() for e in extras.rstrip("]").split(","))):
            if extra not in project.get("optional-dependencies", {}):
                raise SystemExit(f"{path}: no extra named {extra!r}")
            deps += project["optional-dependencies"][extra]
        for dep in deps:
            m = _NAME.match(dep)
            if m and not _canonical(m.group(1)).startswith("omoai-") and dep not in out:
                out.append(dep)
    return out


def constraints_left(path: Path) -> list[str]:
    installed = {_canonical(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _NAME.match(line)
        if line.strip().startswith("#") or not m:
            continue
        if _canonical(m.group(1)) not in installed:
            out.append(line.strip())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", help="package directories, optionally with [extras]")
    parser.add_argument("--constraints", type=Path, help="print the pins of this file ...")
    parser.add_argument("--skip-installed", action="store_true", help="... for packages not installed yet")
    args = parser.parse_args(argv)
    lines = constraints_left(args.constraints) if args.constraints else requirements(args.packages)
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
