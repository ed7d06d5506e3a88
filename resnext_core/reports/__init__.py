"""What users read of a model's results: pictures (plots.py) and the evaluation folder a scored test set leaves
(evaluation_folder.py). Above common/ and data/ (a picture of the worst predictions reads their image files),
below inference/ and training/, which both write them."""
