r"""Hierarchies over text: tokens -> words -> sentences -> paragraphs -> document."""
from __future__ import annotations

import re
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.data.datapipes import functional_transform

from hsa_geo._checks import as_bool, as_even_dim, as_int
from hsa_geo.transforms._base import HierarchyTransform, describe
from hsa_geo.transforms.sequence import as_pos_kind, grid_positions

__all__ = ['TextHierarchy', 'regex_tokenize']

LEVELS = ('token', 'word', 'sentence', 'paragraph', 'document')
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_PARAGRAPH = re.compile(r"\n\s*\n")


def regex_tokenize(text: str) -> Tuple[List[str], List[Tuple[int, int]]]:
    r"""Word pieces and punctuation (``\w+`` or one other non-space
    character) with their character offsets."""
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    return [text[a:b] for a, b in spans], spans


def _spans(text: str, separator: re.Pattern, start: int = 0, end: Optional[int] = None):
    end = len(text) if end is None else end
    out, cursor = [], start
    for m in separator.finditer(text, start, end):
        if text[cursor:m.start()].strip():
            out.append((cursor, m.start()))
        cursor = m.end()
    if text[cursor:end].strip():
        out.append((cursor, end))
    return out


def _owner(starts: Tensor, spans: List[Tuple[int, int]]) -> Tensor:
    r"""Index of the span holding each start offset (the last span starting at
    or before it)."""
    begin = torch.tensor([a for a, _ in spans], dtype=torch.long)
    return (torch.searchsorted(begin, starts, right=True) - 1).clamp(min=0)


