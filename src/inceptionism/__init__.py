"""inceptionism: DeepDream for photographers, artists and researchers.

>>> import inceptionism
>>> picture = inceptionism.dream("examples/chelsea.jpg", steps=12)  # a PIL image
>>> picture.save("dream.png")
"""

__version__ = "0.1.0"

from inceptionism import objectives
from inceptionism.api import dream, get_model
from inceptionism.config import DreamConfig
from inceptionism.engine import Dreamer, Progress
from inceptionism.errors import ConfigError, ImageError, InceptionismError, WeightsError
from inceptionism.models import list_models, load_model, register_model
from inceptionism.presets import list_presets, preset

__all__ = [
    "ConfigError",
    "DreamConfig",
    "Dreamer",
    "ImageError",
    "InceptionismError",
    "Progress",
    "WeightsError",
    "__version__",
    "dream",
    "get_model",
    "list_models",
    "list_presets",
    "load_model",
    "objectives",
    "preset",
    "register_model",
]
