#!/usr/bin/env node
// Sends one digit image to InferScale's RouterService.Infer and prints the answer and every
// escalation step, one per line. The protos are loaded at runtime from ../../protos.
//
// Over TLS with --tls or --ca-file (mutual TLS with --cert-file and --key-file as well). The
// client token, when the environment has one in INFERSCALE_CLIENT_TOKEN, goes with the call as
// "authorization: Bearer <token>"; it is read from the environment, never from the command line,
// where other users of the machine could see it.
//
// Exit codes: 0 success, 1 a usage error (bad flags or pixels), 2 the call failed with a gRPC
// error (printed to stderr as "error: <CODE_NAME>: <details>").

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTOS_ROOT = fileURLToPath(new URL('../../protos/', import.meta.url));
const ROUTER_PROTO = 'inferscale/v1/router_service.proto';
const PIXELS = 64; // an 8x8 image, values 0..16
const TOKEN_VARIABLE = 'INFERSCALE_CLIENT_TOKEN'; // as inferscale/auth.py CLIENT_TOKEN_VARIABLE

const USAGE = `usage: node infer.js (--pixels "0,0,5,13,..." | --pixels-file image.json) [options]

  --address HOST:PORT   the router (default localhost:50051); plaintext unless --tls
                        or --ca-file
  --tls                 connect over TLS, trusting the system's certificate authorities
  --ca-file PATH        connect over TLS, trusting the CA certificate in PATH (PEM)
  --cert-file PATH      with --key-file: present this client certificate (PEM), for
                        mutual TLS
  --key-file PATH       the client certificate's private key (PEM)
  --pixels LIST         ${PIXELS} comma-separated pixel values 0..16
  --pixels-file PATH    a JSON array of ${PIXELS} pixel values
  --task NAME           the task (default digits)
  --threshold X         confidence threshold in (0, 1]; default: the router's
  --skip-cache          neither read nor write the final-result cache
  --request-id ID       the request id (default: the router assigns one)
  --deadline-ms N       the call's gRPC deadline in milliseconds (default 10000)
  --shape D,D           send this tensor shape as given, without checking that the
                        pixel count matches it (for exercising server-side validation)
  --help                print this help

The client token, if the router needs one, is read from the environment variable
${TOKEN_VARIABLE} and sent as "authorization: Bearer <token>".`;

class UsageError extends Error {}

function parseCommandLine(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        address: { type: 'string', default: 'localhost:50051' },
        tls: { type: 'boolean', default: false },
        'ca-file': { type: 'string' },
        'cert-file': { type: 'string' },
        'key-file': { type: 'string' },
        pixels: { type: 'string' },
        'pixels-file': { type: 'string' },
        task: { type: 'string', default: 'digits' },
        threshold: { type: 'string' },
        'skip-cache': { type: 'boolean', default: false },
        'request-id': { type: 'string', default: '' },
        'deadline-ms': { type: 'string', default: '10000' },
        shape: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    throw new UsageError(err.message);
  }
  return parsed;
}

function parseNumber(text, what) {
  const value = Number(String(text).trim());
  if (String(text).trim() === '' || !Number.isFinite(value)) {
    throw new UsageError(`${what} ${JSON.stringify(text)} is not a finite number`);
  }
  return value;
}

function readPixels(options) {
  if ((options.pixels === undefined) === (options['pixels-file'] === undefined)) {
    throw new UsageError('give exactly one of --pixels and --pixels-file');
  }
  let values;
  if (options.pixels !== undefined) {
    values = options.pixels.split(',').map((text, i) => parseNumber(text, `pixel ${i}`));
  } else {
    const path = options['pixels-file'];
    let parsed;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new UsageError(`cannot read ${path} as JSON: ${err.message}`);
    }
    if (!Array.isArray(parsed)) {
      throw new UsageError(`${path} must hold a JSON array of ${PIXELS} numbers`);
    }
    values = parsed.map((value, i) => {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw new UsageError(`pixel ${i} in ${path} is not a finite number`);
      }
      return value;
    });
  }
  return values;
}

function readShape(options, count) {
  if (options.shape === undefined) {
    if (count !== PIXELS) {
      throw new UsageError(`the image has ${count} pixels, it needs ${PIXELS}`);
    }
    return [1, PIXELS];
  }
  return options.shape.split(',').map((text, i) => {
    const dim = parseNumber(text, `shape dimension ${i}`);
    if (!Number.isInteger(dim) || dim < 0) {
      throw new UsageError(`shape dimension ${i} must be a whole number >= 0`);
    }
    return dim;
  });
}

// Encodes the pixels as row-major little-endian float32, whatever the host's byte order.
function float32LittleEndian(values) {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((value, i) => view.setFloat32(i * 4, value, true));
  return Buffer.from(view.buffer);
}

