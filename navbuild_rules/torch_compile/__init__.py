"""torch.compile and AOTInductor: rules ``torch-compile`` and ``aoti``, runners of the same names.

``torch-compile`` (a recipe target): ``recipe.json`` holds the compile options (mode, backend,
dynamic, memory format, precision, device, the batch buckets and the shapes to warm up with) and
``compile_cache.bin`` what ``torch.compiler.save_cache_artifacts()`` returned after compiling at
build time. The runner loads the eager model, hot-loads the cache, compiles in ``activate``; with the
rule's cache folder (``compile_cache``) the check and the profile load what the build compiled.

``aoti``: one AOTInductor package per batch bucket (``model-b<N>.pt2``), or with ``dynamic = true``
one ``model.pt2`` with a dynamic batch of 1..max_batch_size, of the model exported at the target's
precision. Its runner, and the build's check of the new packages, load and run them in a worker
process (``aoti_worker``), so that a native crash becomes the target's failure with its reason.

Both compile for batch buckets by default (``batching``): a request runs in the smallest bucket that
holds it. Both are device-bound (compiled code and caches are per device) and cast for fp16/bf16.
``mode``, ``channels_last`` and ``dynamic`` are searchable (``options.COMPILE_VARIANTS``). Importing
this module imports no framework.
"""
from navbuild.rule import SOURCE, Rule
from navbuild_rules.torch_compile import build, loader, options
from navbuild_rules.torch_compile.runner import AotiRunner, TorchCompileRunner

# version 5: the compile cache is warmed under no_grad, the grad mode every runner now calls it in
TORCH_COMPILE = Rule(
    name="torch-compile", version="5", build=build.build_torch_compile, consumes=SOURCE, frameworks=("torch",),
    params=dict(options.COMPILE_DEFAULTS), uses=("max_batch_size",), tools=("torch",), precisions=options.PRECISIONS, device_bound=True,
    runner="torch-compile", normalized=False, canonical_digest=build.recipe_digest,
    validate=options.validate_compile, variants=options.COMPILE_VARIANTS, resolve=options.resolve_params,
    outputs=(loader.RECIPE_FILE, loader.CACHE_FILE), loads_code=True,
    description="torch.compile recipe (mode, backend, batch buckets or dynamic, memory format, precision) "
                "plus torch's compile cache",
)

AOTI = Rule(
    name="aoti", version="4", build=build.build_aoti, consumes=SOURCE, frameworks=("torch",),
    params=dict(options.AOTI_DEFAULTS), uses=("max_batch_size",), tools=("torch",), precisions=options.PRECISIONS, device_bound=True,
    runner="aoti", normalized=False, canonical_digest=build.aoti_digest, validate=options.validate_aoti,
    variants=options.AOTI_VARIANTS, resolve=options.resolve_params,
    identifies_model=True,  # aoti.json holds the digests of the exported graphs and weights
    outputs=(loader.AOTI_FILE, loader.AOTI_BUCKET_FILES, loader.AOTI_INFO_FILE), loads_code=True,
    description="AOTInductor packages (one per batch bucket, or one with a dynamic batch), run in a worker process",
)

RULES = [TORCH_COMPILE, AOTI]
RUNNERS = [TorchCompileRunner, AotiRunner]
