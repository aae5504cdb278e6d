"""The keras.applications zoo as test data (called from generate.py).

Each entry is a Keras 3 `keras.applications` architecture built with
`weights=None, classes=10` (classifier Softmax kept), trained briefly on real
MNIST (resized bilinearly, the grey channel tiled to three, 0..255 pixels then
preprocessed as the model expects), frozen with `freeze_keras`, with 8 MNIST
test rows as input (zoo/NAME.input8.npy) and TensorFlow's output of the frozen
graph on them as the expected output (zoo/NAME.expected.npy).

Where the stock configuration would be over 10 MB, the same architecture is
built smaller through its own constructor (keras.src.applications.*: the
general constructors are not exported under keras.applications), keeping every
kind of layer and block the stock model has (see ZOO):

    /tmp/tfvenv/bin/python testdata/generate.py --only zoo_mobilenet_v3_small
    /tmp/tfvenv/bin/python testdata/generate.py --only zoo_efficientnet_b0,zoo_densenet121
    /tmp/tfvenv/bin/python testdata/generate.py --only zoo_resnet20

The one entry that is not a keras.applications model is zoo_resnet20, the
CIFAR-style ResNet-20 of He et al. (2016), built from Keras 3 layers at 32x32
(MNIST resized to 32x32 stands in for CIFAR-10, which no offline package ships).

generate.py calls `build_zoo(generate_module, load)` with itself (this file
imports nothing from it, so it works however generate.py was started) and a
function that returns the MNIST arrays; MNIST is only loaded when an entry of
the zoo is selected.
"""

import os

import numpy as np
import tensorflow as tf
import keras
from keras.src.applications import densenet, efficientnet, nasnet, resnet

ZOO_TRAIN = 4000     # MNIST training images per model
ZOO_EPOCHS = 2
ZOO_BATCH = 64
ZOO_ROWS = 8         # rows in zoo/NAME.input8.npy
# (images, epochs) where the default leaves a near-tie on one of the 8 rows:
# EfficientNet after 2 epochs on 4000 images had a top-two gap of 0.015.
TRAINING = {"efficientnet_b0": (6000, 3)}


def images(x01, size):
    """[N,28,28,1] in [0,1] -> [N,size,size,3] pixels in [0,255] (bilinear resize,
    the grey channel tiled to three)."""
    x = tf.image.resize(tf.constant(x01), (size, size), method="bilinear")
    return (tf.tile(x, [1, 1, 1, 3]).numpy() * 255.0).astype(np.float32)


def mobilenet_v3_small(shape):
    # Stock MobileNetV3Small (alpha 1.0, minimalistic=False: hard-swish and the
    # squeeze-excite blocks with their hard-sigmoid gates), 1.5M weights.
    return keras.applications.MobileNetV3Small(
        input_shape=shape, weights=None, classes=10, include_preprocessing=True)


def efficientnet_b0(shape):
    # EfficientNetB0's constructor call with width_coefficient 0.5 instead of 1.0
    # (stock B0 with 10 classes is 4.0M weights, 16 MB); depth_coefficient 1.0
    # keeps B0's 16 blocks, so repeated blocks keep their residual Add and their
    # (inference-time identity) drop-connect Dropout.
    return efficientnet.EfficientNet(
        0.5, 1.0, 224, dropout_rate=0.2, name="efficientnet_b0_w05", weights=None,
        input_shape=shape, classes=10)


def nasnet_mobile(shape):
    # NASNetMobile's constructor call with penultimate_filters 576 instead of 1056
    # (stock with 10 classes is 4.3M weights, 17 MB); num_blocks 4, stem filters 32,
    # skip_reduction False and filter_multiplier 2 as stock, so every cell kind
    # (normal A, reduction A, the adjust blocks' strided average pools and
    # crop-and-pad path) stays.
    return nasnet.NASNet(
        shape, penultimate_filters=576, num_blocks=4, stem_block_filters=32,
        skip_reduction=False, filter_multiplier=2, weights=None, classes=10,
        default_size=224, name="nasnet_mobile_576")


def densenet121(shape):
    # DenseNet121's constructor with blocks [2, 4, 8, 6] instead of [6, 12, 24, 16]
    # (stock with 10 classes is 7.0M weights, 28 MB): the same dense blocks (growth
    # rate 32, bottleneck 1x1 then 3x3), transition blocks and stem.
    return densenet.DenseNet([2, 4, 8, 6], weights=None, input_shape=shape, classes=10,
                             name="densenet121_half")


