"""Sequence-model test data: private x private BatchMatMul and Einsum (attention's
products, Keras' Dot and EinsumDense), Embedding on private int32 token ids, and
unrolled LSTM/GRU. Called from generate.py (`build_seq`), also under `--only`.

The token task is synthetic (there is no text data set offline, ../shared/DATA.md):
a token v in 0..199 belongs to class v % 10; a sequence of 32 tokens is labelled
with the class that dominates it (12 of its tokens drawn from the label's class,
the rest uniform). The models learn it; the accuracy is printed.
"""

import numpy as np
import tensorflow as tf
import keras
import tf_keras

# The helpers of generate.py, bound by build_seq to the running module (generate.py
# runs as __main__: importing it by name would make a second copy with its own
# manifest and --only selection).
HELPERS = ["freeze_tf2", "op_graph", "register", "seed_all", "selected", "spec", "rnd",
           "train", "write_pb", "ACCURACIES"]

VOCAB = 200
SEQ_LEN = 32
CLASSES = 10


def token_task(rng, n):
    """n sequences of SEQ_LEN token ids (int32) and their dominant class."""
    labels = rng.integers(0, CLASSES, n)
    x = rng.integers(0, VOCAB, (n, SEQ_LEN))
    for row, label in enumerate(labels):
        at = rng.choice(SEQ_LEN, 12, replace=False)
        x[row, at] = rng.integers(0, VOCAB // CLASSES, 12) * CLASSES + label
    return x.astype(np.int32), labels.astype(np.int64)


def freeze_int(model, shape):
    s = tf.TensorSpec([None, *shape], tf.int32, name="input")
    return freeze_tf2(lambda x: model(x, training=False), [s])


def keras_entry(name, model, gd, x_eval, inputs_rel, description, labels):
    rel = f"seq/{name}.pb"
    write_pb(gd, rel)
    ref = np.asarray(model(x_eval, training=False))
    _, acc = register(name, rel, gd, {"input": inputs_rel}, f"seq/{name}.expected.npy",
                      description, {"input": x_eval}, reference=ref, labels=labels, atol=1e-4)
    ACCURACIES[name] = acc


def margin_rows(model, x, y, rows, margin=0.05):
    """The first `rows` rows whose outputs have no near-tie for the argmax, with labels."""
    out = np.asarray(model(x, training=False))
    top2 = np.sort(out, axis=-1)[..., -2:]
    ok = (top2[..., 1] - top2[..., 0]) >= margin * np.maximum(1.0, np.abs(top2[..., 1]))
    keep = np.flatnonzero(ok)[:rows]
    assert len(keep) == rows, f"only {len(keep)} of {len(x)} rows qualify"
    return x[keep], y[keep]


def build_embedding():
    rng = np.random.default_rng(301)
    xtr, ytr = token_task(rng, 6000)
    xte, yte = token_task(rng, 400)
    if selected("seq_embedding_keras3"):
        seed_all(0)
        L = keras.layers
        m = keras.Sequential([keras.Input((SEQ_LEN,), dtype="int32"), L.Embedding(VOCAB, 16),
                              L.GlobalAveragePooling1D(), L.Dense(CLASSES)])
        train(m, xtr, ytr, epochs=8, lr=1e-2)
        x, y = margin_rows(m, xte, yte, 100)
        np.save(f"{OUT_SEQ}/tokens100.npy", x)
        np.save(f"{OUT_SEQ}/tokens100.labels.npy", y)
        keras_entry("seq_embedding_keras3", m, freeze_int(m, (SEQ_LEN,)), x, "seq/tokens100.npy",
                    "Keras 3 Embedding(200, 16) + GlobalAveragePooling1D + Dense(10) on 100 "
                    "synthetic int32 token sequences of 32 (class = the dominant token class "
                    "v % 10; Keras 3 wraps negative ids: Less/SelectV2 before GatherV2)", y)
    if selected("seq_embedding_tfkeras"):
        seed_all(0)
        L = tf_keras.layers
        m = tf_keras.Sequential([tf_keras.Input((SEQ_LEN,), dtype="int32"), L.Embedding(VOCAB, 16),
                                 L.GlobalAveragePooling1D(), L.Dense(CLASSES)])
        m.compile(optimizer=tf_keras.optimizers.Adam(1e-2),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(xtr, ytr, epochs=8, batch_size=128, verbose=0)
        x, y = margin_rows(m, xte, yte, 100)
        np.save(f"{OUT_SEQ}/tokens100_tfkeras.npy", x)
        keras_entry("seq_embedding_tfkeras", m, freeze_int(m, (SEQ_LEN,)), x,
                    "seq/tokens100_tfkeras.npy",
                    "tf_keras Embedding(200, 16) + GlobalAveragePooling1D + Dense(10) on 100 "
                    "synthetic int32 token sequences of 32 (GatherV2 straight on the ids)", y)


def build_products():
    seed = 311
    rng = np.random.default_rng(seed)
    op_graph("batch_matmul_adj_y",
             lambda x, y: tf.matmul(x, y, adjoint_b=True),
             [spec([None, 2, 3, 4], "x"), spec([None, 2, 5, 4], "y")],
             {"x": rnd(rng, 3, 2, 3, 4), "y": rnd(rng, 3, 2, 5, 4)},
             "BatchMatMulV2(adj_y) of two private inputs [N,2,3,4] x [N,2,5,4]^T -> [N,2,3,5] "
             "(attention's Q.K^T)", seed)
    seed = 312
    rng = np.random.default_rng(seed)
    op_graph("batch_matmul_broadcast_adj_x",
             lambda x, y: tf.matmul(x, y, adjoint_a=True),
             [spec([3, 2, 5, 4], "x"), spec([3, 1, 5, 3], "y")],
             {"x": rnd(rng, 3, 2, 5, 4), "y": rnd(rng, 3, 1, 5, 3)},
             "BatchMatMulV2(adj_x) of two private inputs [3,2,5,4]^T x [3,1,5,3], the batch "
             "axis of y broadcast -> [3,2,4,3]", seed)
    seed = 313
    rng = np.random.default_rng(seed)
    W = rnd(rng, 4, 6, scale=0.5)
    op_graph("batch_matmul_weight",
             lambda x: tf.matmul(x, W),
             [spec([None, 5, 4])], {"input": rnd(rng, 3, 5, 4)},
             "BatchMatMulV2 of a private [N,5,4] by a weight [4,6] (broadcast) -> [N,5,6]", seed)

    # tf.einsum (what tf_keras' EinsumDense and MultiHeadAttention call) keeps
    # Einsum nodes; Keras 3's einsum emits BatchMatMulV2 for these equations.
    seed = 315
    rng = np.random.default_rng(seed)
    Wq, Wk, Wv = (rnd(rng, 8, 2, 4, scale=0.4) for _ in range(3))
    Wo = rnd(rng, 2, 4, 8, scale=0.4)

    def einsum_attention(x):
        q = tf.einsum("abc,cde->abde", x, Wq)
        k = tf.einsum("abc,cde->abde", x, Wk)
        v = tf.einsum("abc,cde->abde", x, Wv)
        scores = tf.einsum("aecd,abcd->acbe", k, q) * 0.25
        ctx = tf.einsum("acbe,aecd->abcd", scores, v)
        return tf.einsum("abcd,cde->abe", ctx, Wo)

    op_graph("einsum_attention", einsum_attention, [spec([None, 6, 8])],
             {"input": rnd(rng, 3, 6, 8, scale=0.7)},
             "tf.einsum as tf_keras' EinsumDense and MultiHeadAttention call it: projections "
             "abc,cde->abde by weights, scores aecd,abcd->acbe and context acbe,aecd->abcd of "
             "two private tensors (no softmax), output abcd,cde->abe", seed)

    # Keras 3's Dense on a rank-3 input is a tensordot: Shape/GatherV2/Prod on the
    # shape (folded), Reshape, MatMul, Reshape.
    seed = 316
    rng = np.random.default_rng(seed)
    seed_all(0)
    dense = keras.layers.Dense(3)
    dense.build((None, 5, 4))
    op_graph("dense_rank3", lambda x: dense(x), [spec([None, 5, 4])], {"input": rnd(rng, 3, 5, 4)},
             "Keras 3 Dense(3) on a [N,5,4] input (a tensordot: Prod of shape entries folded at "
             "import)", seed)

    # Attention without the softmax (another engineer builds it): Keras 3 EinsumDense
    # projections, MultiHeadAttention's two einsums, Keras' Dot merge layer.
    if selected("seq_attention_einsum"):
        seed_all(0)
        L = keras.layers
        x_in = keras.Input((6, 8))
        q = L.EinsumDense("abc,cde->abde", output_shape=(6, 2, 4), bias_axes="de")(x_in)
        k = L.EinsumDense("abc,cde->abde", output_shape=(6, 2, 4), bias_axes="de")(x_in)
        v = L.EinsumDense("abc,cde->abde", output_shape=(6, 2, 4), bias_axes="de")(x_in)
        scores = L.Lambda(lambda t: keras.ops.einsum("aecd,abcd->acbe", t[0], t[1]) * 0.25)([k, q])
        ctx = L.Lambda(lambda t: keras.ops.einsum("acbe,aecd->abcd", t[0], t[1]))([scores, v])
        out = L.EinsumDense("abcd,cde->abe", output_shape=(6, 8), bias_axes="e")(ctx)
        dot = L.Dot(axes=(2, 2))([out, x_in])                     # [N, 6, 6]
        y = L.Dense(CLASSES)(L.Flatten()(dot))
        m = keras.Model(x_in, y)
        rng = np.random.default_rng(314)
        cand = rnd(rng, 400, 6, 8, scale=0.7)
        x, _ = margin_rows(m, cand, np.zeros(len(cand)), 20)
        np.save(f"{OUT_SEQ}/attention20.npy", x)
        gd = freeze_tf2(lambda t: m(t, training=False), [spec([None, 6, 8])])
        keras_entry("seq_attention_einsum", m, gd, x, "seq/attention20.npy",
                    "Keras 3: EinsumDense abc,cde->abde projections (q, k, v: 2 heads of 4), "
                    "MultiHeadAttention's einsums aecd,abcd->acbe (scaled, no softmax) and "
                    "acbe,aecd->abcd, EinsumDense abcd,cde->abe, a Dot(axes=2) merge layer, "
                    "Flatten + Dense(10); random weights, 20 rows without a near-tie", None)


def build_rnns(mnist):
    """Unrolled LSTM/GRU (Keras 3 and tf_keras) on MNIST rows as 28 steps of 28."""
    names = ["seq_lstm_unrolled_keras3", "seq_gru_unrolled_keras3",
             "seq_lstm_unrolled_tfkeras", "seq_gru_unrolled_tfkeras"]
    if not any(selected(n) for n in names):
        return
    xtr, ytr, xte, yte = mnist()
    for name in names:
        if not selected(name):
            continue
        seed_all(0)
        lib = keras if "keras3" in name else tf_keras
        L = lib.layers
        cell = L.LSTM if "lstm" in name else L.GRU
        m = lib.Sequential([lib.Input((28, 28, 1)), L.Reshape((28, 28)), cell(16, unroll=True),
                            L.Dense(CLASSES)])
        if lib is keras:
            train(m, xtr, ytr, epochs=3, lr=1e-2)
        else:
            m.compile(optimizer=tf_keras.optimizers.Adam(1e-2),
                      loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            m.fit(xtr, ytr, epochs=3, batch_size=128, verbose=0)
        gd = freeze_tf2(lambda t: m(t, training=False), [spec([None, 28, 28, 1])])
        keras_entry(name, m, gd, xte, "mnist_batch100.npy",
                    f"{'Keras 3' if lib is keras else 'tf_keras'} {cell.__name__}(16, unroll=True) "
                    "on MNIST rows (28 steps of 28) + Dense(10), three epochs", yte)


OUT_SEQ = None


def build_seq(generate, mnist):
    """Every sequence entry --only selects; `mnist` loads MNIST when one needs it."""
    global OUT_SEQ
    import os
    globals().update({name: getattr(generate, name) for name in HELPERS})
    OUT_SEQ = os.path.join(generate.OUT, "seq")
    os.makedirs(OUT_SEQ, exist_ok=True)
    build_products()
    build_embedding()
    build_rnns(mnist)

