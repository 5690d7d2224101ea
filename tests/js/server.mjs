// Starts the real jobstream-server (a free port, a temp data dir, both removed when it
// stops) and jobstream-gateway on 127.0.0.1. Shared by the Node tests.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

// Not import.meta.dirname: Debian 12's Node (18) does not have it.
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN_DIR = process.env.JOBSTREAM_BIN_DIR ?? path.join(ROOT, 'build');

// Spawns a binary that prints "listening on HOST:PORT" first; resolves to its address.
async function spawnListening(binary, args) {
  const child = spawn(path.join(BIN_DIR, binary), args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${binary} exited with ${code}`)));
  });
  const match = /^listening on (\S+)$/.exec(first);
  if (!match) throw new Error(`unexpected first line: ${first}`);
  return { child, address: match[1] };
}

// kill() is SIGKILL, like a crash; stop() is SIGTERM. Both resolve to the exit code.
function controls(child) {
  const signal = (name) => {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(name);
    return exited;
  };
  return { kill: () => signal('SIGKILL'), stop: () => signal('SIGTERM') };
}

// `port` and `dataDir` let a test restart a server where it was.
export async function startServer(flags = [], { port = 0, dataDir = null } = {}) {
  dataDir ??= mkdtempSync(path.join(tmpdir(), 'jobstream-js-'));
  const { child, address } = await spawnListening('server/jobstream-server',
    [`--listen=127.0.0.1:${port}`, `--data_dir=${dataDir}`, ...flags]);
  return {
    address,
    dataDir,
    port: Number(address.split(':')[1]),
    kill: controls(child).kill,  // keeps the data dir, for a restart
    async stop() {
      const code = await controls(child).stop();
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}

// Starts jobstream-gateway in front of `serverAddress`; `port` 0 picks one.
export async function startGateway(serverAddress, { port = 0, flags = [] } = {}) {
  const { child, address } = await spawnListening('gateway/jobstream-gateway',
    [`--listen=127.0.0.1:${port}`, `--server=${serverAddress}`, ...flags]);
  return {
    address,
    url: `http://${address}`,
    port: Number(address.split(':')[1]),
    ...controls(child),
  };
}
