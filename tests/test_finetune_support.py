"""Builders shared by the fine-tuning tests (a synthetic bilingual world), and their own checks.

Two synthetic "languages" (codes en and fr, disjoint made-up vocabularies, the same
grammar) give: a pretraining corpus preprocessed by ``xlint preprocess`` (its BPE
and dictionary), a tiny pretrained ``xlm_adapter`` (adapter variant) trained by
``fairseq-train`` for a few updates, and downstream files in the official formats
(CoNLL POS, WikiAnn NER, XNLI tsv, SQuAD JSON).  Everything is built once per
session: :func:`world` memoises it for every test module that asks.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from click.testing import CliRunner

from conftest import run_fairseq_train

from xlint.preprocess.task_formats import (
    NLI_LABELS,
    NliExample,
    QaAnswer,
    QaExample,
    TaggedSentence,
    write_conll,
    write_nli_tsv,
    write_squad_json,
    write_wikiann,
)
from xlint.user_dir.data.finetune_data import read_records

LANGS = ("en", "fr")
WORDS: Dict[str, Dict[str, List[str]]] = {
    "en": {"DET": ["the", "a", "this"], "ADJ": ["big", "small", "red", "old"],
           "NOUN": ["cat", "dog", "house", "tree", "bird"], "VERB": ["sees", "eats", "walks", "likes"],
           "ADP": ["in", "on", "near"], "PRON": ["he", "she"], "X": ["hmm", "oh"]},
    "fr": {"DET": ["lo", "una", "cet"], "ADJ": ["grando", "petito", "rugo", "vielo"],
           "NOUN": ["chato", "chieno", "maisono", "arbro", "oiselo"], "VERB": ["voito", "mangeo", "marcho", "aimo"],
           "ADP": ["dano", "suro", "pro"], "PRON": ["ilo", "elo"], "X": ["bof", "hein"]},
}
NAMES = {"en": ["john", "mary", "paris", "london"], "fr": ["jeano", "mario", "parisso", "londro"]}
TAGS = ["DET", "ADJ", "NOUN", "VERB", "ADP", "PRON", "X"]
TEMPLATES = [
    ["DET", "NOUN", "VERB", "DET", "NOUN"],
    ["DET", "ADJ", "NOUN", "VERB", "DET", "ADJ", "NOUN", "ADP", "DET", "NOUN"],
    ["PRON", "VERB", "DET", "NOUN"],
    ["X", "PRON", "VERB", "DET", "ADJ", "NOUN"],
    ["DET", "NOUN", "ADP", "DET", "NOUN", "VERB", "X"],
]


def tagged_sentence(rng: random.Random, lang: str, length_factor: int = 1) -> TaggedSentence:
    template = [tag for _ in range(length_factor) for tag in rng.choice(TEMPLATES)]
    return TaggedSentence([rng.choice(WORDS[lang][tag]) for tag in template], list(template), lang)


def ner_sentence(rng: random.Random, lang: str) -> TaggedSentence:
    tokens, tags = [], []
    for tag in rng.choice(TEMPLATES):
        if tag == "NOUN" and rng.random() < 0.4:
            first, second = rng.sample(NAMES[lang], 2)
            kind = "PER" if NAMES[lang].index(first) < 2 else "LOC"
            tokens += [first, second]
            tags += [f"B-{kind}", f"I-{kind}"]
        else:
            tokens.append(rng.choice(WORDS[lang][tag]))
            tags.append("O")
    return TaggedSentence(tokens, tags, lang)


@dataclass
class World:
    root: Path
    corpus: Path
    checkpoint: Path
    files: Dict[str, Dict[Tuple[str, str], Path]] = field(default_factory=dict)
    converted: Dict[str, Path] = field(default_factory=dict)

    def specs(self, name: str) -> List[str]:
        return [f"{lang}:{split}={path}" for (lang, split), path in sorted(self.files[name].items())]


_WORLD: Optional[World] = None


def build_corpus(root: Path) -> Path:
    from xlint.preprocess.inputs import resolve_inputs
    from xlint.preprocess.pipeline import PreprocessConfig, run_preprocess

    rng = random.Random(7)
    raw = root / "raw"
    raw.mkdir(parents=True)
    specs = []
    for lang in LANGS:
        lines = [" ".join(tagged_sentence(rng, lang).tokens) for _ in range(500)]
        lines += [" ".join(ner_sentence(rng, lang).tokens) for _ in range(200)]
        (raw / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        specs.append(f"{lang}={raw / f'{lang}.txt'}")
    corpus = root / "corpus"
    run_preprocess(PreprocessConfig(out_dir=corpus, inputs=resolve_inputs(specs), valid_size=30, test_size=30,
                                    metadev_size=20, dedupe=False, vocab_size=120, workers=1, progress=False))
    return corpus


def write_downstream_files(root: Path) -> Dict[str, Dict[Tuple[str, str], Path]]:
    rng = random.Random(11)
    files: Dict[str, Dict[Tuple[str, str], Path]] = {"pos": {}, "ner": {}, "xnli": {}, "qa": {}}
    sizes = {"train": 64, "dev": 24, "test": 24}
    folder = root / "downstream"
    folder.mkdir()
    for lang in LANGS:
        for split, count in sizes.items():
            pos = [tagged_sentence(rng, lang) for _ in range(count)]
            pos.append(tagged_sentence(rng, lang, length_factor=6))  # long: windows at --max-length 16
            path = folder / f"{lang}-{split}.pos.conll"
            write_conll(path, pos)
            files["pos"][(lang, split)] = path
            path = folder / f"{lang}-{split}.panx.tsv"
            write_wikiann(path, [ner_sentence(rng, lang) for _ in range(count)])
            files["ner"][(lang, split)] = path
            nli = []
            for _ in range(count):
                premise = tagged_sentence(rng, lang).tokens
                label = rng.choice(["entailment", "neutral", "contradiction"])
                hypothesis = premise[:3] if label == "entailment" else (
                    premise[::-1] if label == "contradiction" else tagged_sentence(rng, lang).tokens)
                nli.append(NliExample(" ".join(premise), " ".join(hypothesis), label, lang))
            path = folder / f"{lang}-{split}.xnli.tsv"
            write_nli_tsv(path, nli)
            files["xnli"][(lang, split)] = path
            qa = []
            for number in range(count // 2):
                sentences = [" ".join(tagged_sentence(rng, lang, length_factor=2).tokens) for _ in range(3)]
                context = " . ".join(sentences)
                words = context.split()
                index = rng.randrange(len(words))
                start = len(" ".join(words[:index])) + (1 if index else 0)
                qa.append(QaExample(f"{lang}-{split}-{number}", context, f"{words[index]} ?",
                                    [QaAnswer(words[index], start)], lang))
            path = folder / f"{lang}-{split}.squad.json"
            write_squad_json(path, qa)
            files["qa"][(lang, split)] = path
    return files


def convert(world: World, command: str, name: str, out_name: str, *extra: str) -> Path:
    return convert_files(world, command, world.specs(name), world.root / out_name, *extra)


#: learnable XNLI: the label is the word class of every hypothesis word, a class that the
#: premise (of the first template: DET NOUN VERB DET NOUN) never has
NLI_CUES = {"entailment": "ADJ", "neutral": "ADP", "contradiction": "PRON"}


def learnable_nli(rng: random.Random, lang: str, count: int) -> List[NliExample]:
    examples = []
    for number in range(count):
        label = NLI_LABELS[number % 3]
        premise = [rng.choice(WORDS[lang][tag]) for tag in TEMPLATES[0]]
        hypothesis = [rng.choice(WORDS[lang][NLI_CUES[label]]) for _ in range(4)]
        examples.append(NliExample(" ".join(premise), " ".join(hypothesis), label, lang))
    return examples


def learnable_qa(rng: random.Random, lang: str, split: str, count: int) -> List[QaExample]:
    """Learnable QA: the answer is the one name in a context of three sentences of ordinary
    words (many contexts need two windows at ``--max-length`` 32)."""
    examples = []
    for number in range(count):
        words = [word for _ in range(3) for word in tagged_sentence(rng, lang).tokens]
        name = rng.choice(NAMES[lang])
        index = rng.randrange(len(words) + 1)
        words.insert(index, name)
        start = len(" ".join(words[:index])) + (1 if index else 0)
        examples.append(QaExample(f"{lang}-{split}-{number}", " ".join(words), "who ?", [QaAnswer(name, start)],
                                  lang))
    return examples


_LEARNABLE: Dict[str, Path] = {}


def learnable(world_: World) -> Dict[str, Path]:
    """Converted learnable XNLI (``nli``) and QA (``qa``) data (built on first use): en has
    240 training, 30 dev and 30 test examples each, fr 30 dev and 30 test examples."""
    if not _LEARNABLE:
        rng = random.Random(5)
        folder = world_.root / "learnable"
        folder.mkdir()
        specs: Dict[str, List[str]] = {"nli": [], "qa": []}
        sizes = [("en", "train", 240), ("en", "dev", 30), ("en", "test", 30), ("fr", "dev", 30), ("fr", "test", 30)]
        for lang, split, count in sizes:
            path = folder / f"{lang}-{split}.xnli.tsv"
            write_nli_tsv(path, learnable_nli(rng, lang, count))
            specs["nli"].append(f"{lang}:{split}={path}")
            path = folder / f"{lang}-{split}.squad.json"
            write_squad_json(path, learnable_qa(rng, lang, split, count))
            specs["qa"].append(f"{lang}:{split}={path}")
        for name, command in (("nli", "xnli"), ("qa", "squad")):
            _LEARNABLE[name] = convert_files(world_, command, specs[name], folder / f"ft-{name}")
    return dict(_LEARNABLE)


def convert_files(world_: World, command: str, specs: List[str], out: Path, *extra: str) -> Path:
    from xlint.cli.main import cli

    result = CliRunner().invoke(cli, ["data", "convert", command, "--corpus", str(world_.corpus), "--out", str(out),
                                      "--quiet", *extra, *specs])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def world(tmp_path_factory) -> World:
    """The session's synthetic world (built on first use)."""
    global _WORLD
    if _WORLD is None:
        root = tmp_path_factory.mktemp("finetune_world")
        corpus = build_corpus(root)
        save_dir = root / "pretrained"
        run_fairseq_train(corpus, save_dir, variant="adapter", max_update=8)
        built = World(root=root, corpus=corpus, checkpoint=save_dir / "checkpoint_last.pt",
                      files=write_downstream_files(root))
        built.converted["pos"] = convert(built, "conll", "pos", "ft-pos", "--kind", "pos")
        built.converted["ner"] = convert(built, "wikiann", "ner", "ft-ner")
        built.converted["xnli"] = convert(built, "xnli", "xnli", "ft-xnli")
        built.converted["qa"] = convert(built, "squad", "qa", "ft-qa")
        _WORLD = built
    return _WORLD


