#!/usr/bin/env node
// Sends one digit image, or one prompt of a text task, to InferScale's RouterService and prints
// the answer and every escalation step, one per line. With --stream it calls InferStream and
// prints each step as it starts, the tokens its model generates as they arrive, and its decision.
// The protos are loaded at runtime from ../../protos.
//
// Over TLS with --tls or --ca-file (mutual TLS with --cert-file and --key-file as well). The
// client token, when the environment has one in INFERSCALE_CLIENT_TOKEN, goes with the call as
// "authorization: Bearer <token>"; it is read from the environment, never from the command line,
// where other users of the machine could see it.
//
// Exit codes: 0 success, 1 a usage error (bad flags, pixels or prompt), 2 the call failed with a
// gRPC error (printed to stderr as "error: <CODE_NAME>: <details>").

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTOS_ROOT = fileURLToPath(new URL('../../protos/', import.meta.url));
const ROUTER_PROTO = 'inferscale/v1/router_service.proto';
const PIXELS = 64; // an 8x8 image, values 0..16
const TOKEN_VARIABLE = 'INFERSCALE_CLIENT_TOKEN'; // as inferscale/auth.py CLIENT_TOKEN_VARIABLE
// Generation runs at tens of tokens a second on a CPU: a prompt's call gets longer by default.
const DEADLINE_MS = { image: 10000, prompt: 300000 };

