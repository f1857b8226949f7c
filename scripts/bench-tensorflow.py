"""Times the reference encoder in TensorFlow/Keras, as `tidalscope bench encoder`
times ours, so the two can be compared side by side on one machine.

Same network (pre-activation bottleneck ResNet of Desmons et al. 2023, 615,312
trainable parameters with 5 bands; `--width` scales its channels as tidalscope's
`--width` does, round(c * width)), same input (96x96x5, batch 32), same work per
step: training = forward + backward + Adam on mean(output^2), inference =
forward in inference mode; images/s from the median step. `--preset quick|paper` takes the width, view size,
batch and input channels of that pretraining preset (quick: 5 bands and their two residuals, 15), as `tidalscope
bench encoder --preset` does.
Not part of the tests; needs `pip install tensorflow-cpu`.

    python3 scripts/bench-tensorflow.py [--preset quick|paper] [--steps 5] [--batch 32] [--size 96] [--width 1]
"""
import argparse
import time

import numpy as np
import tensorflow as tf
from tensorflow.keras import layers


# width, view size, batch and input channels of tidalscope's pretraining presets
PRESETS = {"paper": (1.0, 96, 220, 5), "quick": (0.5, 24, 128, 15)}


def encoder(bands, size, mult=1.0):
    def ch(c):
        return max(1, int(np.floor(c * mult + 0.5)))

    def bn():
        return layers.BatchNormalization(momentum=0.99, epsilon=1e-3)

    def conv(filters, k, stride=1):
        return layers.Conv2D(filters, k, strides=stride, padding="same", use_bias=False)

    x_in = layers.Input((size, size, bands))
    x = layers.ReLU()(bn()(conv(ch(16), 3)(x_in)))
    for width, out, stride in [(ch(16), ch(64), 1), (ch(64), ch(128), 2), (ch(128), ch(256), 2)]:
        for projection in (True, False):
            s = stride if projection else 1
            h = conv(width, 1)(layers.ReLU()(bn()(x)))
            h = conv(width, 3, s)(layers.ReLU()(bn()(h)))
            h = conv(out, 1)(layers.ReLU()(bn()(h)))
            skip = conv(out, 1, s)(x) if projection else x
            x = layers.Add()([h, skip])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.ReLU()(bn()(layers.Dense(128, use_bias=False)(x)))
    x = bn()(layers.Dense(128, use_bias=False)(x))
    return tf.keras.Model(x_in, x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, help="timed steps of each kind (default: about 3 s of them, at least 5, "
                   "as `tidalscope bench encoder` times)")
    p.add_argument("--batch", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--width", type=float)
    p.add_argument("--bands", type=int, help="input channels (default 5, or the preset's)")
    a = p.parse_args()
    width, size, batch, bands = PRESETS[a.preset] if a.preset else (1.0, 96, 32, 5)
    a.bands = bands if a.bands is None else a.bands
    a.width = width if a.width is None else a.width
    a.size = size if a.size is None else a.size
    a.batch = batch if a.batch is None else a.batch
    if a.width <= 0 or a.size <= 0 or a.batch <= 0 or a.bands <= 0 or (a.steps is not None and a.steps <= 0):
        p.error("--width, --size, --batch, --bands and --steps must be positive")
    model = encoder(a.bands, a.size, a.width)
    x = tf.constant(np.random.default_rng(1).normal(size=(a.batch, a.size, a.size, a.bands)).astype("float32"))
    opt = tf.keras.optimizers.Adam(1e-3)

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def infer(x):
        return model(x, training=False)

    def timed(step):
        # The median step, as `tidalscope bench encoder` takes: the machine's
        # speed swings within seconds, and a median ignores the odd slow spell.
        step(x).numpy()  # warm-up (and tracing)
        steps = a.steps
        if steps is None:
            t0 = time.perf_counter()
            step(x).numpy()
            steps = min(2000, max(5, int(np.ceil(3.0 / max(time.perf_counter() - t0, 1e-6)))))
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step(x).numpy()
            times.append(time.perf_counter() - t0)
        return a.batch / float(np.median(times)), steps

    print(f"tensorflow {tf.__version__}: {model.count_params()} parameters, "
          f"width {a.width}, {a.size}x{a.size}x{a.bands}, batch {a.batch}")
    for name, step in [("train", train_step), ("infer", infer)]:
        rate, steps = timed(step)
        print(f"tensorflow {name}: {rate:.2f} images/s (median of {steps} timed steps)")


if __name__ == "__main__":
    main()
