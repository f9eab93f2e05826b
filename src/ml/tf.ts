// The one place the ML code imports TensorFlow.js from. tfjs-core alone has no kernels; the pure-JS
// cpu backend is registered here as a side effect so that every ML module (and every unit test)
// has a working backend even before `selectBackend()` picks a faster one. It also registers the
// gradients the training graph needs (see gradients.ts).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerTrainingGradients } from './gradients.js';

registerTrainingGradients();

export { tf };
