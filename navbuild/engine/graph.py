"""The target graph: what navbuild.toml declares, expanded into named targets and aliases.

Per model ``m``:
    m:samples            sample inputs (from a function or a file)
    m:reference          the source model's outputs on the samples (the correctness reference)
    m:<format>[-<prec>]  one artifact per declared format and precision the rule supports, and one
                         per variant when an option is searched (``m:<format>[-<prec>]+<label>``)
    m:<artifact>.check   correctness of that artifact against the reference
    m:<artifact>.profile latency and throughput of its runner (when [profile] is enabled)
Aliases: ``all``, the model name, a format (``onnx``), a format with precision (``trt-fp16``,
which includes its variants), a rule name (``trt``: every precision), a precision (``fp16``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from navbuild.engine.config import PRECISIONS, ModelConfig, ProjectConfig
from navbuild.engine.registry import Registry, RegistryError
from navbuild.engine.variants import LABEL_SEPARATOR, expand as expand_variants
from navbuild.rule import ROLE_REFERENCE, ROLE_SAMPLES, SOURCE, ModelSpec, Rule

ARTIFACT, CHECK, PROFILE = "artifact", "check", "profile"
SAMPLES, REFERENCE = ROLE_SAMPLES, ROLE_REFERENCE  # every model's two role targets: <model>:<role>


@dataclass
class Target:
    name: str
    kind: str  # ARTIFACT (also samples, reference), CHECK or PROFILE
    model: ModelConfig
    rule: Rule | None
    precision: str = "fp32"
    device: str = "cpu"
    params: dict[str, Any] = field(default_factory=dict)
    engine_values: dict[str, Any] = field(default_factory=dict)  # those its rule declares (Rule.uses)
    upstream: str | None = None  # the target whose files this one reads
    deps: list[str] = field(default_factory=list)  # every target it waits for
    artifact: str | None = None  # for CHECK and PROFILE: the artifact it checks or measures
    timeout: float | None = None  # seconds its action may run in a worker (None: the model's)

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def short(self) -> str:
        return self.name.split(":", 1)[1]

    @property
    def seconds_allowed(self) -> float:
        """How long its build, check or profile may run: its format's timeout, else its model's."""
        return self.timeout if self.timeout is not None else self.model.timeout

    @property
    def tensor_file(self) -> str:
        """The one file a role target (samples, reference) writes, as its rule declares it."""
        return self.rule.outputs[0]


class GraphError(ValueError):
    pass


@dataclass
class Graph:
    targets: dict[str, Target]
    aliases: dict[str, list[str]]

    def resolve(self, names: list[str], measures: bool = True) -> list[str]:
        """Target names selected by names or aliases, with the checks and profiles of selected
        artifacts (``measures``; without: only what the names name, as ``--force`` takes them)."""
        selected: dict[str, None] = {}  # ordered, and a set: 2,000 targets stay linear
        for name in names or ["all"]:
            if name in self.targets:
                found = [name]
            elif name in self.aliases:
                found = self.aliases[name]
            else:
                raise GraphError(f"unknown target or alias {name!r}; try `navbuild list`")
            for target in found:
                for item in (target, f"{target}.check", f"{target}.profile") if measures else (target,):
                    if item in self.targets:
                        selected.setdefault(item)
        return list(selected)

    def downstream(self, names: list[str], within: list[str]) -> set[str]:
        """``names`` and every target in the closure of ``within`` that depends on one of them,
        directly or through others (what ``--force-downstream`` rebuilds)."""
        reached = set(names)
        for name in self.closure(within):  # dependency order: a target's inputs come before it
            if any(dep in reached for dep in self.targets[name].deps):
                reached.add(name)
        return reached

    def closure(self, names: list[str]) -> list[str]:
        """The selected targets and everything they depend on, in dependency order."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in self.targets[name].deps:
                visit(dep)
            order.append(name)

        for name in names:
            visit(name)
        return order


def resolve_device(device: str, gpu_present: bool) -> str:
    if device == "auto":
        return "cuda" if gpu_present else "cpu"
    return device


def build_graph(project: ProjectConfig, registry: Registry, gpu_present: bool = False) -> Graph:
    targets: dict[str, Target] = {}
    aliases: dict[str, list[str]] = {"all": []}

    def add(target: Target, *alias_names: str) -> None:
        targets[target.name] = target
        for alias in alias_names:
            if alias in targets:
                raise GraphError(f"alias {alias!r} clashes with a target name")
            aliases.setdefault(alias, [])
            if target.name not in aliases[alias]:
                aliases[alias].append(target.name)

    for model_name, model in project.models.items():
        if model_name in registry.names() or model_name in ("all", *PRECISIONS):
            raise GraphError(f"model name {model_name!r} clashes with a format or alias name; rename it")
        device = resolve_device(model.targets.device, gpu_present)
        framework = model.spec.framework
        samples_rule = registry.role(SAMPLES, framework)
        if samples_rule is None:
            raise GraphError(f"model {model_name}: no rule gives sample inputs; is navbuild installed "
                             f"(its samples rule is one of its entry points)?")
        samples = Target(f"{model_name}:{SAMPLES}", ARTIFACT, model, samples_rule, device="cpu",
                         engine_values=_engine_values(samples_rule, model))
        add(samples)
        reference_rule = registry.role(REFERENCE, framework)
        if reference_rule is None:
            raise GraphError(f"model {model_name}: no rule gives reference outputs for framework "
                             f"{model.spec.framework!r}; is its rule family installed?")
        reference = Target(f"{model_name}:{REFERENCE}", ARTIFACT, model, reference_rule, device="cpu",
                           params=_params(reference_rule, model, {}),
                           engine_values=_engine_values(reference_rule, model), deps=[samples.name])
        add(reference)
        for fmt in model.targets.formats:
            rule = _rule(registry, model_name, fmt, framework)
            for precision in model.targets.precisions_for(fmt):
                if precision not in rule.precisions:
                    continue
                for artifact in _artifacts(model, rule, precision, device, samples.name, registry):
                    add(artifact, "all", model_name, rule.name, artifact.short, rule.target_suffix(precision),
                        precision)
                    check = Target(f"{artifact.name}.check", CHECK, model, None, precision=precision,
                                   device=device, deps=[artifact.name, reference.name, samples.name],
                                   artifact=artifact.name, timeout=artifact.timeout)
                    add(check)
                    if project.profile.enabled:
                        add(_profile_target(artifact, samples.name))
    _add_upstreams(targets, registry)
    return Graph(targets=targets, aliases=aliases)


