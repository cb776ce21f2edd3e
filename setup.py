"""Packages: the framework (``decisionengine``) and the modules shipped with it.

The modules live in the top-level ``modules/`` directory of the repository and are
installed as ``decisionengine.modules``; setup.cfg cannot express that mapping, so the
package list is computed here.  Everything else is in setup.cfg.
"""

from setuptools import find_packages, setup

framework = find_packages(include=["decisionengine", "decisionengine.*"])
shipped = ["decisionengine.modules"] + [f"decisionengine.modules.{p}" for p in find_packages(where="modules")]

setup(packages=framework + shipped, package_dir={"decisionengine.modules": "modules"})