function buildRequest(options) {
  const pixels = readPixels(options);
  const shape = readShape(options, pixels.length);
  const request = {
    requestId: options['request-id'],
    task: options.task,
    inputs: [{ name: 'IMAGE', datatype: 'FP32', shape, rawContents: float32LittleEndian(pixels) }],
    skipCache: options['skip-cache'],
  };
  if (options.threshold !== undefined) {
    const threshold = parseNumber(options.threshold, '--threshold');
    if (!(threshold > 0 && threshold <= 1)) {
      throw new UsageError('--threshold must be in (0, 1]');
    }
    request.confidenceThreshold = threshold;
  }
  return request;
}

function readDeadline(options) {
  const ms = parseNumber(options['deadline-ms'], '--deadline-ms');
  if (!(ms > 0)) {
    throw new UsageError('--deadline-ms must be > 0');
  }
  return new Date(Date.now() + ms);
}

// Whole numbers print bare ("1"), others with at most `digits` decimals, trailing zeros cut.
function compact(value, digits = 3) {
  return String(Number(Number(value).toFixed(digits)));
}

function formatStep(step) {
  const answer = step.answer ?? { label: '', confidence: 0 };
  const parts = [
    `step ${step.index}:`,
    `${step.model?.name ?? ''} v${step.model?.version ?? 0}`,
    `tier ${step.tier}`,
    `answer ${answer.label === '' ? '-' : answer.label}`,
    `confidence ${Number(answer.confidence).toFixed(2)}`,
    `threshold ${Number(step.threshold).toFixed(2)}`,
    step.decision,
  ];
  if (step.reason) parts.push(`(${step.reason})`);
  parts.push(`${Number(step.latencyMs).toFixed(1)} ms`, `cost ${compact(step.cost)}`);
  if (step.cacheLevel !== 'CACHE_LEVEL_UNSPECIFIED') parts.push(`cache ${step.cacheLevel}`);
  return parts.join(' ');
}

function formatAnswer(response) {
  const answer = response.answer ?? { label: '', confidence: 0 };
  return (
    `answer: ${answer.label} (confidence ${Number(answer.confidence).toFixed(2)}), ` +
    `cache ${response.cacheLevel}, cost ${compact(response.totalCost)}, trace ${response.traceId}`
  );
}

function readPem(options, flag) {
  const path = options[flag];
  if (path === undefined) return null;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`--${flag} ${path}: ${err.message}`);
  }
}

// Plaintext, TLS, or mutual TLS, as the flags say.
function channelCredentials(options) {
  if ((options['cert-file'] === undefined) !== (options['key-file'] === undefined)) {
    throw new UsageError('give --cert-file and --key-file together');
  }
  if (!options.tls && options['ca-file'] === undefined) {
    if (options['cert-file'] !== undefined) throw new UsageError('--cert-file and --key-file need --tls or --ca-file');
    return grpc.credentials.createInsecure();
  }
  return grpc.credentials.createSsl(readPem(options, 'ca-file'), readPem(options, 'key-file'), readPem(options, 'cert-file'));
}

// The call's metadata: the client token from the environment, if there is one.
function callMetadata() {
  const metadata = new grpc.Metadata();
  const token = (process.env[TOKEN_VARIABLE] ?? '').trim();
  if (token !== '') metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

function loadRouterService() {
  const definition = protoLoader.loadSync(ROUTER_PROTO, {
    includeDirs: [PROTOS_ROOT],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).inferscale.v1.RouterService;
}

function infer(address, credentials, request, deadline) {
  const RouterService = loadRouterService();
  const client = new RouterService(address, credentials);
  return new Promise((resolve, reject) => {
    client.Infer(request, callMetadata(), { deadline }, (err, response) => {
      client.close();
      if (err) reject(err);
      else resolve(response);
    });
  });
}

async function main(argv) {
  let options, request, deadline, credentials;
  try {
    options = parseCommandLine(argv);
    if (options.help) {
      console.log(USAGE);
      return 0;
    }
    request = buildRequest(options);
    deadline = readDeadline(options);
    credentials = channelCredentials(options);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`usage error: ${err.message}\n\n${USAGE}`);
    return 1;
  }
  let response;
  try {
    response = await infer(options.address, credentials, request, deadline);
  } catch (err) {
    if (typeof err?.code !== 'number') throw err;
    const name = grpc.status[err.code] ?? `CODE_${err.code}`;
    console.error(`error: ${name}: ${err.details ?? err.message}`);
    return 2;
  }
  for (const step of response.steps) console.log(formatStep(step));
  console.log(formatAnswer(response));
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
