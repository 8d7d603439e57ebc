"""The ``ntgraph`` command line: ``info``, ``run``, ``export``, ``import``, ``demo`` and ``compare``.

Every error ntgraph raises is printed as ``error: <message>`` with exit status 2;
``compare --min-agreement`` exits with status 3 when a simulator agrees less;
Ctrl-C exits with status 130 (during ``demo`` training, after saving a
checkpoint that ``demo --resume`` continues from);
files are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import __version__
from ._atomic import atomic_write
from .compiler import simulate
from .errors import FileFormatError, NtgraphError, TrainingInterrupted, ValidationError
from .graph import Graph
from .memory import MODES as MEMORY_MODES
from .memory import estimate_memory
from .passes import default_pipeline
from .registry import get_backend, get_importer

__all__ = ["main", "build_parser"]


def _load_graph(path: str, **options: object) -> Graph:
    """Read ntgraph's own format, or any format with a registered importer (by suffix, e.g. ``.nir``)."""
    from .io import load

    suffix = Path(path).suffix.lower()
    if suffix in ("", ".ntg"):
        return load(path)
    if not Path(path).exists():
        raise FileFormatError(f"{path}: does not exist")
    return get_importer(suffix)(path, **options)


def _parse_options(pairs: Optional[Sequence[str]]) -> dict[str, object]:
    """``key=value`` pairs; values are parsed as Python literals where possible (numbers, True, None)."""
    import ast

    options: dict[str, object] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"--set {pair}: expected KEY=VALUE")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


