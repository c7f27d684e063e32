import statistics

import pytest
import torch

pytest.importorskip('sklearn')


def _counted_macro_f1(pred, target, num_classes):
    # every class counts; one absent from prediction and target scores 0
    scores = []
    for c in range(num_classes):
        tp = int(((pred == c) & (target == c)).sum())
        fp = int(((pred == c) & (target != c)).sum())
        fn = int(((pred != c) & (target == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / num_classes


def _counted_mean_iou(pred, target, num_classes):
    # the classes present in prediction or target
    ious = []
    for c in range(num_classes):
        union = int(((pred == c) | (target == c)).sum())
        if union:
            ious.append(int(((pred == c) & (target == c)).sum()) / union)
    return sum(ious) / len(ious)


def _counted_precision_recall(pred, target, num_classes):
    precision, recall = [], []
    for c in range(num_classes):
        tp = int(((pred == c) & (target == c)).sum())
        predicted, actual = int((pred == c).sum()), int((target == c).sum())
        if predicted or actual:
            precision.append(tp / predicted if predicted else 0.0)
            recall.append(tp / actual if actual else 0.0)
    return statistics.fmean(precision), statistics.fmean(recall)


def _cases():
    gen = torch.Generator().manual_seed(0)
    for i in range(40):
        num_classes = 2 + i % 7
        present = max(1, num_classes - i % 3)    # the last classes often absent from both
        n = 1 + 3 * i
        target = torch.randint(0, present, (n, ), generator=gen)
        pred = target.clone() if i % 5 == 0 else torch.randint(0, present, (n, ), generator=gen)
        yield num_classes, pred, target


def test_task_scores_are_the_counted_ones(examples_on_path):
    from _experiment import Task
    for num_classes, pred, target in _cases():
        logits = torch.nn.functional.one_hot(pred, num_classes).float()
        scores = Task('classification', num_classes).scores(logits, target)
        assert scores['accuracy'] == pytest.approx(float((pred == target).float().mean()))
        assert scores['macro_f1'] == pytest.approx(_counted_macro_f1(pred, target, num_classes),
                                                   abs=1e-12)
        segmentation = Task('segmentation', num_classes, target=lambda batch: batch.y)
        assert segmentation.scores(logits, target)['miou'] == pytest.approx(
            _counted_mean_iou(pred, target, num_classes), abs=1e-12)


def test_zero_shot_scores_are_the_counted_ones(examples_on_path):
    pytest.importorskip('transformers')
    from zero_shot import scores
    for num_classes, pred, target in _cases():
        found = scores(pred, target)
        precision, recall = _counted_precision_recall(pred, target, num_classes)
        assert found['precision'] == pytest.approx(precision, abs=1e-12)
        assert found['recall'] == pytest.approx(recall, abs=1e-12)
