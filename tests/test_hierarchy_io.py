import pytest
import torch

from hsa_geo import Hierarchy, hsa
from hsa_geo.hierarchy_io import export_shapes


def test_a_saved_hierarchy_loads_with_weights_only(tmp_path):
    h = Hierarchy.from_parent(torch.tensor([4, 4, 5, 5, 6, 6, -1]), 4).with_node_types(
        {'a': (0, 2), 'b': (2, 4), 'group': (4, 6), 'root': (6, 7)})
    path = tmp_path / 'h.pt'
    torch.save({'hierarchy': h, 'step': 3}, path)
    loaded = torch.load(path, weights_only=True)['hierarchy']
    assert loaded == h and loaded.leaf_types == ('a', 'b')
    assert dict(loaded.node_slices) == dict(h.node_slices)
    assert torch.equal(loaded.sibling_index, h.sibling_index)


def test_a_file_cannot_smuggle_a_malformed_forest(tmp_path):
    # loading compiles and checks the parent vector again
    from hsa_geo.hierarchy_io import _load as _load_hierarchy

    class Forged:
        def __reduce__(self):
            return (_load_hierarchy, (torch.tensor([2, 2, 3, 2]), 2, {}, None))  # 2 <-> 3

    path = tmp_path / 'forged.pt'
    torch.save(Forged(), path)
    with pytest.raises(ValueError, match='cycle'):
        torch.load(path, weights_only=True)


def test_between_processes_a_hierarchy_is_not_compiled_again(monkeypatch):
    # DataLoader workers send batches through multiprocessing's pickler
    import io
    import pickle
    from multiprocessing.reduction import ForkingPickler
    h = Hierarchy.from_parent(torch.tensor([4, 4, 5, 5, 6, 6, -1]), 4)
    buffer = io.BytesIO()
    ForkingPickler(buffer).dump(h)

    def refuse(*args, **kwargs):
        raise AssertionError('compiled again')

    monkeypatch.setattr(Hierarchy, 'from_parent', refuse)
    received = pickle.loads(buffer.getvalue())
    assert received == h and received is not h
    assert Hierarchy.of(received.parent) is received



def test_one_exported_program_serves_every_hierarchy():
    from torch.export import Dim, export

    class Attend(torch.nn.Module):
        def forward(self, x, hierarchy):
            from hsa_geo.nn import root_pool
            return root_pool(hsa(x, x, x, hierarchy).flatten(1), hierarchy)

    # exported with a forest of two trees: a size seen as 1 would be specialised
    h = Hierarchy.from_parent(torch.tensor([5, 5, 6, 6, 6, -1, -1]), 5)
    leaves = Dim('leaves')
    program = export(Attend(), (torch.randn(5, 2, 8), h),
                     dynamic_shapes=({0: leaves}, export_shapes(leaves))).module()
    for parent, n in (([4, 4, 5, 5, 6, 6, -1], 4), ([3, 3, 3, -1], 3),
                      ([5, 5, 5, 6, 6, -1, -1], 5)):
        other = Hierarchy.from_parent(torch.tensor(parent), n)
        x = torch.randn(n, 2, 8)
        assert torch.allclose(program(x, other), Attend()(x, other), atol=1e-6)
