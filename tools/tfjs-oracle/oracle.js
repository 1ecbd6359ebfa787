// TF.js oracle for graft's specs (spec/formats/tfjs/tfjs_spec.lua), run with Node from
// the folder tools/install-deps --test installs @tensorflow/tfjs into
// (.node-oracles/tfjs, from this folder's package.json + package-lock.json).
//
//   node oracle.js decode MODEL_JSON OUT_JSON
//       every manifest group's shards read and decoded by tfjs's own
//       tf.io.decodeWeights (dequantisation included); OUT_JSON maps each
//       weight name to {dtype, shape, values}
//   node oracle.js predict MODEL_JSON INPUT_JSON OUT_JSON
//       tf.loadLayersModel over tf.io.fromMemory (model.json and its shards
//       read here), then predict on INPUT_JSON ({shape, values})
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

function load(modelJson) {
  const doc = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const dir = path.dirname(modelJson);
  const specs = [];
  const buffers = [];
  for (const group of doc.weightsManifest) {
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(buffers);
  const data = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return {doc, specs, data};
}

async function main() {
  const [mode, modelJson, a, b] = process.argv.slice(2);
  const {doc, specs, data} = load(modelJson);
  if (mode === 'decode') {
    const out = {};
    const map = tf.io.decodeWeights(data, specs);
    for (const [name, t] of Object.entries(map)) {
      out[name] = {dtype: t.dtype, shape: t.shape, values: Array.from(t.dataSync())};
    }
    fs.writeFileSync(a, JSON.stringify(out));
  } else if (mode === 'predict') {
    const model = await tf.loadLayersModel(tf.io.fromMemory(
        {modelTopology: doc.modelTopology, weightSpecs: specs, weightData: data}));
    const input = JSON.parse(fs.readFileSync(a, 'utf8'));
    const y = model.predict(tf.tensor(input.values, input.shape, 'float32'));
    fs.writeFileSync(b, JSON.stringify({shape: y.shape, values: Array.from(y.dataSync())}));
  } else {
    throw new Error('mode must be decode or predict');
  }
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
