"""README.md's command lines, checked one by one so that a failure names the README line.

Every command line of README.md's fenced ``bash`` (also ``sh``/``shell``) blocks is one test
case, ``test_readme_command_line[README:N <command>]``: lines continued with a trailing ``\\``
are joined, ``# comments`` dropped, ``&&``/``;``/``|`` split into separate commands. The
checks, by program:

``xlint ...``
    *Parsed* (always): the subcommand is resolved through the real click group
    (``xlint.cli.main.cli``, which imports its command modules lazily), every ``--option`` up
    to a ``--`` (arguments after it are fairseq-train's) must be an option of that command, and
    the line is parsed by a copy of the command whose PATH/FILE parameters are plain strings
    (so input files need not exist) and which refuses unknown options (``xlint pretrain`` and
    ``xlint finetune`` pass unknown options through to fairseq-train): click converts every
    value (choices, int and float ranges), runs the parameters' callbacks and checks required
    options, without running the command.

    *Run for real* on small fixtures, in a scratch folder that stands for the user's working
    directory (the README's relative paths resolve there, absolute ones are moved under it):

    - ``xlint preprocess``: the README line as written (vocabulary size included), on the
      fixture texts below; then the output layout and metadata are checked.
    - ``xlint data convert conllu|conll|wikiann|xnli|squad|tydiqa|mlqa``: the README line as
      written, against the corpus that the README's own ``xlint preprocess --out CORPUS`` line
      builds (or, for a corpus no README line builds, the command in :data:`SETUP_CORPORA`).
      Checked: every input whose README spelling names a language (``LANG:SPLIT=`` or the
      official file name, ``fr_gsd-ud-test.conllu``, ``panx-fr-test.tsv``) gave examples of
      that language and split; a mixed file read with ``--languages`` gave that split for
      every listed language; no written QA record contradicts the language in its TyDiQA id.
    - ``xlint pretrain``: with ``--dry-run`` (added where the README line trains), against the
      corpus built above; the printed fairseq-train command is then checked like a README
      ``fairseq-train`` line (against that corpus) and must train the README's languages and
      variant.
    - ``xlint user-dir`` (inside ``$(...)``): run, its output must be the plugin folder.

    Parsed only: ``xlint finetune`` and ``xlint evaluate`` (they need trained checkpoints),
    ``xlint data convert ... --encoder`` (it needs an XLM-R release),
    ``xlint demo``, ``xlint data fetch-demo`` and ``xlint data convert demo-pos`` (they
    download the pinned demo wheels).

``fairseq-train ...``
    ``$(xlint user-dir)`` is replaced by that command's real output; the data folder by the
    ``tiny_mlm_data`` fixture (see :data:`FAIRSEQ_DATA`); a ``...`` placeholder ("same options
    as above") by the options of the README's previous fairseq-train line (placed first, so the
    line's own options win, as argparse lets the last occurrence win). Then
    ``fairseq.options.get_training_parser()`` + ``parse_args_and_arch`` parse the line with
    xlint's user dir loaded (unknown options and unparseable values fail), ``--arch``,
    ``--task``, ``--criterion``, ``--optimizer`` and ``--lr-scheduler`` must name registered
    components, and ``fairseq.tasks.setup_task`` sets the task up on the data (which checks
    the languages and the task's own option values, e.g. ``--meta-second-order``). Nothing
    trains.

``make TARGET``
    ``make -n TARGET`` in the repository (prints, runs nothing) must succeed.

``recipes/*.sh ...``
    The script exists, is executable, ``bash -n`` accepts it, and every ``--option`` of the
    README line occurs in it.

Any other program in a bash block fails the test (add a check for it here).

README file names -> fixtures (:data:`FIXTURE_FILES`; copied into the scratch folder under
the README's name, so the README line runs unchanged):

==============================================  ===============================================
README name                                     fixture
==============================================  ===============================================
wiki.fr.txt                                     tests/fixtures/readme/wiki.fr.txt (40 sentences)
wiki.en.txt                                     tests/fixtures/preprocess/en.txt
wiki.ar.txt (for SETUP_CORPORA's data/ar-en)    tests/fixtures/preprocess/ar.txt
en_ewt-ud-train.conllu, en_ewt-ud-dev.conllu    tests/fixtures/readme/en_ewt-ud-sample.conllu
fr_gsd-ud-test.conllu                           tests/fixtures/formats/fr_gsd-ud-dev.conllu
panx-en-train.tsv, panx-en-dev.tsv              tests/fixtures/readme/panx-en-sample.tsv
panx-fr-test.tsv                                tests/fixtures/readme/panx-fr-sample.tsv
multinli_1.0_train.txt                          tests/fixtures/formats/multinli_1.0_train.txt
xnli.dev.tsv, xnli.test.tsv                     tests/fixtures/readme/xnli-sample.tsv (en, fr, de)
tydiqa-goldp-v1.1-train.json, ...-dev.json      tests/fixtures/readme/tydiqa-goldp-sample.json
                                                (english, arabic and swahili question ids)
==============================================  ===============================================

A README line known to be wrong is listed in :data:`KNOWN_WRONG` (keyed by its exact
command, so a fixed line is no longer matched) and marked ``xfail(strict=True)`` with the
fix in the reason.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import click
import pytest
from click.testing import CliRunner

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: README file name -> fixture (see the module docstring)
FIXTURE_FILES: Dict[str, Path] = {
    "wiki.fr.txt": FIXTURES / "readme" / "wiki.fr.txt",
    "wiki.en.txt": FIXTURES / "preprocess" / "en.txt",
    "wiki.ar.txt": FIXTURES / "preprocess" / "ar.txt",
    "en_ewt-ud-train.conllu": FIXTURES / "readme" / "en_ewt-ud-sample.conllu",
    "en_ewt-ud-dev.conllu": FIXTURES / "readme" / "en_ewt-ud-sample.conllu",
    "fr_gsd-ud-test.conllu": FIXTURES / "formats" / "fr_gsd-ud-dev.conllu",
    "panx-en-train.tsv": FIXTURES / "readme" / "panx-en-sample.tsv",
    "panx-en-dev.tsv": FIXTURES / "readme" / "panx-en-sample.tsv",
    "panx-fr-test.tsv": FIXTURES / "readme" / "panx-fr-sample.tsv",
    "multinli_1.0_train.txt": FIXTURES / "formats" / "multinli_1.0_train.txt",
    "xnli.dev.tsv": FIXTURES / "readme" / "xnli-sample.tsv",
    "xnli.test.tsv": FIXTURES / "readme" / "xnli-sample.tsv",
    "tydiqa-goldp-v1.1-train.json": FIXTURES / "readme" / "tydiqa-goldp-sample.json",
    "tydiqa-goldp-v1.1-dev.json": FIXTURES / "readme" / "tydiqa-goldp-sample.json",
}

#: corpora that README convert lines read but no README line builds -> the command building it
SETUP_CORPORA: Dict[str, str] = {
    "data/ar-en": "xlint preprocess --out data/ar-en ar=wiki.ar.txt en=wiki.en.txt --vocab-size 32000",
}

#: data folders of README fairseq-train lines -> a real data folder ("tiny_mlm_data": en, fr)
FAIRSEQ_DATA: Dict[str, str] = {"data/fr-en": "tiny_mlm_data"}

#: `xlint data convert` formats run for real (see real_run for the other commands run; the rest is parsed only)
CONVERT_FORMATS_RUN = {"conllu", "conll", "wikiann", "xnli", "squad", "tydiqa", "mlqa"}

#: README lines known to be wrong: exact command (shlex-joined) -> what is wrong and the fix
KNOWN_WRONG: Dict[str, str] = {}

SHELL_LANGUAGES = {"bash", "sh", "shell"}
OPERATORS = {"&&", "||", ";", "|"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
_NUMBER = re.compile(r"^-\.?\d")
#: official file names that carry their language: UD treebanks, PAN-X as XTREME splits it
_FILE_NAME_LANGUAGE = (re.compile(r"^([a-z]{2,3})_[a-z0-9]+-ud-"), re.compile(r"^panx-([a-z]{2,3})-"))


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class ReadmeCommand:
    line: int                 # README line number where the command starts
    argv: Tuple[str, ...]     # the words as bash would pass them (before $(...) substitution)

    @property
    def text(self) -> str:
        return shlex.join(self.argv)

    @property
    def kind(self) -> str:
        program = Path(self.argv[0]).name
        if program == "xlint":
            return "xlint"
        if program == "fairseq-train":
            return "fairseq-train"
        if program == "make":
            return "make"
        if self.recipe() is not None:
            return "recipe"
        return "unknown"

    def recipe(self) -> Optional[str]:
        words = self.argv[1:] if self.argv[0] in ("bash", "sh") else self.argv
        if words and re.fullmatch(r"(\./)?recipes/[\w.-]+\.sh", words[0]):
            return words[0]
        return None


def extract_commands(markdown: str) -> List[ReadmeCommand]:
    """The command lines of the fenced shell blocks of ``markdown``."""
    commands: List[ReadmeCommand] = []
    in_block, buffer, start = False, None, 0
    for number, raw in enumerate(markdown.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            if in_block and buffer is not None:  # a continuation that the block ended
                commands.extend(_split_commands(start, buffer))
                buffer = None
            in_block = not in_block and stripped[3:].strip().lower() in SHELL_LANGUAGES
            continue
        if not in_block:
            continue
        if buffer is None:
            buffer, start = raw, number
        else:
            buffer += " " + raw.strip()
        if buffer.rstrip().endswith("\\"):
            buffer = buffer.rstrip()[:-1]
            continue
        commands.extend(_split_commands(start, buffer))
        buffer = None
    return commands


def _split_commands(line: int, text: str) -> Iterator[ReadmeCommand]:
    words: List[str] = []
    for word in shlex.split(text, comments=True) + [";"]:
        if word in OPERATORS:
            while words and _ASSIGNMENT.match(words[0]):  # NAME=value prefixes
                words.pop(0)
            if words:
                yield ReadmeCommand(line, tuple(words))
            words = []
        else:
            words.append(word)


COMMANDS = extract_commands(README.read_text(encoding="utf-8"))


def _case(command: ReadmeCommand):
    marks = []
    if command.text in KNOWN_WRONG:
        marks.append(pytest.mark.xfail(strict=True, reason=f"README line {command.line}: {KNOWN_WRONG[command.text]}"))
    text = command.text if len(command.text) <= 80 else command.text[:77] + "..."
    return pytest.param(command, id=f"README:{command.line} {text}", marks=marks)


# --------------------------------------------------------------------------- click


@dataclass
class ParsedXlint:
    names: List[str]          # ["xlint", "data", "convert", "xnli"]
    command: click.Command
    args: List[str]           # the arguments after the subcommand names
    params: Dict[str, object]  # what click passes to the command


def resolve_xlint(argv: Sequence[str]) -> Tuple[List[str], click.Command, List[str]]:
    from xlint.cli.main import cli

    names, command, rest = ["xlint"], cli, list(argv[1:])
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            pytest.fail(f"`{' '.join(names)}` needs a subcommand, got {rest[:1]}")
        context = click.Context(command, info_name=" ".join(names))
        default = getattr(command, "default_command", None)  # a group whose bare arguments go to one command
        name = rest.pop(0) if default is None or command.get_command(context, rest[0]) is not None else default
        sub = command.get_command(context, name)
        if sub is None:
            pytest.fail(f"`{' '.join(names)}` has no subcommand {name!r} "
                        f"(it has {', '.join(command.list_commands(context))})")
        names.append(name)
        command = sub
    return names, command, rest


def check_option_names(names: Sequence[str], command: click.Command, args: Sequence[str]) -> None:
    """Every option given before ``--`` is one of the command's (with its value skipped)."""
    by_name = {opt: param for param in command.params if isinstance(param, click.Option)
               for opt in (*param.opts, *param.secondary_opts)}
    before = list(args[:args.index("--")]) if "--" in args else list(args)
    index = 0
    while index < len(before):
        word = before[index]
        if word.startswith("-") and word != "-" and not _NUMBER.match(word):
            name, equals, _ = word.partition("=")
            param = by_name.get(name)
            if param is None:
                known = " ".join(sorted(opt for opt in by_name if opt.startswith("--")))
                pytest.fail(f"`{' '.join(names)}` has no option {name} (it has {known})")
            if not (param.is_flag or param.count or equals):
                index += param.nargs
        index += 1


