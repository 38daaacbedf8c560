"""Build variants: a searchable option given as ``"search"`` or a list becomes one target per value.

A rule declares which of its parameters are searchable (``Rule.variants``: name -> {value: label}).
In a ``[models.<m>.targets.<format>]`` table such a parameter may be ``"search"`` (every declared
value) or a list of declared values; the product over the searched parameters gives the variants.
Each variant is an ordinary target, keyed and cached like any other, named after the format with
the labels of its searched values appended in the rule's declaration order
(``resnet:torch-compile-fp16+cl+autotune``; an empty label, usually the default's, adds nothing).
The profile then measures every variant and selection picks among them. Nothing here names a rule
or an option.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

SEARCH = "search"
LABEL_SEPARATOR = "+"


class VariantError(ValueError):
    """A searched option is malformed; ``option`` names it."""

    def __init__(self, option: str, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.option, self.problem, self.fix = option, problem, fix


@dataclass(frozen=True)
class Variant:
    suffix: str  # "" or "+cl+autotune": appended to the target's name
    options: dict[str, Any]  # the format's options with each searched one set to one value


def expand(rule: Any, options: Mapping[str, Any]) -> list[Variant]:
    """The variants that ``options`` asks of ``rule`` (one, unsuffixed, when nothing is searched)."""
    searchable: Mapping[str, Mapping[Any, str]] = getattr(rule, "variants", {}) or {}
    searched: list[tuple[str, list[Any]]] = []
    for name, value in options.items():
        if name not in searchable:
            if value == SEARCH:
                raise VariantError(name, f"format {rule.name} cannot search {name!r}",
                                   f"searchable options: {', '.join(searchable) or 'none'}")
            continue
        values = _searched_values(rule.name, name, value, searchable[name])
        if values is not None:
            searched.append((name, values))
    if not searched:
        return [Variant("", dict(options))]
    order = list(searchable)
    searched.sort(key=lambda item: order.index(item[0]))
    variants = []
    for combination in itertools.product(*(values for _, values in searched)):
        chosen = dict(options)
        labels = []
        for (name, _), value in zip(searched, combination):
            chosen[name] = value
            label = _label(searchable[name], value)
            if label:
                labels.append(label)
        variants.append(Variant("".join(LABEL_SEPARATOR + label for label in labels), chosen))
    return variants


def _searched_values(fmt: str, name: str, value: Any, labels: Mapping[Any, str]) -> list[Any] | None:
    if value == SEARCH:
        return list(labels)
    if not isinstance(value, list):
        return None  # one plain value: no search
    if not value:
        raise VariantError(name, "an empty list searches nothing", f'give values, or "{SEARCH}"')
    for item in value:
        if not any(_same(item, known) for known in labels):
            raise VariantError(name, f"format {fmt} cannot search {name} = {item!r}",
                               f"searchable values: {', '.join(repr(v) for v in labels)}")
    return list({repr(item): item for item in value}.values())  # in the user's order, once each


def _label(labels: Mapping[Any, str], value: Any) -> str:
    return next(label for known, label in labels.items() if _same(value, known))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # TOML's 1 is not true
