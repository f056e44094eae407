#!/usr/bin/env python3
"""Photo quality + hash anchor (issue 16): what `sgml images` computes per photo (decode,
grey, variance of the Laplacian, mean, standard deviation, pHash; sgml_models::photo)
against OpenCV (cv2.imread, cvtColor, Laplacian().var(), mean, std) plus imagehash's pHash
(Pillow) in Python, on every photo of ../shared/data/images/clothing_small (779 JPEGs).

The Python peer reads each file once: OpenCV decodes it for the measures and Pillow
decodes the same bytes for imagehash (imagehash works on Pillow images). sgml runs at 1
and 2 threads, the peer on one core (cv2.setNumThreads(1); a Python loop does not
parallelise). Reported: photos per second, the ratio (goal >= 2), and agreement: the
largest relative gap in blur and brightness from OpenCV's, and the mean Hamming distance
between the two pHashes.

Near-duplicates: each of the 179 test photos and five edited copies of it (resized to 50%,
JPEG quality 50, a 10% crop (5% off each side), brightness +20% and -20%; made with
Pillow) hashed by both; a pair is called a duplicate when its hashes differ in at most T bits,
T the largest threshold keeping the false-positive rate (over every pair of an original with
another photo's original or copy) at or under 1%, the same rule for both. Reported: recall of
the (original, copy) pairs at that T (goal >= 0.95), per edit.

Writes benches/results/photos.{json,md}. Not part of the tests: run scripts/bench-photos.
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SHARED = Path(os.environ.get("SGML_SHARED_DATA", ROOT.parent / "shared" / "data"))
PHOTOS = SHARED / "images" / "clothing_small"


def peer(paths):
    import cv2
    import imagehash
    import numpy as np
    from PIL import Image

    cv2.setNumThreads(1)
    rows = []
    started = time.perf_counter()
    for p in paths:
        data = Path(p).read_bytes()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        rows.append({
            "blur": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
            "brightness": float(grey.mean()),
            "contrast": float(grey.std()),
            "phash": str(imagehash.phash(Image.open(io.BytesIO(data)))),
        })
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "photos_per_second": len(paths) / seconds, "rows": rows,
            "library": f"OpenCV {cv2.__version__} + imagehash {imagehash.__version__}"}


EDITS = ["resize50", "jpeg50", "crop10", "bright+20", "bright-20"]


def edited_copies(paths, work):
    """Writes the edits of each photo; returns (original index, edit, path) rows."""
    from PIL import Image, ImageEnhance
    rows = []
    for i, p in enumerate(paths):
        img = Image.open(p).convert("RGB")
        w, h = img.size
        for edit in EDITS:
            out = work / f"{i}-{edit}.jpg"
            if edit == "resize50":
                img.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(out, quality=90)
            elif edit == "jpeg50":
                img.save(out, quality=50)
            elif edit == "crop10":
                img.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(out, quality=90)
            else:
                factor = 1.2 if edit == "bright+20" else 0.8
                ImageEnhance.Brightness(img).enhance(factor).save(out, quality=90)
            rows.append((i, edit, str(out)))
    return rows


def near_duplicates(originals, copies, hash_of):
    """Recall at the largest threshold with false-positive rate <= 1%, overall and per edit."""
    import numpy as np
    h_orig = np.array([hash_of[p] for p in originals], dtype=np.uint64)
    h_copy = np.array([hash_of[p] for _, _, p in copies], dtype=np.uint64)
    owner = np.array([i for i, _, _ in copies])

    def dist(a, b):
        x = np.bitwise_xor(a[:, None], b[None, :])
        return np.unpackbits(x.view(np.uint8).reshape(len(a), len(b), 8), axis=2).sum(axis=2)

    d_oc = dist(h_orig, h_copy)
    d_oo = dist(h_orig, h_orig)
    positive = d_oc[owner, np.arange(len(copies))]
    negatives = np.concatenate([d_oc[owner[None, :] != np.arange(len(originals))[:, None]],
                                d_oo[np.triu_indices(len(originals), 1)]])
    best = None
    for t in range(65):
        fpr = float((negatives <= t).mean())
        if fpr <= 0.01:
            best = (t, fpr)
    t, fpr = best
    per_edit = {e: float((positive[[k for k, (_, ed, _) in enumerate(copies) if ed == e]] <= t).mean())
                for e in EDITS}
    return {"threshold_bits": t, "false_positive_rate": fpr, "recall": float((positive <= t).mean()),
            "recall_per_edit": per_edit, "negatives": int(negatives.size), "positives": int(positive.size)}


def ours(list_path, threads):
    out = subprocess.run([str(RELEASE / "anchor-photos"), str(list_path), str(threads)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    paths = sorted(str(p) for p in PHOTOS.rglob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        list_path = Path(tmp) / "photos.txt"
        list_path.write_text("\n".join(paths) + "\n")
        runs = {"peer": [peer(paths) for _ in range(args.repeats)]}
        for t in (1, 2):
            runs[f"sgml-{t}"] = [ours(list_path, t) for _ in range(args.repeats)]
        # Near-duplicates on the test photos and their edited copies.
        tests = sorted(str(p) for p in (PHOTOS / "test").rglob("*.jpg"))
        copies = edited_copies(tests, Path(tmp))
        every = tests + [p for _, _, p in copies]
        every_list = Path(tmp) / "every.txt"
        every_list.write_text("\n".join(every) + "\n")
        ours_hash = {p: int(r["phash"], 16) for p, r in zip(every, ours(every_list, 2)["rows"])}
        theirs_hash = {p: int(r["phash"], 16) for p, r in zip(every, peer(every)["rows"])}
        dup = {"sgml": near_duplicates(tests, copies, ours_hash),
               "imagehash": near_duplicates(tests, copies, theirs_hash)}
    best = {k: max(v, key=lambda r: r["photos_per_second"]) for k, v in runs.items()}
    median = {k: statistics.median(r["photos_per_second"] for r in v) for k, v in runs.items()}
    p_rows, o_rows = best["peer"]["rows"], best["sgml-1"]["rows"]
    gap = lambda k: max(abs(o[k] - p[k]) / max(abs(p[k]), 1e-9) for o, p in zip(o_rows, p_rows))
    hamming = [bin(int(o["phash"], 16) ^ int(p["phash"], 16)).count("1") for o, p in zip(o_rows, p_rows)]
    model, flags = cpu()
    report = {
        "date": time.strftime("%Y-%m-%d"), "cpu": model, "flags": flags, "photos": len(paths),
        "repeats": args.repeats, "peer": best["peer"]["library"],
        "photos_per_second": median,
        "ratio_1_thread": median["sgml-1"] / median["peer"],
        "ratio_2_threads": median["sgml-2"] / median["peer"],
        "max_blur_gap": gap("blur"), "max_brightness_gap": gap("brightness"),
        "max_contrast_gap": gap("contrast"),
        "phash_mean_hamming": statistics.mean(hamming), "phash_max_hamming": max(hamming),
        "near_duplicates": dup,
    }
    out = ROOT / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "photos.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Photo quality + pHash: sgml against OpenCV + imagehash", "",
        f"{report['date']}, {model} ({', '.join(flags)}); {len(paths)} JPEGs of clothing_small; "
        f"median of {args.repeats} runs; peer: {report['peer']} on one core.", "",
        "| | photos/s | vs peer |", "|---|---|---|",
        f"| OpenCV + imagehash (Python) | {median['peer']:.0f} | 1 |",
        f"| sgml, 1 thread | {median['sgml-1']:.0f} | {report['ratio_1_thread']:.2f}x |",
        f"| sgml, 2 threads | {median['sgml-2']:.0f} | {report['ratio_2_threads']:.2f}x |", "",
        f"Goal >= 2x. Agreement with OpenCV: largest relative gap blur {100 * report['max_blur_gap']:.3f}%, "
        f"brightness {100 * report['max_brightness_gap']:.3f}%, contrast {100 * report['max_contrast_gap']:.3f}%; "
        f"pHash against imagehash's: mean {report['phash_mean_hamming']:.1f} bits of 64 differ, "
        f"at most {report['phash_max_hamming']} (area averaging here, Lanczos there).", "",
        f"Near-duplicates: {len(tests)} test photos x {len(EDITS)} edits; threshold = the most bits "
        "keeping the false-positive rate <= 1%:", "",
        "| hash | threshold (bits) | FPR | recall (goal >= 0.95) | " + " | ".join(EDITS) + " |",
        "|---|---|---|---|" + "---|" * len(EDITS),
    ]
    for name, r in dup.items():
        lines.append(f"| {name} | {r['threshold_bits']} | {r['false_positive_rate']:.4f} | {r['recall']:.3f} | "
                     + " | ".join(f"{r['recall_per_edit'][e]:.3f}" for e in EDITS) + " |")
    lines.append("")
    (out / "photos.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