def parse_without_running(names: Sequence[str], command: click.Command, args: Sequence[str]) -> Dict[str, object]:
    """Click's parse of ``args`` (types, callbacks, required options) with PATHs as strings."""
    params = []
    for param in command.params:
        param = copy.copy(param)
        if isinstance(param.type, (click.Path, click.File)):
            param.type = click.STRING  # input files need not exist here
        params.append(param)
    settings = {key: value for key, value in command.context_settings.items() if key != "ignore_unknown_options"}
    clone = click.Command(names[-1], params=params, context_settings=settings, add_help_option=False)
    try:
        with clone.make_context(" ".join(names), list(args)) as context:
            return dict(context.params)
    except click.ClickException as error:
        pytest.fail(f"`{' '.join(names)}` does not accept the line: {error.format_message()}")


def parse_xlint(argv: Sequence[str]) -> ParsedXlint:
    names, command, args = resolve_xlint(argv)
    check_option_names(names, command, args)
    return ParsedXlint(names, command, args, parse_without_running(names, command, args))


def invoke_xlint(argv: Sequence[str], cwd: Optional[Path] = None):
    from xlint.cli.main import cli

    with contextlib.chdir(cwd or Path.cwd()):
        return CliRunner().invoke(cli, list(argv[1:]), prog_name="xlint")


