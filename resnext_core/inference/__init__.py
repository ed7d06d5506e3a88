"""The inference side: InferConfig (config.py) in, a Classifier out (classifier.py: load_classifier), on torch or a
CPU engine (engines.py, openvino_engine.py, onnxruntime_engine.py, their disk cache engine_cache.py, int8.py),
with explanations (explain.py) and labels drawn (drawing.py). It does not import the training side."""
