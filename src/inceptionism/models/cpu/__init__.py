"""The CPU fast path behind one small interface: the rest of the package uses these names only.

- :func:`compile_backend`: a traced feature graph → :class:`GradientBackend` (features whose image gradient
  comes from a compiled program, not autograd), or :class:`Declined` with the reason. A backend never breaks a
  dream: on an untested PyTorch it is declined, and any run-time error but out-of-memory turns it off for the
  process (one note on stderr) and autograd redoes the work.
- :func:`held_memory`: what a backend's program holds, for memory planning (autograd graphs are measured by
  the tensors they save).
- :func:`packed_shapes`, :data:`PACKED_SHAPES`: how many input shapes' reordered weights each convolution keeps,
  set per run (the backend is shared by every run of a cached extractor and keeps no run's setting).
- :func:`reuse_freed_memory`, :func:`release_free_memory`: glibc keeps a run's freed memory for its next step.
- :class:`StridedStem`, :class:`StridedDepthwise`: convolutions the graph passes put in a graph, whose input
  gradient takes a faster road on CPUs (used by autograd too).
"""

from inceptionism.models.cpu.allocator import release_free_memory, reuse_freed_memory
from inceptionism.models.cpu.backend import DTYPES, Declined, GradientBackend, compile_backend, is_out_of_memory
from inceptionism.models.cpu.conv import PACKED_SHAPES, packed_shapes
from inceptionism.models.cpu.depthwise import StridedDepthwise, is_strided_depthwise
from inceptionism.models.cpu.program import HeldMemory, held_memory
from inceptionism.models.cpu.stem import StridedStem, is_strided_stem

__all__ = [
    "DTYPES",
    "PACKED_SHAPES",
    "Declined",
    "GradientBackend",
    "HeldMemory",
    "StridedDepthwise",
    "StridedStem",
    "compile_backend",
    "held_memory",
    "is_out_of_memory",
    "is_strided_depthwise",
    "is_strided_stem",
    "packed_shapes",
    "release_free_memory",
    "reuse_freed_memory",
]
