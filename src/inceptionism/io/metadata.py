"""A dream's settings inside its picture, and read back from a picture or a ``.json`` file.

Where they go: PNG text chunk ``inceptionism`` (plain JSON); JPEG comment and TIFF ImageDescription
``{"inceptionism": {...}}``; WebP XMP attribute ``inceptionism:settings``. ``inceptionism dream --settings
PICTURE`` reads them back with :func:`read_settings`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError, features

from inceptionism.errors import ImageError
from inceptionism.io.messages import reason, show
from inceptionism.io.read import DEFAULT_MAX_PIXELS, pillow_limits

#: Key of the PNG text chunk (and of the JSON object in JPEG comments / TIFF descriptions) holding the settings.
SETTINGS_KEY = "inceptionism"

_XMP_NS = "urn:x-inceptionism:1.0/"
_RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"


def wrapped_settings(settings_json: str | None) -> str | None:
    """``{"inceptionism": settings}`` as JSON: the form used in JPEG comments and TIFF descriptions."""
    return None if settings_json is None else json.dumps({SETTINGS_KEY: json.loads(settings_json)})


def xmp_packet(settings_json: str) -> bytes:
    """An XMP packet holding the settings JSON as the attribute ``inceptionism:settings``."""
    ET.register_namespace("x", "adobe:ns:meta/")
    ET.register_namespace("rdf", _RDF_NS)
    ET.register_namespace("inceptionism", _XMP_NS)
    root = ET.Element("{adobe:ns:meta/}xmpmeta")
    rdf = ET.SubElement(root, f"{{{_RDF_NS}}}RDF")
    desc = ET.SubElement(rdf, f"{{{_RDF_NS}}}Description")
    desc.set(f"{{{_RDF_NS}}}about", "")
    desc.set(f"{{{_XMP_NS}}}settings", settings_json)
    packet: bytes = ET.tostring(root, encoding="utf-8")
    return packet


def pillow_save_params(fmt: str, settings_json: str | None, icc: bytes | None, quality: int) -> dict[str, Any]:
    """Keyword arguments for ``Image.save`` in ``fmt`` that embed the settings and ``icc`` (None: no profile)."""
    params: dict[str, Any] = {"icc_profile": icc or b""}  # b"": no profile, even if the image's info has one
    wrapped = wrapped_settings(settings_json)
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if settings_json is not None:
            info.add_text(SETTINGS_KEY, settings_json)
        params["pnginfo"] = info
    elif fmt == "JPEG":
        params.update(quality=quality, subsampling=0 if quality >= 90 else 2)
        if wrapped is not None:
            params["comment"] = wrapped
    elif fmt == "WEBP":
        params["quality"] = quality
        if settings_json is not None:
            params["xmp"] = xmp_packet(settings_json)
    elif fmt == "TIFF":
        if features.check("libtiff"):
            params["compression"] = "tiff_deflate"
        if wrapped is not None:
            params["description"] = wrapped
    return params


def _parse_settings(text: str | bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"the settings in {where} are not valid JSON ({reason(exc)}); fix or remove them") from exc
    if not isinstance(value, dict):
        raise ImageError(f"the settings in {where} are a JSON {type(value).__name__}, not an object; fix them")
    return value


def _unwrap(text: str | bytes, where: str) -> dict[str, Any] | None:
    """A JPEG comment / TIFF description of ours is ``{"inceptionism": {...}}``; anything else is not ours."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        if SETTINGS_KEY.encode() in (text if isinstance(text, bytes) else text.encode("utf-8", "replace")):
            raise ImageError(f"the inceptionism settings in {where} are not valid JSON; fix or remove them") from None
        return None
    if not isinstance(value, dict) or SETTINGS_KEY not in value:
        return None
    inner = value[SETTINGS_KEY]
    if not isinstance(inner, dict):
        raise ImageError(f"the inceptionism settings in {where} are not a JSON object; fix or remove them")
    return inner


def _xmp_settings(xmp: bytes | str) -> str | None:
    try:
        root = ET.fromstring(xmp)
    except ET.ParseError:
        return None
    for element in root.iter():
        value = element.get(f"{{{_XMP_NS}}}settings")
        if value is not None:
            return value
    return None


def _embedded(im: Image.Image, where: str) -> dict[str, Any] | None:
    """The settings embedded in an open picture, or None."""
    info = im.info
    if im.format == "PNG":
        text: str | None = info.get(SETTINGS_KEY)
        if text is None and im.width * im.height <= DEFAULT_MAX_PIXELS:
            text = getattr(im, "text", {}).get(SETTINGS_KEY)  # chunks after the pixels
        return None if text is None else _parse_settings(str(text), where)
    if "comment" in info:
        return _unwrap(info["comment"], where)
    if im.format == "WEBP" and "xmp" in info:
        packet = _xmp_settings(info["xmp"])
        return None if packet is None else _parse_settings(packet, where)
    if im.format == "TIFF":
        description = getattr(im, "tag_v2", {}).get(270)
        return None if description is None else _unwrap(str(description), where)
    return None


def read_settings(path: str | Path) -> dict[str, Any]:
    """Settings from a ``.json`` file, or embedded in an image written by :func:`~inceptionism.io.save_image`."""
    path = Path(path)
    shown = show(path)
    if not path.exists():
        raise ImageError(f"settings file {shown} does not exist; check the path")
    if path.is_dir():
        raise ImageError(f"settings file {shown} is a folder; pass a .json file or an image saved by inceptionism")
    if path.suffix.lower() == ".json":
        try:
            json_text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageError(f"cannot read settings file {shown}: {reason(exc)}") from exc
        return _parse_settings(json_text, shown)
    with pillow_limits():
        try:
            with Image.open(path) as im:
                found = _embedded(im, shown)
        except UnidentifiedImageError:
            raise ImageError(f"{shown} is neither a .json settings file nor an image; pass one of those") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"cannot read settings from {shown}: {reason(exc)}") from exc
    if found is None:
        raise ImageError(f"{shown} holds no inceptionism settings; pass a .json file or an image saved by inceptionism")
    return found
