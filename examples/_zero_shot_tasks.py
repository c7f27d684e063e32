r"""The task models of ``zero_shot.py``: the tasks, their data, scores and the rows
of the paper's Table 3 they stand in for, the fine-tuning recipe, and
all-MiniLM-L6-v2 with mean pooling and a linear head, fine-tuned once per
task and seed and cached.  The recipe: AdamW, lr 1e-4, weight decay 0.01,
10% linear warm-up then linear decay, batch 16, dropout 0.1 before the head,
the epochs of :data:`TASKS`, all parameters trained, the split fixed (seed
0), the fine-tuning seed the head's initialisation and the batch order.

``zero_shot.py`` imports this module as ``from _zero_shot_tasks import ...``:
run as ``python examples/zero_shot.py``, a script has its own folder on the
path."""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from hsa_geo.datasets import news_sentence_pairs, text_corpus, text_split

from _experiment import load_minilm

#: task: (corpus, max tokens, training subset, test subset, epochs); the
#: subsets are drawn from the fixed split's train and test parts
TASKS: Dict[str, Tuple[str, int, int, int, int]] = {
    'rotten_tomatoes': ('rotten_tomatoes', 64, 800, 150, 2),
    'news_articles': ('news_articles', 128, 800, 100, 3),
    'health_tweets': ('health_tweets', 64, 600, 150, 2),
    'news_pairs': ('news_sentence_pairs', 128, 800, 100, 3),
}
#: sentences of the article in the second segment of a pair
PASSAGE_SENTENCES = 2
#: the paper's Table 3 row a task stands in for: its name, and RoBERTa's
#: accuracy before and after HSA
PAPER_ROW = {'rotten_tomatoes': 'SST-2', 'news_articles': 'AGNEWS',
             'health_tweets': '-', 'news_pairs': 'QNLI / MRPC'}
PAPER_ACCURACY = {'rotten_tomatoes': 'SST-2: 0.940 → 0.903',
                  'news_articles': 'AGNEWS: 0.947 → 0.942', 'health_tweets': '-',
                  'news_pairs': 'QNLI: 0.927 → 0.507; MRPC: 0.912 → 0.855'}
#: a task's name in the Table 3 table (``{classes}``: its number of classes)
TASK_LABELS = {'rotten_tomatoes': 'Rotten Tomatoes',
               'news_articles': 'news articles, {classes} outlets',
               'health_tweets': 'health tweets, {classes} accounts',
               'news_pairs': 'news sentence pairs'}
RECIPE = dict(lr=1e-4, weight_decay=0.01, warmup=0.1, batch_size=16, dropout=0.1,
              pooling='mean', split_seed=0, passage_sentences=PASSAGE_SENTENCES,
              subsets='random draw')   # (in the cache key: prefixes until 2026-12-05)


# ------------------------------------------------------------------ the task model
class Classifier(torch.nn.Module):
    r"""The pre-trained encoder, the mean of its valid tokens, a linear head."""
    def __init__(self, encoder, num_classes: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))


def task_data(task: str, train_size: Optional[int], test_size: Optional[int]):
    r"""``(train, test, classes)``: lists of texts (or sentence pairs) with
    label tensors, random subsets (seed 0) of the parts of the fixed split
    (seed 0) of the task's corpus; a size at least a part's takes all of it."""
    corpus_name, _, default_train, default_test, _ = TASKS[task]
    corpus = news_sentence_pairs(passage_sentences=PASSAGE_SENTENCES) \
        if corpus_name == 'news_sentence_pairs' else text_corpus(corpus_name)
    split = text_split(corpus.labels, seed=RECIPE['split_seed'])
    # a seeded random draw from each part, not its first items: the corpora
    # are stored class by class (the first 600 training tweets are all one
    # account's)
    generator = torch.Generator().manual_seed(RECIPE['split_seed'])
    train, test = (part[torch.randperm(len(part), generator=generator)[:size]].sort().values
                   for part, size in ((split['train'], train_size or default_train),
                                      (split['test'], test_size or default_test)))
    return corpus.subset(train), corpus.subset(test), corpus.classes


class Batches:
    r"""A tokenised set in batches of similar length (less padding)."""
    def __init__(self, tokenizer, corpus, max_length: int, batch_size: int,
                 sort: bool = True):
        texts = corpus.texts
        if isinstance(texts[0], tuple):
            enc = tokenizer([a for a, _ in texts], [b for _, b in texts], truncation=True,
                            max_length=max_length)
        else:
            enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.lengths = torch.tensor([len(ids) for ids in enc['input_ids']])
        order = self.lengths.argsort().tolist() if sort else list(range(len(texts)))
        self.batches = []
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            self.batches.append((tokenizer.pad({k: [enc[k][i] for i in rows] for k in enc},
                                               return_tensors='pt'),
                                 corpus.labels[rows]))

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def scores(pred: torch.Tensor, target: torch.Tensor) -> Dict[str, float]:
    r"""Accuracy and the macro precision and recall: scikit-learn's
    unweighted means over the classes present in prediction or target, a
    class never predicted with precision 0."""
    from sklearn.metrics import precision_recall_fscore_support
    precision, recall, _, _ = precision_recall_fscore_support(
        target.numpy(), pred.numpy(), average='macro', zero_division=0)
    return dict(accuracy=float((pred == target).float().mean()),
                precision=float(precision), recall=float(recall))


def recipe_key(task: str, seed: int, train_size: int) -> str:
    spec = json.dumps(dict(RECIPE, task=task, seed=seed, train_size=train_size,
                           epochs=TASKS[task][4], max_length=TASKS[task][1]), sort_keys=True)
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def on_device(enc: dict, labels: torch.Tensor, device) -> tuple:
    r"""A batch's encoding and labels on :obj:`device`."""
    return {k: v.to(device) for k, v in enc.items()}, labels.to(device)


def fine_tuned(task: str, seed: int, train, classes, args, progress) -> Classifier:
    r"""The task model of :obj:`seed`, from the cache or fine-tuned now."""
    tokenizer, encoder = load_minilm()
    model = Classifier(encoder, len(classes), RECIPE['dropout']).to(args.device)
    key = recipe_key(task, seed, len(train))
    path = osp.join(args.cache, f'{task}_seed{seed}_{key}.pt')
    if osp.exists(path):
        model.load_state_dict(torch.load(path, weights_only=True, map_location=args.device))
        return model.eval()
    torch.manual_seed(seed)
    model.head.reset_parameters()
    batches = Batches(tokenizer, train, TASKS[task][1], RECIPE['batch_size'], sort=False)
    epochs = TASKS[task][4]
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE['lr'],
                                  weight_decay=RECIPE['weight_decay'])
    total = epochs * len(batches)
    warmup = max(1, int(RECIPE['warmup'] * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) /
                                                              max(1, total - warmup))))
    model.train()
    generator = torch.Generator().manual_seed(seed)
    bar = progress(total=total, desc=f'fine-tune {task} seed {seed}', leave=False)
    for _ in range(epochs):
        for i in torch.randperm(len(batches), generator=generator).tolist():
            enc, labels = on_device(*batches.batches[i], args.device)
            loss = F.cross_entropy(model(**enc), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f'{loss.item():.3f}')
    bar.close()
    os.makedirs(args.cache, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()
