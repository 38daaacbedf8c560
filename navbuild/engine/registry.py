"""Where rules and runners come from: rule modules found through the ``navbuild.rules`` entry point.

A rule module exposes ``RULES`` (a list of navbuild.Rule) and ``RUNNERS`` (a list of Runner
subclasses). Importing it must not import a framework. navbuild's own families are entry points
of the navbuild distribution (pyproject.toml) like any third party's: nothing here names one, so
a checkout must be installed (``pip install -e .``) for its families to be found.

A format's rule is chosen by the model's framework and by what the rule consumes: a rule serving
any framework (``frameworks=()``) that converts a format applies to every framework whose chain
of rules reaches that format (tf2onnx's ``onnx`` reads any ``savedmodel``: a TensorFlow model's,
and a JAX model's through jax2tf), with no list of frameworks written down.
"""
from __future__ import annotations

import importlib
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from navbuild.rule import SOURCE, Rule
from navbuild.runner import Runner

ENTRY_POINT_GROUP = "navbuild.rules"
DISTRIBUTION = "navbuild"  # whose entry points are navbuild's own families
NOT_INSTALLED = ("no rule family is registered: navbuild's own families are entry points of the navbuild "
                 "distribution, and this navbuild ({where}) is not installed. Install the checkout: "
                 "pip install -e {checkout}")
STALE_INSTALL = ("no rule family of navbuild's own could be imported: the installed entry points ({modules}) "
                 "name modules this checkout ({checkout}) does not have (an install of an older checkout, or "
                 "a stale navbuild.egg-info in the current folder). Install the checkout again: "
                 "pip install -e {checkout}")


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
            if not plugin and exc.name and module_name.startswith(exc.name):
                return  # an installed family that this checkout no longer has (a stale editable install)
            if not plugin:
                raise
            sys.stderr.write(f"navbuild: warning: rule module {module_name} cannot be imported ({exc}); "
                             f"its rules are left out\n")
            return
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
        """Refuses a second rule of one format for the same frameworks and the same input (which of the
        two builds it could never be decided); rules of one format that read different inputs are
        told apart per framework by what its chain reaches (``rule``)."""
        known = self.by_name.setdefault(rule.name, [])
        if any(other is rule for other in known):
            return
        for other in known:
            shared = (set(rule.frameworks) & set(other.frameworks)) if rule.frameworks and other.frameworks else {"*"}
            if shared and rule.consumes == other.consumes:
                serves = "any" if shared == {"*"} else ", ".join(sorted(shared))
                raise RegistryError(f"rule {rule.name!r} for {serves} models is declared by both "
                                    f"{self.origins[id(other)]} and {origin}")
        known.append(rule)
        self.origins[id(rule)] = origin

    def names(self) -> set[str]:
        """Every rule name, roles included (a model may not take one as its name)."""
        return set(self.by_name)

    def rule(self, name: str, framework: str | None = None) -> Rule:
        """The rule of format ``name`` for models of ``framework`` (None: the only rule of that name):
        the one that serves the framework and whose input the framework's chain reaches."""
        candidates = self.by_name.get(name, [])
        if not candidates:
            raise RegistryError(f"unknown format {name!r}; known: {', '.join(sorted(self.formats()))}")
        if framework is not None:
            candidates = self._reaching(name, framework, frozenset())
            if not candidates:
                raise RegistryError(f"format {name!r} is not available for {framework} models; their formats: "
                                    f"{', '.join(sorted(self.formats(framework))) or 'none'}")
        if len(candidates) > 1:
            if framework is None:
                raise RegistryError(f"format {name!r} has a rule per framework; name the model's framework")
            raise RegistryError(f"format {name!r} has two rules for {framework} models, declared by "
                                f"{' and '.join(self.origins[id(rule)] for rule in candidates)}")
        return candidates[0]

    def formats(self, framework: str | None = None) -> dict[str, Rule]:
        """Format name -> rule, roles left out. For a framework: the rules that serve its models and
        whose input its chain reaches; None: every format (the first rule declared for each)."""
        found: dict[str, Rule] = {}
        for name, rules in self.by_name.items():
            if framework is None:
                found.update({name: rule for rule in rules[:1] if rule.role is None})
                continue
            reaching = [rule for rule in self._reaching(name, framework, frozenset()) if rule.role is None]
            if len(reaching) == 1:
                found[name] = reaching[0]
        return found

    def _reaching(self, name: str, framework: str, visiting: frozenset[str]) -> list[Rule]:
        """The rules of format ``name`` that serve ``framework`` and read the source or a format that
        exactly one rule gives ``framework``'s models (in turn)."""
        if name in visiting:
            return []
        found = []
        for rule in self.by_name.get(name, []):
            if not rule.serves(framework):
                continue
            if rule.consumes == SOURCE or len(self._reaching(rule.consumes, framework, visiting | {name})) == 1:
                found.append(rule)
        return found

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


def entry_point_modules() -> list[tuple[str, bool]]:
    """Every module registered under the ``navbuild.rules`` entry point, and whether it is a plug-in
    (of another distribution than navbuild), navbuild's own first."""
    try:
        found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # a broken distribution must not break the build
        return []
    modules: dict[str, bool] = {}
    for entry in found:
        dist = getattr(getattr(entry, "dist", None), "name", None)
        modules.setdefault(entry.value.split(":")[0], (dist or "").lower() != DISTRIBUTION)
    return sorted(modules.items(), key=lambda item: (item[1], item[0]))


def from_modules(module_names: list[str]) -> Registry:
    registry = Registry()
    for module_name in module_names:
        registry.add_module(module_name)
    return registry


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    registered = entry_point_modules()
    if not any(not plugin for _, plugin in registered):
        import navbuild

        checkout = Path(navbuild.__file__).resolve().parents[1]
        raise RegistryError(NOT_INSTALLED.format(where=checkout / "navbuild", checkout=checkout))
    registry = Registry()
    for module_name, plugin in registered:
        registry.add_module(module_name, plugin=plugin)
    own = [name for name, plugin in registered if not plugin]
    if not set(own) & set(registry.rule_modules):
        import navbuild

        checkout = Path(navbuild.__file__).resolve().parents[1]
        raise RegistryError(STALE_INSTALL.format(modules=", ".join(own), checkout=checkout))
    return registry
