"""JAX (``framework = "jax"``; ``entry`` returns ``(apply, params)``, run as ``apply(params, *inputs)``):
rules ``reference`` (``jax.jit`` on the CPU), ``jax-jit`` (the source model as a recipe, runner
``jax-jit``) and ``savedmodel`` (jax2tf, parameters as variables, one serving signature; runner
``tf-savedmodel``). From the SavedModel, navbuild_rules/tensorflow's ``onnx`` (tf2onnx) and ``tf-trt`` build
as for a TensorFlow model, and ``trt-*`` from the ONNX. Importing this module imports no framework.
"""
from navbuild.rule import ROLE_REFERENCE, SOURCE, Needs, Rule
from navbuild_rules.jax import build, loader
from navbuild_rules.jax.runner import JaxJitRunner
from navbuild_rules.tensorflow.loader import SAVEDMODEL_OUTPUTS, TRITON_SAVEDMODEL
from navbuild_rules.tensorflow.loader import TOOLS as TF_TOOLS

JAX = Needs(modules=("jax",), cuda_when_device_is_cuda=False)

REFERENCE = Rule(
    name="reference", version="1", build=build.build_reference, frameworks=(loader.FRAMEWORK,), tools=loader.TOOLS,
    needs=JAX, role=ROLE_REFERENCE, outputs=(loader.REFERENCE_FILE,),
    description="jax.jit(apply)(params, *inputs) on every sample, on the CPU",
)

JAX_JIT = Rule(
    name="jax-jit", version="1", build=build.build_jit_recipe, consumes=SOURCE, frameworks=(loader.FRAMEWORK,),
    tools=loader.TOOLS, runner=JaxJitRunner.name, needs=Needs(modules=("jax",)), outputs=(loader.RECIPE_FILE,),
    description="the source model run by jax.jit (a recipe, not an export)",
)

SAVEDMODEL = Rule(
    name="savedmodel", version="1", build=build.build_savedmodel, consumes=SOURCE, frameworks=(loader.FRAMEWORK,),
    params={"serialization": "graph"}, tools=(*loader.TOOLS, *TF_TOOLS), runner="tf-savedmodel",
    needs=Needs(modules=("jax", "tensorflow"), cuda_when_device_is_cuda=False), validate=build.validate_savedmodel,
    outputs=SAVEDMODEL_OUTPUTS, triton=TRITON_SAVEDMODEL, base=True,
    loads_code=True,  # a SavedModel's graph may hold any TensorFlow op (file reads and writes too)
    description="a SavedModel from jax2tf, parameters as variables, one serving signature",
)

RULES = [REFERENCE, JAX_JIT, SAVEDMODEL]
RUNNERS = [JaxJitRunner]
