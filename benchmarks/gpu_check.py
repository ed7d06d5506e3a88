"""CUDA check of resnext_core alone (no ikomia: the GPU machines have no ikomia wheel for their Python).

  python benchmarks/gpu_check.py [--out results.json]

1. precision fidelity: top-1 agreement of bf16 / fp16 with fp32 on the same images;
2. speed of our model path (channels_last, cudnn.benchmark, autocast): bs1 latency, bs256 throughput;
3. a real training run on scikit-learn's digits on CUDA (AMP), then held-out accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def speed(classifier, batch: int, repeats: int = 30) -> dict:
    import torch

    from resnext_core.runtime import autocast

    x = torch.randn(batch, 3, 224, 224, device=classifier.device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(classifier.device, classifier.dtype):
        for _ in range(5):
            classifier.runner.model(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            classifier.runner.model(x)
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    return {"ms_per_batch": round(1000 * seconds, 3), "images_per_s": round(batch / seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args()
    os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp())
    import numpy as np
    import torch

    from resnext_core import load_classifier, models

    torch.backends.cudnn.benchmark = True
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    path = models.cached_weights_path(models.resolve_weights("resnext50"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.manual_seed(0)
    state = models.build_model("resnext50").state_dict()
    state["fc.weight"] *= 100  # random features are weak: make the ranking depend on the image
    torch.save(state, path)

    rng = np.random.default_rng(0)
    images = [(rng.random((240, 320, 3)) * 255).astype(np.uint8) for _ in range(64)]
    reference = load_classifier("resnext50", device="cuda", precision="fp32").predict(images).argmax(1)
    report["agreement_with_fp32"] = {}
    report["speed"] = {}
    for precision in ("fp32", "bf16", "fp16"):
        classifier = load_classifier("resnext50", device="cuda", precision=precision)
        top1 = classifier.predict(images).argmax(1)
        report["agreement_with_fp32"][precision] = float((top1 == reference).float().mean())
        report["speed"][precision] = {f"bs{b}": speed(classifier, b) for b in (1, 256)}
        print(precision, report["agreement_with_fp32"][precision], report["speed"][precision], flush=True)

    from digits_dataset import heldout_items, write_digits_dataset
    from resnext_core.data import read_image
    from resnext_core.training import TrainConfig, Trainer

    folder = tempfile.mkdtemp()
    write_digits_dataset(folder)
    config = TrainConfig(dataset_folder=os.path.join(folder, "train"), output_folder=os.path.join(folder, "runs"),
                         model_name="resnext50", weights="none", train_mode="scratch", input_size=32, epochs=8,
                         batch_size=32, optimizer="adamw", learning_rate=0.002, weight_decay=0.05, hflip=False,
                         min_crop_scale=0.6, val_split=0.1, num_workers=4, device="cuda", export_onnx=True)
    started = time.perf_counter()
    result = Trainer(config).run()
    classifier = load_classifier(weight_file=os.path.join(result.run_folder, "best.pth"), device="cuda")
    items = heldout_items(folder)
    predicted = classifier.predict([read_image(p) for p, _ in items]).argmax(1).tolist()
    accuracy = float(np.mean([classifier.class_names[i] == truth for i, (_, truth) in zip(predicted, items)]))
    report["training"] = {"seconds": round(time.perf_counter() - started, 1), "heldout_accuracy": accuracy,
                          "images_per_second": [round(h["images_per_second"]) for h in result.history],
                          "onnx": os.path.exists(os.path.join(result.run_folder, "model.onnx"))}
    print(report["training"], flush=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
