"""Action keys: the material that decides whether a target must be rebuilt, and its digest.

The material is a plain dict so that ``explain`` can diff it against the last build's. Paths in it
are relative to the project root, so a clone in another folder computes the same keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from navbuild.engine import discovery, fingerprint
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, REFERENCE, SAMPLES, Graph, Target
from navbuild.hashing import digest_value
from navbuild.rule import ROLE_SAMPLES, SOURCE, tf32_enabled

if TYPE_CHECKING:
    from navbuild.engine.config import ProjectConfig
    from navbuild.engine.registry import Registry
    from navbuild.engine.store import Store

# 2: the artifact's rule parameters (runner options among them) enter the key; 3: they leave it again,
# for what the runner reads is in the artifact's files (its digest): the model's I/O enters instead
CHECK_VERSION = "3"
# 2: median figures with a spread, budget, batch plan in the key; 3: no other profile's figures read;
# 4: the artifact's parameters leave the key (as for checks), the model's I/O enters; throughput from
# windows of back-to-back calls (samples / window time), latency timed apart
PROFILE_VERSION = "4"
PENDING = "<pending: its upstream is not built>"  # a digest that status assumes unchanged (``provisional``)


def math_mode(target: Target) -> dict[str, Any]:
    """How float32 math runs for a CUDA target, in the keys of its checks, profiles and device-bound
    builds: TF32 only for the ``tf32`` precision. (Before this entry, fp32 ran cuDNN in TF32: those
    results are not served for an fp32 target now.) Empty on the CPU, which has no TF32."""
    return {"tf32": tf32_enabled(target.precision)} if target.device == "cuda" else {}


class Pending(Exception):
    """The key cannot be known yet: an upstream target has no current build."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.upstream = upstream