@functional_transform('text_hierarchy')
class TextHierarchy(HierarchyTransform):
    r"""Builds the hierarchy tokens -> words -> sentences -> paragraphs ->
    document of a text (functional name: :obj:`text_hierarchy`), the setting
    of the paper's hierarchical text classification.

    Words are whitespace-separated spans, sentences end at ``.``, ``!`` or
    ``?`` followed by white space, paragraphs are separated by blank lines.
    Tokens come from :obj:`tokenizer`: a Hugging Face fast tokenizer (its
    ``input_ids`` and offsets are used) or, by default, :func:`regex_tokenize`.
    Every sample gets all five node types (levels with one member are
    pass-through for HSA), so texts of any shape batch together.

    The input is a :class:`~torch_geometric.data.Data` with a ``text``
    string (other graph-level attributes such as ``y`` are kept).  The output
    :class:`~torch_geometric.data.HeteroData` has node types ``'token'`` (with
    ``input_ids`` when the tokenizer gives them and ``char_span``), ``'word'``,
    ``'sentence'``, ``'paragraph'``, ``'document'``; edges ``(level, 'in',
    next level)``; position vectors ``hsa_pos``: each node's index among its
    siblings as 1D-grid features of size :obj:`pos_dim`; and ``tokens`` (the
    token strings).

    The paper's hierarchy has no word level (tokens -> sentences ->
    paragraphs -> document, three levels under the document): ``words=False``
    builds it.  Texts without blank lines have one paragraph, a pass-through
    level; ``paragraph_sentences=k`` makes paragraphs of ``k`` consecutive
    sentences instead (inside each blank-line paragraph).

    Args:
        tokenizer (callable, optional): A Hugging Face fast tokenizer, or a
            function ``text -> (tokens, offsets)``. (default: regex)
        pos_dim (int, optional): Size of the position vectors. (default: 16)
        words (bool, optional): Group tokens into words (WordPiece pieces of
            one word under one node) before sentences. (default: :obj:`True`)
        paragraph_sentences (int, optional): Paragraphs as windows of this
            many sentences; :obj:`None`: blank-line paragraphs.
            (default: :obj:`None`)
        pos_kind (str, optional): ``'sinusoidal'`` 1D-grid features or
            ``'fourier'`` (random Fourier features, the paper's choice); see
            :func:`~hsa_geo.transforms.sequence.grid_positions`.
            (default: ``'sinusoidal'``)
    """
    def __init__(self, tokenizer: Optional[Callable] = None, pos_dim: int = 16,
                 words: bool = True, paragraph_sentences: Optional[int] = None,
                 pos_kind: str = 'sinusoidal'):
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"'tokenizer' must be a Hugging Face fast tokenizer or a "
                            f"function text -> (tokens, offsets), got "
                            f"{type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.pos_dim = as_even_dim(pos_dim)
        self.words = as_bool(words, 'words')
        self.pos_kind = as_pos_kind(pos_kind)
        self.paragraph_sentences = None if paragraph_sentences is None else \
            as_int(paragraph_sentences, 'paragraph_sentences', minimum=1)
        # the tokenizer decides the leaves: its description (name and a digest
        # of its vocabulary, or a function's code) is part of the repr
        self._tokenizer_description = describe(tokenizer)

    def config(self):
        out = dict(tokenizer=_Described(self._tokenizer_description), pos_dim=self.pos_dim)
        if not self.words:  # the defaults stay out of the repr (and cache keys)
            out['words'] = False
        if self.paragraph_sentences is not None:
            out['paragraph_sentences'] = self.paragraph_sentences
        if self.pos_kind != 'sinusoidal':
            out['pos_kind'] = self.pos_kind
        return out

    def tokenize(self, text: str):
        if self.tokenizer is None:
            tokens, spans = regex_tokenize(text)
            return tokens, spans, None
        if getattr(self.tokenizer, 'is_fast', False):
            enc = self.tokenizer(text, add_special_tokens=False,
                                 return_offsets_mapping=True)
            spans = [tuple(s) for s in enc['offset_mapping']]
            keep = [i for i, (a, b) in enumerate(spans) if b > a]
            ids = torch.tensor([enc['input_ids'][i] for i in keep], dtype=torch.long)
            spans = [spans[i] for i in keep]
            return [text[a:b] for a, b in spans], spans, ids
        tokens, spans = self.tokenizer(text)
        return list(tokens), [tuple(s) for s in spans], None

    def forward(self, data: Data) -> HeteroData:
        text = getattr(data, 'text', None)
        if not isinstance(text, str):
            raise ValueError(f"'data.text' must be a string, got {type(text).__name__}")
        tokens, spans, ids = self.tokenize(text)
        if not tokens:
            raise ValueError("'data.text' has no tokens (empty or only white space)")
        starts = torch.tensor([a for a, _ in spans], dtype=torch.long)
        paragraphs = _spans(text, _PARAGRAPH)
        sentences = [s for a, b in paragraphs for s in _spans(text, _SENTENCE_END, a, b)]
        if self.paragraph_sentences is not None:  # windows of k sentences per paragraph
            k = self.paragraph_sentences
            paragraphs = [(group[0][0], group[-1][1])
                          for a, b in paragraphs
                          for inside in [[x for x in sentences if a <= x[0] < b]]
                          for group in (inside[i:i + k] for i in range(0, len(inside), k))]
        words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        # parent of every token, word, sentence, paragraph (by character offsets)
        token_word = _owner(starts, words)
        word_sentence = _owner(torch.tensor([a for a, _ in words]), sentences)
        sentence_paragraph = _owner(torch.tensor([a for a, _ in sentences]), paragraphs)
        # keep only words that hold a token (a tokenizer may skip some)
        used = torch.unique(token_word)
        token_word = torch.searchsorted(used, token_word)
        word_sentence = word_sentence[used]
        used = torch.unique(word_sentence)
        word_sentence = torch.searchsorted(used, word_sentence)
        sentence_paragraph = sentence_paragraph[used]
        used = torch.unique(sentence_paragraph)
        sentence_paragraph = torch.searchsorted(used, sentence_paragraph)
        parents = [token_word, word_sentence, sentence_paragraph,
                   torch.zeros(int(sentence_paragraph.max()) + 1, dtype=torch.long)]
        levels = list(LEVELS)
        if not self.words:  # tokens straight into sentences
            parents = [word_sentence[token_word]] + parents[2:]
            levels.remove('word')

        out = HeteroData()
        for key, value in data.items():
            if key != 'text':
                out[key] = value
        out.text = text
        out.tokens = tokens
        out['token'].num_nodes = len(tokens)
        out['token'].char_span = torch.tensor(spans, dtype=torch.long).view(-1, 2)
        if ids is not None:
            out['token'].input_ids = ids
        for level, parent in enumerate(parents):
            child_type, parent_type = levels[level], levels[level + 1]
            out[parent_type].num_nodes = int(parent.max()) + 1
            out[child_type, 'in', parent_type].edge_index = torch.stack(
                [torch.arange(parent.numel()), parent])
            out[child_type].hsa_pos = grid_positions(_rank_in_family(parent), self.pos_dim,
                                                     self.pos_kind)
        out['document'].hsa_pos = torch.zeros(1, self.pos_dim)
        return out


class _Described(str):
    # a description already made by describe(), shown as it is
    def __repr__(self) -> str:
        return str(self)


def _rank_in_family(parent: Tensor) -> Tensor:
    r"""Index of each child among its siblings (children are in order)."""
    first = torch.cat([torch.ones(1, dtype=torch.bool), parent[1:] != parent[:-1]])
    start = torch.cummax(torch.where(first, torch.arange(parent.numel()), 0), 0)[0]
    return torch.arange(parent.numel()) - start