def finetune_cli(data: Path, save_dir: Path, *args: str) -> dict:
    """``xlint finetune DATA --save-dir SAVE_DIR ARGS`` in-process; asserts success, returns results.json."""
    from xlint.cli.main import cli

    result = CliRunner().invoke(cli, ["finetune", str(data), "--save-dir", str(save_dir), *args])
    assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
    return json.loads((save_dir / "results.json").read_text(encoding="utf-8"))


def relabel_dev(source: Path, destination: Path, lang: str, relabel: Callable[[List[str]], List[str]]) -> Path:
    """A copy of tagging data whose ``lang`` dev tags are replaced by ``relabel(tags)``."""
    shutil.copytree(source, destination)
    path = destination / lang / "dev.jsonl"
    records = read_records(str(destination), lang, "dev")
    for record in records:
        record["tags"] = relabel(record["tags"])
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return destination


def poison_dev(source: Path, destination: Path, lang: str) -> Path:
    """A copy of tagging data whose ``lang`` dev tags are all shifted to another tag: the better
    the tagger, the worse it scores there, so that dev set's best epoch comes early."""
    labels = json.loads((source / "meta.json").read_text(encoding="utf-8"))["labels"]
    shift = {tag: labels[(i + 1) % len(labels)] for i, tag in enumerate(labels)}
    return relabel_dev(source, destination, lang, lambda tags: [shift[tag] for tag in tags])


# --------------------------------------------------------------------------- checks of the builders


def test_synthetic_grammar_is_consistent():
    rng = random.Random(0)
    for lang in LANGS:
        for _ in range(50):
            sentence = tagged_sentence(rng, lang, length_factor=2)
            assert len(sentence.tokens) == len(sentence.tags)
            for token, tag in zip(sentence.tokens, sentence.tags):
                assert token in WORDS[lang][tag]
            ner = ner_sentence(rng, lang)
            for previous, tag in zip(["O"] + ner.tags, ner.tags):  # valid IOB2
                assert not tag.startswith("I-") or previous[2:] == tag[2:]
    assert not set(w for ws in WORDS["en"].values() for w in ws) & set(w for ws in WORDS["fr"].values() for w in ws)


def copy_tree(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination
