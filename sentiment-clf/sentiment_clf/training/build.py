"""Train, evaluate and save the served models; retrain them with feedback.

Usage: ``sentiment-clf train``, ``finetune`` and ``retrain`` run these commands, as
does a checkout's ``build_model.py`` (from the repository root)::

    python sentiment-clf/build_model.py                      # = build; data in sentiment-clf/lib/data/sst
    python sentiment-clf/build_model.py --data-dir data/sst
    python sentiment-clf/build_model.py build --kaggle-tsv lib/data/kaggle/train.tsv

    python sentiment-clf/build_model.py retrain [--model sentiment] [--tolerance 0.005]
    python sentiment-clf/build_model.py rollback --model sentiment
    python sentiment-clf/build_model.py versions [--model sentiment]

A checkout's data and models are in ``sentiment-clf/lib/``; an installed package reads
and writes ``lib/`` in the current folder, and retrains the models it serves.

``build`` (the default) trains each model by its recipe (sentiment_clf/training/
recipes.py): the SST models by the treebank's train/dev/test protocol
(training/sst.py), the others by cross-validated selection and a held-out split
(training/holdout.py). Each model is written to ``<models-dir>/<name>/`` with a
``report/`` folder (training/reports.py).

``retrain`` fits each model again on its base data plus the stored feedback and
publishes it to the service's database only if its test accuracy is at most
``--tolerance`` below the model serving now (training/retrain.py); the service
switches within a second, without dropping a request. ``rollback`` goes back to
the version served before. They use ``DATABASE_URL`` or the SQLite file in
``SENTIMENT_CLF_DATA_DIR``.

Exit codes: 0 done, 1 nothing to roll back, 2 missing or malformed data (or bad
arguments), 3 a retrained model was not published.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sentiment_clf.feedback import LearningPolicy
from sentiment_clf.paths import LIB_DIR, MODELS_DIR
from sentiment_clf.training import datasets
from sentiment_clf.training.holdout import build_holdout
from sentiment_clf.training.model import NLPModel
from sentiment_clf.training.recipes import RECIPES
from sentiment_clf.training.reports import summary
from sentiment_clf.training.retrain import base_data, open_storage, retrain
from sentiment_clf.training.sst import build, load_splits
from sentiment_clf.versions import roll_back, version_lines

logger = logging.getLogger("build_model")

DEFAULT_DATA_DIR = LIB_DIR / "data" / "sst"
DEFAULT_MODELS_DIR = LIB_DIR / "models"  # where training writes
COMMANDS = ("build", "calibrate", "cards", "finetune", "release", "retrain", "rollback", "versions")
DEFAULT_COMMAND = "build"


def run_build(args) -> int:
    """Build the chosen models; print one line each. 2 if data is missing or malformed."""
    data_root = args.data_root or args.data_dir.parent
    manifests, splits = [], None
    try:
        for name in args.model or list(RECIPES):
            spec = RECIPES[name]
            if spec.protocol == "sst":
                splits = splits or load_splits(args.data_dir, args.kaggle_tsv)
                manifests.append(build(spec, splits, args.models_dir, progress=not args.no_progress,
                                       compare=not args.no_comparison))
            else:
                manifests.append(build_holdout(spec, data_root, args.models_dir, progress=not args.no_progress,
                                               sample=args.sample, n_jobs=args.jobs))
    except (FileNotFoundError, datasets.DataFormatError) as exc:
        logger.error("%s", exc)
        return 2
    print(summary(manifests))
    print(f"models and reports written to {args.models_dir}")
    return 0


def run_finetune(args) -> int:
    """Fine-tune the accurate tier (needs requirements-finetune.txt); print its test figures."""
    try:
        from sentiment_clf.training.finetune import Settings, build_accurate
    except ImportError as exc:
        logger.error("finetune needs the fine-tuning requirements (pip install -r requirements-finetune.txt): %s", exc)
        return 2
    data_root = args.data_root or args.data_dir.parent
    settings = Settings(epochs=args.epochs, seed=args.seed, threads=args.threads, sample=args.sample,
                        max_steps=args.max_steps, hate_stage_passes=args.hate_stage_passes,
                        sources=tuple(args.source or Settings.sources))
    try:
        manifest = build_accurate(data_root, args.models_dir, settings, progress=not args.no_progress,
                                  hf_dir=args.hf_dir, resume_from=args.resume_from)
    except (FileNotFoundError, datasets.DataFormatError) as exc:
        logger.error("%s", exc)
        return 2
    for name, figures in manifest["metrics"].items():
        print(f"accurate {name:15s} test accuracy {figures['test_accuracy']:.4f}  "
              f"macro-F1 {figures['test_macro_f1']:.4f}  ({figures['test_texts']} texts)")
    print(f"ordinary text flagged by hatespeech: {manifest['ordinary_text_flagged']}")
    print(f"took {manifest['build_seconds'] / 60:.1f} min; written to {args.models_dir / 'accurate'}")
    return 0


def run_calibrate(args) -> int:
    """Fit each chosen saved fast model's temperature on data it was not fitted on, in place."""
    from sentiment_clf.training.recalibrate import calibrate_saved

    data_root = args.data_root or args.data_dir.parent
    try:
        for name in args.model or list(RECIPES):
            manifest = calibrate_saved(RECIPES[name], args.models_dir, data_root, args.data_dir)
            found = manifest["metrics"]["calibration"]
            print(f"{name}: temperature {found['temperature']:.3f}, held-out ECE {found['test_ece_before']:.4f} -> "
                  f"{found['test_ece']:.4f}, version {manifest['version']}")
    except (FileNotFoundError, datasets.DataFormatError) as exc:
        logger.error("%s", exc)
        return 2
    return 0