def resnet50v2_narrow(shape):
    # ResNet50V2's stack_fn (pre-activation bottleneck blocks, 3-4-6-3 blocks per
    # stack: a 1x1 conv shortcut first, identity shortcuts, and the stride-2
    # MaxPooling2D(1) shortcut of each stack's last block) with 16-32-64-128
    # bottleneck filters instead of 64-128-256-512 (stock: 23.5M weights, 94 MB).
    def stack_fn(x):
        x = resnet.stack_residual_blocks_v2(x, 16, 3, name="conv2")
        x = resnet.stack_residual_blocks_v2(x, 32, 4, name="conv3")
        x = resnet.stack_residual_blocks_v2(x, 64, 6, name="conv4")
        return resnet.stack_residual_blocks_v2(x, 128, 3, stride1=1, name="conv5")

    return resnet.ResNet(stack_fn, True, True, name="resnet50v2_narrow", weights=None,
                         input_shape=shape, classes=10)


def resnet20(shape):
    # He et al. 2016's CIFAR ResNet-20 (section 4.2; not a keras.applications model,
    # built from Keras 3 layers): a 3x3 conv of 16, then 3 stages of 3 basic blocks
    # (two 3x3 convs with BatchNormalization and ReLU, an identity shortcut) at 16,
    # 32 and 64 filters, the first block of stages 2 and 3 at stride 2 with a 1x1
    # conv + BatchNormalization projection shortcut (option B), global average pool,
    # Dense(10) softmax. 0.27M weights.
    L = keras.layers

    def conv_bn(x, filters, kernel, stride, name):
        x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                     kernel_initializer="he_normal", name=f"{name}_conv")(x)
        return L.BatchNormalization(name=f"{name}_bn")(x)

    inp = keras.Input(shape)
    x = L.ReLU(name="stem_relu")(conv_bn(inp, 16, 3, 1, "stem"))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            name = f"stage{stage + 1}_block{block + 1}"
            stride = 2 if stage > 0 and block == 0 else 1
            y = L.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, 3, stride, f"{name}_1"))
            y = conv_bn(y, filters, 3, 1, f"{name}_2")
            shortcut = x if stride == 1 else conv_bn(x, filters, 1, stride, f"{name}_proj")
            x = L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([shortcut, y]))
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    out = L.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="resnet20")


def tf_mode(x):
    """keras.applications' "tf" preprocessing (MobileNetV2, NASNet, ResNetV2): [-1, 1]."""
    return keras.applications.nasnet.preprocess_input(x.copy())


def torch_mode(x):
    """DenseNet's "torch" preprocessing: /255, ImageNet mean and std per channel."""
    return keras.applications.densenet.preprocess_input(x.copy())


def pixels(x):
    """The model rescales (and normalises) the 0..255 pixels itself."""
    return x


# name -> (builder, input size, preprocessing, what the input is)
ZOO = {
    "resnet20": (
        resnet20, 32, tf_mode,
        "CIFAR-style ResNet-20 (He et al. 2016, section 4.2: 3x3 conv 16, 3 stages of 3 "
        "basic blocks at 16-32-64 filters, 1x1 projection shortcuts at the two stride-2 "
        "blocks, global average pool, Dense(10) softmax) built from Keras 3 layers, "
        "input_shape=(32,32,3); input scaled to [-1, 1] as keras.applications' tf mode"),
    "mobilenet_v3_small": (
        mobilenet_v3_small, 96, pixels,
        "keras.applications.MobileNetV3Small(input_shape=(96,96,3), weights=None, classes=10) "
        "as stock (alpha 1.0, minimalistic=False, include_preprocessing=True: its Rescaling "
        "layer maps the 0..255 input to [-1, 1])"),
    "efficientnet_b0": (
        efficientnet_b0, 64, pixels,
        "keras.src.applications.efficientnet.EfficientNet(width_coefficient=0.5, "
        "depth_coefficient=1.0, default_size=224, input_shape=(64,64,3), weights=None, "
        "classes=10): EfficientNetB0's call at half width; its own Rescaling(1/255) and "
        "Normalization (adapted on the training images) take the 0..255 input"),
    "nasnet_mobile": (
        nasnet_mobile, 64, tf_mode,
        "keras.src.applications.nasnet.NASNet(input_shape=(64,64,3), penultimate_filters=576, "
        "num_blocks=4, stem_block_filters=32, skip_reduction=False, filter_multiplier=2, "
        "weights=None, classes=10): NASNetMobile's call with 576 penultimate filters instead "
        "of 1056; input scaled by nasnet.preprocess_input to [-1, 1]"),
    "densenet121": (
        densenet121, 64, torch_mode,
        "keras.src.applications.densenet.DenseNet(blocks=[2,4,8,6], input_shape=(64,64,3), "
        "weights=None, classes=10): DenseNet121 with a third of its blocks per dense block; input "
        "scaled by densenet.preprocess_input (/255, ImageNet mean and std)"),
    "resnet50v2_narrow": (
        resnet50v2_narrow, 64, tf_mode,
        "keras.src.applications.resnet.ResNet(stack_fn, preact=True, use_bias=True, "
        "input_shape=(64,64,3), weights=None, classes=10) with ResNet50V2's stack_fn "
        "(stack_residual_blocks_v2, 3-4-6-3 pre-activation bottleneck blocks) at bottleneck "
        "filters 16-32-64-128 instead of 64-128-256-512; input scaled by "
        "resnet_v2.preprocess_input to [-1, 1]"),
}


