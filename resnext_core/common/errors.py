"""Errors the plugins show to users as they are: each message names the culprit."""


class ResNeXtError(ValueError):
    """Base of every user-facing error of this package."""


class ConfigError(ResNeXtError):
    """A parameter value is invalid."""


class ImageError(ResNeXtError):
    """An input image cannot be classified."""


class UnreadableImageError(ImageError):
    """An image file cannot be decoded: `path` names it, `reason` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"Cannot read image {path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):  # rebuilt from its fields where it crosses processes (loader workers)
        return type(self), (self.path, self.reason)


class CheckpointError(ResNeXtError):
    """A weight or class file is missing, corrupt or inconsistent."""


class WeightsUnavailableError(ResNeXtError):
    """Pretrained weights are neither cached nor downloadable."""


class DatasetError(ResNeXtError):
    """A training dataset is missing, empty or malformed."""


class WorkerError(ResNeXtError):
    """A training process of a distributed run failed, or could not be started."""