def _rule(registry: Registry, model_name: str, fmt: str, framework: str) -> Rule:
    """The rule of ``fmt`` for this model's framework, whose upstream formats exist for it too."""
    if fmt not in registry.formats(framework):
        rules = registry.by_name.get(fmt, [])
        if not rules:
            raise GraphError(f"model {model_name}: unknown format {fmt!r}; known: "
                             f"{', '.join(sorted(registry.formats(framework)))}")
        takes = sorted({fw for rule in rules for fw in rule.frameworks})
        if takes and framework not in takes:
            raise GraphError(f"model {model_name}: format {fmt} takes {', '.join(takes)} models, not {framework}")
        raise GraphError(f"model {model_name}: format {fmt} reads {rules[0].consumes}, which {framework} "
                         f"models have no rule for")
    try:
        return registry.rule(fmt, framework)
    except RegistryError as exc:
        raise GraphError(f"model {model_name}: {exc}") from None


def _profile_target(artifact: Target, samples: str) -> Target:
    return Target(f"{artifact.name}.profile", PROFILE, artifact.model, None, precision=artifact.precision,
                  device=artifact.device, deps=[artifact.name, f"{artifact.name}.check", samples],
                  artifact=artifact.name, timeout=artifact.timeout)


def _params(rule: Rule, model: ModelConfig, options: dict[str, Any]) -> dict[str, Any]:
    """The rule's parameters from the format's options, canonical (``Rule.resolve``, which may read
    any engine value: what it reads reaches the key through the parameters it returns)."""
    params = {name: options.get(name, default) for name, default in rule.params.items()}
    return dict(rule.resolve(params, model.targets.engine_values)) if rule.resolve else params


def _engine_values(rule: Rule, model: ModelConfig) -> dict[str, Any]:
    """The engine values the rule declares (``Rule.uses``): what its BuildContext and its key hold."""
    return {name: model.targets.engine_values[name] for name in rule.uses}


def _artifacts(model: ModelConfig, rule: Rule, precision: str, device: str, samples: str,
               registry: Registry) -> list[Target]:
    """One artifact per variant of the format's options (one when nothing is searched)."""
    options = model.targets.format_options.get(rule.name, {})
    return [_artifact(model, rule, precision, device, samples, registry, variant.options, variant.suffix)
            for variant in expand_variants(rule, options)]


def _artifact(model: ModelConfig, rule: Rule, precision: str, device: str, samples: str,
              registry: Registry, options: dict[str, Any] | None = None, suffix: str = "") -> Target:
    if options is None:
        options = expand_variants(rule, model.targets.format_options.get(rule.name, {}))[0].options
    params = _params(rule, model, options)
    name = f"{model.name}:{rule.target_suffix(precision)}{suffix}"
    upstream = None
    if rule.consumes != SOURCE:
        upstream_rule = registry.rule(rule.consumes, model.spec.framework)
        upstream = f"{model.name}:{upstream_rule.target_suffix(upstream_rule.precisions[0])}"
    # A source rule waits for the reference: the first load of the model, where a model that does
    # not match its declared inputs or outputs fails once, with the cause, instead of once per format.
    deps = [samples] + ([upstream] if upstream else [f"{model.name}:{REFERENCE}"])
    return Target(name, ARTIFACT, model, rule, precision=precision, device=device, params=params,
                  engine_values=_engine_values(rule, model), upstream=upstream, deps=deps,
                  timeout=model.targets.timeouts.get(rule.name))


def _add_upstreams(targets: dict[str, Target], registry: Registry) -> None:
    """A conversion whose upstream format was not declared gets it as an implicit target; one whose
    upstream was declared only as variants reads the first of them."""
    for target in list(targets.values()):
        if target.upstream and target.upstream not in targets:
            variants = sorted(n for n in targets if n.startswith(target.upstream + LABEL_SEPARATOR)
                              and targets[n].kind == ARTIFACT)
            if variants:
                target.deps = [variants[0] if d == target.upstream else d for d in target.deps]
                target.upstream = variants[0]
    pending = [t for t in targets.values() if t.upstream and t.upstream not in targets]
    while pending:
        target = pending.pop()
        if target.upstream in targets:
            continue
        model, fmt = target.upstream.split(":", 1)
        rule = registry.rule(target.rule.consumes, target.spec.framework)
        device = target.device
        implicit = _artifact(target.model, rule, rule.precisions[0], device, f"{model}:{SAMPLES}", registry)
        targets[implicit.name] = implicit
        targets[f"{implicit.name}.check"] = Target(
            f"{implicit.name}.check", CHECK, target.model, None, precision=implicit.precision, device=device,
            deps=[implicit.name, f"{model}:{REFERENCE}", f"{model}:{SAMPLES}"], artifact=implicit.name,
            timeout=implicit.timeout)
        if implicit.upstream and implicit.upstream not in targets:
            pending.append(implicit)


__all__ = ["Target", "Graph", "GraphError", "build_graph", "ARTIFACT", "CHECK"]
