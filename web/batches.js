// How the dashboard splits the files a user picked into POST /v1/predict/batch requests the server
// takes whole: at most `maxImagesPerRequest` files and `maxBytesPerRequest` bytes together each
// (GET /v1/predict/limits). Phone photos are 2-5 MB, so by the byte limit alone (10 MB by default)
// a request holds two or three of them; sending 16 got a 413 for every request.

/**
 * Files in order, grouped: `batches` holds the index of each file in its request, `tooLarge` the
 * index of each file over `maxBytesPerRequest` alone, which no request can carry.
 */
export function packBatches(sizes, { maxImagesPerRequest, maxBytesPerRequest }) {
  const batches = [];
  const tooLarge = [];
  let current = [];
  let bytes = 0;
  sizes.forEach((size, i) => {
    if (size > maxBytesPerRequest) {
      tooLarge.push(i);
      return;
    }
    if (current.length === maxImagesPerRequest || bytes + size > maxBytesPerRequest) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(i);
    bytes += size;
  });
  if (current.length) batches.push(current);
  return { batches, tooLarge };
}
