"""Test data for the curve activations under Pond (ELU, SELU, softplus, softsign,
GELU in both forms, mish, hard_sigmoid, hard_silu, silu): for Keras 3 and, where
its export differs, tf_keras, one tiny Sequential model each,

    Dense(16, activation=ACT) -> Dense(4)   on [N, 5] -> [N, 4]

with seeded random weights and N(0, 2) inputs, so that the activation's input
spans about [-15, 15]: both of every curve's tails, and both sides of every bend.
The rows are drawn as for the clamp ops (no near-tie for the argmax, which the
secure test compares). Called from generate.py's main, next to build_ops(), with
generate.py's own module (its helpers and its MANIFEST); `--only ops_act_elu,...`
regenerates single entries.
"""

import numpy as np

# name -> (activation for Keras 3 / tf_keras, the ops its export must contain)
ACTIVATIONS = {
    "elu": ("elu", ["Elu"]),
    "selu": ("selu", ["Selu"]),
    "softplus": ("softplus", ["Softplus"]),
    "softsign": ("softsign", ["Softsign"]),
    "gelu": ("gelu", ["Erfc"]),
    "gelu_tanh": (None, ["Pow", "Tanh"]),
    "mish": ("mish", ["Softplus", "Tanh"]),
    "hard_sigmoid": ("hard_sigmoid", ["Relu6"]),
    "hard_silu": ("hard_silu", ["Relu6"]),
    "silu": ("silu", ["Sigmoid"]),
    # keras.layers.ELU(alpha=0.5): tf.where(x > 0, elu(x), alpha * elu(x))
    "elu_alpha": (None, ["Elu", "Greater", "SelectV2"]),
}

# The op types whose inputs are checked for both tails.
TARGETS = ("Greater", "Elu", "Selu", "Softplus", "Softsign", "Erf", "Erfc", "Tanh", "Sigmoid", "Relu6",
           "Minimum", "Maximum", "Pow")


def activation_of(lib, name):
    act, _ = ACTIVATIONS[name]
    if name == "gelu_tanh":
        return lambda x: lib.activations.gelu(x, approximate=True)
    if name == "gelu":
        return lambda x: lib.activations.gelu(x, approximate=False)
    return act


def model_for(g, lib, name, rng):
    if name == "elu_alpha":
        m = lib.Sequential([lib.Input((5,)), lib.layers.Dense(16), lib.layers.ELU(alpha=0.5),
                            lib.layers.Dense(4)])
        m.layers[0].set_weights([g.rnd(rng, 5, 16, scale=1.5), g.rnd(rng, 16, scale=1.0)])
        m.layers[2].set_weights([g.rnd(rng, 16, 4, scale=0.5), g.rnd(rng, 4, scale=0.2)])
        return m
    act = activation_of(lib, name)
    if lib is g.keras:
        m = lib.Sequential([lib.Input((5,)), lib.layers.Dense(16, activation=act),
                            lib.layers.Dense(4)])
    else:
        m = lib.Sequential([lib.layers.Dense(16, activation=act, input_shape=(5,)),
                            lib.layers.Dense(4)])
    m.layers[0].set_weights([g.rnd(rng, 5, 16, scale=1.5), g.rnd(rng, 16, scale=1.0)])
    m.layers[1].set_weights([g.rnd(rng, 16, 4, scale=0.5), g.rnd(rng, 4, scale=0.2)])
    return m


def input_ranges(g, rel, feeds):
    """One clause per target op node: the range of its (private) input."""
    clauses = []
    for node, op, vals in g.op_inputs(rel, feeds, ops=TARGETS):
        private = [v for v in vals if np.ndim(v) > 0 and np.size(v) > 1]
        if not private:
            continue
        x = private[0]
        clauses.append(f"{op} `{node}` input in [{float(x.min()):.2f}, {float(x.max()):.2f}] "
                       f"({float(np.mean(x < 0)):.0%} negative)")
    return clauses


def act_entry(g, lib, name, seed, hist_by_lib, expect=None):
    label = "keras3" if lib is g.keras else "tfkeras"
    entry = f"act_{name}" if lib is g.keras else f"act_{name}_tfkeras"
    if not g.selected(f"ops_{entry}"):
        return
    g.seed_all(seed)
    rng = np.random.default_rng(seed)
    m = model_for(g, lib, name, rng)
    fn = g.keras_fn(m)
    feeds = {"input": g.rows_with_margin(fn, g.rnd(rng, 64, 5, scale=2.0), 16)}
    rel = f"ops/{entry}.pb"
    gd = g.freeze_tf2(fn, [g.spec([None, 5])])
    g.write_pb(gd, rel)
    hist = g.op_histogram(gd)
    for op in expect or ACTIVATIONS[name][1]:
        assert op in hist, (entry, op, hist)
    clauses = input_ranges(g, rel, feeds)
    g.assert_argmax_margin(f"ops_{entry}", rel, feeds)
    lib_name = "Keras 3" if lib is g.keras else "tf_keras"
    act_text = {"gelu": "activation=gelu (approximate=False)",
                "gelu_tanh": "activation=gelu (approximate=True)"}
    layers = (f"Dense(16) -> ELU(alpha=0.5)" if name == "elu_alpha"
              else f"Dense(16, {act_text.get(name, 'activation=' + name)})")
    desc = (f"{lib_name} Sequential: {layers} -> Dense(4) "
            f"on [N,5] (16 rows of N(0, 2) inputs, of 64 drawn, no near-tie for the argmax); "
            f"seeded random weights; dynamic batch; " + "; ".join(clauses))
    g.op_graph(entry, fn, [g.spec([None, 5])], feeds, desc, seed)
    hist_by_lib[(name, label)] = hist


def core(hist):
    return {k: v for k, v in hist.items()
            if k not in ("Const", "Placeholder", "Identity", "NoOp", "MatMul", "BiasAdd")}


# tf_keras exports every other activation here as Keras 3 does (same op
# histogram), and has no hard_silu: only hard_sigmoid differs
# (clip(0.2·x + 0.5, 0, 1): Mul, AddV2, Minimum, Maximum).
TFKERAS = {"hard_sigmoid": ["Minimum", "Maximum"]}


def build_act_ops(g):
    hists = {}
    for i, name in enumerate(ACTIVATIONS):
        act_entry(g, g.keras, name, 300 + i, hists)
    for i, name in enumerate(TFKERAS):
        act_entry(g, g.tf_keras, name, 320 + i, hists, TFKERAS[name])
    for (name, label), h in sorted(hists.items()):
        print(f"   {name:13s} {label:8s} {core(h)}")
