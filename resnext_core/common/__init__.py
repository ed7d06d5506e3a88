"""What inference and training share: parameters (schema.py), errors, the model table (models.py), preprocessing,
image files and folders, the checkpoint format, atomic files, devices and precisions, metrics, temperature
scaling, plots, ONNX export and the names of a run folder's files."""
