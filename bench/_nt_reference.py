"""Time neural-tangents' kernel_fn: the reference half of kipd's kernel benchmark.

Runs ONLY under a Python with neural-tangents 0.6.5 (jax 0.4.30); ``bench/nt_env.py``
finds or makes one and runs this script. By hand:

    /opt/ntref/bin/python bench/_nt_reference.py --arch convnet --shape 32,32,3 \\
        --n1 4 --n2 4 --repeats 2 --no-x64

Prints exactly ONE JSON line on stdout (everything else goes to stderr) with, for
f = jit(lambda x1, x2: kernel_fn(x1, x2, get)):
  fwd_compile_s       seconds of f.lower(x1, x2).compile() (ahead of time, so it is not
                      blurred by run-to-run noise); fwd_first_minus_steady_s is the
                      first call (compile + first run) minus the median steady call
  fwd_pairs_per_s     n1*n2 / median steady time (fwd_pairs_per_s_best: / best time)
  vjp_*               the same for jit(grad of sum(K) w.r.t. x1), i.e. jax.vjp of
                      kernel_fn w.r.t. x1 applied to a cotangent of ones
  *_pairs_per_cpu_s   n1*n2 / median process CPU seconds of a steady call (all threads;
                      less sensitive than wall time to other load on the machine)
  peak_rss_mib        resource.getrusage maxrss of this process (imports included;
                      rss_after_import_mib is the same number taken before any work)
and the raw times (seconds) and settings. ``--inputs F.npz`` reads x1 (and x2; no x2
means x2 = x1, i.e. kernel_fn(x1, None)) so that kipd and NT time the same arrays;
``--save-kernels F.npz`` writes NT's nngp and ntk for them (computed after the timing,
not timed) so that the caller can measure kipd's error on fresh inputs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The one JSON line goes to the real stdout; anything printed by the libraries (Python
# or C level) during the run is sent to stderr instead.
_JSON_OUT = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, help="fc<n>, convvec<n> or convnet")
    p.add_argument(
        "--shape", default=None, help="H,W,C of the images, e.g. 32,32,3 (default: from --inputs)"
    )
    p.add_argument("--n1", type=int, default=None, help="rows of the kernel block")
    p.add_argument("--n2", type=int, default=None, help="columns of the kernel block")
    p.add_argument("--repeats", type=int, default=2, help="timed steady calls (>= 1)")
    p.add_argument(
        "--x64",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="float64 (jax_enable_x64) instead of float32",
    )
    p.add_argument("--seed", type=int, default=0, help="numpy seed of the random inputs")
    p.add_argument("--inputs", default=None, help=".npz with x1 [and x2] (NHWC)")
    p.add_argument("--save-kernels", default=None, help="write NT's nngp/ntk to this .npz")
    p.add_argument(
        "--get", default="ntk", choices=("ntk", "nngp"), help="kernel that is timed (default ntk)"
    )
    p.add_argument("--depth", type=int, default=3, help="convnet pooling blocks")
    p.add_argument("--W-std", dest="w_std", type=float, default=math.sqrt(2.0))
    p.add_argument("--b-std", dest="b_std", type=float, default=0.1)
    p.add_argument("--no-vjp", action="store_true", help="time the forward only")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if not re.fullmatch(r"fc\d+|convvec\d+|convnet", args.arch):
        p.error(f"unknown --arch {args.arch!r} (expected fc<n>, convvec<n> or convnet)")
    if args.inputs and not os.path.isfile(args.inputs):
        p.error(f"--inputs {args.inputs}: no such file")
    return p, args


def get_inputs(p, args):
    import numpy as np

    if args.inputs:
        with np.load(args.inputs) as f:
            if "x1" not in f.files:
                p.error(f"{args.inputs} has no array 'x1' (it has {f.files})")
            x1 = np.asarray(f["x1"])
            x2 = np.asarray(f["x2"]) if "x2" in f.files else None
        shape = tuple(x1.shape[1:])
        if args.shape and tuple(int(s) for s in args.shape.split(",")) != shape:
            p.error(f"--shape {args.shape} does not match x1 in {args.inputs}: {shape}")
        if x1.ndim != 4 or (x2 is not None and x2.shape[1:] != x1.shape[1:]):
            p.error(
                f"x1/x2 in {args.inputs} must be NHWC with equal image shapes, got "
                f"{x1.shape} and {None if x2 is None else x2.shape}"
            )
        for name, n, x in (("n1", args.n1, x1), ("n2", args.n2, x2)):
            if n is not None and x is not None and n != len(x):
                p.error(f"--{name} {n} does not match {len(x)} images in {args.inputs}")
        return x1, x2, False
    if not args.shape or args.n1 is None or args.n2 is None:
        p.error("without --inputs, give --shape, --n1 and --n2")
    shape = tuple(int(s) for s in args.shape.split(","))
    if len(shape) != 3:
        p.error(f"--shape must be H,W,C, got {args.shape}")
    rng = np.random.default_rng(args.seed)
    x1 = rng.standard_normal((args.n1, *shape)).astype(np.float32)
    x2 = rng.standard_normal((args.n2, *shape)).astype(np.float32)
    return x1, x2, True


def layers(arch, w_std, b_std, depth):
    from neural_tangents import stax

    def dense():
        return stax.Dense(1, W_std=w_std, b_std=b_std)

    def conv():
        return stax.Conv(1, (3, 3), padding="SAME", W_std=w_std, b_std=b_std)

    if arch.startswith("fc") and arch[2:].isdigit():
        return (
            [stax.Flatten()]
            + [layer for _ in range(int(arch[2:])) for layer in (dense(), stax.Relu())]
            + [dense()]
        )
    if arch.startswith("convvec") and arch[7:].isdigit():
        return [layer for _ in range(int(arch[7:])) for layer in (conv(), stax.Relu())] + [
            stax.Flatten(),
            dense(),
        ]
    if arch == "convnet":
        out = [conv(), stax.Relu()]
        for _ in range(depth):
            out += [conv(), stax.Relu(), stax.AvgPool((2, 2), strides=(2, 2))]
        return out + [stax.Flatten(), dense()]
    raise SystemExit(
        f"_nt_reference.py: unknown --arch {arch!r} (expected fc<n>, convvec<n> or convnet)"
    )


def timed(name, jitted, *xs, repeats, pairs):
    """Timings of a jitted function: ahead-of-time compile, first call, steady calls."""
    import jax

    t0 = time.perf_counter()
    compiled = jitted.lower(*xs).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*xs))
    first_exec = time.perf_counter() - t0
    steady, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(*xs))
        steady.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(steady)
    return {
        f"{name}_compile_s": compile_s,
        f"{name}_first_call_s": compile_s + first_exec,
        f"{name}_first_minus_steady_s": compile_s + first_exec - med,
        f"{name}_steady_s": steady,
        f"{name}_pairs_per_s": pairs / med,
        f"{name}_pairs_per_s_best": pairs / min(steady),
        f"{name}_steady_cpu_s": cpu,
        f"{name}_pairs_per_cpu_s": pairs / statistics.median(cpu),
    }


def main(argv=None):
    p, args = parse_args(argv)
    t_start = time.perf_counter()

    import jax

    jax.config.update("jax_enable_x64", bool(args.x64))
    import jax.numpy as jnp
    import jaxlib
    import neural_tangents
    import numpy as np
    from neural_tangents import stax

    x1_np, x2_np, generated = get_inputs(p, args)
    dtype = np.float64 if args.x64 else np.float32
    x1 = jnp.asarray(x1_np.astype(dtype))
    x2 = None if x2_np is None else jnp.asarray(x2_np.astype(dtype))
    n1 = len(x1_np)
    n2 = n1 if x2_np is None else len(x2_np)
    pairs = n1 * n2
    rss_after_import = _rss_mib()
    import_s = time.perf_counter() - t_start

    _, _, kernel_fn = stax.serial(*layers(args.arch, args.w_std, args.b_std, args.depth))
    get = args.get

    fwd = jax.jit(lambda a, b: kernel_fn(a, b, get))
    res = {}
    res.update(timed("fwd", fwd, x1, x2, repeats=args.repeats, pairs=pairs))

    if not args.no_vjp:

        def grad_sum_k(a, b):
            k, pullback = jax.vjp(lambda a_: kernel_fn(a_, b, get), a)
            (g,) = pullback(jnp.ones_like(k))
            return g

        vjp = jax.jit(grad_sum_k)
        res.update(timed("vjp", vjp, x1, x2, repeats=args.repeats, pairs=pairs))

    if args.save_kernels:
        t0 = time.perf_counter()
        both = jax.jit(lambda a, b: kernel_fn(a, b, ("nngp", "ntk")))
        nngp, ntk = jax.block_until_ready(both(x1, x2))
        out = {"nngp": np.asarray(nngp), "ntk": np.asarray(ntk)}
        if generated:
            out.update(x1=x1_np, x2=x2_np)
        path = args.save_kernels
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, **out)
        os.replace(tmp, path)
        res.update(save_kernels=os.path.abspath(path), save_kernels_s=time.perf_counter() - t0)

    dev = jax.devices()[0]
    res = dict(
        library="neural-tangents",
        arch=args.arch,
        shape=list(x1_np.shape[1:]),
        n1=n1,
        n2=n2,
        pairs=pairs,
        get=get,
        repeats=args.repeats,
        dtype=np.dtype(dtype).name,
        x64=bool(args.x64),
        seed=args.seed,
        inputs=os.path.abspath(args.inputs) if args.inputs else None,
        x2_is_x1=x2_np is None,
        W_std=args.w_std,
        b_std=args.b_std,
        depth=args.depth if args.arch == "convnet" else None,
        **res,
        peak_rss_mib=_rss_mib(),
        rss_after_import_mib=rss_after_import,
        import_s=import_s,
        total_s=time.perf_counter() - t_start,
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        n_cpus=os.cpu_count(),
        versions={
            "neural_tangents": neural_tangents.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
    )
    _JSON_OUT.write(json.dumps(res) + "\n")
    _JSON_OUT.flush()


if __name__ == "__main__":
    main()