def run_cards(args) -> int:
    """Write the model card of every served model, both tiers."""
    from sentiment_clf.training.cards import write_cards

    try:
        paths = write_cards(args.models_dir, args.data_root or args.data_dir.parent)
    except (FileNotFoundError, datasets.DataFormatError) as exc:
        logger.error("%s", exc)
        return 2
    print(f"{len(paths)} model cards written: " + ", ".join(str(p) for p in paths))
    return 0


def run_release(args) -> int:
    """Combine fine-tuned encoders into the served accurate model, calibrated and measured."""
    from sentiment_clf.training.finetune import release

    parts = {}
    for given in args.part:
        name, _, rest = given.partition("=")
        folder, _, heads = rest.rpartition(":")
        if not name or not folder or not heads:
            logger.error("--part takes NAME=FOLDER:HEAD,HEAD... (got %r)", given)
            return 2
        parts[name] = (Path(folder), heads.split(","))
    try:
        manifest = release(parts, args.data_root or args.data_dir.parent, args.models_dir / "accurate",
                           threads=args.threads, partners=tuple(args.partner or ()))
    except (FileNotFoundError, ValueError, datasets.DataFormatError) as exc:
        logger.error("%s", exc)
        return 2
    for name, figures in manifest["metrics"].items():
        low, high = figures["test_accuracy_interval"]
        print(f"accurate {name:15s} test accuracy {figures['test_accuracy']:.4f} ({low:.4f}-{high:.4f})  "
              f"macro-F1 {figures['test_macro_f1']:.4f}  ECE {figures['test_ece']:.4f}  "
              f"({figures['test_texts']} texts)")
    print(f"ordinary text flagged by hatespeech: {manifest['ordinary_text_flagged']}")
    print(f"written to {args.models_dir / 'accurate'}")
    return 0


