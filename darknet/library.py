"""Finding libdarknet.so, telling its flavour from its exported symbols, and
declaring the C functions the binding calls."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Mapping
from ctypes import POINTER, c_char_p, c_float, c_int, c_void_p
from dataclasses import dataclass
from pathlib import Path

from .structs import AlexeyAB2019Detection, AlexeyABDetection, DetNumPair, Image, PjreddieDetection

PJREDDIE = "pjreddie"
ALEXEYAB = "alexeyab"  # the commit darknet/build_darknet.sh pins: free_network_ptr, 13-field detection
ALEXEYAB_2019 = "alexeyab-2019"  # AlexeyAB of 2019 (the original service's copy): 6-field detection
DETECTION_STRUCTS: dict[str, type[ctypes.Structure]] = {
    PJREDDIE: PjreddieDetection,
    ALEXEYAB: AlexeyABDetection,
    ALEXEYAB_2019: AlexeyAB2019Detection,
}

# Where a library is looked for when LIBDARKNET_PATH is not set, in this order.
SEARCH_PATHS = (
    Path(__file__).resolve().parent / "libdarknet.so",  # dropped next to the binding
    Path("/opt/darknet/libdarknet.so"),  # the Docker image's build
    Path("/usr/local/lib/libdarknet.so"),
    Path("/usr/lib/darknet/libdarknet.so"),  # Debian's darknet package
)
# Only a CUDA build defines it, in both flavours (the CPU builds stub cuda_set_device).
GPU_MARKER = "cuda_make_array"
# darknet/build_darknet.sh writes what it built, in one line, beside the library.
BUILD_DESCRIPTION = "darknet-build.txt"


class LibraryError(RuntimeError):
    """libdarknet.so is missing, unreadable, or not a darknet this binding knows."""


@dataclass(frozen=True)
class DarknetLibrary:
    path: Path
    flavour: str
    cdll: ctypes.CDLL
    detection_type: type[ctypes.Structure]
    has_gpu: bool
    has_batch: bool

    @property
    def alexeyab_api(self) -> bool:
        """load_network_custom, network_predict_ptr, get_network_boxes(..., letter)."""
        return self.flavour in (ALEXEYAB, ALEXEYAB_2019)

    @property
    def build(self) -> str | None:
        """Which darknet, which commit and which flags, where the build recorded them."""
        try:
            return (self.path.parent / BUILD_DESCRIPTION).read_text().strip() or None
        except OSError:
            return None

    def gpu_missing(self) -> str | None:
        """Why this CUDA build cannot use a GPU here (no driver, no device), or None.

        Asked of CUDA's runtime, which a CUDA build loads with it; darknet itself would
        abort the process on the first CUDA call that fails."""
        if not self.has_gpu:
            return f"{self.path} is a CPU-only build"
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            return "no NVIDIA driver on this machine (libcuda.so.1 cannot be loaded)"
        count = c_int(0)
        status = self.cdll.cudaGetDeviceCount(ctypes.byref(count))
        if status != 0:
            self.cdll.cudaGetErrorString.restype = c_char_p
            return f"CUDA finds no usable GPU: {self.cdll.cudaGetErrorString(status).decode(errors='replace')}"
        return None if count.value > 0 else "CUDA finds no GPU"

    @property
    def can_free(self) -> bool:
        """Whether a network can be freed: the 2019 API frees one only by value
        (free_network(network)), which would need that build's whole network struct."""
        return self.flavour != ALEXEYAB_2019


def find_library(env: Mapping[str, str] = os.environ) -> Path:
    explicit = env.get("LIBDARKNET_PATH", "").strip()
    if explicit:
        path = Path(explicit)
        path = path / "libdarknet.so" if path.is_dir() else path
        if not path.is_file():
            raise LibraryError(f"LIBDARKNET_PATH={explicit}: no libdarknet.so there")
        return path
    for path in SEARCH_PATHS:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in SEARCH_PATHS)
    raise LibraryError(f"libdarknet.so not found (tried {tried}); set LIBDARKNET_PATH")


