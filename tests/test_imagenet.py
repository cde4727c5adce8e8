import pytest

from inceptionism.errors import ConfigError
from inceptionism.imagenet import categories, class_index, class_name


def test_categories_are_torchvisions_imagenet_list():
    from torchvision.models import ResNet50_Weights

    assert categories() == tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    assert len(categories()) == 1000 and len(set(categories())) == 1000


@pytest.mark.parametrize(
    ("target", "index"),
    [("goldfish", 1), ("Goldfish", 1), (" great white shark ", 2), ("great_white_shark", 2), (1, 1), ("999", 999)],
)
def test_class_index_by_name_or_index(target, index):
    assert class_index(target) == index


def test_class_name():
    assert class_name(1) == "goldfish" and class_name(0) == "tench"


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("goldfsh", "did you mean 'goldfish'"),
        ("shark", "did you mean 'great white shark' or 'tiger shark'"),
        ("zzzz", "unknown ImageNet class 'zzzz'; give a name or an index 0–999"),
        (1000, "out of range"),
        ("-1", "out of range"),
        (True, "bad class"),
    ],
)
def test_unknown_classes_suggest_close_names(target, words):
    with pytest.raises(ConfigError, match=words):
        class_index(target)
