"""`python -m mstr.detect --model ARTIFACT_OR_CKPT --input FILE|-|PCAP [--follow] [--all]`: score flows as
they arrive and write alerts as JSON lines.

The input is read in the format the model was trained on (the artifact says which: KDD lines, a Zeek
conn.log, a CICFlowMeter / NFStream CSV, ...), line by line, from a file (gzip too), from stdin (`-`),
or from a growing file (`--follow`, which goes on across its rotation, as `tail -F`). A pcap is turned
into NFStream flows, for a model trained with `data=flows data.format=nfstream`. An artifact folder
runs on ONNX Runtime (or TorchScript) and needs neither Lightning nor Hydra; a checkpoint runs on
PyTorch (its run's data config says what it reads; the training data itself is not read again).

Each alert line: {"flow": its line number in the input (counted on across a followed log's rotations;
the n-th flow of a pcap), "time", "id": the 5-tuple / flow id columns present, "class", "score":
P(attack), "alert"}; `--all` writes every verdict. A summary (flows seen, scored, dropped, bad, alerts,
flows/s, flows with a category value outside training's categories) goes to stderr at the end and on SIGINT /
SIGTERM, which stop the stream between batches.
Bad lines are counted and logged, never fatal. The input queue is bounded (`--queue`): when it is full
the reader waits, so no flow is lost (a pipe's writer or a followed log waits with it); `--on-full drop`
drops and counts flows instead, for a feed that must never wait, and warns when it starts to.

Examples:
    python -m mstr.export ckpt_path=<run>/checkpoints/best.ckpt format=onnx out=detector
    python -m mstr.detect --model detector --input /data/nsl_kdd/KDDTest+.txt.gz
    zcat conn.log.gz | python -m mstr.detect --model detector --input - --all
    python -m mstr.detect --model detector --input capture.pcap
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from mstr.cli_args import ArgumentParser
from mstr.errors import EXIT_USAGE, ConfigError, DataError, MstrError, report_and_exit

log = logging.getLogger("mstr.detect")


def open_detector(model: str, threads: int, max_groups: int):
    """(Detector, spec) from an artifact folder (ONNX Runtime / TorchScript) or a checkpoint (PyTorch)."""
    from mstr.deploy.artifact import is_artifact, load_artifact
    from mstr.deploy.runtime import artifact_scorer, torch_scorer
    from mstr.deploy.stream import Detector
    from mstr.jobs.rundir import checkpoint_file, run_without_checkpoint

    path = Path(model)
    if path.is_dir() and not is_artifact(path):  # a training run dir: its best checkpoint, as evaluate reads it
        path = checkpoint_file(path) or path
    if not path.is_file() and (why := run_without_checkpoint(path)) is not None:
        raise DataError(f"--model {model}: {why}")
    if path.is_dir() or is_artifact(path):
        artifact = load_artifact(path)
        return Detector(artifact_scorer(artifact, threads), artifact.spec, max_groups), artifact.spec
    if not path.is_file():
        raise DataError(f"{path}: no such artifact folder or checkpoint file")
    if is_artifact(path.parent):  # a file of an artifact (model.onnx, detector.json, ...): the folder is the model
        raise DataError(f"{path}: a file of the artifact {path.parent}; give the folder: --model {path.parent}")
    from mstr.models.newest_flow import NewestFlowOnly
    from mstr.training.export import checkpoint_detector

    module, spec, _ = checkpoint_detector(path, need_data=False)
    # as an export would run it: the same scores, each block only at the flows read downstream
    return Detector(torch_scorer(NewestFlowOnly.of(module), threads), spec, max_groups), spec


def _starts_with(path: str, magic: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(magic)) == magic


def _gzipped_pcap(path: str) -> bool:
    """A pcap compressed with gzip (`capture.pcap.gz`), which NFStream reads only uncompressed."""
    import gzip
    import zlib

    from mstr.deploy.sources import PCAP_MAGIC

    try:
        with gzip.open(path) as fh:
            return fh.read(4) in PCAP_MAGIC
    except (OSError, EOFError, zlib.error):  # not a gzip, or a damaged one: read as lines, which say so
        return False


def check_writable(path: str | Path, option: str) -> None:
    """Refuse an output path that cannot be written before any flow is read: failing at the end would
    lose the whole run's work."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file path")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: folder {path.parent} does not exist; create it or give another path")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path}: not writable; give another path")
    if not os.path.lexists(path):  # made and removed: os.access passes root everywhere, also on a read-only mount
        try:
            path.touch()
            path.unlink()
        except OSError as err:
            raise ConfigError(f"{option} {path}: cannot be written ({err.strerror or err}); give another path") from None


