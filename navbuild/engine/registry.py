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

from navbuild.rule import SOURCE, Rule
from navbuild.runner import Runner

ENTRY_POINT_GROUP = "navbuild.rules"
BUILTIN_MODULES = ("rules.samples", "rules.torch", "rules.onnx", "rules.torch_compile",
                   "rules.tensorrt", "rules.torch_tensorrt", "rules.onnx_file", "rules.tensorflow", "rules.jax")


class RegistryError(RuntimeError):
    pass


class Registry:
    """Rules by format name, each serving some frameworks (or any), and runners by name.

    One format name may have several rules as long as no framework is served by two of them
    (``onnx`` exported from torch by one family, from TensorFlow by another).
    """

    def __init__(self) -> None:
        self.by_name: dict[str, list[Rule]] = {}
        self.runners: dict[str, type[Runner]] = {}
        self.origins: dict[int, str] = {}  # id(rule) -> the module that declared it
        self.rule_modules: list[str] = []  # the rule modules added, in order: a worker process adds the same
        self.runner_origins: dict[str, str] = {}  # runner name -> the module that declared it

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
            self.runner_origins[runner.name] = module_name
        self.rule_modules.append(module_name)

    def from_modules_alone(self) -> bool:
        """Whether ``from_modules(self.rule_modules)`` gives this registry again (what a worker
        process does); not when code added rules or runners of its own (a test's registry)."""
        modules = set(self.rule_modules)
        return (all(origin in modules for origin in self.origins.values())
                and all(self.runner_origins.get(name) in modules for name in self.runners))

    def add_rule(self, rule: Rule, origin: str) -> None:
        known = self.by_name.setdefault(rule.name, [])
        if any(other is rule for other in known):
            return
        for other in known:
            shared = (set(rule.frameworks) & set(other.frameworks)) if rule.frameworks and other.frameworks else {"*"}
            if shared:
                serves = "any" if shared == {"*"} else ", ".join(sorted(shared))
                raise RegistryError(f"rule {rule.name!r} for {serves} models is declared by both "
                                    f"{self.origins[id(other)]} and {origin}")
        known.append(rule)
        self.origins[id(rule)] = origin

    def names(self) -> set[str]:
        """Every rule name, roles included (a model may not take one as its name)."""
        return set(self.by_name)

    def rule(self, name: str, framework: str | None = None) -> Rule:
        """The rule of format ``name`` for models of ``framework`` (None: the only rule of that name)."""
        candidates = self.by_name.get(name, [])
        if not candidates:
            raise RegistryError(f"unknown format {name!r}; known: {', '.join(sorted(self.formats()))}")
        if framework is not None:
            candidates = [rule for rule in candidates if rule.serves(framework)]
            if not candidates:
                raise RegistryError(f"format {name!r} is not available for {framework} models; their formats: "
                                    f"{', '.join(sorted(self.formats(framework))) or 'none'}")
        if len(candidates) > 1:
            raise RegistryError(f"format {name!r} has a rule per framework; name the model's framework")
        return candidates[0]

    def formats(self, framework: str | None = None) -> dict[str, Rule]:
        """Format name -> rule, roles left out. For a framework: the rules that serve its models and
        whose upstream format does too; None: every format (the first rule declared for each)."""
        found: dict[str, Rule] = {}
        for name, rules in self.by_name.items():
            for rule in rules:
                if rule.role is None and (framework is None or self._available(rule, framework, set())):
                    found.setdefault(name, rule)
        return found

    def _available(self, rule: Rule, framework: str, visiting: set[str]) -> bool:
        if not rule.serves(framework) or rule.name in visiting:
            return False
        if rule.consumes == SOURCE:
            return True
        upstream = [r for r in self.by_name.get(rule.consumes, []) if r.role is None and r.serves(framework)]
        return len(upstream) == 1 and self._available(upstream[0], framework, visiting | {rule.name})

    def role(self, role: str, framework: str) -> Rule | None:
        """The rule that plays ``role`` (``ROLE_SAMPLES``, ``ROLE_REFERENCE``) for ``framework``'s models."""
        for rules in self.by_name.values():
            for rule in rules:
                if rule.role == role and rule.serves(framework):
                    return rule
        return None

    def tools(self) -> tuple[str, ...]:
        """Every distribution a rule or runner declares (what a report of the machine lists)."""
        found = {tool for rule in self._all() for tool in rule.tools}
        return tuple(sorted(found | {tool for runner in self.runners.values() for tool in runner.tools}))

    def device_tools(self) -> tuple[str, ...]:
        return tuple(sorted({tool for rule in self._all() for tool in rule.device_tools}))

    def modules(self) -> tuple[str, ...]:
        """Every module a rule or runner needs: the frameworks a build may import."""
        found = {module for rule in self._all() for module in rule.needs.modules}
        return tuple(sorted(found | {module for runner in self.runners.values() for module in runner.needs.modules}))

    def _all(self) -> list[Rule]:
        return [rule for rules in self.by_name.values() for rule in rules]

    def runner(self, name: str) -> type[Runner]:
        try:
            return self.runners[name]
        except KeyError:
            raise RegistryError(f"unknown runner {name!r}; known: {', '.join(sorted(self.runners))}")


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
