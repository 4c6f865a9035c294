// onnx_run.js — runs a model.onnx with ONNX Runtime (npm onnxruntime-node) on one float32 input.
//   node onnx_run.js MODEL.onnx INPUT.bin D0,D1,... OUT_PREFIX
// INPUT.bin holds the input "input" as little-endian float32 of shape D0,D1,...; every output is
// written to OUT_PREFIX<name>.bin the same way, and OUT_PREFIX"names.txt" lists the session's
// inputs and outputs, one per line: "input <name>" / "output <name> <d0,d1,...>".
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));

async function main() {
    const [model, inFile, shapeText, prefix] = process.argv.slice(2);
    if (!prefix) throw new Error('usage: node onnx_run.js MODEL.onnx INPUT.bin D0,D1,... OUT_PREFIX');
    const session = await ort.InferenceSession.create(model, {intraOpNumThreads: 1});
    const raw = fs.readFileSync(inFile);
    const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
    const shape = shapeText.split(',').map(Number);
    const result = await session.run({input: new ort.Tensor('float32', data, shape)});
    const lines = session.inputNames.map((n) => `input ${n}`);
    for (const name of session.outputNames) {
        const t = result[name];
        fs.writeFileSync(`${prefix}${name}.bin`, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        lines.push(`output ${name} ${t.dims.join(',')}`);
    }
    fs.writeFileSync(`${prefix}names.txt`, lines.join('\n') + '\n');
}

main().catch((e) => {
    console.error(`onnx_run.js: ${e.message || e}`);
    process.exit(1);
});