def substitute(word: str) -> str:
    """``$(xlint ...)`` inside a word -> that command's real output (checked first)."""
    def run(match: re.Match) -> str:
        inner = shlex.split(match.group(1))
        if not inner or inner[0] != "xlint":
            pytest.fail(f"cannot evaluate $({match.group(1)}) (only xlint commands)")
        parse_xlint(inner)
        result = invoke_xlint(inner)
        assert result.exit_code == 0, f"$({match.group(1)}) failed: {result.output}"
        output = result.stdout.strip()
        if inner[1:] == ["user-dir"]:
            assert (Path(output) / "__init__.py").is_file(), f"xlint user-dir printed {output!r}, not the plugin"
        return output
    return _SUBSTITUTION.sub(run, word)


# --------------------------------------------------------------------------- fairseq


def check_fairseq_train(args: Sequence[str], cwd: Path):
    """Parse a fairseq-train argument list as fairseq-train would and set its task up on the data."""
    from fairseq import options, tasks
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models import ARCH_MODEL_REGISTRY
    from fairseq.optim import OPTIMIZER_REGISTRY
    from fairseq.optim.lr_scheduler import LR_SCHEDULER_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    given = set(args)
    stderr = io.StringIO()
    with contextlib.chdir(cwd):
        try:
            with contextlib.redirect_stderr(stderr):
                parsed = options.parse_args_and_arch(options.get_training_parser(), list(args))
        except SystemExit:
            message = stderr.getvalue().strip().splitlines()
            pytest.fail(f"fairseq-train's parser refuses the line: {message[-1] if message else '?'}")
        except Exception as error:  # e.g. an unregistered --arch
            pytest.fail(f"fairseq-train's parser fails on the line: {type(error).__name__}: {error}")
        for option, attribute, registry in (("--arch", "arch", ARCH_MODEL_REGISTRY), ("--task", "task", TASK_REGISTRY),
                                            ("--criterion", "criterion", CRITERION_REGISTRY),
                                            ("--optimizer", "optimizer", OPTIMIZER_REGISTRY),
                                            ("--lr-scheduler", "lr_scheduler", LR_SCHEDULER_REGISTRY)):
            if option in given:
                value = getattr(parsed, attribute)
                assert value in registry, f"{option} {value} is not registered"
        try:
            tasks.setup_task(convert_namespace_to_omegaconf(parsed).task)
        except Exception as error:
            pytest.fail(f"fairseq-train would stop at task set-up: {type(error).__name__}: {error}")
    return parsed


