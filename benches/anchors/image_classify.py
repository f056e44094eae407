#!/usr/bin/env python3
"""Image-classifier anchor (issue 16): category from photo on
../shared/data/images/clothing_small (train/ 600 photos, test/ 179, 10 classes).

  sgml      what `sgml train images` fits: EfficientNet-Lite0 features (sgml_models::vision),
            standardised, multinomial logistic regression (linfa, L-BFGS), trained on train/;
  PyTorch   the same backbone in PyTorch (timm tf_efficientnet_lite0 with the same weights,
            torchvision preprocessing) + scikit-learn StandardScaler + LogisticRegression
            (max_iter 2000), the pipeline a data scientist would write;
  scratch   a small CNN trained from scratch in PyTorch (four conv-BN-ReLU-pool blocks,
            128x128 inputs, random flips and crops, Adam, 40 epochs).

Reported: test accuracy and macro-F1 of each; goals: sgml >= the PyTorch pipeline, and
>= 20 points above from-scratch. Writes benches/results/image-classify.{json,md}. Not part
of the tests: run scripts/bench-image-classify.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from image_embed import lite0
from machine import cpu

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
SHARED = Path(os.environ.get("SGML_SHARED_DATA", ROOT.parent / "shared" / "data"))
PHOTOS = SHARED / "images" / "clothing_small"
WEIGHTS = ROOT / ".venv" / "share" / "sgml" / "efficientnet-lite0"


def split(name):
    return [(str(p), p.parent.name) for p in sorted((PHOTOS / name).glob("*/*")) if p.is_file()]


def macro_f1(truth, predicted, labels):
    f1s = []
    for c in labels:
        tp = sum(t == c and p == c for t, p in zip(truth, predicted))
        fp = sum(t != c and p == c for t, p in zip(truth, predicted))
        fn = sum(t == c and p != c for t, p in zip(truth, predicted))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def scores(truth, predicted, labels):
    return {"accuracy": float(np.mean([t == p for t, p in zip(truth, predicted)])),
            "macro_f1": macro_f1(truth, predicted, labels)}


def pytorch_pipeline(train, test, threads):
    import torch
    import torchvision.transforms as T
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    torch.set_num_threads(threads)
    model = lite0()
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])

    def features(rows):
        out = []
        with torch.inference_mode():
            for i in range(0, len(rows), 32):
                x = torch.stack([transform(Image.open(p).convert("RGB")) for p, _ in rows[i:i + 32]])
                out.append(model.forward_features(x).mean(dim=(2, 3)).numpy())
        return np.concatenate(out)

    started = time.perf_counter()
    xtr, xte = features(train), features(test)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(xtr, [l for _, l in train])
    predicted = list(clf.predict(xte))
    return {"seconds": time.perf_counter() - started, **scores([l for _, l in test], predicted,
                                                               sorted({l for _, l in train}))}


def scratch_cnn(train, test, threads, epochs=40, seed=0):
    import torch
    import torch.nn as nn
    import torchvision.transforms as T
    from PIL import Image

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    labels = sorted({l for _, l in train})
    index = {l: i for i, l in enumerate(labels)}
    augment = T.Compose([T.RandomResizedCrop(128, scale=(0.7, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])
    plain = T.Compose([T.Resize(144), T.CenterCrop(128), T.ToTensor()])
    train_images = [Image.open(p).convert("RGB").resize((160, 160)) for p, _ in train]
    train_y = torch.tensor([index[l] for _, l in train])

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    net = nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 256),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(256, len(labels)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    started = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(train_images))
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            x = torch.stack([augment(train_images[j]) for j in idx])
            loss = nn.functional.cross_entropy(net(x), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.inference_mode():
        x = torch.stack([plain(Image.open(p).convert("RGB")) for p, _ in test])
        predicted = [labels[i] for i in net(x).argmax(1).tolist()]
    return {"seconds": time.perf_counter() - started, "epochs": epochs,
            **scores([l for _, l in test], predicted, labels)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--alpha", default="1e-4", help="sgml's L2 penalty (train images --alpha)")
    ap.add_argument("--epochs", type=int, default=40, help="from-scratch CNN epochs")
    args = ap.parse_args()
    train, test = split("train"), split("test")
    with tempfile.TemporaryDirectory() as tmp:
        lists = []
        for name, rows in (("train", train), ("test", test)):
            f = Path(tmp) / f"{name}.tsv"
            f.write_text("".join(f"{p}\t{l}\n" for p, l in rows))
            lists.append(str(f))
        print("sgml ...", file=sys.stderr)
        started = time.perf_counter()
        ours = json.loads(subprocess.run(
            [str(RELEASE / "anchor-image-classify"), str(WEIGHTS), *lists, str(args.threads), args.alpha],
            check=True, capture_output=True, text=True).stdout)
        ours["seconds"] = time.perf_counter() - started
    print("PyTorch + scikit-learn ...", file=sys.stderr)
    theirs = pytorch_pipeline(train, test, args.threads)
    print("CNN from scratch ...", file=sys.stderr)
    scratch = scratch_cnn(train, test, args.threads, args.epochs)
    model, flags = cpu()
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": model, "flags": flags, "threads": args.threads,
              "train": len(train), "test": len(test), "alpha": float(args.alpha),
              "sgml": ours, "pytorch_pipeline": theirs, "scratch_cnn": scratch,
              "gap_vs_pytorch": ours["accuracy"] - theirs["accuracy"],
              "gap_vs_scratch": ours["accuracy"] - scratch["accuracy"]}
    out = ROOT / "benches" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "image-classify.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Image classifier: clothing_small, category from photo", "",
        f"{report['date']}, {model} ({', '.join(flags)}), {args.threads} threads; train {len(train)} photos, "
        f"test {len(test)}, 10 classes.", "",
        "| pipeline | test accuracy | macro-F1 | seconds (embed + fit + score) |", "|---|---|---|---|",
        f"| sgml (EfficientNet-Lite0 + standardised logistic regression, alpha {args.alpha}) | "
        f"{ours['accuracy']:.3f} | {ours['macro_f1']:.3f} | {ours['seconds']:.1f} |",
        f"| PyTorch same backbone + scikit-learn LogisticRegression | {theirs['accuracy']:.3f} | "
        f"{theirs['macro_f1']:.3f} | {theirs['seconds']:.1f} |",
        f"| small CNN from scratch ({scratch['epochs']} epochs) | {scratch['accuracy']:.3f} | "
        f"{scratch['macro_f1']:.3f} | {scratch['seconds']:.1f} |", "",
        f"sgml minus PyTorch pipeline: {100 * report['gap_vs_pytorch']:+.1f} points (goal >= 0); "
        f"sgml minus from-scratch: {100 * report['gap_vs_scratch']:+.1f} points (goal >= +20).", "",
    ]
    (out / "image-classify.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
