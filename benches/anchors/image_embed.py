#!/usr/bin/env python3
"""Image-embedder anchor (issue 16): what `sgml images` runs per photo to embed it (read,
decode, Pillow-exact bilinear resize to 256, centre crop 224, EfficientNet-Lite0 forward,
pooled 1,280 features; sgml_models::vision) against PyTorch doing the same with the same
weights: PIL open + convert('RGB'), torchvision Resize(256), CenterCrop(224), ToTensor,
Normalize(0.5, 0.5), timm's tf_efficientnet_lite0 (inference mode), on every photo of
../shared/data/images/clothing_small (779 JPEGs). PyTorch runs at batch sizes 1, 8 and 32
(larger batches are slower on a CPU here: the expanded activations of 32 photos exceed a
gigabyte) and its best is the one compared.

Each side runs in a fresh process at 1 and 2 threads (torch.set_num_threads; rayon's pool),
end to end from file bytes to features, the model loaded before the clock starts.
Reported: photos per second and the ratio (goal >= 1.5 at both thread counts); peak RSS of
the process (VmHWM / ru_maxrss) and the ratio (goal <= 1/3); and agreement: the cosine of
each photo's features with PyTorch's (lowest and mean).

Writes benches/results/image-embed.{json,md}. Not part of the tests: run
scripts/bench-image-embed.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import cpu

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SHARED = Path(os.environ.get("SGML_SHARED_DATA", ROOT.parent / "shared" / "data"))
PHOTOS = SHARED / "images" / "clothing_small"
WEIGHTS = ROOT / ".venv" / "share" / "sgml" / "efficientnet-lite0"
BATCHES = (1, 8, 32)


def lite0():
    """timm's tf_efficientnet_lite0 with the converted package weights (as
    tests/fixtures/efficientnet/make_fixture.py loads them)."""
    import timm
    from safetensors.torch import load_file

    ours = {k: v for k, v in load_file(str(WEIGHTS / "model.safetensors")).items()
            if not k.endswith("num_batches_tracked")}
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    names = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    model.load_state_dict(dict(zip(names, ours.values())), strict=False)
    return model.eval()


def peer(list_file, threads, batch, out):
    """The PyTorch side, run in its own process (`--peer`)."""
    import torch
    import torchvision.transforms as T
    from PIL import Image

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    model = lite0()
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    paths = Path(list_file).read_text().split()
    features = []
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i:i + batch]])
            features.append(model.forward_features(x).mean(dim=(2, 3)))
    seconds = time.perf_counter() - started
    torch.cat(features).numpy().astype("<f4").tofile(out)
    print(json.dumps({
        "photos": len(paths), "threads": threads, "seconds": seconds,
        "photos_per_second": len(paths) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "library": f"torch {torch.__version__}, torchvision, timm tf_efficientnet_lite0", "batch": batch,
    }))


def run(cmd):
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="thread counts to run at")
    ap.add_argument("--peer", nargs=4, metavar=("LIST", "THREADS", "BATCH", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        return peer(args.peer[0], int(args.peer[1]), int(args.peer[2]), args.peer[3])
    paths = sorted(str(p) for p in PHOTOS.glob("*/*/*") if p.is_file())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "photos.txt"
        listing.write_text("\n".join(paths) + "\n")
        for threads in map(int, args.threads.split(",")):
            ours_out, theirs_out = Path(tmp) / f"ours{threads}.f32", Path(tmp) / f"theirs{threads}.f32"
            print(f"sgml, {threads} thread(s) ...", file=sys.stderr)
            ours = run([str(RELEASE / "anchor-image-embed"), str(WEIGHTS), str(listing), str(threads), str(ours_out)])
            runs = []
            for batch in BATCHES:
                print(f"PyTorch, {threads} thread(s), batch {batch} ...", file=sys.stderr)
                runs.append(run([sys.executable, __file__, "--peer", str(listing), str(threads), str(batch),
                                 str(theirs_out)]))
            theirs = max(runs, key=lambda r: r["photos_per_second"])
            theirs["all_batches"] = {r["batch"]: r["photos_per_second"] for r in runs}
            a = np.fromfile(ours_out, dtype="<f4").reshape(len(paths), -1).astype(np.float64)
            b = np.fromfile(theirs_out, dtype="<f4").reshape(len(paths), -1).astype(np.float64)
            cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
            results.append({
                "threads": threads, "sgml": ours, "pytorch": theirs,
                "speed_ratio": ours["photos_per_second"] / theirs["photos_per_second"],
                "rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
                "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                "cosine_worst_file": paths[int(cos.argmin())],
            })
    model, flags = cpu()
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": model, "flags": flags, "photos": len(paths),
              "results": results}
    out = ROOT / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "image-embed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Image embedder: sgml (EfficientNet-Lite0, sgml_models::vision) against PyTorch", "",
        f"{report['date']}, {model} ({', '.join(flags)}); {len(paths)} JPEGs of clothing_small; "
        "file bytes to pooled 1,280 features (decode, resize 256, crop 224, forward).", "",
        "| threads | sgml photos/s | PyTorch photos/s | ratio (goal >= 1.5) | sgml peak RSS MB | "
        "PyTorch peak RSS MB | ratio (goal <= 0.33) | cosine min / mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['threads']} | {r['sgml']['photos_per_second']:.1f} | {r['pytorch']['photos_per_second']:.1f} "
                     f"| {r['speed_ratio']:.2f}x | {r['sgml']['peak_rss_mb']:.0f} | {r['pytorch']['peak_rss_mb']:.0f} "
                     f"| {r['rss_ratio']:.2f} | {r['cosine_min']:.6f} / {r['cosine_mean']:.6f} |")
    lines += [""] + [f"- {r['threads']} thread(s): PyTorch photos/s by batch size "
                     + ", ".join(f"{b}: {v:.1f}" for b, v in r["pytorch"]["all_batches"].items())
                     + f" (best: {r['pytorch']['batch']}); lowest cosine on {Path(r['cosine_worst_file']).name}"
                     for r in results]
    lines += ["", f"PyTorch: {results[0]['pytorch']['library']}; peak RSS is the process's (Python, PyTorch "
              "and the model included), as a service would run it.", ""]
    (out / "image-embed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