def run_retrain(args) -> int:
    """Retrain the chosen models (fast, or the accurate tier's heads); 3 if one was not
    published, 2 if data is missing."""
    storage, settings = open_storage(args.database_url)
    policy = LearningPolicy.parse(settings.feedback_rate_limit, settings.client_learning_budget)
    if args.variant == "accurate":
        from sentiment_clf.serving import load_accurate
        from sentiment_clf.training.retrain_accurate import base_data as accurate_data
        from sentiment_clf.training.retrain_accurate import retrain_head

        heads = load_accurate(args.models_dir / "accurate", threads=2)

        def one(name):
            data = accurate_data(name, args.data_root or args.data_dir.parent)
            return retrain_head(heads[name], data, storage, args.tolerance, policy)
    else:
        def one(name):
            data = base_data(RECIPES[name], args.data_dir, args.data_root or args.data_dir.parent, args.kaggle_tsv)
            return retrain(RECIPES[name], data, storage, NLPModel.load(args.models_dir / name), args.tolerance,
                           settings.data_dir / "reports", policy)
    status = 0
    for name in args.model or list(RECIPES):
        try:
            published, outcome = one(name)
        except (FileNotFoundError, datasets.DataFormatError) as exc:
            logger.error("%s", exc)
            return 2
        label = f"accurate {name}" if args.variant == "accurate" else name
        line = (f"{label}: serving {outcome['serving_version']} {outcome['serving_accuracy']:.2%}, "
                f"retrained with {outcome['feedback_learned']} answers {outcome['candidate_accuracy']:.2%}")
        if outcome["answers_left_out_over_budget"]:
            line += f" ({outcome['answers_left_out_over_budget']} answers over their client's budget left out)"
        weightiest = ", ".join(f"{c['client']} {c['answers_counted']}" for c in outcome["clients"][:3])
        if published:
            print(f"{line}: published as version {outcome['version']}")
        elif outcome["steered_families"]:
            print(f"{line}: NOT published: it would turn confident predictions around on the texts these "
                  f"answers target (clients weighing most: {weightiest}):")
            for found in outcome["steered_families"]:
                print(f"  family '{found['family']}': {found['answers']} answers from {found['clients']} clients "
                      f"asking {found['label_asked']}; serving {found['serving']['label']} "
                      f"{found['serving']['probability']:.4f} -> candidate {found['candidate']['label']} "
                      f"{found['candidate']['probability']:.4f}")
            status = 3
        else:
            print(f"{line}: NOT published (more than {args.tolerance:.2%} worse)")
            status = 3
    return status


def run_rollback(args) -> int:
    """Serve the version served before; 1 if there is none."""
    storage, _ = open_storage(args.database_url)
    code, line = roll_back(storage, args.model, args.variant)
    print(line)
    return code


def run_versions(args) -> int:
    """List each model's published versions, the serving one marked with ``*``."""
    storage, _ = open_storage(args.database_url)
    for line in version_lines(storage, args.model or list(RECIPES), args.variant):
        print(line)
    return 0


def _option_groups() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options several commands share: where the data is, and which database."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                      help="folder with the SST train.txt, dev.txt and test.txt (default: %(default)s)")
    data.add_argument("--data-root", type=Path, default=None,
                      help="folder with hatespeech/ and questions/ (default: the parent of --data-dir)")
    data.add_argument("--kaggle-tsv", type=Path, default=None,
                      help="train on the Kaggle train.tsv phrases instead of train.txt "
                           "(dev and test still come from --data-dir)")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", default=None, help="default: the service's database")
    database.add_argument("--variant", choices=("fast", "accurate"), default="fast",
                          help="the fast models, or the accurate tier's heads (default: %(default)s)")
    return data, database


