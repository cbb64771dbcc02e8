"""Model zoo: every class registers itself so ``build(architecture)`` can rebuild it without pickle."""
from gan.models.registry import MODELS, TINY_EXAMPLES, build, register, register_tiny  # noqa: F401
from gan.models.base import ZooModel  # noqa: F401
# importing a module registers its classes and tiny examples
from gan.models import resnet, unet, patchgan, cyclegan, inception, ppcd, conditional  # noqa: F401,E402
from gan.models.resnet import ResnetGenerator  # noqa: F401,E402
