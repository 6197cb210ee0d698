"""KIP on random features against KIP on the exact kernel: time per step, and the feature
kernel's error against the exact kernel it estimates (the NNGP, or the NTK with
``--feature-kernel ntk``).

    python bench/features.py                 # convnet; 1, 10, 50 images per class
    python bench/features.py --shapes 28,28,1 --per-class 1,10 --width 64 --networks 4
    python bench/features.py --shapes 28,28,1 --per-class 10,50 --maps 32:4,16:16,32:8
    python bench/features.py --shapes 28,28,1 --per-class 10 --maps 16:4,32:4 --feature-kernel ntk

Table 1, per image shape and images per class (10 classes, ``--targets`` targets per step):
seconds per step of ``kipd.distill.kip_on_features`` (jitted, median of ``--repeats`` after
a warm-up step) and of the exact kernel's step as ``kipd distill`` runs it (blocks on the
local executor, pullbacks kept): measured whole where its modelled time is under
``--measure-below-s``, else modelled from one timed block of each kind
(``kipd.compute.estimate_step``, what ``--plan`` prints) and marked so. Table 2: the
relative Frobenius error of the feature kernel against the exact one on ``--error-images``
images (the first of Fashion-MNIST's train set, standard preprocessing, at 28x28x1 where
it is installed; random normal images otherwise), mean over ``--error-seeds`` draws, for
each width and number of networks of ``--grid-widths`` x ``--grid-networks``. With
``--maps`` only Table 3: for each map, on the first shape, its feature count, its step's
seconds at each images-per-class and its error, side by side: what a map costs against how
far its kernel is from the exact one (the kernel error of a map does not rank maps by the
exact kernel's verdict on the sets they distill: docs/results.md).
"""

from __future__ import annotations

import argparse
import time

import _report
import jax
import numpy as np
import optax

import kipd.kernels
from kipd import compute, data, distill

CLASSES = 10


def _shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = []
    for item in text.split(";"):
        height, width, channels = (int(v) for v in item.split(","))
        shapes.append((height, width, channels))
    return shapes


