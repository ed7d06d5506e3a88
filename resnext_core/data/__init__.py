"""The data side, shared by inference and training: image files decoded at the size needed (decode.py), datasets
listed from class folders or label files (folders.py, label_files.py, datasets.py) as compact item lists
(items.py), read for torch with broken files skipped and named (loading.py), and the bulk commands' sources
(sources.py). It imports only common/."""