def load_library(path: Path | None = None) -> DarknetLibrary:
    path = path or find_library()
    try:
        cdll = ctypes.CDLL(str(path))
    except OSError as exc:
        raise LibraryError(f"cannot load {path}: {exc}") from None
    exported = _Exports(cdll, path)
    flavour = flavour_of(exported.has)
    if flavour is None:
        raise LibraryError(f"{path} exports neither load_network_custom nor load_network: not a known darknet")
    detection = DETECTION_STRUCTS[flavour]
    _declare_common(exported, detection)
    if flavour == PJREDDIE:
        _declare_pjreddie(exported, detection)
    else:
        _declare_alexeyab(exported, detection, flavour)
    return DarknetLibrary(
        path=path,
        flavour=flavour,
        cdll=cdll,
        detection_type=detection,
        has_gpu=exported.has(GPU_MARKER),
        has_batch=flavour == ALEXEYAB and exported.has("network_predict_batch"),
    )


def flavour_of(exports: Callable[[str], bool]) -> str | None:
    """The flavour a library is, from the symbols it exports (None: not a darknet).

    AlexeyAB's API is load_network_custom. free_network_ptr came into it in February
    2020 (commit a25d4318); a build without it is bound as the 2019 API with pjreddie's
    six-field `detection` struct (the original service's copy is AlexeyAB of September
    2019). AlexeyAB builds of late 2019 also lack it but have a longer struct (uc from
    October, points from November 2019): the layout check Network runs at load refuses
    them, as it refuses a build with free_network_ptr whose struct is not the pinned one.
    """
    if exports("load_network_custom"):
        return ALEXEYAB if exports("free_network_ptr") else ALEXEYAB_2019
    if exports("load_network") and exports("get_network_boxes"):
        return PJREDDIE
    return None


class _Exports:
    """Declares functions, failing with one clear line when a symbol is missing."""

    def __init__(self, cdll: ctypes.CDLL, path: Path):
        self.cdll, self.path = cdll, path

    def has(self, name: str) -> bool:
        return hasattr(self.cdll, name)

    def declare(self, name: str, restype, *argtypes) -> None:
        if not self.has(name):
            raise LibraryError(f"{self.path} lacks the symbol {name}: a darknet build this binding does not know")
        function = getattr(self.cdll, name)
        function.restype, function.argtypes = restype, list(argtypes)


def _declare_common(exported: _Exports, detection) -> None:
    exported.declare("network_width", c_int, c_void_p)
    exported.declare("network_height", c_int, c_void_p)
    exported.declare("resize_image", Image, Image, c_int, c_int)
    exported.declare("letterbox_image", Image, Image, c_int, c_int)
    exported.declare("free_image", None, Image)
    exported.declare("free_detections", None, POINTER(detection), c_int)
    exported.declare("do_nms_sort", None, POINTER(detection), c_int, c_int, c_float)


def _declare_pjreddie(exported: _Exports, detection) -> None:
    exported.declare("load_network", c_void_p, c_char_p, c_char_p, c_int)
    exported.declare("set_batch_network", None, c_void_p, c_int)
    exported.declare("network_predict", POINTER(c_float), c_void_p, POINTER(c_float))
    exported.declare(
        "get_network_boxes",
        POINTER(detection),
        *(c_void_p, c_int, c_int, c_float, c_float, POINTER(c_int), c_int, POINTER(c_int)),
    )
    exported.declare("free_network", None, c_void_p)


def _declare_alexeyab(exported: _Exports, detection, flavour: str) -> None:
    exported.declare("load_network_custom", c_void_p, c_char_p, c_char_p, c_int, c_int)
    exported.declare("network_predict_ptr", POINTER(c_float), c_void_p, POINTER(c_float))
    exported.declare(
        "get_network_boxes",
        POINTER(detection),
        *(c_void_p, c_int, c_int, c_float, c_float, POINTER(c_int), c_int, POINTER(c_int), c_int),
    )
    exported.declare("cuda_set_device", None, c_int)
    if flavour == ALEXEYAB_2019:
        return  # no free_network_ptr (see DarknetLibrary.can_free), no network_predict_batch
    exported.declare("free_network_ptr", None, c_void_p)
    if exported.has("network_predict_batch"):
        exported.declare(
            "network_predict_batch",
            POINTER(DetNumPair),
            *(c_void_p, Image, c_int, c_int, c_int, c_float, c_float, POINTER(c_int), c_int, c_int),
        )
        exported.declare("free_batch_detections", None, POINTER(DetNumPair), c_int)
