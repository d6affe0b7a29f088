"""The C structs the binding reads, as each darknet flavour lays them out."""

from __future__ import annotations

from ctypes import POINTER, Structure, c_float, c_int


class Box(Structure):
    _fields_ = [("x", c_float), ("y", c_float), ("w", c_float), ("h", c_float)]


class Image(Structure):
    """darknet's image: planar float CHW in 0..1, the same in every flavour."""

    _fields_ = [("w", c_int), ("h", c_int), ("c", c_int), ("data", POINTER(c_float))]


class PjreddieDetection(Structure):
    """pjreddie/darknet include/darknet.h (Debian's package)."""

    _fields_ = [
        ("bbox", Box),
        ("classes", c_int),
        ("prob", POINTER(c_float)),
        ("mask", POINTER(c_float)),
        ("objectness", c_float),
        ("sort_class", c_int),
    ]


# AlexeyAB/darknet include/darknet.h of February-October 2019 (network_predict_ptr
# there, free_network_ptr not yet, uc not yet) has pjreddie's six fields. The original
# service (dsaidgovsg/ilytics, branch handover_sfa_gpu) vendors such a copy, whose
# darknet.h is AlexeyAB's of commit be5d0d66 (2019-09-03).
AlexeyAB2019Detection = PjreddieDetection


class AlexeyABDetection(Structure):
    """AlexeyAB/darknet include/darknet.h at commit 59596d7880f6504768df41d6daa586f5cb2b932f,
    the one darknet/build_darknet.sh builds. Fields were added over
    the years (best_class_idx, uc, points, embeddings, sim, track_id): an older build
    has a shorter struct, and reading its array with this stride would be garbage,
    which the load-time layout check catches."""

    _fields_ = [
        ("bbox", Box),
        ("classes", c_int),
        ("best_class_idx", c_int),
        ("prob", POINTER(c_float)),
        ("mask", POINTER(c_float)),
        ("objectness", c_float),
        ("sort_class", c_int),
        ("uc", POINTER(c_float)),
        ("points", c_int),
        ("embeddings", POINTER(c_float)),
        ("embedding_size", c_int),
        ("sim", c_float),
        ("track_id", c_int),
    ]


class DetNumPair(Structure):
    _fields_ = [("num", c_int), ("dets", POINTER(AlexeyABDetection))]