def entry_name(name):
    return f"zoo_{name}"


def build_zoo(g, load):
    """Make every selected zoo entry. `g` is the generate module (its helpers and
    its manifest), `load` returns (xtr, ytr, xte, yte) as generate.load_mnist does."""
    wanted = [name for name in ZOO if g.selected(entry_name(name))]
    if not wanted:
        return
    xtr, ytr, xte, yte = load()
    for name in wanted:
        build_one(g, name, xtr, ytr, xte, yte)


def build_one(g, name, xtr, ytr, xte, yte):
    make, size, prep, what = ZOO[name]
    shape = (size, size, 3)
    entry = entry_name(name)
    g.seed_all(0)
    m = make(shape)
    # The applications' BatchNormalization momentum (0.99 or 0.999) leaves the
    # moving statistics near their initial values after a few dozen steps, so the
    # inference-mode model would be near chance; 0.9 lets them follow the batches.
    bn = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
    for l in bn:
        l.momentum = 0.9
    n_train, epochs = TRAINING.get(name, (ZOO_TRAIN, ZOO_EPOCHS))
    x_train = prep(images(xtr[:n_train], size))
    x_test = prep(images(xte, size))
    for l in m.layers:
        if isinstance(l, keras.layers.Normalization):
            # EfficientNet's Normalization follows its Rescaling(1/255).
            l.adapt(x_train / 255.0)
    m.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    m.fit(x_train, ytr[:n_train], epochs=epochs, batch_size=ZOO_BATCH, shuffle=True,
          verbose=0)
    weights = int(sum(np.prod(w.shape) for w in m.weights))
    print(f"\n{entry}: {weights} weights ({m.count_params()} parameters, "
          f"{len(bn)} BatchNormalization layers)")

    rel = f"zoo/{name}.pb"
    rows = x_test[:ZOO_ROWS]
    input_rel = f"zoo/{name}.input8.npy"
    g.save_npy(input_rel, rows)
    gd = g.freeze_keras(m, shape)
    g.write_pb(gd, rel)
    ref = m(rows, training=False)
    ref = ref.numpy() if hasattr(ref, "numpy") else np.asarray(ref)
    description = (
        f"Keras 3 {what}; classifier Softmax kept; BatchNormalization momentum set to 0.9, "
        f"trained {epochs} epochs (Adam 1e-3, batch {ZOO_BATCH}) on {n_train} MNIST "
        f"training images resized to {size}x{size} (bilinear) and tiled to 3 channels; the "
        f"first {ZOO_ROWS} MNIST test images prepared the same way; {weights} weights")
    _, acc8 = g.register(entry, rel, gd, {"input": input_rel}, f"zoo/{name}.expected.npy",
                         description, {"input": rows}, reference=ref, labels=yte[:ZOO_ROWS])
    g.ACCURACIES[entry] = acc8
    size_bytes = os.path.getsize(os.path.join(g.OUT, rel))
    assert size_bytes < 10 << 20, f"{rel} is {size_bytes} bytes"
    g.assert_argmax_margin(entry, rel, {"input": rows})
    y100 = g.run_pb(rel, {"input": x_test}, g.sink_node(gd))
    acc100 = float(np.mean(np.argmax(y100, axis=1) == yte))
    print(f"   {size_bytes} bytes; accuracy on the 100 test rows (frozen graph): {acc100:.0%}; "
          f"on the 8 rows: {acc8:.0%}; top probability on the 8 rows "
          f"{np.round(np.max(y100[:ZOO_ROWS], axis=1), 3).tolist()}")
    print(f"   input range [{rows.min():.3f}, {rows.max():.3f}]")
    for what_rows, feeds in (("the 8 rows", rows), ("the 100 test rows", x_test)):
        worst, top, count = g.largest_activations(rel, {"input": feeds})
        print(f"   largest |activation| over the {count} float tensors that depend on the "
              f"input, on {what_rows}: {worst:.2f}")
        for v, op, node in top:
            print(f"      {v:10.2f}  {op:<12} {node}")
    worst, top, count = g.largest_activations(rel, {"input": rows}, private=False)
    print(f"   largest |value| over the {count} float tensors that do not (weights, folded "
          f"factors): {worst:.2f}")
    for v, op, node in top:
        print(f"      {v:10.2f}  {op:<12} {node}")
    hist = g.op_histogram(gd)
    assert hist.get("Softmax") == 1, hist
