"""`pyluz.torch_save` writes the file `torch.save` writes, record for record, whatever it is given."""

import io
import warnings
import zipfile

import pytest
import torch
from torch import nn

from pyluz import torch_save


def _records(data):
    # Every record but the random id torch stamps on each file.
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist() if not name.endswith("serialization_id")}


def _torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _states():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    base = torch.randn(6, 5)
    tagged = torch.ones(2)
    tagged.note = "python attribute"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized creation is deprecated
        quantized = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8)
    yield "model and optimizer", {"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}
    yield "views sharing a storage", {"whole": base, "rows": base[1:3], "strided": base[:, ::2], "t": base.t()}
    yield "one tensor twice", [base, base]
    yield (
        "classic dtypes",
        {
            str(d): torch.zeros(3, dtype=d)
            for d in (torch.half, torch.bfloat16, torch.bool, torch.int8, torch.int64, torch.complex64, torch.float64)
        },
    )
    yield "scalar and empty", {"scalar": torch.tensor(3.0), "empty": torch.empty(0), "empty2d": torch.empty(0, 4)}
    # torch's own path: each of these is reduced as torch.save always does
    yield "parameter", {"p": nn.Parameter(torch.ones(2))}
    yield "requires_grad", {"g": torch.ones(2, requires_grad=True)}
    yield "newer dtype", {"f8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    yield "conj bit", {"c": torch.tensor([1 + 2j]).conj()}
    yield "python attribute", {"tagged": tagged}
    yield "quantized", {"q": quantized}
    yield "plain data", {"n": [1, 2.5, "x", None, (1, 2), True, 10**30, b"bytes"], "nested": {"a": {"b": []}}}


@pytest.mark.parametrize("name,obj", list(_states()), ids=[name for name, _ in _states()])
def test_same_records_as_torch_save(name, obj):
    ours, theirs = _records(torch_save.to_bytes(obj)), _records(_torch_bytes(obj))
    assert ours.keys() == theirs.keys()
    for record in theirs:
        assert ours[record] == theirs[record], f"{name}: record {record} differs"


def test_reads_back_weights_only_with_shared_storage_kept():
    base = torch.arange(12.0).reshape(3, 4)
    state = {"base": base, "row": base[1], "meta": {"epoch": 3}}
    buffer = io.BytesIO()
    torch_save.save(state, buffer)
    back = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert torch.equal(back["base"], base) and torch.equal(back["row"], base[1]) and back["meta"] == {"epoch": 3}
    back["base"][1, 0] = -1.0  # still one storage, as torch.save keeps it
    assert back["row"][0].item() == -1.0


def test_plain_cpu_states_take_the_lean_writer_and_the_rest_torchs_path():
    states = dict(_states())
    for name in ("model and optimizer", "views sharing a storage", "one tensor twice", "classic dtypes", "plain data"):
        torch_save._cpu_bytes(states[name])  # no _NotPlain: written without torch.save
    for name in ("parameter", "requires_grad", "newer dtype", "conj bit", "python attribute", "quantized"):
        with pytest.raises(torch_save._NotPlain):
            torch_save._cpu_bytes(states[name])


def test_two_dtypes_over_one_storage_raise_torchs_error():
    base = torch.zeros(4)
    with pytest.raises(RuntimeError, match="view the same data as different types"):
        torch_save.to_bytes([base, base.view(torch.int32)])