_NPY_VERSIONS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(path: str) -> np.ndarray:
    """Read one ``.npy`` array, refusing before any allocation a header that disagrees with the file size.

    The declared ``prod(shape) * itemsize`` must equal the bytes after the
    header, so a corrupt header cannot make numpy allocate more than the file holds.
    """
    fmt = np.lib.format
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        if fh.read(4) == b"PK\x03\x04":
            raise FileFormatError(f"input file {path}: expected a single .npy array, got an archive (.npz?)")
        fh.seek(0)
        try:
            version = fmt.read_magic(fh)
            if version not in _NPY_VERSIONS:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            shape, fortran, dtype = _NPY_VERSIONS[version](fh)
        except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError...
            raise FileFormatError(f"input file {path}: not a readable .npy array (bad header: {exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise FileFormatError(f"input file {path}: expected a numeric array, got dtype {dtype}")
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if declared != size - fh.tell():
            raise FileFormatError(
                f"input file {path}: its header declares a {dtype} array of shape {shape} ({declared} bytes) "
                f"but the file holds {size - fh.tell()} bytes of data (truncated or corrupt)"
            )
        fh.seek(0)
        try:
            return fmt.read_array(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FileFormatError(f"input file {path}: not a readable .npy array ({exc})") from None


def _load_array(path: str) -> np.ndarray:
    try:
        arr = _read_npy(path)
    except FileNotFoundError:
        raise FileFormatError(f"input file {path}: does not exist") from None
    except IsADirectoryError:
        raise FileFormatError(f"input file {path}: is a directory, expected a .npy file") from None
    if arr.ndim != 3:
        raise ValidationError(f"input file {path}: expected shape [T, batch, features], got {arr.shape}")
    return arr.astype(np.float64)


def _parse_inputs(graph: Graph, specs: Sequence[str]) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(graph.inputs) != 1:
                raise ValidationError(
                    f"--input {spec}: the graph has {len(graph.inputs)} inputs {graph.inputs}; use --input NAME=FILE.npy"
                )
            name, path = graph.inputs[0], spec
        if name not in graph.inputs:
            raise ValidationError(f"--input {spec}: the graph has no Input {name!r}; inputs: {graph.inputs}")
        inputs[name] = _load_array(path)
    missing = [i for i in graph.inputs if i not in inputs]
    if missing:
        raise ValidationError(f"--input: missing arrays for inputs {missing}")
    return inputs


def _fit_steps(inputs: dict[str, np.ndarray], steps: Optional[int]) -> dict[str, np.ndarray]:
    """Truncate to ``steps`` or pad with zero input after the end of the given arrays."""
    if steps is None:
        return inputs
    if steps < 1:
        raise ValidationError(f"--steps: expected a positive number of steps, got {steps}")
    out = {}
    for name, x in inputs.items():
        if steps <= x.shape[0]:
            out[name] = x[:steps]
        else:
            out[name] = np.concatenate([x, np.zeros((steps - x.shape[0], *x.shape[1:]))])
    return out


def cmd_info(args: argparse.Namespace) -> int:
    graph = _load_graph(args.file)
    print(graph)
    print()
    print(graph.summary())
    prepared = default_pipeline().run(graph)
    print()
    print("resources:", ", ".join(f"{k}={v}" for k, v in prepared.attrs["resources"].items()))
    print()
    try:
        report = estimate_memory(graph, args.target, batch=args.batch, steps=args.steps, mode=args.mode,
                                 dtype=args.dtype, window=args.window, optimizer=args.optimizer)
    except NtgraphError as exc:  # e.g. a backend without an estimator, or not installed
        print(f"memory: not estimated ({exc})")
    else:
        print(report)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    # Importers (e.g. .nir) are told the step and discretization the graph will run at.
    graph = _load_graph(args.file, dt=args.dt, discretization=args.discretization)
    inputs = _fit_steps(_parse_inputs(graph, args.input), args.steps)
    results = simulate(graph, inputs, target=args.target, dt=args.dt, discretization=args.discretization,
                       timing=args.timing, record=args.record or (), **_parse_options(args.set))
    out = Path(args.out)
    with atomic_write(out, mode="wb") as fh:
        np.savez(fh, **results)
    steps = next(iter(inputs.values())).shape[0]
    print(f"simulated {steps} steps of '{graph.name}' on {args.target} (dt={args.dt:g} s); wrote {out}:")
    for name, arr in results.items():
        print(f"  {name:<24} shape={arr.shape}  mean={arr.mean():.4g}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .compiler import CompileOptions, prepare

    graph = _load_graph(args.file)
    backend = get_backend(args.format)
    if not hasattr(backend, "export"):
        raise ValidationError(f"--format {args.format}: this backend cannot write files")
    options = CompileOptions(dt=args.dt, discretization=args.discretization, timing=args.timing,
                             extra=_parse_options(args.set))
    out = backend.export(prepare(graph, options), options, Path(args.out))
    print(f"exported '{graph.name}' as {args.format} to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .io import save

    graph = _load_graph(args.file, **_parse_options(args.set))
    out = save(graph, args.out)
    print(graph)
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, build_demo_graph, firing_summary, poisson_input
    from .io import save
    from .plotting import spike_raster

    cfg = DemoConfig(steps=args.steps, seed=args.seed)
    graph = build_demo_graph(cfg)
    print(graph)
    print()
    print(graph.summary())
    print()
    print("compiler passes:")
    print(default_pipeline())
    x = poisson_input(cfg)
    results = simulate(graph, {"stim": x}, target="torch", dt=cfg.dt, record=["cortex.v"])
    sign = graph["cortex"].dale.sign
    stats = firing_summary(results["spikes"], sign, cfg.dt)
    print()
    print(f"simulated {cfg.steps} steps of {cfg.dt * 1e3:g} ms ({cfg.steps * cfg.dt:g} s) on the torch backend")
    print(f"  excitatory rate   {stats['rate_exc_hz']:.2f} Hz")
    print(f"  inhibitory rate   {stats['rate_inh_hz']:.2f} Hz")
    print(f"  active neurons    {stats['active_fraction']:.1%}")
    print(f"  mean ISI CV       {stats['cv_isi']:.2f}")
    print(f"  readout (t=end)   {np.array2string(results['prediction'][-1, 0], precision=3)}")
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    raster = spike_raster(outdir / "raster.png", results["spikes"][:, 0], cfg.dt, sign=sign, inputs=x[:, 0],
                          traces=results["prediction"][:, 0], title=f"ntgraph demo: {graph.name}")
    graph_file = save(graph, outdir / "demo.ntg")
    with atomic_write(outdir / "results.npz", mode="wb") as fh:
        np.savez(fh, stim=x, **results)
    print(f"wrote {raster}, {graph_file} and {outdir / 'results.npz'}")
    if args.epochs > 0:
        _demo_training(args, outdir)
    return 0


def _demo_training(args: argparse.Namespace, outdir: Path) -> None:
    """Train a small spiking classifier on the 8x8 digits and report its test accuracy."""
    from .compiler import train
    from .demo import build_classifier, digits_task
    from .io import save

    print()
    print(f"training a spiking classifier (64 -> 64 recurrent LIF under Dale's law -> 10 LI) on the 8x8 digits, "
          f"{args.epochs} epochs of BPTT on the torch backend")
    classifier = build_classifier(seed=args.seed)
    data = digits_task(seed=args.seed)
    trained, metrics = train(classifier, data, dt=1e-3, epochs=args.epochs, batch_size=32, lr=1e-2,
                             seed=args.seed, progress=not args.no_progress,
                             checkpoint_dir=outdir / "checkpoints", resume=args.resume)
    print(f"  test accuracy     {metrics['test_accuracy']:.3f}  (chance 0.100)")
    path = save(trained, outdir / "classifier.ntg")
    print(f"wrote the trained network to {path}")
    _demo_comparison(trained, data, outdir)


def _demo_comparison(trained: Graph, data: object, outdir: Path) -> None:
    """Run the trained classifier on every installed simulator and print how they agree."""
    from .compare import compare
    from .data import to_time_major

    test = data.test  # type: ignore[attr-defined]
    n = min(32, len(test))
    x = to_time_major([test[i][0] for i in range(n)])
    labels = np.array([test[i][1] for i in range(n)])
    print()
    print(f"the trained network on {n} test digits, across simulators (sync timing, euler, float64):")
    report = compare(trained, {"pixels": x}, ["torch", "onnx", "brian2", "snntorch", "norse"], dt=1e-3,
                     labels=labels)
    print(report)
    report.write(outdir / "comparison")
    print(f"wrote {outdir / 'comparison'}/report.md, report.html and report.json")


#: Exit status of ``ntgraph compare`` when a simulator agrees less than ``--min-agreement``.
EXIT_BELOW_AGREEMENT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    graph = _load_graph(args.file)
    inputs = _fit_steps(_parse_inputs(graph, args.input), args.steps)
    labels = None
    if args.labels is not None:
        try:
            labels = np.load(args.labels, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError) as exc:
            raise FileFormatError(f"labels file {args.labels}: not a readable .npy array ({exc})") from None
    if args.min_agreement is not None and not 0.0 <= args.min_agreement <= 1.0:
        raise ValidationError(f"--min-agreement: expected a fraction in [0, 1], got {args.min_agreement}")
    backend_options: dict[str, dict[str, object]] = {}
    for spec in args.set or ():
        sim, sep, pair = spec.partition(":")
        if not sep or not sim:
            raise ValidationError(f"--set {spec}: expected SIMULATOR:KEY=VALUE, e.g. lava-fixed:quantize={{'input_scale': 256}}")
        backend_options.setdefault(sim, {}).update(_parse_options([pair]))
    report = compare(graph, inputs, args.simulators, dt=args.dt, timing=args.timing,
                     discretization=args.discretization, labels=labels, reference=args.reference,
                     record=args.record, dtype=args.dtype, van_rossum_tau=args.tau_vr, readout=args.readout,
                     backend_options=backend_options)
    print(report)
    if args.report:
        written = report.write(args.report, min_agreement=args.min_agreement, plots=not args.no_plots)
        print(f"\nwrote {written['md']}, {written['html']} and {written['json']}")
    if args.min_agreement is not None:
        if not report.passes(args.min_agreement):
            worst = report.min_agreement()
            why = "no simulator besides the reference ran" if worst is None else f"lowest agreement {worst:.4f}"
            print(f"FAIL: below --min-agreement {args.min_agreement:g} ({why})", file=sys.stderr)
            return EXIT_BELOW_AGREEMENT
        print(f"PASS: every compared simulator agrees at >= {args.min_agreement:g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ntgraph", description="Graph-based neuromorphic compiler and simulator.")
    parser.add_argument("--version", action="version", version=f"ntgraph {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print a saved graph: one line per node, a summary table, resources")
    p.add_argument("file", help="a graph file (.ntg, or any importable format such as .nir)")
    p.add_argument("--target", default="torch", help="backend whose memory to estimate (default torch)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the memory estimate (default 1)")
    p.add_argument("--steps", type=int, default=100, help="time steps T of the memory estimate (default 100)")
    p.add_argument("--mode", default="inference", choices=MEMORY_MODES, help="what is run (default inference)")
    p.add_argument("--window", type=int, default=None, help="TBPTT window in steps (with --mode tbptt)")
    p.add_argument("--dtype", default="float32", help="float32 (default), float64, float16 or bfloat16")
    p.add_argument("--optimizer", default=None, choices=["sgd", "momentum", "adam"], help="adds its state (training modes)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("run", help="simulate a saved graph on input arrays and save the outputs")
    p.add_argument("file", help="a graph file (.ntg, or any importable format such as .nir)")
    p.add_argument("--input", action="append", required=True, metavar="[NAME=]X.npy",
                   help="input array [T, batch, features]; repeat as NAME=FILE for several inputs")
    p.add_argument("--dt", type=float, required=True, help="time step in seconds")
    p.add_argument("--steps", type=int, default=None,
                   help="number of steps (default: T of the input; more steps pad with zero input)")
    p.add_argument("--out", required=True, help="output .npz: every Output and recorded probe, [T, batch, n]")
    p.add_argument("--record", action="append", metavar="POP[.VAR]", help="also record a population variable")
    p.add_argument("--discretization", choices=("euler", "exact"), default="euler")
    p.add_argument("--timing", choices=("sync", "pipelined"), default="sync")
    p.add_argument("--target", default="torch", help="simulation backend (default: torch)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="backend option, e.g. --target lava --set precision=fixed")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("export", help="write a graph in another format (--format nir, onnx, ...)")
    p.add_argument("file", help="a graph file (.ntg, or any importable format)")
    p.add_argument("--format", required=True, help="target backend name, e.g. nir or onnx")
    p.add_argument("--out", "-o", required=True, help="output file")
    p.add_argument("--dt", type=float, required=True, help="time step in seconds")
    p.add_argument("--discretization", choices=("euler", "exact"), default="euler")
    p.add_argument("--timing", choices=("sync", "pipelined"), default="sync")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="backend option, e.g. --set mode=sequence")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="convert a file of another format (e.g. .nir) into ntgraph's own format")
    p.add_argument("file", help="a file with a registered importer, e.g. model.nir")
    p.add_argument("--out", "-o", required=True, help="output .ntg file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="importer option, e.g. --set dialect=snntorch")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("demo", help="build, simulate and plot a balanced E/I network under Dale's law")
    p.add_argument("--out", default="ntgraph-demo", help="output folder (default: ./ntgraph-demo)")
    p.add_argument("--steps", type=int, default=1000, help="time steps of 1 ms (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10, help="training epochs of the digits classifier (0: skip training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue the training from the newest checkpoint in OUT/checkpoints (after Ctrl-C or a crash)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compare", help="run one network on several simulators and report how far each is from the reference")
    p.add_argument("file", help="a graph file (.ntg, or any importable format such as .nir)")
    p.add_argument("--input", action="append", required=True, metavar="[NAME=]X.npy",
                   help="input array [T, batch, features]; repeat as NAME=FILE for several inputs")
    p.add_argument("--labels", default=None, metavar="Y.npy", help="one class label per sample, for the accuracy")
    p.add_argument("--simulators", default="torch,onnx,lava-float,lava-fixed,snntorch,norse,brian2",
                   help="comma-separated simulators (default: all; missing ones are skipped with the reason)")
    p.add_argument("--reference", default="torch", help="the simulator the others are compared with (default: torch)")
    p.add_argument("--dt", type=float, required=True, help="time step in seconds")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: T of the input)")
    p.add_argument("--timing", choices=("sync", "pipelined"), default="sync",
                   help="time-step semantics every simulator runs under (Lava needs pipelined)")
    p.add_argument("--discretization", choices=("euler", "exact"), default="euler")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="arithmetic of the simulators that take one (torch, onnx)")
    p.add_argument("--tau-vr", type=float, default=10e-3, metavar="SECONDS",
                   help="van Rossum kernel time constant (default: 0.01 s)")
    p.add_argument("--record", action="append", metavar="POP.VAR", help="also compare a population variable")
    p.add_argument("--readout", default=None, help="the Output the accuracy reads (default: the first Output)")
    p.add_argument("--set", action="append", metavar="SIM:KEY=VALUE",
                   help="a simulator's backend option, e.g. --set \"lava-fixed:quantize={'input_scale': 256}\"")
    p.add_argument("--report", default=None, metavar="DIR", help="write report.md, report.html and report.json here")
    p.add_argument("--no-plots", action="store_true", help="reports without figures (no matplotlib needed)")
    p.add_argument("--min-agreement", type=float, default=None, metavar="FRACTION",
                   help=f"exit with status {EXIT_BELOW_AGREEMENT} when a simulator that ran agrees less (e.g. 0.99)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``ntgraph`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except NtgraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        where = (f"checkpoint saved to {exc.path}; run the same command with --resume to continue"
                 if exc.path is not None else "no checkpoint was saved")
        print(f"interrupted after training iteration {exc.iteration}: {where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
