#!/usr/bin/env python3
"""requirements.py GROUP...: print the requirements of the named groups of
pyproject.toml, one a line, for `pip install -r /dev/stdin`.

A group is `build-system` ([build-system].requires), `project`
([project].dependencies) or the name of an extra ([project.optional-dependencies]).
pyproject.toml is the one place Python requirements are pinned; the Makefile
installs them through this script, without building the project (the project
itself is installed with --no-build-isolation --no-deps).
"""
import os
import sys
import tomllib

PYPROJECT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")


def requirements(groups, pyproject=PYPROJECT):
    with open(pyproject, "rb") as f:
        meta = tomllib.load(f)
    extras = meta["project"].get("optional-dependencies", {})
    known = {"build-system": meta["build-system"]["requires"],
             "project": meta["project"].get("dependencies", []), **extras}
    out = []
    for group in groups:
        if group not in known:
            raise SystemExit("requirements.py: no group %r in pyproject.toml (known: %s)"
                             % (group, ", ".join(known)))
        out += [r for r in known[group] if r not in out]
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.split("\n\n")[0])
    print("\n".join(requirements(sys.argv[1:])))
