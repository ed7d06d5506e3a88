"""Plugin metadata both plugins share (Ikomia's CTaskInfo fields, what ikomia-cli sends to HUB): one place, so they
never disagree."""
from ikomia.utils import ApiLanguage, OSType

from ..resnext_core import __version__

# Each plugin's code on GitHub, where HUB links to it: they replace the public plugins of these names.
REPOSITORY = "https://github.com/Ikomia-hub/{name}"

COMMON_INFO = {
    "authors": "Saining Xie, Ross Girshick, Piotr Dollár, Zhuowen Tu, Kaiming He",
    "article": "Aggregated Residual Transformations for Deep Neural Networks",
    "article_url": "https://arxiv.org/abs/1611.05431",
    "journal": "CVPR",
    "year": 2017,
    "license": "BSD-3-Clause",
    "version": __version__,
    "min_ikomia_version": "0.16.1",  # widgets use PyQt6, which ikomia adopted in 0.16
    "max_ikomia_version": "0.17.0",  # exclusive bound, as Ikomia's registry reads it: the 0.16 series
    "min_python_version": "3.11.0",  # the ikomia 0.16.1 wheel is built for CPython 3.11 only
    "max_python_version": "3.12.0",  # exclusive
    "path": "Plugins/Python/Classification",
    "icon_path": "icons/icon.png",
    "documentation_link": "https://pytorch.org/vision/stable/models/resnext.html",
    "original_repository": "https://github.com/pytorch/vision",  # the ResNeXt implementation and weights used
    "language": ApiLanguage.PYTHON,
    "os": OSType.LINUX,  # the ikomia 0.16.1 wheel is built for Linux only
    "algo_tasks": "CLASSIFICATION",
}
KEYWORDS = "resnext,resnet,residual,cnn,classification,torchvision,pytorch"


# Minimum hardware (GB, as Ikomia counts): one process with torch, ikomia and a model (docs/performance.md measures
# its peak).
HARDWARE = {
    "infer_torchvision_resnext": {"min_cpu": 2, "min_ram": 8, "gpu_required": False, "min_vram": 2},
    "train_torchvision_resnext": {"min_cpu": 2, "min_ram": 8, "gpu_required": False, "min_vram": 4},
}


def fill_info(info, **specific) -> None:
    """Set the common fields, then the plugin's own, and its hardware needs on an Ikomia CTaskInfo."""
    for key, value in {**COMMON_INFO, "repository": REPOSITORY.format(name=info.name), **specific}.items():
        setattr(info, key, value)
    for key, value in HARDWARE[info.name].items():
        setattr(info.hardware_config, key, value)
