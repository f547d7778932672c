"""eqx_tensor in one run: learn the dynamics of 12 particles with an equivariant network.

The workload of the e3nn tutorial "Neural Networks with Euclidean Symmetries - 2" (12-body
trajectory prediction), with everything made here (``examples/trajectory.py``):

1. simulate 2048 frames of 12 particles joined by springs (overdamped dynamics, random kicks
   every 25 frames): the displacement to the next frame is a function of the positions;
2. train e3nn's ``gate_points_2101.Network`` (:class:`eqx_tensor.nn.GatePointsNetwork`) on the
   first 1637 frames to predict that displacement, with optax Adam and a jitted step over
   batches of 32 frames (one batch = one ``Systems`` of 384 atoms, the neighbour list built
   inside the step);
3. report on the last 410 frames the test MSE against the zero predictor, the tutorial's r^2
   columns on positions and on displacements, the equivariance error under a random rotation,
   inversion and translation, the seconds per epoch; save the tutorial's plots as PNG files.

    python examples/demo.py                 # 5 epochs: about 3 minutes on 2 CPU cores
    python examples/demo.py --epochs 100    # closer to the tutorial: ~22 s per epoch more
    python examples/demo.py --quick         # a smoke test: small data, small network
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trajectory as T


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 5)")
    parser.add_argument("--frames", type=int, default=None, help="frames simulated (2048)")
    parser.add_argument("--train-frames", type=int, default=None, help="training steps (1637)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per batch (32)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the weights")
    parser.add_argument(
        "--model",
        choices=("gate_points", "polynomial", "mlp"),
        default="gate_points",
        help="gate_points (default), the small tensor-product polynomial, or the MLP baseline",
    )
    parser.add_argument("--shuffle", action="store_true", help="shuffle the training frames")
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="folder of the PNGs")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG files")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 256 frames, 10 epochs, a one-layer network with small irreps",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "epochs": 10 if quick else 5,
        "frames": 256 if quick else T.N_FRAMES,
        "lr": 1e-2 if quick else 1e-3,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.train_frames is None:
        args.train_frames = round((args.frames - 1) * T.N_TRAIN / (T.N_FRAMES - 1))
    return args


def build_model(args: argparse.Namespace, output_scale: float) -> T.FrameModel:
    if args.model == "mlp":
        return T.mlp_model(output_scale=output_scale)
    if args.model == "polynomial":
        kwargs = {"irreps_hidden": "4x0e+4x1o+4x1e", "lmax": 2} if args.quick else {}
        return T.polynomial_model(output_scale=output_scale, **kwargs)
    kwargs = {"irreps_hidden": "4x0e+4x0o+4x1e+4x1o", "lmax": 2, "layers": 1} if args.quick else {}
    return T.gate_points_model(output_scale=output_scale, **kwargs)


def columns(r2: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.6f}" for name, value in r2.items())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    data = T.simulate(args.frames, seed=args.seed)
    parts = T.split(data, args.train_frames)
    positions = data["positions"]
    distances = np.linalg.norm(positions[:, :, None] - positions[:, None], axis=-1)
    neighbours = (distances < T.RADIUS).sum(axis=-1) - 1
    print(
        f"simulated {args.frames} frames of {positions.shape[1]} particles in "
        f"{time.perf_counter() - start:.1f} s: {int(data['kicks'].sum())} kicks, "
        f"{neighbours.mean():.2f} neighbours within {T.RADIUS} on average"
    )
    print(
        f"train on {len(parts['train']['x'])} steps, test on {len(parts['test']['x'])} "
        f"({int(parts['test']['kicks'].sum())} kick steps reported apart)"
    )
    zero = T.zero_predictor_mse(parts["test"])
    print(f"zero predictor test MSE: {zero:.3e}")

    # a fixed unit for the outputs: the RMS of the training displacements
    output_scale = math.sqrt(T.zero_predictor_mse(parts["train"]))
    model = build_model(args, output_scale)
    print(f"training {model.name} for {args.epochs} epochs (batches of {args.batch_size} frames)")
    params, logs = T.train(
        model,
        parts,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        shuffle=args.shuffle,
    )
    n_parameters = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    print(f"{model.name}: {n_parameters} parameters, {logs['compilations']} compiled step")
    row = T.evaluate(model, params, parts, logs, batch_size=args.batch_size)
    ratio = zero / row["test_mse"]
    print(f"test MSE: {row['test_mse']:.3e} (zero predictor {zero:.3e}, {ratio:.1f} times lower)")
    print(f"kick steps MSE: {row['kick_mse']:.3e} (not a function of the positions)")
    print(f"r^2 on positions x + dx: {columns(row['r2_x'])}")
    print(f"r^2 on displacements dx: {columns(row['r2_dx'])}")
    print(f"equivariance error (rotation, inversion, translation): {row['equivariance']:.2e}")
    print(f"seconds per epoch: {row['seconds_per_epoch']:.2f}")

    if not args.no_plots:
        out = args.out
        test = parts["test"]
        keep = ~test["kicks"]
        x, dx, dx_hat = test["x"][keep], test["dx"][keep], row["prediction"][keep]
        plots = {
            "frames.png": lambda p: T.plot_frames(positions, path=p),
            "losses.png": lambda p: T.plot_losses({model.name: logs}, zero, path=p),
            "correlation_positions.png": lambda p: T.plot_correlation(
                x + dx_hat, x + dx, "x(t+1)", path=p
            ),
            "correlation_displacements.png": lambda p: T.plot_correlation(dx_hat, dx, "dx", path=p),
            "trajectories.png": lambda p: T.plot_trajectories(
                test["x"] + row["prediction"], test["x"] + test["dx"], path=p
            ),
        }
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for name, plot in plots.items():
            plt.close(plot(out / name))
        print(f"saved {', '.join(plots)} to {out}/")
    print(f"total time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
