"""Loading the treebank and the Kaggle TSV, and the errors for malformed files."""
import pytest

import util

from conftest import write_kaggle_tsv


def test_parse_tree_gives_every_node_root_first():
    assert util.parse_tree("(3 (2 It) (4 (2 's) (3 good)))") == [
        (3, ["It", "'s", "good"]), (2, ["It"]), (4, ["'s", "good"]), (2, ["'s"]), (3, ["good"])]


@pytest.mark.parametrize("line, problem", [
    ("(3 (2 It) (4 good)", "not closed"),
    ("(3 (2 It)) (2 more)", "after the end of the tree"),
    ("(7 (2 It) (4 good))", "label '7'"),
    ("(3 (x It) (4 good))", "label 'x'"),
    ("(3 (2 It) (4 good)))", "unexpected ')' after the end"),
    ("word (3 good)", "outside the tree"),
    ("(3 ())", "followed by a label"),
    ("(3 (2))", "no words"),
])
def test_malformed_tree_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "train.txt"
    path.write_text("(3 (2 It) (3 works))\n" + line + "\n", encoding="utf-8")
    with pytest.raises(util.DataFormatError) as caught:
        util.load_sst(path)
    assert caught.value.line_no == 2
    assert str(path) in str(caught.value) and "line 2" in str(caught.value)
    assert problem in str(caught.value)


def test_missing_file_says_where_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="lib/data/README.md"):
        util.load_sst(tmp_path / "train.txt")


def test_sst_splits_match_the_published_counts(sst_dir):
    # Root label counts from the data set's README, labels 0..4.
    expected = {"train": [1092, 2218, 1624, 2322, 1288], "dev": [139, 289, 229, 279, 165],
                "test": [279, 633, 389, 510, 399]}
    for split, counts in expected.items():
        roots = util.load_sst(sst_dir / f"{split}.txt", roots_only=True)
        assert roots["label"].value_counts().sort_index().tolist() == counts
        assert roots["is_root"].all()
    phrases = util.load_sst(sst_dir / "dev.txt")
    assert phrases["sentence_id"].nunique() == 1101
    assert len(phrases) > 10 * 1101


def test_kaggle_tsv_holds_the_same_phrases_as_the_trees(sst_dir, tmp_path):
    trees = util.load_sst(sst_dir / "dev.txt")
    written = write_kaggle_tsv(tmp_path / "train.tsv", trees)
    loaded = util.load_kaggle_tsv(tmp_path / "train.tsv")
    assert loaded["phrase"].tolist() == written["phrase"].tolist()
    assert loaded["label"].tolist() == written["label"].tolist()
    # Phrases with bare quotes (`` '' and ") survive: the file is not CSV-quoted.
    assert loaded["phrase"].str.contains("``").any()
    assert loaded["is_root"].sum() == 1101
    assert loaded[loaded["is_root"]]["phrase"].tolist() == \
        util.load_sst(sst_dir / "dev.txt", roots_only=True)["phrase"].tolist()


KAGGLE_HEADER = "PhraseId\tSentenceId\tPhrase\tSentiment\n"


@pytest.mark.parametrize("body, line_no, problem", [
    ("1\t1\tA \"quoted\" film\t3\n2\t1\tbroken line\n", 3, "expected 4 tab-separated fields, found 3"),
    ("1\t1\tgood\t3\n2\t1\tbad\t7\n", 3, "Sentiment '7'"),
    ("1\t1\tgood\tpositive\n", 2, "Sentiment 'positive'"),
    ("x\t1\tgood\t3\n", 2, "whole numbers"),
])
def test_malformed_kaggle_tsv_names_file_and_line(tmp_path, body, line_no, problem):
    path = tmp_path / "train.tsv"
    path.write_text(KAGGLE_HEADER + body, encoding="utf-8")
    with pytest.raises(util.DataFormatError) as caught:
        util.load_kaggle_tsv(path)
    assert caught.value.line_no == line_no
    assert f"{path}, line {line_no}" in str(caught.value)
    assert problem in str(caught.value)


def test_kaggle_tsv_with_a_wrong_header(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("PhraseId\tSentenceId\tPhrase\n1\t1\tgood\n", encoding="utf-8")
    with pytest.raises(util.DataFormatError, match="line 1: expected the header"):
        util.load_kaggle_tsv(path)
