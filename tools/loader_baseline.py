#!/usr/bin/env python3
"""torchvision DataLoader baseline for `lt-bench loader`.

Reads the same shard directory with pyarrow, decodes with PIL and augments
with torchvision transforms equivalent to each lt-loader pipeline, two views
per image, in a torch DataLoader with the same number of worker processes
and batch size. Prints images/s the same way as `lt-bench loader`, plus a
`RESULT {json}` line.

    . tools/env.sh
    $LT_GLMC_PYTHON tools/loader_baseline.py --shards DIR --pipeline imagenet \
        --threads 2 --batch-size 64 --views 2 --steps 50

Pipelines (GLMC's reference transforms):
  cifar        RandomCrop(size, padding=4) + RandomHorizontalFlip
  imagenet     RandomResizedCrop(224, scale=(0.08, 1)) + RandomHorizontalFlip
               + ColorJitter(0.4, 0.4, 0.4, 0) + RandomGrayscale(0.2)
               + GaussianBlur(sigma in [0.1, 2]) with p = 0.5 (MoCo v2's PIL
               ImageFilter blur, as the GLMC/MoCo code uses; the cheaper of
               the two common choices, so the baseline is not handicapped)
  randaugment  RandomResizedCrop(224) + RandomHorizontalFlip + RandAugment(2, 10)
  eval         Resize(256) + CenterCrop(224)
Views are uint8 CHW (PILToTensor): normalisation happens on the device in
both systems.
"""
import argparse
import io
import json
import os
import random
import time

import pyarrow.parquet as pq
import torch
from PIL import Image, ImageFilter
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T


class PilGaussianBlur:
    """MoCo v2's blur: PIL GaussianBlur with a random radius."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def make_transform(name, src_size):
    if name == "cifar":
        return T.Compose([T.RandomCrop(src_size, padding=4), T.RandomHorizontalFlip(), T.PILToTensor()])
    if name == "imagenet":
        return T.Compose([
            T.RandomResizedCrop(224, scale=(0.08, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.0)], p=1.0),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([PilGaussianBlur((0.1, 2.0))], p=0.5),
            T.PILToTensor(),
        ])
    if name == "randaugment":
        return T.Compose([
            T.RandomResizedCrop(224, scale=(0.08, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandAugment(num_ops=2, magnitude=10),
            T.PILToTensor(),
        ])
    if name == "eval":
        return T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    if name == "eval-identity":
        return T.PILToTensor()
    raise SystemExit(f"unknown pipeline {name!r}")


class ShardDataset(Dataset):
    def __init__(self, shards, split, pipeline, views):
        manifest = json.load(open(os.path.join(shards, "manifest.json")))
        self.channels = manifest["channels"]
        images, labels = [], []
        for s in manifest["splits"][split]["shards"]:
            t = pq.read_table(os.path.join(shards, s["file"]), columns=["image", "label"])
            images.extend(x["bytes"] for x in t.column("image").to_pylist())
            labels.extend(t.column("label").to_pylist())
        self.images, self.labels = images, labels
        self.resident_bytes = sum(len(b) for b in images)
        first = Image.open(io.BytesIO(images[0]))
        self.transform = make_transform(pipeline, first.size[::-1])
        self.mode = "RGB" if (pipeline in ("imagenet", "randaugment") or self.channels == 3) else "L"
        self.views = views

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = Image.open(io.BytesIO(self.images[i])).convert(self.mode)  # decode once
        views = torch.stack([self.transform(img) for _ in range(self.views)])
        return views, self.labels[i], i


def proc_stat(pid):
    """(cpu seconds, peak RSS bytes) of one process from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        cpu = (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
        hwm = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
        return cpu, hwm
    except (OSError, IndexError, ValueError):
        return 0.0, 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--pipeline", default="cifar")
    ap.add_argument("--threads", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-split", action="store_true")
    ap.add_argument("--json", help="append the JSON report to this file")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    torch.set_num_threads(1)
    t_open = time.perf_counter()
    ds = ShardDataset(a.shards, "test" if a.test_split else "train", a.pipeline, a.views)
    open_s = time.perf_counter() - t_open
    dl = DataLoader(ds, batch_size=a.batch_size, shuffle=True, drop_last=True, num_workers=a.threads,
                    persistent_workers=a.threads > 0, prefetch_factor=2 if a.threads > 0 else None)

    def batches():
        while True:
            yield from dl

    it = batches()
    for _ in range(a.warmup):
        next(it)
    pids = [os.getpid()]
    w = getattr(getattr(dl, "_iterator", None), "_workers", None) or []
    pids += [p.pid for p in w]
    cpu0 = sum(proc_stat(p)[0] for p in pids)
    t = time.perf_counter()
    images = 0
    shape = None
    for _ in range(a.steps):
        views, labels, idx = next(it)
        images += views.shape[0]
        shape = list(views.shape[2:])
    seconds = time.perf_counter() - t
    stats = [proc_stat(p) for p in pids]
    cpu = sum(s[0] for s in stats) - cpu0
    rss = sum(s[1] for s in stats)
    r = dict(tool="torchvision", pipeline=a.pipeline, shards=a.shards, threads=a.threads, batch_size=a.batch_size,
             views=a.views, steps=a.steps, slots=a.batch_size, images=images, seconds=seconds,
             images_per_s=images / seconds, views_per_s=images * a.views / seconds, cpu_s=cpu,
             cpu_cores=cpu / seconds, peak_rss_bytes=rss, resident_dataset_bytes=ds.resident_bytes,
             sample_shape=shape, open_s=open_s, torch=torch.__version__)
    mib = lambda b: b / 2**20
    print(f"torchvision {a.pipeline}: {r['images_per_s']:.1f} images/s, {r['views_per_s']:.1f} views/s "
          f"({images} images, {seconds:.2f} s, {a.threads} workers, batch {a.batch_size}, {a.views} views, sample {shape})")
    print(f"cpu {cpu:.2f} s = {r['cpu_cores']:.2f} cores; peak RSS (sum over processes) {mib(rss):.1f} MiB "
          f"(resident dataset {mib(ds.resident_bytes):.1f} MiB)")
    line = json.dumps(r)
    print("RESULT " + line)
    if a.json:
        with open(a.json, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
