"""R arguments of layer constructors -> what ``torch.nn`` expects.

R numbers arrive as doubles: size-like arguments are made ints, dim-like ones
(``dim``, ``start_dim``, ``end_dim``) are shifted from 1-based.
"""

from __future__ import annotations

from .torch_indices import dim, to_int

__all__ = ["INT_ARGS", "DIM_ARGS", "FLOAT_ARGS", "convert_kwargs", "coerce_init"]

INT_ARGS = frozenset(
    """
in_features out_features in_channels out_channels kernel_size stride padding dilation groups
num_features num_embeddings embedding_dim num_layers hidden_size input_size output_size
normalized_shape num_heads embed_dim num_classes size upscale_factor downscale_factor num_groups
num_channels nhead d_model dim_feedforward kdim vdim proj_size num_parameters output_padding
in1_features in2_features sizes unflattened_size scale_factor_int
""".split()
)
DIM_ARGS = frozenset(["dim", "start_dim", "end_dim"])
FLOAT_ARGS = frozenset(
    """
p eps momentum negative_slope alpha beta lambd margin label_smoothing value max_norm norm_type
threshold min_val max_val delta lr weight_decay init lower upper scale_factor
""".split()
)


def convert_kwargs(kwargs, ints=INT_ARGS, dims=DIM_ARGS):
    out = {}
    for k, v in kwargs.items():
        if k in dims:
            v = dim(v)
        elif k in ints and not isinstance(v, str):
            v = to_int(v)
        out[k] = v
    return out


def coerce_init(args, kwargs):
    """Best-effort conversion of R arguments for a Python base ``__init__``:
    integral doubles become ints except for known float-valued names."""
    args = [to_int(a) if isinstance(a, float) and a.is_integer() else a for a in args]
    kw = {}
    for k, v in kwargs.items():
        if k in DIM_ARGS:
            v = dim(v)
        elif k not in FLOAT_ARGS and isinstance(v, (float, list)):
            try:
                v = to_int(v)
            except (ValueError, TypeError):
                pass
        kw[k] = v
    return args, kw
