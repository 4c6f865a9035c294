// ONNX Runtime peer of bench/infer_vs_ort.sh: batch-1 latency (p50, p99) and batch-64 throughput
// of a kiln-exported model.onnx (input "input" [batch, ...ROW], output "output"), with the given
// intra-op threads, each measured for SECONDS after a warm-up, one request after another.
//
//   node bench/peer_infer_ort.js MODEL.onnx THREADS ROW SECONDS      (ROW: "1,28,28")
// prints "RESULT b1_p50_ms=<x> b1_p99_ms=<y> b64_rows_per_s=<z>"
const path = require('path');
const ort = require(path.join(__dirname, '..', 'tests', 'oracles', 'node_modules', 'onnxruntime-node'));

function feeds(row, batch) {
    const n = batch * row.reduce((a, b) => a * b, 1), data = new Float32Array(n);
    let s = 1;
    for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) % 2147483648; data[i] = s / 2147483648; }
    return {input: new ort.Tensor('float32', data, [batch, ...row])};
}

async function timed(session, f, seconds) {
    for (let i = 0; i < 3; i++) await session.run(f, ['output']);
    const lat = [], end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    const t0 = process.hrtime.bigint();
    let t = t0;
    while (t < end) {
        await session.run(f, ['output']);
        const t1 = process.hrtime.bigint();
        lat.push(Number(t1 - t) / 1e6);
        t = t1;
    }
    lat.sort((a, b) => a - b);
    const rank = q => lat[Math.min(lat.length, Math.max(1, Math.ceil(q * lat.length))) - 1];
    return {p50: rank(0.5), p99: rank(0.99), n: lat.length, sec: Number(t - t0) / 1e9};
}

async function main() {
    const [model, threads, rowArg, seconds] = [process.argv[2], +process.argv[3], process.argv[4], +process.argv[5]];
    const row = rowArg.split(',').map(Number);
    const session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
        executionMode: 'sequential'});
    const b1 = await timed(session, feeds(row, 1), seconds);
    const b64 = await timed(session, feeds(row, 64), seconds);
    console.log(`RESULT b1_p50_ms=${b1.p50.toFixed(4)} b1_p99_ms=${b1.p99.toFixed(4)} ` +
                `b64_rows_per_s=${(64 * b64.n / b64.sec).toFixed(1)}`);
}
main().catch(e => { console.error('peer_infer_ort: ' + e.message); process.exit(1); });
