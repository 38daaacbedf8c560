"""navbuild's Python API: Model Navigator's way of working (``optimize(model, dataloader, config)``,
packages, in-place optimization of modules in a pipeline) on the engine and store that the CLI uses.

Every call describes its models as the mapping that navbuild.toml holds plus a project root
(``project.py``), validated by the engine's one validator, and builds through the engine's sessions:
what the API built, the CLI finds in the store, and the other way round. Importing this package
imports no framework; the modules that handle live models import torch when first used.
"""
