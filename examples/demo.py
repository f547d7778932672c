"""eqx_tensor in one page: load a metatensor file, inspect it, jit and differentiate over it,
then train an equivariant model on it with optax and check its equivariance.

Reads ``../shared/data/metatensor/spherical-expansion.mts`` when it is there; otherwise it
builds a TensorMap of the same layout from random numbers, so the demo runs anywhere.

    python examples/demo.py
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqx_tensor as eqt
from eqx_tensor import nn, o3

jax.config.update("jax_enable_x64", True)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "metatensor"


def synthetic_expansion(seed: int = 0) -> eqt.TensorMap:
    """A spherical-expansion-shaped TensorMap (o3_lambda 0..2, two species) with gradients."""
    rng = np.random.default_rng(seed)
    keys, blocks = [], []
    for center in (6, 8):
        for neighbor in (6, 8):
            for l in range(3):
                n_samples = 2 if center == 6 else 3
                samples = eqt.Labels(
                    ["system", "atom"], np.array([[0, i] for i in range(n_samples)])
                )
                o3_mu = eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))
                properties = eqt.Labels.range("n", 4)
                block = eqt.TensorBlock(
                    rng.normal(size=(n_samples, 2 * l + 1, 4)), samples, [o3_mu], properties
                )
                rows = np.array([[s, 0, a] for s in range(n_samples) for a in range(n_samples)])
                gradient = eqt.TensorBlock(
                    rng.normal(size=(len(rows), 3, 2 * l + 1, 4)),
                    eqt.Labels(["sample", "system", "atom"], rows),
                    [eqt.Labels.range("xyz", 3), o3_mu],
                    properties,
                )
                block.add_gradient("positions", gradient)
                keys.append([l, 1, center, neighbor])
                blocks.append(block)
    names = ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]
    return eqt.TensorMap(eqt.Labels(names, np.array(keys)), blocks)


def load_expansion() -> eqt.TensorMap:
    path = DATA / "spherical-expansion.mts"
    if path.exists():
        print(f"loading {path}")
        return eqt.load(path)
    print(f"{path} not found: using a synthetic TensorMap of the same layout")
    return synthetic_expansion()


def main() -> None:
    expansion = load_expansion()
    print(expansion)
    block = expansion.block(o3_lambda=2, center_type=8, neighbor_type=8)
    print(block)
    print(block.gradient("positions"))

    # metadata is static, arrays are leaves: jit specialises on the labels once
    @jax.jit
    def power_spectrum_norm(tensor: eqt.TensorMap) -> jax.Array:
        """sum over blocks of |c_nlm|^2 per sample, then over samples: a scalar."""
        return sum(jnp.sum(b.values**2) for b in tensor)

    tensor = jax.tree_util.tree_map(jnp.asarray, eqt.remove_gradients(expansion))
    value, grads = jax.value_and_grad(power_spectrum_norm)(tensor)
    print(f"\njitted scalar over {len(tensor)} blocks: {float(value):.6f}")
    print(
        f"its gradient is a {type(grads).__name__} with the same keys: {grads.keys == tensor.keys}"
    )
    check = max(float(jnp.max(jnp.abs(g.values - 2 * b.values))) for g, b in zip(grads, tensor))
    print(f"max |grad - 2 x| = {check:.1e}")

    # explicit gradients travel with the operations
    squared = eqt.pow(expansion, 2)
    by_hand = (
        2
        * block.values[block.gradient("positions").samples["sample"], None]
        * block.gradient("positions").values
    )
    ours = squared.block(o3_lambda=2, center_type=8, neighbor_type=8).gradient("positions").values
    print(
        f"pow(x, 2) explicit positions gradient matches 2 x dx: {bool(np.allclose(ours, by_hand))}"
    )

    per_system = eqt.sum_over_samples(
        expansion.keys_to_samples(["center_type", "neighbor_type"]),
        ["atom", "center_type", "neighbor_type"],
    )
    print(f"\nper-system sums, keyed by {per_system.keys.names}:")
    print(per_system.block(0))

    train_equivariant_model(eqt.remove_gradients(expansion))


def train_equivariant_model(features: eqt.TensorMap, n_steps: int = 300) -> None:
    """Fit per-system l=0 and l=2 targets with an equivariant MLP, then rotate its inputs."""
    features = eqt.filter_blocks(
        features, eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1], [2, 1]]))
    )
    model = nn.Sequential(
        [
            nn.EquivariantLinear(out_features=16),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=1),
        ]
    )

    def predict(params, features):
        per_atom = model.apply(params, features).keys_to_samples(["center_type", "neighbor_type"])
        return eqt.sum_over_samples(per_atom, ["atom", "center_type", "neighbor_type"])

    params = model.init(jax.random.key(0), features)
    # an equivariant target: a fixed random equivariant model of the same features
    target = predict(model.init(jax.random.key(1), features), features)

    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(
            lambda p: nn.sum_squared_error(predict(p, features), target)
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    print(f"\nEquivariantLinear -> InvariantSiLU -> EquivariantLinear on {len(features)} blocks")
    for i in range(n_steps):
        params, opt_state, loss = step(params, opt_state)
        if i % 100 == 0 or i == n_steps - 1:
            print(f"  step {i:4d}  sum of squared errors {float(loss):.3e}")

    # rotations act on o3_mu components (Wigner D) and on inversion through o3_sigma
    error = o3.equivariance_error(lambda t: predict(params, t), (features,))
    print(f"equivariance error under random rotations and inversion: {error:.1e}")


if __name__ == "__main__":
    main()
