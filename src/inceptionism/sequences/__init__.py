"""Sequences of dreams: batches of images, zoom animations, videos; keyframed schedules; a frame cache that
makes long runs resumable.

Modules: :mod:`.cache` (finished frames beside the output), :mod:`.schedule` (keyframed settings),
:mod:`.batch` (a folder or glob of images), :mod:`.zoom` (the feedback animation), :mod:`.media` (video files
in and out), :mod:`.flow` and :mod:`.video` (flow-coherent video). Video modules import PyAV and OpenCV (the
``[video]`` extra) only when used.
"""

from __future__ import annotations

from inceptionism.sequences.batch import BatchResult, expand_inputs, natural_key, run_batch
from inceptionism.sequences.cache import FrameCache, cache_folder, source_identity
from inceptionism.sequences.schedule import Schedule, Track
from inceptionism.sequences.zoom import Motion, ZoomSettings, run_zoom, warp

__all__ = [
    "BatchResult",
    "FrameCache",
    "Motion",
    "Schedule",
    "Track",
    "ZoomSettings",
    "cache_folder",
    "expand_inputs",
    "natural_key",
    "run_batch",
    "run_zoom",
    "source_identity",
    "warp",
]