def check_distinct(paths: dict[str, str | Path]) -> None:
    """Refuse two options naming one file (`--output` the `--input` log, `--summary` the `--output`):
    writing one would wipe what the other reads or holds."""
    named = [(option, Path(path)) for option, path in paths.items() if path not in (None, "-")]
    for i, (option, path) in enumerate(named):
        for other, other_path in named[:i]:
            try:
                same = os.path.samefile(path, other_path)
            except OSError:  # one is not there yet
                same = path.resolve() == other_path.resolve()
            if same:
                raise ConfigError(f"{option} {path}: is the file of {other}, which writing it would wipe; give "
                                  "another path")


def check_outside_model(model: str, outputs: dict[str, str | Path | None]) -> None:
    """Refuse an output that would write into the model being run: its checkpoint, a file of its run
    dir, or anything in an artifact folder (a file there, new or not, is no longer the artifact the
    manifest describes, and a later `mstr.export` there would refuse the folder)."""
    from mstr.deploy.artifact import MANIFEST

    root = Path(model).resolve()
    artifact = (root / MANIFEST).is_file()
    for option, path in outputs.items():
        if path in (None, "-"):
            continue
        target = Path(path).resolve()
        inside = root in target.parents
        if target == root or (inside and (artifact or target.exists())):
            what = "the artifact folder" if artifact else "the model's files"
            raise ConfigError(f"{option} {path}: is in {what} of --model {model}, which writing it would damage; "
                              "give a path outside it")


