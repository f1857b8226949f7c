"""Times the reference encoder in TensorFlow/Keras, as `tidalscope bench encoder`
times ours, so the two can be compared side by side on one machine.

Same network (pre-activation bottleneck ResNet of Desmons et al. 2023, 615,312
trainable parameters with 5 bands), same input (96x96x5, batch 32), same work
per step: training = forward + backward + Adam on mean(output^2), inference =
forward in inference mode. Not part of the tests; needs `pip install tensorflow-cpu`.

    python3 scripts/bench-tensorflow.py [--steps 5] [--batch 32] [--size 96]
"""
import argparse
import time

import numpy as np
import tensorflow as tf
from tensorflow.keras import layers


def encoder(bands, size):
    def bn():
        return layers.BatchNormalization(momentum=0.99, epsilon=1e-3)

    def conv(filters, k, stride=1):
        return layers.Conv2D(filters, k, strides=stride, padding="same", use_bias=False)

    x_in = layers.Input((size, size, bands))
    x = layers.ReLU()(bn()(conv(16, 3)(x_in)))
    for width, out, stride in [(16, 64, 1), (64, 128, 2), (128, 256, 2)]:
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
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--bands", type=int, default=5)
    a = p.parse_args()
    model = encoder(a.bands, a.size)
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
        step(x).numpy()  # warm-up (and tracing)
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step(x).numpy()
        return a.steps * a.batch / (time.perf_counter() - t0)

    print(f"tensorflow {tf.__version__}: {model.count_params()} parameters, "
          f"{a.size}x{a.size}x{a.bands}, batch {a.batch}, {a.steps} timed steps")
    print(f"tensorflow train: {timed(train_step):.2f} images/s")
    print(f"tensorflow infer: {timed(infer):.2f} images/s")


if __name__ == "__main__":
    main()