def source_digests(root: Path, patterns: list[str], digest_of: Callable[[Path], str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = digest_of(path)
    return files


def discovers(target: Target) -> bool:
    """Whether its action runs the model's code, so that what the code reads is discovered
    (``engine/discovery.py``): the samples, the reference and every export from the source."""
    return target.kind == ARTIFACT and target.rule is not None and target.rule.consumes == SOURCE


def model_io(target: Target) -> dict[str, Any]:
    spec = target.spec
    return {"framework": spec.framework, "inputs": list(spec.inputs), "outputs": list(spec.outputs),
            "batch_dim": spec.batch_dim,
            "dynamic_axes": {k: {str(a): v for a, v in axes.items()} for k, axes in spec.dynamic_axes.items()},
            **({"axis_bounds": {label: dict(b) for label, b in spec.axis_bounds.items()}} if spec.axis_bounds else {})}


def artifact_material(target: Target, *, sources: dict[str, str], samples_digest: str | None,
                      upstream_digest: str | None) -> dict[str, Any]:
    rule = target.rule
    material: dict[str, Any] = {
        "kind": "artifact", "rule": rule.name, "rule_version": rule.version,
        "precision": target.precision, "device": target.device, "params": dict(target.params),
        "model": model_io(target), "tools": fingerprint.tool_versions(tuple(rule.tools)),
        **engine_values(target),
    }
    if rule.consumes == SOURCE:
        material["entry"] = target.spec.entry
        material["sources"] = sources
    else:
        material["upstream"] = {"target": target.upstream.split(":", 1)[1], "digest": upstream_digest}
    if samples_digest is not None:
        material["samples"] = samples_digest
    if rule.role == ROLE_SAMPLES:
        material["samples_entry"] = target.model.samples  # the function, not only its file
    if rule.device_bound:
        material["device_fingerprint"] = fingerprint.device(target.device)
        material.update(math_mode(target))
    return material


def check_material(target: Target, *, artifact: Target, artifact_digest: str, reference_digest: str,
                   samples_digest: str, runner: str, runner_tools: tuple[str, ...],
                   tolerances: dict[str, Any]) -> dict[str, Any]:
    assert target.kind == CHECK
    material = {
        "kind": "check", "version": CHECK_VERSION, "artifact": {"target": artifact.short, "digest": artifact_digest},
        "model": runner_model(artifact), "reference": reference_digest, "samples": samples_digest, "runner": runner,
        "tools": fingerprint.tool_versions(tuple(runner_tools)), "device": target.device,
        "precision": target.precision, "tolerances": tolerances, **math_mode(target),
    }
    if artifact.rule.device_bound or target.device == "cuda":
        material["device_fingerprint"] = fingerprint.device(target.device)
    return material


def profile_material(target: Target, *, artifact: Target, artifact_digest: str, samples_digest: str, runner: str,
                     runner_tools: tuple[str, ...], config: dict[str, Any],
                     resolved: dict[str, Any]) -> dict[str, Any]:
    """Figures are only true of the machine that measured them: always keyed by its fingerprint.

    ``config`` is every profile option; ``resolved`` what they come to for this target (the batch
    sizes, which follow the model's ``max_batch_size`` in a sweep, and the device's time budget).
    The artifact's build parameters are not in it: what they change is in its digest.
    """
    return {
        "kind": "profile", "version": PROFILE_VERSION,
        "artifact": {"target": artifact.short, "digest": artifact_digest},
        "model": runner_model(artifact, check=False, sweeps_axes="axis_sizes" in config),
        "samples": samples_digest, "runner": runner,
        "tools": fingerprint.tool_versions(tuple(runner_tools)),
        "device": target.device, "precision": target.precision, "config": config, "measures": resolved,
        "device_fingerprint": fingerprint.device(target.device), **math_mode(target),
    }


def runner_model(artifact: Target, check: bool = True, sweeps_axes: bool = False) -> dict[str, Any]:
    """What a check or a profile tells the runner of the model beside the artifact's files: where the
    batch is, and for a check the input and output names (they bind the feed and the outputs that
    are compared). Not ``max_batch_size`` or the rule's parameters: what a runner reads of them is in
    the files, which the digest covers, so the same bytes are not checked twice. The dynamic axes and
    their bounds only for a profile that sweeps them (``[profile] axis_sizes``: they pick the sizes)."""
    spec = artifact.spec
    where = {"batch_dim": spec.batch_dim, "batched": spec.batched}
    if sweeps_axes:
        io = model_io(artifact)
        where.update({k: io[k] for k in ("dynamic_axes", "axis_bounds") if k in io})
    return {"inputs": list(spec.inputs), "outputs": list(spec.outputs), **where} if check else where


def engine_values(target: Target) -> dict[str, Any]:
    """The engine values its rule declares (``Rule.uses``), as key material; nothing when none."""
    return {"engine_values": dict(target.engine_values)} if target.engine_values else {}


def key_of(material: dict[str, Any]) -> str:
    return digest_value(material)


class KeyResolver:
    """Each target's key and key material, and which manifest is current for it.

    A key needs the digests of the target's inputs, that is the current manifests of its
    upstream targets; when one has none yet, ``key`` raises ``Pending`` naming it. Answers are
    cached for the run; ``forget`` drops them (after a build, or an import into the store).
    """

    def __init__(self, project: ProjectConfig, graph: Graph, registry: Registry, store: Store) -> None:
        self.project, self.graph, self.registry, self.store = project, graph, registry, store
        self._keys: dict[str, tuple[str, dict[str, Any]]] = {}
        # manifests found current in this run; an absent one is looked up again (it may be built since)
        self._current: dict[str, dict[str, Any]] = {}
        self._source_digests: dict[tuple[str, ...], dict[str, str]] = {}
        self._lock_entries: dict[str, Any] | None = None
        self._waits: list[str] | None = None  # upstreams without a build, while ``provisional`` runs

    def current_manifest(self, name: str) -> dict[str, Any] | None:
        """The manifest of ``name``'s current key, if built and intact."""
        if name in self._current:
            return self._current[name]
        try:
            key, _ = self.key(name)
        except Pending:
            return None
        manifest = self.store.get_manifest(key)
        if manifest is None or manifest.get("status") != "ok" or not self.acceptable(name, manifest):
            return None
        self._current[name] = manifest
        return manifest

    def acceptable(self, name: str, manifest: dict[str, Any]) -> bool:
        """A stored manifest may be served for ``name``: its objects intact, its digest bound to their
        digests (``Store.manifest_intact``) and, when navbuild.lock holds the same key, the lock's
        digest (a store cannot swap in another build of a key the project has locked)."""
        if not self.store.manifest_intact(manifest):
            return False
        entry = self._lock().get(name)
        # the digest only: a canonical digest (a TensorRT plan's) stays while the bytes under it differ
        if entry is None or entry.key != manifest.get("key") or entry.digest == manifest["digest"]:
            return True
        self.store.report(f"the build of {name} in the store (digest {manifest['digest'][:12]}) is not the one "
                          f"navbuild.lock records under its key ({entry.digest[:12]}); not served, it is rebuilt")
        return False

    def forget_lock(self) -> None:
        """Hold no manifest to navbuild.lock (``verify`` compares its rebuilds with the lock afterwards)."""
        self._lock_entries = {}

    def _lock(self) -> dict[str, Any]:
        """navbuild.lock's entries (read once; a broken lock binds nothing: the next build rewrites it)."""
        if self._lock_entries is None:
            from navbuild.engine import lockfile

            try:
                self._lock_entries = lockfile.read(lockfile.path_for(self.project.root))
            except (lockfile.LockError, OSError):
                self._lock_entries = {}
        return self._lock_entries

    def set_current(self, name: str, manifest: dict[str, Any]) -> None:
        self._current[name] = manifest

    def drop_current(self, name: str) -> None:
        self._current.pop(name, None)

    def digest_of(self, name: str) -> str:
        manifest = self.current_manifest(name)
        if manifest is None:
            if self._waits is not None:  # status's question: what if the upstream came out the same?
                if name not in self._waits:
                    self._waits.append(name)
                return PENDING
            raise Pending(name)
        return manifest["digest"]

    def key(self, name: str) -> tuple[str, dict[str, Any]]:
        if name in self._keys:
            return self._keys[name]
        material = self._material(self.graph.targets[name])
        result = (key_of(material), material)
        self._keys[name] = result
        return result

    def set_key(self, name: str, key: str, material: dict[str, Any]) -> None:
        """The key a build found (its discovered list may differ from the one its key was guessed from)."""
        self._keys[name] = (key, material)

    def provisional(self, name: str) -> tuple[dict[str, Any], list[str]]:
        """``name``'s key material now, where each upstream without a current build counts as
        ``PENDING``; with those upstreams (empty when the key is known). For ``status`` and
        ``explain``: a target whose own inputs are unchanged may not rebuild at all (early cutoff)."""
        self._waits = []
        try:
            return self._material(self.graph.targets[name]), self._waits
        finally:
            self._waits = None

    def _material(self, target: Target) -> dict[str, Any]:
        if target.kind in (CHECK, PROFILE):
            return self._measure_material(target)
        samples_name = f"{target.spec.name}:{SAMPLES}"
        samples_digest = None if target.name == samples_name else self.digest_of(samples_name)
        upstream_digest = self.digest_of(target.upstream) if target.upstream else None
        material = artifact_material(target, sources=self._sources(target), samples_digest=samples_digest,
                                     upstream_digest=upstream_digest)
        return self._with_discovered(target, material) if discovers(target) else material

    # -- discovered sources (engine/discovery.py) ---------------------------------------------------
    def _with_discovered(self, target: Target, declared: dict[str, Any]) -> dict[str, Any]:
        """The material with a discovered list's digests: the first list whose key has a build in the
        store, else the latest list (what the next build will most likely find), else none yet."""
        guesses = [self.with_found(target, declared, found)
                   for found in self.candidates(target, key_of(declared))]
        for material in guesses:
            if self.store.has_manifest(key_of(material)):
                return material
        return guesses[0] if guesses else self.with_found(target, declared, discovery.Found())

    def with_found(self, target: Target, declared: dict[str, Any], found: discovery.Found) -> dict[str, Any]:
        """``declared`` with ``found``'s files hashed here and its libraries' versions installed here."""
        found = found.without(declared.get("sources", {}))
        return {**declared, "discovered": discovery.material(self.project.root, found, self.store.files.digest,
                                                             fingerprint.tool_versions)}

    def candidates(self, target: Target, declared_key: str) -> list[discovery.Found]:
        """The discovered lists that builds of ``declared_key`` found, the latest first; without any,
        the list of the target's last build (its declared inputs changed since)."""
        found = self.store.get_discovered(declared_key)
        if found:
            return found
        last = discovery.found_in((self.store.get_target_record(target.name) or {}).get("material", {}))
        return [last] if last is not None else []

    def _measure_material(self, target: Target) -> dict[str, Any]:
        artifact = self.graph.targets[target.artifact]
        runner = self.registry.runner(artifact.rule.runner)
        runner_tools = tuple(getattr(runner, "tools", ()) or artifact.rule.tools)
        samples_digest = self.digest_of(f"{target.spec.name}:{SAMPLES}")
        if target.kind == PROFILE:
            config = self.project.profile.measure
            return profile_material(target, artifact=artifact, artifact_digest=self.digest_of(artifact.name),
                                    samples_digest=samples_digest, runner=runner.name, runner_tools=runner_tools,
                                    config=config.as_key(),
                                    resolved=config.resolved(target.device, target.spec.max_batch_size))
        outputs = list(target.spec.outputs) or self.reference_outputs(target)
        return check_material(target, artifact=artifact, artifact_digest=self.digest_of(artifact.name),
                              reference_digest=self.digest_of(f"{target.spec.name}:{REFERENCE}"),
                              samples_digest=samples_digest, runner=runner.name, runner_tools=runner_tools,
                              tolerances=target.model.correctness.as_key(target.precision, outputs))

    def reference_outputs(self, target: Target) -> list[str]:
        """The output names that the model's reference recorded (its forward's keys, or output__<i>)."""
        manifest = self.current_manifest(f"{target.spec.name}:{REFERENCE}")
        outputs = manifest.get("metadata", {}).get("outputs", []) if manifest else []
        return [output["name"] for output in outputs]

    def _sources(self, target: Target) -> dict[str, str]:
        patterns = list(target.model.sources)
        samples = target.model.samples
        samples_file = samples.rsplit(":", 1)[0] if ":" in samples else samples
        if samples_file not in patterns:
            patterns.append(samples_file)
        cache_key = tuple(patterns)
        if cache_key not in self._source_digests:
            self._source_digests[cache_key] = source_digests(self.project.root, patterns, self.store.files.digest)
        return self._source_digests[cache_key]

    def forget_target(self, name: str) -> None:
        self._keys.pop(name, None)
        self._current.pop(name, None)

    def forget(self) -> None:
        self._keys.clear()
        self._current.clear()


def assume_unchanged(new: Any, old: Any) -> Any:
    """``new`` with each ``PENDING`` digest replaced by the value at the same place in ``old``: the
    material a target would have if its upstreams that are not built came out as before."""
    if new == PENDING:
        return old
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: assume_unchanged(v, old.get(k)) for k, v in new.items()}
    return new


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two materials (for ``navbuild explain``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                lines.append(f"{where}: added ({_short(new[key])})")
            elif key not in new:
                lines.append(f"{where}: removed (was {_short(old[key])})")
            else:
                lines.extend(diff(old[key], new[key], where))
        return lines
    if old != new:
        return [f"{prefix}: {_short(old)} -> {_short(new)}"]
    return []


def _short(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return text if len(text) <= 80 else text[:77] + "..."
