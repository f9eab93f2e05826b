// Cross-entropy with label smoothing (Szegedy et al. 2016): the target puts 1 - eps on the label
// and eps / K on every class (the label included), as torch.nn.CrossEntropyLoss(label_smoothing).
import { tf } from './tf.js';

export function smoothedCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, smoothing: number): tf.Scalar {
  return tf.tidy(() => {
    const k = logits.shape[1];
    const target = tf.add(tf.mul(tf.oneHot(labels, k), 1 - smoothing), smoothing / k);
    return tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  });
}
