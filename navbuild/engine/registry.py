"""Where rules and runners come from: rule modules found through the ``navbuild.rules`` entry point.

A rule module exposes ``RULES`` (a list of navbuild.Rule) and ``RUNNERS`` (a list of Runner
subclasses). Importing it must not import a framework. navbuild's own rule modules are listed
here too, so a checkout works before it is installed.
"""
from __future__ import annotations

import importlib
import sys
from functools import lru_cache
from importlib import metadata

from navbuild.rule import Rule
from navbuild.runner import Runner

ENTRY_POINT_GROUP = "navbuild.rules"
BUILTIN_MODULES = ("rules.samples", "rules.torch", "rules.onnx", "rules.torch_compile",
                   "rules.tensorrt", "rules.torch_tensorrt")


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self.runners: dict[str, type[Runner]] = {}
        self.origins: dict[str, str] = {}
        self.rule_modules: list[str] = []  # the rule modules added, in order: a worker process adds the same
        self.framework_rules: list[Rule] = []  # rules that read a framework's models, per framework

    def add_module(self, module_name: str, plugin: bool = False) -> None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return  # a built-in rule family not written yet in this checkout
            raise
        except ImportError as exc:
            if not plugin:
                raise
            # an installed plug-in that does not fit this navbuild must not stop every build
            sys.stderr.write(f"navbuild: warning: rule module {module_name} cannot be imported ({exc}); "
                             f"its rules are left out\n")
            return
        for rule in getattr(module, "RULES", ()):
            self.add_rule(rule, module_name)
        for runner in getattr(module, "RUNNERS", ()):
            self.runners[runner.name] = runner
        self.rule_modules.append(module_name)

    def add_rule(self, rule: Rule, origin: str) -> None:
        previous = self.origins.get(rule.name)
        if previous and previous != origin:
            if _source_rules_for_other_frameworks(self.rules[rule.name], rule):  # e.g. each family's reference
                self.framework_rules.append(rule)
                return
            raise RegistryError(f"rule {rule.name!r} is declared by both {previous} and {origin}")
        self.rules[rule.name] = rule
        self.origins[rule.name] = origin
        if rule.frameworks:
            self.framework_rules.append(rule)

    def rule(self, name: str) -> Rule:
        try:
            return self.rules[name]
        except KeyError:
            raise RegistryError(f"unknown format {name!r}; known: {', '.join(sorted(self.rules))}")

    def runner(self, name: str) -> type[Runner]:
        try:
            return self.runners[name]
        except KeyError:
            raise RegistryError(f"unknown runner {name!r}; known: {', '.join(sorted(self.runners))}")

    def source_rule(self, name: str, framework: str) -> Rule | None:
        """A rule reading the source model of ``framework`` (``reference``), if one is declared."""
        for rule in [*self.framework_rules, *self.rules.values()]:
            if rule.name == name and (not rule.frameworks or framework in rule.frameworks):
                return rule
        return None


def _source_rules_for_other_frameworks(first: Rule, second: Rule) -> bool:
    """Two families may each declare a rule of one name (``reference``) for their own frameworks."""
    return bool(first.frameworks and second.frameworks and not set(first.frameworks) & set(second.frameworks))


def _entry_point_modules() -> list[str]:
    try:
        found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # a broken distribution must not break the build
        return []
    return [ep.value.split(":")[0] for ep in found]


def from_modules(module_names: list[str]) -> Registry:
    registry = Registry()
    for module_name in module_names:
        registry.add_module(module_name)
    return registry


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    registry = Registry()
    seen: set[str] = set()
    for module_name in (*BUILTIN_MODULES, *_entry_point_modules()):
        if module_name not in seen:
            seen.add(module_name)
            registry.add_module(module_name, plugin=module_name not in BUILTIN_MODULES)
    return registry
