"""A thin ctypes binding to darknet's libdarknet.so: declarations, load, predict, free.

Two C APIs are in use: pjreddie's (Debian's `darknet` package) and AlexeyAB's (also
what the Docker image builds, at the commit pinned in build_darknet.sh). Everything
above raw network output (counting, drawing, HTTP) lives in the app, not here.
"""

from .library import DarknetLibrary, LibraryError, find_library, load_library
from .network import Network, RawDetections

__all__ = ["DarknetLibrary", "LibraryError", "Network", "RawDetections", "find_library", "load_library"]
