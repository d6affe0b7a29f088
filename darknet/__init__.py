"""A thin ctypes binding to darknet's libdarknet.so: declarations, load, predict, free.

Three flavours are bound, told apart by the symbols a library exports (library.py):
pjreddie's API (Debian's `darknet` package), AlexeyAB's at the commit pinned in
build_darknet.sh (what the Docker image builds), and AlexeyAB's of 2019 (what the
original service vendors: no free_network_ptr, pjreddie's detection struct, no batch).
Everything above raw network output (counting, drawing, HTTP) lives in the app, not here.
"""

from .library import DarknetLibrary, LibraryError, find_library, load_library
from .network import Network, RawDetections

__all__ = ["DarknetLibrary", "LibraryError", "Network", "RawDetections", "find_library", "load_library"]
