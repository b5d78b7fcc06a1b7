"""What the docstring examples of `pyluz` start with (`make test-doctest`): `torch`, `nn` and `pyluz`
imported, and a fresh temporary folder as the working directory, so examples that write files
leave nothing behind. The tests in tests/ have their own conftest."""

import pytest


@pytest.fixture(autouse=True)
def _docstring_example_namespace(request, doctest_namespace, tmp_path, monkeypatch):
    from _pytest.doctest import DoctestItem

    if not isinstance(request.node, DoctestItem):
        return
    import torch
    from torch import nn

    import pyluz

    doctest_namespace.update(torch=torch, nn=nn, pyluz=pyluz)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
