"""CUDA check of resnext_core alone (no ikomia: the GPU machines have no ikomia wheel for their Python).

  python -m benchmarks gpu

1. precision fidelity: top-1 agreement of bf16 / fp16 with fp32 on the same images;
2. speed of our model path (channels_last, cudnn.benchmark, autocast): bs1 latency, bs256 throughput;
3. a real training run on scikit-learn's digits on CUDA (AMP), then held-out accuracy.
"""
from __future__ import annotations

import os
import tempfile

from .common import default_out, timed, write_report


def speed(classifier, batch: int, repeats: int = 30) -> dict:
    import torch

    from resnext_core.common.runtime import autocast

    x = torch.randn(batch, 3, 224, 224, device=classifier.device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(classifier.device, classifier.dtype):
        for _ in range(5):
            classifier.runner.model(x)
        torch.cuda.synchronize()

        def batches():
            for _ in range(repeats):
                classifier.runner.model(x)
            torch.cuda.synchronize()

        seconds = timed(batches)[1] / repeats
    return {"ms_per_batch": round(1000 * seconds, 3), "images_per_s": round(batch / seconds, 1)}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=default_out("gpu"))


def run(args) -> int:
    os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp())
    import numpy as np
    import torch

    from resnext_core import load_classifier
    from resnext_core.common import models

    torch.backends.cudnn.benchmark = True
    report = {"device": torch.cuda.get_device_name()}
    path = models.cached_weights_path(models.resolve_weights("resnext50"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.manual_seed(0)
    state = models.build_model("resnext50").state_dict()
    state["fc.weight"] *= 100  # random features are weak: make the ranking depend on the image
    torch.save(state, path)

    rng = np.random.default_rng(0)
    images = [(rng.random((240, 320, 3)) * 255).astype(np.uint8) for _ in range(64)]
    reference = load_classifier(model_name="resnext50", device="cuda", precision="fp32").predict(images).argmax(1)
    report["agreement_with_fp32"] = {}
    report["speed"] = {}
    for precision in ("fp32", "bf16", "fp16"):
        classifier = load_classifier(model_name="resnext50", device="cuda", precision=precision)
        top1 = classifier.predict(images).argmax(1)
        report["agreement_with_fp32"][precision] = float((top1 == reference).float().mean())
        report["speed"][precision] = {f"bs{b}": speed(classifier, b) for b in (1, 256)}
        print(precision, report["agreement_with_fp32"][precision], report["speed"][precision], flush=True)

    from resnext_core.data.decode import read_image
    from resnext_core.training.config import TRAIN_SCHEMA
    from resnext_core.training.trainer import Trainer
    from resnext_tools.digits import DIGITS_RECIPE, heldout_items, write_digits_dataset

    folder = tempfile.mkdtemp()
    write_digits_dataset(folder)
    config = TRAIN_SCHEMA.parse({**DIGITS_RECIPE, "dataset_folder": os.path.join(folder, "train"),
                                 "output_folder": os.path.join(folder, "runs"), "num_workers": "4", "device": "cuda",
                                 "export_onnx": "True"})
    result, seconds = timed(Trainer(config).run)
    classifier = load_classifier(model_weight_file=os.path.join(result.run_folder, "best.pth"), device="cuda")
    items = heldout_items(folder)
    predicted = classifier.predict([read_image(p) for p, _ in items]).argmax(1).tolist()
    accuracy = float(np.mean([classifier.class_names[i] == truth for i, (_, truth) in zip(predicted, items)]))
    report["training"] = {"seconds": round(seconds, 1), "heldout_accuracy": accuracy,
                          "images_per_second": [round(h["images_per_second"]) for h in result.history],
                          "onnx": os.path.exists(os.path.join(result.run_folder, "model.onnx"))}
    print(report["training"], flush=True)
    write_report(report, args.out)
    return 0
