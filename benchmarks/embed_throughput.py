"""Image2Vec throughput: decode + preprocess + model, images per second, on this machine.

    python benchmarks/embed_throughput.py [--images 512] [--runs 3] [--weights PATH] [--source DIR]
                                          [--device cpu|cuda] [--name embed_throughput]

Decoding runs in a thread pool (Pillow releases the GIL) overlapped with inference.
"""

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from _common import dataset_path, spread, write


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--source", default=None)
    parser.add_argument("--decode-threads", type=int, default=1)
    parser.add_argument("--runtime", default="auto", choices=["auto", "onnx", "torch"])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--name", default="embed_throughput", help="result file name (without .json)")
    args = parser.parse_args()

    from oscar_fashion_ai.ml import datasets, preprocessing
    from oscar_fashion_ai.ml.embedder import Embedder

    records = datasets.labelled_records(dataset_path(args.source))[: args.images]
    paths = [r.path for r in records]
    embedder = Embedder(args.weights, runtime=args.runtime, device=args.device)
    size = embedder.info.image_size

    def load(path):
        return preprocessing.prepare(embedder.load_image(path), size)

    import numpy as np
    import torch

    # warm-up
    embedder.embed_tensor(torch.from_numpy(np.stack([load(p) for p in paths[: args.batch]])))
    end_to_end, model_only = [], []
    pool = ThreadPoolExecutor(args.decode_threads)
    for _ in range(args.runs):
        started = time.perf_counter()
        batches = [paths[i : i + args.batch] for i in range(0, len(paths), args.batch)]
        pending = pool.submit(lambda b: list(map(load, b)), batches[0])
        model_time = 0.0
        for i in range(len(batches)):
            arrays = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(lambda b: list(map(load, b)), batches[i + 1])
            t = time.perf_counter()
            embedder.embed_tensor(torch.from_numpy(np.stack(arrays)))
            model_time += time.perf_counter() - t
        elapsed = time.perf_counter() - started
        end_to_end.append(len(paths) / elapsed)
        model_only.append(len(paths) / model_time)
    write(
        args.name,
        {
            "command": "python benchmarks/embed_throughput.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "name"),
            "model_version": embedder.version,
            "runtime": embedder.runtime,
            "device": str(embedder.device),
            "image_size": size,
            "images": len(paths),
            "end_to_end_images_per_s": spread(end_to_end),
            "model_only_images_per_s": spread(model_only),
            "target_images_per_s": 100,
        },
    )


if __name__ == "__main__":
    main()