def report(summary, path: Path | None) -> None:
    """The summary on stderr and, with `--summary`, as JSON in its file: also when the input failed
    mid-stream, after flows were scored (a truncated gzip), for a pipeline that reads only the file."""
    print(f"summary: {summary.line()}", file=sys.stderr, flush=True)
    if path:
        try:
            path.write_text(json.dumps(summary.to_json(), indent=1))
        except OSError as err:  # checked at the start; e.g. the disk filled up since
            report_and_exit(ConfigError(f"--summary {path}: cannot be written ({err.strerror or err})"))


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m mstr.detect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="artifact folder (mstr.export), checkpoint (.ckpt) or a "
                        "training run dir (its best checkpoint)")
    parser.add_argument("--input", default="-", help="flow file (gzip ok), - for stdin (the default), or a pcap")
    parser.add_argument("--follow", action="store_true", help="keep reading a growing file, and the new file "
                        "when it is rotated or truncated (as tail -F)")
    parser.add_argument("--all", action="store_true", help="write every verdict, not only alerts")
    parser.add_argument("--output", default="-", help="where the JSON lines go (default stdout)")
    parser.add_argument("--summary", type=Path, help="also write the summary as JSON to this file")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime / torch threads of the model; more "
                        "than the free cores only makes them wait on each other")
    parser.add_argument("--batch-size", type=int, default=256, help="most flows scored in one model call")
    parser.add_argument("--queue", type=int, default=10_000, help="input queue size (flows)")
    parser.add_argument("--on-full", choices=("block", "drop"), default="block", help="when the queue is full "
                        "(detection slower than the input): make the reader wait, so nothing is lost (a pipe's "
                        "writer or a followed log simply waits), or drop the newest flows and count them, for a "
                        "feed that must never wait")
    parser.add_argument("--max-groups", type=int, default=100_000, help="hosts whose window context is kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s",
                        stream=sys.stderr)
    from mstr.deploy.inputs import followed, lines, open_text
    from mstr.deploy.sources import PCAP_SUFFIXES, LineParser, capture_cut_at, is_pcap, pcap_flows
    from mstr.deploy.stream import StreamRunner

    runner = None
    out = None
    try:
        for key in ("threads", "batch_size", "queue", "max_groups"):
            if getattr(args, key) < 1:
                raise ConfigError(f"--{key.replace('_', '-')}={getattr(args, key)}: must be >= 1")
        if args.output != "-":
            check_writable(args.output, "--output")
        if args.summary == Path("-"):  # as --output's "-" reads, not a file named "-" in the current folder
            raise ConfigError("--summary -: the summary goes to stderr in any case; --summary takes a file path "
                              "for its JSON")
        if args.summary:
            check_writable(args.summary, "--summary")
        check_distinct({"--input": args.input, "--output": args.output, "--summary": args.summary})
        check_outside_model(args.model, {"--output": args.output, "--summary": args.summary})
        detector, spec = open_detector(args.model, args.threads, args.max_groups)
        regular = args.input != "-" and Path(args.input).is_file()  # not stdin, a pipe or a FIFO
        # a pipe or FIFO is never sniffed for a pcap's magic: reading it would consume the first bytes
        pcap = regular and is_pcap(args.input)
        if regular and not pcap and _gzipped_pcap(args.input):  # else read as binary lines, each one bad
            raise DataError(f"{args.input}: a gzip-compressed capture, which NFStream does not read; gunzip it and "
                            "give the pcap itself")
        if pcap and spec["input"]["format"] != "nfstream":
            raise DataError(f"{args.input}: a pcap needs a model trained on NFStream flows (data=flows "
                            f"data.format=nfstream); this one reads {spec['input']['format']} input")
        if regular and not pcap and _starts_with(args.input, b"PAR1"):
            raise DataError(f"{args.input}: a parquet file; mstr.detect reads flow lines ({spec['input']['format']} "
                            "here): write the flows as CSV with the same columns, e.g. pandas.read_parquet(path)"
                            ".to_csv(out, index=False)")
        if args.input != "-" and Path(args.input).is_dir():
            raise DataError(f"{args.input}: is a folder; give a flow file, - for stdin, or a pcap")
        if args.input != "-" and not Path(args.input).exists() and not args.follow:
            raise DataError(f"{args.input}: no such input file")
        if args.input == "-" and sys.stdin is None:  # started with it closed (`<&-`, some daemon managers)
            raise DataError("--input - (the default): stdin is closed; give --input FILE, or pipe the flows in")
        if args.follow and not Path(args.input).exists() and Path(args.input).suffix.lower() in PCAP_SUFFIXES:
            # waited for, it would be read as text lines, or as a pcap cut at the packets written so far
            raise DataError(f"{args.input}: not there yet, and a pcap is read once, to its end (--follow waits "
                            "for growing flow logs); run without --follow once the capture is written")
        if args.input == "-" and sys.stdin.isatty():  # likely no --input given: say what it waits for
            print(f"reading {spec['input']['format']} flow lines from the terminal (--input FILE reads a file); "
                  "Ctrl-D ends", file=sys.stderr, flush=True)
        if pcap:
            if args.follow:
                log.warning("%s: a pcap is read to its end (--follow reads growing flow logs)", args.input)
            cut = capture_cut_at(args.input)
            if cut is not None:
                log.warning("%s: the capture breaks off inside a packet at byte %s of %s (a copy taken while it was "
                            "written?): the packets before are read, the cut one is lost", args.input,
                            f"{cut:,}", f"{Path(args.input).stat().st_size:,}")
            items = pcap_flows(args.input)
        elif args.follow and args.input != "-":
            items = followed(args.input)
        else:
            items = lines(open_text(args.input), args.follow, args.input)
        block = args.on_full == "block"
        # line-buffered: an alert is out as soon as it is decided, also through a pipe. A file is opened
        # at the first verdict, so an input refused at its header leaves no empty file (nor empties one).
        if args.output == "-":
            out = sys.stdout
            sys.stdout.reconfigure(line_buffering=True)

        def emit(verdict) -> None:
            nonlocal out
            try:
                if out is None:
                    out = open(args.output, "w", buffering=1)
                out.write(json.dumps(verdict.to_json(), default=str) + "\n")
            except BrokenPipeError:
                raise
            except OSError as err:  # checked at the start; e.g. the disk filled up since
                raise ConfigError(f"--output {args.output}: cannot be written ({err.strerror or err})") from None

        line_parser = LineParser(spec, detector.encoder, "stdin" if args.input == "-" else args.input)
        runner = StreamRunner(detector, line_parser, emit, args.queue, args.batch_size, block, args.all)
        # Both explicitly: a process started with SIGINT ignored (a background job of a script, a parent
        # that ignored it) would otherwise never see Ctrl-C, and Python keeps an inherited SIG_IGN.
        # The stream stops between batches, each batch written and counted whole. NFStream's pcap reader
        # is a forked process with these handlers: it must end when signalled, or exit (which terminates
        # it, then waits for it) hangs once we stop reading its flows (`| head`, Ctrl-C, a refused flow).
        main_pid = os.getpid()

        def on_signal(signum, frame) -> None:
            if os.getpid() != main_pid:
                os._exit(128 + signum)
            runner.request_stop(signum)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        code = 0
        try:
            runner.run(items)
        except KeyboardInterrupt as stop:
            code = 128 + (stop.args[0] if stop.args else signal.SIGINT)
        except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
            sys.stdout = out = open(os.devnull, "w")
    except KeyboardInterrupt:  # Ctrl-C while the model loads, before the stream's own handlers are set
        print("interrupted before any flow was read", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except MstrError as err:
        if runner is not None and runner.summary.scored:  # the input failed mid-stream: say what was done
            # before (none scored: the input was refused at its header, and the reader's count of the
            # lines it read ahead would only mislead)
            report(runner.summary, args.summary)
        report_and_exit(err)
    finally:
        if out is not None:
            with contextlib.suppress(OSError):  # every line is flushed as written: a failure was reported there
                out.flush()
    if out is None:  # the stream ended without a verdict to write: the file still says so
        open(args.output, "w").close()
    summary = runner.summary
    report(summary, args.summary)
    if summary.seen == 0 and code == 0:
        print(f"warning: {'stdin' if args.input == '-' else args.input} held no flows", file=sys.stderr)
    if summary.scored == 0 and summary.bad > 0 and code == 0:
        print(f"error: none of the {summary.bad:,} flow(s) could be read as {spec['input']['format']} input; "
              "check --input against the format the model was trained on", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(code)


if __name__ == "__main__":
    main()
