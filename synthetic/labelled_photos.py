"""Labelled photos whose truth is known by construction, in darknet's layout.

    python -m synthetic.labelled_photos DIR

Dogs cut from dog.jpg (the demo model's class `dog`) are pasted at known places and
sizes the model sees onto the sample photos and onto plain and stained dishes; each
photo gets its YOLO `.txt` (class cx cy w h, relative). Among them: a photo with an
empty label file, a crowded one, and dogs cut by the photo's border (their labels are
the visible part, as a labeller draws them). A `valid.txt` lists the photos and
`obj.data` points at it, with the paths of another machine. The tests use the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOG_CLASS = 16  # in coco.names
DOG_SIZE = (130, 200)
SIZE = (1600, 1200)

# photo name -> (background, places of the dogs' top-left corners)
PLANS: dict[str, tuple[str, list[tuple[int, int]]]] = {
    "eagle-3.jpg": ("eagle.jpg", [(80, 900), (1350, 80), (700, 950)]),
    "giraffe-2.jpg": ("giraffe.jpg", [(60, 60), (1400, 950)]),
    "kite-1.jpg": ("kite.jpg", [(1380, 560)]),
    "white-4.jpg": ("white", [(200, 200), (600, 300), (1000, 500), (400, 800)]),
    "stained-5.jpg": ("stained", [(300, 250), (700, 250), (1100, 250), (500, 650), (900, 650)]),
    "crowded-12.jpg": ("white", [(150 + 320 * col, 120 + 350 * row) for row in range(3) for col in range(4)]),
    "border-3.jpg": ("white", [(-50, 300), (1520, 700), (700, -90)]),  # cut by the edges
    "empty.jpg": ("stained", []),
}


def _dog() -> np.ndarray:
    photo = cv2.imread(str(ROOT / "data" / "dog.jpg"))
    return cv2.resize(photo[200:560, 110:340], DOG_SIZE)


def _background(kind: str) -> np.ndarray:
    if kind == "white":
        return np.full((SIZE[1], SIZE[0], 3), 245, np.uint8)
    if kind == "stained":
        return np.full((SIZE[1], SIZE[0], 3), (40, 130, 205), np.uint8)  # BGR amber
    return cv2.resize(cv2.imread(str(ROOT / "data" / kind)), SIZE)


def make_photo(background: str, places: list[tuple[int, int]]) -> tuple[np.ndarray, list[str]]:
    """The photo (BGR) and its label lines."""
    photo, dog = _background(background), _dog()
    width, height = DOG_SIZE
    lines = []
    for x, y in places:
        left, top = max(0, x), max(0, y)
        right, bottom = min(SIZE[0], x + width), min(SIZE[1], y + height)
        photo[top:bottom, left:right] = dog[top - y : bottom - y, left - x : right - x]
        cx, cy = (left + right) / 2 / SIZE[0], (top + bottom) / 2 / SIZE[1]
        w, h = (right - left) / SIZE[0], (bottom - top) / SIZE[1]
        lines.append(f"{DOG_CLASS} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return photo, lines


def write_labelled_folder(directory: Path) -> dict[str, int]:
    """The photos, their labels, valid.txt and obj.data; returns dogs per photo."""
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name, (background, places) in PLANS.items():
        photo, lines = make_photo(background, places)
        cv2.imwrite(str(images / name), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
        (images / name).with_suffix(".txt").write_text("".join(line + "\n" for line in lines))
        truth[name] = len(lines)
    # Written as on the training machine: paths that do not exist here.
    (directory / "valid.txt").write_text("".join(f"/home/lab/darknet/data/images/{name}\n" for name in PLANS))
    (directory / "obj.data").write_text(
        "classes = 80\ntrain = /home/lab/darknet/data/train.txt\nvalid = /home/lab/darknet/data/valid.txt\n"
        "names = /home/lab/darknet/data/coco.names\nbackup = backup/\n"
    )
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    truth = write_labelled_folder(args.directory)
    print(f"{len(truth)} photos, {sum(truth.values())} dogs labelled, in {args.directory}")


if __name__ == "__main__":
    main()
