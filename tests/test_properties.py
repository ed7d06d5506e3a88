"""Property tests (hypothesis): any image array and any parameter string get a result or a clear error."""
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from resnext_core.errors import ConfigError, ImageError
from resnext_core.models import resolve_model_name, resolve_weights
from resnext_core.preprocess import MAX_INPUT_SIZE, MIN_INPUT_SIZE, Preprocessing
from resnext_core.runtime import resolve_device, resolve_precision
from resnext_core.schema import BOOL, CHOICE, FLOAT, INT, SIZE, Option

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_])
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 6)),
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=DTYPES, shape=SHAPES)
def test_any_array_gives_a_tensor_or_a_clear_image_error(data, dtype, shape):
    # No subnormal floats: ikomia's libraries turn on flush-to-zero, and hypothesis refuses to draw them then.
    elements = None
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(width=np.dtype(dtype).itemsize * 8, allow_subnormal=False)
    image = data.draw(hnp.arrays(dtype, shape, elements=elements))
    try:
        tensor = Preprocessing(32, 36)(image)
    except ImageError as error:
        assert str(error)  # a message that names the problem
        return
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32 and torch.isfinite(tensor).all()


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=20))
def test_any_parameter_string_gives_a_value_or_a_config_error(text):
    options = (Option(1, "n", "", INT, low=0, high=100, name="n"), Option(0.5, "x", "", FLOAT, low=0.0, high=1.0, name="x"),
               Option(True, "flag", "", BOOL, name="flag"), Option("a", "pick", "", CHOICE, choices=("a", "B"), name="pick"),
               Option(None, "size", "", SIZE, low=MIN_INPUT_SIZE, high=MAX_INPUT_SIZE, name="size"))
    for parse in [lambda option=option: option.parse(text) for option in options] + [
                  lambda: resolve_model_name(text), lambda: resolve_weights("resnext50", text),
                  lambda: resolve_device(text), lambda: resolve_precision(text, torch.device("cpu"))]:
        try:
            parse()
        except ConfigError as error:
            assert str(error)