def fairseq_data_argument(args: Sequence[str]) -> int:
    positional = [index for index, word in enumerate(args) if not word.startswith("-")
                  and (index == 0 or not args[index - 1].startswith("-"))]
    assert positional, "the fairseq-train line names no data folder"
    return positional[0]


def previous_fairseq_options(command: ReadmeCommand) -> List[str]:
    earlier = [c for c in COMMANDS if c.kind == "fairseq-train" and c.line < command.line and "..." not in c.argv]
    assert earlier, "`...` stands for the options above, but no complete fairseq-train line precedes it"
    args = [substitute(word) for word in earlier[-1].argv[1:]]
    del args[fairseq_data_argument(args)]
    return args


# --------------------------------------------------------------------------- real runs


class Workspace:
    """A scratch working directory with the fixtures under the README's file names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name, fixture in FIXTURE_FILES.items():
            shutil.copyfile(fixture, root / name)
        self.results: Dict[Tuple[str, ...], object] = {}

    def localise(self, argv: Sequence[str]) -> List[str]:
        """Absolute paths of the README (``/tmp/x``) move under the scratch folder."""
        return [str(self.root / word.lstrip("/")) if word.startswith("/") else word for word in argv]

    def run(self, argv: Sequence[str]):
        argv = tuple(self.localise(argv))
        if argv not in self.results:
            self.results[argv] = invoke_xlint(argv, self.root)
        return self.results[argv]

    def corpus(self, path: str) -> Path:
        """Build corpus ``path`` with the README line that writes it (or SETUP_CORPORA's)."""
        builders = [c.argv for c in COMMANDS if c.kind == "xlint" and c.argv[1:2] == ("preprocess",)
                    and _option_value(c.argv, "--out") == path]
        if builders:
            argv = builders[0]
        elif path in SETUP_CORPORA:
            argv = tuple(shlex.split(SETUP_CORPORA[path]))
        else:
            pytest.fail(f"no README `xlint preprocess --out {path}` line builds the corpus {path}: "
                        "add one to SETUP_CORPORA")
        result = self.run(argv)
        assert result.exit_code == 0, f"building the corpus {path} with `{shlex.join(argv)}` failed:\n{result.output}"
        return self.root / path


def _option_value(argv: Sequence[str], option: str) -> Optional[str]:
    for index, word in enumerate(argv):
        if word == option and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def _require_fixtures(paths: Sequence[str]) -> None:
    missing = [path for path in paths if path not in FIXTURE_FILES]
    if missing:
        pytest.fail(f"the line reads {', '.join(missing)}: map it to a fixture in FIXTURE_FILES")


def _failure(result) -> str:
    tail = "\n".join(result.output.strip().splitlines()[-15:])
    return f"exit status {result.exit_code}:\n{tail}\n{result.exception!r}"


def run_preprocess(parsed: ParsedXlint, command: ReadmeCommand, workspace: Workspace) -> None:
    inputs = list(parsed.params["inputs"])
    _require_fixtures([item.partition("=")[2] for item in inputs if "=" in item])
    result = workspace.run(command.argv)
    assert result.exit_code == 0, _failure(result)
    out = workspace.root / parsed.params["out_dir"]
    metadata = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    languages = [item.partition("=")[0].strip().lower() for item in inputs]
    assert metadata["languages"] == languages
    assert (out / "dict.txt").is_file()
    for lang in languages:
        for split in ("train", "valid", "test", "metadev"):
            for ext in ("bin", "idx"):
                assert (out / lang / f"{split}.{ext}").is_file(), f"{out}/{lang}/{split}.{ext} missing"
            assert metadata["splits"][lang][split]["sentences"] > 0
    assert metadata["options"]["vocab_size"] == parsed.params["vocab_size"]
    assert metadata["options"]["subsample"] == parsed.params["subsample"]


def _file_language(path: str) -> Optional[str]:
    for pattern in _FILE_NAME_LANGUAGE:
        match = pattern.match(Path(path).name)
        if match:
            return match.group(1)
    return None


def run_convert(parsed: ParsedXlint, command: ReadmeCommand, workspace: Workspace) -> None:
    from xlint.preprocess.finetune_convert import SPLIT_ALIASES
    from xlint.preprocess.task_formats import infer_qa_language

    specs = []
    for item in parsed.params["inputs"]:
        match = re.match(r"^(?:([A-Za-z][A-Za-z0-9_-]*):)?([a-z]+)=(.+)$", item)
        assert match, f"input {item!r} is not [LANG:]SPLIT=PATH"
        lang, split, path = match.groups()
        specs.append((item, lang, SPLIT_ALIASES.get(split, split), path))
    _require_fixtures([path for *_, path in specs])
    workspace.corpus(str(parsed.params["corpus"]))
    result = workspace.run(command.argv)
    assert result.exit_code == 0, _failure(result)

    out = workspace.root / parsed.params["out"]
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["source_format"] == parsed.names[-1]
    wanted = [lang.strip() for lang in parsed.params["languages"].split(",")] if parsed.params["languages"] else None
    splits = meta["splits"]
    if wanted:
        assert set(splits) <= set(wanted), f"languages {sorted(splits)} written, --languages {wanted}"
    for item, lang, split, path in specs:
        named = _file_language(path)
        if lang and named and lang != named:
            pytest.fail(f"{item}: the line says {lang}, the official file name says {named}")
        expected = [lang or named] if (lang or named) else (wanted or [])
        for code in expected:
            if wanted is None or code in wanted:
                assert splits.get(code, {}).get(split, 0) > 0, f"{item} gave no {code} {split} examples ({splits})"
    for lang, by_split in splits.items():
        for split in by_split:
            records = (out / lang / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
            assert len(records) == by_split[split]
            for record in map(json.loads, records):
                carried = infer_qa_language("", str(record.get("id", ""))) if meta["task"] == "qa" else None
                assert carried in (None, lang), (
                    f"{out.name}/{lang}/{split}.jsonl holds question {record['id']} of language {carried}: "
                    f"{record.get('question')!r}")


def run_pretrain(parsed: ParsedXlint, command: ReadmeCommand, workspace: Workspace) -> None:
    params = parsed.params
    data = str(params["data"])
    workspace.corpus(data)
    argv = list(command.argv)
    if not params["dry_run"]:  # before a `--` passthrough to fairseq-train
        argv.insert(argv.index("--") if "--" in argv else len(argv), "--dry-run")
    result = workspace.run(argv)
    assert result.exit_code == 0, _failure(result)
    lines = result.stdout.splitlines()
    assert "equivalent fairseq command:" in lines, result.output
    printed = shlex.split(lines[lines.index("equivalent fairseq command:") + 1])
    assert Path(printed[0]).name == "fairseq-train"
    trained = check_fairseq_train(printed[1:], workspace.root)
    if params["languages"]:
        languages = [code.strip() for code in params["languages"].split(",") if code.strip()]
    else:
        languages = {"mono": [params["lang"]], "jointpair": [params["lang"], params["pivot"]],
                     "jointtri": [params["lang"], params["similar"], params["pivot"]]}[params["setting"]]
    assert trained.languages == ",".join(languages)
    variant = params["variant"]
    assert trained.task == ("meta_mlm" if variant == "meta_adapter" else "xlm_mlm")
    assert trained.language_specific == ("adapter" if variant == "meta_adapter" else variant)
    assert trained.save_dir == workspace.localise([str(params["save_dir"])])[0]
    if params["max_update"] is not None:
        assert trained.max_update == params["max_update"]


def run_user_dir(parsed: ParsedXlint, command: ReadmeCommand, workspace: Workspace) -> None:
    result = workspace.run(command.argv)
    assert result.exit_code == 0, _failure(result)
    assert (Path(result.stdout.strip()) / "__init__.py").is_file()


def real_run(names: Sequence[str]):
    if list(names) == ["xlint", "preprocess"]:
        return run_preprocess
    if len(names) == 4 and list(names[:3]) == ["xlint", "data", "convert"] and names[3] in CONVERT_FORMATS_RUN:
        return run_convert
    if list(names) == ["xlint", "pretrain"]:
        return run_pretrain
    if list(names) == ["xlint", "user-dir"]:
        return run_user_dir
    return None  # parsed only


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("readme_cwd"))


def check_xlint(command: ReadmeCommand, workspace: Workspace) -> None:
    if any(_SUBSTITUTION.search(word) for word in command.argv):
        command = ReadmeCommand(command.line, tuple(substitute(word) for word in command.argv))
    parsed = parse_xlint(command.argv)
    run = real_run(parsed.names)
    if "--encoder" in command.argv:
        run = None  # converts with an XLM-R release, which the fixtures do not hold: parsed only
    if run is not None:
        run(parsed, command, workspace)


def check_fairseq_line(command: ReadmeCommand, workspace: Workspace, request) -> None:
    args = [substitute(word) for word in command.argv[1:]]
    if "..." in args:
        args.remove("...")
        position = fairseq_data_argument(args)
        args[position + 1:position + 1] = previous_fairseq_options(command)
    position = fairseq_data_argument(args)
    if args[position] not in FAIRSEQ_DATA:
        pytest.fail(f"data folder {args[position]}: map it to a fixture in FAIRSEQ_DATA")
    data = request.getfixturevalue(FAIRSEQ_DATA[args[position]])
    args[position] = str(data.path)
    check_fairseq_train(args, workspace.root)


def check_make(command: ReadmeCommand) -> None:
    if shutil.which("make") is None:
        targets = [word for word in command.argv[1:] if not word.startswith("-") and "=" not in word]
        makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
        for target in targets:
            assert re.search(rf"^{re.escape(target)}\s*:", makefile, re.M), f"the Makefile has no target {target}"
        return
    proc = subprocess.run(["make", "-n", "-C", str(REPO_ROOT), *command.argv[1:]], capture_output=True, text=True,
                          env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, f"make -n {shlex.join(command.argv[1:])}: {proc.stderr.strip()}"


def check_recipe(command: ReadmeCommand) -> None:
    script = REPO_ROOT / command.recipe()
    assert script.is_file(), f"{command.recipe()} does not exist"
    assert os.access(script, os.X_OK), f"{command.recipe()} is not executable"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text(encoding="utf-8")
    for word in command.argv:
        if word.startswith("--"):
            assert word.split("=", 1)[0] in text, f"{command.recipe()} has no option {word}"


@pytest.mark.parametrize("command", [_case(command) for command in COMMANDS])
def test_readme_command_line(command: ReadmeCommand, workspace: Workspace, request) -> None:
    kind = command.kind
    if kind == "xlint":
        check_xlint(command, workspace)
    elif kind == "fairseq-train":
        check_fairseq_line(command, workspace, request)
    elif kind == "make":
        check_make(command)
    elif kind == "recipe":
        check_recipe(command)
    else:
        pytest.fail(f"README line {command.line} runs {command.argv[0]!r}, which this test does not check: "
                    "add a check to tests/test_readme_commands.py")


def test_readme_has_the_command_lines_this_test_checks() -> None:
    """The extraction found the README's commands (a renamed fence would make every case vanish)."""
    kinds = [command.kind for command in COMMANDS]
    for kind in ("xlint", "fairseq-train", "make"):
        assert kind in kinds, f"no {kind} line found in README.md's bash blocks"
    ran = [command for command in COMMANDS if command.kind == "xlint"
           and real_run(resolve_xlint(command.argv)[0]) is not None]
    assert any(command.argv[1:2] == ("preprocess",) for command in ran)


def test_extraction_joins_continuations_and_drops_comments() -> None:
    markdown = "\n".join([
        "```bash",
        "# a comment line",
        "xlint preprocess --out d \\",
        "    en=a.txt   # trailing comment",
        "fairseq-train d --user-dir \"$(xlint user-dir)\" --adam-betas '(0.9,0.98)'",
        "NGPUS=4 recipes/x.sh D fr OUT && make test",
        "```",
        "```",
        "xlint not-a-shell-block",
        "```",
    ])
    commands = extract_commands(markdown)
    assert [(c.line, c.argv) for c in commands] == [
        (3, ("xlint", "preprocess", "--out", "d", "en=a.txt")),
        (5, ("fairseq-train", "d", "--user-dir", "$(xlint user-dir)", "--adam-betas", "(0.9,0.98)")),
        (6, ("recipes/x.sh", "D", "fr", "OUT")),
        (6, ("make", "test")),
    ]
    assert [c.kind for c in commands] == ["xlint", "fairseq-train", "recipe", "make"]


def test_parse_check_catches_wrong_options_and_values() -> None:
    """The parse check fails on what a wrong README line would contain."""
    wrong = [
        "xlint preprocess --out d en=a.txt --vocab-sise 100",      # no such option
        "xlint preprocess --out d en=a.txt --vocab-size many",     # not an int
        "xlint preprocess --out d en=a.txt --bpe wordpiece",        # not a choice
        "xlint preprocess --out d en=a.txt --subsample en=lots",    # refused by the callback
        "xlint pretrain d --save-dir c --variant adapters",         # not a choice
        "xlint pretrain d --save-dir c --lr 1e-4",                  # passes through in xlint, not here
        "xlint finetune d --source en --save-dir s",                # --pretrained is required
        "xlint data convert xnl --corpus c --out o dev=x.tsv",      # no such subcommand
    ]
    for line in wrong:
        with pytest.raises(pytest.fail.Exception):
            parse_xlint(shlex.split(line))
    parsed = parse_xlint(shlex.split("xlint finetune no/such/dir --pretrained no.pt --source en --save-dir s "
                                     "--grid paper -- --lr 1 --bogus"))
    assert parsed.params["fairseq_args"] == ("--lr", "1", "--bogus") and parsed.params["grid"] == "paper"


def test_fairseq_check_catches_wrong_options_and_values(tiny_mlm_data, tmp_path) -> None:
    """The fairseq-train check fails on what a wrong README line would contain."""
    base = [str(tiny_mlm_data.path), "--user-dir", str(REPO_ROOT / "user_dir"), "--task", "meta_mlm",
            "--arch", "xlm_adapter_tiny", "--language-specific", "adapter"]
    check_fairseq_train(base + ["--meta-second-order", "hvp"], tmp_path)
    for extra in (["--meta-second-order", "hessian"],      # refused at task set-up
                  ["--language-specific", "adapters"],      # not a choice
                  ["--arch", "xlm_adapter_huge"],           # not registered
                  ["--lr", "fast"],                         # not a float
                  ["--meta-phi-learning-rate", "1e-4"],     # no such option
                  ["--languages", "fr,de"]):                # not in the data
        with pytest.raises(pytest.fail.Exception):
            check_fairseq_train(base + extra, tmp_path)
