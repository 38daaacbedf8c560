"""torch.compile and AOTInductor: rules ``torch-compile`` and ``aoti``, runners of the same names.

``torch-compile`` (a recipe target): ``recipe.json`` holds the compile options (mode, backend,
dynamic, precision, device, the sample shapes to warm up with) and ``compile_cache.bin`` what
``torch.compiler.save_cache_artifacts()`` returned after compiling and running the samples at
build time. The runner loads the eager model, hot-loads the cache, compiles in ``activate``.

``aoti``: ``model.pt2``, an AOTInductor package of the model exported at the target's precision
with a dynamic batch of 1..max_batch_size. Its runner, and the build's check of the new package,
load and run it in a worker process (``aoti_worker``), so that a native crash becomes the
target's failure with its reason (signal, stderr tail).

Both are device-bound (compiled code and caches are per device) and cast for fp16/bf16. Importing
this module imports no framework.
"""
from navbuild.rule import SOURCE, Rule
from rules.torch_compile import build, options
from rules.torch_compile.runner import AotiRunner, TorchCompileRunner

TORCH_COMPILE = Rule(
    name="torch-compile", version="1", build=build.build_torch_compile, consumes=SOURCE, frameworks=("torch",),
    params=dict(options.COMPILE_DEFAULTS), tools=("torch",), precisions=options.PRECISIONS, device_bound=True,
    runner="torch-compile", normalized=False, canonical_digest=build.recipe_digest,
    validate=options.validate_compile, loads_code=True,
    description="torch.compile recipe (mode, backend, dynamic, precision) plus torch's compile cache",
)

AOTI = Rule(
    name="aoti", version="1", build=build.build_aoti, consumes=SOURCE, frameworks=("torch",),
    params=dict(options.AOTI_DEFAULTS), tools=("torch",), precisions=options.PRECISIONS, device_bound=True,
    runner="aoti", normalized=False, canonical_digest=build.aoti_digest, validate=options.validate_aoti,
    loads_code=True,
    description="AOTInductor package (model.pt2) with a dynamic batch, run in a worker process",
)

RULES = [TORCH_COMPILE, AOTI]
RUNNERS = [TorchCompileRunner, AotiRunner]