def _numbers(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _problem(shape, support: int, targets: int):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((support + targets, *shape)).astype(np.float32)
    labels = np.eye(CLASSES, dtype=np.float32)[np.arange(support + targets) % CLASSES] - 0.1
    return images[:support], images[support:], labels[:support], labels[support:]


def _median_step(update, state, targets, target_labels, repeats: int) -> float:
    state, metrics = update(state, targets, target_labels)  # compile and warm up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        state, metrics = update(state, targets, target_labels)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def feature_step_seconds(args, shape, support: int, width: int, networks: int) -> float:
    """One jitted KIP step on ``width`` x ``networks`` random features."""
    features = kipd.kernels.random_features(
        args.kernel, width=width, networks=networks, get=args.feature_kernel
    )
    images, targets, labels, target_labels = _problem(shape, support, args.targets)
    algo = distill.kip_on_features(features, optax.adam(0.01))
    state = algo.init(images, labels, jax.random.PRNGKey(1))
    return _median_step(jax.jit(algo.update), state, targets, target_labels, args.repeats)


def exact_step_seconds(args, shape, support: int) -> tuple[float, str]:
    """The exact kernel's step through the block plan: ``(seconds, "measured" or
    "modelled")``."""
    spec = compute.KernelSpec(args.kernel)
    modelled = compute.estimate_step(
        spec, shape, support, args.targets, keep_pullbacks=True, repeats=1
    ).step_seconds()
    if modelled > args.measure_below_s:
        return modelled, "modelled"
    images, targets, labels, target_labels = _problem(shape, support, args.targets)
    algo = distill.kip([spec], optax.adam(0.01), executor=compute.LocalExecutor())
    state = algo.init(images, labels, jax.random.PRNGKey(1))
    return _median_step(algo.update, state, targets, target_labels, args.repeats), "measured"


def _error_images(shape, count: int) -> tuple[np.ndarray, str]:
    if shape == (28, 28, 1):
        try:
            dataset = data.load("fashion_mnist")
        except Exception:  # noqa: BLE001 - not installed here: random images instead
            pass
        else:
            preprocessing = data.fit_dataset_preprocessing(dataset, False, None)
            return np.asarray(preprocessing.apply(dataset.x_train[:count])), "Fashion-MNIST"
    rng = np.random.default_rng(1)
    return rng.standard_normal((count, *shape)).astype(np.float32), "random normal"


def feature_errors(
    args, shape, maps: list[tuple[int, int]]
) -> tuple[dict[tuple[int, int], float], str]:
    """Mean relative error of the feature kernel of each ``(width, networks)`` of ``maps``."""
    images, source = _error_images(shape, args.error_images)
    get = args.feature_kernel
    exact = np.asarray(kipd.kernels.make(args.kernel)(images, get=get), np.float64)
    errors = {}
    for width, networks in maps:
        features = kipd.kernels.random_features(
            args.kernel, width=width, networks=networks, get=get
        )
        gram = jax.jit(lambda key, f=features: (lambda p: p @ p.T)(f(key, images)))
        relative = [
            np.linalg.norm(np.asarray(gram(key), np.float64) - exact) / np.linalg.norm(exact)
            for key in jax.random.split(jax.random.PRNGKey(2), args.error_seeds)
        ]
        errors[(width, networks)] = float(np.mean(relative))
    return errors, source


def _maps(text: str) -> list[tuple[int, int]]:
    maps = []
    for item in text.split(","):
        width, networks = (int(v) for v in item.split(":"))
        maps.append((width, networks))
    return maps


def maps_table(args) -> None:
    """Table 3: for each feature map of ``--maps``, on the first shape: its feature count,
    seconds per KIP step at each images-per-class, and its error (cost against error)."""
    shape = _shapes(args.shapes)[0]
    maps = _maps(args.maps)
    errors, source = feature_errors(args, shape, maps)
    per_class = _numbers(args.per_class)
    print(
        f"\nTable 3: feature maps at {'x'.join(map(str, shape))}: seconds per KIP step "
        f"({args.targets} targets) and the relative error of the feature "
        f"{args.feature_kernel.upper()} ({source}, "
        f"mean of {args.error_seeds} draws)\n"
    )
    print(
        "| width:networks | p | "
        + " | ".join(f"{n} per class (s)" for n in per_class)
        + " | relative error |"
    )
    print("|---|---|" + "---|" * len(per_class) + "---|")
    for width, networks in maps:
        count = kipd.kernels.feature_count(
            args.kernel, shape, width=width, networks=networks, get=args.feature_kernel
        )
        seconds = [
            feature_step_seconds(args, shape, n * CLASSES, width, networks) for n in per_class
        ]
        print(
            f"| {width}:{networks} | {count} | "
            + " | ".join(f"{s:.3f}" for s in seconds)
            + f" | {errors[(width, networks)]:.4f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", default="convnet")
    parser.add_argument("--shapes", default="28,28,1;32,32,3", help="H,W,C;H,W,C")
    parser.add_argument("--per-class", default="1,10,50", help="comma list")
    parser.add_argument("--targets", type=int, default=100, help="targets per step")
    parser.add_argument("--width", type=int, default=128, help="of the timed feature map")
    parser.add_argument("--networks", type=int, default=4, help="of the timed feature map")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measure-below-s", type=float, default=30.0)
    parser.add_argument("--grid-widths", default="16,64,256")
    parser.add_argument("--grid-networks", default="1,4,16")
    parser.add_argument("--error-images", type=int, default=16)
    parser.add_argument("--error-seeds", type=int, default=3)
    parser.add_argument(
        "--feature-kernel",
        choices=kipd.kernels.KERNEL_OUTPUTS,
        default="nngp",
        help="the kernel the random features estimate (and their error is measured against)",
    )
    parser.add_argument(
        "--maps",
        help="W:M,W:M: only Table 3, these feature maps' step time and error side by side",
    )
    args = parser.parse_args()
    print(f"{_report.command_line('features.py', args)}\n{_report.machine()}\n")
    if args.maps:
        maps_table(args)
        return
    print(
        f"Table 1: seconds per KIP step, {args.kernel}, {args.targets} targets, "
        f"{args.feature_kernel.upper()} features width {args.width} x {args.networks} "
        "networks\n"
    )
    print("| images | per class | features (s) | exact (s) | exact / features |")
    print("|---|---|---|---|---|")
    for shape in _shapes(args.shapes):
        for per_class in _numbers(args.per_class):
            support = per_class * CLASSES
            features = feature_step_seconds(args, shape, support, args.width, args.networks)
            exact, how = exact_step_seconds(args, shape, support)
            print(
                f"| {'x'.join(map(str, shape))} | {per_class} | {features:.3f} | "
                f"{exact:.3f} ({how}) | {exact / features:.1f}x |",
                flush=True,
            )
    print(
        f"\nTable 2: relative error of the feature {args.feature_kernel.upper()} "
        f"({args.kernel}), mean of "
        f"{args.error_seeds} draws\n"
    )
    print("| images | width | networks | relative error |")
    print("|---|---|---|---|")
    for shape in _shapes(args.shapes):
        grid = [(w, m) for w in _numbers(args.grid_widths) for m in _numbers(args.grid_networks)]
        errors, source = feature_errors(args, shape, grid)
        for (width, networks), error in errors.items():
            print(
                f"| {'x'.join(map(str, shape))} ({source}) | {width} | {networks} | {error:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
