"""Files as they are stored: checkpoints downloaded into torch.hub's cache (hash-checked), read from disk and
written atomically; images read as tensors.

Reading always loads with ``weights_only=True``: a checkpoint is data, never code. What the files hold (their key
layout) is :mod:`ssd_zoo.weights.convert`'s business; which file a name means is :mod:`ssd_zoo.weights`'.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2.functional import pil_to_tensor

from ssd_zoo.errors import CheckpointError, InputError

URL_SCHEMES = ("http://", "https://", "file://")


def is_url(text: str) -> bool:
    """Whether ``text`` names a URL that :func:`download` takes."""
    return text.startswith(URL_SCHEMES)


def hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix after a file name's last ``-`` (torch.hub's ``check_hash`` convention), or None."""
    found = torch.hub.HASH_REGEX.search(file_name)
    return found.group(1) if found else None


def download(url: str, *, file_name: str | None = None, sha256: str | None = None, progress: bool = True,
             what: str | None = None) -> dict[str, Any]:
    """The file at ``url``, as stored, from ``$TORCH_HOME/hub/checkpoints/<file_name>`` or downloaded there.

    Args:
        url: ``http(s)://`` or ``file://``.
        file_name: the name in the cache (default: the URL's last part).
        sha256: the hash prefix the file must have (default: the one in ``file_name``, if any); checked on
            download and on every load from the cache.
        what: the name used in errors (default: the URL).

    Raises RuntimeError naming the URL, the cache path and how to pass the file by path when offline, or when
    the file's hash does not match.
    """
    file_name = file_name or url.rsplit("/", 1)[-1]
    sha256 = sha256 if sha256 is not None else hash_prefix(file_name)
    what = what or url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if cache.is_file() and sha256 and not file_sha256(cache).startswith(sha256):
        raise InputError(f"{what}: cached file {cache} does not match sha256 prefix {sha256}; delete it to re-download")
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress, check_hash=sha256 is not None,
                                                  file_name=file_name, weights_only=True)
    except urllib.error.URLError as error:  # also HTTPError; offline is a URLError too
        fix = f"download {url} yourself and pass weights='/path/to/{file_name}', or put it at {cache}"
        raise InputError(f"{what}: could not download {url} into {cache} ({error}); {fix}") from error
    except RuntimeError as error:
        if "invalid hash value" not in str(error):
            raise
        raise InputError(f"{what}: the file at {url} does not match the sha256 prefix {sha256!r} in its name "
                           f"({error}); it was not kept in {cache}") from error


def file_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """A local checkpoint, loaded with ``weights_only=True``.

    Raises FileNotFoundError (nothing at ``path``), IsADirectoryError (a folder) or :class:`CheckpointError`
    (a RuntimeError and a ValueError) saying in plain words, with the path, whether the file is empty,
    truncated or corrupt, not a torch checkpoint, or holds objects that ``weights_only=True`` refuses.
    """
    where = repr(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"weights: expected a checkpoint file at {where}, found a folder")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"weights: expected a checkpoint file at {where}, found nothing there") from None
    except PermissionError as error:
        raise PermissionError(f"weights: cannot read the checkpoint file {where}: permission denied") from error
    except Exception as error:  # unpickling refused or a corrupt file: say which file, in plain words
        raise CheckpointError(f"{_unreadable(error, path)} ({_first_line(error)})") from error


def read_image(path: str | os.PathLike) -> Tensor:
    """An image file as float32 ``[3, H, W]`` RGB in ``[0, 1]`` (what datasets and detection read).

    Raises FileNotFoundError naming ``path`` when there is no such file, ValueError naming it and the decoder's
    reason when it is no readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:  # PIL: torchvision.io's codecs are deprecated since 0.29
        with Image.open(path) as picture:
            pixels = pil_to_tensor(picture.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:  # PIL's errors for corrupt files
        raise ValueError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None
    return pixels.float().div_(255.0)


def _first_line(error: BaseException) -> str:
    """torch's text runs to many lines and sentences: its first sentence, after the error's type."""
    first = (str(error).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
    return f"{type(error).__name__}: {first[:160]}" if first else type(error).__name__


def _unreadable(error: BaseException, path: str | os.PathLike) -> str:
    """What is wrong with the checkpoint file at ``path`` that ``torch.load`` failed on with ``error``."""
    where = repr(os.fspath(path))
    size = os.path.getsize(path)
    if size == 0:
        return f"checkpoint file {where} is empty (0 bytes): expected a file written by torch.save"
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK\x03\x04); before torch 1.6 it wrote a pickle (protocol 2: \x80\x02)
    if not head.startswith((b"PK\x03\x04", b"\x80\x02")):
        return f"file {where} ({size} bytes) is not a torch checkpoint: expected a file written by torch.save"
    if "Weights only load failed" in str(error):
        return (f"checkpoint file {where} holds Python objects that weights_only=True refuses to load (only "
                "tensors, numbers, strings, lists and dicts are read: a checkpoint is data, never code)")
    return (f"checkpoint file {where} ({size} bytes) is truncated or corrupt: expected a complete file written "
            "by torch.save (an interrupted download or copy?)")


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename it onto ``path``.

    A crash or an error mid-write leaves ``path`` as it was (also when it is the file being converted) and
    no temporary file behind. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_atomic(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic`."""
    return write_atomic(path, lambda f: torch.save(obj, f))