def make_parser(prog: str = "build_model.py") -> argparse.ArgumentParser:
    """The command line: one subcommand each for build, finetune, calibrate, cards, release,
    retrain, rollback and versions; ``prog`` names it in the help. ``build`` is also
    ``train``, the name ``sentiment-clf`` gives it (and its help uses)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0],
        epilog=f"Without a command, '{DEFAULT_COMMAND}' runs: '{prog} --data-dir X' builds.")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    data, database = _option_groups()
    models = sorted(RECIPES)

    names = ["train", "build"] if prog == "sentiment-clf" else ["build", "train"]
    build_parser = commands.add_parser(names[0], aliases=names[1:], parents=[data],
                                       help="train, evaluate and save (default)",
                                       description="Train, evaluate and save the models, with reports.")
    build_parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                              help="where to write the models (default: %(default)s)")
    build_parser.add_argument("--model", choices=models, action="append",
                              help="build only this model (repeatable; default: all)")
    build_parser.add_argument("--sample", type=int, default=None,
                              help="held-out models: use only this many texts (a quick run)")
    build_parser.add_argument("--jobs", type=int, default=2, help="processes for cross-validation")
    build_parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    build_parser.add_argument("--no-comparison", action="store_true",
                              help="SST models: skip comparing other classifiers on dev (most of the build's time)")
    build_parser.set_defaults(run=run_build)

    finetune_parser = commands.add_parser(
        "finetune", parents=[data], help="fine-tune the accurate tier (a transformer, on CPU)",
        description="Fine-tune one shared encoder with a head per model; export int8 ONNX with a report.")
    finetune_parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                                 help="writes <models-dir>/accurate (default: %(default)s)")
    finetune_parser.add_argument("--epochs", type=int, default=1)
    finetune_parser.add_argument("--seed", type=int, default=20261129)
    finetune_parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime")
    finetune_parser.add_argument("--sample", type=int, default=None,
                                 help="use only this many texts of each data set (a quick run)")
    finetune_parser.add_argument("--max-steps", type=int, default=None, help="stop after this many batches")
    finetune_parser.add_argument("--hf-dir", type=Path, default=None,
                                 help="also save the fine-tuned encoder in Hugging Face's format here")
    finetune_parser.add_argument("--hate-stage-passes", type=int, default=1,
                                 help="passes over the tweets in the hate-speech stage (0: no such stage)")
    finetune_parser.add_argument("--resume-from", type=Path, default=None,
                                 help="skip the first stage: start from a folder --hf-dir wrote (and the "
                                      "report of the run that wrote it)")
    finetune_parser.add_argument("--source", action="append", choices=("sst", "hate", "questions", "sst-sentences"),
                                 help="a data set that trains the encoder (repeatable; default: sst, hate and "
                                      "questions)")
    finetune_parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    finetune_parser.set_defaults(run=run_finetune)

    saved = argparse.ArgumentParser(add_help=False)
    saved.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                       help="the saved models (default: %(default)s)")
    calibrate_parser = commands.add_parser(
        "calibrate", parents=[data, saved], help="fit the saved fast models' temperatures (in place)",
        description="Fit each saved fast model's temperature on data it was not fitted on (SST dev sentences, "
                    "or out-of-fold probabilities of the choosing part) and save it in place.")
    calibrate_parser.add_argument("--model", choices=models, action="append",
                                  help="calibrate only this model (repeatable; default: all)")
    calibrate_parser.set_defaults(run=run_calibrate)
    commands.add_parser(
        "cards", parents=[data, saved], help="write the model cards (both tiers)",
        description="Write a model card for every served model and tier, with slices measured as served.",
    ).set_defaults(run=run_cards)

    release_parser = commands.add_parser(
        "release", parents=[data], help="combine fine-tuned encoders into the served accurate model",
        description="Combine fine-tuned encoders (finetune's output folders) into the served accurate model: "
                    "heads calibrated on dev, every figure measured as served, with intervals.")
    release_parser.add_argument("--part", action="append", required=True, metavar="NAME=FOLDER:HEAD,HEAD",
                                help="an encoder: the folder finetune wrote and the heads it serves (repeatable)")
    release_parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                                help="writes <models-dir>/accurate (default: %(default)s)")
    release_parser.add_argument("--partner", action="append", choices=models, metavar="HEAD",
                                help="offer this head a partner, a TF-IDF logistic regression over words and "
                                     "character n-grams blended in with the weight its dev texts choose "
                                     "(repeatable)")
    release_parser.add_argument("--threads", type=int, default=2, help="CPU threads for onnxruntime")
    release_parser.set_defaults(run=run_release)

    retrain_parser = commands.add_parser(
        "retrain", parents=[data, database], help="retrain with the stored feedback",
        description="Retrain with the stored feedback and publish if not worse.")
    retrain_parser.add_argument("--model", choices=models, action="append",
                                help="retrain only this model (repeatable; default: all)")
    retrain_parser.add_argument("--models-dir", type=Path, default=MODELS_DIR,
                                help="the shipped base models (default: the served ones, %(default)s)")
    retrain_parser.add_argument("--tolerance", type=float, default=0.005,
                                help="largest drop in test accuracy still published (default: %(default)s)")
    retrain_parser.set_defaults(run=run_retrain)

    rollback_parser = commands.add_parser(
        "rollback", parents=[database], help="serve the version served before",
        description="Serve the version served before the current one.")
    rollback_parser.add_argument("--model", choices=models, required=True)
    rollback_parser.set_defaults(run=run_rollback)

    versions_parser = commands.add_parser("versions", parents=[database], help="list the published versions",
                                          description="List the published versions.")
    versions_parser.add_argument("--model", choices=models, action="append",
                                 help="list only this model's (repeatable; default: all)")
    versions_parser.set_defaults(run=run_versions)
    return parser


def parse_args(argv=None, prog: str = "build_model.py") -> argparse.Namespace:
    """``argv`` (default: the process's arguments) parsed; no command means ``build``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in (*COMMANDS, "train", "-h", "--help"):
        argv = [DEFAULT_COMMAND, *argv]
    return make_parser(prog).parse_args(argv)


def main(argv=None, prog: str = "build_model.py") -> int:
    """Run the command line with ``argv`` (default: the process's arguments); returns the
    exit code. ``prog``: the command's name in its help and errors."""
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
