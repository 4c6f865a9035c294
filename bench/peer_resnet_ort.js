// ONNX Runtime peer of bench/resnet_vs_torch.sh: runs a kiln-exported model.onnx (input
// "input" [batch, 3, 64, 64]) at batch 64 with the given intra-op threads, after a warm-up.
//
//   node bench/peer_resnet_ort.js MODEL.onnx THREADS BATCHES
// prints "RESULT infer_samples_per_s=<x>"
const path = require('path');
const ort = require(path.join(__dirname, '..', 'tests', 'oracles', 'node_modules', 'onnxruntime-node'));

async function main() {
    const [model, threads, batches] = [process.argv[2], +process.argv[3], +process.argv[4]];
    const session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
        executionMode: 'sequential'});
    const B = 64, n = B * 3 * 64 * 64, data = new Float32Array(n);
    let s = 1;
    for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) % 2147483648; data[i] = s / 2147483648 - 0.5; }
    const feeds = {input: new ort.Tensor('float32', data, [B, 3, 64, 64])};
    for (let i = 0; i < 2; i++) await session.run(feeds, ['output']);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batches; i++) await session.run(feeds, ['output']);
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`RESULT infer_samples_per_s=${(B * batches / sec).toFixed(1)}`);
}
main().catch(e => { console.error('peer_resnet_ort: ' + e.message); process.exit(1); });