const USAGE = `usage: node infer.js (--pixels "0,0,5,13,..." | --pixels-file image.json | --prompt TEXT) [options]

  --address HOST:PORT   the router (default localhost:50051); plaintext unless --tls
                        or --ca-file
  --tls                 connect over TLS, trusting the system's certificate authorities
  --ca-file PATH        connect over TLS, trusting the CA certificate in PATH (PEM)
  --cert-file PATH      with --key-file: present this client certificate (PEM), for
                        mutual TLS
  --key-file PATH       the client certificate's private key (PEM)
  --pixels LIST         ${PIXELS} comma-separated pixel values 0..16
  --pixels-file PATH    a JSON array of ${PIXELS} pixel values
  --prompt TEXT         the message a text task's models answer (task math unless --task)
  --system TEXT         with --prompt: a system instruction before it
  --max-tokens N        with --prompt: the most tokens one generation may produce
                        (default: the router's, 256)
  --temperature X       with --prompt: sampling temperature in [0, 2], 0 greedy
                        (default: the router's)
  --stream              call InferStream: print each step as it starts, its tokens as
                        they are generated, and its decision, live
  --task NAME           the task (default digits, or math with --prompt)
  --strategy NAME       how to spend compute, e.g. cascade, single, self_consistency
                        (default: the router chooses)
  --model NAME          the model of --strategy single (implies it), or the one that
                        samples with self_consistency or best_of_n
  --threshold X         confidence threshold in (0, 1]; default: the router's
  --skip-cache          neither read nor write the final-result cache
  --request-id ID       the request id (default: the router assigns one)
  --deadline-ms N       the call's gRPC deadline in milliseconds (default ${DEADLINE_MS.image},
                        ${DEADLINE_MS.prompt} with --prompt)
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
        prompt: { type: 'string' },
        system: { type: 'string' },
        'max-tokens': { type: 'string' },
        temperature: { type: 'string' },
        stream: { type: 'boolean', default: false },
        task: { type: 'string' },
        strategy: { type: 'string' },
        model: { type: 'string' },
        threshold: { type: 'string' },
        'skip-cache': { type: 'boolean', default: false },
        'request-id': { type: 'string', default: '' },
        'deadline-ms': { type: 'string' },
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
    throw new UsageError('give exactly one of --pixels, --pixels-file and --prompt');
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

// A text task's prompt; the router checks its bounds and names the field it refuses.
function readPrompt(options) {
  const text = { prompt: options.prompt, context: [], sampling: {} };
  if (options.system !== undefined) text.context.push({ role: 'system', content: options.system });
  if (options['max-tokens'] !== undefined) {
    const maxTokens = parseNumber(options['max-tokens'], '--max-tokens');
    if (!Number.isInteger(maxTokens)) throw new UsageError('--max-tokens must be a whole number');
    text.sampling.maxTokens = maxTokens;
  }
  if (options.temperature !== undefined) {
    text.sampling.temperature = parseNumber(options.temperature, '--temperature');
  }
  return text;
}

// The strategy enum's value name, "self_consistency" -> "STRATEGY_SELF_CONSISTENCY", checked
// against the contract's values so that a new strategy needs no change here.
function readStrategy(options, protos) {
  const name = options.strategy ?? (options.model !== undefined ? 'single' : 'unspecified');
  const known = protos.Strategy.type.value.map((value) => value.name);
  const value = `STRATEGY_${name.toUpperCase()}`;
  if (!known.includes(value) || (value === 'STRATEGY_UNSPECIFIED' && options.strategy !== undefined)) {
    const names = known.filter((v) => v !== 'STRATEGY_UNSPECIFIED').map((v) => v.replace('STRATEGY_', '').toLowerCase());
    throw new UsageError(`--strategy ${name} is not one of ${names.join(', ')}`);
  }
  return value;
}

function buildRequest(options, protos) {
  const request = {
    requestId: options['request-id'],
    skipCache: options['skip-cache'],
    strategy: readStrategy(options, protos),
    modelName: options.model ?? '',
  };
  if (options.prompt !== undefined) {
    if (options.pixels !== undefined || options['pixels-file'] !== undefined) {
      throw new UsageError('give --prompt or an image, not both');
    }
    request.task = options.task ?? 'math';
    request.text = readPrompt(options);
  } else {
    for (const flag of ['system', 'max-tokens', 'temperature']) {
      if (options[flag] !== undefined) throw new UsageError(`--${flag} goes with --prompt`);
    }
    const pixels = readPixels(options);
    const shape = readShape(options, pixels.length);
    request.task = options.task ?? 'digits';
    request.inputs = [{ name: 'IMAGE', datatype: 'FP32', shape, rawContents: float32LittleEndian(pixels) }];
  }
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
  const given = options['deadline-ms'];
  const ms = given === undefined ? DEADLINE_MS[options.prompt === undefined ? 'image' : 'prompt'] : parseNumber(given, '--deadline-ms');
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
    `answer: ${answer.label === '' ? '-' : answer.label} (confidence ${Number(answer.confidence).toFixed(2)}), ` +
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

// The package inferscale.v1: its services and its messages' and enums' descriptions.
function loadProtos() {
  const definition = protoLoader.loadSync(ROUTER_PROTO, {
    includeDirs: [PROTOS_ROOT],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).inferscale.v1;
}

function infer(client, request, deadline) {
  return new Promise((resolve, reject) => {
    client.Infer(request, callMetadata(), { deadline }, (err, response) => {
      if (err) reject(err);
      else resolve({ response, tokensShown: 0 });
    });
  });
}

// Prints an InferStream call's events as they arrive; resolves with its last, the response, and
// how many tokens were printed (none when a cache served the answer).
function inferStream(client, request, deadline) {
  let tokensShown = 0;
  let lineOpen = false; // whether generated text was written without its line's end
  const endLine = () => {
    if (lineOpen) process.stdout.write('\n');
    lineOpen = false;
  };
  return new Promise((resolve, reject) => {
    let response = null;
    const call = client.InferStream({ request }, callMetadata(), { deadline });
    call.on('data', (event) => {
      switch (event.event) {
        case 'stepStarted': {
          endLine();
          const started = event.stepStarted;
          console.log(`step ${started.index} started: ${started.model?.name ?? ''} v${started.model?.version ?? 0} tier ${started.tier}`);
          break;
        }
        case 'tokens': {
          tokensShown += event.tokens.tokens.length;
          const text = event.tokens.tokens.map((token) => token.text).join('');
          if (text !== '') {
            process.stdout.write(text);
            lineOpen = !text.endsWith('\n');
          }
          break;
        }
        case 'stepFinished':
          endLine();
          console.log(formatStep(event.stepFinished));
          break;
        case 'response':
          endLine();
          response = event.response;
          break;
        default:
          break; // an event this client does not know yet
      }
    });
    call.on('error', (err) => {
      endLine();
      reject(err);
    });
    call.on('end', () => {
      if (response === null) reject(new Error('the router ended the stream without a response'));
      else resolve({ response, tokensShown });
    });
  });
}

async function main(argv) {
  let options, request, deadline, credentials;
  const protos = loadProtos();
  try {
    options = parseCommandLine(argv);
    if (options.help) {
      console.log(USAGE);
      return 0;
    }
    request = buildRequest(options, protos);
    deadline = readDeadline(options);
    credentials = channelCredentials(options);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`usage error: ${err.message}\n\n${USAGE}`);
    return 1;
  }
  const client = new protos.RouterService(options.address, credentials);
  let response, tokensShown;
  try {
    ({ response, tokensShown } = await (options.stream ? inferStream : infer)(client, request, deadline));
  } catch (err) {
    if (typeof err?.code !== 'number') throw err;
    const name = grpc.status[err.code] ?? `CODE_${err.code}`;
    console.error(`error: ${name}: ${err.details ?? err.message}`);
    return 2;
  } finally {
    client.close();
  }
  if (!options.stream) {
    for (const step of response.steps) console.log(formatStep(step));
  }
  console.log(formatAnswer(response));
  // Unstreamed, or served from a cache, a generated text was not shown as it was generated.
  const text = response.answer?.text ?? '';
  if (text !== '' && tokensShown === 0) console.log(text);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
